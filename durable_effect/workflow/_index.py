"""The index entries of workflow runs: by status, by label and status, by purge time.

A run of workflow ``name`` with status ``s`` and labels ``L`` is listed in

* ``wf:{name}:s:{s}`` — every run, by status;
* ``wf:{name}:l:{digest(k, v)}:{s}`` — one per label pair ``k=v`` (the pair is hashed, so
  the name stays short whatever the label's length), by status too, so one label pair with
  or without a status filter is a few merged index ranges;
* ``wf:{name}:x:{s}`` — finished runs of a workflow with ``retain``, keyed by the instant
  the run is to be purged (`instant_key`): the retention sweep reads it oldest first.

Status and label entries have the empty key: runs are ordered by instance id, which is
``workflow:{name}:{run_id}`` with run ids ordered by creation time — so "newest first" is a
descending scan. Counts per status (and per label pair and status) come from the index
counts the storage keeps. Entries are committed with the run's ``meta`` record (the
runtime calls `RunIndexer.entries` whenever ``meta`` changes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Final

from durable_effect.errors import ValidationError
from durable_effect.jobs._index_keys import instant_key
from durable_effect.jobs._instance import InstanceRef
from durable_effect.workflow._records import META, RunMeta
from durable_effect.workflow._results import FINISHED

__all__ = [
    "RUN_STATUSES",
    "RunIndexer",
    "expiry_indexes",
    "label_indexes",
    "status_indexes",
]

#: Every run status, in the order ``count_runs`` lists them.
RUN_STATUSES: Final = ("pending", "leased", "sleeping", "completed", "failed", "cancelled")


def label_digest(key: str, value: str) -> str:
    """A short, unambiguous name part for the label pair ``key=value``."""
    text = f"{len(key)}:{key}={value}".encode()
    return hashlib.sha256(text).hexdigest()[:32]


def status_indexes(name: str, statuses: Iterable[str]) -> list[str]:
    """The status indexes of workflow ``name`` for ``statuses``."""
    return [f"wf:{name}:s:{s}" for s in statuses]


def label_indexes(name: str, key: str, value: str, statuses: Iterable[str]) -> list[str]:
    """The indexes of the runs labelled ``key=value`` with ``statuses``."""
    digest = label_digest(key, value)
    return [f"wf:{name}:l:{digest}:{s}" for s in statuses]


def expiry_indexes(name: str) -> list[str]:
    """The indexes of finished runs by purge time (workflows with ``retain``)."""
    return [f"wf:{name}:x:{s}" for s in sorted(FINISHED)]


class RunIndexer:
    """The entries of a run of workflow ``name`` (see the module docstring)."""

    keys = frozenset({META.key})
    uses_alarm = False

    def __init__(self, name: str, retain: timedelta | None) -> None:
        self.name = name
        self.retain = retain

    def entries(
        self, ref: InstanceRef, get: Callable[[str], bytes | None], alarm_at: datetime | None
    ) -> Mapping[str, str]:
        data = get(META.key)
        if data is None:
            return {}
        try:
            meta = META.codec.decode(data)
        except ValidationError:
            return {}  # unreadable metadata: not listed (get_run reports the error)
        return self.of_meta(meta)

    def of_meta(self, meta: RunMeta) -> dict[str, str]:
        """The entries of a run whose metadata is ``meta``."""
        name, status = self.name, meta.status
        out = {f"wf:{name}:s:{status}": ""}
        for key, value in meta.labels.items():
            out[f"wf:{name}:l:{label_digest(key, value)}:{status}"] = ""
        if self.retain is not None and status in FINISHED and meta.completed_at is not None:
            out[f"wf:{name}:x:{status}"] = instant_key(meta.completed_at + self.retain)
        return out
