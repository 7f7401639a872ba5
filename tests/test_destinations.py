"""Failure destinations and replay, against SQS, SNS and S3 of the local endpoint (moto's
server over real HTTP), and a JSON Lines file."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ddbstreams
from ddbstreams import (
    ConfigurationError,
    DestinationError,
    FailedBatch,
    FailedBatchFormatError,
    Record,
)
from ddbstreams._cli import main
from ddbstreams.destinations import (
    FORMAT,
    JSONLinesDestination,
    S3Destination,
    SNSDestination,
    SQSDestination,
    from_json,
    iter_failed_batches,
    to_json,
)
from ddbstreams.testing import LocalEndpoint

pytestmark = [
    pytest.mark.local_endpoint,
    pytest.mark.moto_only(reason="SQS, SNS and S3 of moto's server"),
]
STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2024-01-01T00:00:00.000"
_names = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_names)}"


def wire_record(seq: int, value: str = "x", view: str = "NEW_IMAGE") -> dict[str, Any]:
    return {
        "eventID": f"event{seq}",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1700000000.0,
            "Keys": {"pk": {"S": f"item{seq}"}},
            "NewImage": {"pk": {"S": f"item{seq}"}, "value": {"S": value}},
            "SequenceNumber": str(10**20 + seq),
            "SizeBytes": 20 + len(value),
            "StreamViewType": view,
        },
    }


def failed_batch(raws: list[dict[str, Any]], **changes: Any) -> FailedBatch:
    records = tuple(Record(raw, "shardId-00000001700000000000-aaaa") for raw in raws)
    fields: dict[str, Any] = {
        "records": records,
        "reason": "max_attempts",
        "attempts": 3,
        "error_type": "builtins.ValueError",
        "error_message": "bad order",
        "traceback": 'Traceback (most recent call last):\n  File "app.py"\nValueError: bad order\n',
        "stream_arn": STREAM_ARN,
        "shard_id": "shardId-00000001700000000000-aaaa",
        "first_sequence_number": records[0].sequence_number,
        "last_sequence_number": records[-1].sequence_number,
        "first_attempt_at": 1700000000.25,
        "failed_at": 1700000003.5,
        "error": ValueError("bad order"),
    }
    fields.update(changes)
    return FailedBatch(**fields)


@pytest.fixture
def aws(local_endpoint: LocalEndpoint) -> dict[str, str]:
    return local_endpoint.client_kwargs()


@pytest.fixture
def sqs(aws: dict[str, str]) -> Any:
    return boto3.client("sqs", **aws)


@pytest.fixture
def s3(aws: dict[str, str]) -> Any:
    return boto3.client("s3", **aws)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = unique("failed-batches")
    s3.create_bucket(Bucket=name)
    return name


def make_queue(sqs: Any, max_size: int | None = None) -> str:
    attributes = {"MaximumMessageSize": str(max_size)} if max_size else {}
    url: str = sqs.create_queue(QueueName=unique("failed"), Attributes=attributes)["QueueUrl"]
    return url


def receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while True:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        if not answer.get("Messages"):
            return messages
        messages.extend(answer["Messages"])


def keys(s3: Any, bucket: str) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


# ------------------------------------------------------------------ the document


# AttributeValues as botocore's own parser gives them (bytes for B and BS) or as the wire does.
_leaf = st.one_of(
    st.builds(lambda s: {"S": s}, st.text(max_size=20)),
    # DynamoDB numbers carry at most 38 significant digits; the wire never holds a longer one.
    st.builds(lambda n: {"N": str(n)}, st.integers(min_value=1 - 10**38, max_value=10**38 - 1)),
    st.builds(lambda b: {"B": b}, st.binary(max_size=20)),
    st.builds(lambda bs: {"BS": bs}, st.lists(st.binary(min_size=1, max_size=8), max_size=3)),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.just({"NULL": True}),
)
_value = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.builds(lambda items: {"L": items}, st.lists(inner, max_size=3)),
        st.builds(lambda m: {"M": m}, st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    ),
    max_leaves=8,
)
_times = st.one_of(
    st.floats(min_value=0, max_value=4e9, allow_nan=False).map(float),
    st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.just(timezone.utc),
    ),
)


@st.composite
def raw_records(draw: st.DrawFn) -> dict[str, Any]:
    seq = draw(st.integers(min_value=10**20, max_value=10**40 - 1))
    image = draw(st.dictionaries(st.text(min_size=1, max_size=6), _value, max_size=4))
    return {
        "eventID": draw(st.text(min_size=1, max_size=8)),
        "eventName": draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE"])),
        "dynamodb": {
            "ApproximateCreationDateTime": draw(_times),
            "Keys": {"pk": draw(_leaf)},
            "NewImage": image,
            "SequenceNumber": str(seq),
        },
    }


def expected_wire(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: expected_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expected_wire(v) for v in value]
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return value.timestamp()
    return value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raws=st.lists(raw_records(), min_size=1, max_size=4),
    error=st.text(),
    first_attempt_at=st.one_of(st.none(), st.floats(0, 4e9)),
)
def test_a_document_round_trips_through_json_to_the_wire_form(
    raws: list[dict[str, Any]], error: str, first_attempt_at: float | None
) -> None:
    batch = failed_batch(raws, error_message=error, first_attempt_at=first_attempt_at)
    document = to_json(batch)
    assert document["format"] == FORMAT
    back = from_json(json.loads(json.dumps(document)))
    assert dataclasses.replace(back, records=batch.records) == batch  # Record has no __eq__
    assert back.error is None
    assert [record.raw for record in back.records] == [expected_wire(raw) for raw in raws]
    assert [r.new_image for r in back.records] == [r.new_image for r in batch.records]
    assert [r.keys for r in back.records] == [r.keys for r in batch.records]
    assert to_json(back) == document


def test_records_compare_equal_after_the_round_trip_only_through_their_fields() -> None:
    batch = failed_batch([wire_record(1)])
    back = from_json(to_json(batch))
    assert back.records[0].raw == batch.records[0].raw
    assert back.records[0].shard_id == batch.records[0].shard_id


def test_from_json_refuses_what_is_not_a_failed_batch() -> None:
    with pytest.raises(FailedBatchFormatError, match="not a failed batch"):
        from_json({"format": "something/else"})
    document = to_json(failed_batch([wire_record(1)]))
    del document["shard_id"]
    with pytest.raises(FailedBatchFormatError, match="shard_id"):
        from_json(document)


# ------------------------------------------------------------------ JSON Lines


def test_jsonl_content_is_complete_when_the_call_returns(tmp_path: Path) -> None:
    path = tmp_path / "failed.jsonl"
    destination = JSONLinesDestination(path)
    assert path.exists()  # created at construction
    batches = [failed_batch([wire_record(n), wire_record(n + 1)]) for n in range(0, 6, 2)]
    for batch in batches:
        destination(batch)
        # what a reader (or a crash right now) finds: every batch so far, whole
        lines = path.read_bytes().split(b"\n")
        assert lines[-1] == b""
        assert lines[-2].decode() == json.dumps(to_json(batch), separators=(",", ":"))
    assert [to_json(b) for b in iter_failed_batches(path)] == [to_json(b) for b in batches]


def test_jsonl_from_many_threads_keeps_every_line_whole(tmp_path: Path) -> None:
    destination = JSONLinesDestination(tmp_path / "failed.jsonl")
    big = "y" * 70_000  # lines longer than a pipe buffer, written at once
    start = threading.Barrier(8)

    def shard(n: int) -> None:
        start.wait(10)
        for k in range(10):
            destination(failed_batch([wire_record(1000 * n + k, big)], shard_id=f"shard-{n}"))

    threads = [threading.Thread(target=shard, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    found = list(iter_failed_batches(tmp_path / "failed.jsonl"))
    assert len(found) == 80
    for n in range(8):
        assert [b.first_sequence_number for b in found if b.shard_id == f"shard-{n}"] == [
            str(10**20 + 1000 * n + k) for k in range(10)
        ]


def test_jsonl_after_a_line_cut_short_by_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "failed.jsonl"
    first, second = failed_batch([wire_record(1)]), failed_batch([wire_record(2)])
    whole = json.dumps(to_json(first), separators=(",", ":"))
    path.write_text(whole[: len(whole) // 2])  # the process died while writing
    destination = JSONLinesDestination(path)
    destination(first)  # after the restart, the same batch again
    destination(second)
    assert [to_json(b) for b in iter_failed_batches(path)] == [to_json(first), to_json(second)]


def test_jsonl_refuses_a_missing_directory_and_garbage(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        JSONLinesDestination(tmp_path / "nowhere" / "failed.jsonl")
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text('{"a": 1}\n')
    with pytest.raises(FailedBatchFormatError, match=r"garbage.jsonl:1 is not a failed batch"):
        list(iter_failed_batches(garbage))


# ------------------------------------------------------------------ SQS


def test_sqs_splits_a_batch_into_messages_that_reassemble_exactly(
    aws: dict[str, str], sqs: Any
) -> None:
    url = make_queue(sqs, max_size=4096)
    destination = SQSDestination(url, client=sqs)
    batch = failed_batch([wire_record(n, "v" * (50 + 37 * n)) for n in range(40)])
    destination(batch)
    messages = receive_all(sqs, url)
    assert len(messages) > 5
    documents = [json.loads(m["Body"]) for m in messages]
    assert all(len(m["Body"].encode()) <= 4096 for m in messages)
    assert sorted(d["part"] for d in documents) == list(range(1, len(messages) + 1))
    assert {d["parts"] for d in documents} == {len(messages)}
    for document in documents:  # each part is a failed batch of its own records
        part = from_json(document)
        assert part.first_sequence_number == part.records[0].sequence_number
        assert part.last_sequence_number == part.records[-1].sequence_number
    # put them back shuffled, between the parts of another batch
    other = failed_batch([wire_record(n, "w" * 400) for n in range(100, 120)], failed_at=2e9)
    destination(other)
    others = receive_all(sqs, url)
    for message in messages + others:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    bodies = [m["Body"] for m in messages + others]
    random.Random(7).shuffle(bodies)
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    source = iter_failed_batches(url, endpoint_url=aws["endpoint_url"])
    found = {b.first_sequence_number: to_json(b) for b in source}
    assert found == {
        batch.first_sequence_number: to_json(batch),
        other.first_sequence_number: to_json(other),
    }
    assert source.left_over == []
    assert receive_all(sqs, url) == []  # deleted once replayed


def test_sqs_record_too_large_for_a_message_goes_to_s3_and_back(
    aws: dict[str, str], sqs: Any, s3: Any, bucket: str
) -> None:
    url = make_queue(sqs, max_size=2048)
    destination = SQSDestination(url, s3_bucket=bucket, client=sqs, s3_client=s3)
    huge = wire_record(2, "z" * 50_000)
    huge["dynamodb"]["NewImage"]["blob"] = {"B": bytes(range(256)) * 10}  # botocore's bytes
    batch = failed_batch([wire_record(1), huge, wire_record(3)])
    destination(batch)
    stored = keys(s3, bucket)
    assert len(stored) == 1
    assert stored[0].startswith("ddbstreams/records/")
    assert stored[0].endswith(f"/{10**20 + 2}.json")
    source = iter_failed_batches(url, endpoint_url=aws["endpoint_url"])
    [back] = list(source)
    assert to_json(back) == to_json(batch)
    assert back.records[1].new_image == batch.records[1].new_image
    assert keys(s3, bucket) == []  # replayed: its message and its object are gone
    assert receive_all(sqs, url) == []


def test_check_stream_tells_when_records_need_a_bucket(sqs: Any, bucket: str) -> None:
    url = make_queue(sqs)
    destination = SQSDestination(url, client=sqs)
    assert destination.max_message_bytes == 1_048_576  # the queue's, asked once
    destination.check_stream("KEYS_ONLY")
    for view in ("NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"):
        with pytest.raises(ConfigurationError, match=f"{view} stream .* pass s3_bucket="):
            destination.check_stream(view)
    with pytest.raises(ConfigurationError, match="KEYS_ONLY"):
        destination.check_stream("KEYS")
    small = SQSDestination(make_queue(sqs, max_size=16_384), client=sqs)
    with pytest.raises(ConfigurationError, match=r"KEYS_ONLY stream .*16384 bytes"):
        small.check_stream("KEYS_ONLY")
    with_bucket = SQSDestination(url, client=sqs, s3_bucket=bucket)
    with_bucket.check_stream("NEW_AND_OLD_IMAGES")


def test_a_record_too_large_without_a_bucket_is_not_accepted(sqs: Any) -> None:
    url = make_queue(sqs, max_size=2048)
    destination = SQSDestination(url, client=sqs)
    with pytest.raises(DestinationError, match=r"record 100000000000000000001 .* pass s3_bucket="):
        destination(failed_batch([wire_record(1, "z" * 5000)]))
    assert receive_all(sqs, url) == []  # nothing half sent


def test_a_long_traceback_is_cut_in_messages_but_the_records_are_whole(sqs: Any) -> None:
    url = make_queue(sqs, max_size=4096)
    batch = failed_batch([wire_record(1)], traceback="T" * 100_000, error_message="E" * 9000)
    SQSDestination(url, client=sqs)(batch)
    [message] = receive_all(sqs, url)
    back = from_json(json.loads(message["Body"]))
    assert back.traceback.startswith("T" * 100) and "characters cut" in back.traceback
    assert [r.raw for r in back.records] == [r.raw for r in batch.records]


def test_a_fifo_queue_gets_groups_and_deduplication(aws: dict[str, str], sqs: Any) -> None:
    url = sqs.create_queue(QueueName=unique("failed") + ".fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    destination = SQSDestination(url, client=sqs)
    batch = failed_batch([wire_record(1)])
    destination(batch)
    destination(batch)  # tried again after a failure: the same message, deduplicated
    assert [to_json(b) for b in iter_failed_batches(url, endpoint_url=aws["endpoint_url"])] == [
        to_json(batch)
    ]


# ------------------------------------------------------------------ SNS


@pytest.mark.parametrize("raw_delivery", [False, True])
def test_sns_publishes_what_a_subscribed_queue_replays(
    aws: dict[str, str], sqs: Any, raw_delivery: bool
) -> None:
    sns = boto3.client("sns", **aws)
    topic = sns.create_topic(Name=unique("failed"))["TopicArn"]
    url = make_queue(sqs)
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": str(raw_delivery).lower()},
    )
    destination = SNSDestination(topic, client=sns)
    assert destination.max_message_bytes == 262_144
    destination.check_stream("KEYS_ONLY")
    with pytest.raises(ConfigurationError, match="s3_bucket"):
        destination.check_stream("NEW_IMAGE")
    batch = failed_batch([wire_record(n, "s" * 20_000) for n in range(30)])  # ~600 KB
    destination(batch)
    messages = receive_all(sqs, url)
    assert len(messages) >= 3
    for message in messages:
        body = json.loads(message["Body"])
        published = body if raw_delivery else json.loads(body["Message"])
        assert len(json.dumps(published, separators=(",", ":"))) <= 262_144
        sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    source = iter_failed_batches(url, endpoint_url=aws["endpoint_url"])
    assert [to_json(b) for b in source] == [to_json(batch)]
    assert source.left_over == []


# ------------------------------------------------------------------ S3


def test_s3_writes_one_object_per_batch_with_sortable_keys(
    aws: dict[str, str], s3: Any, bucket: str
) -> None:
    destination = S3Destination(bucket, client=s3)
    later = failed_batch([wire_record(5)], failed_at=1700000100.0)
    earlier = failed_batch([wire_record(1), wire_record(2)], failed_at=1700000003.5)
    destination(later)
    destination(earlier)
    destination(earlier)  # tried again: the same key
    stored = sorted(keys(s3, bucket))
    assert stored == [destination.key(earlier), destination.key(later)]
    assert stored[0] == (
        "ddbstreams/failed/2023/11/14/221323.500000Z_orders_2024-01-01T00:00:00.000_"
        f"shardId-00000001700000000000-aaaa_{10**20 + 1}.json"
    )
    body = s3.get_object(Bucket=bucket, Key=stored[0])["Body"].read()
    assert to_json(from_json(json.loads(body))) == to_json(earlier)
    found = [
        to_json(b)
        for b in iter_failed_batches(
            f"s3://{bucket}/ddbstreams/failed/", endpoint_url=aws["endpoint_url"], delete=False
        )
    ]
    assert found == [to_json(earlier), to_json(later)]
    assert len(keys(s3, bucket)) == 2  # delete=False


def test_a_batch_is_taken_out_of_its_source_only_after_the_loop_body_finished(
    aws: dict[str, str], s3: Any, bucket: str
) -> None:
    destination = S3Destination(bucket, client=s3)
    batches = [failed_batch([wire_record(n)], failed_at=1.7e9 + n) for n in range(3)]
    for batch in batches:
        destination(batch)
    seen = []

    def replay() -> None:
        for batch in iter_failed_batches(f"s3://{bucket}/", endpoint_url=aws["endpoint_url"]):
            seen.append(batch.first_sequence_number)
            assert len(keys(s3, bucket)) == 3 - (len(seen) - 1)  # this one is still there
            if len(seen) == 2:
                raise RuntimeError("the handler failed")

    with pytest.raises(RuntimeError):
        replay()
    assert sorted(keys(s3, bucket)) == [destination.key(b) for b in batches[1:]]


# ------------------------------------------------------------------ outages


def refused_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_destination_that_cannot_take_the_batch_raises_destination_error(
    aws: dict[str, str], sqs: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    batch = failed_batch([wire_record(1)])
    missing = f"{aws['endpoint_url']}/123456789012/no-such-queue"
    with pytest.raises(
        DestinationError, match=r"no-such-queue.*SendMessage failed.*sqs:SendMessage"
    ):
        SQSDestination(missing, client=sqs, max_message_bytes=262_144)(batch)
    with pytest.raises(DestinationError, match="GetQueueAttributes failed"):
        SQSDestination(missing, client=sqs).check_stream("KEYS_ONLY")
    with pytest.raises(DestinationError, match=r"no-such-bucket.*PutObject failed.*NoSuchBucket"):
        S3Destination("no-such-bucket", client=s3)(batch)
    down = refused_url()
    for destination in (
        SQSDestination(f"{down}/123456789012/q", endpoint_url=down, max_message_bytes=262_144),
        SNSDestination(
            "arn:aws:sns:us-east-1:123456789012:t", endpoint_url=down, max_message_bytes=262_144
        ),
        S3Destination("bucket", endpoint_url=down),
    ):
        with pytest.raises(DestinationError, match="could not be reached") as caught:
            destination(batch)
        assert secret not in str(caught.value)
        assert isinstance(caught.value, ddbstreams.TransientError)  # the consumer retries


# ------------------------------------------------------------------ ddbstreams replay

HANDLERS = """
import json, os
from ddbstreams import BatchResult

