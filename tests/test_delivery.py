"""Delivery policies on the simulator: batches, partial failures, retries, bisection,
giving up to on_failure, per-key lanes and async handlers."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FAST
from ddbstreams import (
    Batching,
    BatchResult,
    ConfigurationError,
    ConsumerSettings,
    FailedBatch,
    InMemoryCheckpointStore,
    Record,
    RetryPolicy,
    StreamConsumer,
)
from ddbstreams.testing import StreamSimulator

WAIT = 20.0


def item(n: int, key: int | None = None) -> dict[str, Any]:
    return {"email": f"user{n if key is None else key}@example.com", "order_number": "1", "n": n}


def numbers(records: list[Record]) -> list[int]:
    assert all(r.new_image is not None for r in records)
    return [int(r.new_image["n"]) for r in records]  # type: ignore[index]


class Until:
    """An event set once ``condition`` holds; checked whenever ``poke`` is called."""

    def __init__(self, condition: Callable[[], bool]) -> None:
        self.condition = condition
        self.event = threading.Event()

    def poke(self) -> None:
        if self.condition():
            self.event.set()

    def wait(self) -> None:
        assert self.event.wait(WAIT), "the consumer did not get there in time"


def run_until(until: Until, handler: Any, sim: StreamSimulator, **kwargs: Any) -> StreamConsumer:
    kwargs.setdefault("settings", FAST)
    consumer = StreamConsumer(handler, stream_arn=sim.stream_arn, client=sim, **kwargs)
    with consumer:
        until.wait()
    return consumer


# ----------------------------------------------------------------------------- batching


def test_batches_hold_at_most_max_records_of_one_shard_in_order() -> None:
    sim = StreamSimulator(shard_count=3)
    for n in range(100):
        sim.insert(item(n))
    batches: list[list[Record]] = []
    lock = threading.Lock()
    until = Until(lambda: sum(map(len, batches)) >= 100)

    def handle(batch: list[Record]) -> None:
        with lock:
            batches.append(list(batch))
        until.poke()

    run_until(until, handle, sim, batching=Batching(max_records=7))
    assert all(1 <= len(b) <= 7 for b in batches)
    assert all(len({r.shard_id for r in b}) == 1 for b in batches)
    by_shard: dict[str, list[int]] = {}
    for batch in batches:
        by_shard.setdefault(batch[0].shard_id, []).extend(numbers(batch))
    assert sorted(n for ns in by_shard.values() for n in ns) == list(range(100))
    for shard_numbers in by_shard.values():
        assert shard_numbers == sorted(shard_numbers)  # each once, in write order


def test_a_batch_fills_across_pages_until_full() -> None:
    sim = StreamSimulator()
    for n in range(10):
        sim.insert(item(n))
    batches: list[list[int]] = []
    until = Until(lambda: sum(map(len, batches)) >= 10)

    def handle(batch: list[Record]) -> None:
        batches.append(numbers(batch))
        until.poke()

    two_per_page = ConsumerSettings(poll_interval=0.01, batch_size=2)
    run_until(until, handle, sim, settings=two_per_page, batching=Batching(10, max_wait=60))
    assert batches == [list(range(10))]
    assert sim.calls["GetRecords"] >= 5  # it took five pages to fill


def test_a_shard_end_hands_over_what_is_left_without_waiting() -> None:
    sim = StreamSimulator()
    for n in range(3):
        sim.insert(item(n))
    sim.rollover()
    sim.insert(item(3))
    batches: list[list[int]] = []
    until = Until(lambda: bool(batches))

    def handle(batch: list[Record]) -> None:
        batches.append(numbers(batch))
        until.poke()

    # Within WAIT (20 s), well before max_wait (60 s): the parent's end did not wait.
    run_until(until, handle, sim, batching=Batching(100, max_wait=60))
    assert batches == [[0, 1, 2]]  # the child's lone record still waits for max_wait


def test_max_wait_hands_over_a_batch_that_is_not_full() -> None:
    sim = StreamSimulator()
    for n in range(3):
        sim.insert(item(n))
    batches: list[list[int]] = []
    until = Until(lambda: bool(batches))

    def handle(batch: list[Record]) -> None:
        batches.append(numbers(batch))
        until.poke()

    one_per_page = ConsumerSettings(poll_interval=0.01, batch_size=1)
    run_until(until, handle, sim, settings=one_per_page, batching=Batching(100, max_wait=1.0))
    assert batches[0] == [0, 1, 2]  # three pages in one batch, handed over before full


# ----------------------------------------------------------------------- partial failures


def test_batch_result_moves_the_checkpoint_to_just_before_the_earliest_failure() -> None:
    sim = StreamSimulator()
    sequence = [sim.insert(item(n)) for n in range(6)]
    store = InMemoryCheckpointStore()
    calls: list[tuple[list[int], str | None]] = []
    until = Until(lambda: len(calls) >= 2)

    def handle(batch: list[Record]) -> BatchResult | None:
        checkpoint = store.load(sim.stream_arn, batch[0].shard_id)
        calls.append((numbers(batch), checkpoint.sequence_number if checkpoint else None))
        until.poke()
        if len(calls) == 1:
            return BatchResult(failed=[batch[4], batch[2]])
        return None

    every = ConsumerSettings(poll_interval=0.01, checkpoint_every=1, handler_retry_initial=0.01)
    run_until(until, handle, sim, settings=every, checkpoint_store=store, batching=Batching(10))
    assert calls[0] == ([0, 1, 2, 3, 4, 5], None)
    # The retry starts at the earliest failed record (2), after a checkpoint at record 1;
    # records 3 and 5 come again although they did not fail (as with Lambda).
    assert calls[1] == ([2, 3, 4, 5], sequence[1])


def test_batch_result_naming_records_not_in_the_batch_is_a_failure_naming_them() -> None:
    sim = StreamSimulator()
    for n in range(3):
        sim.insert(item(n))
    stranger = Record({"dynamodb": {"SequenceNumber": "999"}}, "shardId-x")
    failed: list[FailedBatch] = []
    until = Until(lambda: bool(failed))

    def give_up(batch: FailedBatch) -> None:
        failed.append(batch)
        until.poke()

    run_until(
        until,
        lambda batch: BatchResult(failed=[stranger]),
        sim,
        batching=Batching(10),
        retry=RetryPolicy(max_attempts=1),
        on_failure=give_up,
    )
    (batch,) = failed
    assert batch.error_type == "ddbstreams._errors.HandlerResultError"
    assert "not in the batch: 999" in batch.error_message
    assert numbers(list(batch.records)) == [0, 1, 2]


# --------------------------------------------------------------- retries and giving up


def test_bisect_isolates_the_poison_record_in_log2_plus_one_failing_calls() -> None:
    sim = StreamSimulator()
    for n in range(16):
        sim.insert(item(n))
    calls: list[tuple[list[int], bool]] = []
    failed: list[FailedBatch] = []
    until = Until(lambda: bool(failed) and 15 in {n for ns, ok in calls if ok for n in ns})

    def handle(batch: list[Record]) -> None:
        got = numbers(batch)
        poisoned = 5 in got
        calls.append((got, not poisoned))
        until.poke()
        if poisoned:
            raise ValueError("record 5 cannot be handled")

    def give_up(batch: FailedBatch) -> None:
        failed.append(batch)
        until.poke()

    retry = RetryPolicy(max_attempts=3, bisect_on_error=True, initial_backoff=0.001)
    run_until(until, handle, sim, batching=Batching(16), retry=retry, on_failure=give_up)
    failing = [got for got, ok in calls if not ok]
    # 16, 8, 4, 2 then the record alone (log2(16) + 1 = 5 calls), then its 2 more attempts.
    assert [len(got) for got in failing] == [16, 8, 4, 2, 1, 1, 1]
    (batch,) = failed
    assert numbers(list(batch.records)) == [5]
    assert (batch.reason, batch.attempts) == ("max_attempts", 3)
    assert batch.error_type == "ValueError" and "record 5 cannot be handled" in batch.traceback
    assert batch.records[0].raw["dynamodb"]["NewImage"]["n"] == {"N": "5"}  # the wire form
    succeeded = [n for got, ok in calls if ok for n in got]
    assert sorted(succeeded) == [n for n in range(16) if n != 5]  # each exactly once


def test_without_bisect_the_whole_batch_goes_to_on_failure_and_the_shard_goes_on() -> None:
    sim = StreamSimulator()
    sequence = [sim.insert(item(n)) for n in range(6)]
    store = InMemoryCheckpointStore()
    failed: list[FailedBatch] = []
    later: list[int] = []
    until = Until(lambda: 5 in later)

    def handle(batch: list[Record]) -> None:
        got = numbers(batch)
        if 1 in got:
            raise RuntimeError("downstream said no")
        later.extend(got)
        until.poke()

    retry = RetryPolicy(max_attempts=2, initial_backoff=0.001)
    run_until(
        until,
        handle,
        sim,
        checkpoint_store=store,
        batching=Batching(3),
        retry=retry,
        on_failure=failed.append,
    )
    (batch,) = failed
    assert numbers(list(batch.records)) == [0, 1, 2]
    assert (batch.first_sequence_number, batch.last_sequence_number) == (sequence[0], sequence[2])
    assert batch.attempts == 2 and batch.first_attempt_at is not None
    assert later == [3, 4, 5]
    checkpoint = store.load(sim.stream_arn, batch.shard_id)
    assert checkpoint is not None and checkpoint.sequence_number == sequence[5]


def test_a_record_handler_gives_up_on_the_failing_record_alone() -> None:
    sim = StreamSimulator()
    for n in range(4):
        sim.insert(item(n))
    failed: list[FailedBatch] = []
    handled: list[int] = []
    until = Until(lambda: 3 in handled)

    def handle(record: Record) -> None:
        if numbers([record]) == [1]:
            raise KeyError("no such customer")
        handled.extend(numbers([record]))
        until.poke()

    retry = RetryPolicy(max_attempts=2, initial_backoff=0.001)
    run_until(until, handle, sim, retry=retry, on_failure=failed.append)
    assert handled == [0, 2, 3]
    assert [numbers(list(b.records)) for b in failed] == [[1]]


def test_records_older_than_max_record_age_go_to_on_failure_without_a_call() -> None:
    sim = StreamSimulator()
    for n in range(3):
        sim.insert(item(n))
    sim.advance(7200)
    sim.insert(item(3))
    failed: list[FailedBatch] = []
    handled: list[int] = []
    until = Until(lambda: 3 in handled)

    def handle(batch: list[Record]) -> None:
        handled.extend(numbers(batch))
        until.poke()

    retry = RetryPolicy(max_record_age=3600)
    run_until(until, handle, sim, batching=Batching(10), retry=retry, on_failure=failed.append)
    assert handled == [3]
    (batch,) = failed
    assert numbers(list(batch.records)) == [0, 1, 2]
    assert (batch.reason, batch.attempts, batch.error_type) == ("max_record_age", 0, "")


def test_a_failing_destination_holds_the_checkpoint_and_loses_nothing() -> None:
    sim = StreamSimulator()
    sequence = [sim.insert(item(n)) for n in range(3)]
    store = InMemoryCheckpointStore()
    log: list[str] = []
    accepted: list[FailedBatch] = []
    until = Until(lambda: "handled 2" in log)

    def handle(record: Record) -> None:
        (n,) = numbers([record])
        if n == 1:
            raise ValueError("poison")
        log.append(f"handled {n}")
        until.poke()

    def flaky_destination(batch: FailedBatch) -> None:
        checkpoint = store.load(sim.stream_arn, batch.shard_id)
        position = checkpoint.sequence_number if checkpoint else None
        passed = position is not None and int(position) >= int(sequence[1])
        log.append("checkpoint past the record!" if passed else "checkpoint before it")
        if len(accepted) == 0 and log.count("destination refused") < 3:
            log.append("destination refused")
            raise ConnectionError("queue unreachable")
        accepted.append(batch)
        log.append("destination accepted")

    every = ConsumerSettings(poll_interval=0.01, checkpoint_every=1)
    retry = RetryPolicy(max_attempts=1, initial_backoff=0.001, max_backoff=0.01)
    run_until(
        until, handle, sim, settings=every, checkpoint_store=store, retry=retry,
        on_failure=flaky_destination,
    )  # fmt: skip
    before = "checkpoint before it"
    assert log == [
        "handled 0",
        *[before, "destination refused"] * 3,
        before,
        "destination accepted",
        "handled 2",
    ]
    assert numbers(list(accepted[0].records)) == [1]


def test_discard_logs_each_record_as_an_error_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = StreamSimulator()
    sequence = [sim.insert(item(n)) for n in range(3)]
    handled: list[int] = []
    until = Until(lambda: 2 in handled)

    def handle(record: Record) -> None:
        if numbers([record]) == [1]:
            raise ValueError("poison")
        handled.extend(numbers([record]))
        until.poke()

    with caplog.at_level(logging.ERROR, logger="ddbstreams"):
        consumer = run_until(
            until, handle, sim, retry=RetryPolicy(max_attempts=1), on_failure="discard"
        )
    (status,) = consumer.shards()
    assert (status.records_discarded, status.records_failed_over) == (1, 0)
    assert status.records_delivered == 3  # done: two handled, one discarded
    discards = [r.getMessage() for r in caplog.records if "discarding record" in r.getMessage()]
    assert len(discards) == 1 and sequence[1] in discards[0]
    assert handled == [0, 2]


# ------------------------------------------------------------------------- parallelism


def keys_in_distinct_lanes(lanes: int) -> list[int]:
    """Keys whose first records land in different lanes: an item without records in hand
    goes to the lane with the least to do (the first of them on a tie), so distinct items
    written first to idle lanes spread one per lane."""
    return list(range(lanes))


def test_lanes_run_at_the_same_time() -> None:
    sim = StreamSimulator()
    keys = keys_in_distinct_lanes(4)
    for n, key in enumerate(keys):
        sim.insert(item(n, key))
    barrier = threading.Barrier(4, timeout=WAIT)
    passed: list[int] = []
    until = Until(lambda: len(passed) == 4)

    def handle(record: Record) -> None:
        barrier.wait()  # only returns once four records are being handled at once
        passed.extend(numbers([record]))
        until.poke()

    run_until(until, handle, sim, parallelism=4)
    assert sorted(passed) == [0, 1, 2, 3]


def test_the_checkpoint_never_passes_a_record_still_being_handled() -> None:
    sim = StreamSimulator()
    slow_key, fast_key = keys_in_distinct_lanes(2)
    sequence = [sim.insert(item(0, slow_key))]
    sequence += [sim.insert(item(n, fast_key)) for n in range(1, 6)]
    shard_id = sim.open_shard_ids()[0]
    store = InMemoryCheckpointStore()
    release = threading.Event()
    handled: list[int] = []
    fast_done, all_done = Until(lambda: 6 in handled), Until(lambda: 0 in handled)
    later = Until(lambda: 5 in handled)

    def handle(record: Record) -> None:
        (n,) = numbers([record])
        if n == 0:
            assert release.wait(WAIT)
        handled.append(n)
        for until in (later, fast_done, all_done):
            until.poke()

    every = ConsumerSettings(poll_interval=0.01, checkpoint_every=1, checkpoint_interval=0)
    consumer = StreamConsumer(
        handle, stream_arn=sim.stream_arn, client=sim, settings=every,
        checkpoint_store=store, parallelism=2,
    )  # fmt: skip
    with consumer:
        later.wait()
        # Record 6 starts only after the step that took the outcome of records 1-5 has
        # moved the checkpoint as far as it would: not past record 0, still in hand.
        sequence.append(sim.insert(item(6, fast_key)))
        fast_done.wait()
        checkpoint = store.load(sim.stream_arn, shard_id)
        assert checkpoint is None or checkpoint.sequence_number is None
        release.set()
        all_done.wait()
    assert handled == [1, 2, 3, 4, 5, 6, 0]
    checkpoint = store.load(sim.stream_arn, shard_id)
    assert checkpoint is not None and checkpoint.sequence_number == sequence[6]


writes = st.lists(st.integers(0, 11), min_size=1, max_size=60)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(writes, st.integers(1, 8), st.booleans(), st.sampled_from([1, 7, 100]))
def test_each_item_s_records_arrive_in_write_order_under_parallelism(
    keys: list[int], parallelism: int, batched: bool, max_records: int
) -> None:
    sim = StreamSimulator(shard_count=2)
    written: dict[int, list[int]] = {}
    for n, key in enumerate(keys):
        sim.insert(item(n, key))
        written.setdefault(key, []).append(n)
    delivered: dict[int, list[int]] = {}
    lock = threading.Lock()
    until = Until(lambda: sum(map(len, delivered.values())) >= len(keys))

    def take(records: list[Record]) -> None:
        with lock:
            for record in records:
                key = int(record.keys["email"][4:].split("@")[0])
                delivered.setdefault(key, []).extend(numbers([record]))
        until.poke()

    def handle(got: Any) -> None:
        take(got if batched else [got])

    run_until(
        until,
        handle,
        sim,
        settings=ConsumerSettings(poll_interval=0.005),
        parallelism=parallelism,
        batching=Batching(max_records) if batched else None,
    )
    assert delivered == written


def test_records_queued_past_a_stuck_lane_are_not_read_twice_after_an_iterator_expires() -> None:
    sim = StreamSimulator()
    slow_key, fast_key = keys_in_distinct_lanes(2)
    sim.insert(item(0, slow_key))
    for n in range(1, 4):
        sim.insert(item(n, fast_key))
    release = threading.Event()
    handled: list[int] = []
    lock = threading.Lock()
    stages = [Until(lambda: 3 in handled), Until(lambda: 5 in handled), Until(lambda: 0 in handled)]

    def handle(record: Record) -> None:
        (n,) = numbers([record])
        if n == 0 and not release.is_set():
            raise RuntimeError("not yet")  # its lane retries while the other goes on
        with lock:
            handled.append(n)
        for stage in stages:
            stage.poke()

    retry = RetryPolicy(initial_backoff=0.005, max_backoff=0.02)
    with StreamConsumer(handle, stream_arn=sim.stream_arn, client=sim, settings=FAST,
                        parallelism=2, retry=retry):  # fmt: skip
        stages[0].wait()
        sim.expire_iterators()  # the next page needs a new iterator: after record 3, not 0
        sim.insert(item(4, fast_key))
        sim.insert(item(5, fast_key))
        stages[1].wait()
        release.set()
        stages[2].wait()
    assert sorted(handled) == [0, 1, 2, 3, 4, 5]  # each once


# ---------------------------------------------------------------------- async handlers


def test_async_batch_handlers_run_as_tasks_of_one_event_loop() -> None:
    sim = StreamSimulator()
    keys = keys_in_distinct_lanes(3)
    for n, key in enumerate(keys):
        sim.insert(item(n, key))
    loops: set[int] = set()
    passed: list[int] = []
    until = Until(lambda: len(passed) == 3)
    barrier: asyncio.Barrier | None = None

    async def handle(batch: list[Record]) -> None:
        nonlocal barrier
        loops.add(id(asyncio.get_running_loop()))
        barrier = barrier or asyncio.Barrier(3)
        await asyncio.wait_for(barrier.wait(), WAIT)  # three lanes at once, on one loop
        passed.extend(numbers(batch))
        until.poke()

    run_until(until, handle, sim, parallelism=3, batching=Batching(10))
    assert sorted(passed) == [0, 1, 2] and len(loops) == 1


def test_an_async_record_handler_is_awaited_and_retried() -> None:
    sim = StreamSimulator()
    for n in range(3):
        sim.insert(item(n))
    calls: list[int] = []
    until = Until(lambda: calls[-1:] == [2])

    async def handle(record: Record) -> None:
        await asyncio.sleep(0)
        calls.extend(numbers([record]))
        until.poke()
        if calls == [0, 1]:
            raise TimeoutError("first try at record 1 fails")

    run_until(until, handle, sim)
    assert calls == [0, 1, 1, 2]


# ------------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retry": RetryPolicy(max_attempts=3)}, "needs somewhere to put them"),
        ({"retry": RetryPolicy(max_record_age=60)}, "on_failure='discard'"),
        ({"on_failure": print}, "never called with the default retry policy"),
        ({"on_failure": "drop", "retry": RetryPolicy(max_attempts=1)}, "callable taking"),
        ({"retry": RetryPolicy(bisect_on_error=True)}, "it needs batching="),
        ({"parallelism": 0}, "parallelism must be a whole number from 1 to 100, not 0"),
        ({"parallelism": 101}, "not 101"),
        ({"batching": 100}, "batching must be a ddbstreams.Batching"),
        ({"retry": 3}, "retry must be a ddbstreams.RetryPolicy"),
    ],
)
def test_bad_delivery_settings_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        StreamConsumer(print, stream_arn=StreamSimulator().stream_arn, client=StreamSimulator(),
                       **kwargs)  # fmt: skip


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Batching(max_records=0), "Batching.max_records must be a whole number from 1"),
        (lambda: Batching(max_records=10_001), "not 10001"),
        (lambda: Batching(max_wait=-1), "Batching.max_wait must be a number of seconds"),
        (lambda: RetryPolicy(max_attempts=0), "RetryPolicy.max_attempts"),
        (lambda: RetryPolicy(max_record_age=0), "RetryPolicy.max_record_age"),
        (lambda: RetryPolicy(initial_backoff=2, max_backoff=1), "at least initial_backoff"),
        (lambda: RetryPolicy(bisect_on_error="yes"), "True or False"),  # type: ignore[arg-type]
    ],
)
def test_bad_policy_values_are_named(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make()


def test_a_record_that_cannot_be_decoded_fails_like_any_other_and_keeps_its_wire_form() -> None:
    sim = StreamSimulator()
    for n in range(3):
        sim.insert(item(n))
    (shard_id,) = sim.open_shard_ids()
    too_precise = {"N": "1.00000000000000000000000000000000000000001"}  # 42 digits: Inexact
    sim.records(shard_id)[1]["dynamodb"]["NewImage"]["n"] = too_precise
    failed: list[FailedBatch] = []
    handled: list[int] = []
    until = Until(lambda: 2 in handled)

    def handle(record: Record) -> None:
        handled.extend(numbers([record]))  # decoding the image raises for record 1
        until.poke()

    run_until(until, handle, sim, retry=RetryPolicy(max_attempts=2, initial_backoff=0.001),
              on_failure=failed.append)  # fmt: skip
    assert handled == [0, 2]
    (batch,) = failed
    assert batch.records[0].raw["dynamodb"]["NewImage"]["n"] == too_precise
    assert batch.error_type.startswith("decimal.") and batch.attempts == 2


@pytest.mark.parametrize("use_async", [False, True])
def test_stop_from_a_handler_on_a_lane_or_the_event_loop_returns_at_once(use_async: bool) -> None:
    sim = StreamSimulator()
    for n, key in enumerate(keys_in_distinct_lanes(2)):
        sim.insert(item(n, key))
    answers: list[bool] = []
    consumer: StreamConsumer

    def stop_here(record: Record) -> None:
        answers.append(consumer.stop(timeout=WAIT))  # waiting would wait for itself

    async def stop_here_async(record: Record) -> None:
        stop_here(record)

    consumer = StreamConsumer(
        stop_here_async if use_async else stop_here,
        stream_arn=sim.stream_arn, client=sim, settings=FAST, parallelism=2,
    )  # fmt: skip
    consumer.start()
    assert consumer.wait(WAIT)
    assert answers and not any(answers)


@pytest.mark.parametrize("use_async", [False, True])
def test_a_slow_lane_does_not_hold_the_others_back(use_async: bool) -> None:
    sim = StreamSimulator()
    slow_key, fast_key = keys_in_distinct_lanes(2)
    sim.insert(item(0, slow_key))
    sim.insert(item(1, fast_key))
    release = threading.Event()
    handled: list[int] = []
    stages = [Until(lambda: 1 in handled), Until(lambda: 3 in handled), Until(lambda: 0 in handled)]

    def note(record: Record) -> None:
        handled.extend(numbers([record]))
        for stage in stages:
            stage.poke()

    def handle(record: Record) -> None:
        if numbers([record]) == [0]:
            assert release.wait(WAIT)
        note(record)

    async def handle_async(record: Record) -> None:
        if numbers([record]) == [0]:
            assert await asyncio.to_thread(release.wait, WAIT)
        note(record)

    with StreamConsumer(handle_async if use_async else handle, stream_arn=sim.stream_arn,
                        client=sim, settings=FAST, parallelism=2):  # fmt: skip
        stages[0].wait()
        sim.insert(item(2, fast_key))  # fetched and handled while record 0 is still in hand
        sim.insert(item(3, fast_key))
        stages[1].wait()
        assert 0 not in handled
        release.set()
        stages[2].wait()
    assert handled == [1, 2, 3, 0]


@pytest.mark.parametrize("parallelism", [1, 2])
def test_a_plain_function_returning_an_awaitable_is_a_failure_not_a_silent_skip(
    parallelism: int,
) -> None:
    sim = StreamSimulator()
    sim.insert(item(0))
    awaited: list[int] = []

    async def really_handle(record: Record) -> None:
        awaited.extend(numbers([record]))

    failed: list[FailedBatch] = []
    until = Until(lambda: bool(failed))

    def give_up(batch: FailedBatch) -> None:
        failed.append(batch)
        until.poke()

    run_until(
        until, lambda record: really_handle(record), sim, parallelism=parallelism,
        retry=RetryPolicy(max_attempts=1), on_failure=give_up,
    )  # fmt: skip
    assert awaited == []
    assert "never awaited: pass the async def function itself" in failed[0].error_message


def test_the_plain_path_refuses_an_awaitable_too() -> None:
    sim = StreamSimulator()
    sim.insert(item(0))
    consumer = StreamConsumer(lambda record: asyncio.sleep(0), stream_arn=sim.stream_arn,
                              client=sim, settings=FAST)  # fmt: skip
    with consumer:
        deadline = time.monotonic() + WAIT
        while not consumer.shards() or consumer.shards()[0].failure_kind is None:
            assert time.monotonic() < deadline
            threading.Event().wait(0.01)
        (status,) = consumer.shards()
    assert status.failure_kind == "handler" and status.records_delivered == 0
    assert "never awaited" in (status.last_error or "")


# ----------------------------------------------------------------------------- filters


def test_records_the_filter_passes_over_are_checkpointed_without_a_call() -> None:
    sim = StreamSimulator()
    sequence = [sim.insert(item(n)) for n in range(3)]
    sequence.append(sim.modify(item(1), {**item(1), "status": "shipped"}))
    sequence.append(sim.remove(item(2)))
    store = InMemoryCheckpointStore()
    calls: list[list[str]] = []
    until = Until(lambda: bool(calls))

    def handle(batch: list[Record]) -> None:
        calls.append([r.event_name for r in batch])
        until.poke()

    every = ConsumerSettings(poll_interval=0.01, checkpoint_every=1)
    consumer = run_until(
        until, handle, sim, settings=every, checkpoint_store=store, batching=Batching(10),
        filter={"eventName": ["MODIFY"], "dynamodb": {"NewImage": {"status": {"S": ["shipped"]}}}},
    )  # fmt: skip
    assert calls == [["MODIFY"]]
    (status,) = consumer.shards()
    assert (status.records_filtered, status.records_delivered) == (4, 5)
    checkpoint = store.load(sim.stream_arn, status.shard_id)
    assert checkpoint is not None and checkpoint.sequence_number == sequence[-1]


def test_a_malformed_filter_is_refused_when_the_consumer_is_built() -> None:
    sim = StreamSimulator()
    with pytest.raises(ConfigurationError, match=r"invalid filter: .*prefix"):
        StreamConsumer(print, stream_arn=sim.stream_arn, client=sim,
                       filter={"eventName": [{"prefix": 3}]})  # fmt: skip


def test_attempts_count_from_the_record_that_failed_not_from_the_batch() -> None:
    # Found by mutation testing: nothing checked that a partial success restarts the count.
    sim = StreamSimulator()
    for n in range(3):
        sim.insert(item(n))
    calls: list[list[int]] = []
    failed: list[FailedBatch] = []
    until = Until(lambda: bool(failed))

    def handle(batch: list[Record]) -> BatchResult:
        calls.append(numbers(batch))
        return BatchResult(failed=[r for r in batch if numbers([r]) == [1]])

    def give_up(batch: FailedBatch) -> None:
        failed.append(batch)
        until.poke()

    retry = RetryPolicy(max_attempts=2, initial_backoff=0.001)
    run_until(until, handle, sim, batching=Batching(3), retry=retry, on_failure=give_up)
    # Record 0 succeeded in the first call; record 1 then gets its own two attempts.
    assert calls == [[0, 1, 2], [1, 2]]
    (batch,) = failed
    assert (numbers(list(batch.records)), batch.attempts) == ([1, 2], 2)
