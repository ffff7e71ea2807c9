"""Access scopes: who may read a note, and who is asking.

**Who may read a note** is decided at index time and stored in every chunk's payload (``access``, a keyword index):

1. the note's frontmatter ``access: [group, ...]`` (or one group as a string);
2. else the longest matching folder rule of the access file at the KB root (``_access.yaml``)::

       hr/: [hr]
       security/incidents/: [security, oncall]

3. else the default: ``public`` (``ACCESS_DEFAULT=deny``: nobody but an unrestricted operator tool).

A note is readable by a caller when its groups and the caller's intersect; every caller holds ``public``. Group
names are lower-cased (NFC, ``[a-z0-9][a-z0-9_.:-]*``, at most 64 characters). A malformed declaration in a note
(:class:`AccessDeclarationError`) skips the note with a reason, never makes it public; a malformed access file
(:class:`AccessFileError`) fails the sync. Folder rules match case-insensitively (``HR/x.md`` falls under
``hr/``): on a case-insensitive disk both names reach one file.

**Who is asking** is a :class:`Scope`, resolved per request from a mapping kept as one JSON document (the SSM
SecureString ``ACCESS_GROUPS_PARAM``, or ``ACCESS_GROUPS`` locally; see :class:`CallerMap`)::

    {"api_keys": {"<API Gateway apiKeyId>": {"name": "hr-portal", "groups": ["hr"]}},
     "slack": {"T0123": ["staff"], "T0123/C0456": ["security"], "T0123/C0456/U0789": ["security", "hr"]}}

A search turns the scope into a must-clause of its one Qdrant query (:meth:`Scope.query_groups`); reads by path
check :meth:`Scope.can_read` and answer as for a missing note.
"""

from __future__ import annotations

import ast
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kbsearch.errors import KbSearchError
from kbsearch.qdrant.query import LINK_NAMES, RESTRICTED_LINKS, reach_token, token_groups

if TYPE_CHECKING:
    from kbsearch.links import KeyFilter

PUBLIC = "public"
ACCESS_FILE = "_access.yaml"
ACCESS_KEY = "access"  # the frontmatter key and the payload field
ACCESS_FROM = "access_from"  # payload: where the groups came from (frontmatter | folder:<rule> | default)
FROM_FRONTMATTER = "frontmatter"
FROM_DEFAULT = "default"
MAX_GROUPS = 32
MAX_RULES = 10_000
MAX_ACCESS_FILE_BYTES = 256 * 1024
_GROUP = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,63}")
#: What a group name may hold, as the refusals say it (``бухгалтерия`` is letters, and no group name: "letters" alone
#: misled a Russian team).
GROUP_NAMES = "Latin letters a-z, digits, _ . : -; up to 64, first a letter or digit"


class AccessDeclarationError(KbSearchError):
    """A note's ``access`` cannot be understood; the note is skipped with ``reason`` (never made public)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AccessFileError(KbSearchError):
    """The KB's access file cannot be understood: the sync stops rather than guess who may read what."""


class CallerMapError(KbSearchError):
    """The caller mapping (``ACCESS_GROUPS``) cannot be understood; callers then get ``public`` only."""


def normalize_group(value: Any) -> str | None:
    """A group name as stored and compared (NFC, lower case), or None when it is not a usable name."""
    if not isinstance(value, str):
        return None
    group = unicodedata.normalize("NFC", value).strip().lower()
    return group if _GROUP.fullmatch(group) else None


def _groups(value: Any, what: str) -> list[str]:
    """A declared group list (a list of names, or one name) → sorted unique names; ValueError saying why not."""
    items = [value] if isinstance(value, str) else value
    if value is None:  # `access:`, `access: ~`
        raise ValueError(f"{what} names no group (write [public] for everyone)")
    if not isinstance(items, list):
        raise ValueError(f"{what} must be a list of group names, not {type(value).__name__}")
    if not items:
        raise ValueError(f"{what} lists no group (write [public] for everyone)")
    if len(items) > MAX_GROUPS:
        raise ValueError(f"{what} lists {len(items)} groups (at most {MAX_GROUPS})")
    out: set[str] = set()
    for item in items:
        group = normalize_group(item)
        if group is None:
            shown = str(item)[:40]
            raise ValueError(f"{what}: {shown!r} is not a group name ({GROUP_NAMES})")
        out.add(group)
    return sorted(out)


#: The default-ignorable code points (Unicode's ``Default_Ignorable_Code_Point``) that are not format characters
#: (Cf, which :func:`kbsearch.sources.shown_path` drops): the combining grapheme joiner, the Hangul fillers (U+3164
#: and U+FFA0 read as U+1160 once compatibility forms are folded), Khmer's inherent vowels, Mongolian's variation
#: selectors, the variation selectors (U+FE0F after a letter) and their supplement. No font draws them.
_UNSEEN = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180d\u180f\u3164\ufe00-\ufe0f\uffa0\U000e0100-\U000e01ef]"
)


