"""The `Storage` port: per-instance durable records, one alarm per instance, leases.

Backends store bytes and instants and know nothing of job types. Everything a handler does is
one ``commit``: its record writes, its alarm change, the release of its lease. The runtime
above this port decides what the bytes mean.

Vocabulary (and invariants every backend must keep; ``durable_effect.testing`` ships a
contract suite that checks them):

* **Instance** — a string id (any non-empty unicode string without NUL, up to 1024 characters:
  a user id of 512 plus the job type and name)
  owning a set of named records (``key -> bytes``) and at most **one alarm** (an instant).
  An instance exists while it has a record or an alarm.
* **Lease** — exclusive right to commit to an instance: ``(owner, generation, expires_at)``.
  ``acquire`` and ``claim_due`` hand out leases; each grant takes a fresh ``generation`` from
  a counter that only grows, for the whole store. A lease is *held* until it is released,
  or until ``expires_at`` passes and somebody else takes the instance; an expired lease that
  nobody took over is still good for ``commit`` and ``extend``.
* **Fencing** — ``commit``/``extend`` with a lease whose generation is no longer the
  instance's current one (released, or taken over after expiry) raise ``LeaseLostError`` and
  change nothing.
* **Atomicity** — ``commit`` applies every write of every instance in it, or none.
* **Index entries** — an instance may be listed in named, ordered indexes, at most once per
  index, under a key string: ``InstanceWrite.index`` (index name -> key) replaces all of the
  instance's entries in the same commit as its records (atomically with them); a purge
  without ``index`` drops them. ``scan_index`` reads entries in ``(key, instance_id)``
  order, merged over several indexes, keyset-paged and limited, in time proportional to
  the page; ``count_index`` counts the entries of indexes in time independent of their
  size. Backends store the names and keys as opaque text: what an index means is decided
  above this port.
* **Guards** — ``commit(..., unless_present=[(instance_id, key), ...])`` applies nothing and
  raises `GuardFailed` when one of those records exists at commit time. The check and the
  writes are one atomic step with respect to every commit that writes the guarded record
  (the guarded instance need not be leased by the caller).
* **Durability** — a ``commit`` that returned survives a crash of the process (and, with a
  durable setting, of the machine). Leases need not be durable: a lease lost in a crash
  belonged to a dead process.
* **Time** — callers pass ``now``; a backend never reads the clock of the process it runs
  in. Instants are aware UTC datetimes, stored with microsecond precision. One exception,
  for leases shared by processes on different machines (whose clocks may disagree, so that
  a worker with a fast clock would see a live lease as expired): a backend may judge lease
  expiry by a clock common to all its processes — ``lease_clock = "server"``
  (`PostgresStorage`'s default: the database server's clock). Then "expired" in
  ``acquire`` and ``claim_due`` means ``ttl`` has passed on that clock since the grant or
  the last ``extend``; the ``now`` callers pass decides only which alarms are due; and the
  leases handed back still carry ``expires_at = now + ttl`` in the caller's frame (what the
  caller renews by). With ``lease_clock = "caller"`` (every other backend) expiry compares
  the ``now`` callers pass, as written below.
* **Feed** — a store-wide, append-only log of short byte entries (the runtime's telemetry
  events as JSON). ``commit(..., feed=[...])`` appends its entries in the same transaction
  as its writes (none when the commit applies nothing). Each entry gets a sequence number
  (``seq``) that only grows, in commit order: once ``read_feed`` has returned an entry, no
  entry with a smaller ``seq`` appears later. The backend keeps at least the newest
  ``feed_retain`` entries and trims older ones, a bounded number per commit.
* Failures of the backend itself raise ``StorageError`` and leave nothing half-written.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final, Literal

import attrs

__all__ = [
    "KEEP",
    "MAX_INDEX_ENTRIES",
    "MAX_INDEX_KEY",
    "MAX_INDEX_NAME",
    "MAX_SCAN_INDEXES",
    "Acquired",
    "AlarmChange",
    "Claimed",
    "FeedEntry",
    "GuardFailed",
    "IndexHit",
    "InstanceSnapshot",
    "InstanceWrite",
    "Keep",
    "Lease",
    "Storage",
]


#: Index names have 1..256 characters, keys at most 128 (every entry is a row of a B-tree
#: ordered by name, key and instance id: they are kept short); an instance has at most
#: 1,024 entries; one ``scan_index`` or ``count_index`` names at most 256 indexes.
MAX_INDEX_NAME: Final = 256
MAX_INDEX_KEY: Final = 128
MAX_INDEX_ENTRIES: Final = 1024
MAX_SCAN_INDEXES: Final = 256


class Keep:
    """Sentinel type of :data:`KEEP`: leave the alarm as it is."""

    _instance: Keep | None = None

    def __new__(cls) -> Keep:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = Keep()

#: What a write does to the instance's alarm: an instant sets it, ``None`` clears it,
#: ``KEEP`` leaves it.
AlarmChange = datetime | None | Keep


class GuardFailed(Exception):
    """A guarded ``commit`` found one of its ``unless_present`` records: nothing applied.

    An internal signal between the runtime and a backend (not a ``TaggedError``); the leases
    of the commit are kept, even with ``release=True``.
    """

    def __init__(self, instance_id: str, key: str) -> None:
        super().__init__(instance_id, key)
        self.instance_id = instance_id
        self.key = key

    def __str__(self) -> str:
        return f"record {self.key!r} of {self.instance_id!r} is present"


@attrs.frozen(kw_only=True)
class Lease:
    """The exclusive right to commit to one instance, fenced by ``generation``."""

    instance_id: str
    owner: str
    generation: int
    expires_at: datetime


@attrs.frozen(kw_only=True)
class InstanceSnapshot:
    """The committed records and alarm of one instance (empty when it does not exist)."""

    instance_id: str
    records: Mapping[str, bytes] = attrs.field(factory=dict)
    alarm_at: datetime | None = None

    @property
    def exists(self) -> bool:
        """Whether the instance has any record or an alarm."""
        return bool(self.records) or self.alarm_at is not None


@attrs.frozen(kw_only=True)
class InstanceWrite:
    """The changes one commit makes to one instance.

    Applied in this order: ``purge`` (delete every record and index entry), ``deletes``,
    ``puts``, ``alarm``, ``index``. ``index`` (index name -> key) becomes the instance's whole
    set of index entries; ``KEEP`` leaves them as they are (or, with ``purge``, drops them).
    """

    instance_id: str
    puts: Mapping[str, bytes] = attrs.field(factory=dict)
    deletes: frozenset[str] = frozenset()
    purge: bool = False
    alarm: AlarmChange = KEEP
    index: Mapping[str, str] | Keep = KEEP


@attrs.frozen(kw_only=True)
class IndexHit:
    """One entry found by ``scan_index``: the index, the entry's key and its instance."""

    index: str
    key: str
    instance_id: str


