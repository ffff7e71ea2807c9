"""Session 37's variants (fus37, issue 19): ``_across``'s close calls in a KB written in both languages, gated by
the KB's minority-language share.

``fusion._across`` silences a query's own-language close calls (their BM25 match counts nothing; BM25's sure first
of the query's language and a note the query names by its title keep their damped match) only where the query is
plain and asked across languages *outright*: dense's first note of the other language **and most of the leg's notes
too**. In a KB written in both languages (each page in one, about half in each) the leg's majority is the KB's mix,
not the query's: a cross-language question's own dense leg holds about as many notes of each language, so the
silence rarely applies and the query's own-language notes that share its words, damped to x ``cross_language`` but
counted in full among dense's close calls, tip dense's other-language first (USE ``bil:cross-en-to-ru``: dense
first, hybrid second under an English page BM25 ranks first).

Variants (``MIXED``: the cell's corpus has a minority-language share of notes at least :data:`SHARE`, bil37's
gate; below it nothing changes, by construction):

- ``mixed-silent``: in a mixed KB the "most of the leg's notes" condition is dropped: dense's first note of the
  other language is enough for a plain query's own-language close calls to be silenced (all else as main);
- ``mixed-silent-all``: the same, and every own-language BM25 match is silenced, not only dense's close calls'
  (BM25's sure own-language first and a note the query names by its title keep their damped match, as in main);
- ``mixed-silent-unsure``: ``mixed-silent`` with BM25's sure own-language first silenced too (refused on the
  design KB: USE ``bil:question-ru`` −0.0076);
- ``mixed-silent-all-first`` (written after the held-out result, so no evidence): ``mixed-silent-all`` with BM25's
  own-language first keeping its damped match whether BM25 is sure of it or not.

A capture of bil37's deep tree (``Leg("dense-deep", 0)``) is replayed without that leg, as main fuses it.

Driver: per cell, fuse every captured search with main's ``_across`` and with the variant's (the module's
``_across`` swapped for a copy of its source with the edit, only for cells of a gated corpus), and print each
moved cell's nDCG@10 before → after, better / worse, the largest fall, per-corpus better / worse:

    PYTHONPATH=layers/kbsearch:tools .venv/bin/python eval/replay/variants_s37_fus37.py CAPTURE.pkl ... \\
        [--only NAME] [--changes] [--shares]
"""

from __future__ import annotations

import inspect
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import kbsearch.fusion

sys.path.insert(0, str(Path(__file__).resolve().parent))
from other_leg_gated import cell_moved, minority_share, note_languages, print_moved
from replay import fused_paths, hooked_fusion, load
from texts import class_corpora

from kbsearch_tools.metrics import ndcg_at

#: bil37's gate: the minority language's share of the KB's notes at which a KB counts as written in both
SHARE = 0.25

_SILENT = "        silent = plain and theirs != language and other > same\n"
_JUDGED = "        if silent and None in recorded.values():"
_SURE = "    if silent and own:\n"
_SURED = "        if value >= p.lead_value and value - second >= p.stray_margin * value:\n"
_CLOSE = "        if silent and note != sure and n.dense >= p.close:\n"
EDITS: dict[str, list[tuple[str, str]]] = {
    "mixed-silent": [
        (_SILENT, "        silent = plain and theirs != language\n"),
        (_JUDGED, "        if False:"),
    ],
    "mixed-silent-unsure": [
        (_SILENT, "        silent = plain and theirs != language\n"),
        (_JUDGED, "        if False:"),
        (_SURE, "    if False:\n"),
    ],
    "mixed-silent-all": [
        (_SILENT, "        silent = plain and theirs != language\n"),
        (_JUDGED, "        if False:"),
        (_CLOSE, "        if silent and note != sure:\n"),
    ],
    "mixed-silent-all-first": [  # post hoc (after the held-out result): no evidence either way
        (_SILENT, "        silent = plain and theirs != language\n"),
        (_JUDGED, "        if False:"),
        (_CLOSE, "        if silent and note != sure:\n"),
        (_SURED, "        if True:\n"),
    ],
}


