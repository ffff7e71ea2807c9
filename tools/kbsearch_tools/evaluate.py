"""``kbsearch eval``: index a dataset through the real indexing code, run each pipeline phase, score it.

Phases (each a configuration of the one search service, sharing one index):
``lexical`` (BM25 only) · ``dense`` (dense prefetches only) · ``hybrid`` (RRF of both) · ``expanded`` (hybrid
with query expansion) · ``reranked`` (expanded, or hybrid without an expander, then reranked). A phase whose
provider is not configured is listed as skipped with the reason.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from kbsearch.config import Secrets, Settings
from kbsearch.errors import KbSearchError
from kbsearch.indexer import Indexer, SyncOptions
from kbsearch.providers.embeddings import build_embedder
from kbsearch.providers.resilience import shared_client
from kbsearch.qdrant import open_store
from kbsearch.schemas import SearchFilters, SearchRequest
from kbsearch.search import SearchService
from kbsearch.sources import LocalSource, Source, SourceObject
from kbsearch_tools import closest, read_file, utf8_text, yaml_problem
from kbsearch_tools.metrics import MAX_QUERIES_BYTES, LabelledQuery, load_queries, summarize

if TYPE_CHECKING:
    from kbsearch_tools.oracle import OracleProvider

PHASES = ("lexical", "dense", "hybrid", "expanded", "reranked")
DEPTH = 50
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Phase:
    name: str
    retrieval: str
    expand: bool
    rerank: bool


PHASE_CONFIG = {
    "lexical": Phase("lexical", "lexical", False, False),
    "dense": Phase("dense", "dense", False, False),
    "hybrid": Phase("hybrid", "hybrid", False, False),
    "expanded": Phase("expanded", "hybrid", True, False),
    "reranked": Phase("reranked", "hybrid", True, True),
}


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        item = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise KbSearchError(f"{path}:{number}: not JSON ({exc.msg})") from None
                    if not isinstance(item, dict) or "_id" not in item:
                        raise KbSearchError(f"{path}:{number}: expected an object with _id")
                    yield item
    except OSError as exc:
        raise KbSearchError(f"cannot read {path}: {exc.strerror}") from None


def _no_split(folder: Path, split: str) -> str:
    """A ``--split`` whose ``qrels/<split>.tsv`` the folder does not hold (``--split dev`` of a set judged for test):
    the splits it holds, as ``--split`` takes them. It said "cannot read .../qrels/dev.tsv: No such file or
    directory" (walk33)."""
    try:
        held = sorted(p.stem for p in (folder / "qrels").glob("*.tsv") if p.is_file())
    except OSError:
        held = []
    if not held:
        return f"no qrels/ of .tsv files in {folder}: a BEIR folder judges its queries in qrels/<split>.tsv"
    meant = closest(split, held)
    return (f"no split {split!r} in {folder}: its qrels/ holds {', '.join(held)} (--split "
            f"{meant if meant is not None else held[0]})")  # fmt: skip


