"""Consumer groups: what the lease table costs, and how fast shards move when a worker goes.

    nox -s bench -- leases       (or: python benchmarks/bench_leases.py --ministack-python PY)

1. **Cost.** 1,000 idle shards (a StreamSimulator, read in-process with ``client=sim``)
   shared by 4 StreamConsumers in one process, with DynamoDBCheckpointStores at
   lease_duration=10 on a local endpoint. Every lease-table request is counted by operation
   (each store's boto3 client is wrapped) over a steady-state window that begins ``--settle``
   seconds (10) after the group is balanced: writes (PutItem, UpdateItem, DeleteItem) per
   second, reads (GetItem, Query) per second and items read per second; next to a
   KCL-style model on the same run (every lease renewed by a conditional write every
   lease_duration / 3: shards / (lease_duration / 3) writes per second).
2. **Failover and handover.** 4 worker PROCESSES (tests/group_worker.py) read a stream served
   over HTTP (SimulatorServer). A worker is SIGKILLed (failover) or SIGTERMed (a graceful
   stop, as ``stop()``); right after, one record is written to each of its shards; the time
   until each of them is delivered by another worker is measured (the last of its shards:
   the worker's shards all read again; the first). The worker is then replaced by a new one
   and the group rebalanced before the next try. At lease_duration 2 s and 10 s.

The lease table is served by MiniStack (``--ministack-python``: the interpreter of a
virtualenv with MiniStack; the bench session makes one), which applies requests one at a
time on one event loop, so that conditional writes are atomic across workers; moto's
threaded server is not, and moto served one request at a time (``--server moto``) answers a
Query of 1,000 leases in about a second, which would make the cost run measure moto.
Results go to benchmarks/results/leases.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3

import ddbstreams
from ddbstreams import ConsumerSettings, DynamoDBCheckpointStore, StreamConsumer
from ddbstreams.testing import SimulatorServer, StreamSimulator

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
RESULTS = HERE / "results"
sys.path.insert(0, str(TESTS))

from ministack_endpoint import MiniStack  # noqa: E402
from serial_moto import SerialMoto  # noqa: E402

WRITES = ("PutItem", "UpdateItem", "DeleteItem")
READS = ("GetItem", "Query")
_CAMEL = {
    "put_item": "PutItem",
    "update_item": "UpdateItem",
    "delete_item": "DeleteItem",
    "get_item": "GetItem",
    "query": "Query",
    "describe_table": "DescribeTable",
    "create_table": "CreateTable",
}


class Counts:
    """Lease-table requests by operation and by purpose, and items read; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.purposes: Counter[str] = Counter()
        self.items_read = 0
        self.read_units = 0

    def snapshot(self) -> tuple[Counter[str], Counter[str], int]:
        with self.lock:
            return Counter(self.requests), Counter(self.purposes), self.items_read


def item_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it (near enough: names and values, numbers by digits)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        for kind, text in value.items():
            size += 1 if kind in ("BOOL", "NULL") else len(str(text).encode())
    return size


