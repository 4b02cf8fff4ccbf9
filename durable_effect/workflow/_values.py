"""How a run stores values that may have no schema (step results, outputs), and which types
a stored type name may name.

A value without a schema is stored as JSON together with the name of its type
(``module:qualname``), and always handed back *decoded* — on the first execution too — so a
step gives the same value and type on its first run and on every replay (**fix**).

**Nothing read from storage is ever imported or evaluated.** A stored type name is looked up
in ``KnownTypes``: the value types of the standard library that JSON cannot tell apart
(``tuple``, ``set``, ``datetime``…), the classes declared on the workflow (its input, output,
event and error schemas, and the classes inside them) and the ``TaggedError`` subclasses
defined so far. A name found nowhere is *unknown*: reads decode the value as plain JSON
builtins (``decode_loose``), a replay that needs the exact type fails (``UnknownType``).

So that this never happens only later, in another process, a value is stored without a
schema only when a fresh worker of the same workflow is sure to know its type
(``KnownTypes.storable``); any other type is refused when the step is first recorded, with
a message saying to pass ``schema=``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import types
import typing
import uuid
from collections.abc import Iterable, Iterator
from typing import Annotated, Literal

from durable_effect._codec import codec_for, decode_json, encode_json, schema_name
from durable_effect.errors import TaggedError, ValidationError, registered_error

__all__ = [
    "KnownTypes",
    "UnknownType",
    "classes_in",
    "decode_loose",
    "decode_value",
    "encode_value",
    "error_text",
    "type_path",
]

_JSON_NATIVE = (str, int, float, bool, list, dict, types.NoneType)

#: Value types of the standard library that JSON alone would not give back as themselves.
LIBRARY_VALUE_TYPES: tuple[type, ...] = (
    tuple,
    set,
    frozenset,
    bytes,
    bytearray,
    dt.datetime,
    dt.date,
    dt.time,
    dt.timedelta,
    uuid.UUID,
    decimal.Decimal,
)


class UnknownType(TypeError):
    """A stored type name names no class this code knows (nothing is imported to find it)."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"the recorded value has type {path!r}, which this code does not declare "
            "(pass schema= to the step, or declare the type on the workflow)"
        )
        self.path = path


def type_path(tp: type) -> str:
    """``module:qualname`` of a type (its stored name)."""
    return f"{tp.__module__}:{tp.__qualname__}"


def classes_in(schema: object) -> Iterator[type]:
    """The classes a schema is made of, walking unions, generics and ``Annotated``.

    >>> from datetime import datetime
    >>> [c.__name__ for c in classes_in(dict[str, datetime] | None)]
    ['dict', 'str', 'datetime', 'NoneType']
    """
    if schema is None:
        return
    origin = typing.get_origin(schema)
    args = typing.get_args(schema)
    if origin is Literal:
        return
    if origin is Annotated:
        yield from classes_in(args[0])
        return
    if origin is not None:
        if isinstance(origin, type) and origin is not types.UnionType:
            yield origin
        for arg in args:
            yield from classes_in(arg)
        return
    if isinstance(schema, type):
        yield schema


class KnownTypes:
    """The classes a stored type name may resolve to (see the module docstring).

    >>> import msgspec
    >>> class Order(msgspec.Struct):
    ...     qty: int
    >>> known = KnownTypes([Order])
    >>> known.resolve(type_path(Order)) is Order, known.resolve("builtins:tuple")
    (True, <class 'tuple'>)
    >>> known.resolve("os:system") is None
    True
    """

    __slots__ = ("_by_path",)

    def __init__(self, declared: Iterable[type] = ()) -> None:
        by_path = {type_path(tp): tp for tp in LIBRARY_VALUE_TYPES}
        for tp in declared:
            by_path.setdefault(type_path(tp), tp)
        self._by_path = by_path

    def resolve(self, path: str) -> type | None:
        """The class named ``path`` (``None``: unknown — nothing is imported to find it)."""
        found = self._by_path.get(path)
        return found if found is not None else registered_error(path)

    def storable(self, tp: type) -> bool:
        """Whether a fresh worker of the same workflow resolves ``tp``'s stored name to it."""
        path = type_path(tp)
        if self._by_path.get(path) is tp:
            return True
        # A TaggedError subclass is registered by importing the module that defines it,
        # which another process does too — unless it is its own ``__main__``.
        return tp.__module__ != "__main__" and registered_error(path) is tp


#: What a run with no declared types knows: the library's value types (and tagged errors).
NO_DECLARED_TYPES = KnownTypes()


def encode_value(
    value: object, schema: object = None, known: KnownTypes = NO_DECLARED_TYPES
) -> tuple[bytes, str | None]:
    """JSON bytes of ``value``, and the name of the type to decode it with.

    With ``schema``, the value is validated against it (``ValidationError``). Without one,
    JSON-native values (``str``, ``int``, ``float``, ``bool``, ``None``, ``list``, ``dict``)
    are stored as they are, and a value of another type only when ``known.storable`` says a
    fresh worker knows that type (``TypeError`` otherwise: pass ``schema=``).
    """
    if schema is not None:
        data = codec_for(schema).encode(value)
        return data, type_path(schema) if isinstance(schema, type) else None
    tp = type(value)
    if tp in _JSON_NATIVE:
        return encode_json(value), None
    if not known.storable(tp):
        with contextlib.suppress(TypeError):  # an unsupported type: refused below all the same
            codec_for(tp).encode(value)  # ValidationError if it cannot be stored at all
        name = schema_name(tp)
        raise TypeError(
            f"a value of type {name} cannot be stored without a schema: only JSON values, "
            "the standard library's value types (tuple, set, datetime…) and the types declared "
            f"on the workflow replay as themselves in another process; pass schema={name} "
            "(or declare the type on the workflow)"
        )
    return codec_for(tp).encode(value), type_path(tp)


def decode_value(
    data: bytes, path: str | None, schema: object = None, known: KnownTypes = NO_DECLARED_TYPES
) -> object:
    """The value of ``encode_value``'s bytes: decoded with ``schema``, else with the recorded
    type, looked up in ``known`` (``UnknownType`` when it is not there)."""
    if schema is not None:
        result: object = codec_for(schema).decode(data)
        return result
    if path is None:
        return decode_json(data)
    tp = known.resolve(path)
    if tp is None:
        raise UnknownType(path)
    decoded: object = codec_for(tp).decode(data)
    return decoded


def decode_loose(data: bytes, path: str | None, known: KnownTypes = NO_DECLARED_TYPES) -> object:
    """For reads: like ``decode_value``, but plain JSON builtins when the type is unknown (or
    the stored value no longer fits it)."""
    try:
        return decode_value(data, path, known=known)
    except (TypeError, ValidationError):
        return decode_json(data)


def error_text(error: BaseException) -> str:
    """``"<Tag>: <message>"`` (tagged errors) or ``"<ExceptionType>: <message>"``."""
    if isinstance(error, TaggedError):
        return str(error)
    return f"{type(error).__name__}: {error}"
