"""Local API keys (``KB_LOCAL_API_KEYS``) and the caller mapping they make (``ACCESS_GROUPS``): read by ``kbsearch
serve`` for its functions and by ``kbsearch index`` for the indexer's group-set tokens. Kept apart from the server
(and the template reader it imports): a no-change ``kbsearch index`` loads only what it needs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

__all__ = ["caller_mapping", "local_key_id", "parse_api_keys"]


def _key_and_groups(entry: str) -> tuple[str, str]:
    """An entry's key (``::`` in it is one ``:``) and its groups: split at the first ``:`` that is not doubled."""
    at = 0
    while (at := entry.find(":", at)) >= 0 and entry.startswith("::", at):
        at += 2
    if at < 0:
        return entry.replace("::", ":"), ""
    return entry[:at].replace("::", ":"), entry[at + 1 :]


def parse_api_keys(value: str | None) -> dict[str, tuple[str, ...]]:
    """``KB_LOCAL_API_KEYS=key1:hr+security,key2`` → {key: its access groups}; a key without groups reads
    ``public`` notes only. A ``:`` in a key is written ``::`` (``a::b:hr``: the key ``a:b``, group ``hr``): the key
    ends at the first single ``:``. No entry that read before reads otherwise: a group name starts with a letter or
    a digit, so an entry whose first ``:`` was doubled was refused. ValueError (naming the entry's position among
    the entries that give a key, as ``KB_LOCAL_API_KEYS #n`` names a key; never the key) for a bad group name, a
    key given twice or a key that is not printable ASCII."""
    from kbsearch.access import GROUP_NAMES, normalize_group

    keys: dict[str, tuple[str, ...]] = {}
    # an entry is numbered among those that give a key (``k1,,k2``: ``k2`` is entry 2), as the keys are named
    # everywhere else (``KB_LOCAL_API_KEYS #2``: the caller's name, serve's banner); the errors counted empty ones
    entries = [e for e in (e.strip() for e in (value or "").split(",")) if e]
    for position, entry in enumerate(entries, start=1):
        key, groups = _key_and_groups(entry)
        names = [g for g in groups.split("+") if g.strip()]
        normalized = [normalize_group(g) for g in names]
        if not key.strip() or any(g is None for g in normalized):
            raise ValueError(f"KB_LOCAL_API_KEYS entry {position}: expected key or key:group+group (group names: "
                             f"{GROUP_NAMES})")  # fmt: skip
        if not (key.strip().isascii() and key.strip().isprintable()):
            # a header carries printable ASCII (API Gateway's keys are so): a key holding a shell's bytes that are
            # not UTF-8 stopped kbsearch serve and kbsearch index with a UnicodeEncodeError traceback (its id is its
            # hash), one with a letter like ``ё`` could never be sent as the server reads it (every request 403)
            raise ValueError(f"KB_LOCAL_API_KEYS entry {position}: a key is printable ASCII (letters, digits, "
                             "punctuation), as an HTTP header carries it")  # fmt: skip
        if key.strip() in keys:  # the last would win silently: `k:hr,k` took hr away, `k,k:hr` granted it
            raise ValueError(f"KB_LOCAL_API_KEYS entry {position}: gives a key an earlier entry gives (give each "
                             "key once, with all its groups: key:group+group)")  # fmt: skip
        keys[key.strip()] = tuple(sorted({g for g in normalized if g}))
    return keys


def local_key_id(key: str) -> str:
    """The id a local key gets in the event (``requestContext.identity.apiKeyId``), as API Gateway gives each
    key an id: derived from the key, never the key itself."""
    from kbsearch.access import LOCAL_KEY_PREFIX

    return LOCAL_KEY_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:12]


def caller_mapping(keys: Mapping[str, tuple[str, ...]], existing: str | None) -> str | None:
    """``ACCESS_GROUPS`` for the local functions: the shell's mapping (if any) plus each local key's groups. A shell
    mapping the functions cannot use (:meth:`kbsearch.access.CallerMap.parse`: not JSON, nested past the parser's
    recursion limit, a key twice in one object, ``api_keys`` no object) is passed on as it is: the functions report
    it and give every caller public notes only (``api_keys`` of another type stopped ``kbsearch serve`` with a
    traceback; a key given twice was merged as its last value, the refusal bypassed)."""
    from kbsearch.access import CallerMap, CallerMapError

    try:
        CallerMap.parse(existing)
    except CallerMapError:
        return existing
    mapping = json.loads(existing) if existing and existing.strip() else {}
    named = {local_key_id(k): {"name": f"KB_LOCAL_API_KEYS #{i}", "groups": list(g)}
             for i, (k, g) in enumerate(keys.items(), start=1) if g}  # fmt: skip
    if not named:
        return existing
    mapping["api_keys"] = {**(mapping.get("api_keys") or {}), **named}
    return json.dumps(mapping)
