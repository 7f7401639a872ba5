"""Latency: write-to-delivery time against the local endpoint, over real HTTP.

A writer puts orders at a fixed rate for a fixed time; the handler notes when each one
arrives, measured from the moment its put_item returned. Side by side in one run:

- ddbstreams at default settings;
- the exercise's read-stream.py algorithm (every 5 s: DescribeStream, shard 0 only, a
  TRIM_HORIZON iterator, one GetRecords, print what is newer than the last seen).

Also reports GetRecords calls per second on an idle shard. The endpoint (moto's server)
runs in its own process so it does not share the consumer's interpreter.

    nox -s bench -- latency        (or: python benchmarks/bench_latency.py)
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

import ddbstreams
from ddbstreams.testing import create_order_table

RESULTS = Path(__file__).parent / "results"
CREDENTIALS = {
    "region_name": "us-east-1",
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
}


def start_endpoint() -> tuple[subprocess.Popen[str], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "ddbstreams._cli", "local", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    server.stdout.readline()  # the banner: it is listening
    return server, f"http://127.0.0.1:{port}"


class Clock:
    """When each order's put_item returned, and when it was delivered."""

    def __init__(self) -> None:
        self.written: dict[str, float] = {}
        self.latencies: list[float] = []
        self._lock = threading.Lock()

    def delivered(self, order_number: str) -> None:
        now = time.perf_counter()
        with self._lock:
            written = self.written.get(order_number)
            if written is not None:
                self.latencies.append(now - written)

    def write(self, dynamodb: Any, table: str, rate: float, seconds: float) -> None:
        count = int(rate * seconds)
        started = time.perf_counter()
        for n in range(count):
            time.sleep(max(0.0, started + n / rate - time.perf_counter()))
            number = f"2023/01/01#{n:06d}"
            dynamodb.put_item(
                TableName=table,
                Item={
                    "email": {"S": "anil@example.com"},
                    "order_number": {"S": number},
                    "order_amount": {"N": str(n)},
                },
            )
            with self._lock:
                self.written[number] = time.perf_counter()


def run_ddbstreams(
    url: str, stream_arn: str, clock: Clock, stop: threading.Event, calls: list[float]
) -> None:
    client = boto3.client("dynamodbstreams", endpoint_url=url, **CREDENTIALS)
    client.meta.events.register(
        "before-call.dynamodb-streams.GetRecords", lambda **_: calls.append(time.perf_counter())
    )
    consumer = ddbstreams.StreamConsumer(
        lambda record: clock.delivered(record.keys["order_number"]),
        stream_arn=stream_arn,
        client=client,
    )
    with consumer:
        stop.wait()


def run_exercise_loop(
    url: str, stream_arn: str, clock: Clock, stop: threading.Event, calls: list[float]
) -> None:
    """The exercise's read-stream.py, as written (one shard, re-read every 5 s)."""
    streams = boto3.client("dynamodbstreams", endpoint_url=url, **CREDENTIALS)
    last_sequence_number = ""
    while not stop.is_set():
        shards = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shards[0]["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        calls.append(time.perf_counter())
        for record in streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]:
            sequence_number = record["dynamodb"]["SequenceNumber"]
            if last_sequence_number == "" or sequence_number > last_sequence_number:
                clock.delivered(record["dynamodb"]["Keys"]["order_number"]["S"])
                last_sequence_number = sequence_number
        stop.wait(5)


def measure(
    name: str,
    reader: Callable[..., None],
    url: str,
    rate: float,
    seconds: float,
    idle_seconds: float,
) -> dict[str, Any]:
    dynamodb = boto3.client("dynamodb", endpoint_url=url, **CREDENTIALS)
    table = f"latency-{name}"
    stream_arn = create_order_table(dynamodb, table)
    assert stream_arn is not None
    clock, stop, calls = Clock(), threading.Event(), []
    thread = threading.Thread(target=reader, args=(url, stream_arn, clock, stop, calls))
    thread.start()
    time.sleep(1.0)  # the reader is up and polling
    clock.write(dynamodb, table, rate, seconds)
    time.sleep(6.0)  # the last writes arrive (the exercise polls every 5 s)
    idle_started = time.perf_counter()
    time.sleep(idle_seconds)
    idle_calls = sum(1 for t in calls if t >= idle_started) / idle_seconds
    stop.set()
    thread.join()
    latencies = sorted(clock.latencies)
    return {
        "written": len(clock.written),
        "delivered": len(latencies),
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "max_ms": 1000 * latencies[-1],
        "idle_get_records_per_second": idle_calls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="writes per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to write")
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    args = parser.parse_args()
    server, url = start_endpoint()
    try:
        results = {
            "rate_per_second": args.rate,
            "seconds": args.seconds,
            "ddbstreams_default": measure(
                "ddbstreams", run_ddbstreams, url, args.rate, args.seconds, args.idle_seconds
            ),
            "exercise_algorithm": measure(
                "exercise", run_exercise_loop, url, args.rate, args.seconds, args.idle_seconds
            ),
        }
    finally:
        server.terminate()
        server.wait(10)
    print(f"{args.rate:.0f} writes/s for {args.seconds:.0f} s against the local endpoint")
    print(f"  {'reader':<22}{'delivered':>10}{'p50 ms':>10}{'p99 ms':>10}{'idle calls/s':>14}")
    for name in ("ddbstreams_default", "exercise_algorithm"):
        r = results[name]
        print(
            f"  {name:<22}{r['delivered']:>6}/{r['written']:<3}{r['p50_ms']:>10.0f}"
            f"{r['p99_ms']:>10.0f}{r['idle_get_records_per_second']:>14.2f}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latency.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
