"""Delivery policies on a virtual clock: when each retry happens, what ``on_failure``
receives and when the checkpoint passes a failed record.

One shard's reader with its delivery policy is stepped by hand; the simulator's clock only
moves by the waits the reader asks for, so every time below is exact.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from ddbstreams import (
    Batching,
    BatchResult,
    ConsumerSettings,
    FailedBatch,
    InMemoryCheckpointStore,
    Record,
    RetryPolicy,
)
from ddbstreams._client import StreamsAPI
from ddbstreams._delivery import Delivery, DeliveryPolicy
from ddbstreams._lineage import ShardInfo
from ddbstreams._reader import ShardReader
from ddbstreams.testing import StreamSimulator

pytestmark = pytest.mark.timeout(60)

NO_STOP = threading.Event()
# Backoffs are ceiling * (0.5 + fraction / 2): 0.75 of the ceiling at this fraction.
FRACTION = 0.5


class PoisonError(Exception):
    pass


def item(n: int) -> dict[str, Any]:
    return {"email": f"user{n}@example.com", "order_number": "1", "n": n}


def number(record: Record) -> int:
    assert record.new_image is not None
    return int(record.new_image["n"])


class Shard:
    """One shard's reader under a delivery policy, stepped on the simulator's clock."""

    def __init__(self, sim: StreamSimulator, policy: DeliveryPolicy, handler: Any) -> None:
        self.sim = sim
        self.store = InMemoryCheckpointStore()
        self.delivery = Delivery(policy, max_shards=1)  # its lane threads and event loop
        described = sim.describe_stream(StreamArn=sim.stream_arn)
        self.reader = ShardReader(
            shard=ShardInfo.from_wire(described["StreamDescription"]["Shards"][0]),
            stream_arn=sim.stream_arn,
            api=StreamsAPI(sim, sim, attempts=3, sleep=lambda _: None),
            handler=handler,
            store=self.store,
            settings=ConsumerSettings(checkpoint_every=1, poll_interval=0.5),
            checkpoint=None,
            start_position="TRIM_HORIZON",
            clock=lambda: sim.now,
            wall_clock=sim.wall_time,
            random_fraction=lambda: FRACTION,
            delivery=self.delivery,
        )

    def run_until(self, done: Callable[[], bool], steps: int = 500) -> None:
        for _ in range(steps):
            if done():
                return
            self.sim.advance(self.reader.step(NO_STOP))
        raise AssertionError(f"not done after {steps} steps")

    def checkpoint(self) -> str | None:
        stored = self.store.load(self.sim.stream_arn, self.reader.shard_id)
        return stored.sequence_number if stored else None


def test_retries_back_off_then_a_failing_destination_holds_the_checkpoint_until_it_accepts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(3)]  # record 1 always fails
    began = sim.now
    log: list[tuple[float, str, Any]] = []
    batches: list[FailedBatch] = []

    def handle(record: Record) -> None:
        log.append((sim.now - began, "handler", number(record)))
        if number(record) == 1:
            raise PoisonError("order 1 cannot be shipped")

    def on_failure(batch: FailedBatch) -> None:
        log.append((sim.now - began, "on_failure", [number(r) for r in batch.records]))
        log.append((sim.now - began, "checkpoint", shard.checkpoint()))
        batches.append(batch)
        if len(batches) <= 2:
            raise ConnectionError("the queue is unreachable")

    retry = RetryPolicy(max_attempts=3, initial_backoff=1.0, max_backoff=100.0)
    policy = DeliveryPolicy(retry=retry, on_failure=on_failure)
    shard = Shard(sim, policy, handle)
    with caplog.at_level(logging.WARNING, logger="ddbstreams"):
        shard.run_until(lambda: shard.checkpoint() == written[2])

    # Waits of 0.75 x 1, 2, 4, 8, 16 s (doubling from initial_backoff, one failure after
    # another, the destination's included); the checkpoint stays before the poison record
    # until on_failure accepted it.
    assert log == [
        (0.0, "handler", 0),
        (0.0, "handler", 1),
        (0.75, "handler", 1),
        (2.25, "handler", 1),  # the third attempt: max_attempts
        (2.25, "on_failure", [1]),
        (2.25, "checkpoint", written[0]),
        (8.25, "on_failure", [1]),
        (8.25, "checkpoint", written[0]),
        (20.25, "on_failure", [1]),
        (20.25, "checkpoint", written[0]),
        (20.25, "handler", 2),  # at once: the lane's failures were forgotten
    ]
    batch = batches[-1]
    assert [r.raw for r in batch.records] == [sim.records(shard.reader.shard_id)[1]]
    assert (batch.reason, batch.attempts) == ("max_attempts", 3)
    assert batch.error_type.endswith("PoisonError")
    assert batch.error_message == "order 1 cannot be shipped"
    assert isinstance(batch.error, PoisonError)
    assert "PoisonError: order 1 cannot be shipped" in batch.traceback
    assert batch.traceback.startswith("Traceback (most recent call last)")
    assert (batch.stream_arn, batch.shard_id) == (sim.stream_arn, shard.reader.shard_id)
    assert batch.first_sequence_number == batch.last_sequence_number == written[1]
    assert batch.first_attempt_at == pytest.approx(sim.wall_time() - 20.25, abs=1e-6)
    assert batch.failed_at == pytest.approx(
        sim.wall_time() - 18.0, abs=1e-6
    )  # at the third attempt
    assert shard.reader.policy_counts()["records_failed_over"] == 1
    assert shard.reader._policies is not None and shard.reader._policies.retries == 2
    refused = [r.getMessage() for r in caplog.records if "did not accept" in r.getMessage()]
    assert len(refused) == 2 and f"1 record(s) of shard {shard.reader.shard_id}" in refused[0]
    assert f"({written[1]})" in refused[0], refused[0]


def test_a_failing_batch_is_split_in_halves_down_to_the_poison_record() -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(10)]  # record 5 always fails
    calls: list[list[int]] = []
    batches: list[FailedBatch] = []

    def handle(batch: list[Record]) -> None:
        calls.append([number(r) for r in batch])
        if 5 in calls[-1]:
            raise PoisonError("order 5")

    retry = RetryPolicy(max_attempts=2, bisect_on_error=True, initial_backoff=1.0)
    policy = DeliveryPolicy(
        batching=Batching(max_records=8, max_wait=0), retry=retry, on_failure=batches.append
    )
    shard = Shard(sim, policy, handle)
    shard.run_until(lambda: shard.checkpoint() == written[9])
    assert calls == [
        [0, 1, 2, 3, 4, 5, 6, 7],
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [4, 5],
        [4],
        [5],
        [5],  # its second attempt: max_attempts=2
        [6, 7],  # what was left of the half
        [8, 9],  # then the next batch
    ]
    assert [[number(r) for r in b.records] for b in batches] == [[5]]
    assert batches[0].attempts == 2
    # Splits are not attempts, and are counted as retries with the attempts before the last.
    assert shard.reader._policies is not None and shard.reader._policies.retries == 4


def test_a_partial_failure_retries_from_the_failed_record_with_its_own_attempts() -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(5)]
    calls: list[tuple[float, list[int]]] = []
    batches: list[FailedBatch] = []
    began = sim.now

    def handle(batch: list[Record]) -> BatchResult:
        calls.append((sim.now - began, [number(r) for r in batch]))
        if len(calls) == 1:
            raise PoisonError("the index is down")
        return BatchResult(failed=[r for r in batch if number(r) == 3])

    retry = RetryPolicy(max_attempts=2, initial_backoff=1.0)
    policy = DeliveryPolicy(
        batching=Batching(max_records=5, max_wait=0), retry=retry, on_failure=batches.append
    )
    shard = Shard(sim, policy, handle)
    shard.run_until(lambda: shard.checkpoint() == written[4])
    assert calls == [(0.0, [0, 1, 2, 3, 4]), (0.75, [0, 1, 2, 3, 4]), (2.25, [3, 4])]
    # What is left from the failed record on goes to on_failure, as Lambda does.
    assert [[number(r) for r in b.records] for b in batches] == [[3, 4]]
    # Records 0-2 succeeded at 0.75 s: the attempts and the first attempt's time are those
    # of record 3 on (the attempt at 0 s is not counted against it).
    assert batches[0].attempts == 2
    assert batches[0].first_attempt_at == pytest.approx(sim.wall_time() - 1.5, abs=1e-6)


@pytest.mark.parametrize(
    ("on_failure", "counter"), [("discard", "records_discarded"), (None, "records_failed_over")]
)
def test_records_given_up_are_counted_one_by_one_discarded_or_failed_over(
    on_failure: str | None, counter: str, caplog: pytest.LogCaptureFixture
) -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(4)]
    accepted: list[FailedBatch] = []

    def handle(record: Record) -> None:
        if number(record) in (1, 2):
            raise PoisonError(f"order {number(record)}")

    policy = DeliveryPolicy(
        retry=RetryPolicy(max_attempts=1), on_failure=on_failure or accepted.append
    )
    shard = Shard(sim, policy, handle)
    with caplog.at_level(logging.WARNING, logger="ddbstreams"):
        shard.run_until(lambda: shard.checkpoint() == written[3])
    assert shard.reader.policy_counts()[counter] == 2
    if on_failure == "discard":
        discarded = [r.getMessage() for r in caplog.records if "discarding" in r.getMessage()]
        assert [m.split()[2] for m in discarded] == written[1:3]
        assert all("after 1 failed attempt(s), the last: " in m for m in discarded)
    else:
        assert [[r.sequence_number for r in b.records] for b in accepted] == [
            [written[1]],
            [written[2]],
        ]


def test_the_wait_between_attempts_stops_doubling_at_max_backoff() -> None:
    sim = StreamSimulator()
    sim.insert(item(0))
    began = sim.now
    calls: list[float] = []

    def handle(record: Record) -> None:
        calls.append(sim.now - began)
        if len(calls) <= 4:
            raise PoisonError("not yet")

    retry = RetryPolicy(initial_backoff=1.0, max_backoff=2.5)  # max_attempts: forever
    shard = Shard(sim, DeliveryPolicy(retry=retry, on_failure=None), handle)
    shard.run_until(lambda: len(calls) == 5)
    assert calls == [0.0, 0.75, 2.25, 4.125, 6.0]  # waits 0.75 x 1, 2, then 2.5, 2.5


# ----------------------------------------------------------------- what a handler returns


@pytest.mark.parametrize("is_async", [False, True])
def test_a_record_handler_returning_failures_or_an_awaitable_fails_that_record(
    is_async: bool,
) -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(3)]
    batches: list[FailedBatch] = []

    async def later() -> None:
        raise AssertionError("never awaited, so never run")

    def outcome(record: Record) -> Any:
        if number(record) == 0:
            return BatchResult(failed=[record])  # a batch handler's answer
        if number(record) == 1 and not is_async:
            return later()  # a plain function around an async one
        return None

    if is_async:

        async def handle(record: Record) -> Any:
            return outcome(record)

    else:

        def handle(record: Record) -> Any:
            return outcome(record)

    policy = DeliveryPolicy(
        retry=RetryPolicy(max_attempts=1), on_failure=batches.append, is_async=is_async
    )
    shard = Shard(sim, policy, handle)
    try:
        shard.run_until(lambda: shard.checkpoint() == written[2])
    finally:
        shard.delivery.close()
    failed = {b.first_sequence_number: b.error_message for b in batches}
    assert list(failed) == (written[:1] if is_async else written[:2])
    assert failed[written[0]] == (
        f"the handler returned a BatchResult for record {written[0]}: a record handler fails "
        "a record by raising; BatchResult is for batch handlers (batching=Batching(...))"
    )
    if not is_async:
        assert failed[written[1]].startswith(f"the handler {handle!r} returned an awaitable for ")
        assert f"record {written[1]}, which was never awaited" in failed[written[1]]