def _fold(path: str) -> str:
    """A path as the folder rules compare it: compatibility forms folded (full width), invisible characters
    dropped, the spaces around each segment left out, case folded. A folder ``HR `` (a trailing space), ``hr\u200b``
    or ``ｈｒ`` is the folder of the rule ``hr/``, and a rule ``"hr /"`` is that of ``hr``: a reader sees one name
    (each was no rule's folder, and its notes were indexed public). Invisible is every default-ignorable character,
    not only the format ones: ``hr`` followed by a variation selector, a combining grapheme joiner or a Hangul filler
    was drawn ``hr`` and was no rule's folder either (round 33)."""
    from kbsearch.sources import shown_path

    if not path.isascii():
        path = _UNSEEN.sub("", unicodedata.normalize("NFKC", path))
    return shown_path(path).casefold()


def _as_access_file(reason: str) -> str:
    """A problem the notes' frontmatter reader names, said of the access file (a YAML file, not a note's
    frontmatter: "invalid YAML frontmatter at line 3" sent its author looking for a ``---`` block)."""
    return reason.replace("YAML frontmatter", "YAML").replace("frontmatter ", "")


@dataclass(frozen=True)
class FolderRules:
    """The access file's folder rules (folder → groups), longest match first."""

    rules: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: each rule's folder as the file writes it (the rules hold it folded: :func:`_fold`), for what is said of it
    written: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, raw: bytes) -> FolderRules:
        """The access file's bytes → rules; :class:`AccessFileError` naming the problem."""
        from kbsearch.frontmatter import EVERY_FIELD, FrontmatterError, parse_frontmatter

        if len(raw) > MAX_ACCESS_FILE_BYTES:
            raise AccessFileError(f"{ACCESS_FILE} is {len(raw)} bytes (limit {MAX_ACCESS_FILE_BYTES})")
        try:
            text = raw.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError:
            raise AccessFileError(f"{ACCESS_FILE} is not UTF-8") from None
        try:
            # the notes' linear, alias-free reader; groups read as written
            parsed = parse_frontmatter(text, names=EVERY_FIELD, first_line=1)  # YAML from the file's first line
        except FrontmatterError as exc:
            raise AccessFileError(f"{ACCESS_FILE}: {_as_access_file(exc.reason)}") from None
        if parsed.warnings:
            raise AccessFileError(f"{ACCESS_FILE}: {_as_access_file(parsed.warnings[0])}")
        if len(parsed.data) > MAX_RULES:
            raise AccessFileError(f"{ACCESS_FILE} has {len(parsed.data)} rules (at most {MAX_RULES})")
        rules: dict[str, tuple[str, ...]] = {}
        written: dict[str, str] = {}
        for folder, value in parsed.data.items():
            key = _fold(folder).strip()
            segments = [s for s in key.split("/") if s]
            if "\\" in key or any(s in (".", "..") for s in segments) or re.search("[\x00-\x1f\x7f]", key):
                raise AccessFileError(f"{ACCESS_FILE}: {folder!r} is not a folder of the KB")
            if "*" in key or "?" in key:  # a glob (.gitignore's, CODEOWNERS'): it matched nothing, its notes public
                raise AccessFileError(f"{ACCESS_FILE}: {folder[:80]!r} is a pattern; a rule names a folder and "
                                      "holds every note under it, e.g. hr/: [hr]")  # fmt: skip
            if len(segments) != sum(1 for s in str(folder).split("/") if s.strip()):
                # a folder named with characters no font draws alone (a Hangul filler, ``ㅤ/``): its name folded to
                # nothing and the rule read its parent's folder (``team/secret/ㅤ/: [public]`` opened team/secret/),
                # or the whole KB's (``ㅤ/``)
                raise AccessFileError(f"{ACCESS_FILE}: {folder[:80]!r} names a folder whose name no reader sees (only "
                                      f"invisible characters, {folder[:80]!a}); rename the folder and its rule")  # fmt: skip
            prefix = "/".join(segments)
            written[prefix] = str(folder).strip()
            if prefix in rules:
                raise AccessFileError(f"{ACCESS_FILE}: folder {folder!r} has two rules")
            try:
                rules[prefix] = tuple(_groups(value, f"{ACCESS_FILE}: {folder!r}"))
            except ValueError as exc:
                raise AccessFileError(str(exc)) from None
        ordered = sorted(rules.items(), key=lambda r: -len(r[0]))
        return cls(tuple(ordered), tuple(written.items()))

    def idle(self, paths: Iterable[str]) -> list[str]:
        """What to say of each rule whose folder holds none of the notes ``paths`` (a full sync's listing): a
        folder misspelt in the access file (``en/Team/`` for ``en/Teams``) restricts nothing, and the notes it was
        meant for are read by every caller the rules of their own folders allow; so is a folder renamed since.
        Each names the rule as written and, when one is close, the folder of the KB meant."""
        import difflib

        if not self.rules:
            return []
        folded = {_fold(p): p for p in paths}
        folders: dict[str, str] = {}
        for key, path in folded.items():
            key_parts, path_parts = key.split("/")[:-1], path.split("/")[:-1]
            for depth in range(1, len(key_parts) + 1):
                folders.setdefault("/".join(key_parts[:depth]), "/".join(path_parts[:depth]))
        written = dict(self.written)
        said: list[str] = []
        for prefix, groups in sorted(self.rules):
            if not prefix or prefix in folders:
                continue
            meant = difflib.get_close_matches(prefix, sorted(folders), n=1, cutoff=0.75)
            hint = f": did you mean {folders[meant[0]] + '/'!r}?" if meant else ""
            said.append(f"the rule {written.get(prefix, prefix)!r} names no folder holding a note, so its groups "
                        f"({', '.join(groups)}) restrict nothing{hint}")  # fmt: skip
        return said

    def match(self, path: str) -> tuple[str, tuple[str, ...]] | None:
        """The longest rule whose folder holds ``path`` (case-insensitively): (folder, groups), or None."""
        if not self.rules:  # no access file (most KBs): nothing to fold the path for, on every note of every sync
            return None
        folded = _fold(path)
        for folder, groups in self.rules:
            if not folder or folded.startswith(folder + "/"):
                return folder, groups
        return None


