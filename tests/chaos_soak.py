"""Chaos soak: at-least-once delivery through wire faults, rollovers, splits and SIGKILLs.

    python tests/chaos_soak.py [--seed N] [--records N] [--write-seconds S] ...
    nox -s chaos -- --seed 7

This process serves a StreamSimulator over HTTP (ddbstreams.testing.SimulatorServer) with
about 20 % of calls answered by a fault (throttling, 5xx, a body that is not JSON, a
GetRecords body cut in the middle, an expired iterator). A writer thread writes versioned
records for a few hundred items while shards roll over and split. The consumer runs in a
child process (tests/chaos_consumer.py, a real boto3 client through endpoint_url=, a SQLite
checkpoint store) that is SIGKILLed and restarted every 1-4 s. After each kill the checkpoint
database is read (the process is dead: the file is quiescent). When the writer is done the
stream is disabled and a last run drains it and exits by itself. Then it checks:

- every written record was delivered (lost=0), and nothing was delivered that was not written;
- per item, the first deliveries come in write order (version 1, 2, 3, ...); within a run,
  each shard's records come in sequence-number order;
- no record is delivered twice within one run; a record delivered again by a later run has a
  sequence number above its shard's checkpoint when the run before was killed;
- a checkpoint only covers records already delivered, never moves back, and ``finished``
  only once the whole shard was delivered;
- the last run exits 0 (stream disabled and drained) and no run died on its own.

It prints one line of figures and exits 1 listing the violations, if any. Everything is
bounded: the whole run stops by itself before --deadline seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddbstreams.testing import SimulatorServer, StreamSimulator

HERE = Path(__file__).resolve().parent
OTHER_OPERATIONS = ("DescribeStream", "GetShardIterator", "DescribeTable")
MAX_OPEN_SHARDS = 12
MAX_LISTED = 50  # violations printed in full, per kind
DRAIN_GRACE = 15.0  # seconds the last run gets to notice the end once it has every record


@dataclass
class Written:
    """What the writer wrote, and what it did to the shards."""

    by_sequence: dict[int, tuple[str, int]] = field(default_factory=dict)  # -> (key, version)
    versions: dict[str, int] = field(default_factory=dict)  # key -> last version
    rollovers: int = 0
    splits: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


@dataclass
class Run:
    """One consumer process."""

    number: int
    log: Path
    killed: bool = False
    exit_code: int | None = None
    # the checkpoints in the database once the process was dead: shard -> (sequence, finished)
    checkpoints: dict[str, tuple[int | None, bool]] = field(default_factory=dict)
    deliveries: list[tuple[str, int, str, int]] = field(default_factory=list)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--records", type=int, default=20_000, help="records to write")
    parser.add_argument("--items", type=int, default=300, help="distinct keys written")
    parser.add_argument("--shards", type=int, default=2, help="open shards at the start")
    parser.add_argument("--write-seconds", type=float, default=90.0, help="writing lasts this")
    parser.add_argument("--fault-rate", type=float, default=0.20, help="fraction of calls")
    parser.add_argument("--kill-min", type=float, default=1.0)
    parser.add_argument("--kill-max", type=float, default=4.0)
    parser.add_argument("--reshard-min", type=float, default=2.0)
    parser.add_argument("--reshard-max", type=float, default=4.0)
    parser.add_argument(
        "--malformed-getrecords-only",
        action="store_true",
        help="answer only GetRecords with non-JSON bodies (not DescribeStream, "
        "GetShardIterator, DescribeTable)",
    )
    parser.add_argument("--deadline", type=float, default=280.0, help="seconds, all included")
    parser.add_argument("--workdir", type=Path, help="keep logs and databases here")
    args = parser.parse_args()
    started = time.monotonic()
    deadline = started + args.deadline

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ddbstreams-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "checkpoints.db"
    rng = random.Random(args.seed)
    sim = StreamSimulator(shard_count=args.shards)
    written = Written()
    runs: list[Run] = []
    violations: list[str] = []
    with SimulatorServer(sim, seed=args.seed, **fault_rates(args)) as server:
        writer = threading.Thread(
            target=write, args=(sim, written, args, random.Random(args.seed + 1)), daemon=True
        )
        writer.start()
        env = child_environment()
        while True:
            final = written.done.is_set()
            run = Run(len(runs) + 1, workdir / f"run-{len(runs) + 1:04d}.log")
            runs.append(run)
            command = [sys.executable, str(HERE / "chaos_consumer.py")]
            command += [server.url, sim.stream_arn, str(db_path), str(run.log)]
            with open(workdir / f"run-{run.number:04d}.stderr", "wb") as stderr:
                process = subprocess.Popen(
                    command, env=env, stdout=subprocess.DEVNULL, stderr=stderr
                )
            if final:
                drain(process, run, written, runs, deadline)
            else:
                lifetime = min(rng.uniform(args.kill_min, args.kill_max), remaining(deadline))
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(lifetime)
                if process.poll() is None:
                    process.send_signal(signal.SIGKILL)
                    run.killed = True
            run.exit_code = process.wait(10)
            run.checkpoints = read_checkpoints(db_path, sim.stream_arn)
            if not run.killed and run.exit_code == 0 and written.done.is_set():
                break  # it drained the disabled stream: it was the last run
            if not run.killed and not final:
                violations.append(
                    f"run {run.number} exited by itself with code {run.exit_code}: "
                    + tail(workdir / f"run-{run.number:04d}.stderr")
                )
            if final or remaining(deadline) <= 0:
                break
        writer.join(max(0.0, remaining(deadline)))
        stream = sim_shards(sim)
        faults = Counter(server.faults)
        calls = sum(server.requests.values())
        violations += [f"SimulatorServer failed: {error}" for error in server.errors]
    if written.error is not None:
        violations.append(f"the writer failed: {written.error!r}")
    if not written.done.is_set():
        violations.append("the writer did not finish before the deadline")

    for run in runs:
        run.deliveries = read_log(run.log)
    figures = check(runs, written, stream, violations)
    seconds = time.monotonic() - started
    print(
        f"chaos: seed={args.seed} records={len(written.by_sequence)} "
        f"delivered={figures['delivered']} kills={sum(r.killed for r in runs)} "
        f"calls={calls} faults={faults.total()} (throttle={faults['throttle']} "
        f"5xx={faults['server_error']} malformed={faults['malformed']} "
        f"truncated={faults['truncated']} expired={faults['expired']}) "
        f"rollovers={written.rollovers} splits={written.splits} "
        f"duplicates={figures['duplicates']} lost={figures['lost']} seconds={seconds:.0f}"
    )
    if violations:
        print(f"{len(violations)} violation(s); logs and databases kept in {workdir}:")
        for line in violations:
            print("  " + line)
        return 1
    if args.workdir is None:
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()
    return 0


def fault_rates(args: argparse.Namespace) -> dict[str, Any]:
    """About ``--fault-rate`` of every operation's calls answered by a fault."""
    rate = args.fault_rate
    on_others = dict.fromkeys(OTHER_OPERATIONS)
    malformed_others = 0.0 if args.malformed_getrecords_only else rate * 0.15
    return {
        "throttle": {"GetRecords": rate * 0.30, **dict.fromkeys(on_others, rate * 0.5)},
        "server_error": {
            "GetRecords": rate * 0.25,
            **dict.fromkeys(on_others, rate * 0.5 - malformed_others),
        },
        "malformed": {"GetRecords": rate * 0.15, **dict.fromkeys(on_others, malformed_others)},
        "truncated": rate * 0.20,
        "expired": rate * 0.10,
    }


