"""One indexer run at a time: a lease in DynamoDB, a conditional write with an expiry.

The scheduled indexer and ``kbsearch index`` against the same Qdrant collection take the same lease (table
``INDEX_LEASE_TABLE``, key ``index#<collection>``). A run that finds it held by someone else leaves everything
alone and reports ``skipped: another run holds the lease``. The holder renews it every third of its time to live
while it works and deletes it when done; a holder that dies (a Lambda timeout, a killed laptop) blocks others only
until the expiry, which is also the table's TTL attribute.

Item: ``{pk, owner, expires_at (epoch seconds), acquired_at}``. Every write is conditional:
acquire ``attribute_not_exists(pk) OR expires_at < now`` (or an ``expires_at`` no holder writes: absent, not a
number, or further ahead than :data:`FURTHEST_S`: a hand edit, taken over rather than waited on for ever); renew and
release ``owner = me``, so a run whose lease expired and was taken over never extends or deletes the new holder's
lease.

Without ``INDEX_LEASE_TABLE`` there is no lease: the embedded store (local runs) is already single-writer, since
Qdrant's local mode locks its folder and a second process fails to open it.
"""

from __future__ import annotations

import contextlib
import decimal
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from kbsearch.errors import KbSearchError, aws_error_code
from kbsearch.logcontext import context_thread

if TYPE_CHECKING:
    from kbsearch.config import Settings
    from kbsearch.providers.resilience import Deadline

logger = logging.getLogger(__name__)

#: At most this many DynamoDB calls cut at a run's end may still run in one process (a warm Lambda's runs over a
#: DynamoDB that drips): while they do, no call is started (:func:`dynamodb_client`).
MAX_ABANDONED = 2


def dynamodb_client(deadline: Deadline | None = None) -> Any:
    """The indexer's DynamoDB client (the lease table: the index lease, the links lease, the event sequencers):
    botocore's timeouts (2 s to connect, 5 s a read, 3 attempts) bound a peer that does not answer (20 s a call,
    ``eval/bench_aws_stalls.py``), not one that drips its answer, each byte within a read's timeout (41-46 s at a
    byte every 0.5 s, without end at one every 4.9 s). ``deadline`` (a Lambda run's end): every call ends by it, on a
    helper thread waited on no longer (:func:`~kbsearch.providers.resilience.call_within`, as the KB's S3 reads are
    since rev34c); past it a TimeoutError, which each caller takes as it takes DynamoDB not answering (rel35)."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"})
    client = boto3.client("dynamodb", config=config)
    return client if deadline is None else _Bounded(client, deadline)


class _Bounded:
    """A boto3 client whose every call ends by ``deadline`` (:func:`dynamodb_client`)."""

    def __init__(self, client: Any, deadline: Deadline) -> None:
        self._client, self._deadline = client, deadline

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if not callable(method) or name.startswith("_"):
            return method

        def bounded(*args: Any, **kwargs: Any) -> Any:
            from kbsearch.providers.resilience import TooManyAbandoned, abandoned_calls, call_within

            left = self._deadline.remaining()
            if left <= 0:
                raise TimeoutError("the run's end came before DynamoDB was asked")
            try:
                return call_within(lambda: method(*args, **kwargs), left, "kbsearch-dynamodb",
                                   abandoned_calls("kbsearch-dynamodb", MAX_ABANDONED))  # fmt: skip
            except TooManyAbandoned:
                raise TimeoutError(
                    f"{MAX_ABANDONED} DynamoDB calls cut at a run's end are still running; not asked"
                ) from None
            except TimeoutError:
                raise TimeoutError("DynamoDB gave no whole answer by the run's end") from None

        return bounded


SKIPPED = "another run holds the lease"
#: How long a short lease (:func:`short_lease`) lives when its holder dies without releasing it.
LINKS_TTL_S = 60.0
#: How far ahead an ``expires_at`` may be and still be a holder's: twice the longest ``INDEX_LEASE_TTL_S`` the
#: settings allow (3,600 s). Further ahead it is no holder's write (a hand edit, another tool) and the lease is
#: free: waiting for it would stop every full sync and event batch for as long as it says (10^30 s).
FURTHEST_S = 2 * 3600
#: How far two machines' clocks may disagree when one reads the expiry the other wrote (Lambda's and a laptop's
#: clocks are NTP-synchronised to milliseconds; a laptop's drifts by seconds): what a write's margin adds to its own
#: timeout (:meth:`Lease.held`'s ``for_s``, :func:`write_margin`).
CLOCK_SLACK_S = 5.0


def write_margin(timeout_s: float) -> float:
    """How long a lease must still surely hold before a write of timeout ``timeout_s`` is started: the write's own
    timeout and the clocks' slack. No fencing token reaches Qdrant, so a write already sent when the lease is lost
    would land beside the next holder's; started only with this much left, it has ended (or timed out) before the
    lease's expiry has passed on any clock, and so before another run can take it over (round 36, rel36)."""
    return timeout_s + CLOCK_SLACK_S


