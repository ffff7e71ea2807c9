"""Capture every hybrid search's ``fuse()`` inputs of one ``kbsearch eval --classes`` run, with its class's labels.

    EMBEDDING_TIMEOUT_S=900 EMBEDDING_QUERY_TIMEOUT_S=120 .venv/bin/python eval/replay/capture.py \\
        .kbsearch/replay/use-classes.pkl -- eval --classes eval/classes.yaml --oracle use \\
        --phases lexical,dense,hybrid --oracle-cache .kbsearch/oracle/use.sqlite --json

Everything after ``--`` is ``kbsearch``'s own command line; the run is the real eval (its report is printed as
usual), with ``kbsearch.search.fuse`` wrapped to record each hybrid search's legs (payloads cut to ``path``,
``doc_id``, ``lang``, ``title``: what the fusion and the eval read with ``SEARCH_PRIOR`` off; ``title`` since session
33, and the replay reads it again from the class's corpus, ``eval/replay/texts.attach``) and the phases' nDCG@10 per
class. The timeouts: a cold model on a busy host embeds slower than the providers' defaults allow (a degraded
search would be captured as the fallback's, not the fusion's). ``eval/replay/replay.py`` replays the file.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import Any

import kbsearch.search as search_module
from kbsearch.markdown import PARSE_VERSION
from kbsearch_tools import cli, evaluate

KEEP = ("path", "doc_id", "lang", "title")


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    real_fuse, real_score = search_module.fuse, evaluate._score_phases
    calls: list[tuple[Any, Any, int]] = []
    classes: dict[str, dict[str, Any]] = {}

    def fuse(results: Any, evidence: Any, limit: int, mode: str = "hybrid", params: Any = None) -> Any:
        if mode == "hybrid":
            slim = [(leg, [type(c)(c.id, c.score, {k: c.payload[k] for k in KEEP if k in c.payload}) for c in chunks])
                    for leg, chunks in results]  # fmt: skip
            calls.append((slim, evidence, limit))
        return real_fuse(results, evidence, limit, mode, params)

    def score_phases(  # evaluate._score_phases's own signature: the class's name is its label
        service: Any,
        runnable: Any,
        queries: Any,
        key: str,
        depth: int,
        progress: Any,
        label: str = "",
        by_kind: Any = None,
    ) -> Any:
        calls.clear()
        scored = real_score(service, runnable, queries, key, depth, progress, label, by_kind)
        label = label.strip()
        if len(calls) != len(queries):
            raise SystemExit(f"{label}: {len(calls)} hybrid searches captured for {len(queries)} queries")
        rows = []
        for q, (results, evidence, limit) in zip(queries, calls, strict=True):
            if evidence.text != (q.query[:1000] or "?"):
                raise SystemExit(f"{label}: captured {evidence.text!r} for {q.query!r}")
            rows.append((q.query, frozenset(q.relevant), results, evidence, limit))
        classes[label] = {"rows": rows, "phases": {k: v["nDCG@10"] for k, v in scored.items()},
                          "parse_version": PARSE_VERSION}  # fmt: skip
        calls.clear()
        return scored

    search_module.fuse = fuse  # type: ignore[assignment]
    evaluate._score_phases = score_phases  # type: ignore[assignment]
    try:
        return cli.main(argv[2:])
    finally:
        with out.open("wb") as f:
            pickle.dump(classes, f, protocol=5)
        print(f"captured {sum(len(c['rows']) for c in classes.values())} searches, {len(classes)} classes: {out}",
              file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
