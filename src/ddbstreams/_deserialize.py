"""DynamoDB AttributeValues (wire JSON form) to Python values.

The result equals what ``boto3.dynamodb.types.TypeDeserializer`` gives (``Decimal`` for N,
``set`` for SS/NS/BS, ``None`` for NULL), except that binary values are real ``bytes`` and that
numbers written out past 38 digits are read (boto3 raises ``decimal.Rounded`` on them).
"""

from __future__ import annotations

from base64 import b64decode
from collections.abc import Callable, Mapping
from decimal import Rounded
from typing import Any

from boto3.dynamodb.types import DYNAMODB_CONTEXT

# DynamoDB may write a number out in full: 1E+125 as "1" and 125 zeros (stream records do,
# boto3 issue 2500; so does MiniStack). boto3's context traps Rounded, so it rejects such a
# number although dropping those zeros loses nothing. Without that trap only a number that
# would lose a digit (Inexact) raises; every number boto3 reads comes out as boto3 gives it.
_CONTEXT = DYNAMODB_CONTEXT.copy()
_CONTEXT.traps[Rounded] = False
_decimal = _CONTEXT.create_decimal


def _binary(value: str | bytes) -> bytes:
    # Wire JSON carries base64 text; botocore-parsed responses already carry bytes.
    return value if isinstance(value, bytes) else b64decode(value)


def _list(value: list[Mapping[str, Any]]) -> list[Any]:
    result = []
    for av in value:  # a plain loop: cheaper than a comprehension for short lists
        result.append(deserialize_value(av))
    return result


def deserialize_value(attribute_value: Mapping[str, Any]) -> Any:
    """Turn one AttributeValue such as ``{"N": "234"}`` into its Python value."""
    for type_name in attribute_value:  # exactly one key
        value = attribute_value[type_name]
        if type_name == "S":  # the most common types first, without a table look-up
            return value
        if type_name == "N":
            return _decimal(value)
        try:
            convert = _BY_TYPE[type_name]
        except KeyError:
            raise ValueError(f"unknown DynamoDB attribute type {type_name!r}") from None
        return convert(value)
    raise ValueError("empty AttributeValue: it must hold exactly one type key")


def deserialize_image(image: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Turn an item image (attribute name to AttributeValue) into a plain dict."""
    # The hot path of every record: strings and numbers, the commonest values, are taken
    # without a call, in a plain loop (a comprehension costs a function call of its own).
    result = {}
    for name, av in image.items():
        if "S" in av:
            result[name] = av["S"]
        elif "N" in av:
            result[name] = _decimal(av["N"])
        else:
            result[name] = deserialize_value(av)
    return result


_BY_TYPE: dict[str, Callable[[Any], Any]] = {
    "S": str,
    "N": _decimal,
    "M": deserialize_image,
    "L": _list,
    "BOOL": bool,
    "NULL": lambda _value: None,
    "B": _binary,
    "SS": set,
    "NS": lambda value: {_decimal(n) for n in value},
    "BS": lambda value: {_binary(b) for b in value},
}