class LeaseError(KbSearchError):
    """The lease table could not be used (missing, no permission, unreachable)."""


class LeaseHeld(KbSearchError):
    """Another run holds the lease; this run must not touch the index."""

    def __init__(self, holder: str, expires_at: int | None) -> None:
        self.holder = holder
        self.expires_at = expires_at
        try:
            until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_at)) if expires_at else "unknown"
        except (OverflowError, OSError, ValueError):  # beyond the platform's time_t
            until = "unknown"
        super().__init__(f"{SKIPPED} (held by {holder} until {until})")


def expiry(attribute: Any) -> int | None:
    """A lease item's ``expires_at`` (DynamoDB's ``{"N": "..."}``) as epoch seconds; None when it is absent or no
    number (a string, a boolean, a list: a hand-edited item)."""
    number = attribute.get("N") if isinstance(attribute, dict) else None
    if not isinstance(number, str):
        return None
    try:
        value = decimal.Decimal(number)
    except decimal.InvalidOperation:
        return None
    return int(value) if value.is_finite() else None


def held_until(attribute: Any, now: float, furthest_s: float = FURTHEST_S) -> int | None:
    """When a lease whose item says ``attribute`` ends, or None when it is free now: expired, or an expiry no holder
    writes (absent, no number, more than ``furthest_s`` ahead)."""
    expires = expiry(attribute)
    if expires is None or expires < int(now) or expires > now + furthest_s:
        return None
    return expires


def _owner(item: dict[str, Any]) -> str:
    """Who a lease item names as its holder (``another run`` when its ``owner`` is no string)."""
    owner = item.get("owner")
    name = owner.get("S") if isinstance(owner, dict) else None
    return name if isinstance(name, str) and name else "another run"


