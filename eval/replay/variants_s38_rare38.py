"""Session 38's variants (rare38, issue 19): fus37's close-call silence in a KB of both languages, gated per query
by where the query's rare terms live.

fus37 (``variants_s37_fus37.py``) silenced a plain query's own-language BM25 matches whenever dense's first note is
of the other language, in a KB whose minority-language share is at least 0.25; USE's held-out KB refused it: an
other-language dense first reads the same whether the query asks across languages or dense found a sibling page of
an own-language answer. The lead tested here: whether the query's words are *held together* by a note of its own
language. A same-language question's answer holds most of its rare terms; a question asked across has no note of its
language that does (its words are scattered over notes on other subjects).

The signal, ``cover``, is read from what the one batch call already returns, at no extra search: the query's own
BM25 leg's best score among notes of the query's language, over the sum of the one-term probes' best scores (each
probe is one query term's best chunk, its IDF times its saturated term frequency, so the sum bounds any one chunk's
BM25 score over the probed terms). A note of the query's language holding every rare term of it scores near 1; a
query whose rare terms no own-language note holds together scores low. None (no probe, no own-language BM25 match)
reads as 0.

Variants: ``rare-silent-all T`` is fus37's ``mixed-silent-all`` applied only where ``cover < T`` (main's ``_across``
otherwise); ``rare-silent T`` the same for ``mixed-silent``. Both keep bil37's share gate (0.25).

    PYTHONPATH=layers/kbsearch:tools .venv/bin/python eval/replay/variants_s38_rare38.py CAPTURE.pkl ... \\
        [--only "rare-silent-all 0.5;..."] [--changes] [--signal]
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hubs import indexed_notes
from other_leg_deep import fused_pair
from other_leg_gated import cell_moved, hub_table, minority_share, module, note_languages, print_moved
from replay import hooked_fusion, load
from texts import class_corpora

from kbsearch.lexical import term_id, tokenize
from kbsearch_tools.metrics import ndcg_at

#: the signals: ``probe`` (:func:`cover`, from the one batch call), ``union`` and ``note`` (:func:`held`, from
#: per-language document frequencies and notes' terms, as index-time metadata would hold them)
SIGNALS = ("probe", "union", "note")
HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("variants_s37_fus37", HERE / "variants_s37_fus37.py")
assert _spec is not None and _spec.loader is not None
fus37 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fus37)

VARIANTS = [f"{kind} {signal} {t}" for kind in ("rare-silent-all", "rare-silent") for signal in SIGNALS
            for t in ("0.4", "0.5", "0.6", "0.7", "0.8", "0.9")]  # fmt: skip


def tables(corpus: Path) -> tuple[dict[int, dict[str, int]], int, list[tuple[str, set[int]]]]:
    """Per term id, its document frequency per language over the corpus's notes (what an index could keep as
    collection metadata); the number of notes; each note's language and terms."""
    df: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    notes: list[tuple[str, set[int]]] = []
    for _, chunks, lang in indexed_notes(corpus):
        if lang is None:
            continue
        terms = {term_id(t) for c in chunks for t in tokenize(c.text)}
        notes.append((lang, terms))
        for t in terms:
            df[t][lang] += 1
    return df, len(notes), notes


def held(table: Any, evidence: Any, one_note: bool) -> float:
    """The query's terms' IDF (over the whole KB) held by notes of its language, over their IDF: by any such note
    (``one_note`` False: whether its rare terms occur in its language at all) or by the best single one."""
    df, n, notes = table
    terms = set(evidence.terms)
    if not terms or evidence.language is None:
        return 0.0
    idf = {t: math.log((n - sum(df[t].values()) + 0.5) / (sum(df[t].values()) + 0.5) + 1) for t in terms}
    total = sum(idf.values())
    if not one_note:
        return sum(idf[t] for t in terms if df[t].get(evidence.language, 0) > 0) / total
    return max((sum(idf[t] for t in terms & held) for lang, held in notes if lang == evidence.language),
               default=0.0) / total  # fmt: skip


def cover(results: list[Any], language: str | None) -> float:
    """The query's own BM25 leg's best score among chunks of its language, over the sum of its probes' best
    scores (0 without either)."""
    own = max((c.score for leg, chunks in results if leg.kind == "lexical" and leg.variant == 0
               for c in chunks if c.payload.get("lang") == language), default=0.0)  # fmt: skip
    bound = sum(max((c.score for c in chunks), default=0.0) for leg, chunks in results if leg.kind == "probe")
    return own / bound if bound > 0 else 0.0


#: bil37's second pre-registered lift, gated per query by :func:`cover` (``rare-lift probe T``)
LIFT = "offset r2-10 min less 0.05 hub 0.9"


