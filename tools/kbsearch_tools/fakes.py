"""Loopback HTTP fakes of DeepInfra and Fireworks that speak their JSON contracts (see shared/reference/providers.md).

Used by the tests and by `kbsearch bench`; never by the services themselves.

They check requests as strictly as the real APIs (auth, model name, unknown fields where the provider rejects
them, ``documents`` not ``passages``) and can be told to fail, hang, rate-limit or answer garbage. Embeddings are
deterministic bag-of-words hashes (similar texts get similar vectors), returned unnormalised on purpose.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class Fault:
    """How the next requests of one operation misbehave. ``times`` limits it to the first N requests."""

    status: int | None = None
    retry_after: str | None = None
    hang_s: float = 0.0
    garbage: bool = False
    wrong_dim: int | None = None
    short: bool = False
    nan: bool = False
    drip_s: float = 0.0  # send the whole answer (status line, headers, body) one byte per drip_s seconds
    body: bytes | None = None  # answer exactly these bytes (200, application/json) instead of a real answer
    times: int | None = None
    used: int = 0
    after: int = 0  # let the first ``after`` requests through (a provider that goes down mid-run)
    passed: int = 0

    def active(self) -> bool:
        if self.passed < self.after:
            self.passed += 1
            return False
        return self.times is None or self.used < self.times


def count_tokens(text: str) -> int:
    """Roughly what the real tokenizers report: ~4/3 tokens per word."""
    return max(1, (len(_WORD.findall(text)) * 4 + 2) // 3)


@functools.lru_cache(maxsize=1 << 17)
def _word_slot(word: str, dims: int) -> tuple[int, float]:
    """Where a word adds to a fake embedding, and with which sign (a hash: the same for every text)."""
    h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
    return h % dims, 1.0 if (h >> 32) & 1 else -1.0


def fake_embedding(text: str, dims: int) -> list[float]:
    vec = [0.0] * dims
    body = text.split("\nQuery:", 1)[-1]  # the instruction is not content
    for word in _WORD.findall(body.lower()):
        slot, sign = _word_slot(word, dims)
        vec[slot] += sign
    if not any(vec):
        vec[0] = 1.0
    return [2.5 * x for x in vec]  # deliberately not unit length


_TRANSLATIONS = {
    "rotate": "ротация", "keys": "ключей", "key": "ключ", "snapshot": "снапшот", "restore": "восстановление",
    "reindex": "переиндексация", "reranker": "реранкер", "outage": "сбой", "index": "индекс",
    "ротация": "rotate", "ключей": "keys", "снапшот": "snapshot", "восстановление": "restore",
    "переиндексация": "reindex", "реранкер": "reranker", "сбой": "outage", "индексатор": "indexer",
}  # fmt: skip


def default_rewrites(query: str) -> list[str]:
    """Three deterministic rewrites, the last a word-by-word "translation" (ru ↔ en) from a tiny dictionary."""
    words = _WORD.findall(query.lower())
    translated = " ".join(_TRANSLATIONS.get(w, w) for w in words)
    return [f"{query} guide", f"how to {query}", translated or query]


def relevance(query: str, document: str) -> float:
    q = set(_WORD.findall(query.lower()))
    d = set(_WORD.findall(document.lower()))
    if not q:
        return 0.0
    return round(1 / (1 + math.exp(-(6 * len(q & d) / len(q) - 3))), 6)


@dataclass
class Recorded:
    path: str
    body: Any
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)
    served_s: float = 0.0  # time this fake spent answering (its latency, sleeps included)


#: What a connection's thread raises when its client went away mid-exchange (a reset, a closed pipe): the client's
#: doing (a caller's deadline, a test that stops reading), not the server's problem.
CLIENT_GONE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class LoopbackHTTPServer(ThreadingHTTPServer):
    """The threaded HTTP server of every loopback fake (these providers, the oracle, the tests' own S3 and Qdrant
    stand-ins). socketserver printed a traceback to stderr for anything a connection's thread raised, a client
    that reset its connection too: CI logs filled with ``ConnectionResetError`` tracebacks that were no problem.
    A client gone is quiet now; anything else keeps socketserver's traceback (a fake's own bug shows)."""

    request_queue_size = 128  # the default backlog of 5 resets connections under concurrent load
    daemon_threads = True
    stopped = False  # set by the fake's stop(): an answer still dripping ends

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], CLIENT_GONE):
            return
        super().handle_error(request, client_address)


_Server = LoopbackHTTPServer


class _LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 and a free port, with ``handler`` bound to this object."""

    def _listen(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self.server = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.stopped = True  # an answer still dripping ends (drip): its client sees the connection close
        self.server.shutdown()
        self.server.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


class FakeProvider(_LoopbackServer):
    """One provider (``deepinfra`` or ``fireworks``) on 127.0.0.1, on a free port."""

    EMBED_MODEL: ClassVar[dict[str, str]] = {
        "deepinfra": "Qwen/Qwen3-Embedding-8B",
        "fireworks": "fireworks/qwen3-embedding-8b",
    }
    RERANK_MODEL: ClassVar[dict[str, str]] = {
        "deepinfra": "Qwen/Qwen3-Reranker-8B",
        "fireworks": "accounts/fireworks/models/qwen3-reranker-8b",
    }

    def __init__(
        self, flavor: str, api_key: str = "test-key", latency_s: float = 0.0, latency: dict[str, float] | None = None
    ) -> None:
        assert flavor in ("deepinfra", "fireworks")
        self.flavor = flavor
        self.api_key = api_key
        self.latency_s = latency_s
        #: per-operation latency in seconds (embeddings, rerank, chat), over ``latency_s``
        self.latency: dict[str, float] = dict(latency or {})
        self.faults: dict[str, Fault] = {}
        #: the chat model's rewrites of a query (what expansion gets back); tests may replace it
        self.rewrite: Callable[[str], list[str]] = default_rewrites
        self._listen(type("Handler", (_Handler,), {"fake": self}))

    @property
    def embeddings_url(self) -> str:
        path = "/v1/openai/embeddings" if self.flavor == "deepinfra" else "/inference/v1/embeddings"
        return self.base + path

    @property
    def chat_url(self) -> str:
        path = "/v1/openai/chat/completions" if self.flavor == "deepinfra" else "/inference/v1/chat/completions"
        return self.base + path

    @property
    def rerank_url(self) -> str:
        path = "/v1/inference/Qwen/Qwen3-Reranker-8B" if self.flavor == "deepinfra" else "/inference/v1/rerank"
        return self.base + path

    #: kb-search's provider roles (the prefix of their environment variables) and the URL of this fake each calls
    ROLE_URLS: ClassVar[dict[str, str]] = {
        "EMBEDDING": "embeddings_url",
        "RERANKER": "rerank_url",
        "EXPANSION": "chat_url",
    }

    def env(self, roles: Sequence[str] = tuple(ROLE_URLS), fallback: bool = False) -> dict[str, str]:
        """The environment variables that make this fake the primary (or ``fallback``) endpoint of ``roles``:
        ``<ROLE>[_FALLBACK]_URL`` and ``<ROLE>[_FALLBACK]_API_KEY``."""
        suffix = "_FALLBACK" if fallback else ""
        env: dict[str, str] = {}
        for role in roles:
            env[f"{role}{suffix}_URL"] = getattr(self, self.ROLE_URLS[role])
            env[f"{role}{suffix}_API_KEY"] = self.api_key
        return env

    def calls(self, operation: str) -> list[Recorded]:
        return [r for r in self.requests if _operation(r.path) == operation]

    def fail(self, operation: str, **kwargs: Any) -> None:
        self.faults[operation] = Fault(**kwargs)

    def heal(self) -> None:
        self.faults.clear()

    # -- request handling ----------------------------------------------------------------------------------------
    def _error(self, status: int, message: str) -> tuple[int, Any]:
        if self.flavor == "deepinfra":
            return status, {"detail": message}
        return status, {"error": {"type": "invalid_request_error", "message": message}}

    def handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
        started = time.monotonic()
        record = Recorded(path, None, headers)
        try:
            return self._handle(path, headers, raw, record)
        finally:
            record.served_s = time.monotonic() - started

    def _handle(
        self, path: str, headers: dict[str, str], raw: bytes, record: Recorded
    ) -> tuple[int, Any, dict[str, str]]:
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        record.body = body
        with self._lock:
            self.requests.append(record)
            op = _operation(path)
            fault = self.faults.get(op)
            if fault is not None and fault.active():
                fault.used += 1
            else:
                fault = None
        delay = self.latency.get(_operation(path), self.latency_s)
        if delay:
            time.sleep(delay)
        if fault and fault.hang_s:
            time.sleep(fault.hang_s)
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return (*self._error(401, "invalid API key"), {})
        if fault and fault.status:
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return (*self._error(fault.status, f"injected {fault.status}"), extra)
        if fault and fault.garbage:
            return 200, b"<html>502 Bad Gateway</html>", {}
        if fault and fault.body is not None:
            return 200, fault.body, {"Content-Type": "application/json"}
        if not isinstance(body, dict):
            return (*self._error(400, "body must be a JSON object"), {})
        if op == "embeddings":
            return (*self._embeddings(body, fault), {})
        if op == "rerank":
            return (*self._rerank(body, fault), {})
        if op == "chat":
            return (*self._chat(body, fault), {})
        return (*self._error(404, f"no route {path}"), {})

    def _embeddings(self, body: dict[str, Any], fault: Fault | None) -> tuple[int, Any]:
        allowed = {"model", "input", "dimensions", "user"} | (
            {"encoding_format"} if self.flavor == "deepinfra" else set()
        )
        extra = set(body) - allowed
        if extra:
            return self._error(
                400 if self.flavor == "fireworks" else 422, f"Extra inputs are not permitted: {sorted(extra)}"
            )
        if body.get("model") != self.EMBED_MODEL[self.flavor]:
            return self._error(404, f"model {body.get('model')!r} not found")
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
            return self._error(422, "input must be a non-empty list of strings")
        if self.flavor == "fireworks" and len(inputs) > 2048:
            return self._error(400, "at most 2048 inputs")
        dims = int(body.get("dimensions") or 4096)
        if fault and fault.wrong_dim:
            dims = fault.wrong_dim
        data: list[dict[str, Any]] = [
            {"object": "embedding", "index": i, "embedding": fake_embedding(t, dims)} for i, t in enumerate(inputs)
        ]
        if fault and fault.short:
            data = data[:-1]
        if fault and fault.nan and data:
            data[0]["embedding"][0] = float("nan")
        tokens = sum(count_tokens(t) for t in inputs)
        return 200, {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _chat(self, body: dict[str, Any], fault: Fault | None) -> tuple[int, Any]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not isinstance(body.get("model"), str):
            return self._error(422, "model and messages are required")
        user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
        content = json.dumps({"queries": self.rewrite(str(user))}, ensure_ascii=False)
        if fault and fault.short:
            content = "Sure! Here are some rewrites: 1. ..."
        prompt = sum(count_tokens(str(m.get("content", ""))) for m in messages)
        completion = count_tokens(content)
        return 200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }

    def _rerank(self, body: dict[str, Any], fault: Fault | None) -> tuple[int, Any]:
        if self.flavor == "deepinfra":
            if "passages" in body:
                return self._error(422, "field 'documents' required ('passages' is not accepted)")
            queries, documents = body.get("queries"), body.get("documents")
            if not isinstance(queries, list) or not isinstance(documents, list) or not documents:
                return self._error(422, "queries and documents must be lists")
            if len(documents) > 1024:
                return self._error(422, "at most 1024 documents")
            if len(queries) not in (1, len(documents)):
                return self._error(422, "queries and documents must have the same length")
            qs = queries if len(queries) == len(documents) else queries * len(documents)
            scores = [relevance(q, d) for q, d in zip(qs, documents, strict=True)]
            if fault and fault.short:
                scores = scores[:-1]
            if fault and fault.nan and scores:
                scores[0] = float("nan")
            tokens = sum(count_tokens(q) + count_tokens(d) for q, d in zip(qs, documents, strict=True))
            return 200, {
                "scores": scores,
                "input_tokens": tokens,
                "request_id": str(uuid.uuid4()),
                "inference_status": {"status": "succeeded", "runtime_ms": 80, "cost": 0.0, "tokens_input": tokens},
            }
        allowed = {"model", "query", "documents", "top_n", "return_documents", "task"}
        if set(body) - allowed:
            return self._error(400, f"Extra inputs are not permitted: {sorted(set(body) - allowed)}")
        if body.get("model") != self.RERANK_MODEL["fireworks"]:
            return self._error(404, f"model {body.get('model')!r} not found")
        query, documents = body.get("query"), body.get("documents")
        if not isinstance(query, str) or not isinstance(documents, list) or not documents:
            return self._error(400, "query and documents are required")
        ranked = sorted(
            ({"index": i, "relevance_score": relevance(query, d)} for i, d in enumerate(documents)),
            key=lambda r: -r["relevance_score"],
        )
        top_n = body.get("top_n")
        if isinstance(top_n, int):
            ranked = ranked[:top_n]
        if fault and fault.short:
            ranked = ranked[:-1]
        tokens = sum(count_tokens(query) + count_tokens(d) for d in documents)
        return 200, {"object": "list", "model": body["model"], "data": ranked,
                     "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip


def provider_env(
    primary: FakeProvider | None,
    fallback: FakeProvider | None = None,
    roles: Sequence[str] = tuple(FakeProvider.ROLE_URLS),
    fields: bool = False,
) -> dict[str, str]:
    """kb-search's provider variables for fakes: ``primary`` serves ``roles``, ``fallback`` is the fallback of those
    that have one (embedding and reranking). ``fields``: keyed by Settings field name (lower case) instead."""
    env = primary.env(roles) if primary is not None else {}
    if fallback is not None:
        env |= fallback.env([r for r in roles if r != "EXPANSION"], fallback=True)
    return {k.lower(): v for k, v in env.items()} if fields else env


def drip(
    handler: BaseHTTPRequestHandler,
    status: int,
    content_type: str,
    payload: bytes,
    headers: dict[str, str],
    every_s: float,
) -> None:
    """Answer one byte at a time, ``every_s`` apart: a slow sender that never trips a per-read timeout. Stops when
    the client hangs up, or the fake is stopped (the connection closed: the client's read ends)."""
    head = f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    handler.close_connection = True
    for i, byte in enumerate(head.encode() + payload):
        if i:
            time.sleep(every_s)
        if getattr(handler.server, "stopped", False):
            return
        try:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
        except OSError:
            return


def _operation(path: str) -> str:
    if path.endswith("/embeddings"):
        return "embeddings"
    if path.endswith("/rerank") or "/v1/inference/" in path:
        return "rerank"
    if path.endswith("/chat/completions"):
        return "chat"
    return "other"


class _Handler(BaseHTTPRequestHandler):
    fake: FakeProvider
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stalls

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, body, extra = self.fake.handle(self.path, headers, raw)
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        fault = self.fake.faults.get(_operation(self.path))
        content_type = extra.pop("Content-Type", "text/html" if isinstance(body, bytes) else "application/json")
        try:
            if fault is not None and fault.drip_s:
                drip(self, status, content_type, payload, extra, fault.drip_s)
                return
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeEndpoint(_LoopbackServer):
    """A loopback endpoint that records every request (JSON or raw) and answers ``status`` — a Slack
    ``response_url``, or AWS Lambda's Invoke API (``POST /2015-03-31/functions/<name>/invocations``, 202).
    ``fail_times`` first requests get ``fail_status``."""

    def __init__(self, status: int = 200, fail_times: int = 0, fail_status: int = 500) -> None:
        self.status = status
        self.fail_times = fail_times
        self.fail_status = fail_status
        #: what to answer instead of the default: a body, a content type, extra headers, a delay
        self.body: bytes | None = None
        self.content_type = "text/plain"
        self.headers: dict[str, str] = {}
        self.hang_s = 0.0
        self.drip_s = 0.0  # > 0: every answer is sent one byte at a time, this far apart
        #: per-request override: (method, path) → (status, body, content type) or None for the defaults above;
        #: status 0 drops the connection without answering
        self.responder: Callable[[str, str], tuple[int, bytes, str] | None] | None = None
        self.received = threading.Event()
        self._listen(type("EndpointHandler", (_EndpointHandler,), {"endpoint": self}))

    @property
    def url(self) -> str:
        return self.base

    def record(self, path: str, headers: dict[str, str], raw: bytes) -> int:
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        with self._lock:
            self.requests.append(Recorded(path, body, headers))
            failing = len(self.requests) <= self.fail_times
        if not failing:
            self.received.set()
        return self.fail_status if failing else self.status

    def wait(self, timeout: float = 10.0) -> bool:
        return self.received.wait(timeout)


class _EndpointHandler(BaseHTTPRequestHandler):
    endpoint: FakeEndpoint
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def _answer(self) -> None:
        endpoint = self.endpoint
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = endpoint.record(self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
        custom = endpoint.responder(self.command, self.path) if endpoint.responder else None
        if custom is None and endpoint.hang_s:
            time.sleep(endpoint.hang_s)
        payload = endpoint.body if endpoint.body is not None else (b"ok" if status < 300 else b"error")
        content_type = endpoint.content_type
        if custom is not None:
            status, payload, content_type = custom
            if status == 0:  # drop the connection without an answer (a connection failure mid-exchange)
                self.close_connection = True
                self.connection.shutdown(2)
                return
        try:
            if endpoint.drip_s:
                drip(self, status, content_type, payload, dict(endpoint.headers), endpoint.drip_s)
                return
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in endpoint.headers.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass
