"""Session 36's variants of the BM25 leg itself (lex36, issue 19): what a chunk's sparse vector counts.

Every variant changes :func:`kbsearch.lexical.document_vector` only (the query's vector, the fusion and the dense leg
are today's), set by environment variables, and runs the real ``kbsearch eval`` (the real indexer, Qdrant Edge)
in this process:

- ``LEX_K1``, ``LEX_B``: BM25's k1 and b (1.2, 0.75);
- ``LEX_AVGDL``: ``avgdl`` (45, :data:`kbsearch.lexical.AVG_DOC_TOKENS`); ``auto`` with ``drive``: the corpus's real
  mean chunk length, as ``drive base`` records it per corpus (``means.json``);
- ``LEX_TITLE_W``: how many times a word of the chunk's heading path (the note's title and the headings above the
  chunk: the first paragraph of what BM25 indexes, ``kbsearch.chunking.embed_text``) counts in its term frequency,
  BM25F-style (1: today); ``LEX_TITLE_MODE``: which part of the path is weighted (``path``, the whole; ``title``,
  the note's title; ``sections``, the headings under it); ``LEX_TITLE_DL``: how much of the extra counts go into
  the chunk's length (1: all, 0: none: the length stays the words a reader sees);
- ``LEX_DUMP``: a JSON file for each search's first ten notes (``diff`` reads two such files).

    # one variant over the 6 corpora, lexical phase only (no embedding model): .kbsearch/lex36/v-NAME.json (LEX_OUT)
    .venv/bin/python eval/replay/variants_s36_lex36.py drive base          # first: records each corpus's mean length
    .venv/bin/python eval/replay/variants_s36_lex36.py drive tw2 LEX_TITLE_W=2
    .venv/bin/python eval/replay/variants_s36_lex36.py compare tw2 k09     # per class, against base
    .venv/bin/python eval/replay/variants_s36_lex36.py eval --classes eval/classes.yaml --phases lexical --json
    LEX_DUMP=a.json ... eval ...; .venv/bin/python eval/replay/variants_s36_lex36.py diff a.json b.json [CLASS]
    # a hybrid capture with a variant's BM25 vectors (replay.py reads it as any capture)
    LEX_TITLE_W=2 .venv/bin/python eval/replay/variants_s36_lex36.py capture OUT.pkl -- eval --classes ... --oracle e5 ...
    # each search of a main capture against the same search of a variant's capture, through main's fusion
    .venv/bin/python eval/replay/variants_s36_lex36.py pairs OLD.pkl NEW.pkl

The classes' corpora: ``drive`` runs each manifest's corpora one at a time (``--only`` their classes), from the
worktree's root (``.kbsearch/bil`` must be there: ``eval/make_bilingual.py``). EVAL.md, "Session 36: the BM25 leg
itself (issue 19, lex36)".
"""

from __future__ import annotations

import collections
import importlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

OUT = Path(os.environ.get("LEX_OUT", ".kbsearch/lex36"))  # gitignored
MANIFESTS = ("eval/classes.yaml", "eval/classes-debdoc.yaml", "eval/classes-gnome.yaml", "eval/classes-man.yaml",
             "eval/classes-lo.yaml", "eval/classes-bil.yaml")  # fmt: skip


