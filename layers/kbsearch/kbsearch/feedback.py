"""Votes on Slack answers (👍/👎): what was asked, which notes came back at which ranks, the vote and when; of the
person, only a salted hash. Stored in DynamoDB in Lambda (``SLACK_FEEDBACK_TABLE``), in a JSONL file under
``kbsearch serve`` (``SLACK_FEEDBACK_FILE``). One vote per person and answer: voting again replaces the vote.
``kbsearch feedback export`` turns them into a labelled query set for ``kbsearch eval``."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from kbsearch.errors import KbSearchError

VOTES = ("up", "down")
#: A vote's line: a question (a Slack command holds 4,000 characters), its filters and a page of hits (paths of up to
#: 1,024 characters), JSON-escaped: far under this.
MAX_VOTE_LINE_BYTES = 1024 * 1024


def vote_record(
    query: str,
    filters: Mapping[str, Any],
    page: int,
    paths: Sequence[str],
    first_rank: int,
    vote: str,
    voter: str,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """One vote. ``id`` is the same for the same person judging the same answer, so a second vote replaces it."""
    if vote not in VOTES:
        raise ValueError(f"vote must be one of {VOTES}")
    hits = [{"path": p, "rank": first_rank + i} for i, p in enumerate(paths)]
    answer = json.dumps([query, dict(filters), page, list(paths)], ensure_ascii=False, sort_keys=True, default=str)
    record_id = hashlib.sha256(f"{voter}\n{answer}".encode()).hexdigest()[:32]
    when = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    return {"id": record_id, "time": when, "query": query, "filters": dict(filters), "page": page, "hits": hits,
            "vote": vote, "voter": voter}  # fmt: skip


class FeedbackStore(Protocol):
    def put(self, record: dict[str, Any]) -> None: ...

    def scan(self) -> Iterator[dict[str, Any]]: ...


class FileFeedbackStore:
    """A JSONL file (``kbsearch serve``): one line a vote, appended; the last line of an ``id`` wins."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def put(self, record: dict[str, Any]) -> None:
        """Append one line, whole or not at all: a write the disk cuts short (full) is taken back, so no torn line
        is left for the next vote to be glued to (one full disk made the file unreadable by ``kbsearch feedback
        export``: ``not a JSON vote``, every vote unexported, and the next vote lost in the torn line). A file that
        does not end a line (torn by a crash, or by an earlier version) gets the vote on a line of its own."""
        data = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                start = os.fstat(fd).st_size
                if start and os.pread(fd, 1, start - 1) != b"\n":
                    data = b"\n" + data
                written = 0
                try:
                    while written < len(data):
                        written += os.write(fd, data[written:])
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, start)
                    raise
            finally:
                os.close(fd)

    def scan(self) -> Iterator[dict[str, Any]]:
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise KbSearchError(f"cannot read {self.path}: {exc.strerror}") from None
        with handle:
            number = 0
            while raw := handle.readline(MAX_VOTE_LINE_BYTES + 1):
                number += 1
                if len(raw) > MAX_VOTE_LINE_BYTES and not raw.endswith(b"\n"):  # read whole, one line was all memory
                    raise KbSearchError(f"{self.path}:{number}: a line longer than {MAX_VOTE_LINE_BYTES // 1024} KiB "
                                        "is no vote")  # fmt: skip
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:  # read as text, it was a traceback out of the loop
                    raise KbSearchError(f"{self.path}:{number}: not UTF-8") from None
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser recurses
                    raise KbSearchError(f"{self.path}:{number}: not a JSON vote") from None
                if isinstance(record, dict):
                    yield record


class DynamoFeedbackStore:
    """A DynamoDB table keyed by ``id`` (Lambda): a put replaces an earlier vote of the same person on the same
    answer. The vote is stored as its JSON, with ``time`` and ``vote`` beside it for queries in the console."""

    def __init__(self, table: str, client: Any = None) -> None:
        self.table = table
        if client is None:
            import boto3

            try:
                client = boto3.client("dynamodb")
            except Exception as exc:  # no region configured, say: one line, not botocore's traceback
                raise self._unusable(exc) from None
        self.client = client

    def _unusable(self, exc: Exception) -> KbSearchError:
        return KbSearchError(f"cannot read the votes table {self.table!r}: {type(exc).__name__}: {exc}")

    def put(self, record: dict[str, Any]) -> None:
        item = {"id": {"S": record["id"]}, "time": {"S": record["time"]}, "vote": {"S": record["vote"]},
                "record": {"S": json.dumps(record, ensure_ascii=False, separators=(",", ":"))}}  # fmt: skip
        self.client.put_item(TableName=self.table, Item=item)

    def scan(self) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"TableName": self.table}
        while True:
            try:
                page = self.client.scan(**kwargs)
            except Exception as exc:  # no credentials, no such table, AWS not reachable
                raise self._unusable(exc) from None
            for item in page.get("Items", []):
                try:
                    record = json.loads(item["record"]["S"])
                except (KeyError, TypeError, ValueError, RecursionError):  # an item edited by hand: not a vote
                    continue
                if isinstance(record, dict):
                    yield record
            if not page.get("LastEvaluatedKey"):
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def open_feedback_store(table: str, file: str) -> FeedbackStore:
    """DynamoDB when a table is configured, else the local file."""
    return DynamoFeedbackStore(table) if table else FileFeedbackStore(file)


def latest_votes(records: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per ``id``, the latest (by time, then by order read)."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        key = str(record.get("id", ""))
        if key and (key not in latest or str(record.get("time", "")) >= str(latest[key].get("time", ""))):
            latest[key] = record
    return list(latest.values())
