"""Record images equal boto3's TypeDeserializer output, binary as bytes."""

from __future__ import annotations

import base64
import decimal
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddbstreams._deserialize import deserialize_image, deserialize_value

numbers = (
    st.decimals(min_value=Decimal("-1e30"), max_value=Decimal("1e30"), allow_nan=False, places=None)
    .filter(lambda d: len(d.as_tuple().digits) <= 38)
    .map(lambda d: str(d))
)
names = st.text(min_size=1, max_size=8)
blobs = st.binary(max_size=16)

scalar = st.one_of(
    st.builds(lambda s: {"S": s}, st.text(max_size=10)),
    st.builds(lambda n: {"N": n}, numbers),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.just({"NULL": True}),
    st.builds(lambda b: {"B": b}, blobs),
    st.builds(lambda s: {"SS": sorted(s)}, st.sets(st.text(max_size=5), min_size=1, max_size=4)),
    st.builds(lambda s: {"NS": sorted(s)}, st.sets(numbers, min_size=1, max_size=4)),
    st.builds(lambda s: {"BS": sorted(s)}, st.sets(blobs, min_size=1, max_size=4)),
)
attribute_values = st.recursive(
    scalar,
    lambda inner: st.one_of(
        st.builds(lambda items: {"L": items}, st.lists(inner, max_size=4)),
        st.builds(lambda items: {"M": items}, st.dictionaries(names, inner, max_size=4)),
    ),
    max_leaves=20,
)


def to_wire(av: dict[str, Any]) -> dict[str, Any]:
    """The JSON form on the network: binary as base64 text."""
    ((kind, value),) = av.items()
    if kind == "B":
        return {"B": base64.b64encode(value).decode()}
    if kind == "BS":
        return {"BS": [base64.b64encode(v).decode() for v in value]}
    if kind == "L":
        return {"L": [to_wire(v) for v in value]}
    if kind == "M":
        return {"M": {k: to_wire(v) for k, v in value.items()}}
    return av


def unwrap_binary(value: Any) -> Any:
    """TypeDeserializer wraps binary in Binary; ddbstreams gives bytes."""
    if isinstance(value, Binary):
        return value.value
    if isinstance(value, set):
        return {unwrap_binary(v) for v in value}
    if isinstance(value, list):
        return [unwrap_binary(v) for v in value]
    if isinstance(value, dict):
        return {k: unwrap_binary(v) for k, v in value.items()}
    return value


@given(attribute_values)
def test_equals_type_deserializer(av: dict[str, Any]) -> None:
    expected = unwrap_binary(TypeDeserializer().deserialize(av))
    got = deserialize_value(to_wire(av))
    assert got == expected
    assert type(got) is type(expected)


@given(st.dictionaries(names, attribute_values, max_size=6))
def test_image_equals_type_deserializer(image: dict[str, Any]) -> None:
    deserializer = TypeDeserializer()
    expected = {k: unwrap_binary(deserializer.deserialize(v)) for k, v in image.items()}
    assert deserialize_image({k: to_wire(v) for k, v in image.items()}) == expected


def test_binary_is_bytes_and_numbers_are_decimal() -> None:
    image = deserialize_image(
        {"b": {"B": "AAE="}, "n": {"N": "234"}, "ns": {"NS": ["1", "2.5"]}, "nul": {"NULL": True}}
    )
    assert image == {
        "b": b"\x00\x01",
        "n": Decimal(234),
        "ns": {Decimal(1), Decimal("2.5")},
        "nul": None,
    }
    assert type(image["b"]) is bytes


def test_already_decoded_binary_is_kept() -> None:
    assert deserialize_value({"B": b"\x01"}) == b"\x01"


@pytest.mark.parametrize("bad", [{}, {"X": "1"}])
def test_malformed_attribute_value_is_a_clear_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"AttributeValue|attribute type"):
        deserialize_value(bad)


@settings(suppress_health_check=[HealthCheck.too_slow])  # nested values, on a busy machine
@given(st.dictionaries(names, attribute_values, min_size=1, max_size=6))
def test_record_images_equal_type_deserializer(image: dict[str, Any]) -> None:
    from ddbstreams import Record

    wire = {k: to_wire(v) for k, v in image.items()}
    raw = {
        "eventName": "MODIFY",
        "dynamodb": {"Keys": wire, "NewImage": wire, "OldImage": wire, "SequenceNumber": "1" * 21},
    }
    record = Record(raw, "shard")
    deserializer = TypeDeserializer()
    expected = {k: unwrap_binary(deserializer.deserialize(v)) for k, v in image.items()}
    assert record.keys == record.new_image == record.old_image == expected


# DynamoDB numbers: up to 38 significant digits, magnitudes from 1E-130 to 9.99...E+125. The
# service may write them out in full ("1" and 125 zeros for 1E+125): DynamoDB itself in
# stream records (boto3 issue 2500) and MiniStack alike.
dynamodb_numbers = st.builds(
    lambda sign, digits, exponent, positional: (
        f"{sign}{Decimal(f'{digits}E{exponent}'):f}" if positional else f"{sign}{digits}E{exponent}"
    ),
    st.sampled_from(["", "-"]),
    st.integers(min_value=1, max_value=10**38 - 1),
    st.integers(min_value=-130, max_value=88),
    st.booleans(),
).filter(lambda text: -130 <= Decimal(text).adjusted() <= 125)


@given(dynamodb_numbers)
def test_every_dynamodb_number_is_read_exactly(text: str) -> None:
    got = deserialize_value({"N": text})
    assert got == Decimal(text)
    assert (
        deserialize_image({"n": {"N": text}})["n"] == got == deserialize_value({"NS": [text]}).pop()
    )
    try:
        expected = TypeDeserializer().deserialize({"N": text})
    except decimal.Rounded:
        return  # boto3 rejects a number written out past 38 digits (boto3 issue 2500)
    assert repr(got) == repr(expected)  # otherwise exactly what boto3 gives, digit for digit


@pytest.mark.parametrize(
    "text",
    [
        "1" + "0" * 125,  # 1E+125 as MiniStack (and DynamoDB) write it
        "-" + "9" * 38 + "0" * 88,
        "110111111111111110000000000000000000000",  # from a stream record (Powertools 4845)
    ],
)
def test_numbers_written_out_past_38_digits_are_read(text: str) -> None:
    assert deserialize_value({"N": text}) == Decimal(text)
    assert deserialize_image({"n": {"N": text}}) == {"n": Decimal(text)}


def test_a_number_that_would_lose_digits_still_raises() -> None:
    with pytest.raises(decimal.Inexact):
        deserialize_value({"N": "1" * 39})
