"""`Record[T]`: one typed record of an instance — its key and its validating codec.

Every job kind (and a workflow run) stores a few records in its instance: its metadata,
the user's state, dedupe marks… Each is declared once as a ``Record``, which reads it from
an ``InstanceTx`` or from a committed snapshot's records (``load``: ``None`` when absent,
``ValidationError`` when what is stored does not fit) and writes it (``save``/``delete``).

>>> from datetime import UTC, datetime
>>> from durable_effect._codec import codec_for
>>> from durable_effect.jobs._instance import InstanceRef
>>> from durable_effect.storage._port import InstanceSnapshot
>>> COUNT = Record("count", codec_for(int))
>>> tx = InstanceTx(InstanceRef(job_type="task", job_name="t", id="a"),
...     InstanceSnapshot(instance_id="task:t:a", records={}, alarm_at=None),
...     lambda: datetime(2026, 1, 1, tzinfo=UTC))
>>> COUNT.load(tx) is None
True
>>> COUNT.save(tx, 3); COUNT.load(tx), COUNT.load(tx.records())
(3, 3)
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from durable_effect._codec import Codec
from durable_effect.jobs._instance import InstanceTx

__all__ = ["Readable", "Record"]

T = TypeVar("T")


class Readable(Protocol):
    """Where a record can be read from: an ``InstanceTx`` or a snapshot's records."""

    def get(self, key: str, /) -> bytes | None:
        """The stored bytes of ``key`` (``None`` when absent)."""
        ...


class Record(Generic[T]):
    """The record ``key`` of an instance, encoded with ``codec`` (validated both ways)."""

    __slots__ = ("codec", "key")

    def __init__(self, key: str, codec: Codec[T]) -> None:
        self.key = key
        self.codec = codec

    def load(self, source: Readable) -> T | None:
        """The record's value (``None`` when absent; ``ValidationError`` if unreadable)."""
        data = source.get(self.key)
        return None if data is None else self.codec.decode(data)

    def save(self, tx: InstanceTx, value: T) -> None:
        """Write ``value`` (``ValidationError`` if it does not fit the codec's schema)."""
        tx.put(self.key, self.codec.encode(value))

    def delete(self, tx: InstanceTx) -> None:
        """Delete the record."""
        tx.delete(self.key)

    def __repr__(self) -> str:
        return f"Record({self.key!r}, {self.codec.name})"
