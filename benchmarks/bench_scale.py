"""Scale: one consumer process on a stream of 1,000 open shards (plus closed parents).

Reports, with ddbstreams.testing's simulator standing in for the service:
- time to discover every shard (DescribeStream pages) and start reading all of them;
- threads and peak RSS;
- CPU share while every shard is idle, and GetRecords calls per second per idle shard;
- aggregate records/s while every shard receives writes.

    nox -s bench -- scale        (or: python benchmarks/bench_scale.py)
"""

from __future__ import annotations

import argparse
import json
import resource
import threading
import time
from pathlib import Path
from typing import Any

import ddbstreams
from ddbstreams.testing import StreamSimulator

RESULTS = Path(__file__).parent / "results"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--records-per-shard", type=int, default=50)
    args = parser.parse_args()

    sim = StreamSimulator(shard_count=args.shards // 2)
    for n in range(args.shards // 2):  # a few records in the soon-closed parents
        sim.insert({"email": f"parent{n}@example.com", "order_number": "1"})
    for shard in sim.open_shard_ids():
        sim.split(shard)
    open_shards = sim.open_shard_ids()
    assert len(open_shards) == args.shards

    delivered = 0
    lock = threading.Lock()
    all_delivered = threading.Event()
    target = 0

    def handler(record: ddbstreams.Record) -> None:
        nonlocal delivered
        with lock:
            delivered += 1
            if target and delivered >= target:
                all_delivered.set()

    consumer = ddbstreams.StreamConsumer(handler, stream_arn=sim.stream_arn, client=sim)
    started = time.perf_counter()
    consumer.start()
    while sim.calls["GetShardIterator"] < args.shards + args.shards // 2:
        time.sleep(0.01)
    startup = time.perf_counter() - started
    describe_pages = sim.calls["DescribeStream"]

    time.sleep(2.0)  # let shards settle into their idle rhythm
    calls_before, cpu_before, wall_before = (
        sim.calls["GetRecords"],
        cpu_seconds(),
        time.perf_counter(),
    )
    time.sleep(args.idle_seconds)
    idle_wall = time.perf_counter() - wall_before
    idle_cpu_share = (cpu_seconds() - cpu_before) / idle_wall
    idle_calls_per_shard = (sim.calls["GetRecords"] - calls_before) / idle_wall / args.shards
    threads = threading.active_count()

    with lock:
        target = delivered + args.records_per_shard * args.shards
    write_started = time.perf_counter()
    for n in range(args.records_per_shard * args.shards):
        sim.insert({"email": f"busy{n}@example.com", "order_number": "1"})
    if not all_delivered.wait(300):
        raise SystemExit("not every record arrived within 300 s")
    busy_rate = args.records_per_shard * args.shards / (time.perf_counter() - write_started)
    consumer.stop(timeout=30)

    results: dict[str, Any] = {
        "open_shards": args.shards,
        "closed_parent_shards": args.shards // 2,
        "describe_stream_calls": describe_pages,
        "discover_and_start_seconds": startup,
        "threads": threads,
        "peak_rss_mb": peak_rss_mb(),
        "idle_cpu_share_of_one_core": idle_cpu_share,
        "idle_get_records_per_second_per_shard": idle_calls_per_shard,
        "busy_records_per_second": busy_rate,
        "settings": {
            "poll_interval": consumer.settings.poll_interval,
            "max_workers": consumer.settings.max_workers,
        },
    }
    for name, value in results.items():
        print(
            f"{name:<40}{value:>14.3f}" if isinstance(value, float) else f"{name:<40}{value!s:>14}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
