"""Consumer groups: which worker may read which shard, decided through a lease table.

The model (docs: "Running many workers"):

- **Liveness costs O(workers).** Each worker bumps a heartbeat counter in an item of its
  own every ``lease_duration / 3`` seconds. A worker is dead when, by the *observer's own
  clock*, its counter has not moved for ``lease_duration``; no clock of another host is
  ever compared with ours.
- **A lease changes only when its owner changes.** Every change of owner bumps the lease's
  ``epoch``; every checkpoint write is conditional on (owner, epoch), so a worker that lost
  a lease can never move its checkpoint (fencing).
- **Self-fencing.** A worker whose heartbeats have failed for two thirds of
  ``lease_duration`` stops delivering before anyone may take its shards.
- **Balance without thrash.** Free leases and those of dead workers are taken first, up to
  ⌈S/W⌉. A worker holding fewer than ⌈S/W⌉ asks a worker holding at least two more than
  itself (and more than ⌊S/W⌋) for a lease; the owner finishes its in-flight record,
  checkpoints and hands the lease over. A group ends within one, then moves nothing.
- **Lineage.** A shard is leased only once its parent's lease is finished (or the parent is
  no longer in the table), whoever read the parent.

:class:`GroupMember` holds one worker's view and decisions; it does no I/O of its own but
through a :class:`LeaseTable`, so a test can step it with a fake clock.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ._checkpoints import Checkpoint
from ._errors import CheckpointStoreError
from ._lineage import ShardInfo

logger = logging.getLogger("ddbstreams")


class LeaseLostError(CheckpointStoreError):
    """This worker no longer holds the shard's lease: its checkpoint write was refused."""


@dataclass(frozen=True)
class Lease:
    """One shard's lease in a consumer group, as the lease table holds it.

    ``owner`` is the worker id reading the shard (``None``: free); ``epoch`` grows on every
    change of owner; ``checkpoint`` is the last sequence number delivered and checkpointed;
    ``finished`` means the shard was read to its end, so its children may be leased.
    ``handover_to`` names a worker that asked for the lease to balance the group.
    """

    shard_id: str
    parent_shard_id: str | None
    owner: str | None
    epoch: int
    checkpoint: str | None
    finished: bool
    handover_to: str | None = None
    latest_at: float | None = None
    begun: bool = False
    begun_at: float | None = None

    def as_checkpoint(self) -> Checkpoint | None:
        """What a reader resumes from; None if the shard's reading has not begun."""
        if not (self.begun or self.finished or self.checkpoint is not None):
            return None
        return Checkpoint(self.checkpoint, self.finished, self.latest_at, self.begun_at)


@runtime_checkable
class LeaseTable(Protocol):
    """What a checkpoint store must also do for a consumer group (a DynamoDB table, or any
    store with conditional writes: Postgres, Redis...).

    Every method names the group's stream; a store serves one group. Conditional methods
    return False (never raise) when their condition does not hold.
    """

    def heartbeat(self, stream_arn: str, worker_id: str, beat: int) -> None:
        """Store this worker's heartbeat counter (one item per worker)."""
        ...

    def heartbeats(self, stream_arn: str) -> dict[str, int]:
        """Every worker's heartbeat counter, by worker id."""
        ...

    def remove_worker(self, stream_arn: str, worker_id: str) -> None:
        """Delete this worker's heartbeat item (a graceful stop)."""
        ...

    def leases(self, stream_arn: str) -> list[Lease]:
        """Every lease of the stream in this group."""
        ...

    def add_leases(self, stream_arn: str, shards: Sequence[ShardInfo]) -> None:
        """Create a free lease for each shard that has none (existing ones are kept)."""
        ...

    def take(self, stream_arn: str, lease: Lease, worker_id: str) -> bool:
        """Make ``worker_id`` the owner if the lease still has ``lease.owner`` and
        ``lease.epoch``; the epoch grows by one."""
        ...

    def ask_handover(self, stream_arn: str, lease: Lease, worker_id: str) -> bool:
        """Ask the owner (still ``lease.owner`` at ``lease.epoch``) to hand it over."""
        ...

    def hand_over(
        self, stream_arn: str, shard_id: str, epoch: int, owner: str, to: str | None
    ) -> bool:
        """Give a lease ``owner`` holds at ``epoch`` to ``to`` (None: release it)."""
        ...

    def save_fenced(
        self, stream_arn: str, shard_id: str, checkpoint: Checkpoint, worker_id: str, epoch: int
    ) -> None:
        """Save a checkpoint if ``worker_id`` holds the lease at ``epoch`` (never backwards);
        else raise :class:`LeaseLostError`."""
        ...

    def load(self, stream_arn: str, shard_id: str) -> Checkpoint | None: ...

    def load_all(self, stream_arn: str) -> dict[str, Checkpoint]: ...


Hook = Callable[[str], object]


@dataclass
class GroupChanges:
    """What one :meth:`GroupMember.tick` decided for the coordinator to carry out."""

    gained: list[Lease] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    hand_over: dict[str, str] = field(default_factory=dict)  # shard id -> taker


