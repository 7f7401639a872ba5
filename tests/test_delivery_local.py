"""Delivery policies over real HTTP: the exercise's order table on the local endpoint."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import boto3
import pytest

from conftest import FAST, put_order
from ddbstreams import (
    Batching,
    ConfigurationError,
    FailedBatch,
    Record,
    RetryPolicy,
    StreamConsumer,
)
from ddbstreams.destinations import SQSDestination, iter_failed_batches
from ddbstreams.testing import LocalEndpoint

pytestmark = pytest.mark.local_endpoint

KEY = {"email": {"S": "anil@example.com"}, "order_number": {"S": "2023/01/01#1344"}}
WAIT = 30.0


def exercise(dynamodb: Any, table: str) -> None:
    """The exercise: put an order, ship it, delete it."""
    put_order(dynamodb, table, "anil@example.com", "2023/01/01#1344")
    dynamodb.update_item(
        TableName=table,
        Key=KEY,
        UpdateExpression="SET order_status = :shipped",
        ExpressionAttributeValues={":shipped": {"S": "shipped"}},
    )
    dynamodb.delete_item(TableName=table, Key=KEY)


def test_a_poison_modify_goes_to_on_failure_with_its_wire_form_and_the_shard_goes_on(
    local_endpoint: LocalEndpoint, dynamodb: Any, order_table: str
) -> None:
    calls: list[list[str]] = []
    failed: list[FailedBatch] = []
    removed = threading.Event()

    def handle(batch: list[Record]) -> None:
        calls.append([r.event_name for r in batch])
        if any(r.event_name == "MODIFY" for r in batch):
            raise ValueError("cannot ship this order")
        if any(r.event_name == "REMOVE" for r in batch):
            removed.set()

    consumer = StreamConsumer(
        handle,
        table_name=order_table,
        endpoint_url=local_endpoint.url,
        settings=FAST,
        batching=Batching(max_records=10, max_wait=2.0),
        retry=RetryPolicy(max_attempts=2, bisect_on_error=True, initial_backoff=0.01),
        on_failure=failed.append,
    )
    with consumer:
        exercise(dynamodb, order_table)
        assert removed.wait(WAIT)
    (batch,) = failed
    (record,) = batch.records
    assert record.event_name == "MODIFY" and batch.attempts == 2
    assert record.raw["dynamodb"]["NewImage"]["order_status"] == {"S": "shipped"}
    assert record.raw["dynamodb"]["Keys"] == KEY
    assert "cannot ship this order" in batch.traceback
    assert batch.stream_arn == consumer.stream_arn
    # The three records came in one batch (max_wait), then halves, then MODIFY alone.
    assert calls[0] == ["INSERT", "MODIFY", "REMOVE"]
    assert ["INSERT"] in calls and ["REMOVE"] in calls


def test_an_async_handler_with_lanes_sees_the_exercise_in_order(
    local_endpoint: LocalEndpoint, dynamodb: Any, order_table: str
) -> None:
    seen: list[str] = []
    done = threading.Event()

    async def handle(record: Record) -> None:
        await asyncio.sleep(0)
        seen.append(record.event_name)
        if len(seen) == 3:
            done.set()

    with StreamConsumer(
        handle, table_name=order_table, endpoint_url=local_endpoint.url, settings=FAST,
        parallelism=4,
    ):  # fmt: skip
        exercise(dynamodb, order_table)
        assert done.wait(WAIT)
    assert seen == ["INSERT", "MODIFY", "REMOVE"]  # one item: one lane, in order


def test_the_issue_s_filter_on_the_exercise_passes_only_the_shipped_modify(
    local_endpoint: LocalEndpoint, dynamodb: Any, order_table: str
) -> None:
    seen: list[Record] = []
    done = threading.Event()

    def handle(record: Record) -> None:
        seen.append(record)
        done.set()

    consumer = StreamConsumer(
        handle,
        table_name=order_table,
        endpoint_url=local_endpoint.url,
        settings=FAST,
        filter={
            "eventName": ["INSERT", "MODIFY"],
            "dynamodb": {"NewImage": {"order_status": {"S": ["shipped"]}}},
        },
    )
    with consumer:
        exercise(dynamodb, order_table)
        assert done.wait(WAIT)
        put_order(dynamodb, order_table, "zoe@example.com", "2")  # pending: filtered out
        marker_shipped = {"S": "shipped"}
        dynamodb.put_item(
            TableName=order_table,
            Item={"email": {"S": "last@example.com"}, "order_number": {"S": "9"},
                  "order_status": marker_shipped},
        )  # fmt: skip
        while len(seen) < 2:
            assert done.wait(WAIT)
            done.clear()
    assert [(r.event_name, r.keys["email"]) for r in seen] == [
        ("MODIFY", "anil@example.com"),
        ("INSERT", "last@example.com"),
    ]
    # the INSERT, the REMOVE and zoe's pending INSERT
    assert sum(status.records_filtered for status in consumer.shards()) == 3


@pytest.mark.moto_only(reason="moto serves SQS and S3 beside DynamoDB")
def test_a_poison_record_reaches_sqs_whole_and_replays_through_the_handler(
    local_endpoint: LocalEndpoint, dynamodb: Any, order_table: str
) -> None:
    kwargs = local_endpoint.client_kwargs()
    sqs, s3 = boto3.client("sqs", **kwargs), boto3.client("s3", **kwargs)
    queue_url = sqs.create_queue(QueueName=f"{order_table}-failed")["QueueUrl"]
    s3.create_bucket(Bucket=f"{order_table}-records".lower())
    destination = SQSDestination(
        queue_url, s3_bucket=f"{order_table}-records".lower(), endpoint_url=local_endpoint.url
    )
    broken = True
    handled: list[str] = []
    removed = threading.Event()

    def handle(record: Record) -> None:
        if broken and record.event_name == "MODIFY":
            raise ValueError("the shipping service is down")
        handled.append(record.event_name)
        if record.event_name == "REMOVE":
            removed.set()

    with StreamConsumer(
        handle, table_name=order_table, endpoint_url=local_endpoint.url, settings=FAST,
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.01), on_failure=destination,
    ):  # fmt: skip
        exercise(dynamodb, order_table)
        assert removed.wait(WAIT)
    assert handled == ["INSERT", "REMOVE"]  # the shard went on past the poison record
    broken = False  # the fix is deployed: replay what the queue holds
    replayed = list(iter_failed_batches(queue_url, endpoint_url=local_endpoint.url))
    (batch,) = replayed
    assert batch.reason == "max_attempts" and "shipping service is down" in batch.traceback
    for record in batch.records:
        handle(record)
    assert handled == ["INSERT", "REMOVE", "MODIFY"]
    assert batch.records[0].raw["dynamodb"]["NewImage"]["order_status"] == {"S": "shipped"}
    assert "Messages" not in sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)


def test_sqs_without_a_bucket_on_a_stream_with_images_is_refused_at_start(
    local_endpoint: LocalEndpoint, order_table: str
) -> None:
    consumer = StreamConsumer(
        print, table_name=order_table, endpoint_url=local_endpoint.url, settings=FAST,
        retry=RetryPolicy(max_attempts=2),
        on_failure=SQSDestination("http://localhost:1/000000000000/q", max_message_bytes=262144),
    )  # fmt: skip
    with pytest.raises(ConfigurationError, match="s3_bucket"):
        consumer.run()
