"""An index-time self-test of the legs, with no labels from people (session 30, trust30; EVAL.md).

    .venv/bin/python eval/selftest.py eval/classes-lo.yaml --oracle use [--notes 200] [--json out.json]

Each corpus folder of the manifest is indexed as ``kbsearch eval --classes`` indexes it (the oracle's warm cache:
``.kbsearch/oracle/<model>.sqlite``), then every sampled note (at most ``--notes``, every k-th by path) asks
three kinds of query of the lexical leg and of the dense leg alone, its own note being the answer:

- ``title``: its frontmatter title (the note holds it: BM25's easy case);
- ``heading``: its first section heading that no other note of the sample shares word for word (a short label,
  often generic: "Changing the settings"; where several notes hold its words, BM25 is unsure);
- ``across``: the title of the same page in the sibling folder of the other language (``en`` ↔ ``ru``, same file
  name), where there is one (BM25 has little to go on: dense's own strength).

Per kind and leg: MRR@10 and the first-hit rate. Then the close calls: the title and heading queries where BM25 is
**unsure** (its second note within ``--margin`` of its first's score, or no hit), and where the dense leg is **close**
(its second note's cosine within a fifth of the span between its first and its 20th, the fusion's ``close``):
each leg's first-hit rate there, and ``dense − BM25`` on the unsure ones, the figure meant to say how far to trust
dense at a close call.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from kbsearch.config import Settings
from kbsearch.schemas import SearchRequest
from kbsearch.sources import SourceObject
from kbsearch_tools.evaluate import SmallNotes, _indexed, load_classes
from kbsearch_tools.oracle import OracleProvider, oracle_settings

HEADING = re.compile(r"^#{2,3}\s+(.+?)\s*#*$", re.MULTILINE)
SIBLING = {"en": "ru", "ru": "en"}


def front(text: str) -> tuple[dict[str, Any], str]:
    if text.startswith("---\n"):
        head, _, body = text[4:].partition("\n---")
        try:
            meta = yaml.safe_load(head) or {}
        except yaml.YAMLError:
            meta = {}
        return (meta if isinstance(meta, dict) else {}), body
    return {}, text


class Sampled(SmallNotes):
    """Only the sampled notes of a corpus folder: a bounded index, as an indexer's bounded sample would be."""

    def __init__(self, root: Path, keep: set[str]) -> None:
        super().__init__(root, None)
        self.keep = keep

    def list(self) -> Iterator[SourceObject]:
        return (o for o in self.inner.list() if o.path in self.keep)


def title_of(path: Path) -> tuple[str | None, list[str]]:
    meta, body = front(path.read_text(encoding="utf-8", errors="replace"))
    title = meta.get("title")
    if not isinstance(title, str) or not title.strip():
        first = re.search(r"^#\s+(.+)$", body, re.MULTILINE)
        title = first.group(1) if first else path.stem.replace("-", " ").replace("_", " ")
    return title.strip(), [h.strip() for h in HEADING.findall(body) if len(h.strip()) > 3]