def variant(fusion: Any, name: str) -> Any:
    """``fusion._across`` with the variant's edits, compiled in the fusion module's namespace."""
    source = inspect.getsource(kbsearch.fusion._across)  # the hooked module is exec'd from this module's source
    for old, new in EDITS[name]:
        if source.count(old) != 1:
            raise SystemExit(f"fusion._across changed: {old!r} not found once")
        source = source.replace(old, new)
    namespace = dict(fusion.__dict__)
    exec(compile(source, f"_across ({name})", "exec"), namespace)  # noqa: S102
    return namespace["_across"]


def why(results: list[Any], evidence: Any, relevant: list[str]) -> str:
    """What the search's legs say (``--changes``): the query's language; its dense leg's notes of each language
    (each once) and its first's; the first relevant note's language and rank in dense and in BM25 (its legs merged
    by score)."""
    dense: list[Any] = next((chunks for leg, chunks in results if leg.kind == "dense" and leg.variant == 0), [])
    order: dict[str, str | None] = {}
    for c in dense:
        order.setdefault(c.payload.get("path"), c.payload.get("lang"))
    lexical = sorted((c for leg, chunks in results if leg.kind == "lexical" for c in chunks), key=lambda c: -c.score)
    bm25: list[str] = []
    for c in lexical:
        if c.payload.get("path") not in bm25:
            bm25.append(c.payload.get("path"))
    scores: dict[str, float] = {}
    for c in lexical:
        scores.setdefault(c.payload.get("path"), c.score)
    top = [*list(scores.values())[:2], 0.0, 0.0]
    margin = (top[0] - top[1]) / top[0] if top[0] > 0 else 0.0
    cosine: dict[str, float] = {}
    for c in dense:
        cosine.setdefault(c.payload.get("path"), c.score)
    best_own = max((cosine[p] for p, lang in order.items() if lang == evidence.language), default=0.0)
    gap = max(cosine.values(), default=0.0) - best_own
    own = sum(1 for lang in order.values() if lang == evidence.language)
    first = next(iter(order.values()), None)
    answer = relevant[0]
    rank = lambda xs: xs.index(answer) + 1 if answer in xs else "-"  # noqa: E731
    return (
        f"q {evidence.language}, dense first {first}, dense notes own/other {own}/{len(order) - own}; answer "
        f"{order.get(answer, '?')} dense {rank(list(order))} bm25 {rank(bm25)}; bm25 first {top[0]:.1f} margin "
        f"{margin:.2f}, its dense rank {list(order).index(bm25[0]) + 1 if bm25 and bm25[0] in order else '-'}; dense's first "
        f"above its best of the query's language by {gap:.3f}"
    )


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv if a.endswith(".pkl")]
    only = argv[argv.index("--only") + 1].split(";") if "--only" in argv else list(EDITS)
    corpora_of = class_corpora()
    cells = load(paths)
    used = {corpora_of[cell] for _, cell in cells}
    shares = {c: minority_share(note_languages(c)) for c in used}
    if "--shares" in argv:
        for c in sorted(used):
            print(f"{c}: minority share {shares[c]:.3f}")
        return 0
    fusion = hooked_fusion()
    original = fusion._across
    for name in only:
        edited = variant(fusion, name)
        print(name)
        per_corpus: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        fall = (0.0, "")
        for (model, cell), captured in sorted(cells.items()):
            corpus = corpora_of[cell]
            if shares[corpus] < SHARE:
                continue  # the gate: main's _across, the same ranking by construction
            before, after = [], []
            for _, relevant, captured_legs, evidence, limit in captured["rows"]:
                results = [(leg, chunks) for leg, chunks in captured_legs if leg.kind != "dense-deep"]  # bil37's
                a, b = fused_paths(fusion, "_across", (original, edited), (results, results), evidence, limit)
                before.append(ndcg_at(a, set(relevant), 10))
                after.append(ndcg_at(b, set(relevant), 10))
                if "--changes" in argv and abs(after[-1] - before[-1]) > 1e-9:
                    way = "better" if after[-1] > before[-1] else "worse"
                    print(f"      {way} {model} {cell} {evidence.text!r} {sorted(relevant)}: {a[:2]} → {b[:2]}")
                    print(f"        {why(results, evidence, sorted(relevant))}")
            fall = min(fall, cell_moved(model, cell, before, after, per_corpus[corpus.name]))
        print_moved(per_corpus, fall)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