#: Letters of other scripts drawn like the Latin letters of ``access`` (Cyrillic а с е ѕ, Greek ϲ): what a keyboard
#: switched to Russian types for them.
_LOOK_ALIKES = str.maketrans({"а": "a", "с": "c", "е": "e", "ѕ": "s", "ϲ": "c", "ꮯ": "c", "ꭰ": "a", "у": "y", "ү": "y",
                              "ӏ": "l"})  # fmt: skip


def _skeleton(key: str) -> str:
    """A key as it looks: compatibility forms folded (full width), marks, invisible, control and space characters dropped,
    look-alike letters made Latin, case folded."""
    decomposed = unicodedata.normalize("NFKD", key)
    kept = "".join(
        c for c in decomposed if unicodedata.category(c) not in ("Mn", "Me", "Cf", "Cc", "Zs") and not c.isspace()
    )
    return _UNSEEN.sub("", kept).casefold().translate(_LOOK_ALIKES)  # a Hangul filler too (Lo: no font draws it)


def mistaken_access_file(names: Iterable[str]) -> str | None:
    """Of the names at the KB root, one that was meant as the access file but is not named ``_access.yaml``
    (``_access.yml``, ``access.yaml``, ``_ACCESS.YAML``, look-alike letters): its rules would silently not apply.
    The extension is read as the stem is (``.yаml`` with a Cyrillic а, full width, a trailing space, dot or invisible
    character: such a file was taken for an attachment, and the notes it restricts were indexed public)."""
    for name in names:
        stem, dot, ext = _skeleton(name).rstrip(".").rpartition(".")
        if name != ACCESS_FILE and dot and ext in ("yaml", "yml") and _COPY_OF_ACCESS.fullmatch(stem.lstrip("_.")):
            return name
    return None


#: The stem of a name meant as the access file (its skeleton: no spaces, case folded), with the marks a copy's name
#: gets: a browser's or Windows' ``_access (1).yaml`` (a download beside an older one), macOS Finder's ``_access
#: copy.yaml`` / ``_access copy 2.yaml`` / ``_access 2.yaml``, ``_access-2.yaml``. Uploaded beside ``_access.yaml``
#: (or instead of it), such a copy's rules were silently not read: the edit it carried never applied. The marks in
#: Russian too (Finder's ``_access копия.yaml``, Explorer's ``_access — копия (2).yaml``), GNOME Files' ``(copy)``
#: and ``(another copy)``, and several of them (``_access - Copy - Copy.yaml``, ``_access (1) (1).yaml``, ``_access
#: 2 copy.yaml``): a copy of a copy, or of a copy made in another language (rev33d).
#: Each run of digits is one mark, whole (``(?!\d)``): a stem of 400 digits was split every way into up to four
#: marks before failing (22 s; a 1,024-byte S3 key hours).
_COPY_MARK = r"(?:\(\d+\)|[-_\u2013\u2014]?(?:copy|копия)\d*(?!\d)|\((?:another)?(?:copy|копия)\)|[-_]?\d+(?!\d))"
_COPY_OF_ACCESS = re.compile(rf"access{_COPY_MARK}{{0,4}}")


