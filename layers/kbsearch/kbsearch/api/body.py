"""Request bodies as API Gateway hands them over → checked bytes, text and JSON, in linear time and memory.

Every failure is a :class:`BadBody` carrying the HTTP status, a short error code and a public message (no input is
echoed); the routes turn it into their own envelope (``{"error", "message"}`` or a JSON-RPC error).

- bytes: ``isBase64Encoded`` bodies are strictly base64 (400 otherwise); text bodies must encode as UTF-8.
- media type: JSON routes take ``application/json`` or ``application/*+json`` (or no Content-Type at all), with no
  ``charset`` other than UTF-8 (or US-ASCII, its subset); anything else is 415.
- text: strict UTF-8, one leading UTF-8 BOM ignored (RFC 8259 §8.1); anything else is 400.
- JSON: at most :data:`MAX_DEPTH` levels (checked before parsing, so nothing recurses deeply), numbers of at most
  :data:`MAX_NUMBER_CHARS` characters, no duplicate keys, no lone surrogates (``"\\ud800"``). ``NaN`` and
  ``Infinity`` are not JSON: :func:`parse_json` refuses them unless ``allow_constants`` (``/search`` lets its
  strict models answer 422 for them with the field's name).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from kbsearch.errors import KbSearchError

MAX_DEPTH = 32
MAX_NUMBER_CHARS = 100
JSON_MEDIA_TYPES = ("application/json",)
_BOM = b"\xef\xbb\xbf"
_DEPTH_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)
_SURROGATE = re.compile("[\ud800-\udfff]")


class BadBody(KbSearchError):
    """The request body cannot be taken: ``status`` (400, 413, 415), ``code`` and a public ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def raw_bytes(event: Mapping[str, Any]) -> bytes:
    """The body exactly as the client sent it (API Gateway base64-encodes binary and form bodies)."""
    body = event.get("body")
    if body is None or body == "":
        return b""
    if not isinstance(body, str):
        raise BadBody(400, "bad_request", "the request body is not text")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadBody(400, "bad_request", "the request body is not valid base64") from None
    try:
        return body.encode("utf-8")
    except UnicodeEncodeError:
        raise BadBody(400, "bad_request", "the request body is not valid UTF-8") from None


def header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    """A header's value, whatever the case of its name."""
    wanted = name.lower()
    for key, value in (headers or {}).items():
        if isinstance(key, str) and key.lower() == wanted:
            return value if isinstance(value, str) else None
    return None


def _header_values(event: Mapping[str, Any], name: str) -> list[str]:
    """Every value of a header, whatever the case of its name, from both maps API Gateway fills
    (``multiValueHeaders`` holds each line; ``headers`` the last, and a direct invoke may give only it), each line
    split at its commas (RFC 9110 5.3: ``a, b`` is the two lines ``a`` and ``b``); empty members dropped."""
    wanted = name.lower()
    lines: list[str] = []
    for key, values in (event.get("multiValueHeaders") or {}).items():
        if isinstance(key, str) and key.lower() == wanted and isinstance(values, list):
            lines.extend(v for v in values if isinstance(v, str))
    if not lines:
        lines = [v for k, v in (event.get("headers") or {}).items()
                 if isinstance(k, str) and k.lower() == wanted and isinstance(v, str)]  # fmt: skip
    return [member.strip() for line in lines for member in line.split(",") if member.strip()]


#: The content codings a request body may carry: none (``identity``). API Gateway hands the function the bytes as
#: sent (the template enables no content encoding), so a gzipped body was read as JSON: a 400 "not valid UTF-8" for
#: a coding the caller chose, or a body labelled gzip read as if it were not.
ACCEPTED_CODINGS = ("identity",)