class Lease:
    """A named lease in a DynamoDB table (string hash key ``pk``). Use as a context manager, or call
    :meth:`acquire` / :meth:`renew` / :meth:`release` yourself."""

    def __init__(
        self,
        table: str,
        name: str,
        ttl_s: float = 300.0,
        client: Any = None,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.table = table
        self.name = name
        self.ttl_s = ttl_s
        self.clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.client = client if client is not None else dynamodb_client()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.lost = False
        #: until when the lease is surely this holder's: the last write of its expiry, counted from before that
        #: write was sent, on the monotonic clock and on ``clock`` (the one expiries are written and read by: the
        #: monotonic clock stands still while a laptop sleeps, the lease's expiry does not); None before acquired
        self._sure_until: tuple[float, float] | None = None
        self._asked: tuple[float, float] | None = None  # the expiry :meth:`held` renewed past once already
        self._asking = threading.Lock()
        #: why :meth:`held` once answered no to this holder (renewals failing past what it needed; taken over):
        #: from then on it answers no, whatever a later renewal does, and the run's report says so (rev35d: a
        #: lease that lapsed, a write refused, then renewed again before the run's end was reported as a deadline's
        #: cut); None while it has never said no since acquired
        self.stopped: str | None = None

    def __repr__(self) -> str:
        return f"Lease(table={self.table!r}, name={self.name!r}, owner={self.owner!r})"

    def _expiry(self) -> int:
        return int(self.clock() + self.ttl_s)

    def _furthest_s(self) -> float:
        return max(FURTHEST_S, 2 * self.ttl_s)

    def held(self, for_s: float = 0.0) -> bool:
        """Whether this holder may still act on the lease for ``for_s`` seconds more (a write's margin,
        :func:`write_margin`; 0: now): acquired, not found taken over (:attr:`lost`), and its expiry, as the last
        renewal that succeeded wrote it, at least ``for_s`` ahead (renewals failing for ``ttl_s``, DynamoDB
        throttled or unreachable: another run may take it any moment, and this one would not know until its next
        renewal). Short of that, DynamoDB is asked once (a renewal) before the answer is no: a machine that slept
        through the expiry wakes before its renewer does (that waits on the monotonic clock, which stood still), a
        lease nobody took meanwhile is still this holder's (a healthy sync stopped, "its renewals failed"), and a
        write near the expiry is started on a renewed lease rather than refused. One renewal per expiry: a failing
        one is not asked again at every check. Once the answer is no it stays no (:attr:`stopped`)."""
        if self.stopped is None and self._sure(for_s):
            return True
        with self._asking:  # the sync's threads ask at once on waking: one renewal, the others wait for its answer
            sure = self._sure_until
            if self.stopped is not None or sure is None:
                return False
            if not self._sure(for_s) and not self.lost and self._asked != sure:
                self._asked = sure
                self.renew()  # on success it moves _sure_until; taken over: lost; failed: not held
            if self._sure(for_s):
                return True
            self.stopped = ("another run took it over" if self.lost else "its renewals failed"
                            if for_s <= 0 else f"its renewals failed, leaving it less than the {for_s:g} s a "
                            "write needs")  # fmt: skip
            return False

    def renewed_since_stopped(self) -> bool:
        """Whether a renewal succeeded after :meth:`held` said no (:attr:`stopped`): the lease lapsed and came back,
        nobody having taken it meanwhile; the run stopped all the same (rev35d)."""
        return self.stopped is not None and self._sure()

    def _sure(self, for_s: float = 0.0) -> bool:
        sure = self._sure_until
        return (
            not self.lost and sure is not None and time.monotonic() + for_s < sure[0] and self.clock() + for_s < sure[1]
        )

    def acquire(self) -> None:
        """Take the lease, or raise :class:`LeaseHeld` naming the holder."""
        sent = (time.monotonic(), self.clock())
        now = int(sent[1])
        item = {
            "pk": {"S": self.name},
            "owner": {"S": self.owner},
            "expires_at": {"N": str(self._expiry())},
            "acquired_at": {"N": str(now)},
        }
        try:
            self.client.put_item(
                TableName=self.table,
                Item=item,
                # free when expired, or when its expiry is none a holder writes (held_until)
                ConditionExpression="attribute_not_exists(pk) OR attribute_not_exists(expires_at)"
                " OR NOT attribute_type(expires_at, :number) OR expires_at < :now OR expires_at > :furthest",
                ExpressionAttributeValues={
                    ":now": {"N": str(now)},
                    ":number": {"S": "N"},
                    ":furthest": {"N": str(int(now + self._furthest_s()))},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except Exception as exc:
            if aws_error_code(exc) == "ConditionalCheckFailedException":
                old = getattr(exc, "response", {}).get("Item") or {}
                raise LeaseHeld(_owner(old), expiry(old.get("expires_at"))) from None
            raise LeaseError(f"cannot take the lease in table {self.table}: {aws_error_code(exc) or exc}") from None
        self.lost = False
        self.stopped = None
        self._sure_until = (sent[0] + self.ttl_s, sent[1] + self.ttl_s)

    def renew(self) -> bool:
        """Push the expiry out by ``ttl_s``. False when the lease is no longer ours (it expired and was taken)."""
        sent = (time.monotonic(), self.clock())
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": self.name}},
                UpdateExpression="SET expires_at = :expires",
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":expires": {"N": str(self._expiry())}, ":me": {"S": self.owner}},
            )
        except Exception as exc:
            if aws_error_code(exc) == "ConditionalCheckFailedException":
                self.lost = True
                logger.error("indexer lease %s lost: another run took it after it expired", self.name)
                return False
            logger.warning("indexer lease %s not renewed (%s); retrying", self.name, aws_error_code(exc) or exc)
            return True
        self._sure_until = (sent[0] + self.ttl_s, sent[1] + self.ttl_s)
        return True

    def release(self) -> None:
        """Delete the lease if it is still ours; a lease taken over by another run is left alone."""
        try:
            self.client.delete_item(
                TableName=self.table,
                Key={"pk": {"S": self.name}},
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":me": {"S": self.owner}},
            )
        except Exception as exc:
            if aws_error_code(exc) != "ConditionalCheckFailedException":
                # it expires by itself; the next run waits at most ttl_s
                logger.warning("indexer lease %s not released (%s)", self.name, aws_error_code(exc) or exc)

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            if not self.renew():
                return

    def __enter__(self) -> Lease:
        self.acquire()
        self._stop.clear()
        self._renewer = context_thread(self._renew_until_stopped, "kbsearch-lease")  # its lines the invocation's
        self._renewer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=10)
            self._renewer = None
        self.release()


