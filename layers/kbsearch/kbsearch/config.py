"""One settings model for every entry point (Lambda handlers, ``kbsearch`` CLI, tests).

Plain settings come from the environment (or a ``.env`` file locally). Secrets are resolved lazily by
:class:`Secrets`: a plain variable (``EMBEDDING_API_KEY``) wins; otherwise ``<NAME>_PARAM`` names an SSM
parameter that is fetched with Powertools Parameters (decrypted, cached with a TTL, all names in one batched
call) the first time any secret is needed. Nothing here imports boto3 until a secret is actually read from SSM,
so the health route stays light.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator

from kbsearch.errors import ConfigError, aws_error_code

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters.ssm import SSMProvider

logger = logging.getLogger(__name__)

#: Chunks an embedded (Edge) segment holds before it is sealed (int8 vectors; an HNSW graph when HNSW_M > 0), and at
#: most: each seal is bounded in time and memory (BENCHMARKS.md, "Sealed segments").
EDGE_GRAPH_FROM = 10_000
#: MB a search process reads ahead of the embedded store by default (``QDRANT_EMBEDDED_READAHEAD_MB``): what every
#: search reads whole, and the payloads when they fit whole: at 100x the vault, 309 MiB of int8 vectors and 351 MiB of
#: payloads (BENCHMARKS.md, "Session 37: 100x warm search").
READAHEAD_MB = 768
DEEPINFRA_EMBEDDINGS_URL = "https://api.deepinfra.com/v1/openai/embeddings"
DEEPINFRA_RERANK_URL = "https://api.deepinfra.com/v1/inference/Qwen/Qwen3-Reranker-8B"
DEEPINFRA_CHAT_URL = "https://api.deepinfra.com/v1/openai/chat/completions"
FIREWORKS_EMBEDDINGS_URL = "https://api.fireworks.ai/inference/v1/embeddings"
FIREWORKS_RERANK_URL = "https://api.fireworks.ai/inference/v1/rerank"
#: Bounds of settings no caller can mean past them and the code cannot hold (each was accepted and failed in use:
#: RELIABILITY.md, "Round 24c"): one call's wait, at most a Lambda's whole run (15 min); the age an S3 event can
#: reach in its queue (SQS keeps a message at most 14 days); an Edge segment's size and a search's ``hnsw_ef`` (Edge
#: and Qdrant hold them as 64-bit integers; 100x the defaults).
MAX_CALL_S = 900.0
MAX_EVENT_GRACE_S = 14 * 86_400.0
MAX_GRAPH_FROM = 100 * EDGE_GRAPH_FROM
MAX_HNSW_EF = 100_000

#: The secret settings, by environment name. Each may instead be given as ``<NAME>_PARAM`` (an SSM name).
SECRET_NAMES: tuple[str, ...] = (
    "QDRANT_API_KEY",
    "EMBEDDING_API_KEY",
    "EMBEDDING_FALLBACK_API_KEY",
    "RERANKER_API_KEY",
    "RERANKER_FALLBACK_API_KEY",
    "EXPANSION_API_KEY",
    "SLACK_SIGNING_SECRET",
    "ACCESS_GROUPS",  # the caller mapping of kbsearch.access (API key ids, Slack channels → groups), JSON
)


# The provider settings grouped per role. NamedTuples (immutable, typed) rather than frozen dataclasses: a frozen
# dataclass costs ~0.5 ms to define, six of them a few ms of every cold start.


class Endpoint(NamedTuple):
    """One provider endpoint, primary or fallback alike: where it is, which model, whose key."""

    name: str  # the provider's name as reported in results and metrics (deepinfra, fireworks, ...)
    url: str
    model: str
    secret: str  # the secret setting holding its key, e.g. EMBEDDING_API_KEY
    api_style: str = "auto"  # the rerank contract (auto|native|standard); other roles ignore it

    def usable(self, configured: Collection[str]) -> bool:
        """It has a URL and its key is configured (``configured``: :meth:`Secrets.configured`)."""
        return bool(self.url) and self.secret in configured


class Breaker(NamedTuple):
    threshold: int  # consecutive failures that open it
    cooldown_s: float  # how long an open breaker skips the primary


class EmbeddingRole(NamedTuple):
    """EMBEDDING_*: the embedding model's endpoints (the fallback is used when its URL and key are set) and how
    texts are sent to it."""

    primary: Endpoint
    fallback: Endpoint
    breaker: Breaker
    dimensions: int
    input_format: str  # qwen3 | e5 | none
    batch_size: int
    batch_tokens: int
    concurrency: int
    timeout_s: float  # one indexing request (retried PROVIDER_RETRIES times)
    query_timeout_s: float  # one query request (no retries: the fallback is the retry)
    retries: int


class RerankRole(NamedTuple):
    """RERANKER_* / RERANK_*: the reranker's endpoints, hedging and how its scores are blended."""

    primary: Endpoint
    fallback: Endpoint
    breaker: Breaker
    timeout_s: float
    hedge_s: float | None  # None: no hedging
    passage_tokens: int
    weight: float


class ExpansionRole(NamedTuple):
    """EXPANSION_*: the chat model that writes query variants (one endpoint, no fallback)."""

    primary: Endpoint
    variants: int
    budget_s: float
    cache_size: int
    cache_ttl_s: float


def running_in_lambda() -> bool:
    """True inside a real Lambda execution environment (not ``kbsearch invoke`` / ``sam local``)."""
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME")) and os.environ.get("AWS_SAM_LOCAL") != "true"


_DOTENV_LINE = re.compile(
    r"""^\s*(?:export\s+)?(?P<key>[^=\s]+)\s*=\s*(?:"(?P<double>(?:\\.|[^"\\])*)"\s*(?:\#.*)?"""
    r"""|'(?P<single>(?:\\.|[^'\\])*)'\s*(?:\#.*)?|(?P<bare>(?!["']).*?)(?:\s+\#.*)?)\s*$"""
)
_DOTENV_KEY = re.compile(r"^\s*(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_.]*)\s*=")
_DOUBLE_QUOTED_ESCAPE = re.compile(r"""\\[\\'"abfnrtv]""")


