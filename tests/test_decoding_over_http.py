"""ddbstreams' own decoding of GetRecords equals botocore's parse + boto3's TypeDeserializer,
record by record, on a real server's answers (moto under `nox -s tests`, MiniStack under
`nox -s compat`: their bodies differ in member order, number and date forms, escapes)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import Binary, TypeDeserializer

from conftest import FAST
from ddbstreams import Record, StreamConsumer
from ddbstreams.testing import RecordCollector, create_order_table

pytestmark = pytest.mark.local_endpoint

_numbers = itertools.count(1)
KEY = {"email": {"S": 'zoë"\\/\u2028@example.com'}, "order_number": {"S": "2023/01/01#1344"}}
ITEM = {
    **KEY,
    "text": {"S": 'quote " backslash \\ slash / tab \t newline \n nul \x00 emoji \U0001f600'},
    "empty": {"S": ""},
    "whole": {"N": "100"},
    "negative": {"N": "-12.50"},
    "tiny": {"N": "-1E-130"},
    "digits": {"N": "12345678901234567890123456789012345678"},
    "zero": {"N": "0"},
    "blob": {"B": b"\x00\xffbinary\n"},
    "blobs": {"BS": [b"\x01", b"\x02\x03", b""]},
    "tags": {"SS": ["a", "ü", "😀"]},
    "scores": {"NS": ["1", "2.5", "-0.001"]},
    "yes": {"BOOL": True},
    "no": {"BOOL": False},
    "nothing": {"NULL": True},
    "nested": {
        "M": {
            "list": {"L": [{"S": "x"}, {"N": "3"}, {"NULL": True}, {"BOOL": False}, {"L": []}]},
            "map": {"M": {"deeper": {"M": {"b": {"B": b"\x7f"}}}, "empty": {"M": {}}}},
        }
    },
}
OTHER_KEY = {"email": {"S": "plain@example.com"}, "order_number": {"S": "1"}}


def write_every_kind_of_change(dynamodb: Any, table: str) -> int:
    """INSERT, MODIFY (types changed, attributes removed and added), REMOVE; the count."""
    dynamodb.put_item(TableName=table, Item=ITEM)
    dynamodb.put_item(TableName=table, Item={**OTHER_KEY, "amount": {"N": "1"}})
    dynamodb.update_item(
        TableName=table,
        Key=KEY,
        UpdateExpression="SET #whole = :s, #added = :m REMOVE #blob ADD #scores :n",
        ExpressionAttributeNames={
            "#whole": "whole",
            "#added": "added",
            "#blob": "blob",
            "#scores": "scores",
        },
        ExpressionAttributeValues={
            ":s": {"S": "now a string"},
            ":m": {"M": {"k": {"SS": ["v"]}}},
            ":n": {"NS": ["7"]},
        },
    )
    dynamodb.delete_item(TableName=table, Key=KEY)
    dynamodb.put_item(TableName=table, Item={**OTHER_KEY, "amount": {"N": "2.000"}})
    return 5


@pytest.fixture(params=["NEW_AND_OLD_IMAGES", "NEW_IMAGE", "OLD_IMAGE", "KEYS_ONLY"])
def table(request: pytest.FixtureRequest, dynamodb: Any) -> Iterator[str]:
    name = f"decoding-{os.getpid()}-{next(_numbers)}"
    create_order_table(dynamodb, name, request.param)
    yield name
    dynamodb.delete_table(TableName=name)


def exact(value: Any) -> Any:
    """A form of a Python value that compares types and exact text, not just equality
    (``Decimal("2.000") == Decimal("2")``, ``True == 1``)."""
    if isinstance(value, dict):
        return {key: exact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [exact(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return ("set", sorted(repr(exact(item)) for item in value))
    if isinstance(value, Binary):
        return exact(value.value)
    return (type(value).__name__, repr(value))


def from_boto3(record: dict[str, Any]) -> dict[str, Any]:
    """A record as botocore parsed it, images through boto3's TypeDeserializer."""
    data, deserialize = record["dynamodb"], TypeDeserializer().deserialize

    def image(name: str) -> Any:
        if name not in data:
            return None
        return exact({key: deserialize(value) for key, value in data[name].items()})

    return {
        "event_id": record["eventID"],
        "event_name": record["eventName"],
        "event_version": record.get("eventVersion"),
        "event_source": record.get("eventSource"),
        "aws_region": record.get("awsRegion"),
        "user_identity": record.get("userIdentity"),
        "created": data["ApproximateCreationDateTime"].timestamp(),
        "sequence_number": data["SequenceNumber"],
        "size_bytes": data.get("SizeBytes", 0),
        "view_type": data.get("StreamViewType"),
        "keys": image("Keys"),
        "new_image": image("NewImage"),
        "old_image": image("OldImage"),
    }