class GroupMember:
    """One worker of a consumer group: heartbeats, liveness, the leases it holds.

    ``tick()`` is called every ``lease_duration / 3`` seconds; between ticks,
    :meth:`holds` answers "may I read this shard?" and :attr:`fenced_until` says until
    when delivering is safe without a newer heartbeat.
    """

    def __init__(
        self,
        table: LeaseTable,
        stream_arn: str,
        worker_id: str,
        *,
        lease_duration: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self.stream_arn = stream_arn
        self.worker_id = worker_id
        self.lease_duration = lease_duration
        self._clock = clock
        self._beat = 0
        self._last_beat_ok: float | None = None
        self._seen: dict[str, tuple[int, float]] = {}  # worker -> (counter, when it moved)
        self.held: dict[str, int] = {}  # shard id -> epoch
        self.finished: set[str] = set()
        self.listed: set[str] = set()
        self.leases_by_shard: dict[str, Lease] = {}
        self.asked: set[str] = set()  # shards whose handover this worker asked for
        self.handing_over: set[str] = set()  # shards this worker is giving to an asker

    @property
    def tick_interval(self) -> float:
        return self.lease_duration / 3

    @property
    def fenced_until(self) -> float:
        """Delivering is safe until this moment of our clock (two thirds of the lease
        duration after the last heartbeat that succeeded)."""
        if self._last_beat_ok is None:
            return -math.inf
        return self._last_beat_ok + self.lease_duration * 2 / 3

    def holds(self, shard_id: str) -> bool:
        return shard_id in self.held and self._clock() < self.fenced_until

    def fence_for(self, shard_id: str, epoch: int | None) -> float:
        """Until when (our clock) a reader made for the lease at ``epoch`` may deliver
        records of this shard: never once the lease changed (a reader made before this
        worker took it again would read from an old position)."""
        held = self.held.get(shard_id)
        if held is None or held != epoch or shard_id in self.handing_over:
            return -math.inf
        return self.fenced_until

    def epoch_of(self, shard_id: str) -> int | None:
        return self.held.get(shard_id)

    def is_finished(self, shard_id: str) -> bool:
        return shard_id in self.finished

    def register(self, shards: Sequence[ShardInfo]) -> None:
        """Shards found by discovery get a (free) lease if they have none."""
        if shards:
            self.table.add_leases(self.stream_arn, shards)

    def tick(self) -> GroupChanges:
        """Heartbeat, look at the group, take / ask for / notice the loss of leases."""
        changes = GroupChanges()
        now = self._clock()
        if now >= self.fenced_until and self.held:
            # Back from a pause (a stopped process, a long GC) or from failed heartbeats:
            # others may have taken these leases. Let go of them before the heartbeat makes
            # delivering safe again; those still ours are taken back below, from the table.
            logger.error(
                "worker %s: no heartbeat for %.1fs: it stops reading its %d shard(s) before "
                "other workers may take them, until it has read the lease table again",
                self.worker_id,
                now - (self._last_beat_ok or now),
                len(self.held),
            )
            changes.lost.extend(self.held)
            self.held.clear()
        self._beat += 1
        try:
            self.table.heartbeat(self.stream_arn, self.worker_id, self._beat)
            self._last_beat_ok = now
        except CheckpointStoreError as exc:
            logger.warning("worker %s: heartbeat failed: %s", self.worker_id, exc)
        if now >= self.fenced_until:  # the heartbeat failed too: nothing is safe to read
            return changes
        live = self._live_workers(self.table.heartbeats(self.stream_arn), now)
        leases = self.table.leases(self.stream_arn)
        self._learn(leases, changes)
        self._balance(leases, live, changes)
        return changes

    def release_all(self) -> None:
        """A graceful stop: give back every lease and the heartbeat item."""
        for shard_id, epoch in sorted(self.held.items()):
            lease = self.leases_by_shard.get(shard_id)
            to = lease.handover_to if lease is not None else None
            self.table.hand_over(self.stream_arn, shard_id, epoch, self.worker_id, to)
        self.held.clear()
        self.table.remove_worker(self.stream_arn, self.worker_id)

    def drop(self, shard_id: str) -> None:
        """Stop counting a lease as held: a checkpoint write found it lost."""
        self.held.pop(shard_id, None)

    def handed_over(self, shard_id: str, to: str | None) -> bool:
        """Give one held lease to ``to`` (after its reader stopped and checkpointed)."""
        self.handing_over.discard(shard_id)
        epoch = self.held.pop(shard_id, None)
        if epoch is None:
            return False
        return self.table.hand_over(self.stream_arn, shard_id, epoch, self.worker_id, to)

    # ------------------------------------------------------------------ decisions

    def _live_workers(self, beats: dict[str, int], now: float) -> set[str]:
        for worker, counter in beats.items():
            seen = self._seen.get(worker)
            if seen is None or seen[0] != counter:
                self._seen[worker] = (counter, now)
        for worker in list(self._seen):
            if worker not in beats:
                del self._seen[worker]
        live = {w for w, (_, moved) in self._seen.items() if now - moved < self.lease_duration}
        live.add(self.worker_id)
        return live

    def _learn(self, leases: list[Lease], changes: GroupChanges) -> None:
        self.leases_by_shard = {lease.shard_id: lease for lease in leases}
        self.finished = {lease.shard_id for lease in leases if lease.finished}
        for shard_id, epoch in list(self.held.items()):
            lease = self.leases_by_shard.get(shard_id)
            if lease is None or lease.owner != self.worker_id or lease.epoch != epoch:
                del self.held[shard_id]
                changes.lost.append(shard_id)
                logger.warning("worker %s: lease of shard %s lost", self.worker_id, shard_id)
            elif lease.finished:
                del self.held[shard_id]  # done with; nothing to give back
            elif lease.handover_to is not None and shard_id not in self.handing_over:
                self.handing_over.add(shard_id)
                changes.hand_over[shard_id] = lease.handover_to
        for lease in leases:
            mine = lease.owner == self.worker_id and lease.shard_id not in self.held
            if mine and not lease.finished:  # handed to us, or ours from before a restart
                self.held[lease.shard_id] = lease.epoch
                changes.gained.append(lease)
        # An ask is pending until granted, or the lease finished (nothing left to hand over).
        self.asked &= {
            s
            for s, lease in self.leases_by_shard.items()
            if lease.handover_to == self.worker_id and not lease.finished
        }

    def _readable(self, lease: Lease) -> bool:
        """Not finished, and its parent finished, or gone from the table or the stream."""
        if lease.finished:
            return False
        parent = lease.parent_shard_id
        return (
            parent is None
            or parent in self.finished
            or parent not in self.leases_by_shard
            or (bool(self.listed) and parent not in self.listed)
        )

    def _balance(self, leases: list[Lease], live: set[str], changes: GroupChanges) -> None:
        readable = [lease for lease in leases if self._readable(lease)]
        if not readable:
            return
        workers = len(live)
        floor_share, ceil_share = len(readable) // workers, -(-len(readable) // workers)
        mine = len(self.held)
        # Free leases and those of dead workers first, up to the ceiling.
        for lease in sorted(readable, key=lambda lease: lease.shard_id):
            if mine >= ceil_share:
                break
            takeable = lease.owner is None or lease.owner not in live
            if takeable and self.table.take(self.stream_arn, lease, self.worker_id):
                self.held[lease.shard_id] = lease.epoch + 1
                changes.gained.append(_owned(lease, self.worker_id))
                mine += 1
        if mine >= ceil_share:
            return
        # Then ask live workers holding at least two more than this one: under the ceiling
        # (not only under the floor), or [4, 2, 2] of 8 shards would never move.
        counts: dict[str, list[Lease]] = {}
        for lease in readable:
            if lease.owner in live and lease.owner != self.worker_id:
                counts.setdefault(lease.owner, []).append(lease)
        pending = len(self.asked)
        for _owner, owned in sorted(counts.items(), key=lambda item: -len(item[1])):
            given = 0
            for lease in sorted(owned, key=lambda lease: lease.shard_id):
                if mine + pending >= ceil_share:
                    return
                left = len(owned) - given
                if left <= floor_share or left <= mine + pending + 1:
                    break  # never below its fair share, never to end up above it
                if lease.handover_to is None and self.table.ask_handover(
                    self.stream_arn, lease, self.worker_id
                ):
                    self.asked.add(lease.shard_id)
                    pending += 1
                    given += 1


def _owned(lease: Lease, worker_id: str) -> Lease:
    return Lease(
        shard_id=lease.shard_id,
        parent_shard_id=lease.parent_shard_id,
        owner=worker_id,
        epoch=lease.epoch + 1,
        checkpoint=lease.checkpoint,
        finished=lease.finished,
        latest_at=lease.latest_at,
        begun=lease.begun,
        begun_at=lease.begun_at,
    )


class FencedCheckpoints:
    """The checkpoint store a group member's readers write through: every save is fenced on
    the (owner, epoch) of the lease this worker holds, or refused with LeaseLostError."""

    def __init__(self, table: LeaseTable, member: GroupMember) -> None:
        self._table = table
        self._member = member

    def load(self, stream_arn: str, shard_id: str) -> Checkpoint | None:
        return self._table.load(stream_arn, shard_id)

    def load_all(self, stream_arn: str) -> dict[str, Checkpoint]:
        return self._table.load_all(stream_arn)

    def save(self, stream_arn: str, shard_id: str, checkpoint: Checkpoint) -> None:
        epoch = self._member.epoch_of(shard_id)
        if epoch is None:  # let go of for now (a pause of this worker): retried, not lost
            raise CheckpointStoreError(
                f"shard {shard_id}: worker {self._member.worker_id} does not hold its lease "
                "right now; the checkpoint was not written"
            )
        self._table.save_fenced(stream_arn, shard_id, checkpoint, self._member.worker_id, epoch)

    def delete(self, stream_arn: str, shard_ids: Iterable[str]) -> None:
        delete = getattr(self._table, "delete", None)
        if delete is not None:
            delete(stream_arn, list(shard_ids))


def default_worker_id() -> str:
    """Host name, process id and a random suffix: unique across restarts."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
