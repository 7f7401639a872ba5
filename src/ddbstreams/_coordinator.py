"""ShardCoordinator: which shards run, when, on a bounded pool."""

from __future__ import annotations

import contextlib
import functools
import heapq
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ._checkpoints import Checkpoint, CheckpointStore
from ._client import FilterUnsupported, Interrupted, StreamDescription, StreamsAPI
from ._delivery import Delivery
from ._errors import (
    CheckpointStoreError,
    EndpointUnreachableError,
    StreamDisabledError,
    TransientError,
    TrimmedDataError,
)
from ._health import Health, assess
from ._leases import (
    FencedCheckpoints,
    GroupChanges,
    GroupMember,
    LeaseLostError,
    LeaseTable,
    default_worker_id,
)
from ._lineage import ShardInfo, ShardLineage
from ._metrics import GAUGE_INTERVAL, Metrics, Reporter
from ._pool import Abandoned, WorkerPool, call_unless_stopped
from ._reader import Handler, ShardReader, StartFrom, TrimmedDataGap
from ._settings import ConsumerSettings

logger = logging.getLogger("ddbstreams")

ShardState = Literal["waiting", "reading", "finished", "skipped"]

# DescribeStream is throttled at about 10 calls/s and a large stream takes several pages.
MIN_SECONDS_BETWEEN_DISCOVERIES = 1.0
DISCOVERY_RETRY_MAX = 5.0
THREAD_NAME_PREFIX = "ddbstreams"
IDLE_WAKE = 60.0  # the scheduler's longest sleep; every event wakes it sooner
# A LATEST start pinned by the host's clock errs this much early: it may run ahead.
HOST_CLOCK_MARGIN = 60.0
# Once a final checkpoint has failed, the others are tried for this long at most.
FINAL_CHECKPOINT_BUDGET = 1.0


@dataclass(frozen=True)
class ShardStatus:
    """A snapshot of one shard as the coordinator sees it.

    ``state`` is ``waiting`` (its parent is not finished yet), ``reading``, ``finished``
    (read to its end and checkpointed) or ``skipped`` (closed before a LATEST start).
    ``failures`` counts consecutive failures of kind ``failure_kind`` (``handler``,
    ``destination``, ``throttled``, ``server``, ``malformed``, ``unreachable`` or
    ``store``); ``last_error`` describes the latest one. Both reset once the shard goes on.

    ``records_delivered`` counts the records done this run: handled, and with delivery
    policies also those the filter passed over (``records_filtered``), those given to
    ``on_failure`` (``records_failed_over``) and those discarded (``records_discarded``).

    For a shard this worker reads (``held``; in a consumer group, one whose lease it holds),
    in seconds: ``iterator_age`` is now minus the creation time of the newest record done
    (0 once caught up), ``oldest_waiting_age`` that of the oldest record fetched and not
    done, ``failing_for`` how long the handler (or ``on_failure``) has failed without a
    success, ``stalled_for`` how long records have waited without any being done.
    """

    shard_id: str
    parent_shard_id: str | None
    state: ShardState
    last_sequence_number: str | None
    records_delivered: int
    failures: int
    failure_kind: str | None = None
    last_error: str | None = None
    records_filtered: int = 0
    records_failed_over: int = 0
    records_discarded: int = 0
    held: bool = True
    iterator_age: float = 0.0
    oldest_waiting_age: float = 0.0
    failing_for: float = 0.0
    stalled_for: float = 0.0


@dataclass
class _Discovered:
    description: StreamDescription
    checkpoints: dict[str, Checkpoint]
    first: bool
    partial: bool = False  # only the children of shards that ended (ShardFilter)


