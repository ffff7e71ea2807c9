"""Slack slash command: request signatures, parsing, the acknowledgement, and Block Kit answers.

Standard library and pydantic models only: this module is on the acknowledgement path, which must answer within
Slack's 3 seconds from a cold start.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from kbsearch.errors import KbSearchError
from kbsearch.slack_render import clean, cut, escape
from kbsearch.slack_words import EVERY, LANGUAGES, help_text, language_of, say, told_language

MAX_SKEW_S = 300
#: A signature is accepted within ±MAX_SKEW_S of its timestamp, so remembering it this long covers its whole life.
REPLAY_WINDOW_S = 2 * MAX_SKEW_S
MAX_FORM_FIELDS = 100

#: The help in English (:data:`kbsearch.slack_words.HELP` has it in each language an answer is said in).
HELP_TEXT = help_text("en")


class SlackAuthError(KbSearchError):
    """The request is not from Slack (or is too old): answer 401, run nothing. ``mismatch``: well formed and in
    time, but its signature is not the one the secret gives (the secret may have been rotated)."""

    def __init__(self, message: str, mismatch: bool = False) -> None:
        super().__init__(message)
        self.mismatch = mismatch


_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SURROGATE = re.compile("[\ud800-\udfff]")
#: no URL Slack sends holds one: white space, C0/C1 controls, format characters (bidi marks, BOM), a backslash
_RESPONSE_URL_UNSAFE = re.compile(
    "[\\x00-\\x20\\x7f-\\xa0\\\\\u1680\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff]"
)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> None:
    """Check ``X-Slack-Signature`` over ``v0:{timestamp}:{raw body}``; raise :class:`SlackAuthError` otherwise."""
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get("x-slack-request-timestamp")
    signature = lowered.get("x-slack-signature")
    if not timestamp or not signature:
        raise SlackAuthError("missing Slack signature headers")
    if not _TIMESTAMP.fullmatch(timestamp):  # Unix seconds; hundreds of digits would overflow the skew check
        raise SlackAuthError("malformed request timestamp")
    ts = int(timestamp)
    if abs((time.time() if now is None else now) - ts) > MAX_SKEW_S:
        raise SlackAuthError("stale request timestamp")
    if not signature.startswith("v0="):
        raise SlackAuthError("unsupported signature version")
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode()):
        raise SlackAuthError("signature mismatch", mismatch=True)


class SeenSignatures(Protocol):
    """A short-lived store of the signatures already accepted: ``claim`` is True the first time only."""

    def claim(self, key: str) -> bool: ...


class MemorySeenSignatures:
    """One process (``kbsearch serve``): signatures with their expiry, purged as new ones arrive."""

    def __init__(self, ttl_s: float = REPLAY_WINDOW_S, clock: Any = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def claim(self, key: str) -> bool:
        now = self._clock()
        with self._lock:
            if len(self._expiry) > 1000:
                self._expiry = {k: t for k, t in self._expiry.items() if t > now}
            if self._expiry.get(key, 0.0) > now:
                return False
            self._expiry[key] = now + self.ttl_s
            return True


def reject_replay(seen: SeenSignatures, headers: Mapping[str, str]) -> None:
    """After :func:`verify`: a signature seen before is a replayed request → :class:`SlackAuthError`."""
    signature = next((v for k, v in headers.items() if k.lower() == "x-slack-signature"), "")
    if not seen.claim(f"slack-signature:{signature}"):
        raise SlackAuthError("replayed request")


@dataclass(frozen=True)
class SlashCommand:
    command: str
    text: str
    user_id: str
    channel_id: str
    team_id: str
    response_url: str
    trigger_id: str

    @property
    def request_key(self) -> str:
        """Identifies one slash command: Slack's trigger id (unique per invocation)."""
        return self.trigger_id or hashlib.sha256(f"{self.team_id}:{self.user_id}:{self.text}".encode()).hexdigest()

    def to_job(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_job(cls, job: Mapping[str, Any]) -> SlashCommand:
        return cls(**{k: str(job.get(k, "")) for k in cls.__dataclass_fields__})


def _form(body: bytes) -> dict[str, list[str]]:
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError:
        raise KbSearchError("the form body is not UTF-8") from None
    except ValueError:
        raise KbSearchError(f"the form body has more than {MAX_FORM_FIELDS} fields") from None


def parse_command(body: bytes) -> SlashCommand:
    form = _form(body)

    def one(name: str) -> str:
        return (form.get(name) or [""])[0]

    return SlashCommand(
        command=one("command"),
        # Slack sends &, < and > in the text as entities; the search wants what the person typed
        text=one("text").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip(),
        user_id=one("user_id"),
        channel_id=one("channel_id"),
        team_id=one("team_id"),
        response_url=one("response_url"),
        trigger_id=one("trigger_id"),
    )


def is_ssl_check(body: bytes) -> bool:
    """Slack checking the certificate of the command's URL (``ssl_check=1``, a token, no command): a 200 is the
    whole answer."""
    return (_form(body).get("ssl_check") or [""])[0] == "1"


@dataclass(frozen=True)
class Intent:
    kind: str  # help | usage (a malformed filter: ``error`` says which) | search
    query: str = ""
    share: bool = False
    filters: dict[str, Any] = field(default_factory=dict)  # SearchFilters' fields, JSON-ready
    error: str = ""
    language: str = "en"  # what kb-search's own words are said in: the question's (:func:`slack_words.language_of`)
    #: ``(key, filter word)`` for each English word one slip from a filter word that was searched as a word
    #: (``tab:guide``: ``("tab", "tag")``): the acknowledgement says so (:func:`ack`)
    words_not_filters: tuple[tuple[str, str], ...] = ()


#: ``key:value`` words of the command and the filter each sets.
FILTER_KEYS = {"tag": "tags", "tags": "tags", "type": "type", "status": "status", "in": "path_prefix",
               "path": "path_prefix", "after": "updated_after", "since": "updated_after"}  # fmt: skip
_LIST_FILTERS = ("tags", "type", "status")
#: A typographic quote ends at ” and a value never holds “: an unclosed “ is a word of the question, found by
#: reading to the next “ (it read to the end of the text from every “: quadratic). The Russian quotes too, «…» and
#: „…“ (what a Russian keyboard's smart punctuation makes of "): ``in:«ru/Лицензии и оплата»`` was the folder
#: ``«ru/Лицензии`` and the words ``и оплата»`` of the question.
_WORD = re.compile(
    r'(?P<key>[A-Za-z]{2,6}):(?:"(?P<q1>[^"]*)"|“(?P<q2>[^”“]*)”|«(?P<q3>[^«»]*)»|„(?P<q4>[^„“”]*)[“”]|(?P<bare>\S*))'
    r"|\S+"
)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9:.]+(?:Z|[+-][0-9:]+)?)?")


