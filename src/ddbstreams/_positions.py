"""Where a consumer (or a consumer group) stands on a stream, and moving it there.

:class:`Positions` shows every shard's checkpoint (with its lease and lag) and changes them:
a seek to a time, to a record, to the oldest or the newest record, or a reset. A seek is a
plan first (:class:`SeekPlan`, what a dry run prints), then written:

- to a SQLite or in-memory store as one transaction, refused while another process has the
  SQLite file open (a running consumer would write its own position over the seek);
- to a :class:`DynamoDBCheckpointStore` lease by lease, parents before children, each write
  releasing the lease and bumping its epoch as a failover does (conditional on the owner and
  epoch read): the owner's next checkpoint is refused, it stops reading the shard, and the
  worker that takes the lease next reads from the new position.

How a position is written (``Checkpoint`` fields, see ``_checkpoints.py``):

- "record R next" where R has a record P before it in the shard: ``Checkpoint(P)``, read
  with ``AFTER_SEQUENCE_NUMBER`` P;
- "record R next" where R is the oldest record still retained, or "records created from T
  on" in a shard that has none yet: a pinned start ``Checkpoint(None, latest_at=T,
  begun_at=now)``: the consumer reads from ``TRIM_HORIZON`` and passes over the records
  created before T (``latest_at=0``: passes over none: the oldest record still retained);
- a shard that ended before the time: ``Checkpoint(last, finished=True)``;
- a shard after one that is not finished: no checkpoint (not begun), so it is read from its
  first record once its parent is finished.
"""

from __future__ import annotations

import math
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal

from ._checkpoints import Checkpoint, CheckpointStore, SQLiteCheckpointStore
from ._client import StreamsAPI, build_boto3_clients
from ._dynamodb_store import DynamoDBCheckpointStore
from ._errors import (
    ConfigurationError,
    SeekRefusedError,
    TrimmedDataError,
)
from ._leases import Lease, LeaseTable
from ._lineage import ShardInfo, ShardLineage
from ._reader import _created_at

# An open shard is taken as read to its newest record after this many empty pages in a row
# (the service may answer an empty page before the newest record; a seek then pins the time,
# which the consumer checks record by record).
EMPTY_PAGES_AT_TIP = 3
# Attempts per lease when its owner or epoch keeps changing under a seek.
MOVE_ATTEMPTS = 5
# How long a seek's announcement stays in the lease table, in looks of the workers.
ANNOUNCE_LOOKS = 3

SeekTo = Literal["trim-horizon", "latest"]


@dataclass(frozen=True)
class ShardPosition:
    """One shard's position, as :meth:`Positions.show` finds it.

    ``checkpoint`` is what the store holds (``None``: not begun). With a lease table,
    ``owner`` and ``epoch`` are its lease's. ``lag`` is the age in seconds of the oldest
    record not yet delivered (now minus its ``ApproximateCreationDateTime``), ``0.0`` when
    one page read after the checkpoint was empty (caught up), ``None`` when not looked at
    (finished, not listed, pinned, or lag not asked for). ``next_sequence_number`` is that
    record's.
    """

    shard_id: str
    parent_shard_id: str | None
    listed: bool
    closed: bool
    checkpoint: Checkpoint | None
    owner: str | None = None
    epoch: int | None = None
    lag: float | None = None
    next_sequence_number: str | None = None

    @property
    def position(self) -> str:
        """The checkpoint in words."""
        return describe_checkpoint(self.checkpoint)


@dataclass(frozen=True)
class ShardMove:
    """One shard's change in a :class:`SeekPlan`: from ``before`` to ``after`` (``None``:
    no checkpoint, not begun), ``why`` in words, ``scanned`` records read to decide, and
    the record to be delivered next when known (``next_sequence_number``, created at
    ``next_created_at``, UNIX seconds)."""

    shard_id: str
    parent_shard_id: str | None
    before: Checkpoint | None
    after: Checkpoint | None
    why: str
    scanned: int = 0
    next_sequence_number: str | None = None
    next_created_at: float | None = None
    held_by: str | None = None  # the worker reading it now (a lease table's owner)

    @property
    def changes(self) -> bool:
        """True if the seek writes something: a new position, or a lease taken from a
        running worker, whose position in memory may be past the stored one."""
        return self.before != self.after or self.held_by is not None