def refuse_mistaken_access_file(names: Iterable[str]) -> None:
    """:class:`AccessFileError` when a name at the KB root looks like the access file but is not named
    ``_access.yaml`` (:func:`mistaken_access_file`): its rules would not apply, and the notes it restricts would be
    indexed public. A full sync and an event run both stop on it (nothing changes until it is renamed)."""
    mistaken = mistaken_access_file(names)
    if mistaken is not None:
        raise AccessFileError(f"{mistaken!r} looks like the access file but is not named {ACCESS_FILE!r} "
                              f"(its rules are not read): rename it; no note is indexed until then")  # fmt: skip


def refuse_access_file_below_root(paths: Iterable[str]) -> None:
    """:class:`AccessFileError` when a file named ``_access.yaml`` lies in a folder below the KB root
    (``hr/_access.yaml``: a per-folder access file, as ``.htaccess`` is one): only the root's is read, so the notes it
    was written to restrict were indexed public, the file an attachment like any other, with nothing said. A full
    sync stops on it, naming it, as on an access file under another name at the root (a look-alike name in a folder,
    ``hr/access.yaml``, stays an attachment: it can be another tool's file)."""
    for path in paths:
        folder, slash, name = path.rpartition("/")
        if slash and name == ACCESS_FILE:
            raise AccessFileError(f"{path!r} is an access file in a folder: only the KB root's {ACCESS_FILE!r} is read "
                                  f"(its rules do not apply); write them there (as '{folder[:80]}/: [group]') and remove "
                                  "it; no note is indexed until then")  # fmt: skip


def declares_access(keys: Iterable[Any]) -> bool:
    """Whether frontmatter keys hold ``access``, in any case or a look-alike spelling."""
    return any(isinstance(k, str) and _skeleton(k) == ACCESS_KEY for k in keys)


#: A frontmatter warning for a dropped field (``kbsearch.frontmatter``, ``kbsearch.notes``): the key as ``repr`` wrote it.
_DROPPED = re.compile(r"""frontmatter field (?P<key>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*") dropped""")


def declared_access(metadata: Mapping[str, Any], warnings: Iterable[str]) -> list[str] | None:
    """The groups a note's frontmatter declares (None: it declares none); :class:`AccessDeclarationError` when
    the declaration is there but unusable (a wrong type, a bad name, an empty list, a value YAML could not build,
    two spellings of the key)."""
    for warning in warnings:
        dropped = _DROPPED.match(warning)
        # the key as the reader wrote it (``repr`` in the warning): `"access ": no`, `access<NBSP>: no`, `аccess`
        # with an unbuildable value were dropped, then read as no declaration: the note went public
        if dropped and _skeleton(str(ast.literal_eval(dropped["key"]))) == ACCESS_KEY:
            raise AccessDeclarationError(f"access declaration unusable ({warning}); the note is not indexed")
    keys = [k for k in metadata if k.strip().casefold() == ACCESS_KEY]
    for key in metadata:  # `аccess` typed on a Russian layout read as no declaration: a restricted note went public
        if key not in keys and _skeleton(key) == ACCESS_KEY:
            raise AccessDeclarationError(
                f"{key!r} looks like 'access' but is spelled with other characters ({key!a}); write it in "
                "Latin letters; the note is not indexed"
            )
    if not keys:
        return None
    if len(keys) > 1:
        raise AccessDeclarationError(f"access declared twice ({', '.join(map(repr, keys))}); the note is not indexed")
    try:
        return _groups(metadata[keys[0]], "frontmatter access")
    except ValueError as exc:
        raise AccessDeclarationError(f"{exc}; the note is not indexed") from None


def note_access(
    path: str, declared: Sequence[str] | None, rules: FolderRules, default: str = PUBLIC
) -> tuple[list[str], str]:
    """(groups, where they came from) for one note: its declaration, else the longest folder rule, else the
    default (``public``, or ``deny``: no group, readable only by an unrestricted tool)."""
    if declared is not None:
        return sorted(set(declared)), FROM_FRONTMATTER
    rule = rules.match(path)
    if rule is not None:
        return list(rule[1]), f"folder:{rule[0] or '/'}"
    return ([PUBLIC] if default == PUBLIC else []), FROM_DEFAULT


#: At most this many groups are given to every public chunk's ``reach`` (a payload field kept beside ``access``,
#: :func:`reach_of`); a caller of a group beyond them is matched by its groups' ``access`` (the slower clause).
MAX_REACH_GROUPS = 64


