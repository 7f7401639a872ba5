"""Record path: records/s from GetRecords body to handler, side by side in one process.

(a) json.loads of the bodies alone (the floor)
(b) naive boto3: client.get_records + TypeDeserializer on Keys, NewImage and OldImage
(c) ddbstreams StreamConsumer, handler reads record.new_image
(d) ddbstreams StreamConsumer, handler reads record.keys only
(e) as (c), with the `fast` extra (orjson decodes the bodies), when orjson is installed

(c) and (d) decode with the standard library's json, as (a) does.

Every variant reads the same canned bodies through the real botocore client stack.

    nox -s bench -- record_path        (or: python benchmarks/bench_record_path.py)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _canned import SHARD_ID, STREAM_ARN, CannedStream, get_records_bodies
from boto3.dynamodb.types import TypeDeserializer

import ddbstreams
from ddbstreams import _client

RESULTS = Path(__file__).parent / "results"


def floor(stream: CannedStream) -> int:
    count = 0
    for body in stream.bodies:
        count += len(json.loads(body)["Records"])
    return count


def naive_boto3(stream: CannedStream) -> int:
    client = stream.client()
    deserializer = TypeDeserializer()
    iterator = client.get_shard_iterator(
        StreamArn=STREAM_ARN, ShardId=SHARD_ID, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    count = 0
    while iterator:
        page = client.get_records(ShardIterator=iterator, Limit=1000)
        for record in page["Records"]:
            data = record["dynamodb"]
            for image in ("Keys", "NewImage", "OldImage"):
                if image in data:
                    {k: deserializer.deserialize(v) for k, v in data[image].items()}
            count += 1
        iterator = page.get("NextShardIterator")
    return count


def consumer(
    read: Callable[[ddbstreams.Record], Any], loads: Callable[[bytes], Any] = json.loads
) -> Callable[[CannedStream], int]:
    def run(stream: CannedStream) -> int:
        _client.json_loads = loads  # which decoder the GetRecords fast path uses
        count = 0

        def handler(record: ddbstreams.Record) -> None:
            nonlocal count
            read(record)
            count += 1

        settings = ddbstreams.ConsumerSettings(poll_interval=0, checkpoint_every=10_000)
        # The canned stream is disabled: run() ends once its one shard is read.
        with contextlib.suppress(ddbstreams.StreamDisabledError):
            ddbstreams.StreamConsumer(
                handler, stream_arn=STREAM_ARN, client=stream.client(), settings=settings
            ).run()
        return count

    return run


VARIANTS: dict[str, Callable[[CannedStream], int]] = {
    "a_json_loads_floor": floor,
    "b_naive_boto3": naive_boto3,
    "c_ddbstreams_new_image": consumer(lambda r: r.new_image),
    "d_ddbstreams_keys": consumer(lambda r: r.keys),
}
try:
    import orjson

    VARIANTS["e_ddbstreams_fast_new_image"] = consumer(lambda r: r.new_image, orjson.loads)
except ImportError:
    pass


# label: (StreamViewType, with the nested map/list/set attribute, pages per run). Smaller
# bodies get more pages so that each run holds about 3 MB: a consumer's start-up (about
# 10 ms: first calls, threads) must not weigh on its records/s.
BODIES = {
    "orders + nested attribute, NEW_AND_OLD_IMAGES": ("NEW_AND_OLD_IMAGES", True, 3),
    "orders as in the exercise, NEW_AND_OLD_IMAGES": ("NEW_AND_OLD_IMAGES", False, 8),
    "KEYS_ONLY": ("KEYS_ONLY", False, 20),
}


def measure(bodies: list[bytes], repeats: int) -> dict[str, float]:
    expected = sum(len(json.loads(b)["Records"]) for b in bodies)
    best: dict[str, float] = {}
    rng = random.Random(7)
    for _ in range(repeats):
        # Interleaved in a new order each round: this machine's speed drifts and alternates.
        for name in rng.sample(list(VARIANTS), len(VARIANTS)):
            variant = VARIANTS[name]
            stream = CannedStream(bodies)  # its boto3 client is built before the clock starts
            started = time.perf_counter()
            count = variant(stream)
            elapsed = time.perf_counter() - started
            assert count == expected, (name, count, expected)
            best[name] = max(best.get(name, 0.0), count / elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, help="pages per run (default: per body, ~3 MB)")
    parser.add_argument("--repeats", type=int, default=31)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "records_per_page": 1000,
        "pages": {view: args.pages or pages for view, (_, _, pages) in BODIES.items()},
        "views": {},
    }
    for view, (view_type, nested, pages) in BODIES.items():
        pages = args.pages or pages
        bodies = get_records_bodies(pages, 1000, view_type, nested)
        rates = measure(bodies, args.repeats)
        ratios = {
            "c_over_b": rates["c_ddbstreams_new_image"] / rates["b_naive_boto3"],
            "d_over_b": rates["d_ddbstreams_keys"] / rates["b_naive_boto3"],
            "cost_c_over_floor": rates["a_json_loads_floor"] / rates["c_ddbstreams_new_image"],
            "cost_d_over_floor": rates["a_json_loads_floor"] / rates["d_ddbstreams_keys"],
        }
        if "e_ddbstreams_fast_new_image" in rates:
            ratios["e_over_b"] = rates["e_ddbstreams_fast_new_image"] / rates["b_naive_boto3"]
        results["views"][view] = {"records_per_second": rates, "ratios": ratios}
        print(f"\n{view}: {pages} pages x 1000 records, best of {args.repeats}")
        print(f"  {'variant':<26}{'records/s':>12}")
        for name, rate in rates.items():
            print(f"  {name:<26}{rate:>12,.0f}")
        for name, ratio in ratios.items():
            print(f"  {name:<26}{ratio:>12.2f}x")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "record_path.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
