"""Loss paths, hangs and invisible failures, each closed and pinned by a test.

Ordered facts come from the simulator's event log (``StreamSimulator.events``), to which
the checkpoint store below adds its saves, so that "which call came before which" is read
from one log instead of being left to timing.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import FAST
from ddbstreams import (
    Checkpoint,
    CheckpointStoreError,
    ConsumerSettings,
    EndpointUnreachableError,
    InMemoryCheckpointStore,
    Record,
    SQLiteCheckpointStore,
    StreamConsumer,
    TrimmedDataError,
    TrimmedDataGap,
)
from ddbstreams.testing import RecordCollector, StreamSimulator

DAY = 86400.0


def item(n: int, version: int = 0) -> dict[str, Any]:
    return {"email": f"user{n}@example.com", "order_number": "1", "version": version}


class LoggedStore(InMemoryCheckpointStore):
    """An in-memory store that notes each save in the simulator's event log, and can fail."""

    def __init__(self, sim: StreamSimulator) -> None:
        super().__init__()
        self.sim = sim
        self.failing: set[str] = set()  # shard ids whose saves fail; "*" for all
        self.failed_saves = 0

    def save(self, stream_arn: str, shard_id: str, checkpoint: Checkpoint) -> None:
        if "*" in self.failing or shard_id in self.failing:
            self.failed_saves += 1
            raise CheckpointStoreError(f"store unavailable (test) for {shard_id}")
        super().save(stream_arn, shard_id, checkpoint)
        self.sim.note("save", shard_id, checkpoint)


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    """Poll a condition in small bounded steps (the condition, not the time, is the point)."""
    step = threading.Event()
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        step.wait(0.005)


def run_until(consumer: StreamConsumer, collector: RecordCollector, count: int) -> None:
    with consumer:
        collector.wait_for(count, timeout=20)


# ----------------------------------------------------------------- lineage, in order


def test_a_child_starts_only_after_its_parent_is_checkpointed_finished() -> None:
    sim = StreamSimulator(shard_count=2)
    store = LoggedStore(sim)
    for generation in range(3):
        for n in range(6):
            sim.insert(item(n, generation))
        for shard_id in sim.open_shard_ids():
            sim.split(shard_id) if generation == 1 else sim.rollover(shard_id)
    total = sum(len(sim.records(s)) for s in sim.open_shard_ids()) + 18
    collector = RecordCollector()
    consumer = StreamConsumer(
        collector,
        stream_arn=sim.stream_arn,
        client=sim,
        checkpoint_store=store,
        settings=ConsumerSettings(poll_interval=0.01, batch_size=1),
    )
    run_until(consumer, collector, total)
    events = list(sim.events)
    parents = {s.shard_id: s.parent_shard_id for s in consumer.shards()}
    checked = 0
    for child, parent in parents.items():
        if parent is None:
            continue
        first_read = next(
            (i for i, e in enumerate(events) if e[0] == "GetShardIterator" and e[1] == child),
            None,
        )
        if first_read is None:
            continue  # not started yet when the consumer stopped
        finished = next(
            i for i, e in enumerate(events) if e[0] == "save" and e[1] == parent and e[2].finished
        )
        assert finished < first_read, f"{child} was read before {parent} was finished"
        checked += 1
    assert checked >= 6


def test_a_shard_that_ends_while_running_is_followed_by_its_children_at_once() -> None:
    sim = StreamSimulator()
    collector = RecordCollector()
    slow_discovery = ConsumerSettings(poll_interval=0.01, discovery_interval=3600)
    with StreamConsumer(collector, stream_arn=sim.stream_arn, client=sim, settings=slow_discovery):
        first = sim.insert(item(1))
        collector.wait_for(1)
        sim.rollover()  # the shard ends while the consumer runs
        second = sim.insert(item(1, 1))
        collector.wait_for(2)  # found by the rediscovery that a shard's end starts
    assert collector.sequence_numbers() == [first, second]
    describes = [e[2] for e in list(sim.events) if e[0] == "DescribeStream"]
    assert describes[0] is None  # the first scan lists every shard...
    assert "CHILD_SHARDS" in describes and None not in describes[1:]  # ...then only children