def write(
    sim: StreamSimulator, written: Written, args: argparse.Namespace, rng: random.Random
) -> None:
    """Write --records versioned records over --write-seconds, resharding now and then."""
    try:
        start = time.monotonic()
        next_reshard = start + rng.uniform(args.reshard_min, args.reshard_max)
        keys = [f"item-{n:04d}@example.com" for n in range(args.items)]
        for count in range(args.records):
            due = start + args.write_seconds * count / args.records
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing the writes, not waiting for a condition
            key = rng.choice(keys)
            version = written.versions.get(key, 0) + 1
            written.versions[key] = version
            item = {"email": key, "order_number": "1", "version": version}
            if version == 1:
                sequence_number = sim.insert(item)
            else:
                sequence_number = sim.modify({**item, "version": version - 1}, item)
            written.by_sequence[int(sequence_number)] = (key, version)
            if time.monotonic() >= next_reshard:
                reshard(sim, written, rng)
                next_reshard = time.monotonic() + rng.uniform(args.reshard_min, args.reshard_max)
        sim.disable()  # every shard closes: the last consumer run drains it and exits
    except BaseException as exc:
        written.error = exc
    finally:
        written.done.set()


def reshard(sim: StreamSimulator, written: Written, rng: random.Random) -> None:
    open_shards = sim.open_shard_ids()
    choice = rng.random()
    if choice < 0.45 and len(open_shards) < MAX_OPEN_SHARDS:
        sim.split(rng.choice(open_shards))
        written.splits += 1
    elif choice < 0.8:
        sim.rollover(rng.choice(open_shards))
        written.rollovers += 1
    else:
        sim.rollover()
        written.rollovers += len(open_shards)