def content_coding_problem(event: Mapping[str, Any]) -> str | None:
    """Why a request's body cannot be read for its ``Content-Encoding`` (any coding but ``identity``: ``gzip``,
    ``deflate``, ``br``, a list, an unknown one), or None. The answer is 415 with ``Accept-Encoding: identity``
    (RFC 9110 12.5.3): nothing is decoded, so no bomb is ever inflated. A request without a body (GET) is not
    checked."""
    if event.get("body") in (None, "") or str(event.get("httpMethod") or "").upper() in ("GET", "HEAD"):
        return None
    odd = [c for c in _header_values(event, "content-encoding") if c.lower() not in ACCEPTED_CODINGS]
    if not odd:
        return None
    shown = odd[0] if len(odd[0]) <= 40 else odd[0][:39] + "…"
    return (f"Content-Encoding {shown!r} is not accepted: send the body uncompressed (no Content-Encoding, or "
            "identity)")  # fmt: skip


def repeated_api_key(event: Mapping[str, Any]) -> int:
    """How many different API keys the request names in ``x-api-key`` (its lines, and the members of a
    comma-separated one: an API Gateway key is alphanumeric) when more than one, else 0. API Gateway validates one of
    them (which one is its own choice); the function refuses the request rather than serve the scope of whichever
    key that was. One key sent twice (a proxy or client library repeating the header, or folding it into ``k, k``)
    leaves no scope in doubt: it is answered."""
    count = len(set(_header_values(event, "x-api-key")))
    return count if count > 1 else 0


#: Headers a request gives once (RFC 9110 5.3: each is no list): the body's media type, and MCP's headers naming the
#: protocol version, the method and its name, which a 2026-07-28 body must agree with.
SINGLE_HEADERS = ("Content-Type", "MCP-Protocol-Version", "Mcp-Method", "Mcp-Name")


def repeated_single_header(event: Mapping[str, Any]) -> str | None:
    """The first of :data:`SINGLE_HEADERS` the request gives on more than one line with different values, or None.
    API Gateway hands the function every line (``multiValueHeaders``) and the last in ``headers``, which the routes
    read: `Content-Type: text/plain` then `application/json` was read as JSON and the reverse refused (415), two
    protocol versions were answered as the last. One value sent twice leaves nothing in doubt: it is answered."""
    given: dict[str, set[str]] = {}
    for key, values in (event.get("multiValueHeaders") or {}).items():
        if isinstance(key, str) and isinstance(values, list):
            given.setdefault(key.lower(), set()).update(v.strip() for v in values if isinstance(v, str))
    return next((name for name in SINGLE_HEADERS if len(given.get(name.lower(), ())) > 1), None)


def require_json_media_type(content_type: str | None) -> None:
    """415 unless the Content-Type is JSON in UTF-8 (a missing Content-Type is taken as JSON)."""
    if content_type is None or not content_type.strip():
        return
    media, *params = (part.strip() for part in content_type.split(";"))
    media = media.lower()
    if not (media in JSON_MEDIA_TYPES or (media.startswith("application/") and media.endswith("+json"))):
        raise BadBody(415, "unsupported_media_type", "send the body as application/json")
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and _charset(value.strip().strip('"')) not in ("utf-8", "ascii"):
            raise BadBody(415, "unsupported_media_type", "the body must be UTF-8 (charset=utf-8)")


def _charset(label: str) -> str | None:
    """A charset label's codec (``UTF8``, ``u8`` → ``utf-8``; ``US-ASCII``, ``ANSI_X3.4-1968`` → ``ascii``: a subset
    of UTF-8, which the body is read as whatever it says; RFC 8259 defines no charset for JSON), None if unknown."""
    import codecs

    try:
        return codecs.lookup(label).name
    except (LookupError, ValueError):
        return None


def text(raw: bytes) -> str:
    """Strict UTF-8; one leading BOM is ignored."""
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody(400, "bad_request", "the request body is not valid UTF-8") from None


def _check_depth(document: str) -> None:
    depth = 0
    for match in _DEPTH_TOKENS.finditer(document):
        mark = match.group()
        if mark in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise BadBody(400, "invalid_json", f"the JSON body is nested more than {MAX_DEPTH} levels deep")
        elif mark in "]}":
            depth -= 1


def _number(kind: type[int] | type[float]) -> Any:
    def parse(literal: str) -> int | float:
        if len(literal) > MAX_NUMBER_CHARS:
            raise BadBody(400, "invalid_json", f"a number in the body is longer than {MAX_NUMBER_CHARS} characters")
        return kind(literal)

    return parse


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise BadBody(400, "invalid_json", "the JSON body repeats a key in one object")
        obj[key] = value
    return obj