class ShardCoordinator:
    """Discovers a stream's shards and reads every one of them, parents before children.

    - ``DescribeStream`` is followed through every page, at start, every
      ``discovery_interval`` seconds, and soon after a shard whose children are not yet
      known is read to its end. Discovery runs on its own thread: a slow answer never
      holds up reading.
    - A child shard is read only once its parent was read to its end and checkpointed as
      finished; children start at their first record. A parent that is no longer listed
      (its records passed the 24 h retention) with a stored checkpoint short of its end is
      a possible gap, handled by ``settings.trimmed_data``.
    - All ready shards are polled concurrently on a pool of ``max_workers`` threads, with at
      most one step of a shard in flight, so one shard's records reach the handler one at a
      time and in order. The handler may be called from several threads at once (one per
      shard being read).
    - ``run()`` blocks until ``stop()`` is called (from another thread or a signal
      handler), the stream is disabled and drained (:class:`StreamDisabledError`), or an
      error that retrying cannot fix. On the way out it waits for handler calls in
      progress, never for the network, and tries every shard's final checkpoint.
    - Finished shards that the stream no longer lists and whose children have begun are
      forgotten, in memory and (if the store has ``delete``) in the store.

    ``client`` is a boto3 ``dynamodbstreams`` client or a
    :class:`ddbstreams.testing.StreamSimulator`. ``metrics``, if given, is a
    :class:`ddbstreams.Metrics` the coordinator reports to (docs/metrics.md).
    """

    def __init__(
        self,
        *,
        stream_arn: str,
        client: Any,
        handler: Handler,
        checkpoint_store: CheckpointStore,
        settings: ConsumerSettings | None = None,
        on_data_loss: Callable[[TrimmedDataGap], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] | None = None,
        worker_id: str | None = None,
        on_lease_lost: Callable[[str], Any] | None = None,
        on_shard_started: Callable[[str], Any] | None = None,
        on_shard_ended: Callable[[str], Any] | None = None,
        delivery: Delivery | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.stream_arn = stream_arn
        self.settings = settings if settings is not None else ConsumerSettings()
        self._api = (
            client
            if isinstance(client, StreamsAPI)
            else StreamsAPI(client, attempts=self.settings.request_attempts)
        )
        self._handler = handler
        self._delivery = delivery
        self._store = checkpoint_store
        self._on_data_loss = on_data_loss
        self._clock = clock
        self._wall_clock = wall_clock or self._api.wall_time
        self._lineage = ShardLineage()
        self._readers: dict[str, ShardReader] = {}
        self._in_flight: set[str] = set()
        self._schedule: list[tuple[float, int, str]] = []
        self._tiebreak = 0
        self._stream_status = "ENABLED"
        self._discovered_once = False
        self._discovery_failures = 0
        self._last_discovery = -MIN_SECONDS_BETWEEN_DISCOVERIES
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._pool = WorkerPool(self.settings.max_workers, THREAD_NAME_PREFIX)
        self._discovery_pool = WorkerPool(1, f"{THREAD_NAME_PREFIX}-discovery")
        self._finished_steps: list[tuple[str, Any, BaseException | None]] = []
        self._discovery_result: tuple[_Discovered | None, BaseException | None] | None = None
        self._discovering = False
        self._orphans: set[str] = set()  # shards read to their end, children not known yet
        self._child_filter = True  # DescribeStream's ShardFilter works here, until it fails
        self._next_full = 0.0  # when the next scan of every shard is due
        # A consumer group: a store that is also a lease table shares the shards out.
        self._member: GroupMember | None = None
        self._on_lease_lost = on_lease_lost
        self._on_shard_started = on_shard_started
        self._on_shard_ended = on_shard_ended
        if isinstance(checkpoint_store, LeaseTable):
            self._member = GroupMember(
                checkpoint_store,
                stream_arn,
                worker_id or default_worker_id(),
                lease_duration=float(getattr(checkpoint_store, "lease_duration", 10.0)),
                clock=clock,
            )
            self._store = FencedCheckpoints(checkpoint_store, self._member)
        self._lease_pool = WorkerPool(1, f"{THREAD_NAME_PREFIX}-lease")
        self._group_result: tuple[GroupChanges | None, BaseException | None] | None = None
        self._ticking = False
        self._handovers: dict[str, str] = {}  # shard id -> taker, once its step is done
        self._stale: set[str] = set()  # readers to rebuild (or drop) once their step is done
        self._latest_pin: float | None = None
        self._started_at = (0.0, 0.0)  # wall and monotonic clock when run() began
        self._reporter = Reporter(metrics, stream_arn) if metrics is not None else None
        if self._reporter is not None:
            self._api.observer = self._reporter.api_call
        self._heartbeat_failures_reported = 0

    def stop(self) -> None:
        """Ask ``run()`` to return: in-flight handler calls finish, checkpoints are written."""
        self._stop.set()
        self._api.interrupt()
        self._wake.set()

    @property
    def worker_id(self) -> str | None:
        """This worker's id in its consumer group (None without a lease table)."""
        return self._member.worker_id if self._member is not None else None

    def owns_thread(self, thread: threading.Thread) -> bool:
        """True if ``thread`` is one of the coordinator's (a handler runs on it)."""
        return (
            self._pool.owns(thread)
            or self._discovery_pool.owns(thread)
            or (self._delivery is not None and self._delivery.owns(thread))
        )

    def shards(self) -> list[ShardStatus]:
        """Every known shard, parents before children."""
        with self._lock:
            ordered = self._lineage.in_lineage_order(self._lineage.shards.values())
            return [self._status(shard) for shard in ordered if shard.shard_id in self._readers]

    def health(self) -> Health:
        """Healthy, degraded or failing, with the reasons (see :class:`Health`)."""
        heartbeat = None
        if self._member is not None:
            heartbeat = self._member.heartbeat_trouble(self._clock())
        return assess(self.shards(), self.settings, self._discovery_failures, heartbeat)

    def run(self) -> None:
        """Read the stream until stopped; see the class docstring."""
        failure: BaseException | None = None
        self._started_at = (self._wall_clock(), self._clock())
        try:
            if not self._first_discovery():
                return
            next_discovery = self._next_full = self._clock() + self.settings.discovery_interval
            next_tick = next_gauges = self._clock()
            while not self._stop.is_set():
                self._wake.clear()
                now = self._clock()
                if self._member is not None:
                    self._take_group_changes(now)
                    if now >= next_tick and not self._ticking:
                        self._start_tick()
                        next_tick = now + self._member.tick_interval
                if self._collect_steps(now):
                    soonest = self._last_discovery + MIN_SECONDS_BETWEEN_DISCOVERIES
                    next_discovery = min(next_discovery, max(now, soonest))
                discovered = self._take_discovery(now)
                if discovered is not None:
                    next_discovery = discovered
                if now >= next_discovery and not self._discovering:
                    self._start_discovery(now)
                self._raise_if_drained()
                self._start_due_steps(now)
                if self._reporter is not None and now >= next_gauges:
                    self._report_gauges(self._reporter)
                    next_gauges = now + GAUGE_INTERVAL
                wake_at = self._schedule[0][0] if self._schedule else now + IDLE_WAKE
                if self._reporter is not None:
                    wake_at = min(wake_at, next_gauges)
                if not self._discovering:
                    wake_at = min(wake_at, next_discovery)
                if self._member is not None and not self._ticking:
                    wake_at = min(wake_at, next_tick)
                self._wake.wait(min(max(0.0, wake_at - self._clock()), IDLE_WAKE))
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self.stop()
            self._pool.shutdown()
            self._discovery_pool.shutdown()
            self._lease_pool.shutdown()
            try:
                self._checkpoint_all(failure)
            finally:
                if self._delivery is not None:
                    self._delivery.close()
                self._leave_group()
                if self._reporter is not None:
                    for reader in list(self._readers.values()):
                        reader.report()  # the final checkpoints
                    self._report_gauges(self._reporter)

    # ------------------------------------------------------------------ the scheduler

    def _collect_steps(self, now: float) -> bool:
        """Handle finished steps; True if a shard ended whose children are not known yet."""
        with self._lock:
            finished, self._finished_steps = self._finished_steps, []
        discover_soon = False
        for shard_id, delay, error in finished:
            self._in_flight.discard(shard_id)
            if error is not None and not isinstance(error, Interrupted):
                raise error  # what retrying cannot fix
            reader = self._readers.get(shard_id)
            if reader is None:
                continue
            if shard_id in self._handovers:
                self._hand_over_when_settled(shard_id, self._handovers.pop(shard_id))
                continue
            if shard_id in self._stale or reader.revoked:
                if reader.revoked and self._member is not None:
                    self._member.drop(shard_id)  # its next look at the table says more
                self._stale.discard(shard_id)
                self._refresh(shard_id, now)
                continue
            if reader.finished:
                if self._on_shard_ended is not None:
                    self._on_shard_ended(shard_id)
                if not self._schedule_children(shard_id, now):
                    self._orphans.add(shard_id)
                    discover_soon = True
            elif error is None:
                self._push(now + delay, shard_id)
        return discover_soon

    def _start_due_steps(self, now: float) -> None:
        while self._schedule and self._schedule[0][0] <= now:
            _, _, shard_id = heapq.heappop(self._schedule)
            reader = self._readers.get(shard_id)
            if reader is None or shard_id in self._in_flight or reader.finished:
                continue
            if self._member is not None and not self._member.holds(shard_id):
                if self._member.epoch_of(shard_id) is not None:
                    # Ours, but its fence lapsed (a late heartbeat): due again after a poll,
                    # since a heartbeat may bring the fence back with no lease change to say so.
                    self._push(now + self.settings.poll_interval, shard_id)
                continue  # another worker's, for now
            self._in_flight.add(shard_id)
            if not reader.announced:
                reader.announced = True
                if self._on_shard_started is not None:
                    self._on_shard_started(shard_id)
            self._pool.submit(
                functools.partial(reader.step, self._stop),
                functools.partial(self._step_done, shard_id),
            )

    def _step_done(self, shard_id: str, delay: Any, error: BaseException | None) -> None:
        with self._lock:
            self._finished_steps.append((shard_id, delay, error))
        self._wake.set()

    def _push(self, due: float, shard_id: str) -> None:
        self._tiebreak += 1
        heapq.heappush(self._schedule, (due, self._tiebreak, shard_id))

    def _schedule_children(self, shard_id: str, now: float) -> bool:
        """Schedule the children of a finished shard; False if none are known yet."""
        children = self._lineage.children(shard_id)
        for child in children:
            if self._is_ready(child):
                self._push(now, child)
        return bool(children)

    def _is_ready(self, shard_id: str) -> bool:
        return self._lineage.is_ready(shard_id, self._is_finished)

    def _is_finished(self, shard_id: str) -> bool:
        if self._member is not None and self._member.is_finished(shard_id):
            return True
        reader = self._readers.get(shard_id)
        return reader is not None and reader.finished

    def _raise_if_drained(self) -> None:
        if self._stream_status != "DISABLED" or self._in_flight:
            return
        if all(reader.finished for reader in self._readers.values()):
            raise StreamDisabledError(
                f"stream {self.stream_arn} was disabled and every record it held has been "
                "delivered. Re-enabling a table's stream creates a new stream with a new ARN, "
                "read from its start by a new consumer."
            )

    # ------------------------------------------------------------------ discovery

    def _first_discovery(self) -> bool:
        """Discover on this thread, riding out throttling and server errors, and an
        unreachable endpoint for ``startup_timeout`` seconds; False if stopped first."""
        delay = 0.1
        deadline = self._clock() + self.settings.startup_timeout
        told = False
        while not self._stop.is_set():
            try:
                discovered = call_unless_stopped(
                    lambda: self._discover(first=True), self._stop, f"{THREAD_NAME_PREFIX}-start"
                )
                self._apply(discovered)
                return True
            except (Interrupted, Abandoned):
                return False
            except TransientError as exc:
                if isinstance(exc, EndpointUnreachableError) and self._clock() >= deadline:
                    raise
                if not told:
                    logger.warning("DescribeStream failed; retrying: %s", exc)
                    told = True
                if self._stop.wait(delay):
                    return False
                delay = min(delay * 2, DISCOVERY_RETRY_MAX)
        return False

    def _start_discovery(self, now: float) -> None:
        """Scan every shard when that is due; in between, only look up the children of
        shards that ended (cheap: DescribeStream with ShardFilter CHILD_SHARDS)."""
        self._discovering = True
        parents = (
            sorted(self._orphans)
            if self._orphans and self._child_filter and now < self._next_full
            else None
        )

        def done(result: Any, error: BaseException | None) -> None:
            with self._lock:
                self._discovery_result = (result, error)
            self._wake.set()

        self._discovery_pool.submit(lambda: self._discover(first=False, parents=parents), done)

    def _take_discovery(self, now: float) -> float | None:
        """Apply a finished background discovery; when the next is due, or None."""
        with self._lock:
            outcome, self._discovery_result = self._discovery_result, None
        if outcome is None:
            return None
        self._discovering = False
        result, error = outcome
        if isinstance(error, (TransientError, CheckpointStoreError)):
            self._discovery_failures += 1
            logger.warning(
                "discovering shards failed (%d in a row), will retry: %s",
                self._discovery_failures,
                error,
            )
            return now + min(self.settings.discovery_interval, DISCOVERY_RETRY_MAX)
        if error is not None:
            if isinstance(error, Interrupted):
                return None
            raise error
        self._discovery_failures = 0
        assert isinstance(result, _Discovered)
        self._apply(result)
        if not result.partial:
            self._next_full = now + self.settings.discovery_interval
        elif self._orphans:  # some ended shard has no child (yet): a full scan says why
            self._next_full = now
            return now + MIN_SECONDS_BETWEEN_DISCOVERIES
        return self._next_full

    def _discover(self, *, first: bool, parents: list[str] | None = None) -> _Discovered:
        """DescribeStream (of every shard, or of the children of ``parents``), and the
        stored checkpoints of shards not seen before (and of their parents that are no
        longer listed). Runs on the discovery thread."""
        self._last_discovery = self._clock()
        description = self._children_of(parents) if parents else None
        partial = description is not None
        if description is None:
            description = self._api.describe_stream(self.stream_arn)
        if self._member is not None:
            with self._lock:
                known = set(self._readers)
            self._member.register([s for s in description.shards if s.shard_id not in known])
            if not partial:
                self._member.listed = {shard.shard_id for shard in description.shards}
        if first:
            if self._delivery is not None:
                self._delivery.check_stream(description.view_type)
            return _Discovered(description, self._store.load_all(self.stream_arn), True)
        with self._lock:
            known = set(self._readers)
        listed = {shard.shard_id for shard in description.shards}
        wanted = set()
        for shard in description.shards:
            if shard.shard_id not in known:
                wanted.add(shard.shard_id)
                parent = shard.parent_shard_id
                if parent is not None and parent not in listed and parent not in known:
                    wanted.add(parent)
        checkpoints = {}
        for shard_id in sorted(wanted):
            checkpoint = self._store.load(self.stream_arn, shard_id)
            if checkpoint is not None:
                checkpoints[shard_id] = checkpoint
        return _Discovered(description, checkpoints, False, partial)

    def _children_of(self, parents: list[str]) -> StreamDescription | None:
        """The children of these shards, or None where ShardFilter is not supported."""
        try:
            children = [
                child
                for parent in parents
                for child in self._api.child_shards(self.stream_arn, parent)
            ]
        except FilterUnsupported as exc:
            logger.info("DescribeStream's ShardFilter is not supported here (%s)", exc)
            self._child_filter = False
            return None
        return StreamDescription(self.stream_arn, self._stream_status, tuple(children))

    def _apply(self, discovered: _Discovered) -> None:
        """Merge a discovery: new readers, vanished parents settled, old shards pruned."""
        description, checkpoints = discovered.description, discovered.checkpoints
        first_contact = discovered.first and not checkpoints
        if first_contact and self.settings.start_position == "LATEST":
            self._latest_pin = self._pin(description.service_time)
        now = self._clock()
        with self._lock:
            self._stream_status = description.status
            new_shards = self._lineage.merge(description.shards)
        self._orphans = {shard for shard in self._orphans if not self._lineage.children(shard)}
        listed = {shard.shard_id for shard in description.shards}
        if not discovered.partial:
            self._settle_vanished(new_shards, checkpoints, listed, first_contact)
        for shard in new_shards:
            reader = self._new_reader(shard, checkpoints.get(shard.shard_id), first_contact)
            with self._lock:
                self._readers[shard.shard_id] = reader
        self._discovered_once = True
        if new_shards:
            logger.info(
                "stream %s: %d new shard(s), %d known",
                self.stream_arn,
                len(new_shards),
                len(self._lineage),
            )
        for shard in new_shards:
            if self._is_ready(shard.shard_id):
                self._push(now, shard.shard_id)
        if not discovered.partial:
            self._prune(listed)

    def _pin(self, service_time: float | None) -> float:
        """Where a LATEST start begins, as a record creation time (the service's clock).

        Records are taken from TRIM_HORIZON and those created before the pin are passed
        over: never a LATEST iterator, which would skip what is written between the start
        and each shard's first step. The pin errs early (duplicates, never loss): by the
        length of the first DescribeStream when the service's clock is known from its Date
        header (which, like creation times, is rounded down to the second), else by a
        minute for the host's clock."""
        wall, monotonic = self._started_at
        if service_time is not None:
            return service_time - (self._clock() - monotonic)
        if self._wall_clock is not time.time:  # a simulator's clock is the service's
            return wall
        return wall - HOST_CLOCK_MARGIN

    def _new_reader(
        self, shard: ShardInfo, checkpoint: Checkpoint | None, first_contact: bool
    ) -> ShardReader:
        parent = self._readers.get(shard.parent_shard_id or "")
        start: StartFrom = "SHARD_START"
        if checkpoint is None and first_contact:
            if parent is None:
                start = self.settings.start_position
            elif parent.skipped:
                start = "LATEST"
        reader = ShardReader(
            shard=shard,
            stream_arn=self.stream_arn,
            api=self._api,
            handler=self._handler,
            store=self._store,
            settings=self.settings,
            checkpoint=checkpoint,
            start_position=start,
            on_data_loss=self._on_data_loss,
            clock=self._clock,
            wall_clock=self._wall_clock,
            fence=self._fence(shard.shard_id),
            lease_epoch=self._member.epoch_of(shard.shard_id) if self._member else None,
            latest_pin=self._latest_pin if start == "LATEST" else None,
            delivery=self._delivery,
            metrics=self._reporter,
        )
        if start == "LATEST" and shard.closed:
            # Retried by its steps if it could not be stored; in a group, by its lease holder.
            with contextlib.suppress(LeaseLostError):
                reader.skip()
        return reader

    def _settle_vanished(
        self,
        new_shards: list[ShardInfo],
        checkpoints: dict[str, Checkpoint],
        listed: set[str],
        first_contact: bool,
    ) -> None:
        """Shards the stream no longer lists (their records passed the 24 h retention) that
        this consumer had not read to their end: each is a possible gap, reported once.

        - a stored checkpoint short of its end, whoever its children are;
        - past the first contact, the parent of a new shard that was never read at all.
        """
        vanished: dict[str, str | None] = {}
        for shard_id, stored in checkpoints.items():
            if not stored.finished and shard_id not in listed and shard_id not in self._readers:
                vanished[shard_id] = stored.sequence_number
        if not first_contact:
            for shard in new_shards:
                parent = shard.parent_shard_id
                if (
                    parent is not None
                    and shard.shard_id not in checkpoints
                    and parent not in listed
                    and parent not in checkpoints
                    and parent not in self._readers
                ):
                    vanished.setdefault(parent, None)
        for shard_id, after in sorted(vanished.items()):
            self._report_vanished(shard_id, after)

    def _report_vanished(self, shard_id: str, after: str | None) -> None:
        reason = (
            f"shard {shard_id} is no longer listed (its records passed the 24-hour retention) "
            "and was read only "
            + (f"up to sequence number {after}" if after else "before its first record")
            + ", so records after that may have been lost"
        )
        if self.settings.trimmed_data == "raise":
            raise TrimmedDataError(
                f"{self.stream_arn}: {reason}. To go on and have the possible gap reported, "
                "set trimmed_data='restart_from_trim_horizon'.",
                shard_id=shard_id,
                after_sequence_number=after,
            )
        logger.error("%s; going on with the shards after it", reason)
        if self._on_data_loss is not None:
            self._on_data_loss(TrimmedDataGap(self.stream_arn, shard_id, after, reason))
        try:  # so that a restart does not report it again
            self._store.save(self.stream_arn, shard_id, Checkpoint(after, finished=True))
        except CheckpointStoreError as exc:
            logger.warning("could not mark shard %s finished: %s", shard_id, exc)

    def _prune(self, listed: set[str]) -> None:
        """Forget finished shards that are no longer listed and whose children have begun."""
        gone = [
            shard_id
            for shard_id, reader in self._readers.items()
            if reader.finished
            and shard_id not in listed
            and shard_id not in self._in_flight
            and all(
                child in self._readers and self._readers[child].begun
                for child in self._lineage.children(shard_id)
            )
        ]
        if not gone:
            return
        with self._lock:
            for shard_id in gone:
                del self._readers[shard_id]
            self._lineage.remove(gone)
        if self._reporter is not None:
            for shard_id in gone:
                self._reporter.forget_shard(shard_id)
        self._orphans.difference_update(gone)
        delete = getattr(self._store, "delete", None)
        if delete is not None:
            try:
                delete(self.stream_arn, gone)
            except CheckpointStoreError as exc:
                logger.warning("could not forget %d finished shard(s): %s", len(gone), exc)
        logger.debug("forgot %d finished shard(s) the stream no longer lists", len(gone))

    # ------------------------------------------------------------------ the group

    def _start_tick(self) -> None:
        assert self._member is not None
        self._ticking = True

        def done(result: Any, error: BaseException | None) -> None:
            with self._lock:
                self._group_result = (result, error)
            self._wake.set()

        self._lease_pool.submit(self._member.tick, done)

    def _take_group_changes(self, now: float) -> None:
        with self._lock:
            outcome, self._group_result = self._group_result, None
        if outcome is None:
            return
        self._ticking = False
        changes, error = outcome
        if error is not None:
            if not isinstance(error, (TransientError, CheckpointStoreError)):
                raise error
            logger.warning("the lease table could not be read: %s", error)
            return
        assert changes is not None
        if self._reporter is not None:
            self._reporter.count(
                "ddbstreams_leases_lost_total", len(changes.lost), self._reporter.stream
            )
            self._reporter.count(
                "ddbstreams_leases_taken_total", len(changes.gained), self._reporter.stream
            )
        for shard_id in changes.lost:
            logger.warning("shard %s: lease lost; this worker stops reading it", shard_id)
            self._let_go(shard_id, now)
            if self._on_lease_lost is not None:
                self._on_lease_lost(shard_id)
        for lease in changes.gained:
            logger.info("shard %s: lease taken (epoch %d)", lease.shard_id, lease.epoch)
            self._let_go(lease.shard_id, now)
        for shard_id, taker in changes.hand_over.items():
            if shard_id in self._in_flight:
                self._handovers[shard_id] = taker  # once its step is done
            else:
                self._hand_over_when_settled(shard_id, taker)

    def _hand_over_when_settled(self, shard_id: str, taker: str) -> None:
        """Hand over now, or once the shard's lanes are out of their handler calls: waited
        for on the pool, as a step is, since this thread must go on heartbeating."""
        reader = self._readers.get(shard_id)
        if reader is None or not reader.busy:
            self._hand_over(shard_id, taker)
            return
        self._handovers[shard_id] = taker
        self._in_flight.add(shard_id)
        self._pool.submit(reader.settle, functools.partial(self._step_done, shard_id))

    def _let_go(self, shard_id: str, now: float) -> None:
        """The shard's reader is out of date: rebuild it now, or once its step is done."""
        if shard_id in self._in_flight:
            self._stale.add(shard_id)
        else:
            self._refresh(shard_id, now)

    def _refresh(self, shard_id: str, now: float) -> None:
        """A fresh reader from the lease table's checkpoint, scheduled if this worker holds
        the shard; a shard not yet discovered here waits for discovery."""
        assert self._member is not None
        shard = self._lineage.shards.get(shard_id)
        if shard is None:
            return
        lease = self._member.leases_by_shard.get(shard_id)
        checkpoint = lease.as_checkpoint() if lease is not None else None
        existing = self._readers.get(shard_id)
        epoch = self._member.epoch_of(shard_id)
        same_lease = (
            existing is not None
            and not existing.revoked
            and epoch is not None
            and existing.lease_epoch == epoch
        )
        unused = existing is not None and not existing.begun and not existing.revoked
        if existing is not None and (same_lease or (unused and checkpoint is None)):
            # Still right: the lease came back unchanged (after a pause of this worker), or an
            # unused reader keeps where it was to start (a first contact's position).
            existing.fence, existing.lease_epoch = self._fence(shard_id), epoch
        else:
            with self._lock:
                self._readers[shard_id] = self._new_reader(shard, checkpoint, first_contact=False)
        if self._member.holds(shard_id) and self._is_ready(shard_id):
            self._push(now, shard_id)

    def _fence(self, shard_id: str) -> Callable[[], float] | None:
        """In a group, a reader delivers only under the lease it was made for."""
        if self._member is None:
            return None
        return functools.partial(self._member.fence_for, shard_id, self._member.epoch_of(shard_id))

    def _hand_over(self, shard_id: str, taker: str) -> None:
        """Checkpoint, then give the lease to the worker that asked for it."""
        assert self._member is not None
        reader = self._readers.get(shard_id)
        try:
            if reader is not None and not reader.revoked:
                reader.checkpoint()
            handed = self._member.handed_over(shard_id, taker)
        except CheckpointStoreError as exc:
            logger.warning("shard %s: handover to %s failed: %s", shard_id, taker, exc)
            self._member.handover_failed(shard_id)  # tried again at its next look
            return
        logger.info("shard %s: handed over to %s (%s)", shard_id, taker, handed)
        if handed and self._reporter is not None:
            self._reporter.count("ddbstreams_leases_handed_over_total", 1, self._reporter.stream)
        self._refresh(shard_id, self._clock())

    def _leave_group(self) -> None:
        if self._member is None:
            return
        try:
            self._member.release_all()
        except CheckpointStoreError as exc:
            logger.warning("could not release the leases: %s; others take them later", exc)

    # ------------------------------------------------------------------ shutdown, status

    def _checkpoint_all(self, failure: BaseException | None) -> None:
        """Every shard's final checkpoint, each tried; one error lists those that failed."""
        failed: list[str] = []
        last: CheckpointStoreError | None = None
        began = self._clock()
        for reader in list(self._readers.values()):
            if reader.revoked or (
                self._member is not None and reader.shard_id not in self._member.held
            ):
                reader.settle()  # its handler calls end before run() does
                continue  # not this worker's to checkpoint
            if failed and self._clock() - began > FINAL_CHECKPOINT_BUDGET:
                failed.append(reader.shard_id)  # the store is failing slowly: not tried
                continue
            try:
                reader.checkpoint()
            except CheckpointStoreError as exc:
                failed.append(reader.shard_id)
                last = exc
                logger.error(
                    "shard %s: could not write the final checkpoint (%s); a restart "
                    "delivers its records after %s again",
                    reader.shard_id,
                    exc,
                    reader.checkpointed_sequence_number,
                )
        if failed and failure is None:
            raise CheckpointStoreError(
                f"the final checkpoint of {len(failed)} shard(s) could not be written "
                f"({', '.join(failed)}): {last}. Nothing is lost: a restart delivers their "
                "last records again."
            ) from last

    def _report_gauges(self, reporter: Reporter) -> None:
        """Ages, shard counts and the heartbeat's age (on the scheduling thread, each second)."""
        wall = self._wall_clock()
        states = dict.fromkeys(("held", "waiting", "finished", "elsewhere"), 0)
        for reader in list(self._readers.values()):
            labels = reporter.shard(reader.shard_id)
            if reader.finished:
                states["finished"] += 1
            elif not self._is_ready(reader.shard_id):
                states["waiting"] += 1
            elif self._member is not None and not self._member.holds(reader.shard_id):
                states["elsewhere"] += 1
            else:
                states["held"] += 1
                iterator_age, waiting_age = reader.ages(wall)
                reporter.gauge("ddbstreams_iterator_age_seconds", iterator_age, labels)
                reporter.gauge("ddbstreams_oldest_waiting_record_age_seconds", waiting_age, labels)
                continue
            reporter.gauge("ddbstreams_iterator_age_seconds", 0.0, labels)
            reporter.gauge("ddbstreams_oldest_waiting_record_age_seconds", 0.0, labels)
        for state, count in states.items():
            reporter.gauge("ddbstreams_shards", count, {"stream": self.stream_arn, "state": state})
        member = self._member
        if member is not None:
            if member.last_beat_ok is not None:
                age = max(0.0, self._clock() - member.last_beat_ok)
                reporter.gauge("ddbstreams_heartbeat_age_seconds", age, reporter.stream)
            failures = member.heartbeat_failures
            reporter.count(
                "ddbstreams_heartbeat_failures_total",
                failures - self._heartbeat_failures_reported,
                reporter.stream,
            )
            self._heartbeat_failures_reported = failures

    def _status(self, shard: ShardInfo) -> ShardStatus:
        reader = self._readers[shard.shard_id]
        state: ShardState
        if reader.skipped:
            state = "skipped"
        elif reader.finished:
            state = "finished"
        elif self._is_ready(shard.shard_id):
            state = "reading"
        else:
            state = "waiting"
        held = state == "reading" and (self._member is None or self._member.holds(shard.shard_id))
        iterator_age = waiting_age = failing_for = stalled_for = 0.0
        if held:
            now = self._clock()
            iterator_age, waiting_age = reader.ages(self._wall_clock())
            if reader.failing_since is not None:
                failing_for = max(0.0, now - reader.failing_since)
            if reader.waiting_created is not None:
                stalled_for = max(0.0, now - reader.progress_at)
        return ShardStatus(
            shard_id=shard.shard_id,
            parent_shard_id=shard.parent_shard_id,
            state=state,
            last_sequence_number=reader.delivered,
            records_delivered=reader.records_delivered,
            failures=reader.failures,
            failure_kind=reader.failure_kind,
            last_error=reader.last_error,
            **reader.policy_counts(),
            held=held,
            iterator_age=iterator_age,
            oldest_waiting_age=waiting_age,
            failing_for=failing_for,
            stalled_for=stalled_for,
        )