def index_lease(settings: Settings, deadline: Deadline | None = None) -> contextlib.AbstractContextManager[Any]:
    """The lease guarding the configured collection, or no lease when ``INDEX_LEASE_TABLE`` is not set.
    ``deadline``: each of its DynamoDB calls ends by it (:func:`dynamodb_client`)."""
    if not settings.index_lease_table:
        return contextlib.nullcontext()
    return Lease(settings.index_lease_table, f"index#{settings.qdrant_collection}", settings.index_lease_ttl_s,
                 client=dynamodb_client(deadline))  # fmt: skip


@contextlib.contextmanager
def short_lease(
    settings: Settings, name: str, wait_s: float = 10.0, ttl_s: float = LINKS_TTL_S, deadline: Deadline | None = None
) -> Iterator[None]:
    """A lease held for one short read-modify-write of shared state (``<name>#<collection>``, e.g. the restricted
    link targets that event batches and a full sync may rewrite at once): waits up to ``wait_s`` while another holds
    it, then raises :class:`LeaseHeld` (the caller's work is retried). No lease table: no lease (one writer
    locally)."""
    if not settings.index_lease_table:
        yield
        return
    lease = Lease(settings.index_lease_table, f"{name}#{settings.qdrant_collection}", ttl_s,
                  client=dynamodb_client(deadline))  # fmt: skip
    give_up = time.monotonic() + wait_s
    while True:
        try:
            lease.acquire()
            break
        except LeaseHeld:
            if time.monotonic() >= give_up:
                raise
            time.sleep(0.1)
    try:
        yield
    finally:
        lease.release()


def lease_holder(
    settings: Settings, client: Any = None, clock: Callable[[], float] = time.time, deadline: Deadline | None = None
) -> LeaseHeld | None:
    """Who holds the collection's lease now (a full sync), without taking it: what an event-driven run checks
    before it writes (event runs do not exclude each other; their per-note order is the S3 sequencer's). None when
    nobody holds it or there is no lease table. A table that cannot be read raises :class:`LeaseError`."""
    if not settings.index_lease_table:
        return None
    if client is None:
        client = dynamodb_client(deadline)
    name = f"index#{settings.qdrant_collection}"
    try:
        item = client.get_item(TableName=settings.index_lease_table, Key={"pk": {"S": name}}, ConsistentRead=True)
    except Exception as exc:
        raise LeaseError(
            f"cannot read the lease in table {settings.index_lease_table}: {aws_error_code(exc) or exc}"
        ) from None
    found = item.get("Item")
    if not found:
        return None
    expires = held_until(found.get("expires_at"), clock())
    if expires is None:  # expired, or an expiry no holder writes: a full sync takes it over (Lease.acquire)
        return None
    return LeaseHeld(_owner(found), expires)