#: At most this many group-set tokens (:func:`kbsearch.qdrant.query.reach_token`) are given to chunks' ``reach``
#: (:func:`reach_sets_target`): a caller whose set has none (the sets past the cap, in name order, once the recorded
#: ones fill it) is matched by the slower clause of its groups (:func:`kbsearch.qdrant.query.scope_clause`), as
#: before tokens. Recorded tokens are never taken back (a search may hold them for a minute): a set no caller holds
#: any more keeps its place until the collection is rebuilt (``kbsearch index --rebuild``).
MAX_REACH_SETS = 64
#: A set whose token would be longer gets none (its callers keep the slower clause): every public chunk holds every
#: token, so this and :data:`MAX_REACH_SETS` bound what tokens add to a chunk's payload (8 KiB).
MAX_TOKEN_CHARS = 128


def reach_of(groups: Sequence[str], known: Iterable[str], sets: Iterable[str] = ()) -> list[str]:
    """A chunk's ``reach`` (written with its ``access``, in the same payload write): the groups and group-set
    tokens that reach it by one ``match value`` (:func:`kbsearch.qdrant.query.scope_clause`). A restricted chunk:
    its own groups, and the tokens of ``sets`` whose set shares a group with them (a caller of the set may read it),
    never more. A public chunk: ``public``, ``known`` (every group the index gives public chunks: a caller holding
    one of them matches it by that group alone) and every token of ``sets``."""
    if PUBLIC in groups:
        return sorted({PUBLIC, *known, *sets})
    own = set(groups)
    return sorted(own | {token for token in sets if not own.isdisjoint(token_groups(token))})


def reach_target(recorded: Iterable[str], indexed: Iterable[Sequence[str] | None], rules: FolderRules) -> list[str]:
    """The groups a full sync gives every public chunk's ``reach``: those already given (``recorded``, never taken
    back: a search may hold them for a minute), then the groups of the folder rules and of the indexed notes,
    up to :data:`MAX_REACH_GROUPS`."""
    out = list(dict.fromkeys(g for g in recorded if g != PUBLIC))
    fresh = {g for _, groups in rules.rules for g in groups} | {g for groups in indexed for g in groups or ()}
    out += sorted(fresh - set(out) - {PUBLIC})
    return sorted(out[:MAX_REACH_GROUPS])


def reach_sets_target(recorded: Iterable[str], held: Iterable[str]) -> list[str]:
    """The group-set tokens a full sync gives chunks' ``reach``: those already given (``recorded``, never taken
    back), then the tokens of the sets callers hold now (``held``: :meth:`CallerMap.set_tokens`), up to
    :data:`MAX_REACH_SETS` (past it, new sets get none: their callers keep the slower clause)."""
    out = list(dict.fromkeys(recorded))
    out += sorted(set(held) - set(out))
    return sorted(out[:MAX_REACH_SETS])


