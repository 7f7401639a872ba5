"""ShardCoordinator: which shards run, when, on a bounded pool."""

from __future__ import annotations

import functools
import heapq
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from ._checkpoints import CheckpointStore
from ._client import StreamsAPI
from ._errors import EndpointUnreachableError, StreamDisabledError, TransientError
from ._lineage import ShardInfo, ShardLineage
from ._reader import Handler, ShardReader, TrimmedDataGap
from ._settings import ConsumerSettings

logger = logging.getLogger("ddbstreams")

ShardState = Literal["waiting", "reading", "finished", "skipped"]

# DescribeStream is throttled at about 10 calls/s and a large stream takes several pages.
MIN_SECONDS_BETWEEN_DISCOVERIES = 1.0
THREAD_NAME_PREFIX = "ddbstreams"


@dataclass(frozen=True)
class ShardStatus:
    """A snapshot of one shard as the coordinator sees it.

    ``state`` is ``waiting`` (its parent is not finished yet), ``reading``, ``finished``
    (read to its end and checkpointed) or ``skipped`` (closed before a LATEST start).
    """

    shard_id: str
    parent_shard_id: str | None
    state: ShardState
    last_sequence_number: str | None
    records_delivered: int
    failures: int


class ShardCoordinator:
    """Discovers a stream's shards and reads every one of them, parents before children.

    - ``DescribeStream`` is followed through every page, at start, every
      ``discovery_interval`` seconds, and soon after a shard whose children are not yet
      known is read to its end.
    - A child shard is read only once its parent was read to its end and checkpointed as
      finished; children start at TRIM_HORIZON.
    - All ready shards are polled concurrently on a pool of ``max_workers`` threads, with at
      most one step of a shard in flight, so one shard's records reach the handler one at a
      time and in order. The handler may be called from several threads at once (one per
      shard being read).
    - ``run()`` blocks until ``stop()`` is called (from another thread or a signal
      handler), the stream is disabled and drained (:class:`StreamDisabledError`), or an
      error that retrying cannot fix. On the way out every shard's progress is checkpointed.

    ``client`` is a boto3 ``dynamodbstreams`` client or a
    :class:`ddbstreams.testing.StreamSimulator`.
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
    ) -> None:
        self.stream_arn = stream_arn
        self.settings = settings if settings is not None else ConsumerSettings()
        self._api = (
            client
            if isinstance(client, StreamsAPI)
            else StreamsAPI(client, attempts=self.settings.request_attempts)
        )
        self._handler = handler
        self._store = checkpoint_store
        self._on_data_loss = on_data_loss
        self._clock = clock
        self._lineage = ShardLineage()
        self._readers: dict[str, ShardReader] = {}
        self._in_flight: set[str] = set()
        self._schedule: list[tuple[float, int, str]] = []
        self._tiebreak = 0
        self._stream_status = "ENABLED"
        self._discovered_once = False
        self._last_discovery = -MIN_SECONDS_BETWEEN_DISCOVERIES
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()

    def stop(self) -> None:
        """Ask ``run()`` to return: in-flight handler calls finish, checkpoints are written."""
        self._stop.set()
        self._wake.set()

    def shards(self) -> list[ShardStatus]:
        """Every known shard, parents before children."""
        with self._lock:
            ordered = self._lineage.in_lineage_order(self._lineage.shards.values())
            return [self._status(shard) for shard in ordered if shard.shard_id in self._readers]

    def run(self) -> None:
        """Read the stream until stopped; see the class docstring."""
        done: list[tuple[str, Future[float]]] = []
        done_lock = threading.Lock()

        def on_done(shard_id: str, future: Future[float]) -> None:
            with done_lock:
                done.append((shard_id, future))
            self._wake.set()

        pool = ThreadPoolExecutor(self.settings.max_workers, thread_name_prefix=THREAD_NAME_PREFIX)
        failed = True
        try:
            self._first_discovery()
            next_discovery = self._clock() + self.settings.discovery_interval
            while not self._stop.is_set():
                self._wake.clear()
                with done_lock:
                    finished_steps, done[:] = list(done), []
                now = self._clock()
                for shard_id, future in finished_steps:
                    self._in_flight.discard(shard_id)
                    delay = future.result()  # re-raises what retrying cannot fix
                    reader = self._readers[shard_id]
                    if reader.finished:
                        if not self._schedule_children(shard_id, now):
                            # Its children (or the stream's new status) are not known yet.
                            soonest = self._last_discovery + MIN_SECONDS_BETWEEN_DISCOVERIES
                            next_discovery = min(next_discovery, max(now, soonest))
                    else:
                        self._push(now + delay, shard_id)
                if now >= next_discovery:
                    next_discovery = now + self._discover_safely()
                self._raise_if_drained()
                while self._schedule and self._schedule[0][0] <= now:
                    _, _, shard_id = heapq.heappop(self._schedule)
                    if shard_id in self._in_flight or self._readers[shard_id].finished:
                        continue
                    self._in_flight.add(shard_id)
                    future = pool.submit(self._readers[shard_id].step, self._stop)
                    future.add_done_callback(functools.partial(on_done, shard_id))
                wake_at = min(next_discovery, self._schedule[0][0] if self._schedule else 1e300)
                self._wake.wait(max(0.0, wake_at - self._clock()))
            failed = False
        finally:
            self._stop.set()
            pool.shutdown(wait=True)
            self._checkpoint_all(failed)

    def _first_discovery(self) -> None:
        """Discover, riding out throttling and server errors; an unreachable endpoint at
        startup is a configuration problem and is raised."""
        delay = 0.1
        while True:
            try:
                self._discover()
                return
            except EndpointUnreachableError:
                raise
            except TransientError as exc:
                logger.warning("DescribeStream failed, retrying in %.1fs: %s", delay, exc)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, 5.0)

    def _discover_safely(self) -> float:
        """Discover; on a transient failure log it and try again sooner."""
        try:
            self._discover()
        except TransientError as exc:
            logger.warning("DescribeStream failed, will retry: %s", exc)
            return min(self.settings.discovery_interval, 5.0)
        return self.settings.discovery_interval

    def _discover(self) -> None:
        self._last_discovery = self._clock()
        description = self._api.describe_stream(self.stream_arn)
        first = not self._discovered_once
        checkpoints = self._store.load_all(self.stream_arn)
        now = self._clock()
        with self._lock:
            self._stream_status = description.status
            new_shards = self._lineage.merge(description.shards)
            for shard in new_shards:
                self._readers[shard.shard_id] = self._new_reader(shard, checkpoints, first)
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

    def _new_reader(
        self, shard: ShardInfo, checkpoints: dict[str, Any], first_discovery: bool
    ) -> ShardReader:
        checkpoint = checkpoints.get(shard.shard_id)
        parent = self._readers.get(shard.parent_shard_id or "")
        latest = (
            checkpoint is None
            and first_discovery
            and self.settings.start_position == "LATEST"
            and (parent is None or parent.skipped)
        )
        reader = ShardReader(
            shard=shard,
            stream_arn=self.stream_arn,
            api=self._api,
            handler=self._handler,
            store=self._store,
            settings=self.settings,
            checkpoint=checkpoint,
            start_position="LATEST" if latest else "TRIM_HORIZON",
            on_data_loss=self._on_data_loss,
            clock=self._clock,
        )
        if latest and shard.closed:
            reader.skip()
        return reader

    def _is_ready(self, shard_id: str) -> bool:
        return self._lineage.is_ready(shard_id, self._is_finished)

    def _is_finished(self, shard_id: str) -> bool:
        reader = self._readers.get(shard_id)
        return reader is not None and reader.finished

    def _schedule_children(self, shard_id: str, now: float) -> bool:
        """Schedule the children of a finished shard; False if none are known yet."""
        children = self._lineage.children(shard_id)
        for child in children:
            if self._is_ready(child):
                self._push(now, child)
        return bool(children)

    def _push(self, due: float, shard_id: str) -> None:
        self._tiebreak += 1
        heapq.heappush(self._schedule, (due, self._tiebreak, shard_id))

    def _raise_if_drained(self) -> None:
        if self._stream_status != "DISABLED" or self._in_flight:
            return
        if all(reader.finished for reader in self._readers.values()):
            raise StreamDisabledError(
                f"stream {self.stream_arn} was disabled and every record it held has been "
                "delivered. Re-enabling a stream creates a new one with a new ARN: start the "
                "consumer again (with table_name=, it follows the table's LatestStreamArn)."
            )

    def _checkpoint_all(self, failed: bool) -> None:
        for reader in self._readers.values():
            try:
                reader.checkpoint()
            except Exception:
                if not failed:
                    raise
                logger.exception("shard %s: could not write the final checkpoint", reader.shard_id)

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
        return ShardStatus(
            shard_id=shard.shard_id,
            parent_shard_id=shard.parent_shard_id,
            state=state,
            last_sequence_number=reader.delivered,
            records_delivered=reader.records_delivered,
            failures=reader.failures,
        )
