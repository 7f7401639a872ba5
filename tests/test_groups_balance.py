"""Consumer groups: balance cases found by the multi-process tests, stepped by hand.

Each reproduces a state three worker processes reached (tests/test_groups_processes.py) with
GroupMembers on a fake clock over the local endpoint, so that it is deterministic.
"""

from __future__ import annotations

from collections import Counter

import pytest
from test_groups import ARN, Clock, held, members, new_store, settle, shards

from ddbstreams import Checkpoint, DynamoDBCheckpointStore
from ddbstreams.testing import LocalEndpoint

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
    a.register(shards(11))
    give(store, "b", range(0, 6))
    give(store, "c", range(6, 9))
    give(store, "a", range(9, 11))
    for member in (b, c, a):  # a holds 2 of 11 (under ⌊11/3⌋ = 3): it asks b for shard 0
        member.tick()
    (asked,) = [lease for lease in store.leases(ARN) if lease.handover_to == "a"]
    epoch = b.epoch_of(asked.shard_id)
    assert epoch is not None
    # b reads that shard to its end before its next look: nothing left to hand over.
    store.save_fenced(ARN, asked.shard_id, Checkpoint("7", finished=True), "b", epoch)
    clock.now += 1.0
    settle([a, b, c], clock)
    assert shares(store) == [3, 3, 4]  # was [2, 3, 5]: a waited for that lease forever