@dataclass
class BeirDataset:
    name: str
    corpus: dict[str, tuple[str, str]]  # _id → (title, text)
    queries: list[LabelledQuery]  # relevant = document _ids with relevance > 0
    #: _id → the note's path and frontmatter (``metadata`` of a ``kbsearch feedback export`` corpus), so that
    #: a query's filters select what they selected in the KB
    notes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path, split: str = "test") -> BeirDataset:
        docs = list(_read_jsonl(folder / "corpus.jsonl"))
        corpus = {str(d["_id"]): (str(d.get("title") or ""), str(d.get("text") or "")) for d in docs}
        notes = {str(d["_id"]): m for d in docs if isinstance(m := d.get("metadata"), dict)
                 and isinstance(m.get("path"), str) and isinstance(m.get("frontmatter"), dict)}  # fmt: skip
        rows = list(_read_jsonl(folder / "queries.jsonl"))
        texts = {str(q["_id"]): str(q.get("text") or "") for q in rows}
        filters = {str(q["_id"]): _query_filters(folder, q) for q in rows}
        qrels_path = folder / "qrels" / f"{split}.tsv"
        relevant: dict[str, set[str]] = {}
        try:
            with qrels_path.open(encoding="utf-8-sig", newline="") as handle:
                reader = csv.reader(handle, delimiter="\t")
                header = next(reader, None)
                if header is None or [h.strip().lower() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
                    raise KbSearchError(f"{qrels_path}: expected a header 'query-id<TAB>corpus-id<TAB>score'")
                for number, row in enumerate(reader, 2):
                    if not row:
                        continue
                    try:
                        qid, did, score = row[0], row[1], int(float(row[2]))
                    except (IndexError, ValueError):
                        raise KbSearchError(f"{qrels_path}:{number}: expected query-id, corpus-id, score") from None
                    relevant.setdefault(qid, set())
                    if score > 0:
                        relevant[qid].add(did)
        except FileNotFoundError:
            raise KbSearchError(_no_split(folder, split)) from None
        except OSError as exc:
            raise KbSearchError(f"cannot read {qrels_path}: {exc.strerror}") from None
        missing = [qid for qid in relevant if qid not in texts]
        if missing:
            raise KbSearchError(f"{qrels_path}: query ids not in queries.jsonl: {', '.join(missing[:5])}")
        filtered = [qid for qid in relevant if filters[qid]]
        if filtered and not notes:
            # an export made before the corpus carried each note's path and frontmatter (round 23b): its notes sit
            # at made-up paths without frontmatter, so every filter matched none (MRR 0.000 for a first answer)
            logging.getLogger(__name__).warning(
                "%s: the filters of %d queries are not applied: corpus.jsonl holds no note's path and frontmatter "
                "(metadata), as an export before kbsearch feedback export kept them; they are scored unfiltered "
                "(export the votes again to apply them)", folder / "queries.jsonl", len(filtered))  # fmt: skip
            filters = {}
        queries = [LabelledQuery(texts[qid], frozenset(relevant[qid]), filters=filters.get(qid)) for qid in relevant]
        return cls(folder.name, corpus, queries, notes)


def _query_filters(folder: Path, query: dict[str, Any]) -> dict[str, Any] | None:
    """A query's ``metadata.filters`` (an exported vote's: what the voted search was filtered by), checked as the
    search checks them; None for none. Eval scored every vote unfiltered: a vote cast on ``type:runbook`` was judged
    against a search of the whole KB."""
    from pydantic import ValidationError

    metadata = query.get("metadata")
    given = metadata.get("filters") if isinstance(metadata, dict) else None
    if not given:
        return None
    try:
        return SearchFilters.model_validate(given).model_dump(exclude_none=True, mode="json")
    except ValidationError as exc:
        problem = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise KbSearchError(
            f"{folder / 'queries.jsonl'}: query {query.get('_id')}: filters kbsearch cannot apply ({problem})"
        ) from None


def _note_path(doc_id: str) -> str:
    safe = doc_id.replace("%", "%25").replace("/", "%2F")
    return f"{safe}.md"


class BeirSource:
    """The corpus as notes: frontmatter ``id`` = the BEIR ``_id`` (what the metrics compare), title, text."""

    def __init__(self, dataset: BeirDataset) -> None:
        self.uri = f"beir:{dataset.name}"
        self._notes: dict[str, bytes] = {}
        for doc_id, (title, text) in dataset.corpus.items():
            note = dataset.notes.get(doc_id)
            if note is not None:  # a KB's note (kbsearch feedback export): at its path, with its frontmatter
                meta = {**note["frontmatter"], "id": doc_id, "title": title or "untitled"}
                front = f"---\n{json.dumps(meta, ensure_ascii=False, default=str)}\n---\n"
                self._notes[note["path"]] = (front + text + "\n").encode("utf-8")
                continue
            front = f"---\nid: {json.dumps(doc_id)}\ntitle: {json.dumps(title or 'untitled')}\n---\n"
            self._notes[_note_path(doc_id)] = (front + text + "\n").encode("utf-8")

    def list(self) -> Iterator[SourceObject]:
        for path, raw in self._notes.items():
            yield SourceObject(path, path, hashlib.md5(raw, usedforsecurity=False).hexdigest(), len(raw))

    def read(self, obj: SourceObject) -> bytes:
        return self._notes[obj.key]

    def read_path(self, path: str) -> bytes:
        return self._notes[path]

    def root_names(self) -> Iterable[str]:
        return sorted(path for path in self._notes if "/" not in path)


@dataclass
class EvalReport:
    dataset: str
    queries: int
    phases: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    index: dict[str, Any] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)  # phase → the model(s) and input format it used
    settings: dict[str, Any] = field(default_factory=dict)  # the ranking settings in force

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "queries": self.queries, "phases": self.phases, "skipped": self.skipped,
                "index": self.index, "models": self.models, "settings": self.settings}  # fmt: skip