def test_children_are_found_by_a_full_scan_where_shard_filter_is_unknown() -> None:
    sim = StreamSimulator()

    class NoFilter:  # an older botocore or endpoint: describe_stream without ShardFilter
        get_shard_iterator, get_records, wall_time = (
            sim.get_shard_iterator,
            sim.get_records,
            sim.wall_time,
        )

        def describe_stream(self, *, StreamArn: str, **kwargs: Any) -> Any:
            if "ShardFilter" in kwargs:
                raise TypeError("describe_stream() got an unexpected keyword argument")
            return sim.describe_stream(StreamArn=StreamArn, **kwargs)

    collector = RecordCollector()
    slow_discovery = ConsumerSettings(poll_interval=0.01, discovery_interval=3600)
    with StreamConsumer(
        collector, stream_arn=sim.stream_arn, client=NoFilter(), settings=slow_discovery
    ):
        first = sim.insert(item(1))
        collector.wait_for(1)
        sim.rollover()
        second = sim.insert(item(1, 1))
        collector.wait_for(2)
    assert collector.sequence_numbers() == [first, second]


def test_latest_is_never_applied_to_the_child_of_a_checkpointed_parent() -> None:
    sim = StreamSimulator()
    store = InMemoryCheckpointStore()
    first = sim.insert(item(1))
    collector = RecordCollector()
    run_until(
        StreamConsumer(collector, stream_arn=sim.stream_arn, client=sim, checkpoint_store=store),
        collector,
        1,
    )
    sim.rollover()
    child_records = [sim.insert(item(1, v)) for v in (1, 2)]
    again = RecordCollector()
    consumer = StreamConsumer(
        again,
        stream_arn=sim.stream_arn,
        client=sim,
        checkpoint_store=store,
        start_position="LATEST",  # applies only where the consumer has no history
        settings=FAST,
    )
    run_until(consumer, again, 2)
    assert again.sequence_numbers() == child_records
    assert first not in again.sequence_numbers()


# ----------------------------------------------------------------- trimmed history


def going_on_past_gaps(
    sim: StreamSimulator,
    store: InMemoryCheckpointStore,
    collector: RecordCollector,
    gaps: list[TrimmedDataGap],
) -> StreamConsumer:
    return StreamConsumer(
        collector,
        stream_arn=sim.stream_arn,
        client=sim,
        checkpoint_store=store,
        settings=ConsumerSettings(poll_interval=0.01, trimmed_data="restart_from_trim_horizon"),
        on_data_loss=gaps.append,
    )


def _parent_gone_past_retention(sim: StreamSimulator, store: InMemoryCheckpointStore) -> Any:
    """The issue's reproduction: 3 consumed, 3 more, rollover, 3 in the child, a day, 2."""
    parent = sim.open_shard_ids()[0]
    consumed = [sim.insert(item(n)) for n in range(3)]
    collector = RecordCollector()
    run_until(
        StreamConsumer(collector, stream_arn=sim.stream_arn, client=sim, checkpoint_store=store),
        collector,
        3,
    )
    assert store.load(sim.stream_arn, parent) == Checkpoint(consumed[-1])
    for n in range(3, 6):
        sim.insert(item(n))
    (child,) = sim.rollover()
    for n in range(6, 9):
        sim.insert(item(n))
    sim.advance(DAY + 60)
    last = [sim.insert(item(n)) for n in (9, 10)]
    return parent, child, consumed[-1], last


def test_a_parent_gone_past_retention_is_an_error_by_default() -> None:
    sim = StreamSimulator()
    store = InMemoryCheckpointStore()
    parent, _, checkpointed, _ = _parent_gone_past_retention(sim, store)
    collector = RecordCollector()
    consumer = StreamConsumer(
        collector, stream_arn=sim.stream_arn, client=sim, checkpoint_store=store, settings=FAST
    )
    with pytest.raises(TrimmedDataError, match="may have been lost") as caught:
        consumer.run()
    assert (caught.value.shard_id, caught.value.after_sequence_number) == (parent, checkpointed)
    assert collector.records == []