def main_lift(argv: list[str]) -> int:
    """bil37's lift (``other_leg_gated.py``'s driver, a capture with the deep other-language leg) applied only where
    the query's :func:`cover` is under the variant's threshold."""
    paths = [Path(a) for a in argv if a.endswith(".pkl")]
    caches = {m: argv[argv.index(f"--cache-{m}") + 1] for m in ("e5", "use") if f"--cache-{m}" in argv}
    only = argv[argv.index("--only") + 1].split(";")
    corpora_of = class_corpora()
    cells = load(paths)
    used = {corpora_of[cell] for _, cell in cells}
    languages = {c: note_languages(c) for c in used}
    variants = module()
    variants.SHARES = {str(c): minority_share(languages[c]) for c in used}
    gated = {c for c in used if variants.SHARES[str(c)] >= variants.SHARE}
    hubs = {m: hub_table(m, caches[m], gated, languages) for m in {m for m, _ in cells if m in caches}}
    lift = dict(variants.VARIANTS)[LIFT]
    fusion = hooked_fusion()
    for name in only:
        threshold = float(name.split(" ")[-1])
        print(name)
        per_corpus: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        fall = (0.0, "")
        for (model, cell), captured in sorted(cells.items()):
            variants.CORPUS = str(corpora_of[cell])
            variants.HUBS, variants.SIBLINGS = hubs.get(model, {}), {}
            before, after = [], []
            for _, relevant, results, evidence, limit in captured["rows"]:
                signal = cover(results, evidence.language)
                if signal < threshold:
                    a, b = fused_pair(fusion, lift, results, evidence, limit)
                else:  # gated off: main's fusion of main's legs on both sides
                    a, _ = fused_pair(fusion, lift, results, evidence, limit)
                    b = a
                before.append(ndcg_at(a, set(relevant), 10))
                after.append(ndcg_at(b, set(relevant), 10))
                if "--changes" in argv and abs(after[-1] - before[-1]) > 1e-9:
                    way = "better" if after[-1] > before[-1] else "worse"
                    print(f"      {way} {model} {cell} cover {signal:.2f} {evidence.text!r} {sorted(relevant)}: "
                          f"{a[:2]} → {b[:2]}")  # fmt: skip
            fall = min(fall, cell_moved(model, cell, before, after, per_corpus[Path(variants.CORPUS).name]))
        print_moved(per_corpus, fall)
    return 0


def main(argv: list[str]) -> int:
    if "--lift" in argv:
        return main_lift(argv)
    paths = [Path(a) for a in argv if a.endswith(".pkl")]
    only = argv[argv.index("--only") + 1].split(";") if "--only" in argv else VARIANTS
    corpora_of = class_corpora()
    cells = load(paths)
    used = {corpora_of[cell] for _, cell in cells}
    shares = {c: minority_share(note_languages(c)) for c in used}
    fusion = hooked_fusion()
    original = fusion._across
    tabled: dict[Path, Any] = {}
    edited_of = {name: fus37.variant(fusion, name) for name in ("mixed-silent-all", "mixed-silent")}
    for name in only:
        kind, how, threshold = name.split(" ")
        edited = edited_of[kind.replace("rare-", "mixed-")]
        print(name)
        per_corpus: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        fall = (0.0, "")
        for (model, cell), captured in sorted(cells.items()):
            corpus = corpora_of[cell]
            if shares[corpus] < fus37.SHARE:
                continue  # bil37's gate: main's _across, the same ranking by construction
            before, after = [], []
            for _, relevant, captured_legs, evidence, limit in captured["rows"]:
                results = [(leg, chunks) for leg, chunks in captured_legs if leg.kind != "dense-deep"]
                fusion._across = original
                a = [c.payload.get("path") for c in fusion.fuse(results, evidence, limit, "hybrid")]
                if how == "probe":
                    signal = cover(results, evidence.language)
                else:
                    if corpus not in tabled:
                        tabled[corpus] = tables(corpus)
                    signal = held(tabled[corpus], evidence, how == "note")
                fusion._across = edited if signal < float(threshold) else original
                try:
                    b = [c.payload.get("path") for c in fusion.fuse(results, evidence, limit, "hybrid")]
                finally:
                    fusion._across = original
                before.append(ndcg_at(a, set(relevant), 10))
                after.append(ndcg_at(b, set(relevant), 10))
                if "--changes" in argv and abs(after[-1] - before[-1]) > 1e-9:
                    way = "better" if after[-1] > before[-1] else "worse"
                    print(f"      {way} {model} {cell} cover {signal:.2f} {evidence.text!r} {sorted(relevant)}: "
                          f"{a[:2]} → {b[:2]}")  # fmt: skip
            fall = min(fall, cell_moved(model, cell, before, after, per_corpus[corpus.name]))
        print_moved(per_corpus, fall)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