def _skip_reason(phase: Phase, service: SearchService) -> str | None:
    if phase.retrieval in ("dense", "hybrid") and service.embedder is None:
        return "needs an embedding provider (EMBEDDING_API_KEY, or --oracle e5: a model on loopback, no key)"
    if phase.expand and phase.name == "expanded" and service.expander is None:
        # `make eval ORACLE=e5` skips it too: the oracle expands only a manifest's queries into their translations
        return ("needs an expansion model (EXPANSION_API_KEY; or --classes with --oracle: each query's translation "
                "from the manifest's parallel class)")  # fmt: skip
    if phase.rerank and service.reranking is None:
        return "needs a reranker (RERANKER_API_KEY, or --oracle e5: its stand-in)"
    return None


def run_eval(
    settings: Settings,
    source: Source,
    queries: list[LabelledQuery],
    dataset: str,
    phases: tuple[str, ...] = PHASES,
    key: str = "doc_id",
    store_path: str | None = None,
    progress: Progress | None = None,
    depth: int = DEPTH,
    oracle: str | None = None,
    oracle_cache: Path | None = None,
) -> EvalReport:
    """Index ``source`` into a throw-away embedded collection (or ``store_path``), then score each phase.
    ``key`` is what ``relevant`` names: ``doc_id`` (BEIR ids) or ``path`` (KB note paths). ``oracle`` (``e5`` or
    ``use``): embeddings and a bi-encoder stand-in reranker from a real model on loopback (:mod:`kbsearch_tools.oracle`)."""
    unknown = [p for p in phases if p not in PHASE_CONFIG]
    if unknown:
        meant = [f"{p}: did you mean {m}?" for p in unknown if (m := closest(p, PHASES)) is not None]
        raise KbSearchError(f"unknown phase(s) {', '.join(unknown)}" + (f" ({'; '.join(meant)})" if meant else "")
                            + f"; choose from {', '.join(PHASES)}")  # fmt: skip
    if oracle is None:
        return _run_eval(settings, source, queries, dataset, phases, key, store_path, progress, depth)
    from kbsearch_tools.oracle import OracleProvider, oracle_settings, unavailable

    reason = unavailable(oracle)
    if reason:
        raise KbSearchError(reason)
    server = OracleProvider(oracle, cache=oracle_cache).start()
    try:
        return _run_eval(oracle_settings(settings, server), source, queries, dataset, phases, key, store_path,
                         progress, depth, server if "reranked" in phases else None)  # fmt: skip
    finally:
        server.stop()


def _phase_models(phase: Phase, service: SearchService) -> str:
    parts = []
    if phase.retrieval != "lexical" and service.embedder is not None:
        sig = service.embedder.signature
        parts.append(f"{sig['embedding_model']} ({sig['embedding_dimensions']}-d, {sig['embedding_input_format']})")
    if phase.retrieval != "dense":
        parts.append("BM25")
    if phase.expand and service.expander is not None:
        parts.append(f"expansion {service.expander.endpoint.model}")
    if phase.rerank and service.reranking is not None:
        parts.append(f"rerank {service.reranking.primary.endpoint.model}")
    return " + ".join(parts)