def test_a_parent_gone_past_retention_is_reported_and_passed_when_allowed() -> None:
    sim = StreamSimulator()
    store = InMemoryCheckpointStore()
    parent, child, checkpointed, last = _parent_gone_past_retention(sim, store)
    gaps: list[TrimmedDataGap] = []
    collector = RecordCollector()
    run_until(going_on_past_gaps(sim, store, collector, gaps), collector, 2)
    assert collector.sequence_numbers() == last
    # The parent after its checkpoint, then the child's trimmed first records: both "may".
    assert [(g.shard_id, g.after_sequence_number) for g in gaps] == [
        (parent, checkpointed),
        (child, None),
    ]
    assert all("may have been" in g.reason for g in gaps)
    # Settled as finished (with how far it was read), so a restart does not report it again.
    assert store.load(sim.stream_arn, parent) == Checkpoint(checkpointed, finished=True)


def test_a_trimmed_parent_does_not_hold_its_children() -> None:
    sim = StreamSimulator()
    store = InMemoryCheckpointStore()
    parent = sim.open_shard_ids()[0]
    old = sim.insert(item(1))
    sim.insert(item(2))
    store.save(sim.stream_arn, parent, Checkpoint(old))
    sim.advance(DAY - 100)
    kept = sim.insert(item(3))
    sim.advance(200)  # what follows the checkpoint is trimmed; ``kept`` is not
    sim.rollover()
    in_child = sim.insert(item(4))
    collector = RecordCollector()
    gaps: list[TrimmedDataGap] = []
    run_until(going_on_past_gaps(sim, store, collector, gaps), collector, 2)
    assert collector.sequence_numbers() == [kept, in_child]
    assert [(g.shard_id, g.after_sequence_number) for g in gaps] == [(parent, old)]


def test_a_latest_start_is_pinned_across_a_restart_before_any_checkpoint() -> None:
    sim = StreamSimulator()
    sim.insert(item(0))  # before the first start: not owed
    sim.advance(3600)
    store = InMemoryCheckpointStore()
    first = RecordCollector()
    latest = {"start_position": "LATEST", "settings": FAST, "checkpoint_store": store}
    with StreamConsumer(first, stream_arn=sim.stream_arn, client=sim, **latest):  # type: ignore[arg-type]
        shard = sim.open_shard_ids()[0]
        wait_until(lambda: getattr(store.load(sim.stream_arn, shard), "latest_at", None))
    written = [sim.insert(item(n)) for n in range(1, 4)]  # while it is down
    second = RecordCollector()
    run_until(
        StreamConsumer(second, stream_arn=sim.stream_arn, client=sim, **latest),  # type: ignore[arg-type]
        second,
        3,
    )
    assert second.sequence_numbers() == written  # from the first start's pin


# ----------------------------------------------------------------- failures, visible


def test_a_failing_record_is_not_checkpointed_when_stop_comes_during_its_retries() -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(3)]
    store = InMemoryCheckpointStore()
    attempts = threading.Semaphore(0)

    def handler(record: Record) -> None:
        if record.sequence_number == written[1]:
            attempts.release()
            raise RuntimeError("poison")

    consumer = StreamConsumer(
        handler, stream_arn=sim.stream_arn, client=sim, checkpoint_store=store, settings=FAST
    )
    consumer.start()
    for _ in range(3):
        assert attempts.acquire(timeout=10)  # failed, and retried
    assert consumer.stop(timeout=10)
    (checkpoint,) = store.load_all(sim.stream_arn).values()
    assert checkpoint == Checkpoint(written[0])


def test_a_record_whose_handler_call_fails_as_stop_arrives_is_not_checkpointed() -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(3)]
    store = InMemoryCheckpointStore()
    calls: list[str] = []

    def handler(record: Record) -> None:
        calls.append(record.sequence_number)
        if record.sequence_number == written[1]:
            consumer.stop()  # the stop arrives during the failing call
            raise RuntimeError("poison")

    consumer = StreamConsumer(
        handler, stream_arn=sim.stream_arn, client=sim, checkpoint_store=store, settings=FAST
    )
    consumer.start()
    assert consumer.wait(timeout=10)
    assert calls == written[:2]
    assert store.load_all(sim.stream_arn) == {sim.open_shard_ids()[0]: Checkpoint(written[0])}


