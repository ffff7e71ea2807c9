"""Where ``fusion._across`` damps the query's own-language BM25 matches because dense's first note is of the other
language: does anything the fusion holds tell a same-language question (BM25's own-language first is the answer)
from a question asked across languages (it is not)?

    .venv/bin/python eval/replay/across_split.py /work/main/.kbsearch/replay33/{e5,use}-classes-bil.pkl

For each search whose query's own dense leg puts a note of another language first (``_across``'s cross-language
case; not the divided-leg one), the note of the query's language BM25 ranks first (``B``: its lexical value after
the trust, before the damping) is read as ``_across`` sees it. Per model, per class group (``same-<kind>``: the
answer is in the query's language; ``cross-q`` / ``cross-title``: it is not) and per whether ``B`` is relevant, the
quartiles (25 % / median / 75 %) of: ``B``'s dense value (on the fusion's dense scale; ``close`` is 0.8) and its rank
by it; its BM25 confidence (share of the attainable score); its lexical value; its margin over the next note of the
query's language (a share of its value); the notes of the query's language among dense's first 10; and the counts
of searches where ``B`` is a dense close call (``close``), where it is dense's second note (``d2``), where its best
dense chunk is its best BM25 chunk (``chunk``) and where one of the query's words is in its title or chunk heading
(``head``). ``hyb1`` counts the searches whose fused first note is relevant (main's fusion). Session 35 (fus35c,
EVAL.md) read it for a gate that keeps a same-language question's BM25 first and damps a cross-language one's.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay import hooked_fusion, load

from kbsearch.lexical import words

FUSION = hooked_fusion()
_ACROSS = FUSION._across
SEEN: dict[str, Any] = {}


def _reading(notes: dict[str, Any], asked: list[Any], language: str, languages: dict[str, str | None],
             agree: dict[str, float], named: tuple[str, ...], p: Any) -> tuple[bool, bool]:  # fmt: skip
    """``_across`` itself, after recording ``B`` as it finds it (the values are not changed here)."""
    SEEN.clear()
    first = max(asked, key=lambda c: c.score)
    theirs = FUSION._note_language(first.payload, languages)
    if theirs is not None and theirs != language:
        own = sorted(((n.lexical, note) for note, n in notes.items()
                      if n.lexical_chunk is not None and n.lexical_chunk is not n.translated_chunk
                      and FUSION._note_language(n.lexical_chunk.payload, languages) == language),
                     key=lambda t: (-t[0], t[1]))  # fmt: skip
        if own:
            value, b = own[0]
            n = notes[b]
            by_dense = sorted(notes, key=lambda note: (-notes[note].dense, note))
            payload = n.lexical_chunk.payload
            held = set(words(f"{payload.get('title') or ''} {payload.get('heading') or ''}"))
            SEEN.update(
                B=b,
                dense=n.dense,
                rank=by_dense.index(b) + 1,
                confidence=n.confidence,
                value=value,
                margin=(value - (own[1][0] if len(own) > 1 else 0.0)) / value if value > 0 else 0.0,
                own10=sum(FUSION._its_language(notes[m], languages) == language for m in by_dense[:10]),
                close=n.dense >= p.close,
                d2=len(by_dense) > 1 and by_dense[1] == b,
                chunk=n.dense_chunk is not None and n.dense_chunk.id == n.lexical_chunk.id,
                head=bool(held & set(named)),
            )
    return _ACROSS(notes, asked, language, languages, agree, named, p)


FUSION._across = _reading


def group(cell: str) -> str:
    name = cell.rpartition(":")[2]
    if "-to-" in name:
        return "cross-title" if name.startswith("title") else "cross-q"
    return "same-" + name.split("-")[0]


def _quartiles(values: list[float]) -> str:
    v = sorted(values)
    return f"{v[len(v) // 4]:.2f}/{v[len(v) // 2]:.2f}/{v[3 * len(v) // 4]:.2f}"


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    cells = load([Path(a) for a in argv])
    found: dict[tuple[str, str, bool], list[dict[str, Any]]] = defaultdict(list)
    for (model, cell), captured in sorted(cells.items()):
        for _, relevant, results, evidence, limit in captured["rows"]:
            SEEN.clear()
            fused = FUSION.fuse(results, evidence, limit, "hybrid")
            if SEEN:
                row = dict(SEEN, hyb1=bool(fused) and fused[0].payload.get("path") in relevant)
                found[(model, group(cell), SEEN["B"] in relevant)].append(row)
    for (model, kind, right), rows in sorted(found.items()):
        counts = " ".join(f"{k} {sum(r[k] for r in rows)}" for k in ("hyb1", "close", "d2", "chunk", "head"))
        print(f"{model:4} {kind:13} B right {right!s:5} n={len(rows):3} dense {_quartiles([r['dense'] for r in rows])} "
              f"rank {_quartiles([r['rank'] for r in rows])} conf {_quartiles([r['confidence'] for r in rows])} "
              f"value {_quartiles([r['value'] for r in rows])} margin {_quartiles([r['margin'] for r in rows])} "
              f"own10 {_quartiles([r['own10'] for r in rows])} {counts}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