@contextlib.contextmanager
def _indexed(
    settings: Settings, source: Source, store_path: str | None, depth: int, reranker: OracleProvider | None = None
) -> Iterator[tuple[Settings, SearchService, dict[str, Any]]]:
    """``source`` indexed through the real indexer into a throw-away embedded collection (or ``store_path``), and
    the search service over it: (its settings, the service, what the sync reported). ``reranker``: the oracle,
    when it reranks in a phase that will run: every passage it can be sent is embedded before the first search
    (:meth:`~kbsearch_tools.oracle.OracleProvider.warm_passages`), not inside one search's budget."""
    with tempfile.TemporaryDirectory(prefix="kbsearch-eval-") as tmp:
        local = settings.model_copy(update={"qdrant_url": "", "qdrant_path": store_path or str(Path(tmp) / "q"),
                                            "qdrant_collection": "eval", "search_candidates": depth,
                                            "search_prefetch_limit": max(depth, settings.search_prefetch_limit)})  # fmt: skip
        secrets = Secrets(local)
        store = open_store(local, secrets)
        try:
            embedder = build_embedder(local, secrets, shared_client())
            sync = Indexer(source, store, embedder, SyncOptions.from_settings(local, allow_mass_delete=True)).sync()
            if sync.error:
                raise KbSearchError(f"indexing failed: {sync.error}")
            # the notes the index holds: a note the indexer skipped (broken frontmatter) is listed, not indexed, and
            # a query that wants it cannot find it; the table said "36 docs" for sample-kb's 35 and never the one
            index = {"notes": sync.notes_listed - len(sync.skipped), "chunks": sync.chunks_upserted,
                     "dense": sync.dense, "skipped": len(sync.skipped), "skipped_notes": sync.skipped,
                     "seconds": round(sync.duration_ms / 1000, 1)}  # fmt: skip
            if reranker is not None:
                reranker.warm_passages(store.points().values(), local.rerank_passage_tokens)
            yield local, SearchService(local, secrets, store=store), index
        finally:
            store.close()


def _run_eval(
    settings: Settings,
    source: Source,
    queries: list[LabelledQuery],
    dataset: str,
    phases: tuple[str, ...],
    key: str,
    store_path: str | None,
    progress: Progress | None,
    depth: int,
    reranker: OracleProvider | None = None,
) -> EvalReport:
    report = EvalReport(dataset=dataset, queries=len(queries))
    with _indexed(settings, source, store_path, depth, reranker) as (local, service, index):
        report.settings = _settings_in_force(local)
        report.index = index
        runnable = _runnable(service, phases, report.skipped)
        for phase in runnable:
            report.models[phase.name] = _phase_models(phase, service)
        report.phases = _score_phases(service, runnable, queries, key, depth, progress)
    return report


# -- per query class (eval/classes.yaml) ---------------------------------------------------------------------
CLASS_PHASES = ("lexical", "dense", "hybrid", "reranked")
GATE_SLACK = 0.005  # issue 19: hybrid may lose at most this much nDCG@10 to its best leg, on any class
GATE_MIN_QUERIES = 40  # a class this small or larger is gated: 0.005 means something at 40+ queries


@dataclass(frozen=True)
class QueryClass:
    name: str
    corpus: Path
    queries: list[LabelledQuery]
    max_note_bytes: int | None = None  # only the corpus's notes up to this size (a smaller, faster corpus)
    #: query → the same query in the other language (the manifest's ``parallel`` classes): what the ``expanded``
    #: phase's oracle expansion answers, an upper bound of an expansion model that translates
    translations: dict[str, str] = field(default_factory=dict)


class SmallNotes:
    """A KB folder's notes up to ``max_bytes`` (what a quick gate indexes: the vault's short notes)."""

    def __init__(self, root: Path, max_bytes: int | None) -> None:
        self.inner = LocalSource(root)
        self.uri = self.inner.uri
        self.max_bytes = max_bytes

    def list(self) -> Iterator[SourceObject]:
        return (o for o in self.inner.list() if self.max_bytes is None or o.size <= self.max_bytes)

    def read(self, obj: SourceObject) -> bytes:
        return self.inner.read(obj)

    def read_path(self, path: str) -> bytes:
        return self.inner.read_path(path)

    def root_names(self) -> Iterable[str]:
        return self.inner.root_names()

    def paths(self) -> set[str]:
        return {o.path for o in self.list() if o.is_note}


