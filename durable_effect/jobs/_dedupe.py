"""`Dedupe`: ``event_id``\\ s an instance has applied, remembered for a window.

One record, ``dedupe``, maps each remembered ``event_id`` to the instant it expires (when it
was applied plus the job's ``dedupe_window``). A repeated id still alive fails the call with
``DuplicateEventError`` and nothing is applied; expired marks are pruned whenever the
record is written. Debounce and Task both use it (``dedupe_window``, 24 hours by default).

Task instances written before this scheme kept their ids in an ``event_ids`` record (id →
when it was applied): those are read as marks expiring a window after that instant, and the
old record is dropped with the next write.

>>> from datetime import UTC, datetime, timedelta
>>> from durable_effect.jobs._instance import InstanceRef, InstanceTx
>>> from durable_effect.storage._port import InstanceSnapshot
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> tx = InstanceTx(InstanceRef(job_type="task", job_name="t", id="a"),
...     InstanceSnapshot(instance_id="task:t:a", records={}, alarm_at=None), lambda: t0)
>>> marks = Dedupe(timedelta(hours=1)).live(tx, t0)
>>> marks.seen("e1")
False
>>> marks.remember("e1"); marks.write(tx)
>>> Dedupe(timedelta(hours=1)).live(tx, t0 + timedelta(minutes=59)).seen("e1")
True
>>> Dedupe(timedelta(hours=1)).live(tx, t0 + timedelta(hours=1)).seen("e1")
False
"""

from __future__ import annotations

from datetime import datetime, timedelta

from durable_effect._codec import Codec, codec_for
from durable_effect.jobs._instance import InstanceTx
from durable_effect.jobs._records import Record

__all__ = ["DEFAULT_DEDUPE_WINDOW", "Dedupe", "Marks"]

#: How long an ``event_id`` is remembered by default.
DEFAULT_DEDUPE_WINDOW = timedelta(hours=24)

_MARKS_CODEC: Codec[dict[str, datetime]] = codec_for(dict[str, datetime])
#: ``event_id`` → when it expires.
MARKS: Record[dict[str, datetime]] = Record("dedupe", _MARKS_CODEC)
#: Task's record before ``dedupe``: ``event_id`` → when it was applied.
_APPLIED: Record[dict[str, datetime]] = Record("event_ids", _MARKS_CODEC)


class Marks:
    """The live marks of one instance at ``now`` (read by ``Dedupe.live``)."""

    __slots__ = ("_changed", "_expires", "alive", "now")

    def __init__(
        self, alive: dict[str, datetime], now: datetime, expires: datetime, *, changed: bool
    ) -> None:
        self.alive = alive
        self.now = now
        self._expires = expires
        #: Whether the stored record differs from ``alive`` (pruned, converted, or added to).
        self._changed = changed

    def seen(self, event_id: str) -> bool:
        """Whether ``event_id`` was applied within the window."""
        return event_id in self.alive

    def remember(self, event_id: str) -> None:
        """Remember ``event_id`` (applied now) until the window has passed."""
        self.alive[event_id] = self._expires
        self._changed = True

    def write(self, tx: InstanceTx) -> None:
        """Store the marks if they changed (deleting the record when none is left)."""
        if not self._changed:
            return
        if tx.get(_APPLIED.key) is not None:
            _APPLIED.delete(tx)
        if self.alive:
            MARKS.save(tx, self.alive)
        else:
            MARKS.delete(tx)

    def last_expiry(self) -> datetime | None:
        """When the last live mark expires (``None`` without marks)."""
        return max(self.alive.values(), default=None)


class Dedupe:
    """The dedupe scheme of one job definition: marks live for ``window``."""

    __slots__ = ("window",)

    def __init__(self, window: timedelta) -> None:
        self.window = window

    def live(self, tx: InstanceTx, now: datetime) -> Marks:
        """The marks of ``tx``'s instance still alive at ``now`` (``ValidationError`` if the
        record is unreadable)."""
        stored = MARKS.load(tx) or {}
        alive = {k: at for k, at in stored.items() if at > now}
        changed = len(alive) != len(stored)
        applied = _APPLIED.load(tx)
        if applied is not None:
            for key, at in applied.items():
                if at + self.window > now:
                    alive.setdefault(key, at + self.window)
            changed = True
        return Marks(alive, now, now + self.window, changed=changed)