@attrs.frozen(kw_only=True)
class FeedEntry:
    """One entry of the store's feed: its sequence number and its bytes."""

    seq: int
    data: bytes


#: How many of the newest feed entries a backend keeps by default (at least).
FEED_RETAIN: Final = 10_000
#: The largest feed entry a backend must accept (bytes); the runtime shortens larger events.
FEED_ENTRY_MAX: Final = 64 * 1024


@attrs.frozen(kw_only=True)
class Acquired:
    """Leases granted by ``acquire``, with the snapshots read under them."""

    leases: Sequence[Lease]
    snapshots: Mapping[str, InstanceSnapshot]


@attrs.frozen(kw_only=True)
class Claimed:
    """A due alarm claimed by ``claim_due``: the lease, the alarm's instant, the snapshot."""

    lease: Lease
    due_at: datetime
    snapshot: InstanceSnapshot


class Storage(abc.ABC):
    """Durable per-instance records and alarms with leases. See the module docstring."""

    #: The URL scheme this backend serves (``memory``, ``sqlite``, ``postgresql``).
    scheme: str = ""

    #: Which clock decides lease expiry: ``"caller"`` (the ``now`` callers pass) or
    #: ``"server"`` (a clock the backend shares between machines); see the module docstring.
    lease_clock: Literal["caller", "server"] = "caller"

    #: Seconds the runtime may keep a lease after a client call on one instance, so that
    #: the next call there within that time skips ``acquire`` (``0``: release at once). A
    #: hint for backends whose round trip costs more than the work: PostgreSQL. See
    #: ``durable_effect._runtime._kept`` for why that is safe and what it costs others.
    lease_linger: float = 0.0

    #: How many of the newest feed entries are kept at least (older ones are trimmed).
    feed_retain: int = FEED_RETAIN

    def add_wanted_listener(self, listener: Callable[[str], None]) -> None:  # noqa: B027
        """Call ``listener(instance_id)`` when an ``acquire`` of that instance found it held.

        The signal lets a runtime that keeps leases between calls (``lease_linger``) give one
        up as soon as another process waits for it. Backends with ``lease_linger == 0`` need
        not signal anything (the default does nothing).
        """

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create or migrate the schema (idempotent, safe across processes)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections. Committed data stays; leases held are left to expire."""

    @abc.abstractmethod
    async def acquire(
        self,
        instance_ids: Sequence[str],
        *,
        owner: str,
        now: datetime,
        ttl: timedelta,
    ) -> Acquired | None:
        """Lease every instance in ``instance_ids`` (all or none) and read their snapshots.

        An instance is free when it has no lease, its lease was released, or its lease
        expired (``expires_at <= now``; by the backend's clock with ``lease_clock =
        "server"``). Returns ``None``, granting nothing, when any of them
        is held by anybody (the same ``owner`` included). Instances need not exist.
        Each grant gets a new generation and ``expires_at = now + ttl``.
        """

    @abc.abstractmethod
    async def extend(self, lease: Lease, *, now: datetime, ttl: timedelta) -> Lease:
        """Renew a held lease to ``now + ttl``; ``LeaseLostError`` when it is fenced."""

    @abc.abstractmethod
    async def release(self, leases: Sequence[Lease]) -> None:
        """Give leases up. Releasing a fenced or already released lease does nothing."""

    @abc.abstractmethod
    async def load(self, instance_ids: Sequence[str]) -> Mapping[str, InstanceSnapshot]:
        """Read committed snapshots without a lease (one per id, empty if absent)."""

    @abc.abstractmethod
    async def commit(
        self,
        leases: Sequence[Lease],
        writes: Sequence[InstanceWrite],
        *,
        release: bool = True,
        unless_present: Sequence[tuple[str, str]] = (),
        feed: Sequence[bytes] = (),
    ) -> None:
        """Apply ``writes`` atomically if every lease is still current.

        Every write's instance must be covered by one of ``leases`` (``ValueError``
        otherwise). Raises ``LeaseLostError`` (nothing applied) when a lease is fenced.
        With ``release`` the leases are released in the same transaction. Returns only
        once the transaction is durable per the backend's setting.

        ``unless_present`` guards the commit: when any record ``(instance_id, key)`` in it
        exists at commit time, nothing is applied (no lease released) and `GuardFailed`
        names that record. The check is atomic with the writes with respect to every commit
        that writes a guarded record; guarded instances need not be leased.

        ``feed`` entries (each at most `FEED_ENTRY_MAX` bytes, ``ValueError`` otherwise) are
        appended to the feed, in order, in the same transaction: they are there if and only
        if the commit applied. A commit without leases appends nothing.
        """

    async def commit_new(
        self,
        write: InstanceWrite,
        *,
        owner: str,
        now: datetime,
        ttl: timedelta,
        feed: Sequence[bytes] = (),
    ) -> bool:
        """Apply ``write`` to an instance that does not exist yet, as one leased call would.

        Atomically: when the instance has no records, no alarm and is not leased, ``write``
        and ``feed`` are committed and ``True`` is returned, as if the instance had been
        acquired (``owner``, ``now``, ``ttl``), found empty, committed and released;
        otherwise nothing is written and ``False`` is returned (the caller takes the leased
        path). A backend may also answer ``False`` for an expired lease row (the leased
        path takes it over: such a row's holder must never commit after this write). The
        write must not ``purge``; durable like ``commit``.

        The default is exactly that, in two steps (``acquire``, then ``commit`` when empty);
        a backend may do it in one transaction (SQLite does).
        """
        instance_id = write.instance_id
        got = await self.acquire([instance_id], owner=owner, now=now, ttl=ttl)
        if got is None:
            return False
        if got.snapshots[instance_id].exists:
            await self.release(got.leases)
            return False
        await self.commit(got.leases, [write], feed=feed)
        return True

    @abc.abstractmethod
    async def claim_due(
        self,
        *,
        now: datetime,
        owner: str,
        ttl: timedelta,
        limit: int,
    ) -> Sequence[Claimed]:
        """Lease up to ``limit`` free instances whose alarm is due (``alarm_at <= now``).

        Oldest alarm first (ties by instance id). The alarm itself stays set: the holder's
        commit moves or clears it; if the holder dies, the alarm is claimed again after the
        lease expires. Never returns an instance held by another live lease.
        """

    @abc.abstractmethod
    async def next_alarm_at(self) -> datetime | None:
        """The earliest alarm instant in the store, leased or not (``None`` if none)."""

    @abc.abstractmethod
    async def wait_for_change(self, timeout: float) -> None:
        """Wait up to ``timeout`` real seconds for a commit or release that may matter.

        Returns early when this process (or, where the backend can tell, another process)
        committed an alarm change or released a lease. Spurious returns are allowed.
        """

    @abc.abstractmethod
    async def list_instances(
        self,
        prefix: str,
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> Sequence[str]:
        """Ids of existing instances starting with ``prefix``, in ascending order.

        ``after`` resumes past that id (exclusive), ``limit`` bounds the page.
        """

    @abc.abstractmethod
    async def scan_index(
        self,
        indexes: Sequence[str],
        *,
        limit: int,
        after: tuple[str, str] | None = None,
        until: str | None = None,
        descending: bool = False,
    ) -> Sequence[IndexHit]:
        """Up to ``limit`` entries of ``indexes`` (merged), ordered by ``(key, instance_id)``.

        Ascending, or descending with ``descending``. ``after`` is a position
        ``(key, instance_id)`` to resume past (exclusive, in the scan's direction);
        ``until`` a key the scan stops at (inclusive: no key beyond it is returned). An
        position listed in several of ``indexes`` (the same instance under the same key) is
        returned once, with the least of those index names. The cost is
        proportional to ``limit`` times the number of indexes, never to the index sizes.
        """

    @abc.abstractmethod
    async def load_index(self, instance_ids: Sequence[str]) -> Mapping[str, Mapping[str, str]]:
        """The index entries (index name -> key) of each instance, empty when it has none."""

    @abc.abstractmethod
    async def count_index(self, indexes: Sequence[str]) -> Mapping[str, int]:
        """How many entries each of ``indexes`` holds (0 for an unknown one).

        In time independent of the number of entries (backends keep counts in the commits
        that change them).
        """

    @abc.abstractmethod
    async def read_feed(self, *, after: int, limit: int) -> Sequence[FeedEntry]:
        """Up to ``limit`` retained feed entries with ``seq > after``, oldest first."""

    @abc.abstractmethod
    async def feed_head(self) -> int:
        """The ``seq`` of the newest feed entry (``0`` when the feed was never written).

        Every entry a later ``read_feed`` returns has a greater ``seq`` than this.
        """

    async def __aenter__(self) -> Storage:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


SynchronousMode = Literal["full", "normal"]
