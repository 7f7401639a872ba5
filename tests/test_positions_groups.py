"""Seek while a consumer group runs: the DynamoDB store's leases over the local endpoint.

Two workers read a simulated stream; the seek takes their leases (epoch bump) and they go
on from the new position. What each worker delivers after the seek is checked record by
record: from the first record at or after the time, in order, nothing before it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from ddbstreams import ConsumerSettings, Positions, StreamConsumer
from ddbstreams.testing import LocalEndpoint, RecordCollector, StreamSimulator
from test_groups import new_store, owners, wait_until

pytestmark = [pytest.mark.local_endpoint, pytest.mark.timeout(90)]
SETTINGS = ConsumerSettings(poll_interval=0.01, checkpoint_every=1, discovery_interval=0.5)


def order(n: int) -> dict[str, Any]:
    return {"email": f"user{n}@example.com", "order_number": "1", "n": n}


def wait_for_quiet(store: Any, arn: str, quiet: float = 3.0, timeout: float = 30.0) -> None:
    """Until no worker's change counter moved for ``quiet`` seconds: then no worker has a
    reason of its own to read the lease table, and only the seek can make it read it."""
    deadline = time.monotonic() + timeout
    seen = {worker: beat.changes for worker, beat in store.heartbeats(arn).items()}
    since = time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the group's change counters kept moving"
        threading.Event().wait(0.2)
        now = {worker: beat.changes for worker, beat in store.heartbeats(arn).items()}
        if now != seen:
            seen, since = now, time.monotonic()


def test_a_seek_by_time_while_two_workers_run_makes_them_read_again_from_that_time(
    local_endpoint: LocalEndpoint,
) -> None:
    sim = StreamSimulator(shard_count=2)
    store = new_store(local_endpoint, lease_duration=3.0)
    collector = RecordCollector()
    workers = [
        StreamConsumer(
            collector,
            stream_arn=sim.stream_arn,
            client=sim,
            checkpoint_store=store,
            settings=SETTINGS,
            worker_id=name,
        )
        for name in ("w1", "w2")
    ]
    created: dict[str, float] = {}
    for n in range(20):
        created[sim.insert(order(n))] = 0.0
        sim.advance(1.0)
    for shard_id in sim.open_shard_ids():
        for raw in sim.records(shard_id):
            created[raw["dynamodb"]["SequenceNumber"]] = raw["dynamodb"][
                "ApproximateCreationDateTime"
            ]
    last = {
        shard_id: sim.records(shard_id)[-1]["dynamodb"]["SequenceNumber"]
        for shard_id in sim.open_shard_ids()
    }
    for worker in workers:
        worker.start()
    try:
        wait_until(lambda: owners(store, sim.stream_arn) == [("w1", 1), ("w2", 1)])
        wait_until(
            lambda: (
                {lease.shard_id: lease.checkpoint for lease in store.leases(sim.stream_arn)} == last
            )
        )
        wait_for_quiet(store, sim.stream_arn)  # the group's own lease reads are over
        mark = len(collector.records)
        assert mark == 20
        when = sorted(created.values())[8]  # the 9th record's time: 12 records from it on
        positions = Positions(store, stream_arn=sim.stream_arn, client=sim)
        plan = positions.plan_seek(to_time=when)
        # Picked up within a few looks, well before the safety-net read (6 lease durations).
        outcome = positions.apply(plan, wait_for_workers=8.0)
        assert sorted(outcome.taken_from.values()) == ["w1", "w2"]
        assert sorted(outcome.picked_up_by) == sorted(sim.open_shard_ids())
        assert outcome.not_picked_up == []

        wanted = {
            shard_id: [
                raw["dynamodb"]["SequenceNumber"]
                for raw in sim.records(shard_id)
                if raw["dynamodb"]["ApproximateCreationDateTime"] >= when
            ]
            for shard_id in sim.open_shard_ids()
        }
        assert sum(map(len, wanted.values())) == 12
        wait_until(lambda: len(collector.records) >= mark + 12, timeout=15)
        sim.insert(order(99))  # and the group goes on with new records
        wait_until(lambda: len(collector.records) >= mark + 13, timeout=15)
        again: dict[str, list[str]] = {}
        for record in collector.records[mark:]:
            again.setdefault(record.shard_id, []).append(record.sequence_number)
        for shard_id, sequence_numbers in wanted.items():
            new = [s for s in again.get(shard_id, []) if s not in created]
            assert [s for s in again.get(shard_id, []) if s in created] == sequence_numbers
            assert len(new) <= 1
        assert len(collector.records) == mark + 13  # nothing before the time again
    finally:
        for worker in workers:
            worker.stop(timeout=10)


def test_a_seek_to_the_stored_position_still_takes_the_lease_from_a_worker_that_read_past_it(
    local_endpoint: LocalEndpoint,
) -> None:
    # A worker has delivered records but not checkpointed them yet (a long
    # checkpoint_interval): the stored position already is the target, yet the worker is
    # past it. Found by a new-user run: the seek said "nothing to change" and replayed nothing.
    sim = StreamSimulator()
    store = new_store(local_endpoint, lease_duration=3.0)
    collector = RecordCollector()
    lazy = ConsumerSettings(poll_interval=0.01, checkpoint_every=10_000, checkpoint_interval=600)
    worker = StreamConsumer(collector, stream_arn=sim.stream_arn, client=sim,
                            checkpoint_store=store, settings=lazy, worker_id="w1")  # fmt: skip
    for n in range(3):
        sim.insert(order(n))
    worker.start()
    try:
        collector.wait_for(3)
        wait_until(lambda: owners(store, sim.stream_arn) == [("w1", 1)])
        positions = Positions(store, stream_arn=sim.stream_arn, client=sim)
        plan = positions.plan_seek(to="trim-horizon")
        (move,) = plan.moves
        assert move.held_by == "w1" and move.changes
        outcome = positions.apply(plan, wait_for_workers=20.0)
        assert outcome.taken_from == {move.shard_id: "w1"}
        collector.wait_for(6)  # the three records again, from the oldest
    finally:
        worker.stop(10)
    numbers = [int(r.new_image["n"]) for r in collector.records]  # type: ignore[index]
    assert numbers == [0, 1, 2, 0, 1, 2]
