"""The codec boundary: every value that becomes bytes (or comes back) passes through here.

This module owns serialisation and schema validation, and is the only importer of msgspec.
The wire format is JSON (``msgspec.json``): human-inspectable in the database and stable.

A *schema* is any type msgspec can validate: ``msgspec.Struct`` (including tagged unions of
Structs, written ``A | B``), attrs classes, dataclasses, TypedDicts, builtins and their
generics (``int``, ``list[int]``, ``dict[str, Order]``, ``int | None``), ``Annotated`` with
``msgspec.Meta`` constraints, and ``datetime`` (which, as a whole schema, must be aware).

The msgspec trap: ``msgspec.convert(obj, T)`` hands back an instance of a Struct type without
checking its fields. So :meth:`Codec.encode` and :meth:`Codec.validate` never trust an
instance: they encode it to JSON and decode that JSON back with the schema (strictly), and
only bytes that decode are ever returned. What is checked is what will be stored: a value
JSON writes as a string (``bytes``, ``datetime``, ``UUID``, ``Decimal``) is accepted where
the schema says ``str``, and decodes as that string.

Failures are :class:`~durable_effect.errors.ValidationError` values carrying the schema's
readable name, msgspec's message and the path of the offending value (``$.items[0].qty``).
A value or document nested deeper than msgspec can walk (about the interpreter's recursion
limit, 1,000 levels by default) is a ``ValidationError`` too ("nested too deeply").
"""

from __future__ import annotations

import re
import types
import typing
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, overload

import attrs
import msgspec
from typing_extensions import TypeVar

from durable_effect.errors import ValidationError

__all__ = [
    "Codec",
    "codec_for",
    "decode_json",
    "encode_builtins",
    "encode_json",
    "schema_name",
]

T = TypeVar("T")
U = TypeVar("U", default=object)

Data = bytes | bytearray | memoryview | str
"""What the decoders accept: the bytes a backend returns (or text from a JSON column)."""

_ENCODER = msgspec.json.Encoder()
_ANY_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder()
_AT_PATH = re.compile(r"^(?P<message>.*) - at `(?P<path>\$[^`]*)`$", re.DOTALL)
_AWARE_DATETIME = Annotated[datetime, msgspec.Meta(tz=True)]
_CACHE: dict[object, Codec[Any]] = {}


@attrs.frozen(eq=False)
class Codec(Generic[T]):
    """Validating JSON codec for one schema; get one with :func:`codec_for` (cached).

    >>> class Item(msgspec.Struct):
    ...     sku: str
    ...     qty: int
    >>> codec = codec_for(Item)
    >>> codec.encode(Item(sku="A-1", qty=2))
    b'{"sku":"A-1","qty":2}'
    >>> codec.decode(b'{"sku":"A-1","qty":2}')
    Item(sku='A-1', qty=2)
    >>> codec.encode(Item(sku="A-1", qty="2"))
    Traceback (most recent call last):
        ...
    durable_effect.errors.ValidationError: ValidationError: Item at $.qty: Expected `int`, got `str`
    """

    schema: object
    """The schema as given to :func:`codec_for`."""
    name: str
    """The schema's readable name (:func:`schema_name`), used in errors."""
    _decoder: msgspec.json.Decoder[Any] = attrs.field(repr=False)

    def encode(self, value: T) -> bytes:
        """Encode ``value`` to JSON, checking that the bytes decode as the schema.

        Raises ``ValidationError`` when a field does not match (even inside an instance of
        the schema's own type) or when the value cannot be serialised at all.

        >>> codec_for(list[int]).encode([1, 2, 3])
        b'[1,2,3]'
        >>> codec_for(int).encode(object())
        Traceback (most recent call last):
            ...
        durable_effect.errors.ValidationError: ValidationError: int at $: cannot encode object: \
Encoding objects of type object is unsupported
        """
        data = _encode(self.name, value)
        try:
            self._decoder.decode(data)
        except msgspec.MsgspecError as exc:
            raise _validation_error(self.name, exc) from None
        except RecursionError:
            raise _too_deep(self.name) from None
        return data

    def decode(self, data: Data) -> T:
        """Decode and validate JSON ``data`` (strictly: ``"1"`` is not an ``int``).

        >>> codec_for(dict[str, int]).decode(b'{"a": 1}')
        {'a': 1}
        >>> codec_for(dict[str, int]).decode(b'{"a": "1"}')
        Traceback (most recent call last):
            ...
        durable_effect.errors.ValidationError: ValidationError: dict[str, int] at $[...]: \
Expected `int`, got `str`
        """
        try:
            result: T = self._decoder.decode(data)
        except msgspec.MsgspecError as exc:
            raise _validation_error(self.name, exc) from None
        except RecursionError:
            raise _too_deep(self.name) from None
        return result

    def validate(self, value: object) -> T:
        """A validated instance of the schema built from ``value``.

        ``value`` may be builtins (a ``dict`` parsed from JSON input, say) or an instance;
        either way it is encoded and decoded, so an instance is never trusted.

        >>> class Point(msgspec.Struct):
        ...     x: int
        ...     y: int
        >>> codec_for(Point).validate({"x": 1, "y": 2})
        Point(x=1, y=2)
        >>> codec_for(Point).validate({"x": 1})
        Traceback (most recent call last):
            ...
        durable_effect.errors.ValidationError: ValidationError: Point at $: \
Object missing required field `y`
        """
        return self.decode(_encode(self.name, value))


