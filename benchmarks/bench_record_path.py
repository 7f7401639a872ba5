"""Record path: records/s from GetRecords body to handler, side by side in one process.

(a) json.loads of the bodies alone (the floor the issue set)
(a2) json.loads plus each new image turned into Python values, in a bare loop: the least a
     consumer that decodes whole pages has to do
(a3) the bodies decoded record by record as ddbstreams decodes them, alone: the floor of
     ddbstreams' own method, so c/a3 and d/a3 are what ddbstreams adds to its decoding
(b) naive boto3: client.get_records + TypeDeserializer on Keys, NewImage and OldImage
(c) ddbstreams StreamConsumer, handler reads record.new_image
(d) ddbstreams StreamConsumer, handler reads record.keys only
(f) as (c), with gc.freeze() once the clients exist: what the garbage collector still costs
(g) as (c), reporting to a PrometheusMetrics exporter (its own registry): what metrics cost

All decode with the standard library's json (its C scanner).

Every variant reads the same canned bodies through the real botocore client stack.

    nox -s bench -- record_path        (or: python benchmarks/bench_record_path.py)

Wall-clock rates on a shared machine drift; ``--instructions`` also counts the instructions
each variant executes per record with valgrind's callgrind (same binary, same input, same
count to a few parts per million), a noise-free view of the same ratios:

    python benchmarks/bench_record_path.py --instructions
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _canned import SHARD_ID, STREAM_ARN, CannedStream, get_records_bodies
from boto3.dynamodb.types import TypeDeserializer

import ddbstreams
from ddbstreams._deserialize import deserialize_image
from ddbstreams._pages import RecordsPage

RESULTS = Path(__file__).parent / "results"


def floor(stream: CannedStream) -> int:
    count = 0
    for body in stream.bodies:
        count += len(json.loads(body)["Records"])
    return count


def floor_with_new_image(stream: CannedStream) -> int:
    count = 0
    for body in stream.bodies:
        for record in json.loads(body)["Records"]:
            image = record["dynamodb"].get("NewImage")
            if image is not None:
                deserialize_image(image)
            count += 1
    return count


def record_by_record_floor(stream: CannedStream) -> int:
    count = 0
    for body in stream.bodies:
        for _ in RecordsPage.from_body(body).records:
            count += 1
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
    read: Callable[[ddbstreams.Record], Any], prometheus: bool = False
) -> Callable[[CannedStream], int]:
    def run(stream: CannedStream) -> int:
        count = 0

        def handler(record: ddbstreams.Record) -> None:
            nonlocal count
            read(record)
            count += 1

        settings = ddbstreams.ConsumerSettings(poll_interval=0, checkpoint_every=10_000)
        metrics = None
        if prometheus:
            from prometheus_client import CollectorRegistry

            from ddbstreams.metrics import PrometheusMetrics

            metrics = PrometheusMetrics(registry=CollectorRegistry())
        # The canned stream is disabled: run() ends once its one shard is read.
        with contextlib.suppress(ddbstreams.StreamDisabledError):
            ddbstreams.StreamConsumer(
                handler,
                stream_arn=STREAM_ARN,
                client=stream.client(),
                settings=settings,
                metrics=metrics,
            ).run()
        return count

    return run


def with_frozen_heap(run: Callable[[CannedStream], int]) -> Callable[[CannedStream], int]:
    def frozen(stream: CannedStream) -> int:
        gc.freeze()  # O(1): the objects alive now leave the collector's walks
        try:
            return run(stream)
        finally:
            gc.unfreeze()

    return frozen


VARIANTS: dict[str, Callable[[CannedStream], int]] = {
    "a_json_loads_floor": floor,
    "a2_floor_with_new_image": floor_with_new_image,
    "a3_record_by_record_floor": record_by_record_floor,
    "b_naive_boto3": naive_boto3,
    "c_ddbstreams_new_image": consumer(lambda r: r.new_image),
    "d_ddbstreams_keys": consumer(lambda r: r.keys),
}
VARIANTS["f_ddbstreams_new_image_gc_freeze"] = with_frozen_heap(VARIANTS["c_ddbstreams_new_image"])
VARIANTS["g_ddbstreams_new_image_prometheus"] = consumer(lambda r: r.new_image, prometheus=True)


# label: (StreamViewType, with the nested map/list/set attribute, pages per run timed,
# pages per run under callgrind). Timed runs hold about 12 MB of bodies, so that a
# consumer's start-up (about 10 ms: first calls on a new client, threads) weighs under 2 %
# of its records/s: the measure is throughput, start-up has its own in bench_scale.py.
# Callgrind runs 50x slower: it reads N and 2N pages, N the last number (start-up cancels).
BODIES = {
    "orders + nested attribute, NEW_AND_OLD_IMAGES": ("NEW_AND_OLD_IMAGES", True, 12, 3),
    "orders as in the exercise, NEW_AND_OLD_IMAGES": ("NEW_AND_OLD_IMAGES", False, 32, 8),
    "KEYS_ONLY": ("KEYS_ONLY", False, 80, 20),
}


def measure(bodies: list[bytes], repeats: int) -> dict[str, float]:
    expected = sum(len(json.loads(b)["Records"]) for b in bodies)
    best: dict[str, float] = {}
    rng = random.Random(7)
    for _ in range(repeats):
        # Interleaved in a new order each round: this machine's speed drifts and alternates.
        for name in rng.sample(list(VARIANTS), len(VARIANTS)):
            variant = VARIANTS[name]
            gc.collect()  # every variant starts from the same clean heap
            stream = CannedStream(bodies)  # its boto3 client is built before the clock starts
            started = time.perf_counter()
            count = variant(stream)
            elapsed = time.perf_counter() - started
            assert count == expected, (name, count, expected)
            best[name] = max(best.get(name, 0.0), count / elapsed)
    return {name: best[name] for name in VARIANTS}


def ratios_of(rates: dict[str, float]) -> dict[str, float]:
    return {
        "c_over_b": rates["c_ddbstreams_new_image"] / rates["b_naive_boto3"],
        "d_over_b": rates["d_ddbstreams_keys"] / rates["b_naive_boto3"],
        "cost_c_over_floor": rates["a_json_loads_floor"] / rates["c_ddbstreams_new_image"],
        "cost_d_over_floor": rates["a_json_loads_floor"] / rates["d_ddbstreams_keys"],
        "cost_c_over_a3": rates["a3_record_by_record_floor"] / rates["c_ddbstreams_new_image"],
        "cost_d_over_a3": rates["a3_record_by_record_floor"] / rates["d_ddbstreams_keys"],
        "a2_over_b": rates["a2_floor_with_new_image"] / rates["b_naive_boto3"],
        "f_over_c": rates["f_ddbstreams_new_image_gc_freeze"] / rates["c_ddbstreams_new_image"],
        "g_over_c": rates["g_ddbstreams_new_image_prometheus"] / rates["c_ddbstreams_new_image"],
    }


def print_table(
    title: str, column: str, values: dict[str, float], ratios: dict[str, float]
) -> None:
    print(f"\n{title}")
    print(f"  {'variant':<34}{column:>20}")
    for name, value in values.items():
        print(f"  {name:<34}{value:>20,.0f}")
    for name, ratio in ratios.items():
        print(f"  {name:<34}{ratio:>19.2f}x")


def run_child(variant: str, view: str, pages: int, read: int) -> None:
    """The process callgrind watches: one run of one variant over ``read`` pages, ``pages``
    or ``2 * pages`` (both are made in every process, so making them cancels out)."""
    view_type, nested, _, _ = BODIES[view]
    made = {n: get_records_bodies(n, 1000, view_type, nested) for n in (pages, 2 * pages)}
    VARIANTS[variant](CannedStream(made[read]))


def instructions(variant: str, view: str, pages: int, read: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--child",
                variant,
                "--view",
                view,
                "--pages",
                str(pages),
                "--read",
                str(read),
            ],
            env={**os.environ, "PYTHONHASHSEED": "0"},
            check=True,
            capture_output=True,
        )
        match = re.search(r"^summary: (\d+)$", out.read_text(), re.MULTILINE)
        assert match, "callgrind wrote no summary"
        return int(match.group(1))


def instructions_per_record(variant: str, view: str, pages: int) -> float:
    """Instructions a record once running: a run over 2 x ``pages`` pages minus a run over
    ``pages`` (imports, the client's first calls and the consumer's start-up cancel)."""
    short = instructions(variant, view, pages, pages)
    long = instructions(variant, view, pages, 2 * pages)
    return (long - short) / (pages * 1000)


def count_instructions(pages_override: int | None, only: list[str] | None = None) -> None:
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian: apt-get install valgrind)")
    results: dict[str, Any] = {"python": platform.python_version(), "views": {}}
    jobs = [
        (variant, view, pages_override or pages)
        for view, (_, _, _, pages) in BODIES.items()
        for variant in only or VARIANTS
    ]
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        counts = list(pool.map(lambda job: instructions_per_record(*job), jobs))
    for (variant, view, pages), count in zip(jobs, counts, strict=True):
        entry = results["views"].setdefault(view, {"pages": pages, "instructions_per_record": {}})
        entry["instructions_per_record"][variant] = count
    for view, entry in results["views"].items():
        per_record = entry["instructions_per_record"]
        entry["ratios"] = {} if only else ratios_of({n: 1 / c for n, c in per_record.items()})
        title = f"{view}: {entry['pages']} pages x 1000 records, callgrind"
        print_table(title, "instructions/record", per_record, entry["ratios"])
    RESULTS.mkdir(exist_ok=True)
    name = "record_path_instructions" + ("_" + "_".join(v[0] for v in only) if only else "")
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, help="pages per run (default: per body)")
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--instructions", action="store_true", help="count with callgrind")
    parser.add_argument("--only", nargs="+", help="with --instructions: these variants only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--view", help=argparse.SUPPRESS)
    parser.add_argument("--read", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child, args.view, args.pages, args.read)
        return
    if args.instructions:
        count_instructions(args.pages, args.only)
        return
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "records_per_page": 1000,
        "pages": {view: args.pages or pages for view, (_, _, pages, _) in BODIES.items()},
        "views": {},
    }
    for view, (view_type, nested, pages, _) in BODIES.items():
        pages = args.pages or pages
        bodies = get_records_bodies(pages, 1000, view_type, nested)
        rates = measure(bodies, args.repeats)
        ratios = ratios_of(rates)
        results["views"][view] = {"records_per_second": rates, "ratios": ratios}
        title = f"{view}: {pages} pages x 1000 records, best of {args.repeats}"
        print_table(title, "records/s", rates, ratios)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "record_path.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