# -- who is asking -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Who is asking: ``caller`` (an id safe to log: an API key's id, never its value) and the groups it holds.
    ``groups`` None is unrestricted (operator tools that own the store: evaluation, benchmarks, the CLI without
    ``--scope``); every other scope holds ``public``."""

    caller: str
    groups: frozenset[str] | None

    @classmethod
    def of(cls, caller: str, groups: Iterable[str] = ()) -> Scope:
        return cls(caller, frozenset({PUBLIC, *groups}))

    @classmethod
    def public(cls, caller: str = "anonymous") -> Scope:
        return cls.of(caller)

    @classmethod
    def unrestricted(cls, caller: str = "operator") -> Scope:
        return cls(caller, None)

    @classmethod
    def parse(cls, caller: str, text: str) -> Scope:
        """``g1,g2`` (or ``g1+g2``; ``*`` is unrestricted) → a scope; ValueError naming a bad group."""
        if text.strip() == "*":
            return cls.unrestricted(caller)
        names = [n for n in re.split(r"[,+\s]+", text) if n]
        groups = []
        for name in names:
            group = normalize_group(name)
            if group is None:
                raise ValueError(f"{name!r} is not a group name ({GROUP_NAMES})")
            groups.append(group)
        return cls.of(caller, groups)

    @property
    def restricted(self) -> bool:
        return self.groups is not None

    def query_groups(self) -> list[str] | None:
        """The groups of the must-clause (sorted), or None for an unrestricted scope (no clause)."""
        return None if self.groups is None else sorted(self.groups)

    def can_read(self, note_groups: Iterable[str] | None) -> bool:
        """True when a note with ``note_groups`` is readable (a note with no recorded groups never is, to a
        restricted scope)."""
        if self.groups is None:
            return True
        return bool(note_groups) and not self.groups.isdisjoint(note_groups or ())

    def key(self) -> str:
        """What a cache holding results is keyed by: the groups (two callers with the same groups share)."""
        return "*" if self.groups is None else ",".join(sorted(self.groups))

    def describe(self) -> dict[str, Any]:
        """The caller and its groups as /whoami answers them (no secret)."""
        return {"caller": self.caller, "groups": None if self.groups is None else sorted(self.groups),
                "unrestricted": self.groups is None}  # fmt: skip


#: The longest key id shown: API Gateway's ids are 10 characters, ``kbsearch serve``'s ``local-`` and 12 hex.
MAX_KEY_ID_SHOWN = 24
#: How ``kbsearch serve``'s local keys' ids begin (``local-`` and 12 hex of the key's SHA-256,
#: :func:`kbsearch_tools.local.keys.local_key_id`): a hash of a secret, which a warning never shows (a short key is
#: found from it by trying words); the key is named by its name, ``KB_LOCAL_API_KEYS #n``.
LOCAL_KEY_PREFIX = "local-"
#: Slack's ids as its payloads carry them (``team_id``, ``channel_id``, ``user_id``): upper-case letters and digits.
_SLACK_ID = {"team": re.compile(r"[TE][A-Z0-9]{1,30}"), "channel": re.compile(r"[CGD][A-Z0-9]{1,30}"),
             "user": re.compile(r"[UW][A-Z0-9]{1,30}")}  # fmt: skip
_SLACK_ID_SAID = {"team": "T…, as in team_id", "channel": "C… or G…, as in channel_id, not its #name",
                  "user": "U… or W…, as in user_id, not an @name"}  # fmt: skip


def _key_shown(key_id: str, place: int) -> str:
    """An API key id as a warning or error names it: quoted, or by its place in ``api_keys`` when it is longer than
    any id (:data:`MAX_KEY_ID_SHOWN`): a key's value pasted where its id belongs is never shown."""
    return repr(key_id) if len(key_id) <= MAX_KEY_ID_SHOWN else f"#{place}"


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object of the caller mapping, refused when it names a key twice: ``json`` keeps the last silently,
    so a key id, a Slack team or ``api_keys`` itself given twice granted (or revoked) whatever came last."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            if len(key) > MAX_KEY_ID_SHOWN and "/" not in key:  # a key's value pasted where its id belongs
                raise CallerMapError(f"ACCESS_GROUPS gives a key of {len(key)} characters more than once (in one "
                                     f"object; not shown: an id is at most {MAX_KEY_ID_SHOWN}, so it may be a key's "
                                     "value)")  # fmt: skip
            raise CallerMapError(f"ACCESS_GROUPS gives {key[:80]!r} more than once (in one object)")
        seen.add(key)
    return dict(pairs)


