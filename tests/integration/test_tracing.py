"""X-Ray as deployed (``Tracing: Active``): a search sends its stages as subsegments, with the provider and Qdrant
calls beneath them, and the tracer patches only what the search function calls (botocore, httpx): the SDK's
``patch_all`` would also import and patch every other library it knows that happens to be installed."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from typing import Any

from kbsearch_tools.bench import _fake_qdrant_cloud
from kbsearch_tools.fakes import FakeProvider, provider_env
from tests.conftest import ROOT, subprocess_env

CHILD = """
import json, os, sys
from kbsearch_tools.local.runtime import LocalFunction, function_environment
from kbsearch_tools.local.template import Template
template = Template(sys.argv[1])
spec = template.function("SearchFunction")
env = function_environment(spec, template.region, os.environ)
env.pop("AWS_SAM_LOCAL")  # Powertools turns tracing off when it is set at all
env.update(LAMBDA_TASK_ROOT=os.getcwd(), AWS_XRAY_DAEMON_ADDRESS=os.environ["DAEMON"],
           _X_AMZN_TRACE_ID="Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
result = LocalFunction(spec, template.region, env).invoke(json.load(open(sys.argv[2])))
from aws_xray_sdk.core import patcher
print(json.dumps({"status": result["statusCode"], "body": json.loads(result["body"]),
                  "patched": sorted(patcher._PATCHED_MODULES)}))
"""


def _subsegments(segment: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for sub in segment.get("subsegments", []):
        found.append(sub)
        found.extend(_subsegments(sub))
    return found


def test_a_traced_search_sends_its_stages_and_patches_only_botocore_and_httpx() -> None:
    deepinfra = FakeProvider("deepinfra", api_key="di-trace-key").start()
    cloud = _fake_qdrant_cloud(ROOT)
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    daemon.settimeout(5)
    try:
        env = subprocess_env(
            **provider_env(deepinfra), QDRANT_URL=cloud.url, QDRANT_API_KEY="qdrant-trace-key",
            DAEMON=f"127.0.0.1:{daemon.getsockname()[1]}", POWERTOOLS_METRICS_DISABLED="true",
            POWERTOOLS_TRACE_DISABLED="false",  # as the template has it (the test session turns tracing off)
        )  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(ROOT / "template.yaml"), str(ROOT / "events" / "search.json")],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["status"] == 200 and out["body"]["meta"]["degraded"] == [], out["body"]["meta"]
        assert out["patched"] == ["botocore", "httpx"]
        names: list[str] = []
        urls: list[str] = []
        raw = b""
        daemon.settimeout(1)
        with contextlib.suppress(TimeoutError):
            while True:  # the daemon's datagrams, each a header line, then a segment or subsegments
                datagram = daemon.recv(65536)
                raw += datagram
                segment = json.loads(datagram.split(b"\n", 1)[1])
                for sub in [segment, *_subsegments(segment)]:
                    names.append(sub.get("name", ""))
                    urls.append(sub.get("http", {}).get("request", {}).get("url", ""))
    finally:
        daemon.close()
        deepinfra.stop()
        cloud.stop()
    assert {"## expand", "## embed", "## retrieve", "## rerank"} <= set(names), names
    assert any(u.startswith(cloud.url) for u in urls) and any(u.startswith(deepinfra.embeddings_url) for u in urls), (
        urls
    )
    assert "di-trace-key" not in raw.decode() and "qdrant-trace-key" not in raw.decode()  # no secret in a trace