OUT = os.environ["REPLAY_OUT"]

def on_record(record):
    if record.new_image and record.new_image.get("value") == "poison":
        raise ValueError("poison")
    with open(OUT, "a") as out:
        out.write(record.sequence_number + "\\n")

def on_batch(records):
    with open(OUT, "a") as out:
        out.write(",".join(r.sequence_number for r in records) + "\\n")

def refuse(records):
    return BatchResult(failed=records[1:])
"""


@pytest.fixture
def handlers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    module = unique("replay_handlers").replace("-", "_")
    (tmp_path / f"{module}.py").write_text(HANDLERS)
    out = tmp_path / "out.txt"
    monkeypatch.setenv("REPLAY_OUT", str(out))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    return tmp_path / module


def replayed(handlers: Path) -> list[str]:
    out = handlers.parent / "out.txt"
    return out.read_text().split() if out.exists() else []


def test_replay_a_jsonl_file_end_to_end(tmp_path: Path, handlers: Path) -> None:
    path = tmp_path / "failed.jsonl"
    destination = JSONLinesDestination(path)
    destination(failed_batch([wire_record(1), wire_record(2)]))
    destination(failed_batch([wire_record(3)]))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ddbstreams._cli",
            "replay",
            "--jsonl",
            str(path),
            "--handler",
            f"{handlers.name}:on_record",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert "replayed 2 failed batch(es), 3 record(s)" in result.stderr
    assert replayed(handlers) == [str(10**20 + n) for n in (1, 2, 3)]


def test_replay_from_sqs_stops_at_the_first_failure_and_leaves_that_batch(
    aws: dict[str, str], sqs: Any, handlers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_queue(sqs)
    destination = SQSDestination(url, client=sqs)
    destination(failed_batch([wire_record(1), wire_record(2)], failed_at=1.0))
    destination(failed_batch([wire_record(3, "poison"), wire_record(4)], failed_at=2.0))
    args = ["replay", "--sqs", url, "--handler", f"{handlers.name}:on_record"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"records {10**20 + 3} to {10**20 + 4} (ValueError: poison)" in err
    assert "1 batch(es) (2 records) were replayed before it" in err
    assert replayed(handlers) == [str(10**20 + 1), str(10**20 + 2)]
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (
        counts["ApproximateNumberOfMessages"],
        counts["ApproximateNumberOfMessagesNotVisible"],
    ) == ("0", "1")


def test_replay_batches_from_s3(
    aws: dict[str, str], s3: Any, bucket: str, handlers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    S3Destination(bucket, client=s3)(failed_batch([wire_record(1), wire_record(2)]))
    args = ["replay", "--s3", f"s3://{bucket}/ddbstreams/", "--endpoint-url", aws["endpoint_url"]]
    assert main([*args, "--handler", f"{handlers.name}:on_batch", "--batch", "--keep"]) == 0
    assert replayed(handlers) == [f"{10**20 + 1},{10**20 + 2}"]
    assert len(keys(s3, bucket)) == 1  # --keep
    assert main([*args, "--handler", f"{handlers.name}:refuse", "--batch"]) == 1
    assert "it returned 1 failed record(s)" in capsys.readouterr().err
    assert main([*args, "--handler", f"{handlers.name}:on_batch", "--batch"]) == 0
    assert keys(s3, bucket) == []


def test_replay_reports_what_it_left_in_a_queue(
    aws: dict[str, str], sqs: Any, handlers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_queue(sqs, max_size=2048)
    SQSDestination(url, client=sqs)(failed_batch([wire_record(n, "q" * 300) for n in range(8)]))
    messages = receive_all(sqs, url)
    for message in messages:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    for message in messages[1:]:  # one part lost
        sqs.send_message(QueueUrl=url, MessageBody=message["Body"])
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    assert main(["replay", "--sqs", url, "--handler", f"{handlers.name}:on_record"]) == 1
    err = capsys.readouterr().err
    assert "were not replayed and are left there" in err
    assert "parts [" in err and "not a failed batch" in err
    assert replayed(handlers) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--jsonl", "x.jsonl"], "the following arguments are required: --handler"),
        (["--handler", "HANDLER"], "one of the arguments --jsonl --sqs --s3 is required"),
        (["--jsonl", "a", "--sqs", "b", "--handler", "HANDLER"], "not allowed with argument"),
        (
            ["--jsonl", "x", "--handler", "no_such_module_here:f"],
            "argument --handler: cannot import 'no_such_module_here'",
        ),
        (
            ["--jsonl", "x", "--handler", "nocolon"],
            "argument --handler: 'nocolon' is not MODULE:FUNCTION",
        ),
        (
            ["--jsonl", "x", "--handler", "MODULE:missing"],
            "argument --handler: .* has no 'missing'",
        ),
        (
            ["--s3", "bucket/prefix", "--handler", "HANDLER"],
            "argument --s3: 'bucket/prefix' is not an S3 location",
        ),
        (["--jsonl", "x", "--handler", "HANDLER", "--keep"], "--keep applies to --s3 only"),
    ],
)
def test_replay_usage_errors_name_the_flag_and_exit_2(
    handlers: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    args = [
        a.replace("HANDLER", f"{handlers.name}:on_record").replace("MODULE", handlers.name)
        for a in args
    ]
    with pytest.raises(SystemExit) as caught:
        main(["replay", *args])
    assert caught.value.code == 2
    assert re_search(message, capsys.readouterr().err)


def re_search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None


def test_replay_of_a_missing_file_is_an_error_naming_it(
    handlers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["replay", "--jsonl", "missing.jsonl", "--handler", f"{handlers.name}:on_record"]) == 1
    )
    assert (
        "ddbstreams: error: 'missing.jsonl' is not a file of failed batches"
        in capsys.readouterr().err
    )
