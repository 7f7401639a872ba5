"""Delivery policies at work on one shard: filters, per-key lanes, batches, retries,
bisection, giving up to ``on_failure``, async handlers.

The reader queues the records it fetches (:meth:`ShardDelivery.add`) and calls
:meth:`ShardDelivery.run` on each step: every lane that is due and idle starts an attempt
(on a lane thread, or as a task of the event loop; a lone plain lane runs in the step
itself), and lanes in flight carry on across steps. :meth:`ShardDelivery.take_done` says
how far the shard's records are done — in stream order, so that the checkpoint only ever
covers a contiguous prefix. A record is done when the handler succeeded with it, when the
filter passed over it, or when ``on_failure`` accepted it. Nothing else moves it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any, Literal

from ._errors import HandlerResultError, ReportedFailuresError
from ._policies import Batching, BatchResult, FailedBatch, FailureReason, RetryPolicy
from ._pool import WorkerPool
from ._records import Record

logger = logging.getLogger("ddbstreams")

FailureHandler = Callable[[FailedBatch], Any]
OnFailure = FailureHandler | Literal["discard"] | None

# Record handlers: at most this many records of one lane per attempt, so that lanes run
# for about as long as each other and the step comes back to checkpoint.
RECORD_WINDOW = 25
THREAD_NAME = "ddbstreams-lane"


@dataclass(frozen=True)
class DeliveryPolicy:
    """The delivery settings of one consumer, validated by the consumer."""

    batching: Batching | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    on_failure: OnFailure = None
    matches: Callable[[dict[str, Any]], bool] | None = None
    parallelism: int = 1
    is_async: bool = False

    @property
    def is_plain(self) -> bool:
        """One record at a time, retried forever, unfiltered: the reader's own fast loop."""
        return (
            self.batching is None
            and self.retry == RetryPolicy()
            and self.on_failure is None
            and self.matches is None
            and self.parallelism == 1
            and not self.is_async
        )

    @property
    def capacity(self) -> int:
        """How many fetched records a shard may hold before it stops fetching."""
        per_lane = self.batching.max_records if self.batching else RECORD_WINDOW
        return max(1000, 4 * per_lane * self.parallelism)


class Delivery:
    """A policy and what it runs on: threads for lanes, an event loop for async handlers.

    Both are started on first use and ended by :meth:`close`.
    """

    def __init__(self, policy: DeliveryPolicy, max_shards: int) -> None:
        self.policy = policy
        self._max_shards = max_shards
        self._pool: WorkerPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._threads: set[int] = set()
        self._closed = False
        self._lock = threading.Lock()

    def check_stream(self, view_type: str | None) -> None:
        """Let ``on_failure`` refuse a stream whose records it could not hold (a
        destination's ``check_stream``, such as SQS's size limit without an S3 bucket)."""
        check = getattr(self.policy.on_failure, "check_stream", None)
        if view_type is not None and callable(check):
            check(view_type)

    def owns(self, thread: threading.Thread) -> bool:
        """True if a handler may be running on ``thread`` (a lane or the event loop)."""
        pool = self._pool
        return thread.ident in self._threads or (pool is not None and pool.owns(thread))

    def submit(self, attempt: Callable[[], _Outcome]) -> Future[_Outcome]:
        """Run a plain attempt on a lane thread (a daemon: a stuck handler cannot hold the
        interpreter's exit)."""
        future: Future[_Outcome] = Future()

        def done(result: Any, error: BaseException | None) -> None:
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

        self._lane_pool().submit(attempt, done)
        return future

    def await_on_loop(self, awaitable: Any) -> Any:
        """Await ``awaitable`` (an async ``on_failure``'s) on the consumer's event loop."""

        async def run() -> Any:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(run(), self._event_loop()).result()

    def submit_async(
        self, attempt: Callable[[], Coroutine[Any, Any, _Outcome]]
    ) -> Future[_Outcome]:
        """Run a coroutine attempt as a task of the consumer's event loop."""
        return asyncio.run_coroutine_threadsafe(attempt(), self._event_loop())

    def close(self) -> None:
        with self._lock:
            pool, loop, thread = self._pool, self._loop, self._loop_thread
            self._pool = self._loop = self._loop_thread = None
            self._closed = True
        if pool is not None:
            pool.shutdown()
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5.0)
            if not thread.is_alive():
                loop.close()

    def _lane_pool(self) -> WorkerPool:
        with self._lock:
            self._check_open()
            if self._pool is None:
                self._pool = WorkerPool(self.policy.parallelism * self._max_shards, THREAD_NAME)
            return self._pool

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the consumer has stopped: no more handler calls")

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            self._check_open()
            if self._loop is None:
                loop = asyncio.new_event_loop()
                started = threading.Event()

                def serve() -> None:
                    self._register_thread()
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()

                thread = threading.Thread(target=serve, name="ddbstreams-async", daemon=True)
                thread.start()
                started.wait()
                self._loop, self._loop_thread = loop, thread
            return self._loop

    def _register_thread(self) -> None:
        self._threads.add(threading.get_ident())


