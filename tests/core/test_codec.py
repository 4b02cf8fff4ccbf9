"""The codec boundary: round-trips per schema kind, the msgspec trap, error shapes."""

from __future__ import annotations

import dataclasses
import enum
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Literal, TypedDict

import attrs
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from durable_effect._codec import (
    Codec,
    codec_for,
    decode_json,
    encode_builtins,
    encode_json,
    schema_name,
)
from durable_effect.errors import TaggedError, ValidationError


class Item(msgspec.Struct):
    sku: str
    qty: int


class Order(msgspec.Struct):
    id: str
    items: list[Item]
    note: str | None = None


class Created(msgspec.Struct, tag="created"):
    id: str


class Cancelled(msgspec.Struct, tag="cancelled"):
    id: str
    reason: str


@attrs.frozen
class Token:
    access: str
    expires_in: int


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


class Settings(TypedDict):
    name: str
    retries: int


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Wide(msgspec.Struct):
    a: int
    b: str
    c: float
    d: bool
    e: list[int]
    f: dict[str, int]
    g: str | None
    h: int
    i: datetime
    j: Colour


# -- round-trips ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        (Item, Item(sku="A", qty=1)),
        (Order, Order(id="o1", items=[Item(sku="A", qty=2)], note="hi")),
        (Token, Token(access="t", expires_in=3600)),
        (Point, Point(x=1, y=-2)),
        (Settings, Settings(name="n", retries=3)),
        (int, 42),
        (str, "héllo \u2603"),
        (float, 1.5),
        (bool, True),
        (list[int], [1, 2, 3]),
        (dict[str, list[int]], {"a": [1], "b": []}),
        (dict[int, str], {1: "one"}),
        (tuple[int, str], (1, "x")),
        (int | None, None),
        (Literal["a", "b"], "b"),
        (Colour, Colour.BLUE),
        (bytes, b"\x00\xff"),
        (datetime, datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)),
        (list[Item], [Item(sku="x", qty=0)]),
        (Annotated[int, msgspec.Meta(ge=0)], 5),
    ],
)
def test_round_trip(schema: object, value: object) -> None:
    codec: Codec[object] = codec_for(schema)
    data = codec.encode(value)
    assert isinstance(data, bytes)
    assert codec.decode(data) == value
    assert codec.validate(value) == value


def test_wire_format_is_json() -> None:
    data = codec_for(Order).encode(Order(id="o1", items=[Item(sku="A", qty=2)]))
    assert data == b'{"id":"o1","items":[{"sku":"A","qty":2}],"note":null}'
    assert decode_json(data) == {"id": "o1", "items": [{"sku": "A", "qty": 2}], "note": None}


def test_typed_codecs_infer_their_value_type() -> None:
    order = codec_for(Order).decode(b'{"id":"o","items":[]}')
    assert order.items == []  # mypy knows ``order`` is an Order
    numbers: list[int] = codec_for(list[int]).decode(b"[1]")
    assert numbers == [1]


def test_tagged_union() -> None:
    codec: Codec[Created | Cancelled] = codec_for(Created | Cancelled)
    data = codec.encode(Cancelled(id="1", reason="late"))
    assert data == b'{"type":"cancelled","id":"1","reason":"late"}'
    assert codec.decode(data) == Cancelled(id="1", reason="late")
    assert codec.decode(b'{"type":"created","id":"2"}') == Created(id="2")
    with pytest.raises(ValidationError) as info:
        codec.decode(b'{"type":"deleted","id":"2"}')
    assert info.value.schema == "Created | Cancelled"
    assert "deleted" in info.value.message
    assert info.value.path == "$.type"


def test_aware_datetime_required_for_datetime_schema() -> None:
    codec = codec_for(datetime)
    eastern = datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=-5)))
    assert codec.decode(codec.encode(eastern)) == eastern
    with pytest.raises(ValidationError, match="timezone"):
        codec.encode(datetime(2024, 1, 1, 12))
    with pytest.raises(ValidationError):
        codec.decode(b'"2024-01-01T12:00:00"')


# -- the msgspec trap: instances are never trusted ------------------------------------------


def test_convert_really_does_not_check_struct_instances() -> None:
    """The trap itself, so that this file fails if msgspec ever changes."""
    bad = Item(sku="A", qty="3")  # type: ignore[arg-type]
    assert msgspec.convert(bad, Item) is bad


def test_encode_rejects_a_struct_instance_with_a_wrong_field() -> None:
    with pytest.raises(ValidationError) as info:
        codec_for(Item).encode(Item(sku="A", qty="3"))  # type: ignore[arg-type]
    assert info.value == ValidationError(
        schema="Item", message="Expected `int`, got `str`", path="$.qty"
    )