def read_units(result: dict[str, Any]) -> int:
    """Read capacity units of one strongly consistent GetItem or Query page: 4 KB each."""
    items = result.get("Items", []) + ([result["Item"]] if "Item" in result else [])
    return max(1, -(-sum(map(item_bytes, items)) // 4096))


def purpose(operation: str, kwargs: dict[str, Any]) -> str:
    """What a lease-table write was for, from its request."""
    if operation == "PutItem":
        return "heartbeat" if kwargs["Item"]["sk"]["S"].startswith("worker|") else "add lease"
    if operation == "DeleteItem":
        return "leave / forget"
    update = kwargs.get("UpdateExpression", "")
    if "begun" in update:
        return "checkpoint"
    if "handover_to = :me" in update:
        return "ask handover"
    if "#o = :me" in update:
        return "take"
    return "hand over / release"


class CountingClient:
    """A boto3 dynamodb client whose calls are counted (a failed conditional write too)."""

    def __init__(self, client: Any, counts: Counts) -> None:
        self._client = client
        self._counts = counts

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        operation = _CAMEL.get(name)
        if operation is None:
            return method

        def call(**kwargs: Any) -> Any:
            items = units = 0
            try:
                result = method(**kwargs)
                items = len(result.get("Items", [])) + (1 if "Item" in result else 0)
                units = read_units(result) if operation in READS else 0
                return result
            finally:
                with self._counts.lock:
                    self._counts.requests[operation] += 1
                    self._counts.items_read += items
                    self._counts.read_units += units
                    if operation in WRITES:
                        self._counts.purposes[purpose(operation, kwargs)] += 1

        return call


# ----------------------------------------------------------------- the lease table server


@contextlib.contextmanager
def lease_server(args: argparse.Namespace) -> Iterator[Any]:
    if args.server == "ministack":
        if not args.ministack_python:
            sys.exit("--ministack-python is needed for --server ministack (or --server moto)")
        with MiniStack(args.ministack_python) as server:
            yield server
    else:
        with SerialMoto() as server:
            yield server


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    began = time.monotonic()
    step = threading.Event()
    while not condition():
        if time.monotonic() - began > timeout:
            raise RuntimeError(f"not within {timeout}s: {what}")
        step.wait(0.1)
    return time.monotonic() - began


def balanced(store: DynamoDBCheckpointStore, arn: str, workers: set[str]) -> bool:
    leases = [lease for lease in store.leases(arn) if not lease.finished]
    counts = Counter(lease.owner for lease in leases)
    if not leases or set(counts) != workers:  # a free lease, or an owner not in the set
        return False
    return max(counts.values()) - min(counts.values()) <= 1


# ----------------------------------------------------------------- 1. cost


def cost(args: argparse.Namespace, server: Any) -> dict[str, Any]:
    sim = StreamSimulator(shard_count=args.shards)
    table = f"leases-cost-{time.time_ns()}"
    counts = Counts()
    lease_duration = args.lease_duration
    watcher = DynamoDBCheckpointStore(
        table,
        lease_duration=lease_duration,
        client=boto3.client("dynamodb", **server.client_kwargs()),
    )

    def worker(name: str) -> StreamConsumer:
        store = DynamoDBCheckpointStore(
            table,
            lease_duration=lease_duration,
            client=CountingClient(boto3.client("dynamodb", **server.client_kwargs()), counts),
        )
        return StreamConsumer(
            lambda record: None,
            stream_arn=sim.stream_arn,
            client=sim,
            checkpoint_store=store,
            settings=ConsumerSettings(),  # the defaults: poll 0.25 s, idle up to 1 s
            worker_id=name,
        )

    names = [f"worker-{n}" for n in range(args.workers)]
    consumers = [worker(name) for name in names]
    late_join: dict[str, Any] = {}
    started = time.monotonic()
    for consumer in consumers:
        consumer.start()
    try:
        join_seconds = wait_until(
            lambda: balanced(watcher, sim.stream_arn, set(names)), args.join_timeout, "balance"
        )
        joined, joined_purposes, _ = counts.snapshot()
        print(
            f"cost: balanced after {join_seconds:.1f}s; counting for {args.window:.0f}s "
            f"from {args.settle:.0f}s later"
        )
        time.sleep(args.settle)  # the last reads of the join (changes told, then read)
        before, before_purposes, before_items = counts.snapshot()
        before_units = counts.read_units
        window_began = time.monotonic()
        time.sleep(args.window)  # the measuring window itself
        after, after_purposes, after_items = counts.snapshot()
        units = counts.read_units - before_units
        window = time.monotonic() - window_began
        still_balanced = balanced(watcher, sim.stream_arn, set(names))
        epochs = sorted({lease.epoch for lease in watcher.leases(sim.stream_arn)})
        ends = shard_ends(args, sim, counts, (after_items - before_items) / window, units / window)
        if args.late_join:
            late_join = join_one_more(
                args, watcher, sim.stream_arn, names, consumers, worker, counts
            )
    finally:
        for consumer in consumers:
            consumer.stop(timeout=30)
    requests = after - before
    writes = sum(requests[op] for op in WRITES)
    reads = sum(requests[op] for op in READS)
    kcl = args.shards / (lease_duration / 3)
    result = {
        "shards": args.shards,
        "workers": args.workers,
        "lease_duration": lease_duration,
        "window_seconds": round(window, 1),
        "settle_seconds": args.settle,
        "join_seconds": round(join_seconds, 1),
        "start_to_balance_requests": dict(joined),
        "start_to_balance_writes_by_purpose": dict(joined_purposes),
        "steady_requests": dict(requests),
        "steady_writes_by_purpose": dict(after_purposes - before_purposes),
        "writes_per_second": round(writes / window, 2),
        "read_requests_per_second": round(reads / window, 2),
        "read_items_per_second": round((after_items - before_items) / window, 1),
        "read_units_per_second": round(units / window, 1),
        "kcl_model_writes_per_second": round(kcl, 1),
        "balanced_at_end": still_balanced,
        "lease_epochs_at_end": epochs,
        "seconds_total": round(time.monotonic() - started, 1),
        "late_join": late_join,
        "shard_ends": ends,
    }
    print(
        f"cost: {args.shards} shards / {args.workers} workers at lease_duration="
        f"{lease_duration:g}: {result['writes_per_second']} writes/s "
        f"(KCL-style model: {kcl:.0f}/s), {result['read_requests_per_second']} read "
        f"requests/s, {result['read_items_per_second']} items read/s "
        f"({result['read_units_per_second']} read units/s); by purpose "
        f"{result['steady_writes_by_purpose']}"
    )
    return result


def shard_ends(
    args: argparse.Namespace,
    sim: StreamSimulator,
    counts: Counts,
    steady_items: float,
    steady_units: float,
) -> dict[str, Any]:
    """What a shard's end costs the group: one open shard rolled over (closed, one child)
    every ``--roll-every`` seconds for ``--window`` seconds, counted against the steady
    window's reads; then scaled to a real stream, whose shards end about every 4 hours."""
    if args.roll_every <= 0:
        return {}
    _, _, before_items = counts.snapshot()
    before_units = counts.read_units
    began = time.monotonic()
    ended = 0
    tick = threading.Event()
    while time.monotonic() - began < args.window:
        open_shards = sim.open_shard_ids()
        sim.rollover(open_shards[ended * 7919 % len(open_shards)])  # spread over the group
        ended += 1
        tick.wait(args.roll_every)
    window = time.monotonic() - began
    _, _, after_items = counts.snapshot()
    extra_items = (after_items - before_items) / window - steady_items
    extra_units = (counts.read_units - before_units) / window - steady_units
    per_end_items = extra_items * window / ended
    per_end_units = extra_units * window / ended
    real_rate = args.shards / (4 * 3600)  # shard ends per second on a real stream
    result = {
        "roll_every_seconds": args.roll_every,
        "shard_ends": ended,
        "window_seconds": round(window, 1),
        "extra_items_read_per_end": round(per_end_items, 1),
        "extra_read_units_per_end": round(per_end_units, 1),
        "real_stream_ends_per_second": round(real_rate, 3),
        "real_stream_extra_items_per_second": round(per_end_items * real_rate, 1),
        "real_stream_extra_read_units_per_second": round(per_end_units * real_rate, 2),
    }
    print(
        f"shard ends: {ended} in {window:.0f}s: {per_end_items:.0f} more items read and "
        f"{per_end_units:.0f} more read units per end; a real stream of {args.shards} shards "
        f"(one end every {1 / real_rate:.0f}s): +{result['real_stream_extra_items_per_second']} "
        f"items/s, +{result['real_stream_extra_read_units_per_second']} read units/s"
    )
    return result


def join_one_more(
    args: argparse.Namespace,
    watcher: DynamoDBCheckpointStore,
    arn: str,
    names: list[str],
    consumers: list[StreamConsumer],
    worker: Callable[[str], StreamConsumer],
    counts: Counts,
) -> dict[str, Any]:
    """One more worker joins the balanced group: how long until balance, and at what cost."""
    owners_before = {lease.shard_id: lease.owner for lease in watcher.leases(arn)}
    before, before_purposes, _ = counts.snapshot()
    newcomer = f"worker-{len(names)}"
    consumers.append(worker(newcomer))
    consumers[-1].start()
    seconds = wait_until(
        lambda: balanced(watcher, arn, {*names, newcomer}), args.join_timeout, "late join"
    )
    after, after_purposes, _ = counts.snapshot()
    owners_after = {lease.shard_id: lease.owner for lease in watcher.leases(arn)}
    moved = sum(owners_before.get(shard) != owner for shard, owner in owners_after.items())
    requests = after - before
    result = {
        "seconds": round(seconds, 1),
        "lease_durations": round(seconds / args.lease_duration, 2),
        "leases_moved": moved,
        "writes": sum(requests[op] for op in WRITES),
        "writes_by_purpose": dict(after_purposes - before_purposes),
    }
    print(
        f"late join: worker {len(names) + 1} joined {len(names)} balanced workers: balanced "
        f"after {seconds:.1f}s ({result['lease_durations']} lease durations), "
        f"{moved} leases moved, {result['writes']} writes"
    )
    return result


# ----------------------------------------------------------------- 2. failover, handover


class Workers:
    """Worker processes (tests/group_worker.py) on a stream served over HTTP."""

    def __init__(self, server: Any, sim_server: SimulatorServer, workdir: Path, lease: float):
        self.server = server
        self.sim_server = sim_server
        self.sim = sim_server.simulator
        self.workdir = workdir
        self.lease = lease
        self.table = f"leases-failover-{time.time_ns()}"
        self.store = DynamoDBCheckpointStore(
            self.table,
            group="bench",
            lease_duration=lease,
            client=boto3.client("dynamodb", **server.client_kwargs()),
        )
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.numbers = iter(range(1, 10_000))
        self.probe_keys = self._probe_keys()
        self.probes = 0

    def _probe_keys(self) -> dict[str, dict[str, str]]:
        """One item key per open shard, to write a record to a chosen shard."""
        keys: dict[str, dict[str, str]] = {}
        wanted = set(self.sim.open_shard_ids())
        for n in range(100_000):
            key = {"email": f"probe-{n}@example.com", "order_number": "1"}
            shard = self.sim._shard_for(key).shard_id  # the simulator's routing of a key
            keys.setdefault(shard, key)
            if set(keys) == wanted:
                return keys
        raise RuntimeError("no key found for some shard")

    def start(self) -> str:
        name = f"w{next(self.numbers)}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
        command = [
            sys.executable,
            str(TESTS / "group_worker.py"),
            self.sim_server.url,
            self.sim.stream_arn,
            self.server.url,
            self.table,
            name,
            str(self.workdir / f"{name}.log"),
            "--lease-duration",
            str(self.lease),
            "--group",
            "bench",
            "--poll-interval",
            "0.25",
            "--idle-poll-interval-max",
            "1.0",
            "--discovery-interval",
            "30",
        ]
        with open(self.workdir / f"{name}.stderr", "ab") as stderr:
            self.processes[name] = subprocess.Popen(
                command, env=env, stdout=subprocess.DEVNULL, stderr=stderr
            )
        return name

    def live(self) -> set[str]:
        return {name for name, p in self.processes.items() if p.poll() is None}

    def held_by(self, name: str) -> set[str]:
        return {
            lease.shard_id
            for lease in self.store.leases(self.sim.stream_arn)
            if lease.owner == name and not lease.finished
        }

    def write_probes(self, shards: set[str]) -> None:
        for shard in shards:
            self.probes += 1
            self.sim.insert({**self.probe_keys[shard], "version": self.probes})

    def first_deliveries(self, shards: set[str], victim: str, since: float) -> dict[str, float]:
        """The first delivery of each shard by a worker other than the victim, after since."""
        first: dict[str, float] = {}
        for name in self.processes:
            if name == victim:
                continue
            path = self.workdir / f"{name}.log"
            if not path.exists():
                continue
            text = path.read_text()
            for line in text[: text.rfind("\n") + 1].splitlines():
                _, shard, _, _, _, at = line.split()
                if shard in shards and float(at) > since:
                    first[shard] = min(first.get(shard, float("inf")), float(at))
        return first

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def moves(args: argparse.Namespace, server: Any, lease: float, workdir: Path) -> dict[str, Any]:
    sim = StreamSimulator(shard_count=args.move_shards)
    out: dict[str, Any] = {"lease_duration": lease, "shards": args.move_shards}
    with SimulatorServer(sim) as sim_server:
        workers = Workers(server, sim_server, workdir / f"lease-{lease:g}", lease)
        workers.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(args.workers):
            workers.start()
        try:
            for kind, sig in (("failover", signal.SIGKILL), ("graceful", signal.SIGTERM)):
                last: list[float] = []
                first: list[float] = []
                for attempt in range(args.tries):
                    wait_until(
                        lambda: balanced(workers.store, sim.stream_arn, workers.live()),
                        20 * lease + 30,
                        "balance before a try",
                    )
                    victim = sorted(workers.live())[attempt % len(workers.live())]
                    shards = workers.held_by(victim)
                    workers.processes[victim].send_signal(sig)
                    at = time.monotonic()
                    workers.processes[victim].wait(30)  # dead (or stopped, checkpointed)
                    workers.write_probes(shards)
                    wait_until(
                        lambda s=shards, v=victim, t=at: (
                            set(workers.first_deliveries(s, v, t)) == s
                        ),
                        5 * lease + 30,
                        f"{victim}'s shards read by the others",
                    )
                    delivered = workers.first_deliveries(shards, victim, at)
                    last.append(max(delivered.values()) - at)
                    first.append(min(delivered.values()) - at)
                    print(
                        f"{kind} at lease_duration={lease:g}: try {attempt + 1}: "
                        f"{len(shards)} shards of {victim} read again after "
                        f"{first[-1]:.2f}s (first) .. {last[-1]:.2f}s (last)"
                    )
                    workers.start()  # a replacement; the group rebalances by handover
                out[kind] = summary(last, first)
        finally:
            workers.stop_all()
    return out


def summary(last: list[float], first: list[float]) -> dict[str, Any]:
    return {
        "tries": len(last),
        "all_shards_median_s": round(statistics.median(last), 2),
        "all_shards_max_s": round(max(last), 2),
        "first_shard_median_s": round(statistics.median(first), 2),
        "first_shard_max_s": round(max(first), 2),
        "all_shards_s": [round(x, 2) for x in last],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=("ministack", "moto"), default="ministack")
    parser.add_argument("--ministack-python", default=os.environ.get("DDBSTREAMS_MINISTACK_PYTHON"))
    parser.add_argument("--shards", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--lease-duration", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=60.0, help="steady-state seconds")
    parser.add_argument(
        "--settle", type=float, default=10.0, help="seconds from balance to the window"
    )
    parser.add_argument("--join-timeout", type=float, default=300.0)
    parser.add_argument("--move-shards", type=int, default=40, help="shards, failover runs")
    parser.add_argument("--move-leases", default="2,10", help="lease durations, failover runs")
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument(
        "--roll-every",
        type=float,
        default=2.0,
        help="seconds between shard ends in the shard-end window after the cost window (0: none)",
    )
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--skip-moves", action="store_true")
    parser.add_argument(
        "--no-late-join",
        dest="late_join",
        action="store_false",
        help="skip one more worker joining the balanced group after the cost window",
    )
    args = parser.parse_args()
    results: dict[str, Any] = {
        "server": args.server,
        "ddbstreams": ddbstreams.__version__,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    with lease_server(args) as server, tempfile.TemporaryDirectory() as workdir:
        if not args.skip_cost:
            results["cost"] = cost(args, server)
        if not args.skip_moves:
            results["moves"] = [
                moves(args, server, float(lease), Path(workdir))
                for lease in args.move_leases.split(",")
            ]
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "leases.json"
    if path.exists() and (args.skip_cost or args.skip_moves):  # keep the step not run
        results = {**json.loads(path.read_text()), **results}
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
