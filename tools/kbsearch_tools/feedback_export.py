"""``kbsearch feedback export --beir DIR``: votes on Slack answers → a BEIR dataset that ``kbsearch eval --beir``
reads: ``corpus.jsonl`` (every note of the KB, ``_id`` = its path, its frontmatter as metadata), ``queries.jsonl`` (each question asked, with its
filters as metadata) and ``qrels/test.tsv`` (the hits of a 👍 answer relevant, score 1; of a 👎 answer judged not
relevant, score 0; several people: the majority, a tie is 0)."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbsearch.errors import KbSearchError
from kbsearch.feedback import VOTES
from kbsearch.notes import NoteError, decode_note, parse_note, read_frontmatter
from kbsearch.sources import Source

logger = logging.getLogger(__name__)

#: Records read at most (the file's lines or the table's items): the latest vote of each is held, compactly (about
#: 0.7 KB a vote with ten hits; the records themselves took 5.4 KB: 540 MB for 100,000 votes), so a votes file of
#: 10 million lines is refused before it fills the memory.
MAX_EXPORT_RECORDS = 2_000_000


@dataclass(slots=True)
class _Vote:
    time: str
    query: str
    filters: dict[str, Any]
    vote: str
    paths: tuple[str, ...]


@dataclass
class ExportReport:
    votes: int = 0
    queries: int = 0
    judgements: int = 0
    relevant: int = 0
    documents: int = 0
    unknown_paths: int = 0  # voted notes no longer in the KB: left out
    skipped_votes: int = 0  # records that are not votes kb-search wrote
    skipped_notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"votes": self.votes, "queries": self.queries, "judgements": self.judgements,
                "relevant": self.relevant, "documents": self.documents, "unknown_paths": self.unknown_paths,
                "skipped_votes": self.skipped_votes, "skipped_notes": len(self.skipped_notes)}  # fmt: skip


def _valid(record: dict[str, Any]) -> bool:
    hits = record.get("hits")
    return (isinstance(record.get("query"), str) and bool(record["query"].strip()) and record.get("vote") in VOTES
            and isinstance(hits, list) and all(isinstance(h, dict) and isinstance(h.get("path"), str) for h in hits)
            and isinstance(record.get("filters", {}), dict))  # fmt: skip


def _compact(record: dict[str, Any], when: str) -> _Vote:
    """What the export reads of a valid vote; the hits' paths interned (the same few notes recur in every vote)."""
    paths = tuple(sys.intern(hit["path"]) for hit in record["hits"])
    return _Vote(when, record["query"].strip(), record.get("filters") or {}, record["vote"], paths)


def _corpus(source: Source, report: ExportReport) -> list[dict[str, Any]]:
    docs = []
    for obj in sorted((o for o in source.list() if o.is_note), key=lambda o: o.path):
        try:
            raw = source.read(obj)
            note = parse_note(obj.path, raw)
            meta, body, _warnings = read_frontmatter(decode_note(raw))
        except NoteError as exc:
            report.skipped_notes.append(f"{obj.path}: {exc.reason}")
            continue
        # the note's path and frontmatter go with it, so that eval can apply each vote's filters (tags, type,
        # status, updated_after, path_prefix) as the search that was voted on did
        docs.append({"_id": obj.path, "title": note.title, "text": body.strip(),
                     "metadata": {"path": obj.path, "frontmatter": meta}})  # fmt: skip
    return docs


def export_beir(records: Iterable[dict[str, Any]], source: Source, out: Path) -> ExportReport:
    report = ExportReport()
    # one per ``id``, the latest (by time, then by order read), as ``feedback.latest_votes``; None: not a vote
    latest: dict[str, tuple[str, _Vote | None]] = {}
    for count, record in enumerate(records, 1):
        if count > MAX_EXPORT_RECORDS:
            raise KbSearchError(f"the votes hold more than {MAX_EXPORT_RECORDS:,} records: export reads at most that "
                                "many; export the latest (`tail -n 1000000 votes.jsonl > recent.jsonl`)")  # fmt: skip
        key, when = str(record.get("id", "")), str(record.get("time", ""))
        if not key or (key in latest and when < latest[key][0]):
            continue
        latest[key] = (when, _compact(record, when) if _valid(record) else None)
    votes = [vote for _, vote in latest.values() if vote is not None]
    report.skipped_votes = len(latest) - len(votes)
    del latest
    report.votes = len(votes)
    corpus = _corpus(source, report)
    known = {d["_id"] for d in corpus}
    if not corpus:
        raise KbSearchError(f"no readable notes in {source.uri}: the corpus would be empty")

    # question + filters → tallies per note path
    queries: dict[str, dict[str, Any]] = {}
    tallies: dict[str, dict[str, list[int]]] = {}
    for vote in sorted(votes, key=lambda v: v.time):
        filters = vote.filters
        identity = json.dumps([vote.query, filters], ensure_ascii=False, sort_keys=True, default=str)
        qid = "fb-" + hashlib.sha256(identity.encode()).hexdigest()[:12]
        queries.setdefault(qid, {"_id": qid, "text": vote.query, "metadata": {"filters": filters}})
        per_path = tallies.setdefault(qid, {})
        for path in vote.paths:
            if path not in known:
                report.unknown_paths += 1
                continue
            counts = per_path.setdefault(path, [0, 0])
            counts[0 if vote.vote == "up" else 1] += 1

    rows = []
    for qid, per_path in tallies.items():
        for path, (up, down) in sorted(per_path.items()):
            rows.append((qid, path, 1 if up > down else 0))
    judged = {qid for qid, _, _ in rows}
    report.queries = len(judged)
    report.judgements = len(rows)
    report.relevant = sum(score for _, _, score in rows)
    report.documents = len(corpus)

    out.mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for doc in corpus:
            handle.write(json.dumps(doc, ensure_ascii=False, default=str) + "\n")
    with (out / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for qid in sorted(judged):
            handle.write(json.dumps(queries[qid], ensure_ascii=False) + "\n")
    with (out / "qrels" / "test.tsv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")  # quotes what `kbsearch eval` must unquote
        writer.writerow(["query-id", "corpus-id", "score"])
        writer.writerows(rows)
    return report