def drain(
    process: subprocess.Popen[bytes],
    run: Run,
    written: Written,
    runs: list[Run],
    deadline: float,
) -> None:
    """Let the last run read to the end: it exits by itself once the disabled stream is
    drained. If it has not, DRAIN_GRACE seconds after the last record came, stop it."""
    seen = {seq for earlier in runs[:-1] for _, seq, _, _ in read_log(earlier.log)}
    missing = set(written.by_sequence) - seen
    offset = 0
    all_in_since: float | None = None
    while process.poll() is None and remaining(deadline) > 0:
        if all_in_since is not None and time.monotonic() - all_in_since > DRAIN_GRACE:
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(0.5)
        if run.log.exists():
            with open(run.log, "rb") as log:
                log.seek(offset)
                chunk = log.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            offset += len(complete)
            missing -= {int(line.split()[1]) for line in complete.splitlines()}
        if not missing and all_in_since is None:
            all_in_since = time.monotonic()
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # a clean stop: its checkpoints are written
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)


def check(
    runs: list[Run],
    written: Written,
    stream: dict[str, list[int]],
    violations: list[str],
) -> dict[str, int]:
    """Every property of the module docstring, over the logs and checkpoint snapshots."""
    listed: Counter[str] = Counter()

    def violation(kind: str, text: str) -> None:
        listed[kind] += 1
        if listed[kind] <= MAX_LISTED:
            violations.append(text)

    shard_of = {seq: shard for shard, seqs in stream.items() for seq in seqs}
    delivered_by: dict[int, int] = {}  # sequence number -> run of its first delivery
    first_versions: dict[str, list[int]] = defaultdict(list)
    reported_ahead: set[tuple[str, int | None, bool]] = set()
    total = 0
    for index, run in enumerate(runs):
        before = runs[index - 1].checkpoints if index else {}
        in_this_run: set[int] = set()
        last_of_shard: dict[str, int] = {}
        for shard, seq, key, version in run.deliveries:
            total += 1
            if written.by_sequence.get(seq) != (key, version) or shard_of.get(seq) != shard:
                violation("unknown", f"run {run.number}: {shard} {seq} {key} v{version} unknown")
                continue
            if seq <= last_of_shard.get(shard, -1):
                violation(
                    "shard order", f"run {run.number}: {shard} {seq} after {last_of_shard[shard]}"
                )
            last_of_shard[shard] = seq
            if seq in in_this_run:
                violation("dup", f"run {run.number} delivered {shard} {seq} twice")
            in_this_run.add(seq)
            if seq in delivered_by:
                checkpoint, finished = before.get(shard, (None, False))
                if finished or (checkpoint is not None and seq <= checkpoint):
                    violation(
                        "replay",
                        f"run {run.number} re-delivered {shard} {seq} (first in run "
                        f"{delivered_by[seq]}) though the checkpoint at the kill of run "
                        f"{run.number - 1} was {checkpoint} finished={finished}",
                    )
                continue
            delivered_by[seq] = run.number
            first_versions[key].append(version)
        # checkpoints: only delivered records, never backwards, finished means all of it
        for shard, (checkpoint, finished) in run.checkpoints.items():
            previous, was_finished = before.get(shard, (None, False))
            if (was_finished and not finished) or (
                checkpoint is not None and previous is not None and checkpoint < previous
            ):
                violation(
                    "backwards",
                    f"shard {shard}: checkpoint moved back from {previous} "
                    f"finished={was_finished} to {checkpoint} finished={finished} "
                    f"by the end of run {run.number}",
                )
            covered = [
                seq
                for seq in stream.get(shard, [])
                if finished or (checkpoint is not None and seq <= checkpoint)
            ]
            undelivered = [seq for seq in covered if seq not in delivered_by]
            if undelivered and (shard, checkpoint, finished) not in reported_ahead:
                reported_ahead.add((shard, checkpoint, finished))
                violation(
                    "ahead",
                    f"shard {shard}: checkpoint {checkpoint} finished={finished} after run "
                    f"{run.number} covers {len(undelivered)} record(s) never delivered, "
                    f"first {undelivered[0]}",
                )
    for key, versions in sorted(first_versions.items()):
        if versions != sorted(versions):
            out_of_order = next((a, b) for a, b in itertools.pairwise(versions) if b < a)
            violation(
                "order",
                f"{key}: first deliveries out of write order: v{out_of_order[0]} "
                f"before v{out_of_order[1]}",
            )
    lost = sorted(set(written.by_sequence) - set(delivered_by))
    if lost:
        violations.append(
            f"{len(lost)} record(s) never delivered, e.g. "
            + ", ".join(f"{shard_of.get(s)} {s} {written.by_sequence[s]}" for s in lost[:5])
        )
    final = runs[-1]
    if final.killed or final.exit_code != 0:
        violations.append(
            f"the last run (run {final.number}) did not drain the disabled stream and exit 0 "
            f"(exit code {final.exit_code}): " + tail(final.log.with_suffix(".stderr"))
        )
    for kind, count in listed.items():
        if count > MAX_LISTED:
            violations.append(f"... and {count - MAX_LISTED} more of kind {kind!r}")
    return {
        "delivered": len(delivered_by),
        "duplicates": total - len(delivered_by),
        "lost": len(lost),
    }


