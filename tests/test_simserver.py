"""SimulatorServer: the simulator over real HTTP, read by real boto3 clients, with faults."""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from ddbstreams import (
    ConfigurationError,
    ConsumerSettings,
    ExpiredIteratorError,
    MalformedResponseError,
    ServerError,
    StreamConsumer,
    StreamNotFoundError,
    TableNotFoundError,
    ThrottledError,
    TrimmedDataError,
)
from ddbstreams._client import StreamsAPI, build_boto3_clients
from ddbstreams.testing import RecordCollector, SimulatorServer, StreamSimulator

NO_RETRY = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=10)


def order(n: int, version: int = 1) -> dict[str, Any]:
    return {"email": f"user{n}@example.com", "order_number": "1", "version": version}


@pytest.fixture
def sim() -> StreamSimulator:
    return StreamSimulator(shard_count=2)


@pytest.fixture
def server(sim: StreamSimulator) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim, seed=1) as running:
        yield running
    assert running.errors == []


@pytest.fixture
def api(server: SimulatorServer) -> StreamsAPI:
    streams, dynamodb = build_boto3_clients(endpoint_url=server.url, region_name="us-east-1")
    return StreamsAPI(streams, dynamodb, attempts=1)


def test_boto3_describes_iterates_and_reads(sim: StreamSimulator, server: SimulatorServer) -> None:
    for n in range(20):
        sim.insert(order(n))
    sim.split(sim.open_shard_ids()[0])
    streams = boto3.client("dynamodbstreams", endpoint_url=server.url, config=NO_RETRY)
    dynamodb = boto3.client("dynamodb", endpoint_url=server.url, config=NO_RETRY)

    table = dynamodb.describe_table(TableName=sim.table_name)["Table"]
    assert table["LatestStreamArn"] == sim.stream_arn
    shards = streams.describe_stream(StreamArn=sim.stream_arn)["StreamDescription"]["Shards"]
    assert len(shards) == 4
    assert {s["ParentShardId"] for s in shards if "ParentShardId" in s} == {shards[0]["ShardId"]}
    read = 0
    for shard in shards:
        iterator = streams.get_shard_iterator(
            StreamArn=sim.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        page = streams.get_records(ShardIterator=iterator)
        assert [r["dynamodb"]["SequenceNumber"] for r in page["Records"]] == [
            r["dynamodb"]["SequenceNumber"] for r in sim.records(shard["ShardId"])
        ]
        read += len(page["Records"])
        if "EndingSequenceNumber" in shard["SequenceNumberRange"]:
            assert "NextShardIterator" not in page  # a closed shard read to its end
    assert read == 20


def test_raw_fast_path_gets_the_wire_records(sim: StreamSimulator, api: StreamsAPI) -> None:
    sim.insert({**order(1), "blob": b"\x00\xff", "tags": {"a", "b"}})
    shard_id = next(s for s in sim.open_shard_ids() if sim.records(s))
    iterator = api.get_shard_iterator(sim.stream_arn, shard_id, "TRIM_HORIZON", None)
    page = api.get_records(shard_id, iterator, 1000)
    assert list(page.records) == sim.records(shard_id)  # epoch-second timestamps, base64 blobs
    assert page.next_iterator is not None


def test_describe_stream_pages_over_http() -> None:
    sim = StreamSimulator(shard_count=7, describe_page_size=3)
    with SimulatorServer(sim) as server:
        streams, _ = build_boto3_clients(endpoint_url=server.url, region_name="us-east-1")
        description = StreamsAPI(streams, attempts=1).describe_stream(sim.stream_arn)
        assert len(description.shards) == 7
        assert server.requests["DescribeStream"] == 3


def test_service_errors_keep_their_codes(sim: StreamSimulator, api: StreamsAPI) -> None:
    with pytest.raises(TableNotFoundError):
        api.resolve_stream_arn("no-such-table")
    with pytest.raises(StreamNotFoundError):
        api.describe_stream(sim.stream_arn.replace("/stream/", "/stream/x"))
    shard_id = sim.open_shard_ids()[0]
    iterator = api.get_shard_iterator(sim.stream_arn, shard_id, "TRIM_HORIZON", None)
    sim.expire_iterators()
    with pytest.raises(ExpiredIteratorError):
        api.get_records(shard_id, iterator, 1000)
    sim.insert(order(1))
    sim.advance(86_401)
    written_to = next(s for s in sim.open_shard_ids() if sim.records(s))
    with pytest.raises(TrimmedDataError):
        api.get_shard_iterator(sim.stream_arn, written_to, "AT_SEQUENCE_NUMBER", str(10**20))


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("throttle", ThrottledError),
        ("server_error", ServerError),
        ("malformed", MalformedResponseError),
        ("truncated", MalformedResponseError),
        ("expired", ExpiredIteratorError),
    ],
)
def test_each_fault_is_the_right_ddbstreams_error(
    sim: StreamSimulator, server: SimulatorServer, api: StreamsAPI, fault: str, error: type
) -> None:
    for n in range(50):
        sim.insert(order(n))
    shard_id = max(sim.open_shard_ids(), key=lambda s: len(sim.records(s)))
    iterator = api.get_shard_iterator(sim.stream_arn, shard_id, "TRIM_HORIZON", None)
    server.set_faults(**{fault: 1.0})
    for _ in range(4):  # both kinds of server error, several garbage bodies and cut points
        received: list[dict[str, Any]] = []
        with pytest.raises(error):
            received.extend(api.get_records(shard_id, iterator, 1000).records)
        # a cut body yields the records before the cut, then fails: never a wrong record
        assert received == sim.records(shard_id)[: len(received)]
    assert server.faults == {fault: 4}


