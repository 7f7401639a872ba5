"""StreamConsumer: wires client, coordinator and checkpoint store; run/start/stop, signals."""

from __future__ import annotations

import atexit
import logging
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import replace
from types import FrameType, TracebackType
from typing import Any

from ._checkpoints import CheckpointStore, InMemoryCheckpointStore
from ._client import Interrupted, StreamsAPI, build_boto3_clients
from ._coordinator import THREAD_NAME_PREFIX, ShardCoordinator, ShardStatus
from ._delivery import Delivery, DeliveryPolicy, OnFailure, is_async_handler
from ._errors import ConfigurationError, EndpointUnreachableError, StreamDisabledError
from ._filters import compile_filter
from ._health import Health
from ._metrics import Metrics
from ._policies import Batching, RetryPolicy
from ._pool import Abandoned, call_unless_stopped
from ._reader import Handler, TrimmedDataGap
from ._settings import ConsumerSettings, StartPosition

logger = logging.getLogger("ddbstreams")

# How long interpreter exit waits for handler calls in progress before giving up.
EXIT_GRACE_SECONDS = 30.0


class StreamConsumer:
    """Consume a DynamoDB Stream: call ``handler`` once per record, for every shard.

    Guarantees: at-least-once delivery; per-item order (a parent shard is read to its end
    before its children); checkpoints are written only for records the handler returned
    from and never move backwards; nothing is skipped silently. If the handler raises, its
    shard waits (with growing backoff) and retries the same record while other shards go on
    — unless a ``retry`` policy says when to give up and ``on_failure`` takes the records.

    Args:
        handler: called with each :class:`Record` (with ``batching``: with a
            ``list[Record]``). Records of one shard arrive one at a time and in order;
            different shards may call it from different threads. An ``async def``
            handler runs on an event loop owned by the consumer.
        table_name: follow this table's current stream (its ``LatestStreamArn``)...
        stream_arn: ...or read this stream. Give exactly one of the two.
        checkpoint_store: where progress is kept. Default: in memory (no resume after a
            restart); use :class:`SQLiteCheckpointStore` to resume.
        start_position: ``"TRIM_HORIZON"`` or ``"LATEST"`` (any case, ``-`` for ``_``),
            where to start the first time this consumer meets the stream (its store holds
            nothing for it); overrides ``settings.start_position``.
        endpoint_url: a local or custom endpoint, such as ``http://localhost:8000``.
        region_name: the AWS region; default from the environment / AWS config.
        session: a ``boto3.Session`` to take credentials and configuration from.
        client: instead of building boto3 clients, use this object (for example a
            :class:`ddbstreams.testing.StreamSimulator`).
        settings: polling, checkpointing and recovery knobs (:class:`ConsumerSettings`).
        on_data_loss: called with a :class:`TrimmedDataGap` when
            ``settings.trimmed_data="restart_from_trim_horizon"`` lets reading go on past
            records lost to the 24 h retention.
        worker_id: this worker's name in a consumer group (with a
            :class:`DynamoDBCheckpointStore`); default: host name, process id and a random
            suffix.
        on_lease_lost: called with a shard id when another worker took its lease (this
            worker stopped reading it at once), so that per-shard state can be dropped.
        on_shard_started: called with a shard id before this worker first reads it (again
            after a lease came back).
        on_shard_ended: called with a shard id once it was read to its end and
            checkpointed finished, so that per-shard state can be flushed. The three hooks
            run on the consumer's scheduling thread: keep them quick.
        batching: a :class:`Batching`: the handler receives a ``list[Record]`` (at most
            ``max_records``, of one shard) and may return a :class:`BatchResult` naming the
            records that failed.
        retry: a :class:`RetryPolicy`: how often and how long failing records are tried,
            and whether failing batches are split in two. Default: retry forever.
        on_failure: where records go once ``retry`` gives up on them: a callable taking a
            :class:`FailedBatch` (see :mod:`ddbstreams.destinations`), or ``"discard"``
            (each is logged as an error and counted). Required when ``retry`` can give up.
        filter: Lambda's event filter patterns (a dict, a list of up to 5, or a
            ``FilterCriteria`` dict); records that do not match are checkpointed without
            a handler call.
        parallelism: per shard, how many items are handled at the same time (1 to 100):
            records are spread over this many lanes by primary key; each lane is in order,
            so one item's changes still arrive in order. The checkpoint covers only records
            done with every record before them.
        metrics: where to report metrics (iterator age, records, handler durations, AWS
            calls, checkpoints, leases...): a :class:`ddbstreams.metrics.PrometheusMetrics`,
            a :class:`ddbstreams.metrics.OpenTelemetryMetrics`, or any :class:`Metrics`.
            See docs/metrics.md for every metric.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        table_name: str | None = None,
        stream_arn: str | None = None,
        checkpoint_store: CheckpointStore | None = None,
        start_position: StartPosition | str | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        session: Any = None,
        client: Any = None,
        settings: ConsumerSettings | None = None,
        on_data_loss: Callable[[TrimmedDataGap], Any] | None = None,
        worker_id: str | None = None,
        on_lease_lost: Callable[[str], Any] | None = None,
        on_shard_started: Callable[[str], Any] | None = None,
        on_shard_ended: Callable[[str], Any] | None = None,
        batching: Batching | None = None,
        retry: RetryPolicy | None = None,
        on_failure: OnFailure = None,
        filter: object = None,
        parallelism: int = 1,
        metrics: Metrics | None = None,
    ) -> None:
        if not callable(handler):
            raise ConfigurationError(f"handler must be callable, not {handler!r}")
        policy = _delivery_policy(handler, batching, retry, on_failure, filter, parallelism)
        if (table_name is None) == (stream_arn is None):
            raise ConfigurationError("give exactly one of table_name= or stream_arn=")
        if table_name is not None and (not isinstance(table_name, str) or not table_name):
            raise ConfigurationError(f"table_name must be a non-empty string, not {table_name!r}")
        if stream_arn is not None and not _looks_like_stream_arn(stream_arn):
            raise ConfigurationError(
                f"stream_arn {stream_arn!r} is not a DynamoDB stream ARN "
                "(arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE/stream/LABEL)"
            )
        if checkpoint_store is not None and not isinstance(checkpoint_store, CheckpointStore):
            raise ConfigurationError(
                "checkpoint_store must have load, load_all and save methods (see "
                f"ddbstreams.CheckpointStore), not {checkpoint_store!r}"
            )
        if endpoint_url is not None and not endpoint_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"endpoint_url must start with http:// or https://, not {endpoint_url!r}"
            )
        if client is not None and (session is not None or endpoint_url is not None):
            raise ConfigurationError("client= replaces session= and endpoint_url=; give one")
        if on_data_loss is not None and not callable(on_data_loss):
            raise ConfigurationError(f"on_data_loss must be callable, not {on_data_loss!r}")
        if metrics is not None and not isinstance(metrics, Metrics):
            raise ConfigurationError(
                "metrics must have count, gauge, observe and forget methods (see "
                "ddbstreams.Metrics), such as ddbstreams.metrics.PrometheusMetrics(), "
                f"not {metrics!r}"
            )
        settings = settings if settings is not None else ConsumerSettings()
        if start_position is not None:
            settings = replace(settings, start_position=start_position)  # type: ignore[arg-type]

        self.handler = handler
        self.delivery_policy = policy
        self.table_name = table_name
        self.settings = settings
        self.checkpoint_store: CheckpointStore = (
            checkpoint_store if checkpoint_store is not None else InMemoryCheckpointStore()
        )
        self.on_data_loss = on_data_loss
        self.worker_id = worker_id
        self.on_lease_lost = on_lease_lost
        self.on_shard_started = on_shard_started
        self.on_shard_ended = on_shard_ended
        self.metrics = metrics
        self._stream_arn = stream_arn
        if client is not None:
            self._api = StreamsAPI(client, client, attempts=settings.request_attempts)
        else:
            streams, dynamodb = build_boto3_clients(
                session=session,
                endpoint_url=endpoint_url,
                region_name=region_name,
                max_pool_connections=settings.max_workers + 4,
            )
            self._api = StreamsAPI(streams, dynamodb, attempts=settings.request_attempts)
        self._stop_requested = threading.Event()
        self._coordinator: ShardCoordinator | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None  # raised once, by wait() or stop()
        self._failure: BaseException | None = None  # kept, for health()
        self._finished = False
        self._active = threading.Event()  # set while run() or a background run goes on
        self._done = threading.Event()
        self._lock = threading.RLock()  # re-entrant: the signal handler takes it too

    @property
    def stream_arn(self) -> str | None:
        """The stream being read (resolved from ``table_name`` once running)."""
        return self._stream_arn

    def run(self) -> None:
        """Consume until stopped. Blocks.

        In the main thread, Ctrl-C (SIGINT) and SIGTERM stop it cleanly: handler calls in
        progress finish and checkpoints are written before ``run`` returns.
        """
        if threading.current_thread() is not threading.main_thread():
            self._run()
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        # A handler runs in this thread between two bytecodes, maybe while it holds the lock
        # of an Event that stopping sets: the handler only queues (a reentrant put), and a
        # thread of its own asks for the stop.
        received: queue.SimpleQueue[int | None] = queue.SimpleQueue()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            received.put(signum)
            signal.signal(signal.SIGINT, signal.default_int_handler)

        def stop_on_signal() -> None:
            signum = received.get()
            if signum is not None:
                logger.info("signal %d received: stopping after checkpoints", signum)
                self._request_stop()

        threading.Thread(
            target=stop_on_signal, name=f"{THREAD_NAME_PREFIX}-signals", daemon=True
        ).start()
        for sig in previous:
            signal.signal(sig, on_signal)
        try:
            self._run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            received.put(None)

    def start(self) -> None:
        """Consume in a background thread; see :meth:`stop`."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("this consumer was already started")
            self._thread = threading.Thread(
                target=self._run_in_background, name=f"{THREAD_NAME_PREFIX}-consumer", daemon=True
            )
            # The thread is a daemon, so that a handler stuck forever cannot hold the
            # interpreter; at exit, it is stopped here and its final checkpoints written.
            atexit.register(self._stop_at_exit)
            self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop a consumer started with :meth:`start` and wait up to ``timeout`` seconds.

        Returns True once it has stopped (checkpoints written), False if it is still
        finishing a handler call when the timeout passes. It never waits for the network:
        a call in flight is abandoned. Called from inside the handler, it asks for the stop
        and returns False at once: the stop completes after the handler returns. If the
        background run failed, its error is raised here.
        """
        self._request_stop()
        here = threading.current_thread()
        coordinator = self._coordinator
        if here is self._thread or (coordinator is not None and coordinator.owns_thread(here)):
            return False  # from a handler or a callback: waiting here would wait for itself
        if self._thread is None and self._active.is_set():  # run() in another thread
            return self._done.wait(timeout)
        return self.wait(timeout)

    @property
    def running(self) -> bool:
        """True while a background run started by :meth:`start` is going on."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for a background run to end.

        Returns True once it has ended, False if it is still running. If it ended on an
        error (the stream disabled and drained, a trimmed checkpoint, bad credentials...),
        that error is raised here, once.
        """
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return True

    def shards(self) -> list[ShardStatus]:
        """What each known shard is doing (empty before the stream was first described)."""
        coordinator = self._coordinator
        return coordinator.shards() if coordinator is not None else []

    def health(self) -> Health:
        """Whether the consumer is making progress: for a supervisor or liveness probe.

        ``failing`` once it has stopped (an error, or :meth:`stop`), when a shard or the
        discovery of shards has failed ``settings.failures_before_unhealthy`` times in a
        row, when a shard is stuck or its handler has failed for
        ``settings.unhealthy_handler_failing_for`` seconds, when a group's heartbeats have
        failed long enough to stop reading, or when an iterator age is above
        ``settings.unhealthy_iterator_age``; ``degraded`` while something retries; else
        ``healthy``. See :class:`Health`.
        """
        coordinator = self._coordinator
        error = self._failure
        if error is not None:
            return Health("failing", (f"stopped on an error: {error}",))
        if self._finished or self._stop_requested.is_set():
            return Health("failing", ("stopped",))
        if coordinator is None:
            if self.running or self._active.is_set():  # start(), or run() in some thread
                return Health("degraded", ("starting",))
            return Health("failing", ("not started",))
        return coordinator.health()

    def __enter__(self) -> StreamConsumer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self.stop()
            return
        try:  # the error that left the block is the one to see
            self.stop()
        except Exception as stop_error:
            logger.error("while stopping after an error: %s", stop_error)

    def _run(self) -> None:
        self._active.set()
        try:
            try:
                self._consume()
            except StreamDisabledError as exc:
                if self.table_name is None:
                    raise
                raise self._disabled_advice(exc) from exc
        except BaseException as exc:
            self._failure = exc
            raise
        finally:
            self._finished = True
            self._done.set()

    def _consume(self) -> None:
        if self._stream_arn is None:
            assert self.table_name is not None
            self._stream_arn = self._resolve_patiently(self.table_name)
            if self._stream_arn is None:
                return
        coordinator = ShardCoordinator(
            stream_arn=self._stream_arn,
            client=self._api,
            handler=self.handler,
            checkpoint_store=self.checkpoint_store,
            settings=self.settings,
            on_data_loss=self.on_data_loss,
            worker_id=self.worker_id,
            on_lease_lost=self.on_lease_lost,
            on_shard_started=self.on_shard_started,
            on_shard_ended=self.on_shard_ended,
            delivery=None
            if self.delivery_policy.is_plain
            else Delivery(self.delivery_policy, self.settings.max_workers),
            metrics=self.metrics,
        )
        with self._lock:
            self._coordinator = coordinator
            if self._stop_requested.is_set():
                return
        logger.info("consuming %s", self._stream_arn)
        coordinator.run()

    def _resolve_patiently(self, table_name: str) -> str | None:
        """The table's stream ARN; an unreachable endpoint is retried for
        ``settings.startup_timeout`` seconds (it may still be starting). None if stopped."""
        wait, waited = 0.1, 0.0
        while True:
            try:
                return call_unless_stopped(  # type: ignore[no-any-return]
                    lambda: self._api.resolve_stream_arn(table_name),
                    self._stop_requested,
                    f"{THREAD_NAME_PREFIX}-start",
                )
            except EndpointUnreachableError:
                if waited >= self.settings.startup_timeout:
                    raise
                if waited == 0:
                    logger.warning(
                        "the endpoint cannot be reached; trying again for up to %gs",
                        self.settings.startup_timeout,
                    )
            except (Interrupted, Abandoned):
                return None
            if self._stop_requested.wait(wait):
                return None
            waited += wait
            wait = min(wait * 2, 1.0)

    def _disabled_advice(self, exc: StreamDisabledError) -> StreamDisabledError:
        """Say what to do about a drained, disabled stream, given the table's state now."""
        assert self.table_name is not None
        table_name = self.table_name
        try:
            current = call_unless_stopped(
                lambda: self._api.resolve_stream_arn(table_name, enabled_only=True),
                self._stop_requested,
                f"{THREAD_NAME_PREFIX}-advice",
            )
        except Exception:  # the advice is a courtesy; the error stands without it
            current = None
        if current is not None and current != self._stream_arn:
            advice = (
                f"The table {self.table_name!r} has a new stream ({current}): start the "
                "consumer again; with table_name= it reads the new stream from its start."
            )
        else:
            advice = (
                f"The table {self.table_name!r} has no enabled stream now. Enable one, for "
                f"example: aws dynamodb update-table --table-name {self.table_name} "
                "--stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES"
                ", then start the consumer again."
            )
        return StreamDisabledError(f"{exc} {advice}")

    def _run_in_background(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            logger.error("the consumer stopped on an error: %s", exc, exc_info=exc)
            self._error = exc
        finally:
            atexit.unregister(self._stop_at_exit)

    def _stop_at_exit(self) -> None:
        """At interpreter exit: stop, letting handler calls finish and checkpoints be written."""
        self._request_stop()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(EXIT_GRACE_SECONDS)
            if thread.is_alive():
                logger.error(
                    "exiting while a handler call is still in progress after %ss: the final "
                    "checkpoint was not written (its records will be delivered again)",
                    EXIT_GRACE_SECONDS,
                )

    def _request_stop(self) -> None:
        with self._lock:
            self._stop_requested.set()
            self._api.interrupt()
            if self._coordinator is not None:
                self._coordinator.stop()


def _looks_like_stream_arn(value: object) -> bool:
    return (
        isinstance(value, str)
        and value.startswith("arn:")
        and ":dynamodb:" in value
        and "/stream/" in value
    )


def _delivery_policy(
    handler: object,
    batching: object,
    retry: object,
    on_failure: object,
    filter_: object,
    parallelism: object,
) -> DeliveryPolicy:
    """Check the delivery arguments of a consumer and bundle them."""
    if batching is not None and not isinstance(batching, Batching):
        raise ConfigurationError(
            "batching must be a ddbstreams.Batching(max_records=..., max_wait=...), "
            f"not {batching!r}"
        )
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ConfigurationError(
            f"retry must be a ddbstreams.RetryPolicy(max_attempts=..., ...), not {retry!r}"
        )
    retry = retry if retry is not None else RetryPolicy()
    if on_failure is not None and on_failure != "discard" and not callable(on_failure):
        raise ConfigurationError(
            "on_failure must be a callable taking a ddbstreams.FailedBatch (such as "
            f"ddbstreams.destinations.SQSDestination(...)) or 'discard', not {on_failure!r}"
        )
    if retry.gives_up and on_failure is None:
        raise ConfigurationError(
            "retry=RetryPolicy(max_attempts=... or max_record_age=...) gives up on records, "
            "so it needs somewhere to put them: give on_failure= a destination (for example "
            "ddbstreams.destinations.JSONLinesDestination('failed.jsonl')), or "
            "on_failure='discard' to drop them (each is logged as an error)"
        )
    if on_failure is not None and not retry.gives_up:
        raise ConfigurationError(
            "on_failure is never called with the default retry policy, which retries "
            "forever: set retry=ddbstreams.RetryPolicy(max_attempts=..., max_record_age=...)"
        )
    if (
        isinstance(parallelism, bool)
        or not isinstance(parallelism, int)
        or not (1 <= parallelism <= 100)
    ):
        raise ConfigurationError(
            f"parallelism must be a whole number from 1 to 100, not {parallelism!r}"
        )
    matches = compile_filter(filter_) if filter_ is not None else None
    if retry.bisect_on_error and batching is None:
        raise ConfigurationError(
            "retry=RetryPolicy(bisect_on_error=True) splits batches: it needs batching="
        )
    return DeliveryPolicy(
        batching=batching,
        retry=retry,
        on_failure=on_failure,
        matches=matches,
        parallelism=parallelism,
        is_async=is_async_handler(handler),
    )