def read_checkpoints(db_path: Path, stream_arn: str) -> dict[str, tuple[int | None, bool]]:
    if not db_path.exists():
        return {}
    db = sqlite3.connect(db_path, timeout=10)
    try:
        rows = db.execute(
            "SELECT shard_id, sequence_number, finished FROM ddbstreams_checkpoints "
            "WHERE stream_arn = ?",
            (stream_arn,),
        ).fetchall()
    except sqlite3.OperationalError:  # killed before it created its table
        return {}
    finally:
        db.close()
    return {shard: (int(seq) if seq else None, bool(finished)) for shard, seq, finished in rows}


def read_log(path: Path) -> list[tuple[str, int, str, int]]:
    """The log's whole lines (each is one write: a kill should not cut one, but if it did,
    the cut line's record was not handled yet)."""
    if not path.exists():
        return []
    deliveries = []
    text = path.read_text()
    for line in text[: text.rfind("\n") + 1].splitlines():
        shard, seq, key, version = line.split()
        deliveries.append((shard, int(seq), key, int(version)))
    return deliveries


def sim_shards(sim: StreamSimulator) -> dict[str, list[int]]:
    """Every shard's sequence numbers, as written."""
    shards: dict[str, list[int]] = {}
    kwargs: dict[str, Any] = {"StreamArn": sim.stream_arn}
    while True:
        page = sim.describe_stream(**kwargs)["StreamDescription"]
        for shard in page["Shards"]:
            shard_id = shard["ShardId"]
            records = sim.records(shard_id)
            shards[shard_id] = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
        if "LastEvaluatedShardId" not in page:
            return shards
        kwargs["ExclusiveStartShardId"] = page["LastEvaluatedShardId"]


def child_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="chaos",
        AWS_SECRET_ACCESS_KEY="chaos",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return env


def remaining(deadline: float) -> float:
    return deadline - time.monotonic()


def tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no stderr)"
    return " | ".join(text[-lines:]) or "(empty stderr)"


if __name__ == "__main__":
    sys.exit(main())