def from_ddbstreams(record: Record) -> dict[str, Any]:
    created = record.approximate_creation_time
    assert created is not None and created.tzinfo is not None
    return {
        "event_id": record.event_id,
        "event_name": record.event_name,
        "event_version": record.raw.get("eventVersion"),
        "event_source": record.raw.get("eventSource"),
        "aws_region": record.raw.get("awsRegion"),
        "user_identity": record.user_identity,
        "created": created.timestamp(),
        "sequence_number": record.sequence_number,
        "size_bytes": record.size_bytes,
        "view_type": record.stream_view_type,
        "keys": exact(record.keys),
        "new_image": None if record.new_image is None else exact(record.new_image),
        "old_image": None if record.old_image is None else exact(record.old_image),
    }


def test_records_decoded_by_ddbstreams_equal_botocores_parse(
    local_endpoint: Any, dynamodb: Any, table: str
) -> None:
    count = write_every_kind_of_change(dynamodb, table)
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    # ddbstreams' own clients: GetRecords bodies decoded by ddbstreams, pages of 2 records.
    collector = RecordCollector()
    with StreamConsumer(
        collector,
        stream_arn=arn,
        endpoint_url=local_endpoint.url,
        settings=replace(FAST, batch_size=2),
    ):
        ours = collector.wait_for(count)
    # The reference: a client ddbstreams never saw, so botocore parses every answer.
    plain = boto3.client("dynamodbstreams", **local_endpoint.client_kwargs())
    shard = plain.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = plain.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    reference = plain.get_records(ShardIterator=iterator)["Records"]
    assert len(reference) == count
    assert [from_ddbstreams(r) for r in ours] == [from_boto3(r) for r in reference]
    # The wire form is kept as sent: a sequence number's text (MiniStack pads it with zeros).
    assert [r.raw["dynamodb"]["SequenceNumber"] for r in ours] == [
        r["dynamodb"]["SequenceNumber"] for r in reference
    ]


def test_the_rich_item_round_trips(local_endpoint: Any, dynamodb: Any) -> None:
    """Not only equal to boto3: equal to what was written (binary as bytes)."""
    name = f"decoding-{os.getpid()}-{next(_numbers)}"
    create_order_table(dynamodb, name)
    try:
        dynamodb.put_item(TableName=name, Item=ITEM)
        collector = RecordCollector()
        with StreamConsumer(
            collector, table_name=name, endpoint_url=local_endpoint.url, settings=FAST
        ):
            (record,) = collector.wait_for(1)
    finally:
        dynamodb.delete_table(TableName=name)
    image = record.new_image
    assert image is not None
    assert image["text"] == ITEM["text"]["S"]
    assert image["email"] == KEY["email"]["S"]
    assert image["blob"] == b"\x00\xffbinary\n"
    assert image["blobs"] == {b"\x01", b"\x02\x03", b""}
    assert image["tags"] == {"a", "ü", "😀"}
    assert image["digits"] == Decimal("12345678901234567890123456789012345678")
    assert image["nested"]["map"]["deeper"]["b"] == b"\x7f"
    assert image["nothing"] is None and image["yes"] is True and image["no"] is False


def test_numbers_past_38_digits_written_out_are_read(local_endpoint: Any, dynamodb: Any) -> None:
    """MiniStack, like DynamoDB in stream records (boto3 issue 2500), writes 1E+125 out in
    full: 126 digits, which boto3's TypeDeserializer rejects (decimal.Rounded)."""
    numbers = {"huge": "9.9999999999999999999999999999999999999E+125", "round": "1E+125"}
    name = f"decoding-{os.getpid()}-{next(_numbers)}"
    create_order_table(dynamodb, name)
    try:
        dynamodb.put_item(
            TableName=name, Item={**OTHER_KEY, **{k: {"N": v} for k, v in numbers.items()}}
        )
        collector = RecordCollector()
        with StreamConsumer(
            collector, table_name=name, endpoint_url=local_endpoint.url, settings=FAST
        ):
            (record,) = collector.wait_for(1)
    finally:
        dynamodb.delete_table(TableName=name)
    assert record.new_image is not None
    for attribute, text in numbers.items():
        assert record.new_image[attribute] == Decimal(text)
        wire = record.raw["dynamodb"]["NewImage"][attribute]["N"]
        assert Decimal(wire) == Decimal(text)