def load_classes(manifest: Path, root: Path, only: set[str] | None = None) -> tuple[list[QueryClass], dict[str, str]]:
    """The classes of a manifest (a YAML list of ``{class, corpus, queries}``, paths from ``root``; optional
    ``max_note_bytes``: only the corpus's notes up to that size, and the queries all of whose relevant notes are
    among them; ``limit``: the first N such queries), and the classes skipped with the reason (a corpus that is
    not there, e.g. the shared vault on a bare clone)."""
    what = f"the class manifest {manifest}"
    try:
        items = yaml.safe_load(utf8_text(read_file(manifest, what, MAX_QUERIES_BYTES), what))
    except yaml.YAMLError as exc:
        raise KbSearchError(f"{what} is not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) and {"class", "corpus", "queries"} <= set(i)
                                              for i in items):  # fmt: skip
        raise KbSearchError(f"{manifest}: expected a list of {{class, corpus, queries}} items")
    unknown = sorted((only or set()) - {str(i["class"]) for i in items})
    if unknown:
        raise KbSearchError(f"unknown class(es) {', '.join(unknown)} in {manifest}")
    translations = _translations(items, root, manifest)
    classes, skipped = [], {}
    for item in items:
        name = str(item["class"])
        if only and name not in only:
            continue
        corpus = (root / str(item["corpus"])).resolve()
        if not corpus.is_dir():
            skipped[name] = f"corpus {item['corpus']} is not there"
            continue
        queries = load_queries(root / str(item["queries"]))
        limit = item.get("max_note_bytes")
        if limit is not None:  # the queries whose every relevant note is in the smaller corpus
            present = SmallNotes(corpus, int(limit)).paths()
            queries = [q for q in queries if q.relevant <= present]
        if item.get("limit"):
            queries = queries[: int(item["limit"])]
        # keyed as the search sends the query to the expansion model (SearchRequest strips it)
        known = {q.query.strip(): translations[q.query.strip()] for q in queries if q.query.strip() in translations}
        classes.append(QueryClass(name, corpus, queries, None if limit is None else int(limit), known))
    return classes, skipped


def _translations(items: list[dict[str, Any]], root: Path, manifest: Path) -> dict[str, str]:
    """Query → its translation, both ways, from the manifest's ``parallel`` pairs: a class whose item names
    ``parallel: <class>`` holds the same queries as that class, in the other language, in the same order."""
    by_name = {str(i["class"]): i for i in items}
    out: dict[str, str] = {}
    for item in items:
        other = item.get("parallel")
        if other is None:
            continue
        if str(other) not in by_name:
            raise KbSearchError(f"{manifest}: class {item['class']} is parallel to an unknown class {other}")
        mine, theirs = (load_queries(root / str(i["queries"])) for i in (item, by_name[str(other)]))
        if len(mine) != len(theirs):
            raise KbSearchError(f"{manifest}: {item['class']} and {other} are parallel but hold "
                                f"{len(mine)} and {len(theirs)} queries")  # fmt: skip
        for a, b in zip(mine, theirs, strict=True):
            for query, translation in ((a.query.strip(), b.query.strip()), (b.query.strip(), a.query.strip())):
                if out.setdefault(query, translation) != translation:  # the table is keyed by the text
                    raise KbSearchError(
                        f"{manifest}: {query!r} has two translations ({out[query]!r}, "
                        f"{translation!r}): the expanded phase could not tell them apart"
                    )
    return out


@dataclass
class ClassReport:
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → corpus, queries, phases, gap
    skipped: dict[str, str] = field(default_factory=dict)  # class or phase → why
    models: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    index: dict[str, dict[str, Any]] = field(default_factory=dict)  # corpus → the sync's figures

    def to_dict(self) -> dict[str, Any]:
        return {"classes": self.classes, "skipped": self.skipped, "models": self.models, "settings": self.settings,
                "index": self.index}  # fmt: skip


def run_classes(
    settings: Settings,
    classes: list[QueryClass],
    phases: tuple[str, ...] = CLASS_PHASES,
    store_root: Path | None = None,
    progress: Progress | None = None,
    depth: int = DEPTH,
    oracle: str | None = None,
    oracle_cache: Path | None = None,
) -> ClassReport:
    """Each corpus indexed once; every class over it scored phase by phase, with the gap hybrid − max(lexical,
    dense) in nDCG@10 (None when a leg did not run)."""
    report = ClassReport()
    if oracle is None:
        _run_classes(settings, classes, phases, store_root, progress, depth, report)
        return report
    from kbsearch_tools.oracle import OracleProvider, oracle_settings, unavailable

    reason = unavailable(oracle)
    if reason:
        raise KbSearchError(reason)
    server = OracleProvider(oracle, cache=oracle_cache).start()
    expand = "expanded" in phases  # the oracle "expands" a query into its translation (the parallel classes')
    if expand:
        known = {q: t for c in classes for q, t in c.translations.items()}
        server.rewrite = lambda query: [known[query]] if query in known else []
    try:
        local = oracle_settings(settings, server, expand=expand)
        _run_classes(local, classes, phases, store_root, progress, depth, report,
                     server if "reranked" in phases else None)  # fmt: skip
    finally:
        server.stop()
    return report


