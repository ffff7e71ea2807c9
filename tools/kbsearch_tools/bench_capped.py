"""What the indexer's capped Qdrant transport holds for one large legitimate answer
(``python -m kbsearch_tools.bench_capped --dims 4096 --points 2048 --coding plain --measure tracemalloc``, round 31).

A scroll page of ``--points`` points, each a ``--dims``-dimension float32 unit vector written as its shortest
decimals (as Qdrant writes them; seeded), is served by a loopback :class:`~kbsearch_tools.fakes.FakeEndpoint`,
plain or gzip-coded, and read by :class:`kbsearch.qdrant.rest.CappedAnswers` (``handle_request``, as qdrant-client
calls it). Printed as JSON: the answer's size, and the peak over it of ``tracemalloc`` (Python's allocations during
the call) or ``rss`` (the process's peak RSS over its RSS just before the call; the page is written by a child
process so that nothing before the call peaked higher; with ``gzip`` the plain body is freed before the call and
its memory reused, so ``rss`` does not tell there). Run it with a tree's ``PYTHONPATH`` to measure that tree.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile

_PAGE = """
import json, sys
import numpy as np
dims, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
parts = []
for i in range(n):
    v = rng.standard_normal(dims).astype(np.float32)
    v /= np.linalg.norm(v)
    dense = ",".join(str(x) for x in v.astype(np.float32))
    parts.append('{"id":%d,"payload":{"path":"n%d.md","chunk_index":0},"vector":{"dense":[%s]}}' % (i, i, dense))
with open(path, "w") as out:
    out.write('{"result":{"points":[' + ",".join(parts) + '],"next_page_offset":null},"status":"ok","time":0.0}')
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kbsearch_tools.bench_capped", description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, default=4096)
    parser.add_argument("--points", type=int, default=2048)
    parser.add_argument("--coding", choices=["plain", "gzip"], default="plain")
    parser.add_argument("--measure", choices=["tracemalloc", "rss"], default="tracemalloc")
    args = parser.parse_args(argv)

    import httpx

    from kbsearch.qdrant.rest import CappedAnswers
    from kbsearch_tools.fakes import FakeEndpoint

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "page.json")
        subprocess.run([sys.executable, "-c", _PAGE, str(args.dims), str(args.points), path], check=True)
        with open(path, "rb") as page:
            body = page.read()
    answer_bytes = len(body)
    endpoint = FakeEndpoint().start()
    endpoint.content_type = "application/json"
    endpoint.body = gzip.compress(body, 1) if args.coding == "gzip" else body
    wire_bytes = len(endpoint.body)
    if args.coding == "gzip":
        endpoint.headers = {"Content-Encoding": "gzip"}
        del body
    transport = CappedAnswers(httpx.Client())
    try:
        transport.handle_request(httpx.Request("POST", endpoint.url + "/warm", json={})).read()  # the connection
        request = httpx.Request("POST", endpoint.url + "/collections/kb/points/scroll", json={})
        if args.measure == "tracemalloc":
            import tracemalloc

            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            response = transport.handle_request(request)
            peak = tracemalloc.get_traced_memory()[1] - base
            tracemalloc.stop()
        else:
            page_size = os.sysconf("SC_PAGE_SIZE")
            with open("/proc/self/statm") as statm:
                before = int(statm.read().split()[1]) * page_size
            response = transport.handle_request(request)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before  # KiB on Linux
        assert len(response.read()) == answer_bytes
    finally:
        transport.close()
        endpoint.stop()
    print(json.dumps({"measure": args.measure, "dims": args.dims, "points": args.points, "coding": args.coding,
                      "answer_bytes": answer_bytes, "wire_bytes": wire_bytes, "peak_bytes": peak,
                      "peak_over_answer": round(peak / answer_bytes, 2)}))  # fmt: skip


if __name__ == "__main__":
    main()