def patch() -> None:
    """Replace ``document_vector`` (where the indexer calls it too) by the variant the environment names."""
    from kbsearch import indexer
    from kbsearch import lexical as lx

    k1_default = float(os.environ.get("LEX_K1", lx.K1))
    b_default = float(os.environ.get("LEX_B", lx.B))
    avgdl_set = os.environ.get("LEX_AVGDL", "")
    weight = float(os.environ.get("LEX_TITLE_W", "1"))
    in_length = float(os.environ.get("LEX_TITLE_DL", "1"))
    mode = os.environ.get("LEX_TITLE_MODE", "path")
    lengths: list[int] = []

    def document_vector(
        text: str,
        avgdl: float = lx.AVG_DOC_TOKENS,
        k1: float = k1_default,
        b: float = b_default,
        links: Sequence[str] = (),
        heading: str = "",
    ) -> lx.SparseVector:
        tokens = lx.tokenize(text)
        if not tokens:
            return lx.SparseVector([], [])
        parts = text.split("\n\n", 1)[0].split(" > ")
        part = {"path": " > ".join(parts), "title": parts[0], "sections": " ".join(parts[1:])}[mode]
        weighted = lx.tokenize(part) if weight != 1 else []
        lengths.append(len(tokens))
        dl = len(tokens) + (weight - 1) * len(weighted) * in_length
        norm = k1 * (1 - b + b * dl / (float(avgdl_set) if avgdl_set else avgdl))
        counts = collections.Counter(tokens)
        marks = lx.linked_tokens(tokens, links) if links else None
        if marks is not None and any(marks):
            own = collections.Counter(t for t, linked in zip(tokens, marks, strict=True) if not linked)
            counts = collections.Counter({t: own[t] or tf for t, tf in counts.items()})
        frequencies = {t: float(c) for t, c in counts.items()}
        for term in weighted:
            frequencies[term] = frequencies.get(term, 0.0) + weight - 1
        weights: dict[int, float] = {}
        for term, tf in frequencies.items():
            tid = lx.term_id(term)
            weights[tid] = weights.get(tid, 0.0) + tf * (k1 + 1) / (tf + norm)
        return lx._to_sparse(weights)

    lx.document_vector = document_vector
    indexer.document_vector = document_vector
    record = os.environ.get("LEX_RECORD")
    dump = os.environ.get("LEX_DUMP")
    searches: list[dict[str, Any]] = []
    if dump:
        from kbsearch_tools import evaluate

        real_phases, real_summarize = evaluate._score_phases, evaluate.summarize
        current: dict[str, Any] = {}

        def score_phases(service: Any, runnable: Any, queries: Any, *args: Any, **kwargs: Any) -> Any:
            current["queries"], current["label"] = queries, (args[3] if len(args) > 3 else kwargs.get("label", ""))
            return real_phases(service, runnable, queries, *args, **kwargs)

        def summarize(runs: Any, *args: Any, **kwargs: Any) -> Any:
            for q, (ids, relevant) in zip(current["queries"], runs, strict=True):
                searches.append({"label": current["label"], "query": q.query, "ranked": ids[:10],
                                 "relevant": sorted(relevant)})  # fmt: skip
            return real_summarize(runs, *args, **kwargs)

        evaluate._score_phases, evaluate.summarize = score_phases, summarize

    import atexit

    def written() -> None:
        if dump:
            Path(dump).write_text(json.dumps(searches, ensure_ascii=False))
        if record:
            Path(record).write_text(json.dumps({"n": len(lengths), "mean": sum(lengths) / max(1, len(lengths))}))

    atexit.register(written)


def drive(name: str, settings: list[str]) -> None:
    """Every manifest's corpora, lexical phase, with the variant ``settings`` (``KEY=VALUE``): ``OUT/v-NAME.json``."""
    OUT.mkdir(parents=True, exist_ok=True)
    means_file = OUT / "means.json"
    means = json.loads(means_file.read_text()) if means_file.exists() else {}
    out: dict[str, float] = {}
    for manifest in MANIFESTS:
        groups: dict[str, list[str]] = collections.defaultdict(list)
        for c in yaml.safe_load(Path(manifest).read_text()):
            groups[c["corpus"]].append(c["class"])
        for corpus, classes in groups.items():
            key = f"{manifest}|{corpus}"
            env = dict(os.environ) | dict(s.split("=", 1) for s in settings)
            if env.get("LEX_AVGDL") == "auto":
                env["LEX_AVGDL"] = str(means[key])
            if name == "base":
                env["LEX_RECORD"] = str(OUT / "record.json")
            run = subprocess.run(
                ["nice", "-n", "5", sys.executable, __file__, "eval", "--classes", manifest, "--only",
                 ",".join(classes), "--phases", "lexical", "--json"],
                env=env, capture_output=True, text=True, check=False)  # fmt: skip
            if run.returncode:
                print(key, run.stderr[-500:], file=sys.stderr)
                continue
            prefix = Path(manifest).stem.removeprefix("classes").lstrip("-") or "vault"
            for c, v in json.loads(run.stdout)["classes"].items():
                out[f"{prefix}:{c}"] = v["phases"]["lexical"]["nDCG@10"]
            if name == "base":
                means[key] = json.loads((OUT / "record.json").read_text())["mean"]
    if name == "base":
        means_file.write_text(json.dumps(means, indent=1))
    (OUT / f"v-{name}.json").write_text(json.dumps(out, indent=1))