@overload
def codec_for(schema: type[T]) -> Codec[T]: ...


@overload
def codec_for(schema: types.UnionType | object) -> Codec[U]: ...


def codec_for(schema: object) -> Codec[Any]:
    """The (cached) codec of ``schema``.

    A union or ``Annotated`` schema gives ``Codec[object]`` unless the expected type says
    otherwise (``codec: Codec[A | B] = codec_for(A | B)``). An unsupported schema (an
    untagged union of Structs, a plain object) raises ``TypeError`` at once.

    >>> codec_for(int) is codec_for(int)
    True
    >>> codec_for(int | None).decode(b"null") is None
    True
    >>> codec_for(object())
    Traceback (most recent call last):
        ...
    TypeError: unsupported schema <object object at ...>: Type '<object object at ...>' \
is not supported
    """
    try:
        cached = _CACHE.get(schema)
    except TypeError:  # an unhashable schema: build it every time
        return _build(schema)
    if cached is None:
        cached = _CACHE.setdefault(schema, _build(schema))
    return cached


def _build(schema: object) -> Codec[Any]:
    name = schema_name(schema)
    target: Any = _AWARE_DATETIME if schema is datetime else schema
    try:
        decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(type=target, strict=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"unsupported schema {name}: {exc}") from None
    return Codec(schema=schema, name=name, decoder=decoder)


def schema_name(schema: object) -> str:
    """A short readable name for a schema, as used in ``ValidationError.schema``.

    >>> schema_name(int), schema_name(list[int]), schema_name(dict[str, int | None])
    ('int', 'list[int]', 'dict[str, int | None]')
    >>> class Order(msgspec.Struct):
    ...     qty: int
    >>> schema_name(Order), schema_name(Literal["a", "b"])
    ('Order', "Literal['a', 'b']")
    """
    if schema is None or schema is types.NoneType:
        return "None"
    if schema is Ellipsis:
        return "..."
    origin = typing.get_origin(schema)
    args = typing.get_args(schema)
    if origin is Annotated:
        return schema_name(args[0])
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(schema_name(arg) for arg in args)
    if origin is Literal:
        return f"Literal[{', '.join(repr(arg) for arg in args)}]"
    if origin is not None:
        inner = ", ".join(schema_name(arg) for arg in args)
        return f"{schema_name(origin)}[{inner}]" if args else schema_name(origin)
    if isinstance(schema, type):
        return schema.__qualname__.rpartition("<locals>.")[2]
    return repr(schema).removeprefix("typing.")


def encode_json(value: object) -> bytes:
    """Untyped JSON encoding, for the package's own metadata.

    >>> encode_json({"attempt": 2, "tags": ["a"]})
    b'{"attempt":2,"tags":["a"]}'
    """
    return _encode("JSON", value)


def decode_json(data: Data) -> object:
    """Untyped JSON decoding (the builtins of the document), for the package's own metadata.

    >>> decode_json(b'{"attempt": 2}')
    {'attempt': 2}
    >>> decode_json(b"{oops")
    Traceback (most recent call last):
        ...
    durable_effect.errors.ValidationError: ValidationError: JSON at $: \
JSON is malformed: object keys must be strings (byte 1)
    """
    try:
        result: object = _ANY_DECODER.decode(data)
    except msgspec.MsgspecError as exc:
        raise _validation_error("JSON", exc) from None
    except RecursionError:
        raise _too_deep("JSON") from None
    return result


def encode_builtins(value: object) -> object:
    """``value`` as JSON-compatible builtins (dicts, lists, str, int, float, bool, None).

    Structs, attrs classes and dataclasses become dicts; datetimes ISO 8601 strings; dict
    keys strings. For telemetry payloads.

    >>> from datetime import timezone
    >>> encode_builtins({"at": datetime(2024, 1, 2, tzinfo=timezone.utc), 1: (2, 3)})
    {'at': '2024-01-02T00:00:00Z', '1': (2, 3)}
    """
    try:
        return msgspec.to_builtins(value, str_keys=True)
    except (TypeError, ValueError, OverflowError, msgspec.MsgspecError) as exc:
        raise ValidationError(
            schema="JSON", message=f"cannot encode {type(value).__name__}: {exc}", path="$"
        ) from None
    except RecursionError:
        raise _too_deep("JSON") from None


def _encode(name: str, value: object) -> bytes:
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError, OverflowError, msgspec.MsgspecError) as exc:
        raise ValidationError(
            schema=name, message=f"cannot encode {type(value).__name__}: {exc}", path="$"
        ) from None
    except RecursionError:
        raise _too_deep(name) from None


def _too_deep(name: str) -> ValidationError:
    """Nesting past what msgspec (and the interpreter's recursion limit) can walk: a typed
    error, never a ``RecursionError``."""
    return ValidationError(schema=name, message="nested too deeply", path="$")


def _validation_error(name: str, exc: msgspec.MsgspecError) -> ValidationError:
    text = str(exc)
    match = _AT_PATH.match(text)
    if match is None:
        return ValidationError(schema=name, message=text, path="$")
    return ValidationError(schema=name, message=match["message"], path=match["path"])
