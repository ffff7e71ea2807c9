"""Session 35's variants (fus35c, issue 19: ``_across``'s damping of a same-language question's right BM25 first):
trees for ``replay.py --compare``.

``fusion._across`` counts the query's own BM25 matches in notes of the query's language x ``cross_language`` when
the query's own dense leg puts a note of the other language first. In the bilingual KB (``eval/make_bilingual.py``:
each page kept in one language only) that damps a right BM25 first in USE ``bil:question-en`` ("does an empty list
count as false in a Web Clipper template condition": BM25's first is the English answer, dense's second; dense's
first is the Russian *Функции*). These variants keep the match of the query's own-language BM25 first (the note of
the query's language with the highest BM25 value, the one ``_across`` would damp) where the evidence says dense is
undecided between the languages, and damp the rest as before:

- ``close``: that note is one of dense's close calls (its dense value at least ``close``: within a fifth of the
  span of dense's first), the fusion's own test for "dense cannot tell these apart, BM25 may";
- ``sure``: ``close``, and BM25 is sure of that note alone (its value at least ``lead_value`` and ahead of the next
  note of the query's language by ``stray_margin`` of it: ``stray_lead``'s test);
- ``sure90``: ``sure`` at a dense value of 0.9 or more (a stricter close call; a probe, not a rule);
- ``dense2``: ``sure`` and the note is dense's second note;
- ``closecall`` (the other way, e5 ``lo-cross-en-to-ru``): where dense's first note and most of its notes are of
  the other language (the query asked across languages, not a divided leg), a note of the query's language among
  dense's close calls whose match ``_across`` damps counts no BM25 match at all (the damped value, x
  ``cross_language``, still tips dense's close calls: "Creating Gradient Fills");
- ``closecall-sure``: ``closecall`` but BM25's own-language first keeps its damped match where BM25 is sure of it
  alone (``sure``'s test, read on the undamped values, wherever dense ranks it);
- ``closecall-plain``, ``closecall-sure-plain``: those two for a query with no identifier and no menu path only (a
  code reads the same in both languages: its match is no word of the query's language, session 34's ``_bridged``);
- ``none``: no note damped where dense's first is of the other language (the ceiling any exemption can reach; the
  divided-leg case, dense's first in the query's language, damps as before).

Each is a copy of the base tree's ``layers/kbsearch`` with ``_across`` edited (the damping happens before the
scoring loop, which a ``--variants`` hook cannot reach), replayed against the base with ``--compare`` (EVAL.md,
"Session 35: ... (issue 19, fus35c)"):

    .venv/bin/python eval/replay/variants_s35_fus35c.py /tmp/fus35c/variants --base /tmp/base35 [NAME...]
    PYTHONPATH=/tmp/fus35c/variants/sure/layers/kbsearch:tools .venv/bin/python eval/replay/replay.py \\
        $CAPS --compare /tmp/base35 --detail --changes
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from variants_s34_fus34c import write_trees

_LOOP = """    for note, n in notes.items():
        its = n.lexical_chunk
        if its is not None and its is not n.translated_chunk and _note_language(its.payload, languages) == language:
            if divided and note in agree:
"""
_LOOP_KEPT = """    kept = _undecided(notes, language, languages, p, MODE) if theirs != language else set()  # variant
    silent = MODE.startswith("closecall") and theirs != language and _most_other(asked, language)  # variant
    silent = silent and (plain or not MODE.endswith("-plain"))  # variant
    if silent and MODE.startswith("closecall-sure"):  # variant: BM25's own-language first, sure of it alone, stays damped
        kept = _undecided(notes, language, languages, p, "sure-anywhere")
    for note, n in notes.items():
        its = n.lexical_chunk
        if its is not None and its is not n.translated_chunk and _note_language(its.payload, languages) == language:
            if note in kept and not MODE.startswith("closecall"):  # variant
                continue
            if silent and note not in kept and n.dense >= p.close and not _names(its.payload, named, aliases=False):
                n.lexical = 0.0
                continue
            if divided and note in agree:
"""
_ACROSS = "\ndef _across("
_SIGNATURE = "named: tuple[str, ...], p: FusionParams) -> tuple[bool, bool]:  # fmt: skip"
_SIGNATURE_PLAIN = "named: tuple[str, ...], p: FusionParams, plain: bool = True) -> tuple[bool, bool]:  # fmt: skip"
_CALL = "_across(notes, asked[0], language, languages, agree, named, p)"
_CALL_PLAIN = (
    "_across(notes, asked[0], language, languages, agree, named, p, not evidence.identifiers and not evidence.ui_path)"
)
_UNDECIDED = '''
def _undecided(notes: dict[str, _Note], language: str, languages: dict[str, str | None], p: FusionParams,
               mode: str) -> set[str]:  # fmt: skip
    """variant: the notes of the query's language whose BM25 match ``_across`` leaves whole (module doc above)."""
    own = sorted(((n.lexical, note) for note, n in notes.items()
                  if n.lexical_chunk is not None and n.lexical_chunk is not n.translated_chunk
                  and _note_language(n.lexical_chunk.payload, languages) == language), key=lambda t: (-t[0], t[1]))
    if not own or mode in ("closecall", "closecall-plain"):
        return set()
    if mode == "sure-anywhere":
        value, first = own[0]
        second = own[1][0] if len(own) > 1 else 0.0
        return {first} if value >= p.lead_value and value - second >= p.stray_margin * value else set()
    if mode == "none":
        return {note for _, note in own}
    value, first = own[0]
    n = notes[first]
    if n.dense < (0.9 if mode == "sure90" else p.close):
        return set()
    if mode != "close":
        second = own[1][0] if len(own) > 1 else 0.0
        if value < p.lead_value or value - second < p.stray_margin * value:
            return set()
    if mode == "dense2":
        by_dense = sorted(notes, key=lambda note: (-notes[note].dense, note))
        if len(by_dense) < 2 or by_dense[1] != first:
            return set()
    return {first}

'''
_MOST_OTHER = """
def _most_other(asked: list[ScoredChunk], language: str) -> bool:
    \"\"\"variant: most of the query's own dense leg's notes (each once, those recording ``lang``) are of another
    language than the query.\"\"\"
    recorded: dict[Any, Any] = {}
    for c in asked:
        recorded.setdefault(c.payload.get("path"), c.payload.get("lang"))
    same = sum(1 for lang in recorded.values() if lang == language)
    return sum(1 for lang in recorded.values() if lang is not None and lang != language) > same

"""
TREES = {
    m: [
        ("fusion.py", _LOOP, _LOOP_KEPT.replace("MODE", repr(m))),
        ("fusion.py", _ACROSS, _UNDECIDED + _MOST_OTHER + _ACROSS),
        ("fusion.py", _SIGNATURE, _SIGNATURE_PLAIN),
        ("fusion.py", _CALL, _CALL_PLAIN),
    ]
    for m in (
        "close",
        "sure",
        "sure90",
        "dense2",
        "none",
        "closecall",
        "closecall-sure",
        "closecall-plain",
        "closecall-sure-plain",
    )
}


def main(argv: list[str]) -> int:
    return write_trees(TREES, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