def compare(names: list[str]) -> None:
    base = json.loads((OUT / "v-base.json").read_text())
    runs = {n: json.loads((OUT / f"v-{n}.json").read_text()) for n in names}
    print(f"{'class':34s} {'base':>7s} " + " ".join(f"{n:>7s}" for n in names))
    for c in base:
        print(f"{c:34s} {base[c]:7.4f} " + " ".join(f"{runs[n].get(c, math.nan) - base[c]:+7.4f}" for n in names))
    for n in names:
        d = [runs[n][c] - base[c] for c in base if c in runs[n]]
        print(f"{n}: mean {sum(d) / len(d):+.4f}, up {sum(x > 0.0005 for x in d)}, down "
              f"{sum(x < -0.0005 for x in d)}, lowest {min(d):+.4f}")  # fmt: skip


def ndcg(ids: list[str], relevant: set[str]) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ids[:10]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant))))
    return dcg / ideal if ideal else 0.0


def diff(before: str, after: str, only: str = "") -> None:
    for x, y in zip(json.loads(Path(before).read_text()), json.loads(Path(after).read_text()), strict=True):
        if only and only not in x["label"]:
            continue
        a, b = ndcg(x["ranked"], set(x["relevant"])), ndcg(y["ranked"], set(y["relevant"]))
        if abs(a - b) > 1e-9:
            print(f"{x['label']:18s} {a:.3f} -> {b:.3f} {x['query']!r} relevant {x['relevant'][:2]}")
            print("    before:", x["ranked"][:4])
            print("    after: ", y["ranked"][:4])


def pairs(old: str, new: str) -> None:
    """Each search of capture ``old`` against the same search of capture ``new`` (the same class, another BM25 leg),
    both scored through this tree's ``fusion.fuse`` (``replay.py``'s own load and run): each one that moves, and the
    searches better / worse."""
    sys.path.insert(0, str(Path(__file__).parent))
    replay = importlib.import_module("replay")  # eval/replay/replay.py
    fusion = replay.hooked_fusion()
    before, after = replay.load([Path(old)]), replay.load([Path(new)])
    scored_before, scored_after = replay.run(fusion, before), replay.run(fusion, after)
    better = worse = 0
    for key in sorted(before.keys() & after.keys()):
        rows = zip(before[key]["rows"], after[key]["rows"], scored_before[key], scored_after[key], strict=True)
        for (query, relevant, *_), (query_after, *_), a, b in rows:
            if query != query_after:
                raise SystemExit(f"{key}: the captures hold other searches ({query!r}, {query_after!r})")
            if abs(a - b) > 1e-9:
                better, worse = better + (b > a), worse + (b < a)
                print(f"{key[0]:4} {key[1]:24} {a:.3f} -> {b:.3f} {query!r} [{', '.join(sorted(relevant))}]")
    print(f"better {better} worse {worse}")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"eval", "drive", "compare", "diff", "capture", "pairs"}:
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "drive":
        drive(argv[1], argv[2:])
    elif argv[0] == "compare":
        compare(argv[1:])
    elif argv[0] == "diff":
        diff(*argv[1:4])
    elif argv[0] == "pairs":
        pairs(argv[1], argv[2])
    elif argv[0] == "capture":
        patch()
        sys.path.insert(0, str(Path(__file__).parent))
        capture = importlib.import_module("capture")  # eval/replay/capture.py

        return int(capture.main(argv[1:]))
    else:
        patch()
        from kbsearch_entry import main as kbsearch

        sys.argv = ["kbsearch", *argv]
        return int(kbsearch() or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
