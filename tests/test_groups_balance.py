"""Consumer groups: balance cases found by the multi-process tests, stepped by hand.

Each reproduces a state three worker processes reached (tests/test_groups_processes.py) with
GroupMembers on a fake clock over the local endpoint, so that it is deterministic.
"""

from __future__ import annotations

from collections import Counter

import pytest

from ddbstreams import Checkpoint, DynamoDBCheckpointStore
from ddbstreams._leases import FencedCheckpoints
from ddbstreams.testing import LocalEndpoint
from test_groups import ARN, Clock, held, members, new_store, settle, shards

pytestmark = pytest.mark.local_endpoint


@pytest.fixture
def store(local_endpoint: LocalEndpoint) -> DynamoDBCheckpointStore:
    return new_store(local_endpoint)


def give(store: DynamoDBCheckpointStore, owner: str, numbers: range) -> None:
    """Make ``owner`` the holder of these free leases, as if it had taken them earlier, and
    give it a heartbeat item (a worker without one is dead to the others)."""
    leases = {lease.shard_id: lease for lease in store.leases(ARN)}
    for n in numbers:
        assert store.take(ARN, leases[f"shardId-{n:04d}"], owner)
    store.heartbeat(ARN, owner, 0)


def shares(store: DynamoDBCheckpointStore) -> list[int]:
    readable = Counter(lease.owner for lease in store.leases(ARN) if not lease.finished)
    return sorted(readable.values())


def test_an_ask_for_a_lease_that_finished_does_not_hold_the_asker_below_its_share(
    store: DynamoDBCheckpointStore,
) -> None:
    clock = Clock()
    a, b, c = members(store, clock, "a", "b", "c")
    a.register(shards(10))
    give(store, "b", range(0, 5))
    give(store, "c", range(5, 8))
    give(store, "a", range(8, 10))
    for member in (a, b, c, a):  # a holds 2 of 10: it asks b for one lease (second look)
        member.tick()
    (asked,) = [lease for lease in store.leases(ARN) if lease.handover_to == "a"]
    epoch = b.epoch_of(asked.shard_id)
    assert epoch is not None
    # b reads that shard to its end before its next look: nothing left to hand over.
    FencedCheckpoints(store, b).save(ARN, asked.shard_id, Checkpoint("7", finished=True))
    clock.now += 1.0
    settle([a, b, c], clock)
    assert shares(store) == [3, 3, 3]  # was [2, 3, 4]: a waited for that lease forever


def test_a_worker_two_under_another_asks_even_at_the_floor_of_its_share(
    store: DynamoDBCheckpointStore,
) -> None:
    clock = Clock()
    a, b, c = members(store, clock, "a", "b", "c")
    a.register(shards(8))
    give(store, "a", range(0, 4))  # as after a rolling start: 8 shards, then 2, then 3 workers
    give(store, "b", range(4, 6))
    give(store, "c", range(6, 8))
    settle([a, b, c], clock)
    assert shares(store) == [2, 3, 3]  # was [2, 2, 4]: everyone at ⌊8/3⌋, nobody asked


def test_a_rolling_start_ends_within_one(store: DynamoDBCheckpointStore) -> None:
    clock = Clock()
    a, b, c = members(store, clock, "a", "b", "c")
    a.register(shards(8))
    settle([a], clock)
    settle([a, b], clock)
    assert sorted(held(store).values()) == [4, 4]
    settle([a, b, c], clock)
    assert shares(store) == [2, 3, 3]
    epochs = {lease.shard_id: lease.epoch for lease in store.leases(ARN)}
    settle([a, b, c], clock, rounds=9)  # and then nothing moves
    assert {lease.shard_id: lease.epoch for lease in store.leases(ARN)} == epochs


def test_a_worker_whose_fence_lapses_at_every_look_still_hands_over_what_it_is_asked(
    store: DynamoDBCheckpointStore,
) -> None:
    """On a loaded host each look of a worker began with its fence lapsed (its looks took
    longer than two thirds of the lease duration): each let go of every lease and took them
    back from the table, and only the leases held when a look began were checked for an ask,
    so none was ever handed over (tests/test_groups_processes.py: shares [1, 3, 5] for 30 s
    after the paused worker came back)."""
    clock = Clock()
    a, b = members(store, clock, "a", "b")
    a.register(shards(4))
    give(store, "b", range(0, 4))
    b.tick()
    b.tick()
    a.tick()
    a.tick()  # a holds none of 4: it asks b for two (second look)
    asked = {lease.shard_id for lease in store.leases(ARN) if lease.handover_to == "a"}
    assert len(asked) == 2
    handing: dict[str, str] = {}
    for _ in range(3):
        clock.now += 2.5  # past b's fence (2 s after its last heartbeat) at every look
        changes = b.tick()
        assert len(changes.lost) == 4  # it let go of all, and took them back
        handing.update(changes.hand_over)
    assert handing == dict.fromkeys(asked, "a")  # was {}