def _one_slip(typed: str, word: str) -> bool:
    """Whether ``typed`` is ``word`` with one letter wrong, missing, added, or two neighbours swapped."""
    if typed == word or abs(len(typed) - len(word)) > 1:
        return False
    if len(typed) == len(word):
        diffs = [i for i, (a, b) in enumerate(zip(typed, word, strict=True)) if a != b]
        return len(diffs) == 1 or (
            len(diffs) == 2 and diffs[1] == diffs[0] + 1 and typed[diffs[0]] == word[diffs[1]]
            and typed[diffs[1]] == word[diffs[0]]
        )  # fmt: skip
    short, long = sorted((typed, word), key=len)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


#: The English words one slip from a filter word with its first letter (``tax`` and ``tag``, ``stats`` and
#: ``status``, ``alter`` and ``after``): typed with a value (``tax:VAT``, ``typo:fixed``, ``stats:daily``) they are
#: words of the question, not a filter mistyped (walk38: ``tax:VAT`` was refused as a misspelt ``tag:``). A key is
#: Latin letters, so English is the one language it can be a word of, whatever the question's; the filter words'
#: own forms (``types``, ``paths``, ``typed``) stay slips of them, and so do non-words (``tga``, ``stauts``).
PROSE_KEYS = frozenset(
    "tab tad tan tap tar tat tax tog tug tabs tads tans taps tars tats togs tugs tang "
    "tape tope tyke tyre typo stats statue statues stratus "
    "pat pah pate pats pash pith patch alter aster afters sine singe".split()
)