@dataclass(frozen=True)
class SeekPlan:
    """What a seek would write, shard by shard in lineage order (parents first)."""

    stream_arn: str
    target: str
    moves: tuple[ShardMove, ...]
    notes: tuple[str, ...] = ()
    reset: bool = False  # forget every checkpoint (and, in a lease table, every lease)

    @property
    def scanned(self) -> int:
        """Records read from the stream to make the plan."""
        return sum(move.scanned for move in self.moves)

    @property
    def changes(self) -> list[ShardMove]:
        return [move for move in self.moves if move.changes]


@dataclass
class SeekOutcome:
    """What a written seek did: shards moved; with a lease table, the leases taken from
    workers (shard id -> former owner) and, if waited for, who took them back."""

    moved: list[str] = field(default_factory=list)
    taken_from: dict[str, str] = field(default_factory=dict)
    picked_up_by: dict[str, str] = field(default_factory=dict)
    not_picked_up: list[str] = field(default_factory=list)


@dataclass
class _Scan:
    scanned: int = 0
    found: dict[str, Any] | None = None  # the first record that matched
    before: str | None = None  # the sequence number of the record before it (or the last)
    ended: bool = False  # a closed shard read to its end


class Positions:
    """Read and change how far a consumer (group) has read a stream.

    Args:
        checkpoint_store: the consumer's store: a :class:`SQLiteCheckpointStore`,
            :class:`InMemoryCheckpointStore` or :class:`DynamoDBCheckpointStore` (its group).
        table_name: the table whose current stream to read, as for :class:`StreamConsumer`.
        stream_arn: or the stream by its ARN.
        endpoint_url: as for :class:`StreamConsumer`.
        region_name: as for :class:`StreamConsumer`.
        session: as for :class:`StreamConsumer`.
        client: as for :class:`StreamConsumer` (a :class:`~ddbstreams.testing.StreamSimulator`).
        clock: the service's time (UNIX seconds); default: the client's, else the host's.

    ``show()`` lists the shards; ``plan_seek(...)`` / ``plan_reset()`` say what would change
    (nothing is written: a dry run); ``apply(plan)`` writes a plan. See docs/checkpoints.md.
    """

    def __init__(
        self,
        checkpoint_store: CheckpointStore,
        *,
        table_name: str | None = None,
        stream_arn: str | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        session: Any = None,
        client: Any = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if (table_name is None) == (stream_arn is None):
            raise ConfigurationError("give exactly one of table_name= or stream_arn=")
        self.store = checkpoint_store
        if client is not None:
            self._api = StreamsAPI(client, client)
        else:
            streams, dynamodb = build_boto3_clients(
                session=session, endpoint_url=endpoint_url, region_name=region_name
            )
            self._api = StreamsAPI(streams, dynamodb)
        self._clock = clock if clock is not None else self._api.wall_time
        self._table_name = table_name
        self._stream_arn = stream_arn
        self._service_offset: float | None = None

    @property
    def stream_arn(self) -> str:
        """The stream (the table's current one, with ``table_name=``)."""
        if self._stream_arn is None:
            assert self._table_name is not None
            self._stream_arn = self._api.resolve_stream_arn(self._table_name)
            assert self._stream_arn is not None
        return self._stream_arn

    # ------------------------------------------------------------------ show

    def show(self, *, lag: bool = True) -> list[ShardPosition]:
        """Every shard the stream lists, parents first, then those only the store knows."""
        arn = self.stream_arn
        shards = self._shards()
        stored = self.store.load_all(arn)
        leases = self._leases()
        rows: list[ShardPosition] = []
        for shard in shards:
            lease = leases.get(shard.shard_id)
            row = ShardPosition(
                shard_id=shard.shard_id,
                parent_shard_id=shard.parent_shard_id,
                listed=True,
                closed=shard.closed,
                checkpoint=stored.get(shard.shard_id),
                owner=lease.owner if lease else None,
                epoch=lease.epoch if lease else None,
            )
            if lag:
                row = self._with_lag(row, shard)
            rows.append(row)
        listed = {shard.shard_id for shard in shards}
        for shard_id in sorted(set(stored) - listed):
            lease = leases.get(shard_id)
            rows.append(
                ShardPosition(
                    shard_id=shard_id,
                    parent_shard_id=lease.parent_shard_id if lease else None,
                    listed=False,
                    closed=True,
                    checkpoint=stored[shard_id],
                    owner=lease.owner if lease else None,
                    epoch=lease.epoch if lease else None,
                )
            )
        return rows

    def _with_lag(self, row: ShardPosition, shard: ShardInfo) -> ShardPosition:
        """The oldest record not yet delivered: one page read after the checkpoint."""
        checkpoint = row.checkpoint
        if checkpoint is not None and (checkpoint.finished or checkpoint.latest_at is not None):
            return row
        after = checkpoint.sequence_number if checkpoint else None
        try:
            if after is not None:
                iterator = self._iterator(shard.shard_id, "AFTER_SEQUENCE_NUMBER", after)
            else:
                iterator = self._iterator(shard.shard_id, "TRIM_HORIZON")
            page = self._api.get_records(shard.shard_id, iterator, 1)
            record = next(page.records, None)
        except TrimmedDataError:
            return row
        if record is None:
            return replace(row, lag=0.0)
        created = _created_at(record)
        return replace(
            row,
            lag=None if created is None else max(0.0, self._now() - created),
            next_sequence_number=record["dynamodb"]["SequenceNumber"],
        )

    # ------------------------------------------------------------------ plans

    def plan_seek(
        self,
        *,
        to_time: float | datetime | None = None,
        to_sequence: str | None = None,
        after_sequence: str | None = None,
        shard_id: str | None = None,
        to: SeekTo | None = None,
    ) -> SeekPlan:
        """What a seek would write; nothing is written.

        Give one of:

        - ``to_time``: every shard's first record created at or after it (UNIX seconds or an
          aware datetime), found by reading each shard from ``TRIM_HORIZON``; shards that
          ended before it are marked finished, so their children take over;
        - ``to_sequence`` and ``shard_id``: that record (or the first after it) next;
        - ``after_sequence`` and ``shard_id``: the record after it next (skip it);
        - ``to="trim-horizon"``: every record still retained, parents first;
        - ``to="latest"``: only records created from now on.

        Shards after a moved one (its children, and theirs) lose their checkpoint: they
        are read from their first record once it is finished.
        """
        given = [
            name
            for name, value in (
                ("to_time", to_time),
                ("to_sequence", to_sequence),
                ("after_sequence", after_sequence),
                ("to", to),
            )
            if value is not None
        ]
        if len(given) != 1:
            raise ConfigurationError(
                "give exactly one of to_time=, to_sequence=, after_sequence= or to= "
                f"(got {', '.join(given) or 'none'})"
            )
        plan = self._plan(to_time, to_sequence, after_sequence, shard_id, to)
        leases = self._leases()
        held = {
            shard: lease.owner
            for shard, lease in leases.items()
            if lease.owner is not None and not lease.finished
        }
        if not held:
            return plan
        moves = tuple(replace(move, held_by=held.get(move.shard_id)) for move in plan.moves)
        return replace(plan, moves=moves)

    def _plan(
        self,
        to_time: float | datetime | None,
        to_sequence: str | None,
        after_sequence: str | None,
        shard_id: str | None,
        to: SeekTo | None,
    ) -> SeekPlan:
        if (to_sequence is not None or after_sequence is not None) != (shard_id is not None):
            raise ConfigurationError(
                "shard_id= goes with to_sequence= or after_sequence=, and only with them"
            )
        if to_time is not None:
            return self._plan_time(_unix_time(to_time))
        if to is not None:
            if to not in ("trim-horizon", "latest"):
                raise ConfigurationError(f"to must be 'trim-horizon' or 'latest', not {to!r}")
            return self._plan_end(to)
        assert shard_id is not None
        sequence = to_sequence if to_sequence is not None else after_sequence
        assert sequence is not None
        if not sequence.isdigit() or not 21 <= len(sequence) <= 40:
            raise ConfigurationError(
                f"{sequence!r} is not a sequence number: DynamoDB Streams writes them with 21 "
                "to 40 digits (see `ddbstreams checkpoints show` or a record's sequence_number)"
            )
        return self._plan_record(shard_id, sequence, inclusive=to_sequence is not None)

    def plan_reset(self) -> SeekPlan:
        """Forget every checkpoint of the stream: the next consumer starts as on its first
        run (at its ``start_position``)."""
        arn = self.stream_arn
        stored = self.store.load_all(arn)
        leases = self._leases()
        ids = sorted(set(stored) | set(leases))
        moves = tuple(
            ShardMove(
                shard_id,
                leases[shard_id].parent_shard_id if shard_id in leases else None,
                stored.get(shard_id),
                None,
                "forgotten",
            )
            for shard_id in ids
        )
        return SeekPlan(arn, "reset", moves, reset=True)

    def _plan_time(self, when: float) -> SeekPlan:
        arn = self.stream_arn
        shards = self._shards()
        now = self._now()
        if when > now + 1.0:
            raise ConfigurationError(
                f"{_iso(when)} is in the future (the service's clock says {_iso(now)}): "
                "there is nothing to seek to yet. To skip to the newest record, seek to "
                "'latest'."
            )
        stored = self.store.load_all(arn)
        after: dict[str, Checkpoint | None] = {}
        moves: list[ShardMove] = []
        listed = {shard.shard_id for shard in shards}
        for shard in shards:
            parent = shard.parent_shard_id
            if parent in listed and not _finished(after[parent]):
                after[shard.shard_id] = None
                moves.append(self._move(shard, stored, None, f"read after {parent}"))
                continue
            scan = self._scan(shard, lambda raw: (_created_at(raw) or 0.0) >= when)
            if scan.found is not None:
                created = _created_at(scan.found)
                target = (
                    Checkpoint(scan.before)
                    if scan.before is not None
                    else Checkpoint(None, latest_at=when, begun_at=now)
                )
                why = f"first record created at or after {_iso(when)}"
                move = self._move(shard, stored, target, why, scan, scan.found, created)
            elif shard.closed:
                target = Checkpoint(scan.before, finished=True)
                move = self._move(shard, stored, target, f"ended before {_iso(when)}", scan)
            elif scan.before is not None:
                why = f"no record created at or after {_iso(when)} yet: after its newest"
                move = self._move(shard, stored, Checkpoint(scan.before), why, scan)
            else:
                target = Checkpoint(None, latest_at=when, begun_at=now)
                why = f"no record yet: records created from {_iso(when)} on"
                move = self._move(shard, stored, target, why, scan)
            after[shard.shard_id] = move.after
            moves.append(move)
        moves += self._vanished(stored, listed)
        return SeekPlan(arn, f"time {_iso(when)}", tuple(moves))

    def _plan_end(self, to: SeekTo) -> SeekPlan:
        arn = self.stream_arn
        shards = self._shards()
        stored = self.store.load_all(arn)
        now = self._now()
        listed = {shard.shard_id for shard in shards}
        moves: list[ShardMove] = []
        for shard in shards:
            current = stored.get(shard.shard_id)
            if to == "latest":
                if shard.closed:
                    last = current.sequence_number if current else None
                    target: Checkpoint | None = Checkpoint(last, finished=True)
                    why = "closed: nothing new will come"
                else:
                    target = Checkpoint(None, latest_at=now, begun_at=now)
                    why = f"records created from {_iso(now)} on"
            elif shard.parent_shard_id in listed:
                target, why = None, f"read after {shard.parent_shard_id}"
            else:
                target, why = Checkpoint(None, latest_at=0.0, begun_at=now), "oldest record"
            moves.append(self._move(shard, stored, target, why))
        moves += self._vanished(stored, listed)
        return SeekPlan(arn, to, tuple(moves))

    def _plan_record(self, shard_id: str, sequence: str, *, inclusive: bool) -> SeekPlan:
        arn = self.stream_arn
        shards = self._shards()
        by_id = {shard.shard_id: shard for shard in shards}
        shard = by_id.get(shard_id)
        if shard is None:
            raise ConfigurationError(
                f"shard {shard_id!r} is not in stream {arn} (it may have been removed, 24 "
                "hours after it closed): 'ddbstreams checkpoints show' lists the shards"
            )
        stored = self.store.load_all(arn)
        wanted = int(sequence)
        notes: list[str] = []
        if inclusive:
            current = stored.get(shard_id)
            start_after = None  # or after the checkpoint, when it is before the record
            if (
                current is not None
                and current.sequence_number is not None
                and not current.finished
                and int(current.sequence_number) < wanted
            ):
                start_after = current.sequence_number
            scan = self._scan(
                shard, lambda raw: int(raw["dynamodb"]["SequenceNumber"]) >= wanted, start_after
            )
            if scan.found is None:
                raise ConfigurationError(
                    f"shard {shard_id} has no record at or after {sequence}"
                    + (f" (its newest is {scan.before})" if scan.before else " (it is empty)")
                    + ": check the sequence number and the shard"
                )
            found = scan.found["dynamodb"]["SequenceNumber"]
            if found != sequence:
                notes.append(
                    f"record {sequence} is not in shard {shard_id} (trimmed, or not one of its "
                    f"sequence numbers): the first record after it, {found}, is next"
                )
            created = _created_at(scan.found)
            if scan.before is not None:
                target = Checkpoint(scan.before)
            else:  # the oldest record retained: a pinned start at its second
                pin = math.floor(created) if created is not None else 0.0
                target = Checkpoint(None, latest_at=float(pin), begun_at=self._now())
            move = self._move(
                shard, stored, target, f"record {found} next", scan, scan.found, created
            )
        else:
            record = self._record_at(shard, sequence)
            if record is None:
                raise ConfigurationError(
                    f"shard {shard_id} has no record {sequence} (trimmed, or not one of its "
                    "sequence numbers): check the sequence number and the shard"
                )
            move = self._move(shard, stored, Checkpoint(sequence), f"after record {sequence}")
        moves = [move]
        lineage = ShardLineage()
        lineage.merge(shards)
        pending = lineage.children(shard_id)
        while pending:
            child = by_id[pending.pop(0)]
            moves.append(self._move(child, stored, None, f"read after {child.parent_shard_id}"))
            pending += lineage.children(child.shard_id)
        parent = shard.parent_shard_id
        if parent in by_id and not _finished(stored.get(parent)):
            notes.append(
                f"its parent {parent} is not finished: {shard_id} is read from this position "
                "once it is"
            )
        return SeekPlan(arn, f"shard {shard_id}", tuple(moves), tuple(notes))

    def _move(
        self,
        shard: ShardInfo,
        stored: Mapping[str, Checkpoint],
        target: Checkpoint | None,
        why: str,
        scan: _Scan | None = None,
        found: dict[str, Any] | None = None,
        created: float | None = None,
    ) -> ShardMove:
        before = stored.get(shard.shard_id)
        if before is not None and target is not None and _same(before, target):
            target = before  # the same position: nothing to write
        return ShardMove(
            shard.shard_id,
            shard.parent_shard_id,
            before,
            target,
            why,
            scan.scanned if scan else 0,
            found["dynamodb"]["SequenceNumber"] if found else None,
            created,
        )

    def _vanished(self, stored: Mapping[str, Checkpoint], listed: set[str]) -> list[ShardMove]:
        """Checkpoints of shards the stream no longer lists, short of their end: finished
        (what was left of them passed the retention), so that no gap is reported for a
        position the seek replaced."""
        return [
            ShardMove(
                shard_id,
                None,
                checkpoint,
                replace(checkpoint, finished=True),
                "no longer listed (trimmed)",
            )
            for shard_id, checkpoint in sorted(stored.items())
            if shard_id not in listed and not checkpoint.finished
        ]

    # ------------------------------------------------------------------ writing

    def apply(
        self,
        plan: SeekPlan,
        *,
        wait_for_workers: float = 0.0,
        lease_duration: float | None = None,
        on_progress: Callable[[str], Any] | None = None,
    ) -> SeekOutcome:
        """Write a plan. With a SQLite store, refused (:class:`SeekRefusedError`) while
        another process has the file open. With a DynamoDB store, safe while workers run:
        see the module docstring; ``wait_for_workers`` seconds at most are spent waiting for
        workers to take the moved leases back (reported in the outcome)."""
        if plan.stream_arn != self.stream_arn:
            raise ConfigurationError("this plan was made for another stream")
        changes = plan.changes
        store = self.store
        if isinstance(store, DynamoDBCheckpointStore):
            return self._apply_to_leases(
                store, plan, wait_for_workers, lease_duration or store.lease_duration, on_progress
            )
        if isinstance(store, LeaseTable):
            raise SeekRefusedError(
                f"{type(store).__name__} is a lease table ddbstreams cannot seek safely: only "
                "a DynamoDBCheckpointStore's leases are taken from running workers"
            )
        if isinstance(store, SQLiteCheckpointStore):
            holders = store.other_processes()
            if holders:
                raise SeekRefusedError(
                    f"{store.path} is open in process {', '.join(map(str, holders))} (a "
                    "running consumer?): stop every consumer using it, then seek again. A "
                    "consumer that kept running would go on from where it is and write its "
                    "own position over the seek. (With a DynamoDBCheckpointStore, a seek is "
                    "safe while workers run.)"
                )
        overwrite = getattr(store, "overwrite", None)
        if overwrite is None:
            raise SeekRefusedError(
                f"{type(store).__name__} cannot move checkpoints backwards (it has no "
                "overwrite method): seek with a SQLite, in-memory or DynamoDB store"
            )
        overwrite(plan.stream_arn, {move.shard_id: move.after for move in changes})
        return SeekOutcome(moved=[move.shard_id for move in changes])

    def _apply_to_leases(
        self,
        store: DynamoDBCheckpointStore,
        plan: SeekPlan,
        wait: float,
        lease_duration: float,
        on_progress: Callable[[str], Any] | None,
    ) -> SeekOutcome:
        arn = plan.stream_arn
        if plan.reset:
            return self._reset_leases(store, plan, lease_duration, on_progress)
        shards = {shard.shard_id: shard for shard in self._shards()}
        leases = {lease.shard_id: lease for lease in store.leases(arn)}
        outcome = SeekOutcome()
        for move in plan.moves:
            lease = leases.get(move.shard_id)
            held = lease is not None and lease.owner is not None and not lease.finished
            if not held and _lease_matches(lease, move.after):
                continue  # a lease a worker holds is taken even if its position is the same
            shard = shards.get(move.shard_id) or ShardInfo(
                move.shard_id, move.parent_shard_id, None, None
            )
            for _ in range(MOVE_ATTEMPTS):
                if store.move(arn, shard, move.after, lease):
                    break
                lease = store.lease(arn, move.shard_id)  # it changed meanwhile: again
            else:
                done = ", ".join(outcome.moved) or "none"
                raise SeekRefusedError(
                    f"the lease of shard {move.shard_id} kept changing ({MOVE_ATTEMPTS} "
                    f"tries): the group is busy. Shards moved so far: {done}; run the same "
                    "seek again (it is safe to repeat)."
                )
            outcome.moved.append(move.shard_id)
            if lease is not None and lease.owner is not None and not lease.finished:
                outcome.taken_from[move.shard_id] = lease.owner
        if outcome.moved and store.heartbeats(arn):  # workers to tell, and to wait for
            self._announce(store, arn, lease_duration, on_progress)
            if wait > 0:
                self._wait_for_takers(store, arn, outcome, wait, on_progress)
        return outcome

    def _reset_leases(
        self,
        store: DynamoDBCheckpointStore,
        plan: SeekPlan,
        lease_duration: float,
        on_progress: Callable[[str], Any] | None,
    ) -> SeekOutcome:
        """Delete the group's leases of the stream, once no worker of it runs: a running
        worker would go on from where it is (a reset means "start as on a first run")."""
        arn = plan.stream_arn
        live = self.running_workers(lease_duration, on_progress)
        if live:
            raise SeekRefusedError(
                f"workers of group {store.group!r} are running ({', '.join(live)}): a reset "
                "only applies when a consumer starts. Stop them first, or seek instead "
                "(--to trim-horizon or --to latest), which is safe while workers run."
            )
        ids = [move.shard_id for move in plan.moves]
        store.delete(arn, ids)
        for worker in store.heartbeats(arn):
            store.remove_worker(arn, worker)  # dead ones: nothing is left of the group
        return SeekOutcome(moved=ids)

    def running_workers(
        self, lease_duration: float, on_progress: Callable[[str], Any] | None = None
    ) -> list[str]:
        """The group's workers whose heartbeat moves, watched for up to ``lease_duration``
        seconds (how the group itself tells a live worker); [] without a lease table."""
        store = self.store
        if not isinstance(store, DynamoDBCheckpointStore):
            return []
        first = store.heartbeats(self.stream_arn)
        if not first:
            return []
        if on_progress is not None:
            on_progress(
                f"watching the heartbeats of {len(first)} worker(s) for up to "
                f"{lease_duration:g} s to see which run"
            )
        deadline = time.monotonic() + lease_duration
        live: set[str] = set()
        while time.monotonic() < deadline:
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
            beats = store.heartbeats(self.stream_arn)
            live |= {w for w, beat in beats.items() if w in first and beat != first[w]}
            live |= set(beats) - set(first)  # a worker that started meanwhile
            if live:
                break
        return sorted(live)

    def _announce(
        self,
        store: DynamoDBCheckpointStore,
        arn: str,
        lease_duration: float,
        on_progress: Callable[[str], Any] | None,
    ) -> None:
        """Make every running worker read the lease table now, not at its next safety-net
        read: a heartbeat item of the seek's own appears (a worker reads the table when the
        workers it sees change), stays for a few looks, and goes (another read)."""
        name = f"~seek-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        look = min(lease_duration / 3, 1.0)
        store.heartbeat(arn, name, 1, 1)
        if on_progress is not None:
            on_progress(f"told the group's workers (heartbeat item {name}, {ANNOUNCE_LOOKS} looks)")
        try:
            time.sleep(ANNOUNCE_LOOKS * look + 0.5)
        finally:
            store.remove_worker(arn, name)

    def _wait_for_takers(
        self,
        store: DynamoDBCheckpointStore,
        arn: str,
        outcome: SeekOutcome,
        wait: float,
        on_progress: Callable[[str], Any] | None,
    ) -> None:
        """Until every moved lease that may be read now has an owner again, or ``wait``."""
        if on_progress is not None:
            on_progress(f"waiting up to {wait:g} s for workers to take the moved shards")
        deadline = time.monotonic() + wait
        while True:
            leases = {lease.shard_id: lease for lease in store.leases(arn)}
            finished = {s for s, lease in leases.items() if lease.finished}
            readable = [
                shard_id
                for shard_id in outcome.moved
                if shard_id in leases
                and not leases[shard_id].finished
                and (
                    leases[shard_id].parent_shard_id in finished
                    or leases[shard_id].parent_shard_id not in leases
                )
            ]
            owned = {s: leases[s].owner for s in readable if leases[s].owner is not None}
            if len(owned) == len(readable) or time.monotonic() >= deadline:
                outcome.picked_up_by = {s: o for s, o in owned.items() if o is not None}
                outcome.not_picked_up = [s for s in readable if s not in owned]
                return
            time.sleep(0.2)

    # ------------------------------------------------------------------ reading the stream

    def _shards(self) -> list[ShardInfo]:
        """Every shard, parents first; notes the service's clock (its Date header)."""
        description = self._api.describe_stream(self.stream_arn)
        if description.service_time is not None:
            self._service_offset = description.service_time - time.time()
        return ShardLineage().merge(description.shards)

    def _now(self) -> float:
        """The service's time: its Date header's (to the second, so it errs early), else
        the client's clock."""
        if self._service_offset is not None:
            return time.time() + self._service_offset
        return self._clock()

    def _leases(self) -> dict[str, Lease]:
        if isinstance(self.store, DynamoDBCheckpointStore):
            return {lease.shard_id: lease for lease in self.store.leases(self.stream_arn)}
        return {}

    def _iterator(self, shard_id: str, kind: str, sequence: str | None = None) -> str:
        return self._api.get_shard_iterator(self.stream_arn, shard_id, kind, sequence)

    def _scan(
        self,
        shard: ShardInfo,
        stop_at: Callable[[dict[str, Any]], bool],
        start_after: str | None = None,
    ) -> _Scan:
        """Read a shard from TRIM_HORIZON (or after ``start_after``) up to the first record
        ``stop_at`` accepts, or its end (an open shard: a few empty pages in a row)."""
        scan = _Scan(before=start_after)
        try:
            if start_after is not None:
                iterator: str | None = self._iterator(
                    shard.shard_id, "AFTER_SEQUENCE_NUMBER", start_after
                )
            else:
                iterator = self._iterator(shard.shard_id, "TRIM_HORIZON")
        except TrimmedDataError:
            scan.before = None
            iterator = self._iterator(shard.shard_id, "TRIM_HORIZON")
        empty = 0
        while iterator is not None:
            page = self._api.get_records(shard.shard_id, iterator, 1000)
            had_records = False
            for raw in page.records:
                had_records = True
                scan.scanned += 1
                if stop_at(raw):
                    scan.found = raw
                    return scan
                scan.before = raw["dynamodb"]["SequenceNumber"]
            iterator = page.next_iterator
            empty = 0 if had_records else empty + 1
            if not shard.closed and empty >= EMPTY_PAGES_AT_TIP:
                return scan
        scan.ended = True
        return scan

    def _record_at(self, shard: ShardInfo, sequence: str) -> dict[str, Any] | None:
        """The record ``sequence`` of the shard, or None if it has no such record."""
        try:
            iterator = self._iterator(shard.shard_id, "AT_SEQUENCE_NUMBER", sequence)
        except TrimmedDataError:
            return None
        page = self._api.get_records(shard.shard_id, iterator, 1)
        record = next(page.records, None)
        if record is None or record["dynamodb"]["SequenceNumber"] != sequence:
            return None
        return record


def _finished(checkpoint: Checkpoint | None) -> bool:
    return checkpoint is not None and checkpoint.finished


def _same(a: Checkpoint, b: Checkpoint) -> bool:
    """The same position (a finished shard is finished whatever its last sequence number)."""
    if a.finished or b.finished:
        return a.finished == b.finished
    if a.sequence_number is not None or b.sequence_number is not None:
        return a.sequence_number == b.sequence_number
    return a.latest_at == b.latest_at


def _lease_matches(lease: Lease | None, target: Checkpoint | None) -> bool:
    current = lease.as_checkpoint() if lease is not None else None
    if current is None or target is None:
        return current is None and target is None
    return _same(current, target)


def _unix_time(value: float | datetime) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigurationError(
                f"to_time {value.isoformat()} has no time zone: give an aware datetime "
                "(tzinfo=timezone.utc, for example)"
            )
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(f"to_time must be UNIX seconds or a datetime, not {value!r}")
    return float(value)


def parse_time(text: str) -> float:
    """An ISO 8601 time with a zone (``2026-11-27T10:00Z``, ``...T10:00:00+01:00``) as UNIX
    seconds; :class:`ConfigurationError` saying what is accepted otherwise."""
    cleaned = text.strip()
    if cleaned[-1:] in ("z", "Z"):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(cleaned)
    except ValueError:
        when = None
    if when is None or ("T" not in cleaned.upper() and " " not in cleaned):
        raise ConfigurationError(
            f"{text!r} is not a time: give ISO 8601 with a time zone, such as "
            "2026-11-27T10:00Z or 2026-11-27T11:00:00+01:00"
        )
    if when.tzinfo is None:
        raise ConfigurationError(
            f"{text!r} has no time zone: add Z for UTC (2026-11-27T10:00Z) or an offset (+01:00)"
        )
    return when.timestamp()


def _iso(when: float) -> str:
    moment = datetime.fromtimestamp(when, tz=timezone.utc)
    text = moment.isoformat(timespec="milliseconds" if when % 1 else "seconds")
    return text.replace("+00:00", "Z")


def describe_checkpoint(checkpoint: Checkpoint | None) -> str:
    """A checkpoint in words, as ``checkpoints show`` and ``seek`` print it."""
    if checkpoint is None:
        return "not begun"
    if checkpoint.finished:
        return "finished" + (
            f" (last {checkpoint.sequence_number})" if checkpoint.sequence_number else ""
        )
    if checkpoint.sequence_number is not None:
        return f"after {checkpoint.sequence_number}"
    if checkpoint.latest_at is not None:
        if checkpoint.latest_at <= 0:
            return "from the oldest record"
        return f"from records created at or after {_iso(checkpoint.latest_at)}"
    return "begun, from its first record"


def describe_moves(moves: Iterable[ShardMove]) -> list[str]:
    """One line per move: shard, before -> after, why, scanned."""
    lines = []
    for move in moves:
        if move.before != move.after:
            change = f"{describe_checkpoint(move.before)} -> {describe_checkpoint(move.after)}"
        elif move.held_by is not None:
            change = (
                f"{describe_checkpoint(move.after)}, taken from {move.held_by}, which may "
                "have read past it"
            )
        else:
            change = f"unchanged: {describe_checkpoint(move.after)}"
        detail = move.why
        if move.next_sequence_number is not None:
            detail += f"; next record {move.next_sequence_number}"
            if move.next_created_at is not None:
                detail += f" created {_iso(move.next_created_at)}"
        if move.scanned:
            detail += f"; {move.scanned} record(s) scanned"
        lines.append(f"{move.shard_id}  {change}  ({detail})")
    return lines