def test_nested_path_in_the_error() -> None:
    order = Order(id="o", items=[Item(sku="A", qty=1), Item(sku="B", qty=None)])  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as info:
        codec_for(Order).encode(order)
    assert info.value.schema == "Order"
    assert info.value.path == "$.items[1].qty"
    assert str(info.value) == "ValidationError: Order at $.items[1].qty: Expected `int`, got `null`"


def test_encode_rejects_wrong_attrs_and_dataclass_instances() -> None:
    with pytest.raises(ValidationError, match="expires_in"):
        codec_for(Token).encode(Token(access="t", expires_in="soon"))  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as info:
        codec_for(Point).encode(Point(x=1, y=1.5))  # type: ignore[arg-type]
    assert info.value.path == "$.y"


def test_encode_rejects_a_value_of_another_type() -> None:
    with pytest.raises(ValidationError) as info:
        codec_for(Item).encode(Point(x=1, y=2))  # type: ignore[arg-type]
    assert info.value.schema == "Item"
    assert "missing required field `sku`" in info.value.message


def test_encode_rejects_nan_that_json_cannot_carry() -> None:
    with pytest.raises(ValidationError, match="got `null`"):
        codec_for(float).encode(float("nan"))


def test_unserialisable_value_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as info:
        codec_for(dict[str, int]).encode({"a": object()})  # type: ignore[dict-item]
    assert info.value.schema == "dict[str, int]"
    assert info.value.path == "$"
    assert "unsupported" in info.value.message
    assert isinstance(info.value, TaggedError)


def test_strict_decoding() -> None:
    with pytest.raises(ValidationError) as info:
        codec_for(Item).decode(b'{"sku":"A","qty":"3"}')
    assert (info.value.schema, info.value.path) == ("Item", "$.qty")
    with pytest.raises(ValidationError):
        codec_for(int).decode(b"true")
    with pytest.raises(ValidationError):
        codec_for(Annotated[int, msgspec.Meta(ge=0)]).decode(b"-1")


@pytest.mark.parametrize("data", [b"not json", b"", b'{"sku":"A","qty":1} trailing', b"\xff"])
def test_decode_of_bytes_that_are_not_json(data: bytes) -> None:
    with pytest.raises(ValidationError) as info:
        codec_for(Item).decode(data)
    assert info.value.schema == "Item"
    assert info.value.path == "$"
    assert "JSON" in info.value.message or "truncated" in info.value.message


def test_decode_accepts_text_and_buffers() -> None:
    codec = codec_for(Item)
    assert codec.decode('{"sku":"A","qty":1}') == Item(sku="A", qty=1)
    assert codec.decode(memoryview(b'{"sku":"A","qty":1}')) == Item(sku="A", qty=1)
    assert codec.decode(bytearray(b'{"sku":"A","qty":1}')) == Item(sku="A", qty=1)


# -- validate --------------------------------------------------------------------------------


def test_validate_dicts_from_json_input() -> None:
    codec = codec_for(Order)
    order = codec.validate({"id": "o", "items": [{"sku": "A", "qty": 1}]})
    assert order == Order(id="o", items=[Item(sku="A", qty=1)])
    with pytest.raises(ValidationError) as info:
        codec.validate({"id": "o", "items": [{"sku": "A", "qty": "1"}]})
    assert info.value.path == "$.items[0].qty"


def test_validate_parses_strings_like_the_wire_does() -> None:
    at = codec_for(Wide).validate(
        {
            "a": 1,
            "b": "b",
            "c": 1,
            "d": False,
            "e": [],
            "f": {},
            "g": None,
            "h": 2,
            "i": "2024-01-01T00:00:00Z",
            "j": "red",
        }
    )
    assert at.i == datetime(2024, 1, 1, tzinfo=UTC)
    assert at.j is Colour.RED
    assert at.c == 1.0


def test_validate_does_not_trust_instances() -> None:
    bad = Item(sku="A", qty="3")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=r"\$\.qty"):
        codec_for(Item).validate(bad)
    good = Item(sku="A", qty=3)
    assert codec_for(Item).validate(good) == good


def test_validate_attrs_dataclass_typeddict_from_dicts() -> None:
    assert codec_for(Token).validate({"access": "a", "expires_in": 1}) == Token("a", 1)
    assert codec_for(Point).validate({"x": 1, "y": 2}) == Point(1, 2)
    assert codec_for(Settings).validate({"name": "n", "retries": 0}) == {"name": "n", "retries": 0}
    with pytest.raises(ValidationError, match="retries"):
        codec_for(Settings).validate({"name": "n"})


