"""The last S3 ``sequencer`` applied per key (its name within the KB: a note's path for a key in NFC; sequencers of
two keys spelling one path in two Unicode forms are not comparable), kept durably, so that events that arrive late or twice change
nothing: a ``Created`` older than the ``Removed`` already applied never resurrects a note, a replay is a no-op.

- :class:`DynamoSequencers`: items ``seq#<collection>#<name>`` in the index lease table (``INDEX_LEASE_TABLE``),
  ``{pk, seq (padded hex), expires_at}``; the write is conditional (``attribute_not_exists(pk) OR seq < :seq``):
  an event batch *claims* a sequencer before it writes the note, so of two runs applying the same key concurrently,
  the one with the older event learns it is stale, and one that finds a later claim when it reads the log again
  after its write applies the note again (``ChangeSync``); a run whose write failed gives its claim back
  (``release``: the sequencer logged before put back, conditional on the claim still being its own). An
  item whose ``seq`` is no sequencer this log writes (edited by hand) records nothing and is written over. Items
  expire 15 days after their event (the table's TTL): SQS keeps a message at most 14 days.
- :class:`FileSequencers`: a JSON file beside the embedded store (one process owns that store). An entry that
  holds no S3 sequencer (edited by hand), or a file that cannot be read (cut short, not UTF-8, nested past the
  parser's limit), records nothing for those notes: their next events are applied and written over it. A file
  that cannot be written is logged and kept in memory for the run: the batch is not failed for it (a late event
  then applies what the source holds now, as without a log).

Without either (Qdrant Cloud without a lease table) events are applied by reading each key's current state, which
converges on its own; only the concurrent-writer guard is missing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from kbsearch.errors import aws_error_code
from kbsearch.events import SEQUENCER_WIDTH, is_sequencer, newer, sequencer_key
from kbsearch.lease import expiry
from kbsearch.qdrant.space import open_regular

logger = logging.getLogger(__name__)

TTL_S = 15 * 24 * 3600
#: A claim of an event older than this is abandoned (:func:`abandoned`): the indexer function's timeout (900 s in
#: template.yaml), the longest any batch runs, whose SQS retry comes after the queue's visibility timeout (5,400 s).
ABANDONED_S = 900.0
#: What :func:`sequencer_key` writes.
_KEY = re.compile(f"[0-9A-F]{{{SEQUENCER_WIDTH}}}")


def _held(item: dict[str, Any]) -> str | None:
    """An item's recorded sequencer, or None when it holds none this log writes (a hand edit, another tool: no
    ``seq``, a number, a list, text that is not 64 upper-case hex digits). Such an item records nothing: the event is
    applied (its key's current state, as without a log) and its sequencer written over the item."""
    seq = item.get("seq")
    value = seq.get("S") if isinstance(seq, dict) else None
    return value if isinstance(value, str) and _KEY.fullmatch(value) else None


def abandoned(held: str, claimed_at: float | None, sequencer: str, now: float) -> bool:
    """Whether ``held``, the sequencer logged for a note, is a claim of this very event (``sequencer``) made more
    than :data:`ABANDONED_S` ago: the batch that made it was killed between its claim and its write (no batch runs
    longer), so the event's retry applies the note instead of dropping it as stale (the note kept its old text
    until the next full sync). A claim of unknown age (an entry written before claims had one) is never abandoned.
    Applying it again is safe even if its batch lives on: both read the key after the claim, and a later claim
    made meanwhile has either batch read it again (``ChangeSync._reapply_superseded``)."""
    return (
        bool(held)
        and claimed_at is not None
        and sequencer_key(held) == sequencer_key(sequencer)
        and now - claimed_at > ABANDONED_S
    )


class Sequencers(Protocol):
    def get(self, paths: list[str]) -> dict[str, str]:
        """The last applied sequencer of each path that has one."""
        ...

    def claims(self, paths: list[str]) -> dict[str, tuple[str, float | None]]:
        """As :meth:`get`, with when each sequencer was claimed (epoch seconds; None when unknown)."""
        ...

    def put(self, path: str, sequencer: str) -> bool:
        """Record ``sequencer`` for ``path`` unless a later one is recorded; False when a later one is."""
        ...

    def release(self, path: str, sequencer: str, previous: str) -> None:
        """Put ``previous`` back (none: no record) if ``sequencer`` is still the one recorded for ``path``."""
        ...


class DynamoSequencers:
    def __init__(self, table: str, collection: str, client: Any = None, clock: Any = time.time) -> None:
        from kbsearch.lease import dynamodb_client

        self.table = table
        self.prefix = f"seq#{collection}#"
        self.clock = clock
        self.client = client if client is not None else dynamodb_client()

    def get(self, paths: list[str]) -> dict[str, str]:
        return {path: held for path, (held, _) in self.claims(paths).items()}

    def claims(self, paths: list[str]) -> dict[str, tuple[str, float | None]]:
        """When claimed: the item's expiry less :data:`TTL_S` (put writes both at once)."""
        found: dict[str, tuple[str, float | None]] = {}
        unique = sorted(set(paths))
        for start in range(0, len(unique), 100):  # BatchGetItem takes 100 keys
            keys: list[dict[str, Any]] = [{"pk": {"S": self.prefix + p}} for p in unique[start : start + 100]]
            request: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
            for _ in range(8):
                answer = self.client.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.table, []):
                    held = _held(item)
                    if held is None:
                        logger.warning("sequencer log item %s holds no sequencer; the event is applied",
                                       item["pk"]["S"])  # fmt: skip
                    else:
                        expires = expiry(item.get("expires_at"))
                        claimed = None if expires is None else float(expires - TTL_S)
                        found[item["pk"]["S"][len(self.prefix) :]] = (held, claimed)
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise RuntimeError("DynamoDB left keys unprocessed after 8 tries")
        return found

    def put(self, path: str, sequencer: str) -> bool:
        if not sequencer:
            return True
        key = sequencer_key(sequencer)
        # text first: a seq of another type is never compared (DynamoDB finds it false; moto raised a TypeError)
        condition = "attribute_not_exists(pk) OR (attribute_type(seq, :text) AND seq < :seq)"
        values: dict[str, Any] = {":seq": {"S": key}, ":text": {"S": "S"}}
        for _ in range(2):
            try:
                self.client.put_item(
                    TableName=self.table,
                    Item={
                        "pk": {"S": self.prefix + path},
                        "seq": {"S": key},
                        "expires_at": {"N": str(int(self.clock() + TTL_S))},
                    },
                    ConditionExpression=condition,
                    **({"ExpressionAttributeValues": values} if values else {}),
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except Exception as exc:
                if aws_error_code(exc) != "ConditionalCheckFailedException":
                    raise
                old = getattr(exc, "response", {}).get("Item") or {}
                held = _held(old)
                if held is not None:  # as late or later already recorded
                    return held == key
                # no seq this log writes (:func:`_held`): written over, unless it changed meanwhile
                if "seq" in old:
                    condition, values = "seq = :old", {":old": old["seq"]}
                else:
                    condition, values = "attribute_exists(pk) AND attribute_not_exists(seq)", {}
                continue
            return True
        return False

    def release(self, path: str, sequencer: str, previous: str) -> None:
        if not sequencer:
            return
        key = {"pk": {"S": self.prefix + path}}
        mine: dict[str, Any] = {":mine": {"S": sequencer_key(sequencer)}}
        try:
            if previous:
                self.client.put_item(
                    TableName=self.table,
                    Item={**key, "seq": {"S": sequencer_key(previous)},
                          "expires_at": {"N": str(int(self.clock() + TTL_S))}},
                    ConditionExpression="seq = :mine", ExpressionAttributeValues=mine,
                )  # fmt: skip
            else:
                self.client.delete_item(TableName=self.table, Key=key, ConditionExpression="seq = :mine",
                                        ExpressionAttributeValues=mine)  # fmt: skip
        except Exception as exc:
            if aws_error_code(exc) != "ConditionalCheckFailedException":  # else a later claim holds it: left as it is
                raise


class FileSequencers:
    """A JSON object ``{path: [sequencer, claimed at (epoch seconds)]}`` written atomically (temporary file +
    rename); an entry ``{path: sequencer}`` (written before claims had a time) is read as a claim of unknown age."""

    def __init__(self, file: Path, clock: Any = time.time) -> None:
        self.file = file
        self.clock = clock
        self._lock = threading.Lock()
        try:
            with open_regular(file) as handle:  # a FIFO in its place hung the run that opened it
                data = json.loads(handle.read().decode("utf-8"))
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError, RecursionError):  # nested past the parser's limit: a RecursionError
            logger.warning("sequencer log %s unreadable; starting afresh", file)
            data = {}
        entries = data if isinstance(data, dict) else {}
        # only what put writes (an S3 sequencer): `str(v)` of text above every sequencer ("Z"*64, 80 digits,
        # `None`, a list's repr) made every later event of the note stale, its old text kept until a full sync
        self._data: dict[str, str] = {}
        self._at: dict[str, float] = {}  # when each was claimed (an entry of the form [sequencer, epoch seconds])
        for k, entry in entries.items():
            v, at = entry, None
            if isinstance(entry, list) and len(entry) == 2 and type(entry[1]) in (int, float):  # not a bool
                v, at = entry[0], float(entry[1])
            if is_sequencer(v):
                self._data[k] = v
                if at is not None and math.isfinite(at):
                    self._at[k] = at
        if len(self._data) < len(entries) or not isinstance(data, dict):
            logger.warning("sequencer log %s: %d entries hold no sequencer; their notes' next events are applied",
                           file, len(entries) - len(self._data) if isinstance(data, dict) else 1)  # fmt: skip

    def get(self, paths: list[str]) -> dict[str, str]:
        with self._lock:
            return {p: self._data[p] for p in paths if p in self._data}

    def claims(self, paths: list[str]) -> dict[str, tuple[str, float | None]]:
        with self._lock:
            return {p: (self._data[p], self._at.get(p)) for p in paths if p in self._data}

    def put(self, path: str, sequencer: str) -> bool:
        if not sequencer:
            return True
        with self._lock:
            held = self._data.get(path, "")
            if held and not newer(sequencer, held):
                return held == sequencer
            self._data[path] = sequencer
            self._at[path] = self.clock()
            self._write()
        return True

    def release(self, path: str, sequencer: str, previous: str) -> None:
        if not sequencer:
            return
        with self._lock:
            if self._data.get(path) != sequencer:
                return  # a later claim holds it: left as it is
            if previous:
                self._data[path] = previous
                self._at[path] = self.clock()
            else:
                self._data.pop(path, None)
                self._at.pop(path, None)
            self._write()

    def _write(self) -> None:
        """The log written whole (called with the lock held)."""
        tmp = self.file.with_suffix(f".{os.getpid()}.tmp")
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            entries = {p: ([v, self._at[p]] if p in self._at else v) for p, v in self._data.items()}
            tmp.write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
            tmp.replace(self.file)
        except OSError as exc:
            # kept in memory for this run: a log that cannot be written (a folder in its place, a full or
            # read-only disk) failed every batch back for good, though an event applies what is there now
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            logger.warning("sequencer log %s cannot be written (%s); a late event applies what the KB holds now",
                           self.file, type(exc).__name__)  # fmt: skip