@dataclass
class _Outcome:
    """How an attempt went: its first ``ok`` records succeeded; then ``error`` (or a stop).
    ``seconds``: how long the attempt's handler calls took."""

    ok: int
    error: BaseException | None = None
    seconds: float = 0.0


class _Pending:
    __slots__ = ("arrived", "done", "key", "raw", "record")

    def __init__(self, raw: dict[str, Any], shard_id: str, arrived: float) -> None:
        self.raw = raw
        self.record = Record(raw, shard_id)
        self.arrived = arrived
        self.done = False
        self.key: str | None = None  # its item's primary key, when there are several lanes


class _Lane:
    """The records of some items, in order, and where their retry stands."""

    def __init__(self) -> None:
        self.todo: deque[_Pending] = deque()
        # Sizes of the windows still to try, from the lane's head, the next one last: set
        # once a window failed (it is retried as it is, or in halves when bisecting).
        self.windows: list[int] = []
        self.attempts = 0  # failed calls at the current head record
        self.failures = 0  # failed calls in a row (backoff)
        self.retry_at = -math.inf
        self.error: BaseException | None = None
        self.first_attempt_at: float | None = None
        self.giving_up: FailedBatch | None = None  # handed to on_failure, not yet accepted

    def consume(self, count: int) -> list[_Pending]:
        """The first ``count`` records are done: they leave the lane."""
        done = [self.todo.popleft() for _ in range(count)]
        for item in done:
            item.done = True
        while count and self.windows:
            if self.windows[-1] <= count:
                count -= self.windows.pop()
            else:
                self.windows[-1] -= count
                count = 0
        return done


