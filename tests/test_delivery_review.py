"""Findings of the adversarial review of the delivery engine, each a test that failed
before its fix: an async on_failure, handlers that change their batch, a malformed
BatchResult, lane threads at interpreter exit, a handover waiting for lanes, and the
error of records that failed and then aged out."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from conftest import FAST
from ddbstreams import (
    Batching,
    BatchResult,
    ConsumerSettings,
    DynamoDBCheckpointStore,
    FailedBatch,
    InMemoryCheckpointStore,
    Record,
    RetryPolicy,
    StreamConsumer,
)
from ddbstreams.testing import LocalEndpoint, StreamSimulator
from test_delivery import WAIT, Until, item, numbers, run_until
from test_groups import Atomic

HERE = Path(__file__).parent


def test_an_async_on_failure_is_awaited_before_the_checkpoint_moves() -> None:
    sim = StreamSimulator()
    sequence = [sim.insert(item(n)) for n in range(3)]
    store = InMemoryCheckpointStore()
    log: list[str] = []
    until = Until(lambda: "handled 2" in log)

    async def on_failure(batch: FailedBatch) -> None:  # an aiobotocore send, say
        checkpoint = store.load(sim.stream_arn, batch.shard_id)
        position = checkpoint.sequence_number if checkpoint else None
        log.append(f"destination got {numbers(list(batch.records))} at {position}")

    async def handle(record: Record) -> None:
        if numbers([record]) == [1]:
            raise ValueError("poison")
        log.append(f"handled {numbers([record])[0]}")
        until.poke()

    run_until(until, handle, sim, checkpoint_store=store, retry=RetryPolicy(max_attempts=1),
              on_failure=on_failure)  # fmt: skip
    assert log[1] in (f"destination got [1] at {sequence[0]}", "destination got [1] at None")
    assert log == ["handled 0", log[1], "handled 2"]


def test_a_handler_that_sorts_its_batch_does_not_move_the_failure() -> None:
    sim = StreamSimulator()
    for n in range(3):
        sim.insert(item(n))
    calls: list[list[int]] = []
    until = Until(lambda: len(calls) >= 2)

    def handle(batch: list[Record]) -> BatchResult:
        calls.append(numbers(batch))
        batch.sort(key=lambda r: -numbers([r])[0])  # newest first, in place
        until.poke()
        return BatchResult(failed=[r for r in batch if len(calls) == 1 and numbers([r]) == [0]])

    run_until(until, handle, sim, batching=Batching(3))
    assert calls[:2] == [[0, 1, 2], [0, 1, 2]]  # the retry starts at record 0, which failed


def test_a_handler_that_empties_its_batch_is_not_called_with_it_again() -> None:
    sim = StreamSimulator()
    for n in range(3):
        sim.insert(item(n))
    calls: list[list[int]] = []
    until = Until(lambda: 3 in {n for call in calls for n in call})

    def handle(batch: list[Record]) -> None:
        calls.append(numbers(batch))
        until.poke()
        while batch:  # a work list, emptied as it is processed
            batch.pop()

    consumer = StreamConsumer(handle, stream_arn=sim.stream_arn, client=sim, settings=FAST,
                              batching=Batching(3))  # fmt: skip
    with consumer:
        sim.insert(item(3))  # comes after the first batch, whatever happened to it
        until.event.wait(WAIT)
    assert calls == [[0, 1, 2], [3]]


def test_a_batch_result_with_one_record_instead_of_a_list_fails_only_its_batch() -> None:
    sim = StreamSimulator()
    for n in range(2):
        sim.insert(item(n))
    failed: list[FailedBatch] = []
    until = Until(lambda: bool(failed))

    def give_up(batch: FailedBatch) -> None:
        failed.append(batch)
        until.poke()

    consumer = StreamConsumer(
        lambda batch: BatchResult(failed=batch[0]), stream_arn=sim.stream_arn, client=sim,
        settings=FAST, batching=Batching(3), retry=RetryPolicy(max_attempts=1),
        on_failure=give_up,
    )  # fmt: skip
    with consumer:
        until.wait()
        assert consumer.running  # the batch failed; the consumer did not
    assert "write BatchResult(failed=[record])" in failed[0].error_message


def test_records_that_failed_then_aged_out_carry_their_last_error() -> None:
    sim = StreamSimulator()
    sim.insert(item(0))
    failed: list[FailedBatch] = []
    calls: list[int] = []
    until = Until(lambda: bool(failed))

    def handle(record: Record) -> None:
        calls.append(1)
        if len(calls) == 2:
            sim.advance(120)  # by the next try, it is older than max_record_age
        raise RuntimeError("downstream refused it")

    def give_up(batch: FailedBatch) -> None:
        failed.append(batch)
        until.poke()

    retry = RetryPolicy(max_record_age=60, initial_backoff=0.001, max_backoff=0.01)
    run_until(until, handle, sim, retry=retry, on_failure=give_up)
    (batch,) = failed
    assert (batch.reason, batch.attempts) == ("max_record_age", 2)
    assert batch.error_type == "RuntimeError" and "downstream refused it" in batch.traceback


def test_a_record_handler_returning_a_batch_result_with_failures_fails_the_record() -> None:
    sim = StreamSimulator()
    sim.insert(item(0))
    failed: list[FailedBatch] = []
    until = Until(lambda: bool(failed))

    def give_up(batch: FailedBatch) -> None:
        failed.append(batch)
        until.poke()

    run_until(until, lambda record: BatchResult(failed=[record]), sim, parallelism=2,
              retry=RetryPolicy(max_attempts=1), on_failure=give_up)  # fmt: skip
    assert "BatchResult is for batch handlers" in failed[0].error_message


@pytest.mark.parametrize("parallelism", [1, 2])
def test_a_stuck_handler_on_a_lane_does_not_hold_the_interpreter_s_exit(parallelism: int) -> None:
    child = HERE / "lane_exit_child.py"
    done = subprocess.run([sys.executable, str(child), str(parallelism)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert "handler running; main returns" in done.stdout  # then exits after the grace


def test_a_healthy_consumer_with_lanes_stops_cleanly_at_interpreter_exit() -> None:
    child = HERE / "lane_exit_healthy_child.py"
    done = subprocess.run([sys.executable, str(child)], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert "records flowing" in done.stdout
    assert "stopped on an error" not in done.stderr, done.stderr[-2000:]


@pytest.mark.local_endpoint
@pytest.mark.moto_only(reason="the lease table on moto, made atomic by a lock")
def test_a_handover_does_not_stop_the_worker_heartbeating_while_lanes_finish(
    local_endpoint: LocalEndpoint,
) -> None:
    sim = StreamSimulator(shard_count=2)
    for n in range(40):
        sim.insert(item(n))
    client = Atomic(boto3.client("dynamodb", **local_endpoint.client_kwargs()))
    store = DynamoDBCheckpointStore(f"leases-handover-{time.time_ns()}", client=client,
                                    lease_duration=1.0)  # fmt: skip
    settings = ConsumerSettings(poll_interval=0.02, discovery_interval=0.5)
    release = threading.Event()
    blocked: set[str] = set()
    both_blocked = threading.Event()

    def slow_batch(batch: list[Record]) -> None:  # a batch call that takes a while
        blocked.add(batch[0].shard_id)
        if len(blocked) == 2:
            both_blocked.set()
        release.wait(WAIT)

    common: dict[str, Any] = {
        "client": sim, "checkpoint_store": store, "settings": settings,
        "stream_arn": sim.stream_arn, "batching": Batching(5),
    }  # fmt: skip
    a = StreamConsumer(slow_batch, worker_id="a", parallelism=2, **common)
    b = StreamConsumer(lambda batch: None, worker_id="b", **common)
    try:
        a.start()
        assert both_blocked.wait(WAIT)
        b.start()
        # b asks for one shard; a hands it over once that lane's call ends (it does not:
        # still blocked). Meanwhile a must go on heartbeating and keep its other shard.
        deadline = time.monotonic() + 6 * store.lease_duration
        while time.monotonic() < deadline:
            owners = [lease.owner for lease in store.leases(sim.stream_arn)]
            assert owners.count("b") < 2, "a lost every lease: it stopped heartbeating"
            threading.Event().wait(0.1)
    finally:
        release.set()
        for consumer in (a, b):
            consumer.stop(WAIT)