def _refuse_constant(_name: str) -> Any:
    raise BadBody(400, "invalid_json", "NaN and Infinity are not JSON")


def _check_strings(value: Any) -> None:
    """Lone surrogates (``\\ud800``) decode into str values that cannot be encoded again: refuse them."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise BadBody(400, "invalid_json", "the JSON body has a lone surrogate (\\ud800-\\udfff) escape")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def parse_json(document: str, allow_constants: bool = False) -> Any:
    """JSON text → a value, or :class:`BadBody` (400). Linear in the input whatever it holds."""
    _check_depth(document)
    try:
        value = json.loads(
            document,
            object_pairs_hook=_no_duplicates,
            parse_int=_number(int),
            parse_float=_number(float),
            parse_constant=float if allow_constants else _refuse_constant,
        )
    except BadBody:
        raise
    except (ValueError, RecursionError):
        raise BadBody(400, "invalid_json", "the request body is not valid JSON") from None
    _check_strings(value)
    return value


def size(event: Mapping[str, Any]) -> int:
    """The body's size in bytes as API Gateway counts it (base64 bodies by their decoded length)."""
    raw = event.get("body") or ""
    if not isinstance(raw, str):
        return 0
    if event.get("isBase64Encoded"):
        return len(raw) * 3 // 4
    return len(raw.encode("utf-8", "surrogatepass"))


#: The maps of a REST proxy event whose values are strings (or null), and those whose values are lists of strings.
_STRING_MAPS = ("headers", "queryStringParameters", "pathParameters", "stageVariables")
_LIST_MAPS = ("multiValueHeaders", "multiValueQueryStringParameters")


def event_problem(event: Any) -> str | None:
    """Why ``event`` is not the REST API proxy event (payload format 1.0) the routes read, or None. API Gateway
    always sends that shape; anything else is a direct invoke (``aws lambda invoke``, ``kbsearch invoke``) and is
    answered 400 naming the first field that is wrong, before any route reads it (each was an exception out of the
    function, Lambda's error envelope, or a 500)."""
    if not isinstance(event, dict):
        return f"the event is a JSON {_kind(event)}, not an object"
    if event.get("version") == "2.0" or "routeKey" in event:
        return "an HTTP API event (payload format 2.0); this function serves a REST API (payload format 1.0)"
    method, path, resource = event.get("httpMethod"), event.get("path"), event.get("resource")
    if not isinstance(method, str) or not method:
        return "httpMethod is missing or not a string"
    if not isinstance(path, str) or not path.startswith("/"):
        return "path is missing or not a string starting with /"
    if resource is not None and not isinstance(resource, str):
        return "resource is not a string"
    for name in _STRING_MAPS + _LIST_MAPS:
        value = event.get(name)
        if value is None:
            continue
        if not isinstance(value, dict):
            return f"{name} is not an object"
        many = name in _LIST_MAPS
        for item in value.values():
            if many and not (isinstance(item, list) and all(isinstance(v, str) for v in item)):
                return f"a value of {name} is not a list of strings"
            if not many and not isinstance(item, str):
                return f"a value of {name} is not a string"
    context = event.get("requestContext")
    if not isinstance(context, dict) or not isinstance(context.get("requestId"), str):
        return "requestContext.requestId is missing or not a string"
    if not isinstance(context.get("identity"), dict | None):
        return "requestContext.identity is not an object"
    if not isinstance(event.get("isBase64Encoded"), bool | None):
        return "isBase64Encoded is not true or false"
    return None


#: The query parameters each GET route reads one value of (the search's filters ``tags``, ``type`` and ``status``
#: repeat). API Gateway passes ``?q=a&q=b`` with both values in ``multiValueQueryStringParameters`` and only the last
#: in ``queryStringParameters``: the route would search ``b`` (or validation failed with a generic message).
SINGLE_VALUED_QUERY = {
    "/search": ("q", "top_k", "path_prefix", "updated_after", "rerank", "expand"),
    "/notes": ("recent", "path_prefix"),
    "/notes/{path+}": ("section",),
    "/docs": ("format",),
}