def _run_classes(
    settings: Settings,
    classes: list[QueryClass],
    phases: tuple[str, ...],
    store_root: Path | None,
    progress: Progress | None,
    depth: int,
    report: ClassReport,
    reranker: OracleProvider | None = None,
) -> None:
    corpora: dict[tuple[Path, int | None], list[QueryClass]] = {}
    for c in classes:
        corpora.setdefault((c.corpus, c.max_note_bytes), []).append(c)
    for (corpus, max_bytes), members in corpora.items():
        slug = hashlib.sha1(f"{corpus}|{max_bytes}".encode(), usedforsecurity=False).hexdigest()[:10]
        store = str(store_root / f"{corpus.name}-{slug}") if store_root else None
        with _indexed(settings, SmallNotes(corpus, max_bytes), store, depth, reranker) as (local, service, index):
            report.settings = _settings_in_force(local)
            report.index[corpus.name] = index
            # a class's reranked phase reranks hybrid, whichever phases run beside it (the expander is there only
            # for the expanded phase's translations)
            runnable = [Phase(p.name, p.retrieval, False, True) if p.name == "reranked" else p
                        for p in _runnable(service, phases, report.skipped)]  # fmt: skip
            for phase in runnable:
                report.models[phase.name] = _phase_models(phase, service)
            for c in members:
                kinds: dict[str, dict[str, Any]] = {}
                scored = _score_phases(service, runnable, c.queries, "path", depth, progress, f"{c.name} ", kinds)
                ndcg = {name: m["nDCG@10"] for name, m in scored.items()}
                gap = None
                if {"lexical", "dense", "hybrid"} <= set(ndcg):
                    gap = round(ndcg["hybrid"] - max(ndcg["lexical"], ndcg["dense"]), 4)
                report.classes[c.name] = {"corpus": corpus.name, "queries": len(c.queries), "phases": scored,
                                          "gap": gap, "kinds": kinds}  # fmt: skip


def gate_failures(report: dict[str, Any], slack: float = GATE_SLACK, min_queries: int = GATE_MIN_QUERIES) -> list[str]:
    """The classes on which hybrid loses more than ``slack`` nDCG@10 to its best leg (the CI gate), and any
    class that could not be judged (a leg missing, or searches that degraded). A class of fewer than
    ``min_queries`` queries is not gated (one query moves its nDCG@10 by more than the slack): :func:`ungated`."""
    failures = []
    for name, c in report["classes"].items():
        if c["queries"] < min_queries:
            continue
        if c["gap"] is None:
            failures.append(f"{name}: lexical, dense and hybrid did not all run")
        elif c["gap"] < -slack:
            failures.append(f"{name}: hybrid loses {-c['gap']:.4f} nDCG@10 to its best leg (allowed {slack})")
        degraded = [p for p, m in c["phases"].items() if m.get("degraded")]
        if degraded:
            failures.append(f"{name}: searches degraded in {', '.join(degraded)} (the figures are not the phase's)")
    return failures


def ungated(report: dict[str, Any], min_queries: int = GATE_MIN_QUERIES) -> list[str]:
    return [name for name, c in report["classes"].items() if c["queries"] < min_queries]


