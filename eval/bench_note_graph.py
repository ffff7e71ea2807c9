"""Time of ``GET /notes/Hub.md`` through the search handler (its links and backlinks, ``browse._links``) on a KB of
a hub with many namesakes: ``Hub.md`` at the root linking 500 notes ``d{i}/n{i}.md`` (each with a namesake
``e{i}/n{i}.md``), each of which links ``[[Hub]]`` back, and 500 notes ``c{i}/Hub.md`` (rev38a: each link was
resolved over every note read, 1.2M matches a read). ``build DIR`` writes the KB and indexes it (BM25 only, the
embedded store); ``time DIR [CALLS]`` prints the median of ``CALLS`` reads in ms, what the read answered (the
resolved links, the backlinks) and a digest of its links (alike on two trees: the same graph). Compare two trees by
alternating runs (``TREE``: the tree whose ``functions/search/app.py`` is loaded)::

    PYTHONPATH=layers/kbsearch:tools .venv/bin/python eval/bench_note_graph.py build /tmp/hub
    for i in 1 2 3; do for t in /work/main .; do TREE=$t PYTHONPATH=$t/layers/kbsearch:$t/tools \\
      nice -n 5 .venv/bin/python eval/bench_note_graph.py time /tmp/hub 5; done; done
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

HUBS = 500


def build(where: Path) -> None:
    from kbsearch.config import Secrets, Settings
    from kbsearch.indexer import run_sync

    kb = where / "kb"
    notes = {"Hub.md": "# Hub\n\n" + " ".join(f"[[n{i}]]" for i in range(HUBS)) + "\n"}
    for i in range(HUBS):
        notes[f"c{i}/Hub.md"] = f"# Hub {i}\n\nfolder hub\n"
        notes[f"d{i}/n{i}.md"] = f"# n{i}\n\nsee [[Hub]]\n"
        notes[f"e{i}/n{i}.md"] = f"# n{i} copy\n\ncopy\n"
    for path, text in notes.items():
        (kb / path).parent.mkdir(parents=True, exist_ok=True)
        (kb / path).write_text(text, encoding="utf-8")
    settings = Settings(qdrant_path=str(where / "q"), qdrant_url="", embedding_api_key=None,
                        embedding_api_key_param="")  # fmt: skip
    report = run_sync(settings, Secrets(settings), source_uri=str(kb))
    print(json.dumps({"notes": report.added, "error": report.error}))


def timed(where: Path, calls: int) -> None:
    from kbsearch_tools.local.apigw import HttpRequest, build_event, parse_result
    from kbsearch_tools.local.runtime import LambdaContext

    os.environ["QDRANT_PATH"] = str(where / "q")
    tree = Path(os.environ.get("TREE", Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(tree / "functions" / "search"))
    spec = importlib.util.spec_from_file_location("search_app", tree / "functions/search/app.py")
    assert spec and spec.loader
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    times, links = [], {}
    for _ in range(calls):
        event = build_event(HttpRequest("GET", "/notes/Hub.md", "", [], b""), "/notes/{path+}", {"path": "Hub.md"},
                            "dev")  # fmt: skip
        start = time.perf_counter()
        answer = parse_result(app.lambda_handler(event, LambdaContext("bench", 1536, 28)))
        times.append(time.perf_counter() - start)
        links = json.loads(answer.body)["links"]
    digest = hashlib.sha256(json.dumps(links, sort_keys=True).encode()).hexdigest()[:16]
    print(json.dumps({"median_ms": round(statistics.median(times) * 1000), "runs": [round(t * 1000) for t in times],
                      "outgoing_resolved": sum(1 for r in links["outgoing"] if r["path"]),
                      "backlinks": len(links["backlinks"]), "digest": digest}))  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("build", "time"):
        sys.exit(f"usage: {sys.argv[0]} build DIR | time DIR [CALLS]")
    if sys.argv[1] == "build":
        build(Path(sys.argv[2]))
    else:
        timed(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 5)
