"""The small instance API job semantics are written against: `InstanceTx` and `InstanceRef`.

An ``InstanceTx`` is a pure, in-memory view of one instance during one handler: it starts
from the committed snapshot, buffers record writes, the alarm change and telemetry events,
and can roll back to a savepoint (a failed attempt's writes are discarded). The runtime turns
what is left into one atomic storage commit. Nothing here does I/O.

An ``Indexer`` (given by the job that owns the instance) says which index entries the
instance's records give; ``to_write`` adds the new entries to the write when a record they
depend on changed and the entries differ from the committed ones, so the entries are always
committed with the records they describe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast

import attrs

from durable_effect._events import Event, new_event_id
from durable_effect.errors import ValidationError
from durable_effect.storage._port import (
    KEEP,
    AlarmChange,
    IndexHit,
    InstanceSnapshot,
    InstanceWrite,
    Keep,
    Lease,
)

__all__ = [
    "MAX_ID_LENGTH",
    "Indexer",
    "InstanceRef",
    "InstanceTx",
    "Savepoint",
    "TxHooks",
    "event_fields",
    "validate_id",
]

T = TypeVar("T")

MAX_ID_LENGTH = 512


def validate_id(value: object, *, field: str = "id") -> str:
    """Check a user-facing instance id: a non-empty str of at most 512 chars without NUL.

    >>> validate_id("user-123")
    'user-123'
    >>> validate_id("")
    Traceback (most recent call last):
    durable_effect.errors.ValidationError: ValidationError: id: must not be empty
    """
    if not isinstance(value, str):
        raise ValidationError(
            schema=field, message=f"must be a str, got {type(value).__name__}", path=field
        )
    if not value:
        raise ValidationError(schema=field, message="must not be empty", path=field)
    if len(value) > MAX_ID_LENGTH:
        raise ValidationError(
            schema=field,
            message=f"must be at most {MAX_ID_LENGTH} characters, got {len(value)}",
            path=field,
        )
    if "\x00" in value:
        raise ValidationError(schema=field, message="must not contain NUL", path=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        message = f"is not valid UTF-8: {exc}"
        raise ValidationError(schema=field, message=message, path=field) from None
    return value


@attrs.frozen(kw_only=True)
class InstanceRef:
    """Who an instance is: ``{job_type}:{job_name}:{id}``."""

    job_type: str
    job_name: str
    id: str

    @property
    def instance_id(self) -> str:
        """The storage id, ``continuous:tokenRefresher:user-123``."""
        return f"{self.job_type}:{self.job_name}:{self.id}"

    @classmethod
    def parse(cls, instance_id: str) -> InstanceRef:
        """Split a storage id back into its parts (``ValueError`` if it has fewer than 3).

        >>> InstanceRef.parse("task:orders:a:b").id
        'a:b'
        """
        parts = instance_id.split(":", 2)
        if len(parts) != 3:
            raise ValueError(f"not an instance id: {instance_id!r}")
        return cls(job_type=parts[0], job_name=parts[1], id=parts[2])


@attrs.define(slots=True)
class Savepoint:
    """The buffered state of an ``InstanceTx`` at one moment (``savepoint``/``rollback``)."""

    records: dict[str, bytes | None]
    purged: bool
    alarm: AlarmChange


class Indexer(Protocol):
    """The index entries of an instance, as a function of its records (and alarm).

    ``keys`` are the records the entries depend on; ``uses_alarm`` whether they depend on
    the alarm too. ``entries`` must be cheap and must not fail on records the job wrote.
    """

    keys: frozenset[str]
    uses_alarm: bool

    def entries(
        self, ref: InstanceRef, get: Callable[[str], bytes | None], alarm_at: datetime | None
    ) -> Mapping[str, str]:
        """Index name -> key for an instance whose records ``get`` reads."""
        ...


class TxHooks(Protocol):
    """What the runtime offers a long handler (workflows) beyond one final commit."""

    async def checkpoint(
        self,
        tx: InstanceTx,
        *,
        unless_present: Sequence[tuple[str, str]] = (),
        release: bool = False,
    ) -> None:
        """Commit ``tx``'s buffered writes now, keeping the lease (fenced).

        ``unless_present`` guards the commit (see ``Storage.commit``): when one of those
        records ``(instance_id, key)`` exists, nothing is committed and ``GuardFailed`` is
        raised (``tx`` keeps its buffered writes, and the lease). With a guard the check is
        made even when nothing is buffered.

        ``release``: the handler's last checkpoint — the same commit releases the handler's
        leases, so the handler's end costs no further storage call. The handler must write
        nothing after it (a later write is refused: the leases are gone).
        """
        ...

    async def checkpoint_with(
        self, tx: InstanceTx, other: InstanceRef, mutate: Callable[[InstanceTx], T]
    ) -> T:
        """Lease ``other``, apply ``mutate`` to it, commit both atomically, release ``other``.

        If ``mutate`` raises, nothing is committed and the exception propagates.
        """
        ...

    async def peek(self, instance_id: str) -> InstanceSnapshot:
        """Read another instance's committed snapshot (no lease)."""
        ...

    def lease_of(self, instance_id: str) -> Lease | None:
        """The handler's current lease on ``instance_id`` (``None`` if it holds none)."""
        ...

    def on_renewed(self, listener: Callable[[Lease], Event | None]) -> None:
        """Call ``listener`` after each renewal of a lease; an event it returns is published."""
        ...

    async def peek_many(self, instance_ids: Sequence[str]) -> Mapping[str, InstanceSnapshot]:
        """Read other instances' committed snapshots (no lease), in one storage call."""
        ...

    def registered(self) -> Sequence[tuple[str, object]]:
        """The jobs registered with the runtime: ``(name, definition)`` pairs."""
        ...

    async def checkpoint_with_all(
        self,
        tx: InstanceTx,
        others: Sequence[InstanceRef],
        mutate: Callable[[Sequence[InstanceTx]], T],
    ) -> T:
        """``checkpoint_with`` over several instances (leased together, bounded wait)."""
        ...

    async def try_commit_with(
        self,
        tx: InstanceTx,
        others: Sequence[InstanceRef],
        mutate: Callable[[Sequence[InstanceTx]], T],
    ) -> T | None:
        """Lease every one of ``others`` without waiting, apply ``mutate`` to them, commit
        them with ``tx``'s buffered writes, release them. ``None`` (nothing done) when one
        of them is held. If ``mutate`` raises, nothing is committed and it propagates."""
        ...

    async def scan_index(
        self,
        indexes: Sequence[str],
        *,
        limit: int,
        after: tuple[str, str] | None = None,
        until: str | None = None,
    ) -> Sequence[IndexHit]:
        """``Storage.scan_index`` (ascending)."""
        ...


