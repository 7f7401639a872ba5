"""Consumer groups: leases in a DynamoDB table (the local endpoint, over HTTP).

Group members are stepped by hand with a fake clock where decisions are checked; whole
consumers share a simulated stream where delivery is checked.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from typing import Any

import boto3
import pytest

from ddbstreams import (
    Checkpoint,
    CheckpointStoreError,
    ConfigurationError,
    ConsumerSettings,
    DynamoDBCheckpointStore,
    LeaseLostError,
    StreamConsumer,
)
from ddbstreams._leases import FencedCheckpoints, GroupMember
from ddbstreams._lineage import ShardInfo
from ddbstreams.testing import LocalEndpoint, RecordCollector, StreamSimulator

pytestmark = pytest.mark.local_endpoint
ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000"
_tables = itertools.count(1)


@pytest.fixture
def store(local_endpoint: LocalEndpoint) -> DynamoDBCheckpointStore:
    return new_store(local_endpoint)


class Atomic:
    """A boto3 client whose calls are made one at a time.

    DynamoDB applies a conditional write atomically; moto's threaded server checks the
    condition and applies the update in two steps that concurrent requests interleave (two
    workers both "took" one lease at epoch 1 in a run of these tests). One lock for every
    store of this process gives the tests DynamoDB's semantics back.
    """

    lock = threading.Lock()

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if name == "get_waiter" or not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                return method(*args, **kwargs)

        return call


def new_store(
    endpoint: LocalEndpoint, table: str | None = None, **kwargs: Any
) -> DynamoDBCheckpointStore:
    client = Atomic(boto3.client("dynamodb", **endpoint.client_kwargs()))
    name = table or f"leases-{time.time_ns()}-{next(_tables)}"
    return DynamoDBCheckpointStore(name, client=client, **{"lease_duration": 1.0, **kwargs})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def shards(count: int) -> list[ShardInfo]:
    return [ShardInfo(f"shardId-{n:04d}", None, str(10**20 + n), None) for n in range(count)]


def members(store: DynamoDBCheckpointStore, clock: Clock, *names: str) -> list[GroupMember]:
    return [GroupMember(store, ARN, name, lease_duration=3.0, clock=clock) for name in names]


def held(store: DynamoDBCheckpointStore, stream_arn: str = ARN) -> Counter[str | None]:
    return Counter(lease.owner for lease in store.leases(stream_arn))


def owners(store: DynamoDBCheckpointStore, stream_arn: str) -> list[tuple[str, int]]:
    """Leases per worker, sorted; a free lease counts as the worker ``-``."""
    return sorted((owner or "-", n) for owner, n in held(store, stream_arn).items())


def settle(group: list[GroupMember], clock: Clock, rounds: int = 6) -> None:
    """Tick every member in turn, carrying out the handovers they are asked for."""
    for _ in range(rounds):
        for member in group:
            changes = member.tick()
            for shard_id, taker in changes.hand_over.items():
                member.handed_over(shard_id, taker)
        clock.now += 1.0  # a third of lease_duration


# ----------------------------------------------------------------- decisions


def test_leases_are_spread_within_one_and_stay_put(store: DynamoDBCheckpointStore) -> None:
    clock = Clock()
    group = members(store, clock, "a", "b", "c")
    group[0].register(shards(10))
    settle(group, clock)
    counts = held(store)
    assert sorted(counts.values()) == [3, 3, 4] and None not in counts
    epochs = {lease.shard_id: lease.epoch for lease in store.leases(ARN)}
    settle(group, clock, rounds=9)  # a stable group moves nothing
    assert {lease.shard_id: lease.epoch for lease in store.leases(ARN)} == epochs


def test_a_joining_worker_gets_its_share_by_handover(store: DynamoDBCheckpointStore) -> None:
    clock = Clock()
    group = members(store, clock, "a", "b", "c")
    group[0].register(shards(12))
    settle(group, clock)
    (newcomer,) = members(store, clock, "d")
    settle([*group, newcomer], clock)
    assert sorted(held(store).values()) == [3, 3, 3, 3]


def test_a_dead_worker_s_leases_are_taken_after_the_lease_duration(
    store: DynamoDBCheckpointStore,
) -> None:
    clock = Clock()
    group = members(store, clock, "a", "b", "c")
    group[0].register(shards(9))
    settle(group, clock)
    survivors = group[:2]  # c stops heartbeating (SIGKILL, SIGSTOP, a partition)
    for member in survivors:
        member.tick()
    assert held(store)["c"] == 3  # still c's: judged by our clock, not yet
    clock.now += 3.5  # lease_duration without c's counter moving
    settle(survivors, clock, rounds=2)
    assert sorted(held(store).values()) == [4, 5] and "c" not in held(store)


def test_a_worker_that_cannot_heartbeat_fences_itself_first(
    store: DynamoDBCheckpointStore,
) -> None:
    clock = Clock()
    (member,) = members(store, clock, "a")
    member.register(shards(2))
    member.tick()
    member.tick()  # takes wait for a second look (see test_groups_scale.py)
    assert member.holds("shardId-0000")
    clock.now += 1.9  # under two thirds of lease_duration (2 s) since the heartbeat
    assert member.holds("shardId-0000")
    clock.now += 0.2
    assert not member.holds("shardId-0000")  # others may take it only at 3 s


def test_a_child_is_leased_only_once_its_parent_is_finished(
    store: DynamoDBCheckpointStore,
) -> None:
    clock = Clock()
    (member,) = members(store, clock, "a")
    parent = ShardInfo("shardId-parent", None, "1", "5")
    child = ShardInfo("shardId-child", "shardId-parent", "6", None)
    member.register([parent, child])
    member.listed = {parent.shard_id, child.shard_id}
    assert member.tick().gained == []  # takes wait for a second look
    changes = member.tick()
    assert [lease.shard_id for lease in changes.gained] == ["shardId-parent"]
    epoch = member.epoch_of("shardId-parent")
    assert epoch is not None
    # As a reader does: through the fenced store, which tells the group of the change.
    FencedCheckpoints(store, member).save(ARN, "shardId-parent", Checkpoint("5", finished=True))
    clock.now += 1.0
    assert [lease.shard_id for lease in member.tick().gained] == ["shardId-child"]


# ----------------------------------------------------------------- fencing


def test_a_checkpoint_from_a_worker_that_lost_the_lease_is_refused(
    store: DynamoDBCheckpointStore,
) -> None:
    clock = Clock()
    zombie, taker = members(store, clock, "zombie", "taker")
    zombie.register(shards(1))
    zombie.tick()
    zombie.tick()
    old_epoch = zombie.epoch_of("shardId-0000")
    assert old_epoch is not None
    store.save_fenced(ARN, "shardId-0000", Checkpoint("100"), "zombie", old_epoch)
    clock.now += 10  # the zombie is paused; the taker sees no heartbeat move
    taker.tick()
    clock.now += 10
    taker.tick()
    assert held(store) == Counter({"taker": 1})
    with pytest.raises(LeaseLostError, match="taker"):
        store.save_fenced(ARN, "shardId-0000", Checkpoint("200"), "zombie", old_epoch)
    assert store.load(ARN, "shardId-0000") == Checkpoint("100")


def test_checkpoints_never_move_backwards(store: DynamoDBCheckpointStore) -> None:
    clock = Clock()
    (member,) = members(store, clock, "a")
    member.register(shards(1))
    member.tick()
    member.tick()
    epoch = member.epoch_of("shardId-0000")
    assert epoch is not None
    store.save_fenced(ARN, "shardId-0000", Checkpoint("1" + "0" * 21), "a", epoch)
    store.save_fenced(ARN, "shardId-0000", Checkpoint("9" * 21), "a", epoch)  # shorter: lower
    assert store.load(ARN, "shardId-0000") == Checkpoint("1" + "0" * 21)


# ----------------------------------------------------------------- the table


def test_bad_settings_and_tables_are_clear_errors(
    local_endpoint: LocalEndpoint, dynamodb: Any
) -> None:
    with pytest.raises(ConfigurationError, match="lease_duration"):
        new_store(local_endpoint, lease_duration=0)
    with pytest.raises(ConfigurationError, match="group"):
        new_store(local_endpoint, group="")
    with pytest.raises(CheckpointStoreError, match="does not exist"):
        new_store(local_endpoint, create_table=False)
    dynamodb.create_table(
        TableName="not-a-lease-table",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(CheckpointStoreError, match="another key schema"):
        new_store(local_endpoint, table="not-a-lease-table")


def test_creating_the_table_from_several_workers_at_once_is_safe(
    local_endpoint: LocalEndpoint,
) -> None:
    name = f"leases-race-{time.time_ns()}"
    stores: list[DynamoDBCheckpointStore] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            stores.append(new_store(local_endpoint, table=name))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and len(stores) == 4


# ----------------------------------------------------------------- whole consumers


def item(n: int, version: int) -> dict[str, Any]:
    return {"email": f"user{n}@example.com", "order_number": "1", "version": version}


def test_workers_share_a_stream_and_a_stopping_worker_hands_its_shards_on(
    local_endpoint: LocalEndpoint,
) -> None:
    sim = StreamSimulator(shard_count=6)
    store = new_store(local_endpoint, lease_duration=3.0)  # not so short a busy host fails over
    collector = RecordCollector()
    settings = ConsumerSettings(poll_interval=0.01, checkpoint_every=1, discovery_interval=0.2)
    workers = [
        StreamConsumer(
            collector,
            stream_arn=sim.stream_arn,
            client=sim,
            checkpoint_store=store,
            settings=settings,
            worker_id=name,
        )
        for name in ("w1", "w2", "w3")
    ]
    written: dict[str, list[str]] = {}

    def write(version: int) -> None:
        for n in range(30):
            written.setdefault(f"user{n}@example.com", []).append(sim.insert(item(n, version)))

    for worker in workers:
        worker.start()
    try:
        wait_until(lambda: owners(store, sim.stream_arn) == [("w1", 2), ("w2", 2), ("w3", 2)])
        write(0)
        wait_until(lambda: len(set(collector.sequence_numbers())) == 30, timeout=60)
        workers[0].stop(timeout=10)  # graceful: checkpoints, then releases its leases
        wait_until(lambda: owners(store, sim.stream_arn) == [("w2", 3), ("w3", 3)])
        sim.rollover()
        write(1)
        try:
            wait_until(lambda: len(set(collector.sequence_numbers())) == 60, timeout=60)
        except AssertionError:
            got = set(collector.sequence_numbers())
            missing = [
                (shard, r["dynamodb"]["SequenceNumber"])
                for shard in sim.open_shard_ids()
                for r in sim.records(shard)
                if r["dynamodb"]["SequenceNumber"] not in got
            ]
            print("MISSING", missing)
            for lease in store.leases(sim.stream_arn):
                print("LEASE", lease)
            for worker in workers[1:]:
                for status in worker.shards():
                    print("SHARD", worker.worker_id, status)
            raise
    finally:
        for worker in workers:
            worker.stop(timeout=10)
    first: dict[str, list[str]] = {}
    for record in collector.records:
        seen = first.setdefault(record.keys["email"], [])
        if record.sequence_number not in seen:
            seen.append(record.sequence_number)
    assert first == written  # nothing lost; first deliveries in order per item
    # A graceful stop and handovers deliver nothing twice (a failover may: at-least-once).
    taken_over = any(lease.epoch > 4 for lease in store.leases(sim.stream_arn))
    duplicates = len(collector.records) - 60
    assert duplicates == 0 or taken_over, f"{duplicates} duplicates without a failover"


def wait_until(condition: Any, timeout: float = 20.0) -> None:
    step = threading.Event()
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        step.wait(0.02)


def test_the_leases_command_shows_who_reads_what(
    store: DynamoDBCheckpointStore,
    local_endpoint: LocalEndpoint,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ddbstreams._cli import main

    clock = Clock()
    group = members(store, clock, "a", "b")
    group[0].register(shards(3))
    settle(group, clock)
    args = ["leases", store.table_name, "--endpoint-url", local_endpoint.url]
    assert main([*args, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    (leases,) = shown["streams"].values()
    assert sorted(Counter(lease["owner"] for lease in leases).values()) == [1, 2]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert ARN in text and "a: " in text and "b: " in text
    # A group with no leases is most likely a typo: an error naming the groups there are.
    assert (
        main(
            ["leases", store.table_name, "--group", "nobody", "--endpoint-url", local_endpoint.url]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert f"group 'nobody' has no leases in {store.table_name!r}; groups there: " in err
    assert store.group in err
