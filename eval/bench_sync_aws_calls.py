"""The AWS requests a sync makes, by operation, in moto (rev36c's ``count_calls.py`` and rev36d's ``count.py``;
committed in round 37 by tidy37: they had been quoted in RELIABILITY.md and run from ``/tmp``). Run it on a tree
(``PYTHONPATH=<tree>/layers/kbsearch:<tree>/tools``) to compare trees.

- ``dynamodb``: the indexer handler (``functions/indexer/app.py`` of ``--tree``) runs two scheduled syncs of a KB
  folder (the Obsidian vault by default) put into moto's S3, the embedded store in a scratch folder,
  ``INDEX_LEASE_TABLE`` a moto table and the default 300 s lease: the DynamoDB calls of each sync (rev36c: the
  lease's renewal costs the embedded store no call per write).
- ``s3 N``: one full sync of a KB of ``N`` notes (half under ``hr/``) and an access file, after a first sync: the
  S3 calls of the full sync and what it re-applied (rev36d: the access file's one ``HeadObject``).

    PYTHONPATH=layers/kbsearch:tools .venv/bin/python eval/bench_sync_aws_calls.py dynamodb --tree .
    PYTHONPATH=layers/kbsearch:tools .venv/bin/python eval/bench_sync_aws_calls.py s3 200
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import io
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from kbsearch.config import Secrets, Settings
from kbsearch.indexer import Indexer, SyncOptions
from kbsearch.qdrant import open_store
from kbsearch.sources import S3Source
from kbsearch_tools.local.runtime import LambdaContext

VAULT = Path(__file__).resolve().parents[1] / ".." / "shared" / "kb" / "obsidian-help"
REGION = "us-east-1"


def dynamodb_calls(tree: Path, kb: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-aws-") as scratch, mock_aws():
        os.environ.update(POWERTOOLS_METRICS_NAMESPACE="t", KB_SOURCE="s3://kb-notes/", INDEX_LEASE_TABLE="leases",
                          QDRANT_PATH=f"{scratch}/q", QDRANT_URL="")  # fmt: skip
        boto3.setup_default_session()
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="kb-notes")
        for f in sorted(kb.rglob("*.md")):
            s3.put_object(Bucket="kb-notes", Key=str(f.relative_to(kb)), Body=f.read_bytes())
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName="leases",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        calls: collections.Counter[str] = collections.Counter()
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register("before-call.dynamodb", lambda model, **_: calls.update([model.name]))
        spec = importlib.util.spec_from_file_location("app", tree / "functions" / "indexer" / "app.py")
        assert spec is not None and spec.loader is not None
        app: Any = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(app)
        logging.disable(logging.CRITICAL)
        for run in ("first", "second"):
            calls.clear()
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                r = app.lambda_handler({"full": False}, LambdaContext("kb-search-indexer", 2048, 900))
            print(run, "added", r.get("added"), "unchanged", r.get("unchanged"), "chunks", r.get("chunks_upserted"),
                  dict(sorted(calls.items())), f"{time.perf_counter() - started:.1f}s", flush=True)  # fmt: skip


def s3_calls(notes: int) -> None:
    with mock_aws(), tempfile.TemporaryDirectory(prefix="bench-aws-") as scratch:
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="kb-count")
        s3.put_object(Bucket="kb-count", Key="kb/_access.yaml", Body=b"hr/: [hr]\n")
        for i in range(notes):
            key = f"kb/{'hr' if i % 2 else 'pub'}/n{i}.md"
            s3.put_object(Bucket="kb-count", Key=key, Body=f"# N{i}\n\nbody {i}\n".encode())
        settings = Settings(kb_source="s3://kb-count/kb/", qdrant_path=f"{scratch}/store", embedding_api_key=None)
        store = open_store(settings, Secrets(settings))
        try:
            first = S3Source("kb-count", "kb/", client=boto3.client("s3", region_name=REGION))
            Indexer(first, store, None, SyncOptions()).sync()
            calls: collections.Counter[str] = collections.Counter()
            client = boto3.client("s3", region_name=REGION)
            client.meta.events.register("before-call.s3.*", lambda model, **_: calls.update([model.name]))
            report = Indexer(S3Source("kb-count", "kb/", client=client), store, None, SyncOptions(full=True)).sync()
            print(dict(sorted(calls.items())), "error", report.error, "access_updated", report.access_updated)
        finally:
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    lease = sub.add_parser("dynamodb", help="the DynamoDB calls of two scheduled syncs through the handler")
    lease.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1], help="whose handler")
    lease.add_argument("--kb", type=Path, default=VAULT)
    s3 = sub.add_parser("s3", help="the S3 calls of one full sync")
    s3.add_argument("notes", type=int)
    args = parser.parse_args()
    os.environ.update(AWS_DEFAULT_REGION=REGION, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x")  # noqa: S106 (moto)
    if args.what == "dynamodb":
        dynamodb_calls(args.tree.resolve(), args.kb)
    else:
        s3_calls(args.notes)


if __name__ == "__main__":
    main()