# -- codec_for, schema_name -----------------------------------------------------------------


def test_codecs_are_cached() -> None:
    assert codec_for(Order) is codec_for(Order)
    assert codec_for(list[int]) is codec_for(list[int])
    assert codec_for(Created | Cancelled) is codec_for(Created | Cancelled)


def test_unsupported_schemas_fail_at_definition() -> None:
    with pytest.raises(TypeError, match=re.escape("unsupported schema Item | Point")):
        codec_for(Item | Point)  # untagged union of two object types
    with pytest.raises(TypeError, match="unsupported schema"):
        codec_for(object())


@pytest.mark.parametrize(
    ("schema", "name"),
    [
        (int, "int"),
        (Order, "Order"),
        (Token, "Token"),
        (list[Item], "list[Item]"),
        (dict[str, int | None], "dict[str, int | None]"),
        (Created | Cancelled, "Created | Cancelled"),
        (tuple[int, ...], "tuple[int, ...]"),
        (None, "None"),
        (Annotated[int, msgspec.Meta(ge=0)], "int"),
        (Literal["a", 1], "Literal['a', 1]"),
        (datetime, "datetime"),
    ],
)
def test_schema_name(schema: object, name: str) -> None:
    assert schema_name(schema) == name
    if schema is not None:
        assert codec_for(schema).name == name


def test_local_class_names_are_short() -> None:
    class Local(msgspec.Struct):
        x: int

    assert schema_name(Local) == "Local"


# -- untyped helpers -------------------------------------------------------------------------


def test_encode_and_decode_json() -> None:
    meta = {"attempt": 2, "at": datetime(2024, 1, 1, tzinfo=UTC), "tags": ["a"]}
    data = encode_json(meta)
    assert data == b'{"attempt":2,"at":"2024-01-01T00:00:00Z","tags":["a"]}'
    assert decode_json(data) == {"attempt": 2, "at": "2024-01-01T00:00:00Z", "tags": ["a"]}
    with pytest.raises(ValidationError):
        encode_json(object())
    with pytest.raises(ValidationError, match="malformed"):
        decode_json(b"{]")


def test_encode_builtins() -> None:
    when = datetime(2024, 1, 1, tzinfo=UTC)
    payload = encode_builtins(
        {"order": Order(id="o", items=[]), "token": Token("a", 1), "when": when, 7: Colour.RED}
    )
    assert payload == {
        "order": {"id": "o", "items": [], "note": None},
        "token": {"access": "a", "expires_in": 1},
        "when": "2024-01-01T00:00:00Z",
        "7": "red",
    }
    with pytest.raises(ValidationError):
        encode_builtins({"x": object()})


# -- properties ------------------------------------------------------------------------------

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
items = st.builds(Item, sku=st.text(), qty=INT64)
orders = st.builds(
    Order, id=st.text(), items=st.lists(items, max_size=5), note=st.none() | st.text()
)


@given(orders)
def test_struct_round_trip_property(order: Order) -> None:
    codec = codec_for(Order)
    assert codec.decode(codec.encode(order)) == order


@given(st.dictionaries(st.text(), st.lists(INT64, max_size=4), max_size=5))
def test_builtin_round_trip_property(value: dict[str, list[int]]) -> None:
    codec = codec_for(dict[str, list[int]])
    assert codec.decode(codec.encode(value)) == value
    assert codec.validate(value) == value


@given(st.datetimes(timezones=st.just(UTC)))
def test_datetime_round_trip_property(value: datetime) -> None:
    codec = codec_for(datetime)
    assert codec.decode(codec.encode(value)) == value


@given(
    st.one_of(
        st.builds(Created, id=st.text()), st.builds(Cancelled, id=st.text(), reason=st.text())
    )
)
def test_tagged_union_round_trip_property(event: Created | Cancelled) -> None:
    codec: Codec[Created | Cancelled] = codec_for(Created | Cancelled)
    decoded = codec.decode(codec.encode(event))
    assert decoded == event
    assert type(decoded) is type(event)


@given(items, st.sampled_from(["1", 1.5, None, [1], {"a": 1}]))
def test_any_wrong_qty_is_rejected(item: Item, wrong: object) -> None:
    bad = msgspec.structs.replace(item, qty=wrong)
    with pytest.raises(ValidationError) as info:
        codec_for(Item).encode(bad)
    assert info.value.path == "$.qty"
