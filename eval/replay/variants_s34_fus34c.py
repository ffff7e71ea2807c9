"""Session 34's variants (fus34c, issue 19: identifiers first across languages): trees for ``replay.py --compare``.

bil33's C3 (a question naming an identifier keeps its pin on a note of another language than the question wherever
the legs rank it) closed e5 ``bil:code-en`` and lost held-out searches whose pinned note mentions the identifier in
passing ("CD", "OK", "ELF") or, before ``make_lo_corpus.py`` unescaped the help index, the number "34" of ``&#34;``.
These variants ask whether the pinned note of the other language is *about* the identifier, read from the chunk
the fusion already holds (its payload's ``title``, ``heading`` and ``text``):

- ``C3``: bil33's, as it was (every pinned note of another language kept).
- ``T``: kept only where one of the question's identifiers is a word of the note's title or of its chunk's heading
  path (the page or its section is named by it).
- ``R``: kept only where the chunk's text holds one of the identifiers at least twice (the section keeps naming it).
- ``TR``: ``T`` or ``R``.
- ``P1`` (e5 ``lo-cross-en-to-ru``): a plain query (no identifier) asked across languages keeps its pin only where
  dense ranks the note among its first ``question_pin_within`` (fus32c's gate without BM25's first two: in the other
  language's notes BM25 matches what a page mentions in passing).
- ``P2``: ``P1``, or where the note's title or chunk heading holds every word of the query.
- ``D`` (taken, ``fusion._bridged``): C3 only where the question's own dense leg's first note is in the question's
  language (dense reads its own language: the identifier is the one bridge to a page of the other); where dense's
  first is of the other language, its ranking there stands.
- ``P3``: ``P1`` for a pinned note of another language than the query only; ``DP3``: ``D`` and ``P3``.

Each is a copy of the base tree's ``layers/kbsearch`` with one edit (the pin's gate is read before the scoring loop, which a
``--variants`` hook cannot reach), replayed against the base with ``--compare`` (EVAL.md, "Session 34: ... fus34c"):

    .venv/bin/python eval/replay/variants_s34_fus34c.py /tmp/fus34c/variants --base /tmp/base34 [NAME...]

(``--base``: the tree each variant edits, main at ``0106189`` before the rule taken from ``D``; without it, this tree,
where ``D`` is already the fusion's and the edits no longer apply.)
    PYTHONPATH=/tmp/fus34c/variants/T/layers/kbsearch:tools .venv/bin/python eval/replay/replay.py \\
        /tmp/fus34c/caps/*.pkl --compare /tmp/base34 --detail --changes
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "kbsearch"

_KEPT = "kept = {note for note in pinned if note not in answered and _about(notes[note], notes, p)}"


def _kept(mode: str) -> str:
    return (
        "kept = {note for note in pinned if note not in answered and (_about(notes[note], notes, p) or "
        f"_subject(notes[note].lexical_chunk or notes[note].dense_chunk, evidence, languages, {mode!r}))}}"
        "  # variant"
    )


_FUSE = "\ndef fuse(\n"
_SUBJECT = '''
def _subject(chunk: Any, evidence: QueryEvidence, languages: dict[str, str | None], mode: str) -> bool:
    """variant: the pinned note is of another language than the question and is about one of its identifiers."""
    if not evidence.identifiers or chunk is None or _note_language(chunk.payload, languages) in (None, evidence.language):
        return False  # a question naming no identifier (a plain query asked across languages) keeps fus32c's gate
    if mode == "C3":
        return True
    ids = evidence.identifiers
    payload = chunk.payload
    named = {term_id(t) for t in tokenize(f"{payload.get('title') or ''} {payload.get('heading') or ''}")}
    if "T" in mode and ids & named:
        return True
    if "R" in mode:
        counts: dict[int, int] = {}
        for t in tokenize(str(payload.get("text") or "")):
            tid = term_id(t)
            if tid in ids:
                counts[tid] = counts.get(tid, 0) + 1
        return any(c >= 2 for c in counts.values())
    return False

'''
_KEPT_P = (
    "kept = {note for note in pinned if note not in answered and (_about(notes[note], notes, p) if evidence.identifiers "
    "else _plain(notes[note], notes, evidence, p, MODE))}  # variant"
)
_PLAIN = '''
def _plain(n: Any, notes: dict[str, Any], evidence: QueryEvidence, p: FusionParams, mode: str) -> bool:
    """variant: a plain query asked across languages keeps its pin where dense ranks the note near its top, or (P2)
    where the note's title or heading holds every word of the query."""
    if n.dense > 0 and sum(1 for m in notes.values() if m.dense > n.dense) < p.question_pin_within:
        return True
    chunk = n.lexical_chunk or n.dense_chunk
    if mode == "P2" and chunk is not None:
        payload = chunk.payload
        named = {term_id(t) for t in tokenize(f"{payload.get('title') or ''} {payload.get('heading') or ''}")}
        return set(evidence.terms) <= named
    return False