def test_a_fatal_error_in_a_shard_stops_the_consumer_and_wait_raises_it() -> None:
    sim = StreamSimulator()
    store = InMemoryCheckpointStore()
    shard = sim.open_shard_ids()[0]
    store.save(sim.stream_arn, shard, Checkpoint(sim.insert(item(1))))
    sim.insert(item(2))
    sim.advance(DAY + 10)  # the record after the checkpoint is trimmed: fatal by default
    consumer = StreamConsumer(
        RecordCollector(), stream_arn=sim.stream_arn, client=sim, checkpoint_store=store
    )
    consumer.start()
    with pytest.raises(TrimmedDataError):
        consumer.wait(timeout=10)
    assert consumer.health().status == "failing"


def test_a_handler_that_keeps_failing_makes_the_consumer_unhealthy_with_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = StreamSimulator()
    sim.insert(item(1))
    tries = threading.Semaphore(0)

    def handler(record: Record) -> None:
        tries.release()
        raise ValueError("cannot handle this")

    settings = ConsumerSettings(
        handler_retry_initial=0.001, handler_retry_max=0.001, failures_before_unhealthy=3
    )
    consumer = StreamConsumer(handler, stream_arn=sim.stream_arn, client=sim, settings=settings)
    with consumer:
        assert consumer.health().status in ("healthy", "degraded")
        for _ in range(4):
            assert tries.acquire(timeout=10)
        wait_until(lambda: consumer.health().status == "failing")
        (reason,) = consumer.health().reasons
        assert "handler" in reason and "cannot handle this" in reason
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and errors[0].exc_info is not None
    assert "ValueError: cannot handle this" in caplog.text


def test_a_store_outage_pauses_delivery_after_a_bound_and_resumes() -> None:
    sim = StreamSimulator()
    store = LoggedStore(sim)
    collector = RecordCollector()
    settings = ConsumerSettings(
        poll_interval=0.01,
        checkpoint_every=1,
        max_records_without_checkpoint=5,
        handler_retry_initial=0.01,
        handler_retry_max=0.02,
    )
    consumer = StreamConsumer(
        collector, stream_arn=sim.stream_arn, client=sim, checkpoint_store=store, settings=settings
    )
    with consumer:
        wait_until(lambda: sim.calls["GetRecords"] > 0)
        store.failing.add("*")
        written = [sim.insert(item(n)) for n in range(12)]
        collector.wait_for(5)
        wait_until(lambda: consumer.health().status != "healthy")
        assert "store" in consumer.health().reasons[0]
        tries = store.failed_saves
        wait_until(lambda: store.failed_saves >= tries + 3)  # it keeps trying the store...
        assert len(collector.records) == 5  # ...but delivers nothing past the bound
        store.failing.clear()
        collector.wait_for(12)
    assert collector.sequence_numbers() == written
    (checkpoint,) = store.load_all(sim.stream_arn).values()
    assert checkpoint == Checkpoint(written[-1])


def test_at_shutdown_every_shard_is_checkpointed_and_one_error_lists_the_failures() -> None:
    sim = StreamSimulator(shard_count=3)
    store = LoggedStore(sim)
    for n in range(30):
        sim.insert(item(n))
    collector = RecordCollector()
    lazy = ConsumerSettings(poll_interval=0.01, checkpoint_every=10**6, checkpoint_interval=3600)
    consumer = StreamConsumer(
        collector, stream_arn=sim.stream_arn, client=sim, checkpoint_store=store, settings=lazy
    )
    consumer.start()
    collector.wait_for(30)
    shards = sorted(sim.open_shard_ids())
    store.failing.add(shards[0])
    with pytest.raises(CheckpointStoreError, match=shards[0]) as caught:
        consumer.stop(timeout=10)
    assert "1 shard(s)" in str(caught.value)
    assert f"store unavailable (test) for {shards[0]}. Nothing is lost" in str(caught.value)
    saved = store.load_all(sim.stream_arn)
    for shard_id in shards[1:]:
        last = sim.records(shard_id)[-1]["dynamodb"]["SequenceNumber"]
        assert saved[shard_id] == Checkpoint(last)