def test_throttling_and_server_errors_reach_every_operation(
    sim: StreamSimulator, server: SimulatorServer, api: StreamsAPI
) -> None:
    server.set_faults(throttle=1.0)
    with pytest.raises(ThrottledError):
        api.describe_stream(sim.stream_arn)
    with pytest.raises(ThrottledError):
        api.resolve_stream_arn(sim.table_name)
    server.set_faults(server_error={"GetShardIterator": 1.0})
    api.describe_stream(sim.stream_arn)
    with pytest.raises(ServerError):
        api.get_shard_iterator(sim.stream_arn, sim.open_shard_ids()[0], "TRIM_HORIZON", None)


def test_fault_rates_are_drawn_from_the_seed(sim: StreamSimulator) -> None:
    def run(seed: int) -> dict[str, int]:
        with SimulatorServer(sim, seed=seed, throttle=0.1, server_error=0.1) as server:
            streams = boto3.client("dynamodbstreams", endpoint_url=server.url, config=NO_RETRY)
            for _ in range(200):
                with contextlib.suppress(streams.exceptions.ClientError):
                    streams.describe_stream(StreamArn=sim.stream_arn)
            return dict(server.faults)

    first = run(5)
    assert first == run(5)
    assert 8 <= first["throttle"] <= 40  # 10 % of 200 calls, give or take
    assert 8 <= first["server_error"] <= 40


