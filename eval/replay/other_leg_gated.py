"""The gated, hub-discounted other-language leg (``eval/replay/variants_s37_bil37.py``) replayed with a whole dense
leg of the other language (issue 19, session 37, bil37; EVAL.md, "Session 37: ...").

As ``eval/replay/other_leg_deep.py`` (fus36a): a capture taken by a throwaway tree whose ``batch_searches`` adds the
query's dense search 8x deeper (``Leg("dense-deep", 0)``, which the fusion does not read) is fused twice per search,
*before* as main fuses it and *after* with a dense leg of the deep search's other-language chunks (their first
``limit``: what a search filtered by the recorded ``lang`` returns) and the hook. A capture without the deep leg
replays its searches unchanged by the leg (the hook still sees the captured leg's other-language notes: fus36a's
simulation). Before each cell the driver gives the variants module the cell's corpus, every corpus's minority
language share (``text_language`` per note, as the indexer records ``lang``) and, for the model, every note's
k-occurrence across (``eval/replay/hubs.py``, from the oracle's vector cache).

    PYTHONPATH=layers/kbsearch:tools .venv/bin/python eval/replay/other_leg_gated.py --cache-e5 COPY --cache-use COPY \\
        CAPTURE.pkl ... [--shares] [--changes] [--only "VARIANT;VARIANT"]

``--shares`` prints each corpus's minority share and stops. Per variant: each cell's nDCG@10 before → after, its
change, its searches better / worse, the largest fall and better / worse per corpus.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hubs import indexed_notes
from other_leg_deep import fused_pair
from replay import hooked_fusion, load
from texts import class_corpora

from kbsearch_tools.metrics import ndcg_at

HERE = Path(__file__).resolve().parent


def module() -> Any:
    spec = importlib.util.spec_from_file_location("variants_s37_bil37", HERE / "variants_s37_bil37.py")
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def note_languages(corpus: Path) -> dict[str, str]:
    """Each note's language as the indexer records it (``text_language`` of its title and chunks)."""
    return {path: lang for path, _, lang in indexed_notes(corpus) if lang is not None}


def minority_share(languages: dict[str, str]) -> float:
    """The share of the notes in the KB's less frequent language (0 for a KB of one language)."""
    counts = defaultdict(int)
    for lang in languages.values():
        counts[lang] += 1
    return min(counts.values()) / len(languages) if len(counts) > 1 else 0.0


def hub_table(model: str, cache: str, corpora: set[Path], languages: dict[Path, dict[str, str]]) -> dict[str, Any]:
    from hubs import connect, corpus_table

    db = connect(model, cache)
    out: dict[str, dict[str, tuple[str, float]]] = {}
    for corpus in corpora:
        table, _, _ = corpus_table(corpus, model, db)
        notes: dict[str, float] = defaultdict(float)
        for (path, _), (_, _, _, occurrence) in table.items():
            notes[path] += occurrence
        out[str(corpus)] = {p: (languages[corpus].get(p, ""), v) for p, v in notes.items()}
    return out


def sibling_table(model: str, cache: str, corpora: set[Path]) -> dict[str, dict[str, str]]:
    """corpus → note → its nearest note of another language (the highest cosine between any two of their chunks):
    the page a KB of two languages holds on the same subject, computable at index time from the stored vectors."""
    from hubs import connect, corpus_vectors

    db = connect(model, cache)
    out: dict[str, dict[str, str]] = {}
    for corpus in corpora:
        keys, _, langs, m, _ = corpus_vectors(corpus, model, db)
        if m is None:
            continue
        sims = m @ m.T
        lang = np.array(langs)
        sims[lang[:, None] == lang[None, :]] = -np.inf
        nearest = sims.argmax(axis=1)
        best: dict[str, tuple[float, str]] = {}
        for i, (path, _) in enumerate(keys):
            score = float(sims[i, nearest[i]])
            if np.isfinite(score) and score > best.get(path, (-2.0, ""))[0]:
                best[path] = (score, keys[int(nearest[i])][0])
        out[str(corpus)] = {path: other for path, (_, other) in best.items()}
    return out


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv if a.endswith(".pkl")]
    caches = {m: argv[argv.index(f"--cache-{m}") + 1] for m in ("e5", "use") if f"--cache-{m}" in argv}
    only = argv[argv.index("--only") + 1].split(";") if "--only" in argv else None
    corpora_of = class_corpora()
    cells = load(paths)
    used = {corpora_of[cell] for _, cell in cells}
    languages = {c: note_languages(c) for c in used}
    variants = module()
    variants.SHARES = {str(c): minority_share(languages[c]) for c in used}
    if "--shares" in argv:
        for c in sorted(used):
            print(f"{c}: {len(languages[c])} notes, minority share {variants.SHARES[str(c)]:.3f}")
        return 0
    gated = {c for c in used if variants.SHARES[str(c)] >= variants.SHARE}
    models = {m for m, _ in cells if m in caches}
    hubs = {m: hub_table(m, caches[m], gated, languages) for m in models}
    siblings = {m: sibling_table(m, caches[m], gated) for m in models}
    chosen = [(n, h) for n, h in variants.VARIANTS if only is None or n in only]
    fusion = hooked_fusion()
    for name, hook in chosen:
        print(name)
        per_corpus: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        fall = (0.0, "")
        for (model, cell), captured in sorted(cells.items()):
            variants.CORPUS = str(corpora_of[cell])
            variants.HUBS, variants.SIBLINGS = hubs.get(model, {}), siblings.get(model, {})
            before, after = [], []
            for _, relevant, results, evidence, limit in captured["rows"]:
                a, b = fused_pair(fusion, hook, results, evidence, limit)
                before.append(ndcg_at(a, set(relevant), 10))
                after.append(ndcg_at(b, set(relevant), 10))
                if "--changes" in argv and after[-1] < before[-1] - 1e-9:
                    print(f"      worse {model} {cell} {evidence.text!r} {sorted(relevant)}: {a[:2]} → {b[:2]}")
            fall = min(fall, cell_moved(model, cell, before, after, per_corpus[Path(variants.CORPUS).name]))
        print_moved(per_corpus, fall)
    return 0


def cell_moved(model: str, cell: str, before: list[float], after: list[float], tally: list[int]) -> tuple[float, str]:
    """Adds the cell's searches better / worse to its corpus's ``tally``, prints the cell if any moved, and returns
    its change of the mean with its name (the largest fall is the least of these)."""
    up = sum(y > x + 1e-9 for x, y in zip(before, after, strict=True))
    down = sum(y < x - 1e-9 for x, y in zip(before, after, strict=True))
    tally[0], tally[1] = tally[0] + up, tally[1] + down
    mb, ma = sum(before) / len(before), sum(after) / len(after)
    if up or down:
        print(f"    {model:4} {cell:26} n={len(before):4} hybrid {mb:.4f} → {ma:.4f} ({ma - mb:+.4f}) "
              f"better/worse {up}/{down}")  # fmt: skip
    return ma - mb, f"{model} {cell}"


def print_moved(per_corpus: dict[str, list[int]], fall: tuple[float, str]) -> None:
    corpora = ", ".join(f"{c} {u}/{d}" for c, (u, d) in sorted(per_corpus.items()) if u or d)
    print(f"    largest fall {fall[0]:+.4f} {fall[1]}; better/worse by corpus: {corpora or 'none moved'}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
