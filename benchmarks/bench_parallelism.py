"""Per-key parallelism: records/s of one shard whose handler waits 5 ms per record.

One shard of a ``StreamSimulator`` holds ``400 * parallelism`` records of 500 items
(keys); the handler waits 5 ms (``time.sleep`` for a plain handler, ``asyncio.sleep`` for
an ``async def`` one), as a call to another service would. Side by side in one process:
``parallelism`` 1, 4 and 16, each reported as records/s and as its speed-up over
``parallelism=1``, timed from the first record delivered to the last (the consumer's start
is left out); the issue's target is at least 0.8 * N. In the same run, every item's
records are checked to have arrived in the order they were written.

    nox -s bench -- parallelism        (or: python benchmarks/bench_parallelism.py)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import ddbstreams
from ddbstreams.testing import StreamSimulator

RESULTS = Path(__file__).parent / "results"
WAIT_PER_RECORD = 0.005
ITEMS = 500


def measure(parallelism: int, use_async: bool, per_lane: int) -> dict[str, Any]:
    sim = StreamSimulator()
    count = per_lane * parallelism
    written: dict[int, list[int]] = {}
    for n in range(count):
        key = (n * 7919) % ITEMS
        sim.insert({"email": f"user{key}@example.com", "order_number": "1", "n": n})
        written.setdefault(key, []).append(n)
    delivered: dict[int, list[int]] = {}
    lock = threading.Lock()
    done = threading.Event()
    total = 0
    first_at = 0.0

    def note(record: ddbstreams.Record) -> None:
        nonlocal total, first_at
        image = record.new_image or {}
        with lock:
            if total == 0:
                first_at = time.perf_counter()  # the clock starts at the first record
            delivered.setdefault(int(record.keys["email"][4:].split("@")[0]), []).append(
                int(image["n"])
            )
            total += 1
            if total == count:
                done.set()

    def handle(record: ddbstreams.Record) -> None:
        time.sleep(WAIT_PER_RECORD)
        note(record)

    async def handle_async(record: ddbstreams.Record) -> None:
        await asyncio.sleep(WAIT_PER_RECORD)
        note(record)

    consumer = ddbstreams.StreamConsumer(
        handle_async if use_async else handle,
        stream_arn=sim.stream_arn,
        client=sim,
        parallelism=parallelism,
        settings=ddbstreams.ConsumerSettings(poll_interval=0.01),
    )
    with consumer:
        if not done.wait(600):
            raise RuntimeError(f"parallelism={parallelism}: only {total} of {count} records")
        elapsed = time.perf_counter() - first_at
        count -= 1  # the first record started the clock
    in_order = delivered == written
    return {
        "parallelism": parallelism,
        "async": use_async,
        "records": count + 1,
        "seconds": round(elapsed, 3),
        "records_per_second": round(count / elapsed, 1),
        "per_key_order_held": in_order,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-lane", type=int, default=400, help="records per lane")
    args = parser.parse_args()
    rows = []
    for use_async in (False, True):
        base = None
        for parallelism in (1, 4, 16):
            row = measure(parallelism, use_async, args.per_lane)
            base = base or row["records_per_second"]
            row["speed_up"] = round(row["records_per_second"] / base, 2)
            row["target_speed_up"] = round(0.8 * parallelism, 1)
            rows.append(row)
            print(json.dumps(row))
            if not row["per_key_order_held"]:
                raise SystemExit("per-key order was broken")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "parallelism.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