def format_classes(report: dict[str, Any]) -> str:
    phases = [p for p in PHASES if any(p in c["phases"] for c in report["classes"].values())]
    lines = [f"{'class':<20}{'n':>5}" + "".join(f"{p:>10}" for p in phases) + f"{'gap':>9}   corpus  (nDCG@10)"]
    for name, c in report["classes"].items():
        cells = "".join(f"{c['phases'][p]['nDCG@10']:>10.3f}" if p in c["phases"] else f"{'-':>10}" for p in phases)
        gap = f"{c['gap']:>+9.3f}" if c["gap"] is not None else f"{'-':>9}"
        lines.append(f"{name:<20}{c['queries']:>5}{cells}{gap}   {c['corpus']}")
        for kind, k in c.get("kinds", {}).items():
            cells = "".join(f"{k['nDCG@10'][p]:>10.3f}" if p in k["nDCG@10"] else f"{'-':>10}" for p in phases)
            gap = f"{k['gap']:>+9.3f}" if k["gap"] is not None else f"{'-':>9}"
            lines.append(f"{'  · ' + kind:<20}{k['queries']:>5}{cells}{gap}")
    lines.append("  gap: hybrid - max(lexical, dense); · rows: the class's queries of one kind (not gated)")
    for name, reason in report["skipped"].items():
        lines.append(f"  {name} skipped: {reason}")
    for name, used in report.get("models", {}).items():
        lines.append(f"  {name}: {used}")
    if report.get("settings"):
        lines.append("  settings: " + ", ".join(f"{k}={v}" for k, v in report["settings"].items()))
    return "\n".join(lines)


def _settings_in_force(local: Settings) -> dict[str, Any]:
    return {"search_fusion": local.search_fusion, "search_lexical_weight": local.search_lexical_weight,
            "search_cross_language_weight": local.search_cross_language_weight,
            "search_exact_confidence": local.search_exact_confidence, "search_lead_bonus": local.search_lead_bonus,
            "rrf_k": local.rrf_k,
            "search_bm25_weight": local.search_bm25_weight, "rerank_weight": local.rerank_weight,
            "search_prefetch_limit": local.search_prefetch_limit, "search_candidates": local.search_candidates,
            "rerank_passage_tokens": local.rerank_passage_tokens}  # fmt: skip


def _runnable(service: SearchService, phases: tuple[str, ...], skipped: dict[str, str]) -> list[Phase]:
    runnable = []
    for name in phases:
        reason = _skip_reason(PHASE_CONFIG[name], service)
        if reason:
            skipped[name] = reason
        else:
            runnable.append(PHASE_CONFIG[name])
    return runnable


def _score_phases(
    service: SearchService,
    runnable: list[Phase],
    queries: list[LabelledQuery],
    key: str,
    depth: int,
    progress: Progress | None,
    label: str = "",
    by_kind: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, float]]:
    """Every runnable phase over ``queries`` on one service and index: the metrics of :func:`summarize` plus
    latency, degraded searches and the share of searches with ``depth`` candidates. ``by_kind``, when given, is
    filled with each query kind's nDCG@10 per phase (:func:`kind_scores`)."""
    out: dict[str, dict[str, float]] = {}
    ranked: dict[str, list[tuple[list[str], set[str]]]] = {}
    total = len(runnable) * len(queries)
    done = 0
    for phase in runnable:
        runs: list[tuple[list[str], set[str]]] = []
        latencies: list[float] = []
        degraded = 0
        full = 0
        for q in queries:
            request = SearchRequest(query=q.query[:1000] or "?", top_k=20, expand=phase.expand, rerank=phase.rerank,
                                    filters=SearchFilters.model_validate(q.filters or {}))  # fmt: skip
            t0 = time.perf_counter()
            answer = service.evaluation_view(phase.retrieval, depth).search(request)
            latencies.append((time.perf_counter() - t0) * 1000)
            degraded += bool(answer.meta.degraded)
            full += answer.meta.candidates >= depth
            runs.append(([getattr(h, key) for h in answer.results], set(q.relevant)))
            done += 1
            if progress:
                progress(done, total, f"{label}{phase.name}")
        ranked[phase.name] = runs
        scores = summarize(runs)
        scores["p50_ms"] = round(statistics.median(latencies), 1) if latencies else 0.0
        scores["p95_ms"] = round(_percentile(latencies, 0.95), 1)
        scores["degraded"] = degraded  # searches that fell back (their scores are not this phase's)
        scores["full_candidates"] = round(full / max(1, len(queries)), 4)  # share with `depth` notes
        out[phase.name] = {k: round(v, 4) for k, v in scores.items()}
    if by_kind is not None:
        by_kind.update(kind_scores(queries, ranked))
    return out


