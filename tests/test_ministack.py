"""MiniStack-only cases: what moto's server does not model, over real HTTP.

MiniStack (PyPI ``ministack``) expires shard iterators, trims records past its retention
window, and keeps a disabled stream readable as a closed one (re-enabling makes a new ARN).
``nox -s compat`` runs these with ``DDBSTREAMS_TEST_SERVER=ministack``. Cases that need
short lifetimes start their own MiniStack (tests/ministack_server.py) with the interpreter
named by ``DDBSTREAMS_MINISTACK_PYTHON``.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from conftest import ENDPOINT_URL, FAST, SERVER, put_order
from ddbstreams import (
    Record,
    SQLiteCheckpointStore,
    StreamConsumer,
    StreamDisabledError,
    TrimmedDataError,
)
from ddbstreams.testing import RecordCollector, create_order_table
from ministack_endpoint import MiniStack

pytestmark = [
    pytest.mark.local_endpoint,
    pytest.mark.skipif(
        SERVER != "ministack" or ENDPOINT_URL is None, reason="MiniStack only: run `nox -s compat`"
    ),
]

LIFETIME = 3.0  # seconds a shard iterator lives on the `short_lived` server (AWS: 15 min)
RETENTION = 4.0  # seconds a record lives on the `short_retention` server (AWS: 24 h)
HERE = Path(__file__).parent
_numbers = itertools.count(1)


def _ministack(**lifetimes: float) -> Iterator[MiniStack]:
    python = os.environ.get("DDBSTREAMS_MINISTACK_PYTHON")
    if not python:
        pytest.skip("DDBSTREAMS_MINISTACK_PYTHON (an interpreter with ministack) is not set")
    with MiniStack(python, **lifetimes) as server:
        yield server


@pytest.fixture(scope="module")
def short_lived() -> Iterator[MiniStack]:
    yield from _ministack(iterator_lifetime=LIFETIME)


@pytest.fixture(scope="module")
def short_retention() -> Iterator[MiniStack]:
    yield from _ministack(retention=RETENTION)


def new_table(server: Any) -> tuple[Any, str, str]:
    """A fresh order table on ``server``: its dynamodb client, name and stream ARN."""
    dynamodb = boto3.client("dynamodb", **server.client_kwargs())
    name = f"ministack-orders-{os.getpid()}-{next(_numbers)}"
    arn = create_order_table(dynamodb, name)
    assert arn is not None
    return dynamodb, name, arn


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.05)


def only_shard(streams: Any, stream_arn: str) -> str:
    (shard,) = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    return str(shard["ShardId"])


def stream_records(server: Any, stream_arn: str) -> list[dict[str, Any]]:
    """Every record the stream still holds, read by plain boto3 from TRIM_HORIZON."""
    streams = boto3.client("dynamodbstreams", **server.client_kwargs())
    for _ in range(10):
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn,
            ShardId=only_shard(streams, stream_arn),
            ShardIteratorType="TRIM_HORIZON",
        )["ShardIterator"]
        records: list[dict[str, Any]] = []
        try:
            while iterator:
                page = streams.get_records(ShardIterator=iterator)
                if not page["Records"]:
                    return records
                records.extend(page["Records"])
                iterator = page.get("NextShardIterator")
            return records
        except streams.exceptions.TrimmedDataAccessException:
            continue  # records were trimmed between the two calls: TRIM_HORIZON moved on
    raise AssertionError("trimming kept overtaking the read")


def sequence_numbers(server: Any, stream_arn: str) -> list[str]:
    return [r["dynamodb"]["SequenceNumber"] for r in stream_records(server, stream_arn)]


def wait_until_iterators_expire(server: Any, stream_arn: str) -> None:
    """Return once an iterator taken now has expired, and with it every older iterator.

    MiniStack dates each iterator when it hands it out (GetShardIterator, and each
    GetRecords' NextShardIterator): the probe taken here is younger than any iterator a
    consumer held before this call.
    """
    streams = boto3.client("dynamodbstreams", **server.client_kwargs())
    probe = streams.get_shard_iterator(
        StreamArn=stream_arn,
        ShardId=only_shard(streams, stream_arn),
        ShardIteratorType="LATEST",
    )["ShardIterator"]

    def expired() -> bool:
        try:
            streams.get_records(ShardIterator=probe, Limit=1)
        except streams.exceptions.ExpiredIteratorException:
            return True
        return False

    wait_until(expired, LIFETIME * 5 + 10, "the probe iterator expired")


class GetRecordsWatch:
    """What a streams client's GetRecords calls were answered: empty pages, expiries."""

    def __init__(self, streams: Any) -> None:
        self.empty_page = threading.Event()
        self.expired = threading.Event()
        self.expiries = 0
        streams.meta.events.register("after-call.dynamodb-streams.GetRecords", self._after_call)

    def _after_call(self, http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        code = parsed.get("Error", {}).get("Code")
        if code == "ExpiredIteratorException":
            self.expiries += 1
            self.expired.set()
        elif code is None and json.loads(http_response.content).get("Records") == []:
            self.empty_page.set()  # read from the wire: ddbstreams' own decoding is lazy


def emails(records: list[Record]) -> list[str]:
    return [record.keys["email"] for record in records]


# (a) ---------------------------------------------------------------------------------------


def test_handler_blocked_past_the_iterator_lifetime_loses_nothing(short_lived: MiniStack) -> None:
    dynamodb, table, arn = new_table(short_lived)
    for n in range(12):  # three items, each written four times: per-key order shows
        put_order(dynamodb, table, f"user{n % 3}@example.com", "1", amount=n)
    written = sequence_numbers(short_lived, arn)
    assert len(written) == 12
    streams = boto3.client("dynamodbstreams", **short_lived.client_kwargs())
    watch = GetRecordsWatch(streams)
    collector = RecordCollector()

    def handler(record: Record) -> None:
        collector(record)
        if len(collector.records) == 5:  # the first record of the second page of 4
            # The NextShardIterator of the page in hand expires while the handler works.
            wait_until_iterators_expire(short_lived, arn)

    settings = replace(FAST, batch_size=4)
    with StreamConsumer(handler, stream_arn=arn, client=streams, settings=settings):
        collector.wait_for(12, timeout=LIFETIME * 5 + 20)
        # A record written last and delivered last: a replay would have come before it.
        put_order(dynamodb, table, "sentinel@example.com", "1")
        collector.wait_for(13)
    assert watch.expiries >= 1, "the consumer never met an expired iterator"
    assert collector.sequence_numbers() == [*written, *sequence_numbers(short_lived, arn)[12:]]
    for key in ("user0@example.com", "user1@example.com", "user2@example.com"):
        amounts = [r.new_image["order_amount"] for r in collector.records if r.keys["email"] == key]
        assert amounts == sorted(amounts) and len(amounts) == 4


# (b) ---------------------------------------------------------------------------------------


def wait_for_emails(collector: RecordCollector, last: str, timeout: float) -> None:
    """Wait until the record of ``last`` arrived (records before it may be fewer or more)."""
    deadline = time.monotonic() + timeout
    while last not in emails(collector.records):
        assert time.monotonic() < deadline, f"{last} did not arrive in {timeout}s"
        collector.wait_for(
            len(collector.records) + 1, timeout=max(0.01, deadline - time.monotonic())
        )


def test_latest_start_whose_iterator_expires_before_the_first_record_loses_nothing(
    short_lived: MiniStack,
) -> None:
    dynamodb, table, arn = new_table(short_lived)
    put_order(dynamodb, table, "before@example.com", "1")  # before the start: not delivered
    streams = boto3.client("dynamodbstreams", **short_lived.client_kwargs())
    watch = GetRecordsWatch(streams)
    collector = RecordCollector()
    # After an empty page the consumer waits longer than an iterator lives before polling.
    slow = replace(FAST, poll_interval=LIFETIME + 1, idle_poll_interval_max=LIFETIME + 1)
    with StreamConsumer(
        collector, stream_arn=arn, client=streams, start_position="LATEST", settings=slow
    ):
        # It has polled its position and found nothing: what is written next is its to read.
        assert watch.empty_page.wait(10)
        put_order(dynamodb, table, "after1@example.com", "1")
        put_order(dynamodb, table, "after2@example.com", "1")
        assert watch.expired.wait(LIFETIME * 3 + 10), "its next poll did not meet an expiry"
        wait_for_emails(collector, "after2@example.com", timeout=LIFETIME + 6)
    # A LATEST start is pinned a second or so early (the service's clock, to the second):
    # the record written just before it may come too, never one written after it be lost.
    got = emails(collector.records)
    assert got[-2:] == ["after1@example.com", "after2@example.com"]
    assert got[:-2] in ([], ["before@example.com"])


# (c) ---------------------------------------------------------------------------------------


def checkpoint_into_trimmed_data(server: MiniStack, db: Path) -> tuple[str, str, str]:
    """A table whose checkpoint (in ``db``) is its first record; that record and the next
    are then trimmed unread, and a third is written. Returns the stream ARN, the shard id
    and the checkpointed sequence number."""
    dynamodb, table, arn = new_table(server)
    put_order(dynamodb, table, "a@example.com", "1")
    first = RecordCollector()
    with StreamConsumer(
        first,
        stream_arn=arn,
        endpoint_url=server.url,
        checkpoint_store=SQLiteCheckpointStore(db),
        settings=FAST,
    ):
        (a,) = first.wait_for(1)
    put_order(dynamodb, table, "b@example.com", "1")  # never read: trimmed first
    wait_until(lambda: not stream_records(server, arn), RETENTION * 3 + 10, "a and b trimmed")
    put_order(dynamodb, table, "c@example.com", "1")
    return arn, a.shard_id, a.sequence_number


def test_checkpoint_into_trimmed_data_raises_by_default(
    short_retention: MiniStack, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    arn, _, checkpointed = checkpoint_into_trimmed_data(short_retention, db)
    collector = RecordCollector()
    consumer = StreamConsumer(
        collector,
        stream_arn=arn,
        endpoint_url=short_retention.url,
        checkpoint_store=SQLiteCheckpointStore(db),
        settings=FAST,
    )
    consumer.start()
    with pytest.raises(TrimmedDataError, match="restart_from_trim_horizon") as caught:
        consumer.wait(20)  # it ended by itself, on this error
    assert caught.value.after_sequence_number == checkpointed
    assert collector.records == []


def test_checkpoint_into_trimmed_data_goes_on_when_told_and_reports_the_gap(
    short_retention: MiniStack, tmp_path: Path
) -> None:
    db = tmp_path / "c.db"
    arn, shard_id, checkpointed = checkpoint_into_trimmed_data(short_retention, db)
    collector, gaps = RecordCollector(), []
    with StreamConsumer(
        collector,
        stream_arn=arn,
        endpoint_url=short_retention.url,
        checkpoint_store=SQLiteCheckpointStore(db),
        settings=replace(FAST, trimmed_data="restart_from_trim_horizon"),
        on_data_loss=gaps.append,
    ):
        collector.wait_for(1)
    assert emails(collector.records) == ["c@example.com"]
    assert [(g.stream_arn, g.shard_id, g.after_sequence_number) for g in gaps] == [
        (arn, shard_id, checkpointed)
    ]


# (d) ---------------------------------------------------------------------------------------


def test_disabled_stream_is_drained_then_a_new_consumer_follows_the_new_stream(
    local_endpoint: Any, dynamodb: Any, order_table: str
) -> None:
    old_arn = dynamodb.describe_table(TableName=order_table)["Table"]["LatestStreamArn"]
    collector = RecordCollector()
    consumer = StreamConsumer(
        collector, table_name=order_table, endpoint_url=local_endpoint.url, settings=FAST
    )
    consumer.start()
    put_order(dynamodb, order_table, "x@example.com", "1")
    collector.wait_for(1)
    put_order(dynamodb, order_table, "y@example.com", "1")
    put_order(dynamodb, order_table, "z@example.com", "1")
    dynamodb.update_table(TableName=order_table, StreamSpecification={"StreamEnabled": False})
    with pytest.raises(StreamDisabledError, match="has no enabled stream now"):
        consumer.wait(30)  # it ended by itself once the stream was drained
    assert emails(collector.records) == ["x@example.com", "y@example.com", "z@example.com"]
    plain = boto3.client("dynamodbstreams", **local_endpoint.client_kwargs())
    assert plain.describe_stream(StreamArn=old_arn)["StreamDescription"]["StreamStatus"] == (
        "DISABLED"
    )

    dynamodb.update_table(
        TableName=order_table,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    new_arn = dynamodb.describe_table(TableName=order_table)["Table"]["LatestStreamArn"]
    assert new_arn != old_arn
    put_order(dynamodb, order_table, "w@example.com", "1")
    follower = RecordCollector()
    with StreamConsumer(
        follower, table_name=order_table, endpoint_url=local_endpoint.url, settings=FAST
    ) as second:
        follower.wait_for(1)
    assert second.stream_arn == new_arn
    assert emails(follower.records) == ["w@example.com"]


def test_table_deleted_while_consumed_is_drained_then_stream_disabled(local_endpoint: Any) -> None:
    dynamodb, table, _ = new_table(local_endpoint)
    collector = RecordCollector()
    consumer = StreamConsumer(
        collector, table_name=table, endpoint_url=local_endpoint.url, settings=FAST
    )
    consumer.start()
    put_order(dynamodb, table, "x@example.com", "1")
    collector.wait_for(1)
    put_order(dynamodb, table, "y@example.com", "1")
    dynamodb.delete_table(TableName=table)  # its stream stays readable, as a disabled one
    with pytest.raises(StreamDisabledError):
        consumer.wait(30)  # it ended by itself once the stream was drained
    assert emails(collector.records) == ["x@example.com", "y@example.com"]


# (e) ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_consumer_process_paused_past_the_iterator_lifetime_loses_nothing(
    short_lived: MiniStack, tmp_path: Path
) -> None:
    dynamodb, table, arn = new_table(short_lived)
    db, out, expiries = tmp_path / "c.db", tmp_path / "seen.txt", tmp_path / "expired.txt"
    out.touch()
    expiries.touch()

    def seen() -> list[str]:
        return out.read_text().split()

    for n in range(40):
        put_order(dynamodb, table, f"user{n}@example.com", "1")
    command = [
        sys.executable,
        str(HERE / "expiry_consumer_process.py"),
        short_lived.url,
        table,
        str(db),
        str(out),
        str(expiries),
    ]
    consumer = subprocess.Popen(command)
    try:
        wait_until(lambda: len(seen()) >= 5, 20, "5 records delivered")
        consumer.send_signal(signal.SIGSTOP)
        assert len(seen()) < 40, "paused too late to test anything"
        for n in range(40, 50):
            put_order(dynamodb, table, f"user{n}@example.com", "1")
        wait_until_iterators_expire(short_lived, arn)
        consumer.send_signal(signal.SIGCONT)
        wait_until(lambda: len(seen()) >= 50, 30, "50 records delivered")
        put_order(dynamodb, table, "sentinel@example.com", "1")  # a replay would precede it
        wait_until(lambda: len(seen()) >= 51, 20, "the sentinel delivered")
    finally:
        consumer.send_signal(signal.SIGCONT)
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(10) == 0
    assert seen() == sequence_numbers(short_lived, arn)
    assert "ExpiredIteratorException" in expiries.read_text()