def _slip_of(key: str) -> str | None:
    """The filter word ``key`` (three letters or more, no filter word itself) is one slip from, with its first letter
    (``tga``, ``tab``: ``tag``), or None."""
    if len(key) < 3 or key in FILTER_KEYS:
        return None
    return next((w for w in FILTER_KEYS if len(w) > 2 and w[0] == key[0] and _one_slip(key, w)), None)


def filter_meant(key: str, value: str = "") -> str | None:
    """The filter word a ``key:`` of three letters or more that is none was meant to be, one slip away and with its
    first letter (``tga:``, ``stauts:``, ``afetr:``): it was searched for as words of the question, the filter
    silently not applied. ``in`` is too short to tell a slip of it (``int:``, ``pin:``), ``math:`` no ``path:``;
    an English word (:data:`PROSE_KEYS`: ``tax:``, ``typo:``) is no slip, but with the value its filter takes
    (``alter:2026-01-01``, ``sine:2026-01-01``: a date; ``pat:en/Teams``: a folder), which no question's word has
    (rev38c: they were searched with the filter left out)."""
    meant = _slip_of(key)
    if meant is None or key not in PROSE_KEYS:
        return meant
    name = FILTER_KEYS[meant]
    if (name == "updated_after" and _DATE.fullmatch(value)) or (name == "path_prefix" and "/" in value):
        return meant
    return None


def _filter_problem(filters: dict[str, Any]) -> str:
    """SearchFilters' own verdict (lengths, counts, dates), in one line."""
    from pydantic import ValidationError

    from kbsearch.schemas import SearchFilters

    try:
        SearchFilters.model_validate(filters)
    except ValidationError as exc:
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return ""


def _question_words(text: str) -> str:
    """The command's text without its filter words (``tag:runbook``, ``in:"en/how to"``): what its language is
    judged by."""
    return " ".join(m.group(0) for m in _WORD.finditer(text) if (m.group("key") or "").lower() not in FILTER_KEYS)


def parse_text(text: str) -> Intent:
    """``[share] [key:value …] question`` → an intent. Filter words may stand anywhere; an unknown ``word:value``
    is part of the question (``error: timeout`` is a question). A known filter that is empty or malformed is a
    usage answer, never a search without it. The intent's ``language`` is the question's (its filter words aside):
    every word kb-search answers with is said in it (``/kb помощь``: the help in Russian)."""
    words = text.split(maxsplit=1)
    if not words or words[0].lower() in ("help", "помощь", "?"):
        first = words[0].lower() if words else ""  # an empty command or `?`: no word to judge: each language
        return Intent("help", language="ru" if first == "помощь" else "en" if first == "help" else EVERY)
    share = words[0].lower() == "share"
    rest = (words[1] if len(words) > 1 else "") if share else text
    lang = language_of(_question_words(rest) or rest)
    told = told_language(_question_words(rest) or rest)  # no letter to judge by: the usage said in each language

    def usage(words: str, **fields: object) -> Intent:
        if told == EVERY:  # each language's whole sentence, one after the other (ack says them as they are)
            error = "\n".join(say(each, "sorry_usage", error=say(each, words, **fields)) for each in LANGUAGES)
            return Intent("usage", error=error, language=told)
        return Intent("usage", error=say(told, words, **fields), language=told)

    filters: dict[str, Any] = {}
    query: list[str] = []
    kept: list[tuple[str, str]] = []
    for m in _WORD.finditer(rest):
        key = (m.group("key") or "").lower()
        value = next((v for v in m.group("q1", "q2", "q3", "q4", "bare") if v is not None), "").strip()
        if key not in FILTER_KEYS:
            # a filter's value is attached (``tga:sync``); a word of prose has a space after its colon (``Tax: how``,
            # ``Patch: log out``), which was refused as a misspelt ``tag:`` / ``path:`` and searched for nothing
            meant = filter_meant(key, value) if value else None
            if meant is not None:  # a search without the filter meant would answer another question
                return usage("not_a_filter", key=m.group("key"), meant=meant)
            # a listed English word (``tab:guide``): searched, and said so; not where the filter could not take the
            # value (``alter:ego``: ``after:`` takes a date, and a date would have been refused above as the slip),
            # and once a key however it is cased (``tab:a TAB:b``)
            like = _slip_of(key) if value else None
            if like is not None and FILTER_KEYS[like] != "updated_after" and all(k.lower() != key for k, _ in kept):
                kept.append((m.group("key"), like))
            query.append(m.group(0))
            continue
        name = FILTER_KEYS[key]
        if not value:
            return usage("needs_value", key=key)
        if name in _LIST_FILTERS:
            items = [v.strip() for v in value.split(",") if v.strip()]
            if not items:
                return usage("needs_value", key=key)
            filters.setdefault(name, []).extend(i for i in items if i not in filters.get(name, []))
        elif name in filters:
            return usage("given_twice", key=key)
        elif name == "updated_after":
            if not _DATE.fullmatch(value):
                return usage("takes_date", key=key, value=escape(cut(value, 40)))
            filters[name] = value
        else:
            filters[name] = value.strip("/")
            if not filters[name]:
                return usage("needs_folder", key=key)
    problem = _filter_problem(filters) if filters else ""
    if problem:
        return usage("bad_filter", problem=escape(cut(problem, 200)))
    question = " ".join(query).strip()
    if not question:
        return Intent("help", language=told) if not filters else usage("needs_question")
    from kbsearch.schemas import has_something_to_search

    if not has_something_to_search(question):  # zero-width characters, punctuation: never a search (nor a share)
        return usage("nothing_to_search")
    return Intent("search", question, share=share, filters=filters, language=lang, words_not_filters=tuple(kept))


