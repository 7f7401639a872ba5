"""Memory bound: a slow handler on a fast stream keeps RSS flat.

An endless shard (canned 1000-record pages served through the real botocore stack) meets
a handler that waits 1 ms a record (as one writing to a database would), slower than the
stream can be read. Side by side, each in its own process so RSS is its
own:

- ddbstreams: one page in hand per shard; the next is fetched only when it is handled;
- a common hand-written pattern: a fetch thread pushing pages into an unbounded queue.Queue
  that the handler drains.

    nox -s bench -- memory        (or: python benchmarks/bench_memory.py)
"""

from __future__ import annotations

import argparse
import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _canned import SHARD_ID, STREAM_ARN, CannedStream, get_records_bodies

import ddbstreams

RESULTS = Path(__file__).parent / "results"
HANDLER_SECONDS = 0.001


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def slow_handler(_record: Any) -> None:
    time.sleep(HANDLER_SECONDS)


def run_ddbstreams(stream: CannedStream, stop: threading.Event, handled: list[int]) -> None:
    def handler(record: ddbstreams.Record) -> None:
        record.new_image  # noqa: B018 - the handler reads the image, as a real one would
        slow_handler(record)
        handled[0] += 1

    consumer = ddbstreams.StreamConsumer(handler, stream_arn=STREAM_ARN, client=stream.client())
    with consumer:
        stop.wait()


def run_unbounded_queue(stream: CannedStream, stop: threading.Event, handled: list[int]) -> None:
    client = stream.client()
    pages: queue.Queue[list[dict[str, Any]]] = queue.Queue()

    def fetch() -> None:
        iterator = client.get_shard_iterator(
            StreamArn=STREAM_ARN, ShardId=SHARD_ID, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while not stop.is_set() and iterator:
            page = client.get_records(ShardIterator=iterator, Limit=1000)
            pages.put(page["Records"])
            iterator = page.get("NextShardIterator")

    threading.Thread(target=fetch, daemon=True).start()
    while not stop.is_set():
        try:
            for record in pages.get(timeout=0.1):
                slow_handler(record)
                handled[0] += 1
                if stop.is_set():
                    break
        except queue.Empty:
            pass


VARIANTS = {"ddbstreams": run_ddbstreams, "unbounded_queue": run_unbounded_queue}


def one_variant(name: str, seconds: float) -> dict[str, Any]:
    stream = CannedStream(get_records_bodies(4, 1000, "NEW_AND_OLD_IMAGES"), endless=True)
    stop, handled = threading.Event(), [0]
    baseline = rss_mb()
    thread = threading.Thread(target=VARIANTS[name], args=(stream, stop, handled))
    thread.start()
    samples = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        time.sleep(0.5)
        samples.append((round(time.perf_counter() - started, 1), round(rss_mb() - baseline, 1)))
    stop.set()
    thread.join(30)
    return {
        "records_handled": handled[0],
        "rss_growth_mb_samples": samples,
        "rss_growth_mb_max": max(growth for _, growth in samples),
        "rss_growth_mb_last_minus_first_half_max": samples[-1][1]
        - max(growth for _, growth in samples[: len(samples) // 2]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--variant", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # the child process: one variant, results as JSON on stdout
        print(json.dumps(one_variant(args.variant, args.seconds)))
        return
    results: dict[str, Any] = {"handler_ms_per_record": HANDLER_SECONDS * 1000}
    for name in VARIANTS:
        out = subprocess.run(
            [sys.executable, __file__, "--variant", name, "--seconds", str(args.seconds)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
    handler_ms = HANDLER_SECONDS * 1000
    print(f"slow handler ({handler_ms:.1f} ms/record), endless shard, {args.seconds:.0f} s")
    print(f"  {'consumer':<18}{'handled':>10}{'RSS growth max MB':>20}{'at end MB':>12}")
    for name in VARIANTS:
        r = results[name]
        last = r["rss_growth_mb_samples"][-1][1]
        print(f"  {name:<18}{r['records_handled']:>10}{r['rss_growth_mb_max']:>20.1f}{last:>12.1f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