def sample(corpus: Path, n: int) -> list[Path]:
    notes = sorted(p for p in corpus.rglob("*.md") if p.is_file())
    step = max(1, len(notes) // n)
    return notes[::step][:n]


def queries(corpus: Path, n: int) -> list[tuple[str, str, str]]:
    """(kind, query, the note's path relative to the corpus)."""
    picked = sample(corpus, n)
    heads = {p: title_of(p) for p in picked}
    count: dict[str, int] = {}
    for _, hs in heads.values():
        for h in set(hs):
            count[h.lower()] = count.get(h.lower(), 0) + 1
    out = []
    sibling = corpus.parent / SIBLING[corpus.name] if corpus.name in SIBLING else None
    for p, (title, hs) in heads.items():
        rel = p.relative_to(corpus).as_posix()
        if title:
            out.append(("title", title, rel))
        unique = [h for h in hs if count[h.lower()] == 1 and h.lower() != (title or "").lower()]
        if unique:
            out.append(("heading", unique[0], rel))
        if sibling is not None and (sibling / rel).is_file():
            other, _ = title_of(sibling / rel)
            if other:
                out.append(("across", other, rel))
    return out


def run(service: Any, items: list[tuple[str, str, str]], margin: float) -> dict[str, Any]:
    for _ in range(10):  # the oracle loads its model on the first query: not inside a measured search's budget
        if not service.evaluation_view("dense", 20).search(SearchRequest(query="warm up", top_k=1)).meta.degraded:
            break
    rows = []
    for kind, query, answer in items:
        row: dict[str, Any] = {"kind": kind, "query": query, "answer": answer}
        for leg in ("lexical", "dense"):
            answer_ = service.evaluation_view(leg, 20).search(SearchRequest(query=query[:1000], top_k=20))
            if answer_.meta.degraded:  # a timeout under load: not this leg's answer (EMBEDDING_QUERY_TIMEOUT_S=120)
                raise SystemExit(f"{leg} search degraded for {query!r}: rerun with EMBEDDING_QUERY_TIMEOUT_S=120")
            hits = answer_.results
            paths = [h.path for h in hits]
            scores = [h.score for h in hits]
            rank = paths.index(answer) + 1 if answer in paths else None
            row[leg] = {"rank": rank, "scores": scores[:20]}
        rows.append(row)
    return summarize(rows, margin) | {"rows": rows}


def _rr(rank: int | None) -> float:
    return 1.0 / rank if rank and rank <= 10 else 0.0


def unsure(scores: list[float], margin: float) -> bool:
    return not scores or (len(scores) > 1 and scores[0] > 0 and (scores[0] - scores[1]) / scores[0] < margin)


def close(scores: list[float]) -> bool:
    if len(scores) < 3:
        return False
    span = scores[0] - scores[-1]
    return span > 0 and scores[0] - scores[1] < 0.2 * span


def summarize(rows: list[dict[str, Any]], margin: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["kind"], []).append(r)
    own = [r for r in rows if r["kind"] != "across"]
    groups["unsure"] = [r for r in own if unsure(r["lexical"]["scores"], margin)]
    groups["close"] = [r for r in own if close(r["dense"]["scores"])]
    for name, rs in groups.items():
        entry = {"n": len(rs)}
        for leg in ("lexical", "dense"):
            ranks = [r[leg]["rank"] for r in rs]
            entry[f"{leg}_mrr"] = round(sum(map(_rr, ranks)) / max(1, len(rs)), 4)
            entry[f"{leg}_first"] = round(sum(rank == 1 for rank in ranks) / max(1, len(rs)), 4)
        entry["dense_minus_lexical"] = round(entry["dense_first"] - entry["lexical_first"], 4)
        out[name] = entry
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--oracle", choices=("e5", "use"), default="e5")
    parser.add_argument("--notes", type=int, default=200)
    parser.add_argument("--margin", type=float, default=0.2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--cache", type=Path, help="the oracle cache (default .kbsearch/oracle/MODEL.sqlite)")
    parser.add_argument("--sampled", action="store_true", help="index only the sampled notes (faster, fewer rivals)")
    args = parser.parse_args(argv)
    classes, _ = load_classes(args.manifest, Path.cwd())
    corpora = sorted({c.corpus for c in classes if c.corpus.name in SIBLING})
    server = OracleProvider(args.oracle, cache=args.cache or Path(f".kbsearch/oracle/{args.oracle}.sqlite")).start()
    report: dict[str, Any] = {}
    try:
        settings = oracle_settings(Settings(), server, rerank=False)
        for corpus in corpora:
            items = queries(corpus, args.notes)
            source: SmallNotes = (
                Sampled(corpus, {rel for _, _, rel in items}) if args.sampled else SmallNotes(corpus, None)
            )
            with _indexed(settings, source, None, 20) as (_, service, _index):
                report[str(corpus)] = run(service, items, args.margin)
            print(corpus, json.dumps({k: v for k, v in report[str(corpus)].items() if k != "rows"}), flush=True)
    finally:
        server.stop()
    if args.json:
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