def kind_scores(
    queries: list[LabelledQuery], ranked: dict[str, list[tuple[list[str], set[str]]]]
) -> dict[str, dict[str, Any]]:
    """A class's queries by their ``kind`` (in first-seen order), each with its count, nDCG@10 per phase and the gap
    hybrid − max(lexical, dense): a cross-language class holds questions, paraphrases and long-note questions, and
    the ranking is judged on each (a class of one kind, or queries without one, gives nothing)."""
    kinds = list(dict.fromkeys(q.kind for q in queries if q.kind))
    if len(kinds) < 2 or any(q.kind is None for q in queries):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        members = [i for i, q in enumerate(queries) if q.kind == kind]
        ndcg = {phase: round(summarize([runs[i] for i in members])["nDCG@10"], 4) for phase, runs in ranked.items()}
        gap = None
        if {"lexical", "dense", "hybrid"} <= set(ndcg):
            gap = round(ndcg["hybrid"] - max(ndcg["lexical"], ndcg["dense"]), 4)
        out[kind] = {"queries": len(members), "nDCG@10": ndcg, "gap": gap}
    return out


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def eval_beir(
    settings: Settings, folder: Path, split: str = "test", limit: int | None = None, **kwargs: Any
) -> EvalReport:
    dataset = BeirDataset.load(folder, split)
    if not dataset.queries:  # a table of 0.000 for no query at all read as a measured zero (exit 0)
        raise KbSearchError(f"no queries to score in {folder}: qrels/{split}.tsv judges none (a kbsearch feedback "
                            "export of no votes writes none)")  # fmt: skip
    queries = dataset.queries[:limit] if limit else dataset.queries
    return run_eval(settings, BeirSource(dataset), queries, dataset.name, key="doc_id", **kwargs)


def eval_kb(settings: Settings, kb: Path, queries_file: Path, limit: int | None = None, **kwargs: Any) -> EvalReport:
    queries = load_queries(queries_file)
    if not queries:
        raise KbSearchError(f"no queries to score in {queries_file}: it lists none")
    queries = queries[:limit] if limit else queries
    return run_eval(settings, LocalSource(kb), queries, kb.name, key="path", **kwargs)


_SKIPPED_SHOWN = 5  # skipped notes the table names


def format_report(report: dict[str, Any]) -> str:
    from kbsearch_tools.cli import _count, _one_line  # (the CLI's: a path escaped for one line, a count)

    index = report.get("index", {})
    skipped = index.get("skipped_notes") or []
    lines = [
        f"eval: {report['dataset']}, {_count(report['queries'], 'query', 'queries')}; index: "
        f"{_count(index.get('notes', 0), 'doc')}{f' ({len(skipped)} skipped)' if skipped else ''}, "
        f"{index.get('chunks')} chunks, {'dense + BM25' if index.get('dense') else 'BM25 only'}",
        f"{'phase':<10}{'P@5':>8}{'nDCG@10':>9}{'MRR@10':>8}{'R@50':>8}{'p50 ms':>9}{'p95 ms':>9}{'degraded':>9}{'full':>6}",
    ]
    for name, m in report["phases"].items():
        lines.append(f"{name:<10}{m['P@5']:>8.3f}{m['nDCG@10']:>9.3f}{m['MRR@10']:>8.3f}{m['Recall@50']:>8.3f}"
                     f"{m['p50_ms']:>9.1f}{m.get('p95_ms', 0.0):>9.1f}{int(m.get('degraded', 0)):>9}{m.get('full_candidates', 0.0):>6.2f}")  # fmt: skip
    for name, reason in report["skipped"].items():
        lines.append(f"{name:<10} skipped: {reason}")
    for item in skipped[:_SKIPPED_SHOWN]:  # as kbsearch index lists them: one line each, a line break shown as \n
        lines.append(f"  not indexed: {_one_line(item['path'])}: {_one_line(item['reason'])}")
    if len(skipped) > _SKIPPED_SHOWN:
        lines.append(f"  not indexed: {len(skipped) - _SKIPPED_SHOWN} more (--json lists them all)")
    for name, used in report.get("models", {}).items():
        lines.append(f"  {name}: {used}")
    lines.append("  full: share of searches whose candidates held --top-k notes (what reaches the reranker)")
    if report.get("settings"):
        lines.append("  settings: " + ", ".join(f"{k}={v}" for k, v in report["settings"].items()))
    return "\n".join(lines)
