"""Consumer groups: a paused worker's self-fencing, found by the multi-process tests.

A worker SIGSTOPped for three lease durations, then SIGCONTed, delivered a record of a
shard another worker had taken meanwhile (tests/test_groups_processes.py): its first
heartbeat after the pause refreshed its fence before it had looked at the lease table, so
for one round trip it "held" every lease it held before the pause. Stepped by hand here.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import pytest

from ddbstreams import ConsumerSettings, DynamoDBCheckpointStore, StreamConsumer
from ddbstreams._leases import GroupMember, Heartbeat
from ddbstreams.testing import LocalEndpoint, RecordCollector, StreamSimulator
from test_groups import ARN, Clock, held, members, new_store, settle, shards, wait_until

pytestmark = pytest.mark.local_endpoint


@pytest.fixture
def store(local_endpoint: LocalEndpoint) -> DynamoDBCheckpointStore:
    return new_store(local_endpoint)


class Watched:
    """The lease table, unchanged, with a look at the member between its heartbeat and the
    first read of the group (where a tick learns what it lost)."""

    def __init__(self, table: DynamoDBCheckpointStore) -> None:
        self._table = table
        self.member: GroupMember | None = None
        self.held_after_heartbeat: list[bool] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    def heartbeats(self, stream_arn: str) -> dict[str, Heartbeat]:
        assert self.member is not None
        self.held_after_heartbeat.append(self.member.holds("shardId-0000"))
        return self._table.heartbeats(stream_arn)


def test_a_worker_back_from_a_pause_holds_nothing_before_it_has_read_the_leases(
    store: DynamoDBCheckpointStore,
) -> None:
    clock = Clock()
    watched = Watched(store)
    zombie = GroupMember(watched, ARN, "zombie", lease_duration=3.0, clock=clock)  # type: ignore[arg-type]
    watched.member = zombie
    (taker,) = members(store, clock, "taker")
    zombie.register(shards(1))
    zombie.tick()
    zombie.tick()  # takes wait for a second look
    taker.tick()
    assert zombie.holds("shardId-0000") and held(store) == {"zombie": 1}
    clock.now += 4.0  # the zombie is paused: no tick, no heartbeat
    taker.tick()
    clock.now += 4.0
    taker.tick()  # its counter has not moved for a lease duration: taken
    assert held(store) == {"taker": 1}
    watched.held_after_heartbeat.clear()
    changes = zombie.tick()  # the zombie resumes
    assert watched.held_after_heartbeat == [False]  # was [True]: it could deliver meanwhile
    assert "shardId-0000" in changes.lost and not zombie.holds("shardId-0000")


def test_a_reader_made_before_its_lease_was_taken_again_may_not_deliver() -> None:
    """The tick thread may hold a lease before the coordinator rebuilt its reader: a reader
    made under an older epoch (or none) is fenced out, whatever the timing."""
    from ddbstreams._leases import GroupMember

    class OneLease:
        """Just what GroupMember.fence_for reads."""

    member = GroupMember(OneLease(), "arn", "w", lease_duration=3.0, clock=lambda: 0.0)  # type: ignore[arg-type]
    member._last_beat_ok = 0.0
    assert member.fence_for("s", None) == -math.inf  # not held: nothing may be delivered
    member.held["s"] = 4
    assert member.fence_for("s", 4) == 2.0  # two thirds of the lease duration
    assert member.fence_for("s", 3) == -math.inf  # a reader from the lease's earlier holding
    assert member.fence_for("s", None) == -math.inf  # a reader made before it was taken


class PausedDuringRead:
    """The lease table, with its worker paused once (SIGSTOP, or a host too busy to run
    it) while its read of the heartbeats is in flight: the others tick on meanwhile."""

    def __init__(self, table: DynamoDBCheckpointStore, clock: Clock) -> None:
        self._table = table
        self.clock = clock
        self.others: list[GroupMember] = []
        self.pause_for = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    def heartbeats(self, stream_arn: str) -> dict[str, Heartbeat]:
        paused, self.pause_for = self.pause_for, 0.0
        end = self.clock.now + paused
        while self.clock.now < end:
            self.clock.now += 1.0
            for other in self.others:
                for shard_id, taker in other.tick().hand_over.items():
                    other.handed_over(shard_id, taker)
        return self._table.heartbeats(stream_arn)


def test_a_worker_paused_during_its_look_does_not_take_live_workers_leases(
    store: DynamoDBCheckpointStore,
) -> None:
    """A worker paused in the middle of a tick (between reading its clock and reading the
    heartbeats) dated the counters it read by the clock from before the pause: at its next
    look, the live workers whose counters had not moved since looked dead for a lease
    duration, and it took all their leases (tests/test_groups_processes.py, the paused
    worker's test: it then delivered records the others had delivered first)."""
    clock = Clock()
    paused = PausedDuringRead(store, clock)
    zombie = GroupMember(paused, ARN, "zombie", lease_duration=3.0, clock=clock)  # type: ignore[arg-type]
    others = members(store, clock, "b", "c")
    paused.others = others
    zombie.register(shards(9))
    settle([zombie, *others], clock)
    assert sorted(held(store).values()) == [3, 3, 3]
    paused.pause_for = 8.0  # its tick reads the clock, then stops for 8 s; b and c go on
    zombie.tick()
    assert held(store)["zombie"] == 0  # the others took its leases while it was paused
    by_others = {lease.shard_id: lease.owner for lease in store.leases(ARN)}
    clock.now += 0.5  # its next look, before b's and c's counters move again
    zombie.tick()
    assert {lease.shard_id: lease.owner for lease in store.leases(ARN)} == by_others


class SlowHeartbeat:
    """The lease table, with one heartbeat write, once armed, answering only half a second
    after the worker's fence lapsed (a busy host, a slow table): the worker's tick is still
    in flight, so the fence comes back without the tick having seen it lapse."""

    def __init__(self, table: DynamoDBCheckpointStore) -> None:
        self._table = table
        self.armed = threading.Event()
        self.lapsed = threading.Event()
        self._last_start: float | None = None  # of the last heartbeat that succeeded

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    def heartbeat(self, stream_arn: str, worker_id: str, beat: int, changes: int) -> None:
        started = time.monotonic()
        last = self._last_start
        # A regular beat, a tick after the last: the fence it renews comes back for longer
        # than the tick that follows the slow one needs to start.
        if self.armed.is_set() and last is not None and started - last >= 0.8:
            self.armed.clear()
            fence = last + self._table.lease_duration * 2 / 3  # the worker's is no later
            threading.Event().wait(fence + 0.5 - time.monotonic())  # the slow answer
            self.lapsed.set()
        self._table.heartbeat(stream_arn, worker_id, beat, changes)
        self._last_start = started


def test_a_shard_whose_fence_lapsed_under_a_slow_heartbeat_is_read_again_once_it_is_back(
    local_endpoint: LocalEndpoint,
) -> None:
    """While a heartbeat was slow, the fence lapsed and the scheduler dropped each shard it
    found due (as if another worker's); the heartbeat then succeeded, the fence came back
    with no lease lost or taken, and nothing scheduled the shards again: the worker held
    them and read nothing, for good (tests/test_groups_processes.py on a busy host: "records
    missing")."""
    sim = StreamSimulator(shard_count=1)
    slow = SlowHeartbeat(new_store(local_endpoint, lease_duration=3.0))
    collector = RecordCollector()
    consumer = StreamConsumer(
        collector,
        stream_arn=sim.stream_arn,
        client=sim,
        checkpoint_store=slow,  # type: ignore[arg-type]
        settings=ConsumerSettings(poll_interval=0.01, idle_poll_interval_max=0.02),
        worker_id="w1",
    )
    with consumer:
        sim.insert({"email": "a@example.com", "order_number": "1"})
        collector.wait_for(1, timeout=20)
        slow.armed.set()
        assert slow.lapsed.wait(20)
        sim.insert({"email": "b@example.com", "order_number": "1"})
        wait_until(lambda: len(collector.records) == 2, timeout=10)  # was never


class TakeInFlight:
    """The lease table, with a take that waits to be let through once armed (a slow write):
    a tick in flight while the worker stops."""

    def __init__(self, table: DynamoDBCheckpointStore) -> None:
        self._table = table
        self.armed = False
        self.in_take = threading.Event()
        self.proceed = threading.Event()
        self.removed = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    def take(self, stream_arn: str, lease: Any, worker_id: str) -> bool:
        if self.armed:
            self.in_take.set()
            assert self.proceed.wait(20)
        return bool(self._table.take(stream_arn, lease, worker_id))

    def remove_worker(self, stream_arn: str, worker_id: str) -> None:
        self._table.remove_worker(stream_arn, worker_id)
        self.removed.set()


def test_a_worker_that_stops_during_a_tick_keeps_no_lease(
    store: DynamoDBCheckpointStore,
) -> None:
    """A graceful stop released every lease while the tick in flight went on: it took a
    lease (one just released, in tests/test_groups_processes.py) after the release, and the
    stopped worker kept it until others saw it dead."""
    clock = Clock()
    slow = TakeInFlight(store)
    member = GroupMember(slow, ARN, "w", lease_duration=3.0, clock=clock)  # type: ignore[arg-type]
    member.register(shards(2))
    member.tick()  # takes wait for a second look
    slow.armed = True
    ticking = threading.Thread(target=member.tick)
    ticking.start()
    assert slow.in_take.wait(20)
    releasing = threading.Thread(target=member.release_all)  # the worker stops meanwhile
    releasing.start()
    released_first = slow.removed.wait(1.0)  # was True: it did not wait for the tick
    slow.proceed.set()
    ticking.join(20)
    releasing.join(20)
    assert not ticking.is_alive() and not releasing.is_alive()
    assert held(store)["w"] == 0, f"released before the tick ended: {released_first}"
