"""The index entries of job instances (Continuous, Debounce, Task) and the shared key formats.

Every instance of a job is listed in one index per status, ``job:{name}:s:{status}``, under
the instant it was created (`instant_key`): so ``client.instances(job=..., status=...)``
pages through one (or a few, merged) index ranges, newest first, whatever the number of
instances. A job's statuses, and what gives them:

* Continuous — ``running`` / ``paused`` (the ``meta`` record), created at ``meta.created_at``;
* Debounce — ``debouncing`` while a batch is open (the ``batch`` record; an instance holding
  only dedupe marks is not listed, as ``status()`` says ``not_found``), created when the
  batch opened;
* Task — ``active`` while an execution is scheduled (the alarm), else ``idle``; created at
  ``meta.created_at``.

Each kind's definition gives its `JobIndexer` (``indexer(name)``): which record to read and
how its value gives the status and the creation instant.

Names never collide with a workflow's (``wf:…``): job names hold no ``:``.

Each registered job also has a bookkeeping instance, `job_meta_ref` —
``jobmeta:{name}:{job_type}`` — whose index entry says that its instances' entries are
complete (``_runtime._indexes`` builds them for stores written before indexes existed),
and whose alarm, for workflows with ``retain``, is the retention sweep.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Final, Generic, TypeVar

from durable_effect.errors import ValidationError
from durable_effect.jobs._instance import InstanceRef

__all__ = [
    "INSTANCE_STATUSES",
    "JOB_META_TYPE",
    "JobIndexer",
    "instance_index",
    "job_meta_ref",
    "instant_key",
    "key_instant",
]

V = TypeVar("V")

_ORIGIN: Final = datetime(1, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_DIGITS: Final = 18  # microseconds from year 1 to 9999 fit in 18 digits

#: The job type part of the bookkeeping instances' ids.
JOB_META_TYPE: Final = "jobmeta"

#: The statuses a listed instance of each job type can have.
INSTANCE_STATUSES: Final[Mapping[str, tuple[str, ...]]] = {
    "continuous": ("running", "paused"),
    "debounce": ("debouncing",),
    "task": ("active", "idle"),
}


def instant_key(when: datetime) -> str:
    """An index key that sorts as instants do: microseconds since year 1, zero-padded.

    >>> instant_key(datetime(1970, 1, 1, tzinfo=UTC))
    '062135596800000000'
    """
    return f"{(when - _ORIGIN) // _US:0{_DIGITS}d}"


def key_instant(key: str) -> datetime:
    """The instant of an `instant_key` (``ValueError`` for anything else)."""
    if len(key) != _DIGITS or not key.isdigit() or not key.isascii():
        raise ValueError(f"not an instant key: {key!r}")
    return _ORIGIN + timedelta(microseconds=int(key))


def job_meta_ref(name: str, job_type: str) -> InstanceRef:
    """The bookkeeping instance of job ``name`` (of ``job_type``)."""
    return InstanceRef(job_type=JOB_META_TYPE, job_name=name, id=job_type)


def instance_index(name: str, status: str) -> str:
    """The index of job ``name``'s instances with ``status``."""
    return f"job:{name}:s:{status}"


class JobIndexer(Generic[V]):
    """An instance's one entry, ``job:{name}:s:{status}`` under its creation instant, from one
    record (``key``, decoded by ``decode``) and, with ``uses_alarm``, the alarm."""

    def __init__(
        self,
        name: str,
        key: str,
        decode: Callable[[bytes], V],
        describe: Callable[[V, datetime | None], tuple[str, datetime]],
        *,
        uses_alarm: bool = False,
    ) -> None:
        self.name = name
        self.uses_alarm = uses_alarm
        self.keys = frozenset({key})
        self._key = key
        self._decode = decode
        self._describe = describe

    def entries(
        self, ref: InstanceRef, get: Callable[[str], bytes | None], alarm_at: datetime | None
    ) -> Mapping[str, str]:
        data = get(self._key)
        if data is None:
            return {}
        try:
            value = self._decode(data)
        except ValidationError:
            return {}  # unreadable: not listed (status() reports the error)
        status, created_at = self._describe(value, alarm_at)
        return {instance_index(self.name, status): instant_key(created_at)}