class InstanceTx:
    """One handler's buffered view of one instance (see the module docstring)."""

    __slots__ = (
        "_alarm",
        "_base",
        "_base_index",
        "_changes",
        "_now",
        "_purged",
        "_written_index",
        "events",
        "hooks",
        "indexer",
        "ref",
    )

    def __init__(
        self,
        ref: InstanceRef,
        snapshot: InstanceSnapshot,
        now: Callable[[], datetime],
        hooks: TxHooks | None = None,
        indexer: Indexer | None = None,
    ):
        self.ref = ref
        self.hooks = hooks
        self.indexer = indexer
        self._base = snapshot
        self._now = now
        self._changes: dict[str, bytes | None] = {}
        self._purged = False
        self._alarm: AlarmChange = KEEP
        self.events: list[Event] = []
        # The entries of the committed snapshot once known, and those of the last write.
        self._base_index: Mapping[str, str] | None = None
        self._written_index: Mapping[str, str] | None = None

    @property
    def instance_id(self) -> str:
        """The storage id of this instance."""
        return self._base.instance_id

    def now(self) -> datetime:
        """The runtime clock's current instant."""
        return self._now()

    # -- records -------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The current value of record ``key`` (buffered writes included)."""
        if key in self._changes:
            return self._changes[key]
        if self._purged:
            return None
        return self._base.records.get(key)

    def put(self, key: str, value: bytes) -> None:
        """Write record ``key``."""
        self._changes[key] = value

    def delete(self, key: str) -> None:
        """Delete record ``key``."""
        self._changes[key] = None

    def purge(self) -> None:
        """Delete every record and the alarm: the instance stops existing."""
        self._changes.clear()
        self._purged = True
        self._alarm = None

    @property
    def exists(self) -> bool:
        """Whether the instance will have any record after this handler."""
        return bool(self.records()) or self.alarm_at is not None

    # -- alarm ---------------------------------------------------------------------------

    @property
    def alarm_at(self) -> datetime | None:
        """The alarm as it will be after this handler."""
        if isinstance(self._alarm, Keep):
            return None if self._purged else self._base.alarm_at
        return self._alarm

    def set_alarm(self, when: datetime | None) -> None:
        """Set (or clear with ``None``) the instance's single alarm."""
        self._alarm = when

    # -- telemetry -----------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        """Queue a telemetry event; the runtime delivers it after the handler."""
        self.events.append(event)

    # -- savepoints ----------------------------------------------------------------------

    def savepoint(self) -> Savepoint:
        """Remember the buffered state, to discard later writes with ``rollback``."""
        return Savepoint(dict(self._changes), self._purged, self._alarm)

    def rollback(self, point: Savepoint) -> None:
        """Discard every write made since ``point`` (events are kept)."""
        self._changes = dict(point.records)
        self._purged = point.purged
        self._alarm = point.alarm

    # -- commit --------------------------------------------------------------------------

    def to_write(self) -> InstanceWrite | None:
        """The storage write for what was buffered (``None`` when nothing changed)."""
        changes = self._changes
        if None in changes.values():  # some deletes (``None`` marks one)
            puts = {k: v for k, v in changes.items() if v is not None}
            deletes = frozenset(k for k, v in changes.items() if v is None)
        else:
            puts = cast("dict[str, bytes]", dict(changes))  # no ``None`` among the values
            deletes = frozenset()
        alarm = self._alarm
        if not self._purged and alarm == self._base.alarm_at:
            alarm = KEEP  # set to what it already is: no alarm change to write (or notify)
        if not puts and not deletes and not self._purged and isinstance(alarm, Keep):
            return None
        return InstanceWrite(
            instance_id=self.instance_id,
            puts=puts,
            deletes=deletes,
            purge=self._purged,
            alarm=alarm,
            index=KEEP if self.indexer is None else self._index_change(alarm),
        )

    def _index_change(self, alarm: AlarmChange) -> Mapping[str, str] | Keep:
        """The instance's new index entries, or ``KEEP`` when they stay as committed."""
        indexer = self.indexer
        assert indexer is not None
        self._written_index = None
        changes, base = self._changes, self._base.records
        if not self._purged:
            touched = [k for k in indexer.keys if k in changes and changes[k] != base.get(k)]
            if not touched and not (indexer.uses_alarm and not isinstance(alarm, Keep)):
                return KEEP
        new = indexer.entries(self.ref, self.get, self.alarm_at)
        self._written_index = new
        if self._purged:
            return new  # a purge drops the committed entries: write them again if any
        old = self._base_index
        if old is None:
            old = indexer.entries(self.ref, base.get, self._base.alarm_at)
        return KEEP if new == old else new

    def rebase(self) -> None:
        """After a checkpoint commit: what was buffered is now the committed snapshot."""
        self._base = InstanceSnapshot(
            instance_id=self.instance_id, records=self.records(), alarm_at=self.alarm_at
        )
        if self._written_index is not None:
            self._base_index, self._written_index = self._written_index, None
        self._changes = {}
        self._purged = False
        self._alarm = KEEP

    def records(self) -> Mapping[str, bytes]:
        """Every record as it will be after this handler."""
        merged = {} if self._purged else dict(self._base.records)
        for k, v in self._changes.items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = v
        return merged


def event_fields(tx: InstanceTx) -> dict[str, Any]:
    """The fields every telemetry event of a job instance carries (``JobEvent``'s), now."""
    ref = tx.ref
    return {
        "event_id": new_event_id(),
        "timestamp": tx.now(),
        "instance_id": ref.instance_id,
        "id": ref.id,
        "job_type": ref.job_type,
        "job_name": ref.job_name,
    }
