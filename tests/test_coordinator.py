"""The whole consumer against the simulator: lineage, scale, faults, resume, disable."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FAST
from ddbstreams import (
    Checkpoint,
    ConsumerSettings,
    InMemoryCheckpointStore,
    Record,
    SQLiteCheckpointStore,
    StreamConsumer,
    StreamDisabledError,
)
from ddbstreams._coordinator import ShardCoordinator
from ddbstreams.testing import RecordCollector, StreamSimulator


def item(n: int, version: int = 0) -> dict[str, Any]:
    return {"email": f"user{n}@example.com", "order_number": "1", "version": version}


def consume(sim: StreamSimulator, count: int, **kwargs: Any) -> RecordCollector:
    collector = kwargs.pop("collector", None) or RecordCollector()
    kwargs.setdefault("settings", FAST)
    with StreamConsumer(collector, stream_arn=sim.stream_arn, client=sim, **kwargs):
        collector.wait_for(count, timeout=20)
    return collector


operations = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 7)),
        st.tuples(st.just("rollover"), st.integers(0, 10)),
        st.tuples(st.just("split"), st.integers(0, 10)),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_per_item_order_holds_across_rollovers_and_splits(ops: list[tuple[str, int]]) -> None:
    sim = StreamSimulator(shard_count=2)
    written: dict[str, list[str]] = {}
    for op, n in ops:
        if op == "write":
            version = len(written.get(item(n)["email"], []))
            written.setdefault(item(n)["email"], []).append(sim.insert(item(n, version)))
        else:
            open_ids = sim.open_shard_ids()
            target = open_ids[n % len(open_ids)]
            sim.rollover(target) if op == "rollover" else sim.split(target)
    total = sum(len(v) for v in written.values())
    store = InMemoryCheckpointStore()
    collector = consume(
        sim,
        total,
        checkpoint_store=store,
        settings=ConsumerSettings(poll_interval=0.01, batch_size=1),
    )
    delivered: dict[str, list[str]] = {}
    for record in collector.records:
        delivered.setdefault(record.keys["email"], []).append(record.sequence_number)
    assert delivered == written
    # Not left to timing: no child's first GetShardIterator came before its parent's end was
    # read (its last GetRecords, which has no NextShardIterator).
    events = list(sim.events)
    parents = {s.shard_id: s.parent_shard_id for s in _described(sim)}
    for child, parent in parents.items():
        first = next(
            (i for i, e in enumerate(events) if e[:2] == ("GetShardIterator", child)), None
        )
        if parent is None or first is None:
            continue
        assert store.load(sim.stream_arn, parent) is not None
        assert store.load(sim.stream_arn, parent).finished  # type: ignore[union-attr]
        last_parent_read = max(i for i, e in enumerate(events) if e[:2] == ("GetRecords", parent))
        assert last_parent_read < first, f"{child} started before {parent} was read to its end"


def _described(sim: StreamSimulator) -> list[Any]:
    from ddbstreams._lineage import ShardInfo

    shards = sim.describe_stream(StreamArn=sim.stream_arn)["StreamDescription"]["Shards"]
    return [ShardInfo.from_wire(shard) for shard in shards]


def test_more_than_100_shards_are_all_read() -> None:
    sim = StreamSimulator(shard_count=250)
    written = {sim.insert(item(n)) for n in range(600)}
    collector = consume(
        sim, len(written), settings=ConsumerSettings(poll_interval=0.05, max_workers=8)
    )
    assert set(collector.sequence_numbers()) == written
    assert sim.calls["DescribeStream"] >= 3  # 250 shards = 3 pages of at most 100


def test_the_pool_is_bounded() -> None:
    sim = StreamSimulator(shard_count=300)
    for n in range(50):
        sim.insert(item(n))
    collector = RecordCollector()
    consumer = StreamConsumer(
        collector,
        stream_arn=sim.stream_arn,
        client=sim,
        settings=ConsumerSettings(poll_interval=0.01, max_workers=3),
    )
    earlier = set(threading.enumerate())  # pool threads of earlier tests may still be ending
    with consumer:
        collector.wait_for(50)
        workers = [
            t
            for t in threading.enumerate()
            if t.name.startswith("ddbstreams_") and t not in earlier
        ]
        assert 1 <= len(workers) <= 3


@pytest.mark.parametrize("digits", [21, 40])
def test_sequence_numbers_that_change_length_resume_correctly(tmp_path: Path, digits: int) -> None:
    sim = StreamSimulator(first_sequence_number=10**digits - 3)  # 21 -> 22 or 40 -> 41 digits
    first = [sim.insert(item(n)) for n in range(6)]
    assert {len(s) for s in first} == {digits, digits + 1}
    store = SQLiteCheckpointStore(tmp_path / "c.db")
    every_record = ConsumerSettings(poll_interval=0.01, checkpoint_every=1)
    consume(sim, 6, checkpoint_store=store, settings=every_record)
    second = [sim.insert(item(n)) for n in range(6, 9)]
    collector = consume(sim, 3, checkpoint_store=store, settings=every_record)
    assert collector.sequence_numbers() == second  # nothing replayed, nothing missed


def test_restart_resumes_after_the_last_checkpoint() -> None:
    sim = StreamSimulator(shard_count=3)
    store = InMemoryCheckpointStore()
    first = {sim.insert(item(n)) for n in range(30)}
    assert set(consume(sim, 30, checkpoint_store=store).sequence_numbers()) == first
    sim.rollover()
    second = {sim.insert(item(n, 1)) for n in range(30)}
    again = consume(sim, 30, checkpoint_store=store)
    assert set(again.sequence_numbers()) == second


def test_disabled_stream_delivers_the_rest_then_raises() -> None:
    sim = StreamSimulator(shard_count=2)
    written = {sim.insert(item(n)) for n in range(10)}
    sim.disable()
    collector = RecordCollector()
    consumer = StreamConsumer(collector, table_name=sim.table_name, client=sim, settings=FAST)
    with pytest.raises(StreamDisabledError, match="has no enabled stream now"):
        consumer.run()
    assert set(collector.sequence_numbers()) == written


@pytest.mark.parametrize(
    ("operation", "code"),
    [
        ("GetRecords", "LimitExceededException"),
        ("GetRecords", "InternalServerError"),
        ("GetRecords", "ConnectionError"),
        ("GetShardIterator", "LimitExceededException"),
        ("DescribeStream", "InternalServerError"),
        ("DescribeStream", "ConnectionError"),  # unreachable at start: within startup_timeout
    ],
)
def test_transient_faults_are_ridden_out(operation: str, code: str) -> None:
    sim = StreamSimulator(shard_count=2)
    sim.inject(operation, code, times=6)  # more than request_attempts, so shards back off too
    written = {sim.insert(item(n)) for n in range(10)}
    settings_ = ConsumerSettings(
        poll_interval=0.01,
        handler_retry_initial=0.01,
        handler_retry_max=0.05,
        discovery_interval=0.1,
    )
    collector = consume(sim, 10, settings=settings_)
    assert set(collector.sequence_numbers()) == written


def test_a_failing_shard_does_not_hold_up_the_others() -> None:
    sim = StreamSimulator(shard_count=2)
    shards = sim.open_shard_ids()
    written = {sim.insert(item(n)) for n in range(20)}
    blocked = shards[0]
    release = threading.Event()
    collector = RecordCollector(fail_on=lambda r: r.shard_id == blocked and not release.is_set())
    with StreamConsumer(collector, stream_arn=sim.stream_arn, client=sim, settings=FAST):
        others = len(sim.records(shards[1]))
        collector.wait_for(others)
        assert {r.shard_id for r in collector.records} == {shards[1]}
        assert collector.attempts > others  # the blocked shard kept retrying
        release.set()
        collector.wait_for(20)
    assert set(collector.sequence_numbers()) == written


def test_latest_skips_what_is_already_there() -> None:
    sim = StreamSimulator(shard_count=2)
    for n in range(5):
        sim.insert(item(n))
    parent = sim.open_shard_ids()[0]
    sim.rollover(parent)
    sim.advance(600)  # what is there is well before the start
    collector = RecordCollector()
    store = InMemoryCheckpointStore()
    with StreamConsumer(
        collector,
        stream_arn=sim.stream_arn,
        client=sim,
        checkpoint_store=store,
        start_position="LATEST",
        settings=FAST,
    ) as consumer:
        _wait_until(lambda: any(s.state == "reading" for s in consumer.shards()))
        _wait_until(lambda: sim.calls["GetRecords"] >= 4)
        new = {sim.insert(item(n, 1)) for n in range(5)}
        collector.wait_for(5)
        states = {s.shard_id: s.state for s in consumer.shards()}
    assert set(collector.sequence_numbers()) == new
    assert states[parent] == "skipped"
    # Stored as done, so that a restart does not read it either.
    assert store.load(sim.stream_arn, parent) == Checkpoint(None, finished=True)


def test_stop_waits_for_the_handler_and_checkpoints() -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(3)]
    store = InMemoryCheckpointStore()
    entered, release = threading.Event(), threading.Event()

    def slow(record: Record) -> None:
        entered.set()
        release.wait(5)

    consumer = StreamConsumer(slow, stream_arn=sim.stream_arn, client=sim, checkpoint_store=store)
    consumer.start()
    assert entered.wait(5)
    assert consumer.stop(timeout=0.1) is False  # still inside the handler
    release.set()
    assert consumer.stop(timeout=5) is True
    (checkpoint,) = store.load_all(sim.stream_arn).values()
    assert checkpoint.sequence_number == written[0]  # the record that returned, no more


def _wait_until(condition: Any, timeout: float = 10.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("condition not met in time")


def test_the_handler_may_stop_the_consumer() -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(5)]
    store = InMemoryCheckpointStore()
    seen: list[str] = []

    def handler(record: Record) -> None:
        seen.append(record.sequence_number)
        if len(seen) == 2:
            assert consumer.stop() is False  # asked; completes once this call returns

    consumer = StreamConsumer(
        handler, stream_arn=sim.stream_arn, client=sim, checkpoint_store=store
    )
    consumer.start()
    assert consumer.wait(timeout=10)
    assert seen == written[:2]
    assert store.load_all(sim.stream_arn) == {sim.open_shard_ids()[0]: Checkpoint(written[1])}


def test_hooks_announce_each_shard_s_start_and_end_in_order() -> None:
    sim = StreamSimulator()
    (parent,) = sim.open_shard_ids()
    sim.insert(item(1))
    (child,) = sim.rollover()
    sim.insert(item(1, 1))
    events: list[tuple[str, str]] = []
    collector = RecordCollector()
    with StreamConsumer(
        collector,
        stream_arn=sim.stream_arn,
        client=sim,
        settings=FAST,
        on_shard_started=lambda shard: events.append(("started", shard)),
        on_shard_ended=lambda shard: events.append(("ended", shard)),
    ):
        collector.wait_for(2)
    assert events == [("started", parent), ("ended", parent), ("started", child)]


def test_a_shard_s_status_reports_its_position_and_its_failures() -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(5)]
    attempts = threading.Semaphore(0)

    def handler(record: Record) -> None:
        if record.sequence_number == written[4]:
            attempts.release()
            raise RuntimeError("poison")

    settings = ConsumerSettings(poll_interval=0.01, handler_retry_initial=0.01, batch_size=2)
    consumer = StreamConsumer(handler, stream_arn=sim.stream_arn, client=sim, settings=settings)
    with consumer:
        for _ in range(2):
            assert attempts.acquire(timeout=10)
        _wait_until(lambda: consumer.shards()[0].failures >= 2)
        (status,) = consumer.shards()
    assert (status.state, status.parent_shard_id, status.failure_kind) == (
        "reading",
        None,
        "handler",
    )
    # Two pages of two records each, then the poison record.
    assert (status.last_sequence_number, status.records_delivered) == (written[3], 4)
    assert status.last_error == f"the handler raised on record {written[4]}: poison"


def test_shards_are_discovered_at_start_then_every_discovery_interval() -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(3)]
    settings = ConsumerSettings(poll_interval=0.01, batch_size=1, discovery_interval=3600)
    collector = consume(sim, 3, settings=settings)
    assert collector.sequence_numbers() == written
    assert sim.calls["DescribeStream"] == 1  # not on every pass of the scheduler


def test_a_coordinator_given_a_plain_client_reads_through_it() -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(3)]
    collector = RecordCollector()
    coordinator = ShardCoordinator(
        stream_arn=sim.stream_arn,
        client=sim,  # not a StreamsAPI: the coordinator wraps it
        handler=collector,
        checkpoint_store=InMemoryCheckpointStore(),
        settings=FAST,
    )
    thread = threading.Thread(target=coordinator.run)
    thread.start()
    try:
        collector.wait_for(3)
    finally:
        coordinator.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert collector.sequence_numbers() == written
