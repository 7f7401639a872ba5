"""Consumer groups: which worker may read which shard, decided through a lease table.

The model (docs: "Running many workers"):

- **Liveness costs O(workers).** Each worker bumps a heartbeat counter in an item of its
  own every ``lease_duration / 3`` seconds. A worker is dead when, by the *observer's own
  clock*, its counter has not moved for ``lease_duration``; no clock of another host is
  ever compared with ours.
- **So does looking at the group.** The heartbeat item also carries a counter of the lease
  changes its worker made. Each worker reads every heartbeat item about once a second, and
  the whole lease table only when some counter moved, the live workers changed, it has a
  change of its own to learn from, or every few lease durations as a safety net.
- **A lease changes only when its owner changes.** Every change of owner bumps the lease's
  ``epoch``; every checkpoint write is conditional on (owner, epoch), so a worker that lost
  a lease can never move its checkpoint (fencing).
- **Self-fencing.** A worker whose heartbeats have failed for two thirds of
  ``lease_duration`` stops delivering before anyone may take its shards.
- **Balance without thrash.** Free leases and those of dead workers are taken first, up to
  ⌈S/W⌉, from the second look on (workers started together have seen each other by then),
  each worker taking those a plan that every worker works out alike gives it (each free
  lease to the live worker ranking it first among those under their share: rendezvous
  hashing), a few at a time and for a bounded time per look. A worker holding fewer than
  ⌈S/W⌉ asks a worker holding at least two more than itself (and more than ⌊S/W⌋) for a
  lease; the owner finishes its in-flight record, checkpoints and hands the lease over. A
  group ends within one, then moves nothing.
- **Lineage.** A shard is leased only once its parent's lease is finished (or the parent is
  no longer in the table), whoever read the parent.

:class:`GroupMember` holds one worker's view and decisions; it does no I/O of its own but
through a :class:`LeaseTable`, so a test can step it with a fake clock.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, TypeVar, runtime_checkable

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


@dataclass(frozen=True)
class Heartbeat:
    """A worker's heartbeat item: ``beat`` grows at every heartbeat; ``changes`` counts the
    lease changes the worker made (takes, asks, handovers, releases, finished shards, new
    leases), so that the others read the lease table again only when it moved."""

    beat: int
    changes: int = 0


@runtime_checkable
class LeaseTable(Protocol):
    """What a checkpoint store must also do for a consumer group (a DynamoDB table, or any
    store with conditional writes: Postgres, Redis...).

    Every method names the group's stream; a store serves one group. Conditional methods
    return False (never raise) when their condition does not hold.
    """

    def heartbeat(self, stream_arn: str, worker_id: str, beat: int, changes: int) -> None:
        """Store this worker's heartbeat counter and change counter (one item per worker)."""
        ...

    def heartbeats(self, stream_arn: str) -> dict[str, Heartbeat]:
        """Every worker's heartbeat item, by worker id."""
        ...

    def remove_worker(self, stream_arn: str, worker_id: str) -> None:
        """Delete this worker's heartbeat item (a graceful stop, or a long-dead worker)."""
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
_T = TypeVar("_T")

# A worker looks at the group's heartbeat items (one small item per worker) this often at
# most, so that a graceful stop is noticed within a second; it heartbeats every third of
# lease_duration, and reads the whole lease table only when something changed.
LOOK_INTERVAL = 1.0
# Without any sign of a change, the whole lease table is read again this often (in lease
# durations): a safety net for a change no counter told of (an operator's edit).
FULL_READ_EVERY = 6
# Takes and asks of one look stop after this share of lease_duration (the rest wait for the
# next look, which goes on from what this worker read last); a heartbeat falls due meanwhile
# is written between two batches, so that heartbeats stay on time whatever the shard count.
WRITE_BUDGET = 1 / 3
CONCURRENT_WRITES = 8  # lease writes of one look in flight at once
REGISTER_CHUNK = 100  # new leases written between two looks at which ones exist already
FORGET_DEAD_AFTER = 3  # lease durations: the heartbeat item of a worker dead that long goes
# A free lease that the shared plan gives another worker is taken by any worker under its
# share once it has stayed free this many looks (that worker saw the group otherwise); the
# table is read again then to see whether it did.
PLAN_PATIENCE = 2


@dataclass
class GroupChanges:
    """What one :meth:`GroupMember.tick` decided for the coordinator to carry out."""

    gained: list[Lease] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    hand_over: dict[str, str] = field(default_factory=dict)  # shard id -> taker