def test_stop_from_a_user_thread_named_like_ours_still_waits_for_the_end() -> None:
    sim = StreamSimulator()
    store = InMemoryCheckpointStore()
    last = [sim.insert(item(n)) for n in range(3)][-1]
    collector = RecordCollector()
    lazy = ConsumerSettings(poll_interval=0.01, checkpoint_every=10**6, checkpoint_interval=3600)
    consumer = StreamConsumer(
        collector, stream_arn=sim.stream_arn, client=sim, checkpoint_store=store, settings=lazy
    )
    consumer.start()
    collector.wait_for(3)
    stopped: list[bool] = []
    user = threading.Thread(target=lambda: stopped.append(consumer.stop(timeout=10)))
    user.name = "ddbstreams-my-own-thread"
    user.start()
    user.join(20)
    assert stopped == [True]
    assert store.load_all(sim.stream_arn) == {sim.open_shard_ids()[0]: Checkpoint(last)}


# ----------------------------------------------------------------- hangs


@pytest.fixture
def black_hole() -> Iterator[tuple[str, threading.Event]]:
    """An endpoint that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            held.append(connection)
            accepted.set()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", accepted
    server.close()
    for connection in held:
        connection.close()


def test_stop_returns_promptly_against_an_endpoint_that_never_answers(
    black_hole: tuple[str, threading.Event],
) -> None:
    url, accepted = black_hole
    consumer = StreamConsumer(
        print,
        stream_arn="arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-01-01T00:00:00.000",
        endpoint_url=url,
        region_name="us-east-1",
    )
    consumer.start()
    assert accepted.wait(10)  # DescribeStream is waiting for an answer that never comes
    began = time.monotonic()
    assert consumer.stop(timeout=10) is True
    assert time.monotonic() - began < 3.0  # the read timeout is 20 s, four attempts


def test_a_slow_describe_stream_does_not_hold_up_reading() -> None:
    sim = StreamSimulator()
    release = threading.Event()
    described = threading.Semaphore(0)

    class SlowDescribe:
        def __init__(self) -> None:
            self.get_shard_iterator, self.get_records = sim.get_shard_iterator, sim.get_records
            self.wall_time = sim.wall_time

        def describe_stream(self, **kwargs: Any) -> Any:
            described.release()
            if sim.calls["DescribeStream"] >= 1:
                release.wait(20)  # every discovery after the first hangs
            return sim.describe_stream(**kwargs)

    collector = RecordCollector()
    settings = ConsumerSettings(poll_interval=0.01, discovery_interval=0.01)
    try:
        with StreamConsumer(
            collector, stream_arn=sim.stream_arn, client=SlowDescribe(), settings=settings
        ):
            for _ in range(2):
                assert described.acquire(timeout=10)  # the second discovery is hanging now
            written = [sim.insert(item(n)) for n in range(3)]
            collector.wait_for(3)
    finally:
        release.set()
    assert collector.sequence_numbers() == written


# ----------------------------------------------------------------- exit and growth


def test_exiting_without_stop_writes_the_final_checkpoint(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    script = textwrap.dedent(
        f"""
        from ddbstreams import ConsumerSettings, SQLiteCheckpointStore, StreamConsumer
        from ddbstreams.testing import RecordCollector, StreamSimulator
        sim = StreamSimulator()
        last = [sim.insert({{"email": str(n), "order_number": "1"}}) for n in range(5)][-1]
        collector = RecordCollector()
        StreamConsumer(
            collector, stream_arn=sim.stream_arn, client=sim,
            checkpoint_store=SQLiteCheckpointStore({str(db)!r}),
            settings=ConsumerSettings(checkpoint_every=10**6, checkpoint_interval=3600),
        ).start()
        collector.wait_for(5)
        print(last, flush=True)
        # the script ends here, without stop()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    last = done.stdout.strip()
    rows = sqlite3.connect(db).execute("SELECT sequence_number FROM ddbstreams_checkpoints")
    assert [row[0] for row in rows] == [last]


