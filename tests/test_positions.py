"""Seek and rewind (ddbstreams.Positions) on the simulator: lineage, pins, what is next.

Every test ends with a real consumer reading from the position the seek wrote, so that
"record R next" is checked by what the handler receives, not by the checkpoint's fields.
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import FAST
from ddbstreams import (
    Checkpoint,
    ConfigurationError,
    InMemoryCheckpointStore,
    Positions,
    StreamConsumer,
)
from ddbstreams.testing import RecordCollector, StreamSimulator

pytestmark = pytest.mark.timeout(60)


def order(n: int) -> dict[str, Any]:
    return {"email": f"user{n}@example.com", "order_number": f"{n}", "order_amount": n}


def write(sim: StreamSimulator, numbers: range) -> list[str]:
    """One record a second of virtual time; their sequence numbers."""
    written = []
    for n in numbers:
        written.append(sim.insert(order(n)))
        sim.advance(1.0)
    return written


def created(sim: StreamSimulator, shard_id: str, index: int) -> float:
    return float(sim.records(shard_id)[index]["dynamodb"]["ApproximateCreationDateTime"])


def rolled_stream() -> tuple[StreamSimulator, str, str, list[str], list[str]]:
    """A parent with records 0-4, rolled over into a child with records 5-9."""
    sim = StreamSimulator()
    parent = sim.open_shard_ids()[0]
    first = write(sim, range(5))
    (child,) = sim.rollover(parent)
    second = write(sim, range(5, 10))
    return sim, parent, child, first, second


def read_all(sim: StreamSimulator, store: InMemoryCheckpointStore, count: int) -> list[str]:
    """Run a consumer until ``count`` records came; their sequence numbers, in order."""
    collector = RecordCollector()
    consumer = StreamConsumer(
        collector, stream_arn=sim.stream_arn, client=sim, checkpoint_store=store, settings=FAST
    )
    with consumer:
        collector.wait_for(count)
    return collector.sequence_numbers()


def test_a_seek_by_time_into_the_child_finishes_the_parent_and_delivers_that_record_next() -> None:
    sim, parent, child, first, second = rolled_stream()
    store = InMemoryCheckpointStore()
    assert read_all(sim, store, 10) == first + second  # read to the end once
    positions = Positions(store, stream_arn=sim.stream_arn, client=sim)

    plan = positions.plan_seek(to_time=created(sim, child, 2))
    moves = {move.shard_id: move for move in plan.moves}
    assert moves[parent].after == Checkpoint(first[-1], finished=True)
    assert moves[parent].scanned == 5  # the parent read to its end: nothing at that time
    assert moves[child].after == Checkpoint(second[1])  # the record before: AFTER it
    assert moves[child].next_sequence_number == second[2]
    assert moves[child].scanned == 3
    assert plan.scanned == 8
    positions.apply(plan)

    assert read_all(sim, store, 3) == second[2:]


def test_a_seek_by_time_into_the_parent_makes_the_child_wait_for_it_again() -> None:
    sim, parent, child, first, second = rolled_stream()
    store = InMemoryCheckpointStore()
    read_all(sim, store, 10)
    positions = Positions(store, stream_arn=sim.stream_arn, client=sim)

    plan = positions.plan_seek(to_time=created(sim, parent, 3))
    moves = {move.shard_id: move for move in plan.moves}
    assert moves[parent].after == Checkpoint(first[2])
    assert moves[child].after is None  # not begun: read from its start after the parent
    assert moves[child].scanned == 0  # no need to read it
    positions.apply(plan)
    assert store.load(sim.stream_arn, child) is None

    # The parent's rest, then the whole child: order across the rollover holds.
    assert read_all(sim, store, 7) == first[3:] + second


def test_a_time_before_every_record_pins_the_oldest_record_and_delivers_it_next() -> None:
    sim, parent, _, first, second = rolled_stream()
    store = InMemoryCheckpointStore()
    read_all(sim, store, 10)
    positions = Positions(store, stream_arn=sim.stream_arn, client=sim)
    when = created(sim, parent, 0) - 3600
    plan = positions.plan_seek(to_time=when)
    (move, *_) = plan.moves
    assert move.after is not None and move.after.latest_at == when  # no record before it
    assert move.after.sequence_number is None and move.scanned == 1
    positions.apply(plan)
    assert read_all(sim, store, 10) == first + second


def test_trim_horizon_after_trimming_reads_what_is_left_without_reporting_a_gap() -> None:
    # Records older than the retention were trimmed; the seek's pin is older than 24 h
    # relative to nothing, so the default trimmed_data="raise" must not fire.
    sim = StreamSimulator(retention=100.0)
    written = write(sim, range(6))
    sim.advance(100.0 - 3.5)  # records 0-2 are now past the retention
    store = InMemoryCheckpointStore()
    positions = Positions(store, stream_arn=sim.stream_arn, client=sim)
    positions.apply(positions.plan_seek(to="trim-horizon"))
    (checkpoint,) = store.load_all(sim.stream_arn).values()
    assert checkpoint.latest_at == 0.0 and checkpoint.begun_at is not None
    assert read_all(sim, store, 3) == written[3:]


def test_latest_finishes_closed_shards_and_delivers_only_new_records() -> None:
    sim, parent, child, _, _ = rolled_stream()
    store = InMemoryCheckpointStore()
    positions = Positions(store, stream_arn=sim.stream_arn, client=sim)
    sim.advance(5.0)
    plan = positions.plan_seek(to="latest")
    moves = {move.shard_id: move for move in plan.moves}
    assert moves[parent].after is not None and moves[parent].after.finished
    assert moves[child].after == Checkpoint(
        None, latest_at=sim.wall_time(), begun_at=sim.wall_time()
    )
    assert plan.scanned == 0
    positions.apply(plan)
    sim.advance(1.0)
    new = write(sim, range(10, 12))
    assert read_all(sim, store, 2) == new


def test_to_sequence_delivers_that_record_next_and_after_sequence_skips_it() -> None:
    sim, _, child, _first, second = rolled_stream()
    store = InMemoryCheckpointStore()
    read_all(sim, store, 10)
    positions = Positions(store, stream_arn=sim.stream_arn, client=sim)

    plan = positions.plan_seek(to_sequence=second[3], shard_id=child)
    assert [move.shard_id for move in plan.moves] == [child]
    assert plan.moves[0].after == Checkpoint(second[2])
    positions.apply(plan)
    assert read_all(sim, store, 2) == second[3:]

    positions.apply(positions.plan_seek(after_sequence=second[1], shard_id=child))
    assert read_all(sim, store, 3) == second[2:]


def test_to_sequence_of_the_oldest_record_in_a_parent_resets_its_children() -> None:
    sim, parent, child, first, second = rolled_stream()
    store = InMemoryCheckpointStore()
    read_all(sim, store, 10)
    positions = Positions(store, stream_arn=sim.stream_arn, client=sim)
    plan = positions.plan_seek(to_sequence=first[0], shard_id=parent)
    moves = {move.shard_id: move for move in plan.moves}
    assert moves[parent].after is not None and moves[parent].after.latest_at is not None
    assert moves[child].after is None
    positions.apply(plan)
    assert read_all(sim, store, 10) == first + second


def test_bad_seeks_are_configuration_errors_that_say_what_to_do() -> None:
    sim, parent, _child, first, _ = rolled_stream()
    positions = Positions(InMemoryCheckpointStore(), stream_arn=sim.stream_arn, client=sim)
    with pytest.raises(ConfigurationError, match=r"in the future.*'latest'"):
        positions.plan_seek(to_time=sim.wall_time() + 3600)
    with pytest.raises(ConfigurationError, match="exactly one of"):
        positions.plan_seek(to="latest", to_time=0.0)
    with pytest.raises(ConfigurationError, match="is not in stream"):
        positions.plan_seek(to_sequence="1" + "0" * 20, shard_id="shardId-nope")
    with pytest.raises(ConfigurationError, match=r"'7' is not a sequence number: .* 21 to 40"):
        positions.plan_seek(after_sequence="7", shard_id=parent)
    with pytest.raises(ConfigurationError, match=r"has no record 7\d+"):
        positions.plan_seek(after_sequence="7" + "0" * 20, shard_id=parent)
    with pytest.raises(ConfigurationError, match="no record at or after"):
        positions.plan_seek(to_sequence=str(int(first[-1]) + 1), shard_id=parent)


def test_a_dry_run_writes_nothing() -> None:
    sim, _, _, _, _ = rolled_stream()
    store = InMemoryCheckpointStore()
    read_all(sim, store, 10)
    before = store.load_all(sim.stream_arn)
    positions = Positions(store, stream_arn=sim.stream_arn, client=sim)
    plan = positions.plan_seek(to="trim-horizon")
    assert plan.changes
    assert store.load_all(sim.stream_arn) == before


def test_reset_forgets_every_checkpoint_so_the_start_position_applies_again() -> None:
    sim, _, _, first, second = rolled_stream()
    store = InMemoryCheckpointStore()
    read_all(sim, store, 10)
    positions = Positions(store, stream_arn=sim.stream_arn, client=sim)
    positions.apply(positions.plan_reset())
    assert store.load_all(sim.stream_arn) == {}
    assert read_all(sim, store, 10) == first + second