def allowed_response_url(url: str, hosts: tuple[str, ...]) -> bool:
    """Only post where Slack would send us: https on Slack's hooks host (configurable for local tests).
    A URL Slack never sends is refused whatever its host: user info (``https://x@host/``), a backslash, white
    space, a control, or a host that is not ASCII, on which parsers disagree (urlsplit drops a tab and takes the host
    after the last ``@``; the HTTP client refuses a tab and may read a backslash as a path)."""
    if _RESPONSE_URL_UNSAFE.search(url):
        return False
    parts = urlsplit(url)
    if parts.hostname is None or "@" in parts.netloc or not parts.netloc.isascii():
        return False
    if parts.hostname in ("127.0.0.1", "localhost"):
        return parts.hostname in hosts
    return parts.scheme == "https" and parts.hostname in hosts


def _shown(query: str) -> str:
    """The question as the answer's header shows it: no control or bidi-override characters, one line."""
    return clean(query).replace("\n", " ")


def ack(intent: Intent, command: str = "/kb") -> dict[str, Any]:
    """The acknowledgement, in the question's language: the help, a usage error with the help, or "Searching…".
    ``command``: the slash command as the person typed it, which the help names."""
    lang = intent.language
    if intent.kind == "help":
        return {"response_type": "ephemeral", "text": help_text(lang, command)}
    if intent.kind == "usage":
        return {
            "response_type": "ephemeral",
            "text": f"{intent.error if lang == EVERY else say(lang, 'sorry_usage', error=intent.error)}\n\n"
            f"{help_text(lang, command)}",
        }
    # cut before escaping (an entity is never cut in half): 300 characters escape to at most 1,500, within any
    # Slack text block (3,000) whatever the command's text held
    text = say(lang, "searching", query=escape(cut(_shown(intent.query), 300)))
    # ``tab:guide`` typed for ``tag:guide`` is searched as words, no filter (``tab`` is an English word, as ``tax`` of
    # ``tax:VAT`` is, and a tag is any word: no value tells them apart); said, so the asker sees the filter was not
    # applied and how to apply it (rev38c's leftover, walk39)
    notes = [say(lang, "word_not_filter", key=escape(key), meant=meant) for key, meant in intent.words_not_filters[:3]]
    return {"response_type": "ephemeral", "text": "\n".join([text, *notes])}


def apology(query: str) -> dict[str, Any]:
    """The search failed: said in the question's language."""
    text = say(language_of(query), "apology", query=escape(cut(_shown(query), 200)))
    return {"response_type": "ephemeral", "replace_original": False, "text": text}