def dotenv_values(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a ``.env`` file as python-dotenv reads them: ``export`` prefixes, ``#`` comments (whole
    lines, or after whitespace following a value), single quotes (``\\'`` and ``\\\\`` decoded) and double quotes
    (backslash escapes decoded); not ``${VAR}`` interpolation nor quoted values over several lines. No file (or not
    a regular file: a directory, a FIFO), no values; one that cannot be read is a :class:`ConfigError`. A byte-order
    mark before the first line (Notepad's "UTF-8 with BOM") is no part of its name: the first setting was read as
    ``\ufeffKB_SOURCE``, ignored, and named beside itself, ``KB_SOURCE is set: a typo for KB_SOURCE?``."""
    values: dict[str, str] = {}
    for number, raw in enumerate(_dotenv_text(path).splitlines(), start=1):
        match = _DOTENV_LINE.match(raw)
        if raw.lstrip().startswith("#"):
            continue
        if match is None:
            # ``KEY=`` then a value that does not read (a quote left open, words after a quoted value): the line
            # was skipped without a word, and the setting it meant fell back to its default (``QDRANT_URL="https://…``
            # left open: kbsearch index wrote a local store, not the cloud collection). A line with no ``=`` is
            # still no setting, skipped as python-dotenv skips it.
            meant = _DOTENV_KEY.match(raw)
            if meant is not None:
                raise ConfigError(f"cannot read {path}: line {number} sets {meant['key'][:60]} but its value does not "
                                  "read (a quote left open, or text after the closing quote?)")  # fmt: skip
            continue
        if match["double"] is not None:
            value = _DOUBLE_QUOTED_ESCAPE.sub(lambda m: codecs.decode(m.group(0), "unicode-escape"), match["double"])
        elif match["single"] is not None:
            value = re.sub(r"\\([\\'])", r"\1", match["single"])
        else:
            value = match["bare"]
        values[match["key"]] = value
    return values


def _dotenv_text(path: Path) -> str:
    """The text of a ``.env`` file ("" when there is none, or it is no regular file: a directory, a FIFO). One that
    is not UTF-8 names the line and the byte (it said only ``UnicodeDecodeError``)."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return ""
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return ""
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {type(exc).__name__}") from None
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = len((raw[: exc.start].decode("utf-8") + ".").splitlines())  # as dotenv_values numbers its lines
        raise ConfigError(f"cannot read {path}: line {line} is not UTF-8 (invalid byte at offset {exc.start}): save "
                          "the file as UTF-8") from None  # fmt: skip


def dotenv_unread(path: Path) -> list[int]:
    """The lines (numbered from 1) of a ``.env`` file that :func:`dotenv_values` does not read: neither blank, nor a
    comment, nor ``KEY=value`` (``KB_SOURCE sample-kb``, ``KB_SOURCE: sample-kb``). Each is ignored, as
    python-dotenv ignores it; a command says so (it said "set KB_SOURCE" of a setting the file seemed to set)."""
    lines = _dotenv_text(path).splitlines()
    return [at for at, raw in enumerate(lines, 1)
            if raw.strip() and not raw.lstrip().startswith("#") and _DOTENV_LINE.match(raw) is None]  # fmt: skip


#: The settings that hold a URL: each is checked when the settings are read, so a typo (``htp://``) stops with one
#: message naming it instead of failing later as "unreachable" (or a traceback).
URL_SETTINGS = (
    "qdrant_url", "embedding_url", "embedding_fallback_url", "reranker_url", "reranker_fallback_url",
    "expansion_url", "kb_base_url",
)  # fmt: skip


def rerank_contract(url: str) -> str | None:
    """The rerank contract a URL's path names (``standard``: ``…/rerank``; ``native``: DeepInfra's
    ``/v1/inference/<model>``), or None when it names neither."""
    path = urlsplit(url).path.rstrip("/")
    if path.endswith("/rerank"):
        return "standard"
    if "/v1/inference/" in path:
        return "native"
    return None


def utf8_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent as UTF-8 (a model name in a JSON body, a URL, the signing secret as an HMAC key),
    or None: a shell's or file's bytes that are not UTF-8, which Python holds as lone surrogates. Never echoes the
    value. The check of every text setting (:meth:`Settings._utf8_text`) and of a URL (:func:`url_problem`, which
    also reads the CLIs' URL arguments)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "holds bytes that are not UTF-8 (a shell or file in another encoding?)"
    return None


def url_problem(value: str) -> str | None:
    """Why ``value`` is not a usable http(s) URL (None: it is, or it is empty, which turns the feature off). Never
    echoes the value: a URL may carry credentials."""
    if not value:
        return None
    if value != value.strip() or any(ord(c) < 33 or c == "\x7f" for c in value):
        return "contains whitespace or control characters"
    not_utf8 = utf8_problem(value)  # httpx's UnicodeEncodeError in the call; a CLI's URL is no setting: checked here
    if not_utf8:
        return not_utf8
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a port that is not a number in 0-65535
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"has the scheme {parts.scheme!r}, not http or https" if parts.scheme else "has no scheme"
    if not parts.hostname:
        return "has no host"
    if port == 0:
        return "has port 0"
    return _host_problem(value, parts.hostname)


def _host_problem(value: str, host: str) -> str | None:
    """Why the URL's host is no name httpx can send a request to, or None. A label ``xn--`` then no valid punycode
    (``xn--a``), a letter IDNA forbids: httpx reads such a host only when it sends, and
    raised an IDNA or Unicode error there, a 500 on every search (urlsplit takes any host). Plain ASCII hosts
    without ``xn--`` are what httpx sends as given: httpx is imported only for the others."""
    if host.isascii() and "xn--" not in host:
        return None
    import httpx

    try:
        httpx.URL(value).host  # noqa: B018 (reading it decodes the name: what a request does)
    except (httpx.InvalidURL, UnicodeError):  # (idna's errors are UnicodeErrors)
        return "has a host name that is no valid international domain name (IDNA)"
    return None


#: Settings whose text is not checked for UTF-8 (:meth:`Settings._utf8_text`): file names, and the keys whose
#: trouble the stage that sends them reports.
_NOT_TEXT_SETTINGS = frozenset({
    "qdrant_path", "kb_source", "slack_feedback_file", "qdrant_api_key", "embedding_api_key",
    "embedding_fallback_api_key", "reranker_api_key", "reranker_fallback_api_key", "expansion_api_key",
    "access_groups",
})  # fmt: skip


class Settings(BaseModel):
    """Every setting kb-search reads. Field ``foo_bar`` is the environment variable ``FOO_BAR`` (any case), read
    whenever the model is built (``Settings(**values)`` or ``model_validate``): the given values, then the environment,
    then ``./.env``, then the defaults. A plain pydantic model with its own reader: pydantic-settings cost ~50 ms of
    every cold start for the few lines it took here."""

    # allow_inf_nan=False: ``inf`` (or ``nan``) for a duration passed ``gt=0``/``ge=0`` and failed where it was used
    # (a wait the clock cannot hold: every embedding call, a sync's tally), not when the settings were read.
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    def __init__(self, **overrides: Any) -> None:
        names = {name.upper() for name in type(self).model_fields}
        found: dict[str, Any] = {}
        for source in (dotenv_values(Path(".env")), os.environ):  # the environment wins over .env
            found.update((key.lower(), value) for key, value in source.items() if key.upper() in names)
        super().__init__(**(found | overrides))

    # Qdrant: Cloud when QDRANT_URL is set, else the embedded store at QDRANT_PATH: Qdrant Edge, or qdrant-client's
    # local mode ("local": where no Edge wheel exists, or to compare).
    qdrant_url: str = ""
    qdrant_path: str = ".kbsearch/qdrant"
    qdrant_embedded: Literal["edge", "local"] = "edge"
    # The embedded (Edge) collection: a segment takes new points until it holds GRAPH_FROM of them; then the
    # indexer seals it: Edge writes its vectors again as int8 (scalar quantisation), which a dense search scans, a
    # quarter of the bytes, rescoring its best candidates with the stored floats; HNSW_M > 0 also builds the
    # segment's HNSW graph of that degree (Qdrant Cloud's is 16). No segment grows past GRAPH_FROM points, so each
    # seal is bounded. Without a graph (the default) a sync builds nothing costly, and a scan of int8 vectors
    # answers as fast as the graphs at 100x the vault (BENCHMARKS.md, "Sealed segments").
    qdrant_embedded_hnsw_m: int = Field(default=0, ge=0, le=64)
    qdrant_embedded_graph_from: int = Field(default=EDGE_GRAPH_FROM, ge=100, le=MAX_GRAPH_FROM)
    # MB a search process has the kernel read ahead when it opens the embedded store: the segments' int8 vectors,
    # then the payloads and the floats when each fits whole (both at 10x the vault; at 100x the payloads, 660 MiB
    # with the int8 vectors, not the floats); 0: none (qdrant/embedded.py READAHEAD; BENCHMARKS.md, "Reading
    # ahead", "Session 37: 100x warm search").
    qdrant_embedded_readahead_mb: int = Field(default=READAHEAD_MB, ge=0)
    qdrant_collection: str = "kb"
    qdrant_timeout_s: float = Field(default=10.0, gt=0, le=MAX_CALL_S)

    # Embeddings (OpenAI-compatible). Qwen3-Embedding-8B on DeepInfra, Fireworks as the fallback.
    embedding_url: str = DEEPINFRA_EMBEDDINGS_URL
    embedding_model: str = "Qwen/Qwen3-Embedding-8B"
    embedding_fallback_url: str = FIREWORKS_EMBEDDINGS_URL
    embedding_fallback_model: str = "fireworks/qwen3-embedding-8b"
    embedding_dimensions: int = Field(default=1024, ge=32, le=4096)
    # How texts are dressed for the model: qwen3 = "Instruct: ...\nQuery:" on queries, documents bare;
    # e5 = "query: " / "passage: "; none = as they are. Recorded in the collection with the model and dimensions.
    embedding_input_format: str = Field(default="qwen3", pattern="^(qwen3|e5|none)$")
    embedding_provider: str = "deepinfra"  # names reported in results and metrics
    embedding_fallback_provider: str = "fireworks"
    embedding_batch_size: int = Field(default=32, ge=1, le=2048)
    embedding_batch_tokens: int = Field(default=16_000, ge=256)
    embedding_concurrency: int = Field(default=4, ge=1, le=64)
    embedding_timeout_s: float = Field(default=30.0, gt=0, le=MAX_CALL_S)
    provider_retries: int = Field(default=3, ge=0, le=10)

    # Reranker: DeepInfra native inference API, Fireworks /v1/rerank as the fallback.
    reranker_url: str = DEEPINFRA_RERANK_URL
    reranker_model: str = "Qwen/Qwen3-Reranker-8B"
    reranker_fallback_url: str = FIREWORKS_RERANK_URL
    reranker_fallback_model: str = "accounts/fireworks/models/qwen3-reranker-8b"
    reranker_provider: str = "deepinfra"
    reranker_fallback_provider: str = "fireworks"
    reranker_api_style: str = Field(default="auto", pattern="^(auto|native|standard)$", validate_default=True)
    reranker_fallback_api_style: str = Field(default="auto", pattern="^(auto|native|standard)$", validate_default=True)
    rerank_timeout_s: float = Field(default=3.0, gt=0, le=MAX_CALL_S)
    rerank_hedge_ms: float = Field(default=600.0, ge=0, le=MAX_CALL_S * 1000)  # 0 turns hedging off
    rerank_passage_tokens: int = Field(default=384, ge=32, le=8000)
    # The final order: rerank_weight x RRF(rerank order) + (1 - rerank_weight) x RRF(fused order), k = rrf_k.
    # 1.0 is the reranker's order alone (fusion only breaks ties); 0.0 ignores the reranker.
    rerank_weight: float = Field(default=0.2, ge=0.0, le=1.0)  # measured (EVAL.md), stand-in reranker
    breaker_threshold: int = Field(default=3, ge=1)
    breaker_cooldown_s: float = Field(default=30.0, ge=0)

    # Query expansion: an OpenAI-compatible chat model (used only when EXPANSION_API_KEY is set).
    expansion_url: str = DEEPINFRA_CHAT_URL
    expansion_model: str = "Qwen/Qwen3-32B"
    expansion_provider: str = "deepinfra"
    expansion_variants: int = Field(default=3, ge=1, le=8)
    expansion_budget_ms: float = Field(default=800.0, gt=0, le=MAX_CALL_S * 1000)
    expansion_cache_size: int = Field(default=512, ge=0)
    expansion_cache_ttl_s: float = Field(default=3600.0, ge=0)

    # Search.
    search_budget_s: float = Field(default=10.0, gt=0, le=28)
    search_candidates: int = Field(default=50, ge=1, le=200)
    # Chunks per leg (the adaptive fusion's searches, or prefetches): the query's dense leg brings this many payloads,
    # a BM25 leg half (the payloads are the cost of a search); notes have several chunks, so fewer than
    # SEARCH_CANDIDATES notes may reach the reranker when they have many.
    search_prefetch_limit: int = Field(default=100, ge=1, le=1000)
    search_hnsw_ef: int = Field(default=256, ge=4, le=MAX_HNSW_EF)
    # RRF: Σ 1 / (k + rank / weight) over the prefetches (Qdrant's zero-based ranks); the seed used k = 60 with
    # equal weights. Defaults measured with a real model (EVAL.md): k = 2, BM25 at 0.1 (each dense prefetch 1.0).
    rrf_k: int = Field(default=2, ge=1)
    search_bm25_weight: float = Field(default=0.1, ge=0.0, le=4.0)
    # adaptive: every leg's candidates in one batch call, fused per query in the service (kbsearch/fusion.py);
    # rrf / dbsf: Qdrant's own fusion of the prefetches (RRF_K and SEARCH_BM25_WEIGHT apply to rrf only).
    search_fusion: str = Field(default="adaptive", pattern="^(adaptive|rrf|dbsf)$")
    # adaptive fusion: a fully covered same-language BM25 leg against dense 1.0; a BM25 match in a note of another
    # language counts by the cross-language weight; an exact match needs this share of the attainable BM25 score.
    search_lexical_weight: float = Field(default=0.7, ge=0.0, le=4.0)
    search_cross_language_weight: float = Field(default=0.1, ge=0.0, le=1.0)
    search_exact_confidence: float = Field(default=0.3, gt=0.0, le=1.0)
    # BM25's clear lead: added to BM25's first note when BM25 is sure of it alone and dense has it among its first
    # three (kbsearch/fusion.py, clear_lead); 0 turns it off.
    search_lead_bonus: float = Field(default=0.075, ge=0.0, le=1.0)
    embedding_query_timeout_s: float = Field(default=2.0, gt=0, le=MAX_CALL_S)
    snippet_chars: int = Field(default=300, ge=40)
    search_prior: bool = False  # ai_weight/status prior on the final score (README "Ranking prior")

    # Slack.
    slack_worker_function: str = ""  # the worker's function name (Lambda); empty → a local thread
    slack_dedupe_table: str = ""  # DynamoDB table for at-most-once answers; empty → in memory
    slack_response_hosts: str = "hooks.slack.com"  # where response_url may point (comma-separated hosts)
    slack_top_k: int = Field(default=5, ge=1, le=10)
    slack_feedback_table: str = ""  # DynamoDB table of 👍/👎 votes (Lambda); empty → SLACK_FEEDBACK_FILE
    slack_feedback_file: str = ".kbsearch/feedback.jsonl"  # votes under kbsearch serve (JSONL)
    # The slash command(s) this app answers (comma-separated); a signed request for any other gets a 400.
    # Each at most 32 characters with its slash: Slack's limit for a manifest's features.slash_commands[].command.
    slack_commands: str = Field(default="/kb", pattern=r"^\s*/[^\s,/]{1,31}\s*(,\s*/[^\s,/]{1,31}\s*)*$")
    kb_base_url: str = ""  # older: titles link to KB_BASE_URL/<path with .md> (KB_NOTE_URL_PATTERN wins)
    # Slack's links to notes: {path} = the note path without .md, {path_md} = with it (percent-encoded).
    kb_note_url_pattern: str = ""

    # The knowledge base: a folder or s3://bucket/prefix.
    kb_source: str = ""

    # Indexer.
    chunk_max_tokens: int = Field(default=400, ge=64, le=8000)
    chunk_overlap_tokens: int = Field(default=40, ge=0, le=1000)
    max_note_bytes: int = Field(default=1024 * 1024, ge=1024)
    # The seconds of CPU time one note's parse may take (a note that takes longer is skipped, with a reason, until it
    # changes); bounded where the indexer parses in a process's main thread (kbsearch index, the Lambdas).
    note_parse_limit_s: float = Field(default=30.0, ge=0.01, le=MAX_CALL_S)
    max_delete_ratio: float = Field(default=0.5, ge=0.0, le=1.0)
    deadline_margin_s: float = Field(default=60.0, ge=0.0, le=MAX_CALL_S)
    index_lease_table: str = ""  # DynamoDB table of the one-run-at-a-time lease (kbsearch.lease); empty → none
    index_lease_ttl_s: float = Field(default=300.0, ge=30.0, le=3600.0)
    # A change younger than this may still have its S3 event in the queue: a reconciling sync does not count it
    # in missed_by_events.
    event_grace_s: float = Field(default=300.0, ge=0.0, le=MAX_EVENT_GRACE_S)
    # Access scopes (kbsearch.access): who may read a note with no frontmatter access and no folder rule.
    # public: everyone; deny: nobody but an unrestricted operator tool (list every readable note or folder).
    access_default: Literal["public", "deny"] = "public"

    # Secrets given directly (local runs). In Lambda only the *_PARAM names are set.
    qdrant_api_key: SecretStr | None = None
    embedding_api_key: SecretStr | None = None
    embedding_fallback_api_key: SecretStr | None = None
    reranker_api_key: SecretStr | None = None
    reranker_fallback_api_key: SecretStr | None = None
    expansion_api_key: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    access_groups: SecretStr | None = None

    # SSM parameter names of the secrets.
    qdrant_api_key_param: str = ""
    embedding_api_key_param: str = ""
    embedding_fallback_api_key_param: str = ""
    reranker_api_key_param: str = ""
    reranker_fallback_api_key_param: str = ""
    expansion_api_key_param: str = ""
    slack_signing_secret_param: str = ""
    access_groups_param: str = ""
    secrets_ttl_s: int = Field(default=300, ge=0)
    # The caller mapping's own, shorter lifetime in the cache (a changed mapping applies within it, no redeploy).
    access_groups_ttl_s: int = Field(default=30, ge=0)

    # The provider settings grouped per role, read from the flat fields above (whose names are the environment
    # variables). Plain properties, not cached: ``model_copy(update=...)`` copies a cache along with the values.

    @field_validator("reranker_api_style", "reranker_fallback_api_style")
    @classmethod
    def _rerank_contract(cls, value: str, info: ValidationInfo) -> str:
        """``auto`` needs a URL whose path names the contract: else every search failed building its reranker
        (a 500 each); now one message naming the setting, as for a bad URL."""
        url_field = "reranker_url" if info.field_name == "reranker_api_style" else "reranker_fallback_url"
        url = info.data.get(url_field)
        if value == "auto" and isinstance(url, str) and url and not url_problem(url) and not rerank_contract(url):
            raise ValueError(f"'auto' cannot tell the rerank contract from {url_field.upper()}'s path (neither "
                             "…/rerank nor …/v1/inference/<model>): set it to native or standard")  # fmt: skip
        return value

    @field_validator("index_lease_ttl_s")
    @classmethod
    def _lease_outlives_a_write(cls, value: float, info: ValidationInfo) -> float:
        """A sync starts a write only while its lease holds for the write's margin (``QDRANT_TIMEOUT_S`` and the
        clocks' slack, :func:`kbsearch.lease.write_margin`): a lease shorter than twice that had every write wait on
        a renewal, and one shorter than the margin itself every write refused. Without ``INDEX_LEASE_TABLE``
        there is no lease (the search, ``kbsearch index`` locally): nothing to check."""
        from kbsearch.lease import CLOCK_SLACK_S, write_margin

        timeout = info.data.get("qdrant_timeout_s")
        leased = bool(info.data.get("index_lease_table"))
        if leased and isinstance(timeout, int | float) and value < 2 * write_margin(timeout):
            raise ValueError(f"must be at least twice QDRANT_TIMEOUT_S + {CLOCK_SLACK_S:g} s "
                             f"({2 * write_margin(timeout):g} s): a write is started only while the lease holds "
                             "for its timeout")  # fmt: skip
        return value

    @field_validator("qdrant_path")
    @classmethod
    def _store_folder(cls, value: str) -> str:
        """An empty ``QDRANT_PATH`` (a variable meant to be set, empty) put the store in the working folder."""
        if not value.strip():
            raise ValueError("empty: unset it for the default .kbsearch/qdrant, or name a folder")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _utf8_text(cls, value: Any, info: ValidationInfo) -> Any:
        """A setting's text is sent as UTF-8 (a model name in a JSON body, the signing secret as an HMAC key, a
        table name to AWS): a shell's bytes that are not UTF-8 (Python holds them as lone surrogates) made such an
        ``EXPANSION_MODEL`` or ``EMBEDDING_FALLBACK_MODEL`` a 500 on every search, ``kbsearch slack`` a traceback,
        ``kbsearch serve`` blame the store of seen signatures. Refused here, never shown; but for the settings that
        name files (Linux file names need not be UTF-8, and such a folder is indexed) and the provider keys (a key no
        header can carry degrades its stage, naming the setting: round 17)."""
        problem = utf8_problem(value) if isinstance(value, str) and info.field_name not in _NOT_TEXT_SETTINGS else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator(*URL_SETTINGS)
    @classmethod
    def _url(cls, value: str) -> str:
        problem = url_problem(value)
        if problem:
            raise ValueError(f"{problem} (expected http(s)://host[:port][/path], or empty)")
        return value

    @property
    def breaker(self) -> Breaker:
        return Breaker(self.breaker_threshold, self.breaker_cooldown_s)

    @property
    def embedding(self) -> EmbeddingRole:
        return EmbeddingRole(
            primary=Endpoint(self.embedding_provider, self.embedding_url, self.embedding_model, "EMBEDDING_API_KEY"),
            fallback=Endpoint(
                self.embedding_fallback_provider,
                self.embedding_fallback_url,
                self.embedding_fallback_model,
                "EMBEDDING_FALLBACK_API_KEY",
            ),
            breaker=self.breaker,
            dimensions=self.embedding_dimensions,
            input_format=self.embedding_input_format,
            batch_size=self.embedding_batch_size,
            batch_tokens=self.embedding_batch_tokens,
            concurrency=self.embedding_concurrency,
            timeout_s=self.embedding_timeout_s,
            query_timeout_s=self.embedding_query_timeout_s,
            retries=self.provider_retries,
        )

    @property
    def reranking(self) -> RerankRole:
        return RerankRole(
            primary=Endpoint(
                self.reranker_provider,
                self.reranker_url,
                self.reranker_model,
                "RERANKER_API_KEY",
                self.reranker_api_style,
            ),
            fallback=Endpoint(
                self.reranker_fallback_provider,
                self.reranker_fallback_url,
                self.reranker_fallback_model,
                "RERANKER_FALLBACK_API_KEY",
                self.reranker_fallback_api_style,
            ),
            breaker=self.breaker,
            timeout_s=self.rerank_timeout_s,
            hedge_s=self.rerank_hedge_ms / 1000 if self.rerank_hedge_ms > 0 else None,
            passage_tokens=self.rerank_passage_tokens,
            weight=self.rerank_weight,
        )

    @property
    def expansion(self) -> ExpansionRole:
        return ExpansionRole(
            primary=Endpoint(self.expansion_provider, self.expansion_url, self.expansion_model, "EXPANSION_API_KEY"),
            variants=self.expansion_variants,
            budget_s=self.expansion_budget_ms / 1000,
            cache_size=self.expansion_cache_size,
            cache_ttl_s=self.expansion_cache_ttl_s,
        )

    @property
    def slack_command_names(self) -> frozenset[str]:
        """``SLACK_COMMANDS`` as a set of lower-case names (Slack sends them as the app declares them)."""
        return frozenset(name.strip().lower() for name in self.slack_commands.split(",") if name.strip())

    @property
    def store_kind(self) -> str:
        """``cloud`` when a Qdrant URL is configured, ``embedded`` otherwise."""
        return "cloud" if self.qdrant_url else "embedded"

    def secret_param(self, name: str) -> str:
        return str(getattr(self, f"{name.lower()}_param"))

    def plain_secret(self, name: str) -> str | None:
        value: SecretStr | None = getattr(self, name.lower())
        if value is None or not value.get_secret_value():
            return None
        return value.get_secret_value()

    def require(self, *names: str) -> None:
        """Raise :class:`ConfigError` naming the first setting in ``names`` that is empty."""
        for name in names:
            value = getattr(self, name.lower())
            if value in (None, ""):
                raise ConfigError(f"missing required setting {name}: set the environment variable {name}"
                                  f"{misspelt(name)}")  # fmt: skip


def bare_secret(value: str) -> str:
    """A secret without the white space around it (a newline pasted into SSM or a shell) nor a byte-order mark
    before it (a file saved by an editor that writes one: ``--value file://key.txt``, ``$(cat key.txt)``): no key,
    signing secret or caller mapping holds either, an HTTP header cannot carry them, and JSON cannot start with a
    BOM. One elsewhere in the value is left, and the key refused (``header_safe``)."""
    return value.strip().removeprefix("\ufeff").strip()


def misspelt(name: str) -> str:
    """`` (KBSOURCE is set: a typo for KB_SOURCE?)`` when a variable set here (the environment or ``./.env``),
    not itself a setting, is one slip away from the setting ``name``; else "". A typo'd setting is ignored
    without a word otherwise: a missing KB_SOURCE, BM25 only for want of EMBEDDING_API_KEY."""
    import difflib

    close = difflib.get_close_matches(name, sorted(_given_names() - _SETTING_NAMES), n=1, cutoff=0.85)
    return f" ({close[0]} is set: a typo for {name}?)" if close else ""


_SETTING_NAMES = frozenset(field.upper() for field in Settings.model_fields)
#: Variables already named as near misses in this process (each is said once, however often settings are read).
_NAMED_NEAR_MISSES: set[str] = set()


def _given_names() -> set[str]:
    """The variables set (non-empty) in the environment or ``./.env``, upper-cased."""
    return {key.upper() for key, value in {**dotenv_values(Path(".env")), **os.environ}.items() if value}


def near_misses() -> dict[str, str]:
    """Variables set here that are no setting but one slip from one (``ACCES_DEFAULT`` → ``ACCESS_DEFAULT``):
    {variable: setting}. Compared only with the settings sharing its first two letters (the environment of a
    Lambda or a shell holds dozens of variables: all against all took ~30 ms of every start)."""
    import difflib

    found = {}
    for name in sorted(_given_names() - _SETTING_NAMES):
        candidates = [setting for setting in _SETTING_NAMES if setting[:2] == name[:2]]
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.85) if candidates else []
        if close:
            found[name] = close[0]
    return found


def unnamed_near_misses() -> dict[str, str]:
    """:func:`near_misses` not yet named in this process, from now on counted as named: each is said once, by
    whichever says it first (a command's own line on stderr, before it reads its settings; else the log)."""
    found = {name: setting for name, setting in near_misses().items() if name not in _NAMED_NEAR_MISSES}
    _NAMED_NEAR_MISSES.update(found)
    return found


def _name_near_misses() -> None:
    """Log each variable that looks like a misspelt setting once per process: a setting misspelt was ignored
    without a word (``ACCES_DEFAULT=deny`` left every note without a rule public; ``MAX_DELETE_RATO=0.1`` left
    the mass-delete guard at half the KB). Never the value: the variable may hold a key."""
    for name, setting in unnamed_near_misses().items():
        logger.warning(f"{name} is set but is no setting, so it is ignored: a typo for {setting}?")


def _read_settings(**overrides: Any) -> Settings:
    _name_near_misses()
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]).upper() if err.get("loc") else "?"
        message = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"invalid setting {name}: {message}") from None


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment; a bad or missing value stops with one clear message.

    In a real Lambda, ``QDRANT_URL`` is required: the embedded store is for laptops and CI only.
    """
    settings = _read_settings(**overrides)
    if running_in_lambda():
        settings.require("QDRANT_URL")
    return settings


def load_handler_settings(*required: str) -> tuple[Settings, ConfigError | None]:
    """Settings for a Lambda handler at import time, which must never raise: a crash at import fails the
    SnapStart version publish (and the deploy) far from its cause. Returns the settings and the configuration
    problem, if any (an invalid value, or an empty required setting, named in the message); with an invalid
    value the settings are the defaults. Handlers report the problem on /health and refuse work with it."""
    try:
        settings = _read_settings()
    except ConfigError as exc:
        return Settings.model_construct(), exc
    try:
        settings.require(*(("QDRANT_URL",) if running_in_lambda() else ()), *required)
    except ConfigError as exc:
        return settings, exc
    return settings, None


def _quiet_logger(name: str) -> None:
    log = logging.getLogger(name)
    if log.getEffectiveLevel() < logging.WARNING:
        log.setLevel(logging.WARNING)


#: Where :func:`_confirm_missing` puts the parameters it could not read (parameter → why) in a batched answer.
_UNREAD = "_unread"


def _confirm_missing(provider: SSMProvider, answer: Any) -> Any:
    """Powertools' batched answer with its ``_errors`` checked one parameter at a time. It lists there the
    parameters SSM says do not exist, and also every parameter of the batch when ``GetParameters`` failed with
    ``InvalidKeyId`` (one SecureString whose KMS key is gone, disabled or denied) or ``InternalServerError`` (SSM
    failing): read as "not found", every secret was unset for ``SECRETS_TTL_S``, its warning once per process. Each
    listed parameter is read alone: a value is kept, ``ParameterNotFound`` stays missing, and another error lists it
    under :data:`_UNREAD`. When no parameter could be read and some failed, the read raises (the outage's path)."""
    if not isinstance(answer, dict) or not answer.get("_errors"):
        return answer
    from botocore.exceptions import ClientError

    missing: list[str] = []
    unread: dict[str, str] = {}
    first: Exception | None = None
    for param in answer["_errors"]:
        try:
            found = provider.client.get_parameter(Name=param, WithDecryption=True)
            answer[param] = found["Parameter"]["Value"]
        except ClientError as exc:
            code = aws_error_code(exc) or type(exc).__name__
            if code in ("ParameterNotFound", "ParameterVersionNotFound"):
                missing.append(param)
            else:
                unread[param] = code
                first = first or exc
    if first is not None and not any(p not in unread for p in answer if p != "_errors"):
        raise first  # nothing could be read: SSM failing, or denied, as a whole
    return {**{k: v for k, v in answer.items() if k != "_errors"}, "_errors": missing, _UNREAD: unread}


class Secrets:
    """Resolves secret settings; SSM values are fetched in one batched call and cached for ``secrets_ttl_s``
    (the caller mapping, ``ACCESS_GROUPS``, for ``access_groups_ttl_s``: :meth:`ttl`).

    ``get(name)`` returns ``None`` for a secret that is not configured (the feature that needs it is then off), or
    whose parameter SSM says does not exist; a parameter SSM cannot give (a SecureString that does not decrypt, SSM
    failing) raises :class:`ConfigError` (the feature degrades) while the others are read, and is asked again after
    ``FAILURE_TTL_S`` (:func:`_confirm_missing`).
    ``refresh()`` drops the cache so the next ``get`` refetches: providers call it once after a 401.
    Values never appear in ``repr``, logs or exceptions.
    """

    def __init__(self, settings: Settings, ssm: SSMProvider | None = None) -> None:
        self._settings = settings
        self._ssm = ssm
        self._lock = threading.Lock()  # held while SSM is read
        self._seen_lock = threading.Lock()
        # the last SSM answer and when it came: within SECRETS_TTL_S a read is a dictionary lookup, no SSM call and
        # no helper thread (every provider call reads its key)
        self._cached: tuple[float, dict[str, Any]] | None = None
        # parameters the last read could not read (not "not found": a key that does not decrypt, SSM failing on
        # them) → why; their ``get`` raises ConfigError, and the read is retried after FAILURE_TTL_S
        self._unread: dict[str, str] = {}
        self._warned: set[str] = set()
        self._failed_at: float | None = None
        self._failure: ConfigError | None = None
        self._seen: set[str] = set()
        self._reread_at: float | None = None  # when a request's wrong signature last had SSM read (:meth:`reread`)

    def __repr__(self) -> str:
        return f"Secrets(configured={sorted(self.configured())})"

    def configured(self) -> set[str]:
        """Names of the secrets that have a value or an SSM parameter name (without fetching anything)."""
        s = self._settings
        return {n for n in SECRET_NAMES if s.plain_secret(n) is not None or s.secret_param(n)}

    def _ssm_names(self) -> dict[str, str]:
        s = self._settings
        return {n: s.secret_param(n) for n in SECRET_NAMES if s.plain_secret(n) is None and s.secret_param(n)}

    def prepare(self) -> None:
        """Build the SSM client now when any secret is read from SSM: botocore's import and service model take
        ~0.5 s on a cold container (more on a busy host) and no call to SSM, so the service builds it and a search's
        budget pays only for the read. A client that cannot be built (no region) is reported by that read."""
        if not self._ssm_names():
            return
        with self._lock, contextlib.suppress(Exception):
            self._provider()

    def _provider(self) -> SSMProvider:
        # botocore logs response bodies (parameter values) at DEBUG: never let that through.
        _quiet_logger("botocore")
        if self._ssm is None:
            from aws_lambda_powertools.utilities.parameters.ssm import SSMProvider
            from botocore.config import Config

            # Bounded: a hung SSM must not eat a search's budget (the default read timeout is 60 s).
            timeouts = Config(connect_timeout=2, read_timeout=3, retries={"max_attempts": 2, "mode": "standard"})
            self._ssm = SSMProvider(boto_config=timeouts)
        return self._ssm

    def get(self, name: str, timeout_s: float | None = None) -> str | None:
        """The secret's value (None when it is not configured); a read from SSM takes at most ``timeout_s``
        (and ``FETCH_TIMEOUT_S``), so a caller with a deadline passes what it has left. Whitespace around it (a
        newline pasted into SSM or a shell) and a byte-order mark before it are not part of it (:func:`bare_secret`)."""
        if name not in SECRET_NAMES:
            raise KeyError(f"unknown secret {name}")
        plain = self._settings.plain_secret(name)
        if plain is not None:
            return bare_secret(plain)
        param = self._settings.secret_param(name)
        if not param:
            return None
        fetched = self._fetch(timeout_s, self.ttl(name))
        reason = self._unread.get(param)  # replaced whole by each read, never changed in place
        if reason is not None:
            raise ConfigError(f"cannot read {name} from SSM Parameter Store ({reason})")
        value = fetched.get(param)
        if value:
            with self._seen_lock:
                self._seen.add(value)
        return bare_secret(value) if value else value

    def ttl(self, name: str) -> int:
        """How long a value read from SSM serves ``get(name)`` before SSM is read again."""
        s = self._settings
        return s.access_groups_ttl_s if name == "ACCESS_GROUPS" else s.secrets_ttl_s

    def known_values(self) -> list[str]:
        """Every secret value this process holds (plain settings and values read from SSM so far), for redacting
        text that came from outside (a provider that echoes the key in its error). Fetches nothing."""
        plain = [v for v in (self._settings.plain_secret(n) for n in SECRET_NAMES) if v]
        with self._seen_lock:  # never waits on an SSM read in progress
            values = {*plain, *self._seen}
        return sorted({v for v in values | {bare_secret(v) for v in values} if v}, key=len, reverse=True)

    #: After SSM fails, further reads fail fast for this long: an outage costs one timeout, not one per call.
    FAILURE_TTL_S = 15.0

    #: The longest one SSM read may take, whatever the socket does (botocore's timeouts are per read, so a
    #: server that drips its answer would otherwise hold the caller for ever).
    FETCH_TIMEOUT_S = 5.0

    def prefetch(self, timeout_s: float | None = None) -> None:
        """Read the SSM secrets now, within ``timeout_s`` (at most ``FETCH_TIMEOUT_S``), so that the calls that
        need them later read the cache and no stage's budget pays for SSM: when a container builds its service,
        and again (a cache hit while the TTL holds) at the start of each search. A failure is remembered
        (``FAILURE_TTL_S``; the providers then degrade), not raised."""
        if not self._ssm_names():
            return
        with contextlib.suppress(ConfigError):
            self._fetch(timeout_s)

    def _fetch(
        self, timeout_s: float | None = None, max_age_s: int | None = None, remember_failure: bool = True
    ) -> dict[str, str]:
        """The SSM values, from the cache when its last read is younger than ``max_age_s`` (the asking secret's
        :meth:`ttl`), else one batched read (in which Powertools re-reads only the parameters older than their
        own TTL). A value still within its TTL is served while SSM fails; an expired one is not: its read
        raises :class:`ConfigError` (for ``ACCESS_GROUPS``: callers get ``public`` only, never a stale grant).
        A read that fails is remembered for ``FAILURE_TTL_S`` (later reads fail at once) unless
        ``remember_failure`` is false (:meth:`reread`: a shorter wait, which anyone can trigger)."""
        names = self._ssm_names()
        wanted = sorted(set(names.values()))
        max_age = self._settings.secrets_ttl_s if max_age_s is None else max_age_s
        limit = self.FETCH_TIMEOUT_S if timeout_s is None else max(0.05, min(timeout_s, self.FETCH_TIMEOUT_S))
        # Another request reading SSM holds the lock: wait for it no longer than this read may take.
        if not self._lock.acquire(timeout=limit):
            raise ConfigError("the secrets are being read from SSM by another request; not within this deadline")
        try:
            cached = self._cached
            # a read that could not read some parameters is tried again as soon as an outage is (FAILURE_TTL_S)
            fresh = cached is not None and time.monotonic() - cached[0] < (
                min(max_age, self.FAILURE_TTL_S) if self._unread else max_age
            )
            if not fresh and self._failure is not None and self._failed_at is not None:
                if time.monotonic() - self._failed_at < self.FAILURE_TTL_S:
                    raise self._failure
                self._failure = self._failed_at = None
            try:
                if fresh and cached is not None:
                    raw = cached[1]
                else:
                    ttls = {param: min(self.ttl(n) for n, p in names.items() if p == param) for param in wanted}
                    raw = self._bounded_get(ttls, limit)
            except Exception as exc:
                # botocore messages name the parameter or the credential problem, never a value.
                failure = ConfigError(f"cannot read secrets from SSM Parameter Store ({type(exc).__name__}): {exc}")
                if remember_failure:
                    self._failure, self._failed_at = failure, time.monotonic()
                raise failure from None
            if not isinstance(raw, dict):
                raw = {}
            if raw is not (cached[1] if cached else None):
                unread = raw.pop(_UNREAD, {})
                if not remember_failure and cached is not None:
                    # a re-read anyone can trigger, half answered: a parameter it could not read keeps the value read
                    # before (the cache's age is kept below, so that value still ends with its TTL)
                    for kept in [p for p in unread if cached[1].get(p)]:
                        raw[kept] = cached[1][kept]
                        del unread[kept]
                self._unread = unread
                # a read for a short-lived value (the caller mapping) re-reads only what is older than its own TTL:
                # the others came from Powertools' cache, so the cache stays as old as the last read of them all
                partial = cached is not None and max_age < self._settings.secrets_ttl_s
                self._cached = (cached[0] if cached is not None and partial else time.monotonic(), raw)
        finally:
            self._lock.release()
        missing = [str(p) for p in raw.get("_errors", [])]
        for param in missing:
            if param not in self._warned:
                self._warned.add(param)
                logger.warning("SSM parameter %s not found: the secret it names is treated as unset", param)
        return {k: str(v) for k, v in raw.items() if k != "_errors"}

    def _bounded_get(self, ttls: dict[str, int], limit_s: float) -> Any:
        """One batched, decrypted SSM read of these parameters (each cached by Powertools for its TTL) on a helper
        thread, abandoned after ``limit_s`` (TimeoutError)."""
        provider = self._provider()
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def read() -> None:
            try:
                value = provider.get_parameters_by_name(
                    {p: {"max_age": ttl} for p, ttl in ttls.items()},
                    decrypt=True,
                    max_age=self._settings.secrets_ttl_s,
                    raise_on_error=False,
                )
                outcome["value"] = _confirm_missing(provider, value)
            except Exception as exc:
                outcome["error"] = exc
            finally:
                done.set()

        threading.Thread(target=read, name="ssm-read", daemon=True).start()
        if not done.wait(limit_s):
            raise TimeoutError(f"no complete answer within {limit_s:.1f}s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")

    #: A secret a caller's request proves wrong (a Slack signature that does not verify) is read from SSM again at
    #: most this often: anyone can send such a request, and each must not cost an SSM read.
    REREAD_EVERY_S = 15.0

    def reread(self, name: str, timeout_s: float | None = None, since: float | None = None) -> str | None:
        """The secret ``name`` read from SSM again, when a request signed with it did not verify and it may have
        been rotated there (Slack's signing secret, regenerated and stored with ``--overwrite``): its value, or None
        when it is not read from SSM, when a wrong signature had it read again less than :data:`REREAD_EVERY_S` ago
        (anyone can send one), or when SSM cannot give it within ``timeout_s`` (the values read before are kept,
        and so is what the container knows of SSM: a re-read that fails or is late is not remembered as an outage,
        which would fail every read for ``FAILURE_TTL_S``, ``ACCESS_GROUPS``'s and a real command's among them).
        ``since`` (a :func:`time.monotonic` time: when the request began): values read from SSM after it are not read
        again (SSM has nothing newer: a cold container's first forged request cost two reads)."""
        if self._settings.plain_secret(name) is not None or not self._settings.secret_param(name):
            return None
        limit = self.FETCH_TIMEOUT_S if timeout_s is None else max(0.05, min(timeout_s, self.FETCH_TIMEOUT_S))
        end = time.monotonic() + limit  # the whole wait: for the lock, then for SSM
        if not self._lock.acquire(timeout=limit):  # another request is reading SSM: not within this wait
            return None
        try:
            now = time.monotonic()
            if self._reread_at is not None and now - self._reread_at < self.REREAD_EVERY_S:
                return None
            if since is not None and self._cached is not None and self._cached[0] >= since:
                self._reread_at = now  # read during this request: as good as a re-read, and counted as one
                return None
            self._reread_at = now
            if self._ssm is not None:
                self._ssm.clear_cache()  # Powertools' own cache, which would answer the read below
        finally:
            self._lock.release()
        try:
            left = end - time.monotonic()
            self._fetch(left, max_age_s=0, remember_failure=False)  # the values read before serve their TTL
            return self.get(name, max(0.05, end - time.monotonic()))
        except ConfigError:
            return None

    def refresh(self) -> None:
        """Forget cached SSM values (after a provider answered 401: the key may have been rotated)."""
        with self._lock:
            self._cached = None
            self._failure = self._failed_at = None
            if self._ssm is not None:
                self._ssm.clear_cache()