@pytest.mark.parametrize(
    "rates",
    [
        {"throttle": 0.6, "server_error": 0.6},
        {"throttle": -0.1},
        {"throttle": True},
        {"truncated": {"DescribeStream": 0.1}},
        {"malformed": {"ListTables": 0.1}},
    ],
)
def test_impossible_fault_rates_are_refused(rates: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        SimulatorServer(**rates)


def test_unknown_operation_and_parameter_are_client_errors(server: SimulatorServer) -> None:
    streams = boto3.client("dynamodbstreams", endpoint_url=server.url, config=NO_RETRY)
    with pytest.raises(streams.exceptions.ClientError, match="UnknownOperationException"):
        streams.list_streams()
    request = urllib.request.Request(  # botocore itself refuses unknown parameters
        server.url,
        data=json.dumps({"StreamArn": server.simulator.stream_arn, "Extra": 1}).encode(),
        headers={
            "X-Amz-Target": "DynamoDBStreams_20120810.DescribeStream",
            "Content-Type": "application/x-amz-json-1.0",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400 and b"Extra" in caught.value.read()


def test_shard_filter_lists_only_the_children(server: SimulatorServer) -> None:
    streams = boto3.client("dynamodbstreams", endpoint_url=server.url, config=NO_RETRY)
    parent = server.simulator.open_shard_ids()[0]
    children = server.simulator.split(parent)
    answer = streams.describe_stream(
        StreamArn=server.simulator.stream_arn,
        ShardFilter={"Type": "CHILD_SHARDS", "ShardId": parent},
    )["StreamDescription"]["Shards"]
    assert [shard["ShardId"] for shard in answer] == children


def test_stop_closes_kept_alive_connections(sim: StreamSimulator) -> None:
    server = SimulatorServer(sim).start()
    streams = boto3.client("dynamodbstreams", endpoint_url=server.url, config=NO_RETRY)
    streams.describe_stream(StreamArn=sim.stream_arn)  # leaves a pooled connection open
    port = server.port
    server.stop()
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", port), timeout=2),
    ):
        pass
    with pytest.raises(RuntimeError):
        _ = server.url


def test_a_consumer_over_http_gets_everything_in_order_despite_faults(
    sim: StreamSimulator,
) -> None:
    with SimulatorServer(
        sim,
        seed=3,
        throttle=0.05,
        server_error=0.05,
        malformed={"GetRecords": 0.04},
        truncated=0.04,
        expired=0.02,
    ) as server:
        collector = RecordCollector()
        settings = ConsumerSettings(
            poll_interval=0.01, handler_retry_initial=0.01, batch_size=50, checkpoint_every=7
        )
        versions = itertools.count(1)
        with StreamConsumer(
            collector, stream_arn=sim.stream_arn, endpoint_url=server.url, settings=settings
        ):
            for round_number in range(4):
                for n in range(30):
                    sim.modify(order(n), order(n, next(versions)))
                if round_number == 1:
                    sim.rollover()
                if round_number == 2:
                    sim.split(sim.open_shard_ids()[0])
            collector.wait_for(120, timeout=30)
        assert server.faults.total() > 0
    records = collector.records
    assert len({r.sequence_number for r in records}) == len(records) == 120  # one run: no repeat
    per_key: dict[str, list[int]] = {}
    for record in records:
        per_key.setdefault(record.keys["email"], []).append(int(record.new_image["version"]))
    assert all(versions_seen == sorted(versions_seen) for versions_seen in per_key.values())


@pytest.mark.parametrize("operation", ["DescribeStream", "GetShardIterator", "DescribeTable"])
def test_a_control_call_answered_with_garbage_is_malformed_and_retriable(
    sim: StreamSimulator, operation: str
) -> None:
    # Found by the chaos soak: botocore parses a non-JSON 200 body into an answer without
    # its members (or raises UnicodeDecodeError on binary); it used to stop the consumer.
    shard_id = sim.open_shard_ids()[0]
    calls = {
        "DescribeStream": lambda api: api.describe_stream(sim.stream_arn),
        "GetShardIterator": lambda api: api.get_shard_iterator(
            sim.stream_arn, shard_id, "TRIM_HORIZON", None
        ),
        "DescribeTable": lambda api: api.resolve_stream_arn(sim.table_name),
    }
    with SimulatorServer(sim, seed=1) as server:
        streams, dynamodb = build_boto3_clients(endpoint_url=server.url, region_name="us-east-1")
        api = StreamsAPI(streams, dynamodb, attempts=1)
        server.set_faults(malformed={operation: 1.0})
        for _ in range(6):  # the seeded bodies: HTML, binary, broken, empty...
            with pytest.raises(MalformedResponseError) as caught:
                calls[operation](api)
            assert caught.value.retriable


def test_a_consumer_rides_out_garbage_answers_to_every_call(sim: StreamSimulator) -> None:
    written = [sim.insert(order(n)) for n in range(6)]
    with SimulatorServer(sim, seed=2) as server:
        server.set_faults(malformed=0.5)
        collector = RecordCollector()
        with StreamConsumer(
            collector,
            table_name=sim.table_name,
            endpoint_url=server.url,
            region_name="us-east-1",
            settings=ConsumerSettings(
                poll_interval=0.01, handler_retry_initial=0.01, handler_retry_max=0.05
            ),
        ):
            collector.wait_for(6, timeout=30)
        assert sum(server.faults.values()) > 0
    assert sorted(collector.sequence_numbers()) == sorted(written)