# -- interactivity (buttons) ----------------------------------------------------------------------------------------

MAX_PAYLOAD_CHARS = 1024 * 1024
#: Button actions handed to the worker (Open is a URL button: Slack opens the link and the interaction is ignored).
WORKER_ACTIONS = ("kb_share", "kb_more", "kb_vote_up", "kb_vote_down")


@dataclass(frozen=True)
class Interaction:
    """One button press (a ``block_actions`` payload) as the worker needs it. ``voter`` is a salted hash of the
    person, the only identity a vote keeps."""

    action_id: str
    value: str
    action_ts: str
    user_id: str
    team_id: str
    channel_id: str
    response_url: str
    trigger_id: str
    voter: str = ""
    message_ts: str = ""  # the answer message the button is on (``container.message_ts``)
    block_id: str = ""  # the pressed button's block: it names the answer's language (slack_words.answer_block_id)

    @property
    def request_key(self) -> str:
        """One press: Slack's retries repeat ``action_ts`` + ``action_id`` + user, so they share this key. Share is
        one action per answer shown: a person's double click (two ``action_ts``) on the same message and page
        would post the answer to the channel twice, so its key is the message and the button's value instead."""
        press = self.action_ts
        if self.action_id == "kb_share" and self.message_ts:
            press = f"{self.message_ts}:{self.value}"
        digest = hashlib.sha256(f"{self.team_id}:{self.user_id}:{self.action_id}:{press}".encode())
        return "slack-action:" + digest.hexdigest()

    def to_job(self) -> dict[str, str]:
        return {"kind": "action", **{k: getattr(self, k) for k in self.__dataclass_fields__}}

    @classmethod
    def from_job(cls, job: Mapping[str, Any]) -> Interaction:
        return cls(**{k: str(job.get(k, "")) for k in cls.__dataclass_fields__})


def voter_hash(secret: str, team_id: str, user_id: str) -> str:
    """A person, salted with the signing secret (which the worker and the feedback store never see)."""
    return hmac.new(secret.encode(), f"kb-feedback:{team_id}:{user_id}".encode(), hashlib.sha256).hexdigest()[:32]


def parse_interaction(body: bytes) -> Interaction | None:
    """The form's ``payload`` JSON → the button pressed; None for interactions kb-search does not act on (other
    payload types, URL buttons, unknown actions). Raises KbSearchError for a body that is not a payload."""
    raw = (_form(body).get("payload") or [""])[0]
    if not raw or len(raw) > MAX_PAYLOAD_CHARS:
        raise KbSearchError("expected a form field 'payload' with JSON (at most 1 MiB)")
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        raise KbSearchError("the payload is not JSON") from None
    if not isinstance(payload, dict):
        raise KbSearchError("the payload is not a JSON object")
    if payload.get("type") != "block_actions":
        return None
    actions = payload.get("actions")
    action = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else None

    def text(obj: Any, key: str) -> str:
        value = obj.get(key) if isinstance(obj, dict) else None
        return value if isinstance(value, str) else ""

    if action is None or text(action, "action_id") not in WORKER_ACTIONS:
        return None
    interaction = Interaction(
        action_id=text(action, "action_id"),
        value=text(action, "value"),
        action_ts=text(action, "action_ts"),
        user_id=text(payload.get("user"), "id"),
        team_id=text(payload.get("team"), "id"),
        channel_id=text(payload.get("channel"), "id") or text(payload.get("container"), "channel_id"),
        response_url=text(payload, "response_url"),
        trigger_id=text(payload, "trigger_id"),
        message_ts=text(payload.get("container"), "message_ts"),
        block_id=text(action, "block_id")[:255],
    )
    if not interaction.user_id or not interaction.action_ts or not interaction.response_url:
        raise KbSearchError("the payload lacks user.id, actions[0].action_ts or response_url")
    if any(_SURROGATE.search(getattr(interaction, name)) for name in interaction.__dataclass_fields__):
        # JSON's "\ud800" escapes decode to text no encoder takes (the request key, the voter's hash, the post)
        raise KbSearchError("the payload has a lone surrogate (\\ud800-\\udfff) escape")
    return interaction
