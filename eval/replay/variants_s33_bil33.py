"""Session 33's variants (bil33, issue 19: a KB written in two languages), as trees for ``replay.py --compare``.

Each variant changes what the fusion reads before its scoring loop (``_across``'s damping, the query's foreign proper
names), which a ``--variants`` hook cannot reach: so each is a copy of this tree's ``layers/kbsearch`` with one edit,
replayed against the base with ``--compare`` (EVAL.md, "Session 33: ... (issue 19, bil33)"):

    .venv/bin/python eval/replay/variants_s33_bil33.py /tmp/bil33/variants          # writes A/, B/, C1/, C2/
    PYTHONPATH=/tmp/bil33/variants/A/layers/kbsearch:tools .venv/bin/python eval/replay/replay.py \\
        /work/main/.kbsearch/replay32/*.pkl /work/main/.kbsearch/replay33/*.pkl --compare /tmp/base33 --detail

- ``A``: ``_across`` holds only where the query's language is the minority of its own dense leg's notes (a
  translated KB's leftover pages), not where the leg is balanced or mostly of the query's language with a first
  note of the other (a KB written in both: the query's language's notes are answers, not leftovers).
- ``B``: fus32c's gate off (a plain query asked across languages pins its exact matches wherever the legs rank
  them, as before session 32): what that gate does in a KB written in both languages.
- ``C1``: an acronym or a code written in capitals ("PDF", "SSO", "AES-256", "ISO27001") is no foreign proper name
  of a Russian question: such a question is gated as the same English question is (rev32a's asymmetry, one way).
- ``C2``: an English question's acronyms and codes in capitals are names too: it keeps its pin as the Russian one
  does (the asymmetry, the other way).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "kbsearch"

_ACROSS = """    if theirs != language and not agree:
        divided = False  # nothing to spare: the leg's languages do not matter
    else:
        recorded: dict[Any, Any] = {}  # the leg's notes (each once) and the language each records
        for c in asked:
            payload = c.payload
            recorded.setdefault(payload.get("path"), payload.get("lang"))
        same = sum(1 for lang in recorded.values() if lang == language)
        other = sum(1 for lang in recorded.values() if lang is not None and lang != language)
        if theirs == language and other <= same:
            return False
        divided = other > same if theirs == language else same > other  # first note in one language, most in the other
"""
_ACROSS_A = """    recorded: dict[Any, Any] = {}  # the leg's notes (each once) and the language each records
    for c in asked:
        payload = c.payload
        recorded.setdefault(payload.get("path"), payload.get("lang"))
    same = sum(1 for lang in recorded.values() if lang == language)
    other = sum(1 for lang in recorded.values() if lang is not None and lang != language)
    if other <= same:  # variant A: the query's language is no minority of the leg (a KB written in both)
        return False
    divided = False if theirs != language and not agree else (other > same if theirs == language else same > other)
"""
_NAMES = """    if (language or query_language(query)) != "ru":
        return frozenset()
    out: set[str] = set()
    for raw in reading(query).split():
        word = raw.strip(_WORD_PUNCTUATION)
        first = next((c for c in word if c.isalnum()), "")  # "3D", "2FA" open with a number: no name
        if first.isupper() and"""
_NAMES_C1 = _NAMES.replace(
    "        if first.isupper() and",
    """        letters = [c for c in word if c.isalpha()]
        if len(letters) >= 2 and all(c.isupper() for c in letters):  # variant C1: an acronym or a code is no name
            continue
        if first.isupper() and""",
)
_NAMES_C2 = _NAMES.replace(
    """    if (language or query_language(query)) != "ru":
        return frozenset()
    out: set[str] = set()""",
    """    out: set[str] = set()
    if (language or query_language(query)) != "ru":  # variant C2: an English question's acronyms are names too
        for raw in reading(query).split():
            word = raw.strip(_WORD_PUNCTUATION)
            letters = [c for c in word if c.isalpha()]
            if len(letters) >= 2 and all(c.isupper() for c in letters) and _LATIN_LETTER.search(word):
                out.update(tokenize(word))
        return frozenset(out)""",
)
_GATE = "and (questioned(evidence, p) or (across and not evidence.identifiers and not evidence.ui_path))"
_GATE_B = "and questioned(evidence, p)  # variant B: fus32c's gate off"
VARIANTS = {"A": ("fusion.py", _ACROSS, _ACROSS_A), "B": ("fusion.py", _GATE, _GATE_B), "C1": ("lexical.py", _NAMES, _NAMES_C1),
            "C2": ("lexical.py", _NAMES, _NAMES_C2)}  # fmt: skip


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    for name, (module, old, new) in VARIANTS.items():
        tree = out / name / "layers" / "kbsearch"
        if tree.exists():
            shutil.rmtree(tree)
        shutil.copytree(PACKAGE, tree, ignore=shutil.ignore_patterns("__pycache__"))
        path = tree / "kbsearch" / module
        text = path.read_text(encoding="utf-8")
        if text.count(old) != 1:
            raise SystemExit(f"{module} changed: variant {name} no longer applies (update {__file__})")
        path.write_text(text.replace(old, new), encoding="utf-8")
        print(f"{name}: {tree}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
