"""The consumer over real HTTP against the embedded local endpoint (moto's server)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

from conftest import FAST, SERVER, put_order
from ddbstreams import (
    ConfigurationError,
    CredentialsError,
    EndpointUnreachableError,
    SQLiteCheckpointStore,
    StreamConsumer,
    StreamNotEnabledError,
    TableNotFoundError,
)
from ddbstreams.testing import LocalEndpoint, RecordCollector, create_order_table

pytestmark = pytest.mark.local_endpoint

KEY = {"email": {"S": "anil@example.com"}, "order_number": {"S": "2023/01/01#1344"}}


def consumer_for(endpoint: LocalEndpoint, table: str, collector: Any, **kw: Any) -> StreamConsumer:
    kw.setdefault("settings", FAST)
    return StreamConsumer(collector, table_name=table, endpoint_url=endpoint.url, **kw)


def test_the_exercise_put_update_delete(
    local_endpoint: LocalEndpoint, dynamodb: Any, order_table: str
) -> None:
    collector = RecordCollector()
    with consumer_for(local_endpoint, order_table, collector):
        put_order(dynamodb, order_table, "anil@example.com", "2023/01/01#1344")
        dynamodb.update_item(
            TableName=order_table,
            Key=KEY,
            UpdateExpression="SET order_status = :shipped",
            ExpressionAttributeValues={":shipped": {"S": "shipped"}},
        )
        dynamodb.delete_item(TableName=order_table, Key=KEY)
        insert, modify, remove = collector.wait_for(3)
    keys = {"email": "anil@example.com", "order_number": "2023/01/01#1344"}
    order = {**keys, "order_amount": Decimal(234), "order_status": "pending"}
    assert [r.event_name for r in (insert, modify, remove)] == ["INSERT", "MODIFY", "REMOVE"]
    assert insert.keys == modify.keys == remove.keys == keys
    assert (insert.old_image, insert.new_image) == (None, order)
    assert modify.old_image == order
    assert modify.new_image == {**order, "order_status": "shipped"}
    assert (remove.old_image, remove.new_image) == ({**order, "order_status": "shipped"}, None)
    seqs = [int(r.sequence_number) for r in (insert, modify, remove)]
    assert seqs == sorted(seqs)
    assert insert.stream_view_type == "NEW_AND_OLD_IMAGES"
    assert insert.approximate_creation_time is not None
    assert insert.approximate_creation_time.tzinfo is not None
    if SERVER == "ministack":
        # MiniStack 1.5 writes "SizeBytes": 0 into every record (_build_change_record in
        # ministack/services/dynamodb.py); the wire value is what ddbstreams reports.
        assert insert.size_bytes == insert.raw["dynamodb"]["SizeBytes"] == 0
    else:
        assert insert.size_bytes > 0


def test_restart_with_sqlite_resumes_without_loss_or_redelivery(
    local_endpoint: LocalEndpoint, dynamodb: Any, order_table: str, tmp_path: Path
) -> None:
    db = tmp_path / "orders.checkpoints.db"
    first = RecordCollector()
    with consumer_for(
        local_endpoint, order_table, first, checkpoint_store=SQLiteCheckpointStore(db)
    ):
        for n in range(3):
            put_order(dynamodb, order_table, f"user{n}@example.com", "1")
        first.wait_for(3)
    for n in range(3, 5):
        put_order(dynamodb, order_table, f"user{n}@example.com", "1")
    second = RecordCollector()
    with consumer_for(
        local_endpoint, order_table, second, checkpoint_store=SQLiteCheckpointStore(db)
    ):
        second.wait_for(2)
        # A last record: the shard is read in order, so a wrongful re-delivery of the first
        # three would arrive before it.
        put_order(dynamodb, order_table, "user5@example.com", "1")
        second.wait_for(3)
    assert [r.keys["email"] for r in second.records] == [
        "user3@example.com",
        "user4@example.com",
        "user5@example.com",
    ]


def test_latest_versus_trim_horizon(
    local_endpoint: LocalEndpoint, dynamodb: Any, order_table: str
) -> None:
    put_order(dynamodb, order_table, "old@example.com", "1")
    stream_arn = dynamodb.describe_table(TableName=order_table)["Table"]["LatestStreamArn"]
    streams = boto3.client("dynamodbstreams", **local_endpoint.client_kwargs())
    # A LATEST start is pinned by the service's clock, to the second, erring early: let the
    # endpoint's clock (this host's) pass the second after the old record's creation.
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    (old,) = streams.get_records(ShardIterator=iterator)["Records"]
    created = old["dynamodb"]["ApproximateCreationDateTime"].timestamp()
    clock = threading.Event()
    while time.time() < math.floor(created) + 2:  # a condition on the clock itself
        clock.wait(0.05)
    polled = threading.Event()  # set once a GetRecords call has answered: the iterator exists
    streams.meta.events.register("after-call.dynamodb-streams.GetRecords", lambda **_: polled.set())
    latest, horizon = RecordCollector(), RecordCollector()
    with StreamConsumer(
        latest, stream_arn=stream_arn, client=streams, start_position="LATEST", settings=FAST
    ):
        assert polled.wait(10)
        put_order(dynamodb, order_table, "new@example.com", "1")
        latest.wait_for(1)
    with consumer_for(local_endpoint, order_table, horizon, start_position="TRIM_HORIZON"):
        horizon.wait_for(2)
    assert [r.keys["email"] for r in latest.records] == ["new@example.com"]
    assert [r.keys["email"] for r in horizon.records] == ["old@example.com", "new@example.com"]


@pytest.mark.slow
def test_sigkill_mid_stream_then_restart_loses_nothing(
    local_endpoint: LocalEndpoint, dynamodb: Any, order_table: str, tmp_path: Path
) -> None:
    db, out = tmp_path / "c.db", tmp_path / "seen.txt"
    out.touch()
    total = 40
    for n in range(total):
        put_order(dynamodb, order_table, f"user{n}@example.com", "1")
    command = [
        sys.executable,
        str(Path(__file__).parent / "consumer_process.py"),
        local_endpoint.url,
        order_table,
        str(db),
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    victim = subprocess.Popen(command, env=env)
    _wait_for_lines(out, 15)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    seen_before = len(out.read_text().split())
    assert seen_before < total, "killed too late to test anything"
    survivor = subprocess.Popen(command, env=env)
    try:
        _wait_for_unique(out, total)
    finally:
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(10) == 0  # SIGTERM stops it cleanly
    lines = out.read_text().split()
    assert len(set(lines)) == total
    # At-least-once: re-delivery is limited to what came after the last checkpoint.
    assert len(lines) - total <= 5 + 1


def _wait_for_lines(path: Path, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while len(path.read_text().split()) < count:
        assert time.monotonic() < deadline, f"fewer than {count} records in {timeout}s"
        time.sleep(0.01)


def _wait_for_unique(path: Path, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(set(path.read_text().split())) < count:
        assert time.monotonic() < deadline, f"fewer than {count} distinct records in {timeout}s"
        time.sleep(0.05)


def test_missing_table_is_a_clear_error(local_endpoint: LocalEndpoint) -> None:
    consumer = consumer_for(local_endpoint, "no-such-table", RecordCollector())
    with pytest.raises(TableNotFoundError, match="'no-such-table' was not found"):
        consumer.run()


def test_table_without_stream_names_the_fix(local_endpoint: LocalEndpoint, dynamodb: Any) -> None:
    table = f"no-stream-{os.getpid()}"
    create_order_table(dynamodb, table, stream_view_type=None)
    consumer = consumer_for(local_endpoint, table, RecordCollector())
    with pytest.raises(StreamNotEnabledError, match="update-table --table-name no-stream"):
        consumer.run()


def test_unreachable_endpoint_is_a_clear_error() -> None:
    consumer = StreamConsumer(
        RecordCollector(), table_name="t", endpoint_url="http://127.0.0.1:9", settings=FAST
    )
    with pytest.raises(EndpointUnreachableError, match="could not reach the endpoint"):
        consumer.run()


def test_missing_credentials_is_a_clear_error(
    local_endpoint: LocalEndpoint, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    consumer = consumer_for(local_endpoint, "t", RecordCollector())
    with pytest.raises(CredentialsError, match="AWS_ACCESS_KEY_ID"):
        consumer.run()


def test_missing_region_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(ConfigurationError, match="region_name"):
        StreamConsumer(RecordCollector(), table_name="t")


def test_images_over_http_equal_boto3s_own_parse(
    local_endpoint: LocalEndpoint, dynamodb: Any, order_table: str
) -> None:
    item = {
        **KEY,
        "amount": {"N": "-12.50"},
        "blob": {"B": b"\x00\xffbinary"},
        "blobs": {"BS": [b"\x01", b"\x02"]},
        "tags": {"SS": ["a", "b"]},
        "scores": {"NS": ["1", "2.5"]},
        "nested": {"M": {"list": {"L": [{"S": "x"}, {"N": "3"}, {"NULL": True}, {"BOOL": False}]}}},
    }
    dynamodb.put_item(TableName=order_table, Item=item)
    collector = RecordCollector()
    with consumer_for(local_endpoint, order_table, collector):
        (record,) = collector.wait_for(1)
    # boto3 without the fast path, deserialized by TypeDeserializer: the reference.
    import boto3
    from boto3.dynamodb.types import Binary, TypeDeserializer

    plain = boto3.client("dynamodbstreams", **local_endpoint.client_kwargs())
    arn = dynamodb.describe_table(TableName=order_table)["Table"]["LatestStreamArn"]
    shard = plain.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = plain.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    (reference,) = plain.get_records(ShardIterator=iterator)["Records"]

    def unwrap(value: Any) -> Any:
        if isinstance(value, Binary):
            return value.value
        if isinstance(value, set):
            return {unwrap(v) for v in value}
        return value

    expected = {
        k: unwrap(TypeDeserializer().deserialize(v))
        for k, v in reference["dynamodb"]["NewImage"].items()
    }
    assert record.new_image == expected
    assert record.new_image is not None
    assert type(record.new_image["blob"]) is bytes
    assert record.approximate_creation_time == reference["dynamodb"]["ApproximateCreationDateTime"]
    assert record.sequence_number == reference["dynamodb"]["SequenceNumber"]


def test_a_client_shared_with_the_consumer_keeps_botocores_own_get_records(
    local_endpoint: LocalEndpoint, dynamodb: Any, order_table: str
) -> None:
    from datetime import datetime

    streams = boto3.client("dynamodbstreams", **local_endpoint.client_kwargs())
    arn = dynamodb.describe_table(TableName=order_table)["Table"]["LatestStreamArn"]
    dynamodb.put_item(TableName=order_table, Item={**KEY, "blob": {"B": b"\x00\x01"}})
    collector = RecordCollector()
    with StreamConsumer(collector, stream_arn=arn, client=streams, settings=FAST):
        (record,) = collector.wait_for(1)
    assert record.raw["dynamodb"]["NewImage"]["blob"] == {"B": "AAE="}  # wire form
    # The same client, called directly after the consumer used it: botocore's own parse.
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    (own,) = streams.get_records(ShardIterator=iterator)["Records"]
    assert own["dynamodb"]["NewImage"]["blob"] == {"B": b"\x00\x01"}
    assert isinstance(own["dynamodb"]["ApproximateCreationDateTime"], datetime)