@dataclass(frozen=True)
class CallerMap:
    """API key ids and Slack workspaces/channels/users → groups, from one JSON document (see the module doc)."""

    api_keys: Mapping[str, tuple[str, tuple[str, ...]]]  # key id → (name, groups)
    slack: Mapping[str, tuple[str, ...]]  # "T" | "T/C" | "T/C/U" → groups

    @classmethod
    def empty(cls) -> CallerMap:
        return cls({}, {})

    @classmethod
    def parse(cls, text: str | None) -> CallerMap:
        """The mapping's JSON → a map; :class:`CallerMapError` saying where it is wrong (never echoing values
        beyond the entry's name)."""
        if text is None or not text.strip():
            return cls.empty()
        try:
            data = json.loads(text, object_pairs_hook=_once_each)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser recurses
            raise CallerMapError(
                f"ACCESS_GROUPS is not JSON ({type(exc).__name__} at {getattr(exc, 'pos', '?')})"
            ) from None
        if not isinstance(data, dict) or set(data) - {"api_keys", "slack"}:
            raise CallerMapError('ACCESS_GROUPS must be {"api_keys": {...}, "slack": {...}}')
        keys: dict[str, tuple[str, tuple[str, ...]]] = {}
        raw_keys = data.get("api_keys", {})
        if not isinstance(raw_keys, dict):
            raise CallerMapError("ACCESS_GROUPS.api_keys must be an object of key id → groups")
        for place, (key_id, entry) in enumerate(raw_keys.items(), start=1):
            name, groups = key_id, entry
            if isinstance(entry, dict):
                name, groups = str(entry.get("name") or key_id), entry.get("groups")
            try:
                keys[key_id] = (name, tuple(_groups(groups, f"api key {_key_shown(key_id, place)}")))
            except ValueError as exc:
                raise CallerMapError(f"ACCESS_GROUPS: {exc}") from None
        slack: dict[str, tuple[str, ...]] = {}
        raw_slack = data.get("slack", {})
        if not isinstance(raw_slack, dict):
            raise CallerMapError("ACCESS_GROUPS.slack must be an object of team[/channel[/user]] → groups")
        for where, groups in raw_slack.items():
            parts = where.split("/")
            if not 1 <= len(parts) <= 3 or not all(parts):
                raise CallerMapError(f"ACCESS_GROUPS.slack: {where!r} is not team, team/channel or team/channel/user")
            try:
                slack[where] = tuple(_groups(groups, f"slack {where!r}"))
            except ValueError as exc:
                raise CallerMapError(f"ACCESS_GROUPS: {exc}") from None
        return cls(keys, slack)

    def set_tokens(self) -> list[str]:
        """The tokens (:func:`kbsearch.qdrant.query.reach_token`) of the group sets of two or more groups besides
        ``public`` that a caller of this map holds (an API key, a Slack team, channel or user): what a full sync
        gives chunks' ``reach``, so that such a caller is one ``match value``. A token longer than
        :data:`MAX_TOKEN_CHARS` is left out."""
        held = [groups for _, groups in self.api_keys.values()] + list(self.slack.values())
        tokens = {reach_token(groups) for groups in held}
        return sorted(t for t in tokens if t is not None and len(t) <= MAX_TOKEN_CHARS)

    def holders(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Each caller of the map as the admin wrote it (``api key 'id' (name)``, ``slack 'T/C'``) and its groups:
        what a sync checks against the groups the KB restricts notes to. A key id longer than any id API Gateway or
        ``kbsearch serve`` gives (:data:`MAX_KEY_ID_SHOWN`) is named by its place in ``api_keys``, never shown: it may
        be a key's value pasted where its id belongs (:meth:`problems`)."""
        keys = []
        for place, (key_id, (name, groups)) in enumerate(self.api_keys.items(), start=1):
            if key_id.startswith(LOCAL_KEY_PREFIX) and name != key_id:  # its id is its key's hash: by its name alone
                keys.append((f"api key {name}", groups))
                continue
            keys.append((f"api key {_key_shown(key_id, place)}" + (f" ({name})" if name != key_id else ""), groups))
        return tuple(sorted(keys) + [(f"slack {where!r}", groups) for where, groups in sorted(self.slack.items())])

    def problems(self) -> list[str]:
        """Entries that can match no caller, in the admin's words: a key id that is no id (longer than any: a key's
        value pasted where its id belongs, which puts a secret into the mapping), a Slack entry whose parts are not
        Slack ids (``T0123/#security``, a lower-case or spaced id). Such an entry is accepted (the rest of the mapping
        serves), but its callers read the public notes only."""
        said = []
        for place, key_id in enumerate(self.api_keys, start=1):
            if len(key_id) > MAX_KEY_ID_SHOWN:
                said.append(f"api key #{place} of api_keys is {len(key_id)} characters, not an id (API Gateway's are "
                            "10): if it is a key's value, map the key's id instead and rotate that key")  # fmt: skip
        for where in sorted(self.slack):
            parts = where.split("/")
            kinds = ("team", "channel", "user")[: len(parts)]
            for part, kind in zip(parts, kinds, strict=True):
                if not _SLACK_ID[kind].fullmatch(part):
                    said.append(f"slack {where[:120]!r}: {part[:40]!r} is not a Slack {kind} id "
                                f"({_SLACK_ID_SAID[kind]}), so the entry matches no caller")  # fmt: skip
                    break
        return said

    def for_api_key(self, key_id: str | None) -> Scope:
        """An API Gateway caller by its key's id (``requestContext.identity.apiKeyId``); an unknown key, or
        none, holds ``public`` only."""
        if not key_id:
            return Scope.public()
        name, groups = self.api_keys.get(key_id, (None, ()))
        caller = f"apikey:{key_id}" + (f" ({name})" if name and name != key_id else "")
        return Scope.of(caller, groups)

    def for_slack(self, team: str, channel: str, user: str | None = None, share: bool = False) -> Scope:
        """A Slack caller: the most specific of team/channel/user, team/channel, team. An answer shared into the
        channel (``share``) is read by everyone there, so it has the channel's scope, never the asker's."""
        candidates = [f"{team}/{channel}", team]
        if user and not share:
            candidates.insert(0, f"{team}/{channel}/{user}")
        for where in candidates:
            if where in self.slack:
                return Scope.of(f"slack:{where}", self.slack[where])
        return Scope.public(f"slack:{team}/{channel}")


@dataclass
class LinkTargets:
    """What the indexer recorded of the notes links may name (collection metadata): ``restricted`` maps the link
    keys (:func:`kbsearch.links.link_key`) of every non-public note to its groups (:func:`restricted_links`);
    ``names`` (:class:`kbsearch.links.KeyFilter`) holds the keys of the public notes, None in an index recorded
    before it was (read as before: a link naming no note is shown); a filter recorded damaged reads as empty."""

    restricted: Mapping[str, Any]
    names: KeyFilter | None = None
    _hides: dict[str, bool] = field(default_factory=dict, repr=False, compare=False)
    _sets: set[tuple[str, ...] | None] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def recorded(cls, metadata: Mapping[str, Any] | None) -> LinkTargets | None:
        """As recorded in the collection's metadata; None when the restricted list is not (yet) known."""
        from kbsearch.links import KeyFilter

        restricted = (metadata or {}).get(RESTRICTED_LINKS)
        if not isinstance(restricted, dict):
            return None
        recorded = (metadata or {}).get(LINK_NAMES)
        if recorded is None:  # an index recorded before the filter was: read as that version did
            return cls(restricted)
        # a filter recorded but unreadable (damaged) holds no name: links to no note are hidden, not shown
        return cls(restricted, KeyFilter.from_json(recorded) or KeyFilter.of(()))

    def hides_a_note(self, scope: Scope) -> bool:
        """Whether ``restricted`` names a note ``scope`` may not read (a value that is not a list of group names
        counts); remembered per group set (at most :data:`MAX_SCOPES_REMEMBERED`). The distinct group sets are
        gathered once, so each further group set costs one check per distinct set, not one per key."""
        key = scope.key()
        hides = self._hides.get(key)
        if hides is None:
            if self._sets is None:
                self._sets = group_sets(self.restricted.values())
            hides = any(groups is None or not scope.can_read(groups) for groups in self._sets)
            if len(self._hides) >= MAX_SCOPES_REMEMBERED:
                self._hides.clear()
            self._hides[key] = hides
        return hides


def group_sets(values: Iterable[object]) -> set[tuple[str, ...] | None]:
    """The distinct group lists among ``values``; None standing for any value that is not a list of names. Whether
    a caller is hidden a note at all (:meth:`LinkTargets.hides_a_note`) depends on these alone."""
    sets: set[tuple[str, ...] | None] = set()
    for groups in values:
        if type(groups) is list and all(type(g) is str for g in groups):
            sets.add(tuple(groups))
        else:
            sets.add(None)
    return sets


MAX_SCOPES_REMEMBERED = 1024


def _readable(groups: object, scope: Scope) -> bool:
    return type(groups) is list and all(type(g) is str for g in groups) and scope.can_read(groups)


def visible_links(links: Sequence[str], targets: LinkTargets | None, scope: Scope) -> list[str]:
    """The links of a hit the caller may see: a link whose target names a note the caller may not read is
    dropped (``targets.restricted``); ``targets`` None (not known yet) hides every link from a restricted scope
    rather than guess. A link with no key (an attachment, a heading of the same note) names no note and stays.
    ``targets`` comes from the store's metadata: a key whose value is not a list of group names names notes of
    unknown groups, and its link is hidden (it was read as groups as it came: a 500 when it was no iterable of
    names, an object's keys taken for groups).

    When ``targets`` names a note this caller may not read, a link naming no note at all (its key not in
    ``targets.names``, the public notes' keys) is dropped too: else a dropped link would tell a restricted note
    from a missing one (the link's text is in the readable note's prose, so the links shown against it would name
    the restricted notes). A caller who may read every note ``targets`` names is hidden nothing and sees such
    links; so does every caller of an index recorded before ``names`` was, until its next full sync. A key the
    filter holds by chance (~1%) is shown: that tells nothing of a restricted note."""
    from kbsearch.links import shown_link_key, unanchored

    if scope.groups is None:
        return list(links)
    if targets is None:
        return []
    unnamed_hidden = targets.names if targets.names is not None and targets.hides_a_note(scope) else None
    shown = []
    for link in links:
        key = shown_link_key(link)
        key = None if key is None else unanchored(key)  # a link from the root: as its whole path names a note
        if key is None:
            shown.append(link)
        elif key in targets.restricted:
            if _readable(targets.restricted[key], scope):
                shown.append(link)
        elif unnamed_hidden is None or key in unnamed_hidden:
            shown.append(link)
    return shown


def restricted_links(
    notes: Iterable[tuple[str, Sequence[str] | None]], names: Mapping[str, Sequence[str]] | None = None
) -> tuple[dict[str, list[str]], set[str]]:
    """(link key → groups, for the keys that name only notes that are not public; the keys that name a public
    note) of these (path, groups) notes. A note is named by its :func:`kbsearch.links.path_keys` (the ``p:`` keys of
    the payload's ``graph_keys``) and by its title and aliases (``names``: path → its
    :func:`kbsearch.links.name_keys`, the ``n:`` keys), as :func:`kbsearch.links.resolve` resolves a link, so a
    link matches them by :func:`kbsearch.links.link_key`. A note whose groups are unknown (None) counts as readable
    by nobody."""
    from kbsearch.links import path_keys

    by_key: dict[str, set[str]] = {}
    public: set[str] = set()
    for path, groups in notes:
        for key in [*path_keys(path), *((names or {}).get(path) or ())]:
            if groups is not None and PUBLIC in groups:
                public.add(key)
            else:
                by_key.setdefault(key, set()).update(groups or ())
    return {k: sorted(g) for k, g in sorted(by_key.items()) if k not in public}, public
