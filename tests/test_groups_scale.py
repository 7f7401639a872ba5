"""Consumer groups at scale: what a worker reads and writes, stepped by hand (issue 10).

- A stable group reads the heartbeat items only (O(workers)); the lease table (O(shards)) is
  read again when some worker's change counter moves, the live workers change, or as a
  safety net every FULL_READ_EVERY lease durations.
- Joining writes only the missing leases, takes nothing before a second look (workers started
  together have seen each other by then), and bounds the writes of one look by time.

Every table call is logged in order by :class:`Logged`, so that each test checks what was
read and written, not how long anything took.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from ddbstreams import Checkpoint, DynamoDBCheckpointStore
from ddbstreams._leases import (
    FULL_READ_EVERY,
    PLAN_PATIENCE,
    FencedCheckpoints,
    GroupMember,
)
from ddbstreams._lineage import ShardInfo
from ddbstreams.testing import LocalEndpoint
from test_groups import ARN, Clock, held, new_store, settle, shards

pytestmark = [pytest.mark.local_endpoint, pytest.mark.timeout(120)]
LEASE = 3.0  # ticks every second (a look), heartbeats every tick


@pytest.fixture
def store(local_endpoint: LocalEndpoint) -> DynamoDBCheckpointStore:
    return new_store(local_endpoint)


class Logged:
    """The lease table, unchanged, with every call logged as (worker, method), in order."""

    def __init__(self, table: DynamoDBCheckpointStore, worker: str, log: list[Any]) -> None:
        self._table = table
        self._worker = worker
        self._log = log
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._table, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self._log.append((self._worker, name))
            return method(*args, **kwargs)

        return call


def group(
    store: DynamoDBCheckpointStore, clock: Clock, *names: str
) -> tuple[list[GroupMember], list[tuple[str, str]]]:
    log: list[tuple[str, str]] = []
    members = [
        GroupMember(Logged(store, name, log), ARN, name, lease_duration=LEASE, clock=clock)  # type: ignore[arg-type]
        for name in names
    ]
    return members, log


def calls(log: list[tuple[str, str]], since: int = 0) -> Counter[str]:
    return Counter(method for _, method in log[since:])


def epochs(store: DynamoDBCheckpointStore) -> dict[str, int]:
    return {lease.shard_id: lease.epoch for lease in store.leases(ARN)}


# ----------------------------------------------------------------- reads


def test_a_stable_group_reads_heartbeats_only_until_the_safety_net(
    store: DynamoDBCheckpointStore,
) -> None:
    clock = Clock()
    members, log = group(store, clock, "a", "b", "c")
    members[0].register(shards(12))
    settle(members, clock, rounds=8)
    assert sorted(held(store).values()) == [4, 4, 4]
    since = len(log)
    rounds = int(FULL_READ_EVERY * LEASE)  # one safety net's period, in looks
    settle(members, clock, rounds=rounds)
    seen = calls(log, since)
    # Each read the lease table once: the safety net. Was 3 reads per round (every tick).
    assert seen == {"heartbeats": 3 * rounds, "heartbeat": 3 * rounds, "leases": 3}, seen
    assert sorted(held(store).values()) == [4, 4, 4]


def test_a_graceful_stop_is_taken_over_at_the_next_look(
    store: DynamoDBCheckpointStore,
) -> None:
    clock = Clock()
    (a, b, c), log = group(store, clock, "a", "b", "c")
    a.register(shards(9))
    settle([a, b, c], clock, rounds=8)
    c.release_all()  # its leases free, its heartbeat item gone
    since = len(log)
    a.tick()
    b.tick()
    assert sorted(held(store).values()) == [4, 5] and None not in held(store)
    assert calls(log, since)["leases"] == 2  # each read the table once: the group changed


def test_a_finished_parent_s_child_is_taken_at_the_next_look(
    store: DynamoDBCheckpointStore,
) -> None:
    clock = Clock()
    (a, b), log = group(store, clock, "a", "b")
    parent = ShardInfo("shardId-parent", None, "1", "5")
    child = ShardInfo("shardId-child", "shardId-parent", "6", None)
    a.register([*shards(3), parent, child])
    settle([a, b], clock, rounds=6)
    owner = {lease.shard_id: lease.owner for lease in store.leases(ARN)}
    assert owner["shardId-child"] is None and owner["shardId-parent"] is not None
    finisher = a if owner["shardId-parent"] == "a" else b
    epoch = finisher.epoch_of("shardId-parent")
    assert epoch is not None
    FencedCheckpoints(finisher.table, finisher).save(
        ARN, "shardId-parent", Checkpoint("5", finished=True)
    )
    since = len(log)
    a.tick()
    b.tick()
    owner = {lease.shard_id: lease.owner for lease in store.leases(ARN)}
    assert owner["shardId-child"] in ("a", "b")  # was free until the safety net's read
    assert calls(log, since)["leases"] == 2


def test_an_ask_is_answered_at_the_owner_s_next_look(store: DynamoDBCheckpointStore) -> None:
    clock = Clock()
    (a, b, c), _ = group(store, clock, "a", "b", "c")
    a.register(shards(12))
    settle([a, b, c], clock, rounds=8)
    (d,), _ = group(store, clock, "d")
    d.tick()
    for member in (a, b, c):
        member.tick()  # d joined: each reads the table once; nothing asked of it yet
    d.tick()  # its second look: it asks a, b and c for one lease each
    asked = [lease for lease in store.leases(ARN) if lease.handover_to == "d"]
    assert len(asked) == 3
    handed = 0
    for member in (a, b, c):
        changes = member.tick()  # d's change counter moved: each reads, sees the ask
        for shard_id, taker in changes.hand_over.items():
            handed += member.handed_over(shard_id, taker)
    assert handed == 3
    assert sorted(held(store).values()) == [3, 3, 3, 3]


# ----------------------------------------------------------------- joining


def test_leases_are_registered_once_whoever_discovers_them(
    store: DynamoDBCheckpointStore,
) -> None:
    clock = Clock()
    (a, b), log = group(store, clock, "a", "b")
    a.register(shards(30))
    since = len(log)
    b.register(shards(30))  # b discovered the same shards: it writes none of them
    assert calls(log, since) == {"heartbeat": 1, "leases": 1}  # was 30 add_leases
    b.tick()
    since = len(log)
    b.register(shards(32))  # two new shards: from what its last look read
    assert calls(log, since) == {"add_leases": 2}


def test_workers_started_together_take_each_lease_once(
    store: DynamoDBCheckpointStore,
) -> None:
    clock = Clock()
    members, _ = group(store, clock, "a", "b", "c", "d")
    members[0].register(shards(40))
    members[0].tick()  # a looks first: it sees no other worker yet
    for member in members[1:]:
        member.register(shards(40))
    settle(members, clock, rounds=6)
    assert sorted(held(store).values()) == [10, 10, 10, 10]
    # Every lease changed owner once; the first to look used to take all 40, then hand 30 on.
    assert set(epochs(store).values()) == {1}


class Together:
    """The lease table, logged; a read of the leases returns once every worker read them,
    so that all decide from the same table, as workers looking at the same moment do."""

    def __init__(
        self,
        table: DynamoDBCheckpointStore,
        worker: str,
        barrier: threading.Barrier,
        log: list[Any],
    ) -> None:
        self._table = table
        self._worker = worker
        self._barrier = barrier
        self._log = log

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    def leases(self, stream_arn: str) -> Any:
        leases = self._table.leases(stream_arn)
        self._barrier.wait(30)
        return leases

    def take(self, stream_arn: str, lease: Any, worker_id: str) -> bool:
        taken = self._table.take(stream_arn, lease, worker_id)
        self._log.append((self._worker, lease.shard_id, taken))
        return taken


def test_workers_looking_at_once_take_the_free_leases_without_racing(
    store: DynamoDBCheckpointStore,
) -> None:
    clock = Clock()
    members, _ = group(store, clock, "a", "b", "c", "d")
    members[0].register(shards(40))
    settle(members, clock, rounds=6)
    assert sorted(held(store).values()) == [10, 10, 10, 10]
    members[3].release_all()  # d stops: 10 leases free, its heartbeat item gone
    barrier = threading.Barrier(3)
    takes: list[tuple[str, str, bool]] = []
    for member in members[:3]:
        member.table = Together(store, member.worker_id, barrier, takes)  # type: ignore[assignment]
    clock.now += 1.0
    looks = [threading.Thread(target=member.tick) for member in members[:3]]
    for look in looks:
        look.start()
    for look in looks:
        look.join(30)
    # One look each, from the same table: every free lease taken once, none refused (each
    # refusal used to leave a lease free until a later look), the group within one.
    assert [taken for _, _, taken in takes] == [True] * 10, takes
    assert sorted(held(store).values()) == [13, 13, 14] and None not in held(store)


def test_a_lease_planned_for_a_worker_that_does_not_take_it_is_taken_by_another(
    store: DynamoDBCheckpointStore,
) -> None:
    clock = Clock()
    (a, b), _ = group(store, clock, "a", "b")
    a.register(shards(10))
    beats = 0

    def look() -> None:
        nonlocal beats
        beats += 1
        store.heartbeat(ARN, "c", beats, 0)  # c: alive, and never takes its planned 3
        a.tick()
        b.tick()
        clock.now += 1.0

    for _ in range(1 + PLAN_PATIENCE):  # the first look takes nothing
        look()
    # By the plan: ⌊10/3⌋ = 3 each, one of them 4; c's 3 stay free meanwhile.
    assert sorted(held(store).values()) == [3, 3, 4]
    look()
    # c's leases stayed free for PLAN_PATIENCE looks: the worker under ⌈10/3⌉ takes one.
    assert held(store)["a"] == held(store)["b"] == 4 and held(store)[None] == 2


class Slow:
    """A lease table whose takes each take 0.1 s of the fake clock (a busy host); its calls
    are logged in order."""

    def __init__(self, table: DynamoDBCheckpointStore, clock: Clock, cost: float = 0.1) -> None:
        self._table = table
        self._clock = clock
        self._cost = cost
        self._lock = threading.Lock()
        self.log: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._table, name)

        def call(*args: Any) -> Any:
            with self._lock:
                self.log.append(name)
                if name == "take":
                    self._clock.now += self._cost
            return method(*args)

        return call


def test_a_tick_s_takes_are_bounded_in_time_so_heartbeats_stay_on_time(
    store: DynamoDBCheckpointStore,
) -> None:
    clock = Clock()
    slow = Slow(store, clock)
    member = GroupMember(slow, ARN, "a", lease_duration=LEASE, clock=clock)  # type: ignore[arg-type]
    member.register(shards(100))
    lost: list[str] = []
    for _ in range(12):
        lost += member.tick().lost
        clock.now += member.tick_interval
    assert held(store) == {"a": 100}
    assert lost == []  # was: 100 takes in one tick (10 s): fenced, every lease let go
    ticks = " ".join(slow.log).split("heartbeats")[1:]  # what each tick did after its look
    takes = [tick.split().count("take") for tick in ticks]
    assert max(takes) <= 16 and sum(takes) == 100  # a third of lease_duration (1 s) each
    # A heartbeat between batches once one falls due (every 0.5 s of a look of 1 s).
    assert all(tick.split().count("heartbeat") >= 1 for tick in ticks if "take" in tick)
    # Takes went on from the last read: no read of the table between the first and last take
    # (reads: one to register, one at each of the first two looks).
    last_take = len(slow.log) - slow.log[::-1].index("take")
    assert slow.log[:last_take].count("leases") == 3


def test_takes_left_for_the_next_look_go_on_without_reading_the_table_again(
    store: DynamoDBCheckpointStore,
) -> None:
    clock = Clock()
    slow = Slow(store, clock, cost=0.05)  # 40 takes a look (2 s), the others the next
    a = GroupMember(slow, ARN, "a", lease_duration=6.0, clock=clock)  # type: ignore[arg-type]
    a.register(shards(100))
    for n in range(6):
        store.heartbeat(ARN, "b", n, n)  # a live peer whose change counter moves every look
        a.tick()
        clock.now += a.tick_interval
    assert held(store) == {"a": 50, None: 50}
    first_take = slow.log.index("take")
    last_take = len(slow.log) - slow.log[::-1].index("take")
    assert slow.log[first_take:last_take].count("take") == 50
    assert "leases" not in slow.log[first_take:last_take]  # was: a read at every look


def test_a_long_dead_worker_s_heartbeat_item_is_deleted(store: DynamoDBCheckpointStore) -> None:
    clock = Clock()
    (a, b), _ = group(store, clock, "a", "b")
    a.register(shards(4))
    settle([a, b], clock, rounds=4)
    # b is killed: a takes its leases after a lease duration, forgets it after three.
    settle([a], clock, rounds=int(LEASE) + 1)
    assert held(store) == {"a": 4} and set(store.heartbeats(ARN)) == {"a", "b"}
    settle([a], clock, rounds=int(2 * LEASE) + 1)
    assert set(store.heartbeats(ARN)) == {"a"}  # the heartbeats read stay O(live workers)


def test_a_failed_handover_is_offered_again(store: DynamoDBCheckpointStore) -> None:
    clock = Clock()
    (a, b), _ = group(store, clock, "a", "b")
    a.register(shards(4))
    settle([a], clock, rounds=3)
    b.tick()
    b.tick()  # asks a for two leases
    offered = a.tick().hand_over
    assert len(offered) == 2
    for shard_id in offered:  # the reader's checkpoint failed: the coordinator gives up, once
        a.handover_failed(shard_id)
    clock.now += 1.0
    assert a.tick().hand_over == offered  # was: never offered again, the shard stuck