#: The query parameters of the routes that read filters, and for ``/search`` the fields ``POST /search`` takes that
#: the query string does not (``min_score``): a parameter spelling one of them otherwise is refused
#: (:func:`misspelled_parameter`).
FILTER_ROUTE_QUERY = {
    "/search": (*SINGLE_VALUED_QUERY["/search"], "tags", "type", "status"),
    "/notes": SINGLE_VALUED_QUERY["/notes"],
    "/notes/{path+}": SINGLE_VALUED_QUERY["/notes/{path+}"],
}
_POST_ONLY = {"/search": ("query", "min_score", "filters")}
_BRACKETS = re.compile(r"(\[[^\]]*\])+$")


def _folded(name: str) -> str:
    """A parameter name as a client library may spell it: ``tags[]``, ``tags[0]`` (qs, jQuery, PHP, Rails),
    ``Top-K``, ``pathPrefix``, ``tag`` → one key."""
    return _BRACKETS.sub("", name).lower().replace("_", "").replace("-", "").removesuffix("s")


def _get_route(event: Mapping[str, Any]) -> str | None:
    if str(event.get("httpMethod") or "").upper() not in ("GET", "HEAD"):
        return None
    route = str(event.get("resource") or event.get("path") or "")
    return "/notes/{path+}" if route.startswith("/notes/") else route


def repeated_parameter(event: Mapping[str, Any]) -> tuple[str, int] | None:
    """The first single-valued query parameter (:data:`SINGLE_VALUED_QUERY`) a GET gives more than once, and how
    many times; None when there is none."""
    route = _get_route(event)
    multi = event.get("multiValueQueryStringParameters") or {}
    for name in SINGLE_VALUED_QUERY.get(route or "", ()):
        values = multi.get(name) or ()
        if len(values) > 1:
            return name, len(values)
    return None


def misspelled_parameter(event: Mapping[str, Any]) -> tuple[str, str, tuple[str, ...]] | None:
    """The first query parameter of a GET of a route that reads filters (:data:`FILTER_ROUTE_QUERY`) that is not
    one of its parameters but spells one otherwise (:func:`_folded`), or names a field only ``POST /search`` takes;
    with the route and the parameters it takes. Ignored (as any parameter no route reads still is: ``utm_source``),
    ``tags[]=ops`` (what qs and jQuery send for an array), ``tag=ops``, ``pathPrefix=hr`` or ``min_score=0.5``
    were answered as if not given: unfiltered, which the caller took for filtered."""
    route = _get_route(event)
    known = FILTER_ROUTE_QUERY.get(route or "")
    if known is None:
        return None
    meant = {_folded(name) for name in (*known, *_POST_ONLY.get(route or "", ()))}
    names = [*(event.get("multiValueQueryStringParameters") or {}), *(event.get("queryStringParameters") or {})]
    odd = next((str(n) for n in names if str(n) not in known and _folded(str(n)) in meant), None)
    return None if odd is None else (odd, str(route), known)


def _kind(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value), "null")


def checked_json_event(event: dict[str, Any], json_routes: frozenset[tuple[str, str]]) -> dict[str, Any]:
    """For a route in ``json_routes`` (method, resource): the event with its body as checked UTF-8 text and a plain
    JSON Content-Type, so the router parses it with :func:`parse_json`. Other events pass unchanged. Raises
    :class:`BadBody`."""
    route = (str(event.get("httpMethod") or "").upper(), event.get("resource") or event.get("path"))
    if route not in json_routes:
        return event
    raw = raw_bytes(event)
    require_json_media_type(header(event.get("headers"), "content-type"))
    checked = dict(event, body=text(raw) if raw else None, isBase64Encoded=False)
    headers = {k: v for k, v in (event.get("headers") or {}).items() if str(k).lower() != "content-type"}
    multi = {k: v for k, v in (event.get("multiValueHeaders") or {}).items() if str(k).lower() != "content-type"}
    checked["headers"] = {**headers, "Content-Type": "application/json"}
    checked["multiValueHeaders"] = {**multi, "Content-Type": ["application/json"]}
    return checked