class ShardDelivery:
    """Delivers one shard's records under a :class:`DeliveryPolicy`."""

    def __init__(
        self,
        delivery: Delivery,
        handler: Callable[[Any], Any],
        *,
        stream_arn: str,
        shard_id: str,
        on_failed: Callable[[Literal["handler", "destination"], BaseException, str], None],
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        random_fraction: Callable[[], float],
        keep_durations: bool = False,
    ) -> None:
        self._delivery = delivery
        self._policy = delivery.policy
        self._handler = handler
        self._stream_arn = stream_arn
        self._shard_id = shard_id
        self._on_failed = on_failed
        self._clock = clock
        self._wall_clock = wall_clock
        self._random_fraction = random_fraction
        self._items: deque[_Pending] = deque()
        self._lanes = [_Lane() for _ in range(self._policy.parallelism)]
        self._in_flight: dict[_Lane, tuple[list[_Pending], Future[_Outcome]]] = {}
        # The lane of each item with records not done yet, and how many it has there.
        self._key_lanes: dict[str, tuple[_Lane, int]] = {}
        self.filtered = 0  # records the filter passed over
        self.failed_over = 0  # records accepted by on_failure
        self.discarded = 0  # records given up with on_failure="discard"
        self.retries = 0  # failed handler calls to be tried again
        # Seconds per handler call, until taken (for metrics only).
        self._durations: list[float] | None = [] if keep_durations else None

    def take_durations(self) -> list[float]:
        """Seconds per handler call of the attempts that ended since the last take: a
        batch handler's call, or a record handler's mean over its window."""
        durations = self._durations
        if not durations:
            return []
        self._durations = []
        return durations

    def oldest_created(self) -> float | None:
        """The creation time (UNIX seconds) of the oldest record not done, if any."""
        for item in self._items:
            if not item.done:
                created = item.record.approximate_creation_time
                return created.timestamp() if created is not None else None
        return None

    @property
    def pending(self) -> int:
        """Records fetched and not done yet."""
        return len(self._items)

    @property
    def in_flight(self) -> bool:
        """True while some lane's handler call is running."""
        return bool(self._in_flight)

    @property
    def failing(self) -> bool:
        """True while some lane waits to retry a failed call or an ``on_failure``."""
        return any(lane.error is not None or lane.giving_up is not None for lane in self._lanes)

    @property
    def has_room(self) -> bool:
        return len(self._items) < self._policy.capacity

    def add(self, raws: Iterable[dict[str, Any]]) -> None:
        """Queue fetched records, in stream order."""
        arrived, matches, lanes = self._clock(), self._policy.matches, self._lanes
        for raw in raws:
            item = _Pending(raw, self._shard_id, arrived)
            self._items.append(item)
            if matches is not None and not matches(raw):
                item.done = True
                self.filtered += 1
            elif len(lanes) == 1:
                lanes[0].todo.append(item)
            else:
                self._lane_for(item).todo.append(item)

    def _lane_for(self, item: _Pending) -> _Lane:
        """The lane of the item's records not done yet; else the lane with least to do.

        An item goes to another lane only once every record of it is done, so its records
        are still handled one after the other, in order.
        """
        key = item.key = _key_of(item.raw)
        lane, count = self._key_lanes.get(key) or (min(self._lanes, key=_load), 0)
        self._key_lanes[key] = (lane, count + 1)
        return lane

    def _consume(self, lane: _Lane, count: int) -> None:
        for item in lane.consume(count):
            if item.key is not None:
                owner, left = self._key_lanes[item.key]
                if left == 1:
                    del self._key_lanes[item.key]
                else:
                    self._key_lanes[item.key] = (owner, left - 1)

    def take_done(self) -> tuple[int, dict[str, Any] | None]:
        """Forget the records done at the head of the shard: how many, and the last one."""
        count, last = 0, None
        items = self._items
        while items and items[0].done:
            last = items.popleft().raw
            count += 1
        return count, last

    def run(
        self, stopping: Callable[[], bool], shard_ended: bool, block: float
    ) -> tuple[float, bool]:
        """Start an attempt in every lane that is due and idle, then wait up to ``block``
        seconds for one in flight to end. Returns the seconds until a lane is due again (0
        if there may be more to do now, inf if nothing waits), and whether anything failed.
        """
        ended, failed = self._collect()
        if ended:  # let the reader move the checkpoint before anything new starts
            return 0.0, failed
        now = self._clock()
        due_in = math.inf
        full = not self.has_room
        ready: list[tuple[_Lane, list[_Pending]]] = []
        for lane in self._lanes:
            if not lane.todo or lane in self._in_flight:
                continue
            if lane.retry_at > now:
                due_in = min(due_in, lane.retry_at - now)
                continue
            if lane.giving_up is None:
                self._give_up_expired(lane)
            if lane.giving_up is not None:
                if not self._hand_to_on_failure(lane):
                    failed = True
                    due_in = min(due_in, lane.retry_at - now)
                    continue
                if not lane.todo:
                    continue
            batch_due_in = self._due_in(lane, now, shard_ended or full)
            if batch_due_in > 0:
                due_in = min(due_in, batch_due_in)
                continue
            ready.append((lane, self._window(lane)))
        if ready and not stopping():
            failed |= self._start(ready, stopping)
        if self._in_flight:
            wait(
                [future for _, future in self._in_flight.values()],
                timeout=min(due_in, block),
                return_when=FIRST_COMPLETED,
            )
            return 0.0, self._collect()[1] or failed
        return (0.0 if ready else due_in), failed

    def drain(self) -> None:
        """Wait for every attempt in flight and take its outcome (before a checkpoint)."""
        wait([future for _, future in self._in_flight.values()])
        self._collect()

    def _start(
        self, ready: list[tuple[_Lane, list[_Pending]]], stopping: Callable[[], bool]
    ) -> bool:
        """Start the attempts; a lone plain lane runs here and now. True if one failed."""
        wall = self._wall_clock()
        for lane, _ in ready:
            if lane.first_attempt_at is None:
                lane.first_attempt_at = wall
        batch = self._policy.batching is not None
        if not self._policy.is_async and len(self._lanes) == 1:
            ((lane, window),) = ready
            started = self._clock()
            attempt = self._batch(window) if batch else self._records(window, stopping)
            attempt.seconds = self._clock() - started
            return self._apply(lane, window, attempt)
        for lane, window in ready:
            future: Future[_Outcome]
            if self._policy.is_async:
                coroutine = (
                    _bound(self._batch_async, window)
                    if batch
                    else _bound(self._records_async, window, stopping)
                )
                future = self._delivery.submit_async(_timed_async(coroutine, self._clock))
            else:
                plain = (
                    _bound(self._batch, window)
                    if batch
                    else _bound(self._records, window, stopping)
                )
                future = self._delivery.submit(_timed(plain, self._clock))
            self._in_flight[lane] = (window, future)
        return False

    def _collect(self) -> tuple[bool, bool]:
        """Take the outcomes of the attempts that ended: whether any did, and failed."""
        ended = failed = False
        for lane, (window, future) in list(self._in_flight.items()):
            if future.done():
                del self._in_flight[lane]
                ended = True
                failed |= self._apply(lane, window, future.result())
        return ended, failed

    def _apply(self, lane: _Lane, window: list[_Pending], outcome: _Outcome) -> bool:
        """Mark what an attempt did; True if it failed."""
        calls = outcome.ok + (outcome.error is not None)
        if self._policy.batching is not None:
            calls = 1
        if calls and self._durations is not None:
            self._durations.append(outcome.seconds / calls)
        if outcome.error is None:
            self._consume(lane, outcome.ok)
            if outcome.ok == len(window):
                lane.attempts = lane.failures = 0
                lane.error = lane.first_attempt_at = None
            return False
        self._failed_attempt(lane, window, outcome)
        return True

    # ----------------------------------------------------------------- attempts

    def _due_in(self, lane: _Lane, now: float, no_more_coming: bool) -> float:
        """Seconds until the lane's batch should be handed over (0: now)."""
        batching = self._policy.batching
        if batching is None or lane.windows or no_more_coming:
            return 0.0
        if len(lane.todo) >= batching.max_records:
            return 0.0
        return max(0.0, lane.todo[0].arrived + batching.max_wait - now)

    def _window(self, lane: _Lane) -> list[_Pending]:
        batching = self._policy.batching
        if lane.windows:
            size = lane.windows[-1]
        else:
            size = batching.max_records if batching is not None else RECORD_WINDOW
        return [lane.todo[i] for i in range(min(size, len(lane.todo)))]

    def _records(self, window: list[_Pending], stopping: Callable[[], bool]) -> _Outcome:
        handler = self._handler
        for index, item in enumerate(window):
            if index and stopping():
                return _Outcome(index)
            try:
                result = handler(item.record)
                if result is not None:
                    check_record_result(handler, item.raw, result)
            except Exception as exc:
                return _Outcome(index, exc)
        return _Outcome(len(window))

    async def _records_async(
        self, window: list[_Pending], stopping: Callable[[], bool]
    ) -> _Outcome:
        handler = self._handler
        for index, item in enumerate(window):
            if index and stopping():
                return _Outcome(index)
            try:
                result = await handler(item.record)
                if result is not None:
                    check_record_result(handler, item.raw, result)
            except Exception as exc:
                return _Outcome(index, exc)
        return _Outcome(len(window))

    def _batch(self, window: list[_Pending]) -> _Outcome:
        records = [item.record for item in window]
        try:
            result = self._handler(list(records))  # a copy: the handler may change its list
            if result is not None:
                refuse_awaitable(self._handler, window[0].raw, result)
        except Exception as exc:
            return _Outcome(0, exc)
        return _judge(records, result)

    async def _batch_async(self, window: list[_Pending]) -> _Outcome:
        records = [item.record for item in window]
        try:
            result = await self._handler(list(records))
        except Exception as exc:
            return _Outcome(0, exc)
        return _judge(records, result)

    # ----------------------------------------------------------------- failures

    def _failed_attempt(self, lane: _Lane, window: list[_Pending], outcome: _Outcome) -> None:
        """A call failed at ``window[outcome.ok]``: retry, split, or give up."""
        assert outcome.error is not None
        error, ok = outcome.error, outcome.ok
        failing = window[ok]
        if ok:
            self._consume(lane, ok)
            lane.attempts = 0
            lane.first_attempt_at = self._wall_clock()
        lane.error = error
        if self._policy.batching is None:
            what = f"the handler failed on record {failing.record.sequence_number}"
        else:
            last = window[-1].record.sequence_number
            what = (
                f"the handler failed on a batch of {len(window) - ok} record(s) "
                f"({failing.record.sequence_number}..{last})"
            )
        self._on_failed("handler", error, what)
        if self._policy.batching is None:
            remaining = 1  # a record handler's retry starts at the failing record
            lane.windows.clear()
        else:
            remaining = len(window) - ok
            if not lane.windows:
                lane.windows.append(remaining)
        retry = self._policy.retry
        if retry.bisect_on_error and remaining > 1:
            lane.windows.pop()
            lane.windows += [remaining // 2, remaining - remaining // 2]
            self.retries += 1  # in halves
            return  # splitting is not an attempt, and is tried at once
        lane.attempts += 1
        lane.failures += 1
        lane.retry_at = self._clock() + self._backoff(lane.failures)
        if retry.max_attempts is not None and lane.attempts >= retry.max_attempts:
            lane.giving_up = self._failed_batch(lane, remaining, "max_attempts")
            lane.retry_at = -math.inf
            self._hand_to_on_failure(lane)
        else:
            self.retries += 1

    def _give_up_expired(self, lane: _Lane) -> None:
        """Records older than ``max_record_age`` at the lane's head go to ``on_failure``."""
        max_age = self._policy.retry.max_record_age
        if max_age is None:
            return
        oldest_allowed = self._wall_clock() - max_age
        expired = 0
        for item in lane.todo:
            created = item.record.approximate_creation_time
            if created is None or created.timestamp() >= oldest_allowed:
                break
            expired += 1
        if expired:
            lane.giving_up = self._failed_batch(lane, expired, "max_record_age")

    def _failed_batch(self, lane: _Lane, count: int, reason: FailureReason) -> FailedBatch:
        records = tuple(lane.todo[i].record for i in range(count))
        error = lane.error  # also when records that failed then aged out
        return FailedBatch(
            records=records,
            reason=reason,
            attempts=lane.attempts,
            error_type=_qualified_name(type(error)) if error is not None else "",
            error_message=str(error) if error is not None else "",
            traceback="".join(traceback.format_exception(error)) if error is not None else "",
            stream_arn=self._stream_arn,
            shard_id=self._shard_id,
            first_sequence_number=records[0].sequence_number,
            last_sequence_number=records[-1].sequence_number,
            first_attempt_at=lane.first_attempt_at if lane.attempts else None,
            failed_at=self._wall_clock(),
            error=error,
        )

    def _hand_to_on_failure(self, lane: _Lane) -> bool:
        """Give the lane's failed batch to ``on_failure``; True once it was accepted."""
        batch = lane.giving_up
        assert batch is not None
        count = len(batch.records)
        span = f"{count} record(s) of shard {self._shard_id} ({batch.first_sequence_number}"
        span += f"..{batch.last_sequence_number})" if count > 1 else ")"
        why = (
            f"after {batch.attempts} failed attempt(s), the last: {batch.error_type}: "
            f"{batch.error_message}"
            if batch.reason == "max_attempts"
            else f"older than max_record_age={self._policy.retry.max_record_age:g}s"
        )
        on_failure = self._policy.on_failure
        if on_failure == "discard":
            for record in batch.records:
                logger.error(
                    "discarding record %s of shard %s (%s), as on_failure='discard' asks",
                    record.sequence_number,
                    self._shard_id,
                    why,
                )
            self.discarded += count
        else:
            assert callable(on_failure)
            try:
                accepted = on_failure(batch)
                if inspect.isawaitable(accepted):  # an async destination
                    self._delivery.await_on_loop(accepted)
            except Exception as exc:
                lane.failures += 1
                lane.retry_at = self._clock() + self._backoff(lane.failures)
                self._on_failed("destination", exc, f"on_failure did not accept {span}")
                return False
            logger.warning("gave up on %s %s; on_failure accepted them", span, why)
            self.failed_over += count
        self._consume(lane, count)
        lane.giving_up = lane.error = lane.first_attempt_at = None
        lane.attempts = lane.failures = 0
        lane.retry_at = -math.inf
        return True

    def _backoff(self, failures: int) -> float:
        retry = self._policy.retry
        ceiling = min(retry.initial_backoff * 2.0 ** min(failures - 1, 30), retry.max_backoff)
        return ceiling * (0.5 + self._random_fraction() / 2)


def _judge(records: list[Record], result: object) -> _Outcome:
    """What a batch handler's return value says about its batch."""
    if result is None:
        return _Outcome(len(records))
    if not isinstance(result, BatchResult):
        return _Outcome(
            0,
            HandlerResultError(
                f"the batch handler returned a {type(result).__name__}; return None (every "
                "record succeeded), a ddbstreams.BatchResult naming the failed records, or raise"
            ),
        )
    if isinstance(result.failed, (Record, str, bytes)) or not isinstance(result.failed, Iterable):
        return _Outcome(
            0,
            HandlerResultError(
                "BatchResult.failed must be a list of records of the batch, not a "
                f"{type(result.failed).__name__}: write BatchResult(failed=[record])"
            ),
        )
    if not result.failed:
        return _Outcome(len(records))
    position = {id(record): index for index, record in enumerate(records)}
    by_sequence = {record.sequence_number: index for index, record in enumerate(records)}
    found: list[int] = []
    strangers: list[str] = []
    for failed in result.failed:
        index = position.get(id(failed))
        if index is None and isinstance(failed, Record):
            index = by_sequence.get(failed.sequence_number)
        if index is None:
            strangers.append(
                failed.sequence_number if isinstance(failed, Record) else repr(failed)[:80]
            )
        else:
            found.append(index)
    if strangers:
        return _Outcome(
            0,
            HandlerResultError(
                f"BatchResult.failed holds {len(strangers)} record(s) that were not in the "
                f"batch: {', '.join(strangers[:5])}{' ...' if len(strangers) > 5 else ''}; "
                "return records of the batch the handler was given"
            ),
        )
    earliest = min(found)
    return _Outcome(
        earliest,
        ReportedFailuresError(
            f"the handler reported {len(found)} record(s) of its batch of {len(records)} as "
            f"failed, the earliest {records[earliest].sequence_number}"
        ),
    )


def _key_of(raw: dict[str, Any]) -> str:
    """A record's item, as text: its primary key attributes in wire form."""
    return repr(sorted(raw.get("dynamodb", {}).get("Keys", {}).items()))


def _load(lane: _Lane) -> int:
    return len(lane.todo)


def _bound(function: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    return lambda: function(*args)


def _timed(attempt: Callable[[], _Outcome], clock: Callable[[], float]) -> Callable[[], _Outcome]:
    def timed() -> _Outcome:
        started = clock()
        outcome = attempt()
        outcome.seconds = clock() - started
        return outcome

    return timed


def _timed_async(
    attempt: Callable[[], Coroutine[Any, Any, _Outcome]], clock: Callable[[], float]
) -> Callable[[], Coroutine[Any, Any, _Outcome]]:
    async def timed() -> _Outcome:
        started = clock()
        outcome = await attempt()
        outcome.seconds = clock() - started
        return outcome

    return timed


def _qualified_name(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def check_record_result(handler: object, raw: dict[str, Any], result: object) -> None:
    """What a record handler returned, when not None: an awaitable (never run) or a
    ``BatchResult`` naming failures (meant for a batch handler) is a failure."""
    if isinstance(result, BatchResult) and result.failed:
        raise HandlerResultError(
            f"the handler returned a BatchResult for record "
            f"{raw.get('dynamodb', {}).get('SequenceNumber')}: a record handler fails a "
            "record by raising; BatchResult is for batch handlers (batching=Batching(...))"
        )
    refuse_awaitable(handler, raw, result)


def refuse_awaitable(handler: object, raw: dict[str, Any], result: object) -> None:
    """A plain function returned an awaitable (a lambda around an ``async def``, say):
    it was never run. Raise, so that the record is not taken as handled."""
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise HandlerResultError(
            f"the handler {handler!r} returned an awaitable for record "
            f"{raw.get('dynamodb', {}).get('SequenceNumber')}, which was never awaited: "
            "pass the async def function itself, so that the consumer awaits it"
        )


def is_async_handler(handler: object) -> bool:
    """True for ``async def`` functions and objects whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004
    )
