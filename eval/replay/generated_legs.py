"""``fuse()`` over generated legs: searches no capture holds (a translation's dense and BM25 legs, no dense leg, no
BM25 leg, pins no leg brought, payloads with and without a language, headings holding the query's words, probes of
every depth), fused by whichever ``kbsearch`` is first on ``PYTHONPATH``; one JSON line per search (its seed, query,
candidates as [path, fused score, exact] and, with ``--reasons``, :func:`kbsearch.fusion.standing_pins`' reasons).
Two trees fuse the same searches (the seed decides each), so their lines compare with ``cmp`` (session 35 review,
rev35a: EVAL.md, "Session 35 review: fus35b read cold")::

    PYTHONPATH=/tmp/base35/layers/kbsearch .venv/bin/python eval/replay/generated_legs.py 0 30000 > /tmp/base.jsonl
    PYTHONPATH=layers/kbsearch .venv/bin/python eval/replay/generated_legs.py 0 30000 --codes-are-identifiers \\
        > /tmp/this.jsonl && cmp /tmp/base.jsonl /tmp/this.jsonl

``--codes-are-identifiers`` reads every identifier as a code (``QueryEvidence.codes``, session 35: a tree before it
bridged by any identifier), so only the rest of the decision is compared. The script imports nothing but the
``kbsearch`` it is given, whichever session's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
from typing import Any

from kbsearch.fusion import FusionParams, analyse, fuse, path_probes
from kbsearch.lexical import term_id, tokenize
from kbsearch.qdrant.query import PROBE_DEPTH, Leg, ScoredChunk

#: Queries of every kind the pin gates tell apart: lookups, identifiers, a menu path, questions naming an
#: identifier in passing (a code or none, a proper name), plain words across languages.
QUERIES = [
    "Syncthing", "hiding formulas", "Alt+F10 unmaximized", "what does 404 do in code", "AES-256",
    "does Sync encrypt my vault with AES-256", "what happens when I press OK in the export dialog",
    "which CNAME record do I create for my own domain on Publish", "is it a good idea to back up my vault to a NAS",
    "на ноутбуке wifi выключается сочетанием клавиш?", "что делает кнопка OK", "что делает кнопка OK в диалоге экспорта",
    "есть ли руководство по переносу моих заметок из Logseq", "Format - Text - Uppercase", "Формат - Страница",
    "защита ячеек", "protect cells", "скрытие формул", "ETH_P_ALL unmodified", "PT1H30M", "как включить Wi-Fi на ноутбуке",
    "экспорт в PDF с картинками и ссылками", "export the vault to PDF with images", "daily notes template",
    "шаблон ежедневной заметки", "QDRANT_URL", "--squeeze-blank", "canvas", "записать хранилище на CD диск для архива",
]  # fmt: skip


def _payload(r: random.Random, path: str, words: list[str]) -> dict[str, Any]:
    """A chunk's payload: its language mostly recorded, a text of some of the query's words, now and then a heading
    or a title of them."""
    text = " ".join(r.sample(words, k=r.randint(0, len(words)))) + " filler text"
    payload: dict[str, Any] = {"path": path, "lang": path[:2] if r.random() > 0.1 else None, "text": text}
    if r.random() < 0.5:
        payload["heading"] = " ".join(r.sample(words, k=min(len(words), r.randint(1, 2))))
    if r.random() < 0.2:
        payload["title"] = " ".join(words[:2])
    return payload


def search(seed: int) -> tuple[str, Any, list[tuple[Leg, list[ScoredChunk]]], int]:
    """The search of ``seed``: (query, its evidence, the legs, the limit)."""
    r = random.Random(seed)
    query = r.choice(QUERIES)
    evidence = analyse(query)
    other = "en" if evidence.language == "ru" else "ru"
    words = query.replace("?", "").split()
    pool = [f"{r.choice(['en', 'ru'])}/n{i:02d}.md" for i in range(r.randint(6, 40))]
    payloads = {p: _payload(r, p, words) for p in pool}

    def leg(leg: Leg, depth: int, top: float, step: float) -> tuple[Leg, list[ScoredChunk]]:
        ranked = r.sample(pool, k=r.randint(1, min(len(pool), depth)))
        return leg, [ScoredChunk(f"{p}#0", top - i * step, payloads[p]) for i, p in enumerate(ranked)]

    results = []
    if r.random() < 0.85:  # the query's own dense leg (none: a dense outage)
        results.append(leg(Leg("dense", 0), len(pool), r.uniform(0.7, 0.95), r.uniform(0.001, 0.02)))
    if r.random() < 0.3:  # a translation's dense leg
        results.append(leg(Leg("dense", 1, other), len(pool), 0.8, 0.01))
    if r.random() < 0.9:
        results.append(leg(Leg("lexical", 0, evidence.language), 15, r.uniform(5, 12), r.uniform(0.05, 0.8)))
    if r.random() < 0.3:  # a translation's BM25 leg
        results.append(leg(Leg("lexical", 1, other), 15, 8.0, 0.3))
    named = path_probes(evidence, FusionParams())
    unbrought = [f"{r.choice(['en', 'ru'])}/x{i:02d}.md" for i in range(12)]  # notes no leg brought
    for stem in dict.fromkeys(tokenize(query)):
        term = term_id(stem)
        depth = r.choice([0, 1, 1, 2, 3, 4, PROBE_DEPTH]) if r.random() < 0.9 else 0
        holders = r.sample(pool + unbrought, k=min(depth, len(pool) + len(unbrought)))
        best = r.uniform(1, 7)
        results.append((Leg("probe", term=term, bare=term not in named),
                        [ScoredChunk(f"{h}#0", best * (1 - i / 20), {"path": h} if term in named else {})
                         for i, h in enumerate(holders)]))  # fmt: skip
    return query, evidence, results, r.choice([3, 5, 10, 40])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("start", type=int, help="the first seed")
    parser.add_argument("end", type=int, help="the seed after the last")
    parser.add_argument("--codes-are-identifiers", action="store_true", help="every identifier a code (the bridge "
                        "as before session 35)")  # fmt: skip
    parser.add_argument("--reasons", action="store_true", help="each line with fuse()'s pin reasons (session 35)")
    args = parser.parse_args(argv)
    for seed in range(args.start, args.end):
        query, evidence, results, limit = search(seed)
        if args.codes_are_identifiers and hasattr(evidence, "codes"):
            evidence = dataclasses.replace(evidence, codes=evidence.identifiers)
        reasons: dict[str, str] = {}
        asked: dict[str, Any] = {"reasons": reasons} if args.reasons else {}  # a tree before session 35 has none
        fused = fuse(results, evidence, limit, **asked)
        out = [[c.payload.get("path"), round(c.fusion, 9), c.exact] for c in fused]
        print(json.dumps({"seed": seed, "q": query, "out": out, "reasons": reasons}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