'''
_KEPT_D = (
    "kept = {note for note in pinned if note not in answered and _keep(notes[note], notes, evidence, languages, across, "
    "p, MODE)}  # variant"
)
_KEEP = '''
def _keep(n: Any, notes: dict[str, Any], evidence: QueryEvidence, languages: dict[str, str | None], across: bool,
          p: FusionParams, mode: str) -> bool:
    """variant D: a question's identifier keeps its pin on a note of another language where dense's first note is in
    the question's language (dense reads its own language: the identifier is the one bridge to the other); variant
    P3: a plain query asked across languages keeps its pin on a note of another language only where dense ranks it
    near its top (BM25's match of the query's words in the other language's notes is a passing mention)."""
    chunk = n.lexical_chunk or n.dense_chunk
    other = chunk is not None and _note_language(chunk.payload, languages) not in (None, evidence.language)
    if evidence.identifiers:
        return ("D" in mode and other and not across) or _about(n, notes, p)
    if "P" in mode and other:
        return n.dense > 0 and sum(1 for m in notes.values() if m.dense > n.dense) < p.question_pin_within
    return _about(n, notes, p)

'''
TREES = {m: [("fusion.py", _KEPT, _kept(m)), ("fusion.py", _FUSE, _SUBJECT + _FUSE)] for m in ("C3", "T", "R", "TR")}
TREES |= {
    m: [("fusion.py", _KEPT, _KEPT_P.replace("MODE", repr(m))), ("fusion.py", _FUSE, _PLAIN + _FUSE)]
    for m in ("P1", "P2")
}
TREES |= {
    m: [("fusion.py", _KEPT, _KEPT_D.replace("MODE", repr(m))), ("fusion.py", _FUSE, _KEEP + _FUSE)]
    for m in ("D", "P3", "DP3")
}


def write_trees(trees: dict[str, list[tuple[str, str, str]]], argv: list[str], usage: str | None) -> int:
    """``OUT [--base TREE] [NAME...]``: each variant of ``trees`` (or those named) as a copy of TREE's (default this
    tree's) ``layers/kbsearch`` under ``OUT/NAME/``, with its edits ``(module, old, new)`` made (``old`` must occur
    once). Shared by the session variants files that edit the fusion before its scoring loop."""
    package = PACKAGE
    if len(argv) > 2 and argv[1] == "--base":  # the tree the variants edit: main before this session's rule
        package, argv = Path(argv[2]) / "layers" / "kbsearch", [argv[0], *argv[3:]]
    if not argv or any(name not in trees for name in argv[1:]):
        print(usage, file=sys.stderr)
        return 2
    out = Path(argv[0])
    for name, edits in trees.items():
        if argv[1:] and name not in argv[1:]:
            continue
        tree = out / name / "layers" / "kbsearch"
        if tree.exists():
            shutil.rmtree(tree)
        shutil.copytree(package, tree, ignore=shutil.ignore_patterns("__pycache__"))
        for module, old, new in edits:
            path = tree / "kbsearch" / module
            text = path.read_text(encoding="utf-8")
            if text.count(old) != 1:
                raise SystemExit(f"{module} changed: variant {name} no longer applies (update its variants file)")
            path.write_text(text.replace(old, new), encoding="utf-8")
        print(f"{name}: {tree}")
    return 0


def main(argv: list[str]) -> int:
    return write_trees(TREES, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))


# -- e5 lo-cross-en-to-ru: close calls a damped BM25 tips (``replay.py --variants``, the scoring loop's hook) -----------
#
#     .venv/bin/python eval/replay/replay.py /tmp/fus34c/caps/*.pkl --variants eval/replay/variants_s34_fus34c.py --detail


def _undamped_close(rows: list[tuple[str, Any, float, float]], ctx: dict[str, Any]) -> list[float] | None:
    """X1: where every note of dense's close calls (above ``close``) that BM25 matches is matched in another language
    than the query (its match counts x ``cross_language``: an English title over a Russian half), dense's top counts
    in full (no close-call weight): a damped BM25 is too weak a witness to reorder dense's first notes."""
    p, language = ctx["p"], ctx["evidence"].language
    close = [n for _, n, _, _ in rows if n.dense > p.close and n.lexical > 0 and n.lexical_chunk is not None]
    if language is None or not close or any(n.lexical_chunk.payload.get("lang") == language for n in close):
        return None
    lead, stray = ctx["lead"], ctx["stray"]
    return [n.dense + p.lexical_weight * n.lexical + p.rare_agreement * agreed
            + max(p.lead_bonus if note == lead else 0.0, p.stray_bonus if note == stray else 0.0)
            for note, n, _, agreed in rows]  # fmt: skip


VARIANTS = [("X1 close calls in full where their BM25 is all of another language", _undamped_close)]
