"""How a run stores values that may have no schema (step results, outputs) and errors.

Values without a schema are stored as JSON together with the import path of their type,
and always handed back *decoded* — on the first execution too — so a step gives the same
value and type on its first run and on every replay (**fix**). Errors are stored as their
text, ``"<Tag>: <message>"``.
"""

from __future__ import annotations

import importlib
import types

from durable_effect._codec import codec_for, decode_json, encode_json
from durable_effect.errors import TaggedError, ValidationError

__all__ = ["decode_loose", "decode_value", "encode_value", "error_text", "resolve_type"]

_JSON_NATIVE = (str, int, float, bool, list, dict, types.NoneType)


def type_path(tp: type) -> str:
    """``module:qualname`` of a type."""
    return f"{tp.__module__}:{tp.__qualname__}"


def resolve_type(path: str) -> type:
    """The type named by ``type_path`` (``TypeError`` if it cannot be imported)."""
    module_name, _, qualname = path.partition(":")
    try:
        found: object = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise TypeError(f"cannot import the type {path!r}: {exc}") from None
    if not isinstance(found, type):
        raise TypeError(f"{path!r} is not a type")
    return found


def encode_value(value: object, schema: object = None) -> tuple[bytes, str | None]:
    """JSON bytes of ``value``, and the import path of the type to decode it with.

    With ``schema``, the value is validated against it (``ValidationError``). Without one,
    JSON-native values (``str``, ``int``, ``float``, ``bool``, ``None``, ``list``, ``dict``)
    are stored as they are; any other type msgspec supports (Structs, attrs classes,
    dataclasses, ``datetime``, ``tuple``, ``set``…) must be importable by its module path
    (``TypeError`` otherwise: define it at module level, or pass ``schema=``).
    """
    if schema is not None:
        data = codec_for(schema).encode(value)
        return data, type_path(schema) if isinstance(schema, type) and _importable(schema) else None
    tp = type(value)
    if tp in _JSON_NATIVE:
        return encode_json(value), None
    path = type_path(tp)
    try:
        same = resolve_type(path) is tp
    except TypeError:
        same = False
    if not same:
        raise TypeError(
            f"a value of type {tp.__qualname__} cannot be stored without a schema: its type is "
            "not importable by module path (define it at module level, or pass schema=)"
        )
    return codec_for(tp).encode(value), path


def decode_value(data: bytes, path: str | None, schema: object = None) -> object:
    """The value of ``encode_value``'s bytes: decoded with ``schema``, else the recorded type."""
    if schema is not None:
        result: object = codec_for(schema).decode(data)
        return result
    if path is None:
        return decode_json(data)
    decoded: object = codec_for(resolve_type(path)).decode(data)
    return decoded


def decode_loose(data: bytes, path: str | None) -> object:
    """Like ``decode_value``, falling back to plain JSON if the recorded type is gone."""
    try:
        return decode_value(data, path)
    except (TypeError, ValidationError):
        return decode_json(data)


def _importable(schema: type) -> bool:
    try:
        return resolve_type(type_path(schema)) is schema
    except TypeError:
        return False


def error_text(error: BaseException) -> str:
    """``"<Tag>: <message>"`` (tagged errors) or ``"<ExceptionType>: <message>"``."""
    if isinstance(error, TaggedError):
        return str(error)
    return f"{type(error).__name__}: {error}"