def test_months_of_rollovers_keep_memory_and_the_store_bounded(tmp_path: Path) -> None:
    sim = StreamSimulator(shard_count=2, retention=100.0)
    store = SQLiteCheckpointStore(tmp_path / "c.db")
    collector = RecordCollector()
    settings = ConsumerSettings(poll_interval=0.005, discovery_interval=0.01)
    sizes: list[tuple[int, int]] = []
    written = 0
    with StreamConsumer(
        collector, stream_arn=sim.stream_arn, client=sim, checkpoint_store=store, settings=settings
    ) as consumer:
        for generation in range(60):
            for n in range(4):
                sim.insert(item(n, generation))
            written += 4
            collector.wait_for(written, timeout=20)
            sim.rollover()
            sim.advance(30.0)  # a shard is no longer listed ~4 generations after it closed
            if generation >= 10:
                sizes.append((len(consumer.shards()), len(store.load_all(sim.stream_arn))))
    assert len(collector.records) == written
    assert max(shards for shards, _ in sizes) <= 16
    assert max(rows for _, rows in sizes) <= 16


def test_an_endpoint_that_is_not_up_yet_is_retried_with_one_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens here
    consumer = StreamConsumer(
        print,
        table_name="orders",
        endpoint_url=url,
        region_name="us-east-1",
        settings=ConsumerSettings(startup_timeout=0.5, request_attempts=1),
    )
    began = time.monotonic()
    with pytest.raises(EndpointUnreachableError):
        consumer.run()
    assert time.monotonic() - began >= 0.5  # it kept trying for startup_timeout
    waiting = [r for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert len(waiting) == 1


# ----------------------------------------------------------------- discovery and pruning


def test_discovery_failures_are_counted_in_a_row_and_cleared_by_a_success(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = StreamSimulator()
    settings = ConsumerSettings(poll_interval=0.01, discovery_interval=0.01, request_attempts=1)
    consumer = StreamConsumer(
        RecordCollector(), stream_arn=sim.stream_arn, client=sim, settings=settings
    )
    with consumer:
        wait_until(lambda: sim.calls["DescribeStream"] >= 1)
        sim.inject("DescribeStream", "InternalServerError", times=3)
        described = sim.calls["DescribeStream"]
        wait_until(lambda: sim.calls["DescribeStream"] >= described + 4)  # 3 failed, 1 not
        wait_until(lambda: consumer.health().status == "healthy")
    failures = [
        r.getMessage().split(", will retry:")[0]
        for r in caplog.records
        if r.getMessage().startswith("discovering shards failed")
    ]
    assert failures == [f"discovering shards failed ({n} in a row)" for n in (1, 2, 3)]


class NoDeleteStore:
    """A checkpoint store with only the protocol's required methods (no ``delete``)."""

    def __init__(self) -> None:
        self._inner = InMemoryCheckpointStore()

    def load(self, stream_arn: str, shard_id: str) -> Checkpoint | None:
        return self._inner.load(stream_arn, shard_id)

    def load_all(self, stream_arn: str) -> dict[str, Checkpoint]:
        return self._inner.load_all(stream_arn)

    def save(self, stream_arn: str, shard_id: str, checkpoint: Checkpoint) -> None:
        self._inner.save(stream_arn, shard_id, checkpoint)


def _parent_then_child(sim: StreamSimulator) -> tuple[str, str, list[str]]:
    parent = sim.open_shard_ids()[0]
    written = [sim.insert(item(1))]
    (child,) = sim.rollover()
    written.append(sim.insert(item(1, 1)))
    return parent, child, written


def test_a_finished_parent_that_is_no_longer_listed_is_forgotten_without_delete() -> None:
    sim = StreamSimulator(retention=100.0)
    parent = sim.open_shard_ids()[0]
    written = [sim.insert(item(1))]
    sim.rollover()  # a child without records: begun once its reading starts
    collector = RecordCollector()
    settings = ConsumerSettings(poll_interval=0.01, discovery_interval=0.01)
    consumer = StreamConsumer(
        collector,
        stream_arn=sim.stream_arn,
        client=sim,
        checkpoint_store=NoDeleteStore(),
        settings=settings,
    )
    with consumer:
        collector.wait_for(1)
        sim.advance(101)  # the parent drops out of DescribeStream
        wait_until(lambda: parent not in {s.shard_id for s in consumer.shards()})
        assert consumer.running
    assert collector.sequence_numbers() == written


def test_a_finished_parent_is_kept_until_its_child_has_begun() -> None:
    sim = StreamSimulator(retention=100.0)
    store = LoggedStore(sim)
    parent, child, written = _parent_then_child(sim)
    store.failing.add(child)  # so the child cannot store that it has begun
    collector = RecordCollector()
    # Store retries back off up to 0.2 s, not 30: on a loaded machine the child may fail
    # to save many times before the store is repaired below.
    settings = ConsumerSettings(
        poll_interval=0.01,
        discovery_interval=0.01,
        checkpoint_interval=0.05,
        handler_retry_initial=0.01,
        handler_retry_max=0.2,
    )
    consumer = StreamConsumer(
        collector, stream_arn=sim.stream_arn, client=sim, checkpoint_store=store, settings=settings
    )
    with consumer:
        collector.wait_for(2)
        sim.advance(101)  # the parent drops out of DescribeStream
        described = sim.calls["DescribeStream"]
        wait_until(lambda: sim.calls["DescribeStream"] >= described + 3)  # applied since
        assert parent in {s.shard_id for s in consumer.shards()}
        assert store.load(sim.stream_arn, parent) == Checkpoint(written[0], finished=True)
        store.failing.clear()  # the child's next checkpoint says it has begun
        wait_until(lambda: parent not in {s.shard_id for s in consumer.shards()})
    assert store.load(sim.stream_arn, parent) is None
    assert collector.sequence_numbers() == written


def test_a_finished_shard_is_not_read_again_after_a_restart() -> None:
    sim = StreamSimulator()
    store = InMemoryCheckpointStore()
    parent, child, written = _parent_then_child(sim)
    collector = RecordCollector()
    run_until(
        StreamConsumer(
            collector, stream_arn=sim.stream_arn, client=sim, checkpoint_store=store, settings=FAST
        ),
        collector,
        2,
    )
    assert store.load(sim.stream_arn, parent) == Checkpoint(written[0], finished=True)
    more = sim.insert(item(1, 2))
    sim.events.clear()
    again = RecordCollector()
    run_until(
        StreamConsumer(
            again, stream_arn=sim.stream_arn, client=sim, checkpoint_store=store, settings=FAST
        ),
        again,
        1,
    )
    assert again.sequence_numbers() == [more]
    assert [e[1] for e in sim.events if e[0] == "GetShardIterator"] == [child]


def test_a_fatal_error_is_what_surfaces_even_when_final_checkpoints_fail() -> None:
    sim = StreamSimulator(shard_count=2)
    store = LoggedStore(sim)
    fatal, other = sorted(sim.open_shard_ids())
    n = 0
    while len(sim.records(fatal)) < 3 or not sim.records(other):
        sim.insert(item(n))
        n += 1
    first, second = (r["dynamodb"]["SequenceNumber"] for r in sim.records(fatal)[:2])
    store.save(sim.stream_arn, fatal, Checkpoint(first))
    held = sim.records(other)[0]["dynamodb"]["SequenceNumber"]
    store.failing.add(other)  # the final checkpoint of ``other`` will fail
    in_fatal, in_other = threading.Event(), threading.Event()
    advanced, release = threading.Event(), threading.Event()

    def handler(record: Record) -> None:
        if record.sequence_number == second:
            in_fatal.set()
            advanced.wait(10)
        elif record.sequence_number == held:
            in_other.set()
            release.wait(10)

    lazy = ConsumerSettings(
        poll_interval=0.01, batch_size=1, checkpoint_every=10**6, checkpoint_interval=3600
    )
    consumer = StreamConsumer(
        handler, stream_arn=sim.stream_arn, client=sim, checkpoint_store=store, settings=lazy
    )
    consumer.start()
    assert in_fatal.wait(10) and in_other.wait(10)
    # ``fatal``'s iterator expires, and its record after ``second`` is trimmed unread: fatal.
    sim.advance(DAY + 10)
    advanced.set()
    wait_until(lambda: [e[:2] for e in list(sim.events)].count(("GetShardIterator", fatal)) == 2)
    release.set()  # ``other`` has delivered ``held`` but cannot save it
    with pytest.raises(TrimmedDataError):
        consumer.wait(timeout=10)
    assert store.failed_saves >= 1  # ``other``'s final checkpoint failed, and was not raised