class GroupMember:
    """One worker of a consumer group: heartbeats, liveness, the leases it holds.

    ``tick()`` is called every :attr:`tick_interval` seconds; between ticks,
    :meth:`holds` answers "may I read this shard?" and :attr:`fenced_until` says until
    when delivering is safe without a newer heartbeat.

    A tick reads every worker's heartbeat item (O(workers)); it reads the whole lease table
    (O(shards)) only when some worker's change counter moved, the live workers changed, this
    worker has something to finish or was told of a change (a lease lost, a shard finished,
    new shards), or :data:`FULL_READ_EVERY` lease durations passed.
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
        self._last_beat_try: float | None = None
        self.heartbeat_failures = 0  # heartbeat writes that failed, in all
        self._beat_failing_since: float | None = None  # the first of those in a row
        self._beat_error = ""
        self._seen: dict[str, tuple[int, float]] = {}  # worker -> (counter, when it moved)
        self.held: dict[str, int] = {}  # shard id -> epoch
        self.finished: set[str] = set()
        self.listed: set[str] = set()
        self.leases_by_shard: dict[str, Lease] = {}
        self.asked: set[str] = set()  # shards whose handover this worker asked for
        self.handing_over: set[str] = set()  # shards this worker is giving to an asker
        # What tells this worker to read the lease table again:
        self._mutex = threading.Lock()
        self._changes = 0  # lease changes this worker made (published with its heartbeat)
        self._published = -1  # the change count its last heartbeat carried
        self._dirty = True  # something changed that this worker has not read
        self._unfinished = False  # takes or asks left for the next look
        self._looks = 0  # reads of the heartbeats
        self._read_at: float | None = None  # the last full read of the lease table
        self._read_changes: dict[str, int] = {}  # others' change counters at that read
        self._read_live: set[str] = set()  # the live workers at that read
        self.full_reads = 0
        self._free_since: dict[str, int] = {}  # free leases: the look that first saw them free
        self._recheck_at: int | None = None  # a look at which to read the table again
        self._writer: ThreadPoolExecutor | None = None
        # A graceful stop waits for the tick in flight, which writes nothing more once told.
        self._tick_lock = threading.Lock()
        self._leaving = False

    @property
    def tick_interval(self) -> float:
        return min(self.lease_duration / 3, LOOK_INTERVAL)

    @property
    def last_beat_ok(self) -> float | None:
        """When (our clock) the last heartbeat succeeded; None before the first."""
        return self._last_beat_ok

    def heartbeat_trouble(self, now: float) -> tuple[Literal["degraded", "failing"], str] | None:
        """What health should say of the heartbeats: failing once they have failed long
        enough for this worker to stop reading (self-fencing), degraded before; None if the
        last one succeeded."""
        since = self._beat_failing_since
        if since is None:
            return None
        failing_for = now - (self._last_beat_ok if self._last_beat_ok is not None else since)
        if failing_for >= self.lease_duration * 2 / 3:
            return (
                "failing",
                f"heartbeats have failed for {failing_for:.0f}s (lease_duration "
                f"{self.lease_duration:g}s): this worker reads nothing until one succeeds: "
                f"{self._beat_error}",
            )
        return "degraded", f"heartbeat failed: {self._beat_error}"

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
        """Shards found by discovery get a (free) lease if they have none.

        Only leases missing from the table are written, in an order of this worker's own
        (so that workers starting together mostly write different ones), a chunk at a time
        with a look at the table in between."""
        if not shards:
            return
        if self._beat == 0:
            self._heartbeat(self._clock())  # peers see this worker while it registers
        if self._read_at is None:
            known = {lease.shard_id for lease in self.table.leases(self.stream_arn)}
        else:
            known = set(self.leases_by_shard)
        missing = sorted(
            (shard for shard in shards if shard.shard_id not in known),
            key=lambda shard: self._rank(shard.shard_id),
        )
        while missing:
            chunk, missing = missing[:REGISTER_CHUNK], missing[REGISTER_CHUNK:]
            self._concurrently(lambda shard: self.table.add_leases(self.stream_arn, [shard]), chunk)
            if missing:
                known = {lease.shard_id for lease in self.table.leases(self.stream_arn)}
                missing = [shard for shard in missing if shard.shard_id not in known]
            self.note_change()

    def note_change(self) -> None:
        """This worker changed the lease table (or learnt that it changed): publish its
        change counter at the next tick, and read the table again then."""
        with self._mutex:
            self._changes += 1
            self._dirty = True

    def _bump(self) -> None:
        """A change this worker made and knows the outcome of: publish it, no need to read."""
        with self._mutex:
            self._changes += 1

    def note_finished(self, shard_id: str) -> None:
        """A shard this worker read was checkpointed finished: its children may be leased."""
        self.finished.add(shard_id)
        self.note_change()

    def tick(self) -> GroupChanges:
        """Heartbeat when due, look at the group; read the lease table when something
        changed, then take / ask for / notice the loss of leases."""
        with self._tick_lock:
            if self._leaving:
                return GroupChanges()
            return self._tick()

    def _tick(self) -> GroupChanges:
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
            self._stale()
        if self._beat_due(now):
            self._heartbeat(now)
        if now >= self.fenced_until:  # the heartbeat failed too: nothing is safe to read
            return changes
        beats = self.table.heartbeats(self.stream_arn)
        # The counters are dated when the read returns: dated before it, a pause (SIGSTOP,
        # a busy host) in the read would make live workers look dead at the next look.
        now = self._clock()
        self._looks += 1
        live = self._live_workers(beats, now)
        self._forget_dead(beats, live, now)
        unfinished, self._unfinished = self._unfinished, False
        if self._must_read(beats, live, now, unfinished):
            with self._mutex:
                self._dirty = False  # a change made from here on is read at the next look
            leases = self.table.leases(self.stream_arn)
            self._read_at, self._read_live, self._recheck_at = now, live, None
            self._read_changes = {worker: beat.changes for worker, beat in beats.items()}
            self.full_reads += 1
            self._learn(leases, changes)
            self._balance(leases, live, changes)
        elif unfinished:  # go on from the last read: a take that fails says it changed
            self._balance(list(self.leases_by_shard.values()), live, changes)
        if self._published != self._changes and self._clock() < self.fenced_until:
            self._heartbeat(self._clock())  # tell the others now, not a look later
        return changes

    def release_all(self) -> None:
        """A graceful stop: give back every lease and the heartbeat item, once the tick in
        flight (if any) has ended: a lease it takes after the release would stay ours."""
        self._leaving = True  # the tick in flight takes and asks for nothing more
        with self._tick_lock:
            self._release_all()

    def _release_all(self) -> None:
        for shard_id, epoch in sorted(self.held.items()):
            lease = self.leases_by_shard.get(shard_id)
            to = lease.handover_to if lease is not None else None
            self.table.hand_over(self.stream_arn, shard_id, epoch, self.worker_id, to)
        self.held.clear()
        self.table.remove_worker(self.stream_arn, self.worker_id)
        if self._writer is not None:
            self._writer.shutdown(wait=False)

    def drop(self, shard_id: str) -> None:
        """Stop counting a lease as held: a checkpoint write found it lost."""
        self.held.pop(shard_id, None)
        with self._mutex:
            self._dirty = True

    def handed_over(self, shard_id: str, to: str | None) -> bool:
        """Give one held lease to ``to`` (after its reader stopped and checkpointed)."""
        self.handing_over.discard(shard_id)
        epoch = self.held.pop(shard_id, None)
        if epoch is None:
            return False
        handed = self.table.hand_over(self.stream_arn, shard_id, epoch, self.worker_id, to)
        self.note_change()
        return handed

    def handover_failed(self, shard_id: str) -> None:
        """A handover could not be carried out (its checkpoint failed): ask again later."""
        self.handing_over.discard(shard_id)
        with self._mutex:
            self._dirty = True

    # ------------------------------------------------------------------ heartbeats

    def _beat_due(self, now: float, *, to_tell: bool = True) -> bool:
        """A heartbeat every third of lease_duration at most (ticks come every look), and
        at once when this worker has changes to tell."""
        if self._last_beat_try is None or (to_tell and self._published != self._changes):
            return True
        return now - self._last_beat_try >= self.lease_duration / 3 - self.tick_interval / 2

    def _heartbeat(self, now: float) -> None:
        self._beat += 1
        self._last_beat_try = now
        changes = self._changes
        try:
            self.table.heartbeat(self.stream_arn, self.worker_id, self._beat, changes)
        except CheckpointStoreError as exc:
            logger.warning("worker %s: heartbeat failed: %s", self.worker_id, exc)
            self.heartbeat_failures += 1
            self._beat_error = str(exc)
            if self._beat_failing_since is None:
                self._beat_failing_since = now
            return
        self._last_beat_ok = now
        self._beat_failing_since = None
        self._published = changes

    def _live_workers(self, beats: dict[str, Heartbeat], now: float) -> set[str]:
        for worker, heartbeat in beats.items():
            seen = self._seen.get(worker)
            if seen is None or seen[0] != heartbeat.beat:
                self._seen[worker] = (heartbeat.beat, now)
        for worker in list(self._seen):
            if worker not in beats:
                del self._seen[worker]
        live = {w for w, (_, moved) in self._seen.items() if now - moved < self.lease_duration}
        live.add(self.worker_id)
        return live

    def _must_read(
        self, beats: dict[str, Heartbeat], live: set[str], now: float, unfinished: bool
    ) -> bool:
        """Whether the lease table may have changed since this worker last read it."""
        if self._dirty or self._read_at is None or live != self._read_live:
            return True
        if unfinished:
            return False  # others' changes are read once this worker's takes are done
        if self._recheck_at is not None and self._looks >= self._recheck_at:
            return True
        if now - self._read_at >= FULL_READ_EVERY * self.lease_duration:
            return True
        return any(
            self._read_changes.get(worker) != beat.changes
            for worker, beat in beats.items()
            if worker != self.worker_id
        )

    def _forget_dead(self, beats: dict[str, Heartbeat], live: set[str], now: float) -> None:
        """Delete the heartbeat items of workers dead for a while that hold no lease, so
        that the heartbeats read stay O(live workers). The first live worker does it."""
        if min(live) != self.worker_id:
            return
        owners = {lease.owner for lease in self.leases_by_shard.values() if not lease.finished}
        for worker in beats:
            moved = self._seen.get(worker, (0, now))[1]
            if worker in owners or now - moved < FORGET_DEAD_AFTER * self.lease_duration:
                continue
            try:
                self.table.remove_worker(self.stream_arn, worker)
            except CheckpointStoreError as exc:
                logger.debug("could not forget worker %s: %s", worker, exc)

    # ------------------------------------------------------------------ decisions

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
        for lease in leases:
            mine = lease.owner == self.worker_id and lease.shard_id not in self.held
            if mine and not lease.finished:  # handed to us, ours from before a restart, or
                self.held[lease.shard_id] = lease.epoch  # let go of when the fence lapsed
                changes.gained.append(lease)
        # Asked of us: also a lease just taken back, or one whose look always begins with
        # the fence lapsed (a loaded host) would never hand anything over.
        for shard_id in list(self.held):  # a copy: the scheduling thread drops leases too
            lease = self.leases_by_shard[shard_id]
            if lease.handover_to is not None and shard_id not in self.handing_over:
                self.handing_over.add(shard_id)
                changes.hand_over[shard_id] = lease.handover_to
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

    def _rank(self, shard_id: str, worker_id: str | None = None) -> bytes:
        """A worker's own pseudo-random order of shards (rendezvous hashing)."""
        key = f"{worker_id or self.worker_id}|{shard_id}".encode()
        return hashlib.blake2b(key, digest_size=8).digest()

    def _balance(self, leases: list[Lease], live: set[str], changes: GroupChanges) -> None:
        readable = [lease for lease in leases if self._readable(lease)]
        if not readable:
            return
        if self._looks < 2:
            # Workers started together see each other only at their second look: taking
            # before it would take up to every shard, and most would move again.
            with self._mutex:
                self._dirty = True
            return
        workers = len(live)
        floor_share, ceil_share = len(readable) // workers, -(-len(readable) // workers)
        mine = len(self.held)
        deadline = self._clock() + WRITE_BUDGET * self.lease_duration
        # Free leases and those of dead workers first, up to the ceiling: those the shared
        # plan gives this worker, then any left free for PLAN_PATIENCE looks.
        takeable = [lease for lease in readable if lease.owner is None or lease.owner not in live]
        since = self._free_since
        self._free_since = {
            lease.shard_id: since.get(lease.shard_id, self._looks) for lease in takeable
        }
        planned = self._planned_takes(readable, takeable, live)
        planned_ids = {lease.shard_id for lease in planned}
        overdue = sorted(
            (
                lease
                for lease in takeable
                if self._looks - self._free_since[lease.shard_id] >= PLAN_PATIENCE
                and lease.shard_id not in planned_ids
            ),
            key=lambda lease: self._rank(lease.shard_id),
        )
        wanted = (planned + overdue)[: max(0, ceil_share - mine)]
        others_to_take = len(wanted) < len(takeable)
        if others_to_take and self._recheck_at is None:
            self._recheck_at = self._looks + PLAN_PATIENCE  # did they take them?
        done = self._concurrently(
            lambda lease: self.table.take(self.stream_arn, lease, self.worker_id),
            wanted,
            deadline,
        )
        for lease, taken in done:
            if taken:
                self.held[lease.shard_id] = lease.epoch + 1
                self.leases_by_shard[lease.shard_id] = _owned(lease, self.worker_id)
                changes.gained.append(self.leases_by_shard[lease.shard_id])
                mine += 1
                self._bump()
            else:
                self._stale()  # another worker took it first
        if (
            mine >= ceil_share
            or others_to_take
            or len(done) < len(wanted)
            or not all(t for _, t in done)
        ):
            return  # full, or takes left to others or for the next look: ask nothing meanwhile
        # Then ask live workers holding at least two more than this one: under the ceiling
        # (not only under the floor), or [4, 2, 2] of 8 shards would never move.
        counts: dict[str, list[Lease]] = {}
        for lease in readable:
            if lease.owner in live and lease.owner != self.worker_id:
                counts.setdefault(lease.owner, []).append(lease)
        pending = len(self.asked)
        asks: list[Lease] = []
        for _owner, owned in sorted(counts.items(), key=lambda item: -len(item[1])):
            given = 0
            for lease in sorted(owned, key=lambda lease: lease.shard_id):
                if mine + pending >= ceil_share:
                    break
                left = len(owned) - given
                if left <= floor_share or left <= mine + pending + 1:
                    break  # never below its fair share, never to end up above it
                if lease.handover_to is None:
                    asks.append(lease)
                    pending += 1
                    given += 1
        for lease, asked in self._concurrently(
            lambda lease: self.table.ask_handover(self.stream_arn, lease, self.worker_id),
            asks,
            deadline,
        ):
            if asked:
                self.asked.add(lease.shard_id)
                self.leases_by_shard[lease.shard_id] = replace(lease, handover_to=self.worker_id)
                self._bump()
            else:
                self._stale()

    def _planned_takes(
        self, readable: list[Lease], takeable: list[Lease], live: set[str]
    ) -> list[Lease]:
        """The takeable leases this worker takes by the plan that every worker works out
        alike from the same table: each, in shard order, to the live worker ranking it
        first among those still under their share (⌊S/W⌋, or ⌈S/W⌉ for the first S mod W
        to reach it). Workers that look at once then take different leases, all of them."""
        floor_share, above_floor = divmod(len(readable), len(live))
        counts = dict.fromkeys(live, 0)
        for lease in readable:
            if lease.owner in counts:  # a live owner: not takeable
                counts[lease.owner] += 1
        above = sum(count > floor_share for count in counts.values())
        mine: list[Lease] = []
        for lease in sorted(takeable, key=lambda lease: lease.shard_id):
            open_to = [
                worker
                for worker, count in counts.items()
                if count < floor_share or (count == floor_share and above < above_floor)
            ]
            if not open_to:
                break
            taker = max(open_to, key=lambda worker: self._rank(lease.shard_id, worker))
            above += counts[taker] == floor_share
            counts[taker] += 1
            if taker == self.worker_id:
                mine.append(lease)
        return mine

    def _stale(self) -> None:
        """A conditional write failed, or work was left for later: read again next look."""
        with self._mutex:
            self._dirty = True

    def _concurrently(
        self,
        write: Callable[[_T], object],
        items: Sequence[_T],
        deadline: float = math.inf,
    ) -> list[tuple[_T, object]]:
        """Lease writes, a few at a time, until ``deadline`` (our clock); each item with its
        result, in order; what the deadline left out is not written (the next look will)."""
        done: list[tuple[_T, object]] = []
        for start in range(0, len(items), CONCURRENT_WRITES):
            now = self._clock()
            if now >= deadline or now >= self.fenced_until or self._leaving:
                self._unfinished = True
                break
            if start and self._beat_due(now, to_tell=False):
                self._heartbeat(now)
            batch = items[start : start + CONCURRENT_WRITES]
            if len(batch) == 1:
                try:
                    done.append((batch[0], write(batch[0])))
                except BaseException:
                    self._stale()
                    raise
                continue
            if self._writer is None:
                self._writer = ThreadPoolExecutor(CONCURRENT_WRITES, "ddbstreams-lease-write")
            try:
                done.extend(zip(batch, list(self._writer.map(write, batch)), strict=True))
            except BaseException:
                self.note_change()  # some of the batch may have been written: read again
                raise
        return done


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
        if checkpoint.finished:  # its children may be leased: every worker reads again
            self._member.note_finished(shard_id)

    def delete(self, stream_arn: str, shard_ids: Iterable[str]) -> None:
        delete = getattr(self._table, "delete", None)
        if delete is not None:
            delete(stream_arn, list(shard_ids))
            self._member.note_change()


def default_worker_id() -> str:
    """Host name, process id and a random suffix: unique across restarts."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
