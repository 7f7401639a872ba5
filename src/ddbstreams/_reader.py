"""One shard: its iterator, its fetches, its handler calls, its checkpoints, its end.

A ``ShardReader`` is a state machine advanced by ``step()``; the coordinator runs at most
one step of a shard at a time, so a shard's records reach the handler one by one, in order.
Steps never sleep: they return how long to wait before the next one.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ._checkpoints import Checkpoint, CheckpointStore
from ._client import Interrupted, StreamsAPI
from ._delivery import Delivery, ShardDelivery, check_record_result
from ._errors import (
    CheckpointStoreError,
    EndpointUnreachableError,
    ExpiredIteratorError,
    MalformedResponseError,
    ServerError,
    StreamNotFoundError,
    ThrottledError,
    TransientError,
    TrimmedDataError,
)
from ._leases import LeaseLostError
from ._lineage import ShardInfo
from ._metrics import Reporter, ShardReport
from ._pages import RecordsPage
from ._records import Record
from ._settings import ConsumerSettings

logger = logging.getLogger("ddbstreams")

EMPTY_PAGES_BEFORE_IDLE_BACKOFF = 4
RETENTION_SECONDS = 86400.0

Handler = Callable[[Record], Any]

# Where a shard with no checkpoint starts: the oldest retained record, only new records, or
# the shard's first record (a shard this consumer owes from its start, such as a child).
StartFrom = Literal["TRIM_HORIZON", "LATEST", "SHARD_START"]
FailureKind = Literal[
    "handler", "destination", "throttled", "server", "malformed", "unreachable", "store"
]


@dataclass(frozen=True)
class TrimmedDataGap:
    """Records that may have been lost to the 24 h retention, reported when
    ``trimmed_data="restart_from_trim_horizon"`` lets reading go on.

    Records of shard ``shard_id`` after ``after_sequence_number`` (the last one delivered,
    or ``None``: from the shard's start) up to the oldest record still retained may have
    been trimmed unread. ``reason`` says how this was found; the service does not say
    whether any record was actually there, so this is a *possible* gap.
    """

    stream_arn: str
    shard_id: str
    after_sequence_number: str | None
    reason: str = ""


class ShardReader:
    """Reads one shard from its checkpoint (or start position) to its end."""

    def __init__(
        self,
        *,
        shard: ShardInfo,
        stream_arn: str,
        api: StreamsAPI,
        handler: Handler,
        store: CheckpointStore,
        settings: ConsumerSettings,
        checkpoint: Checkpoint | None,
        start_position: StartFrom,
        on_data_loss: Callable[[TrimmedDataGap], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        random_fraction: Callable[[], float] = random.random,
        fence: Callable[[], float] | None = None,
        latest_pin: float | None = None,
        lease_epoch: int | None = None,
        delivery: Delivery | None = None,
        metrics: Reporter | None = None,
    ) -> None:
        self.shard = shard
        self.stream_arn = stream_arn
        self._api = api
        self._handler = handler
        self._store = store
        self._settings = settings
        self._on_data_loss = on_data_loss
        self._clock = clock
        self._wall_clock = wall_clock
        self._random_fraction = random_fraction
        # In a consumer group: until when (self._clock) this worker may deliver this shard.
        self.fence = fence
        self.lease_epoch = lease_epoch  # the epoch of the group lease it reads under
        self._start: StartFrom = start_position

        self.delivered: str | None = checkpoint.sequence_number if checkpoint else None
        self.finished = bool(checkpoint and checkpoint.finished)
        # A stored checkpoint (even one without a sequence number) says reading has begun.
        self.begun = checkpoint is not None
        self._latest_at = checkpoint.latest_at if checkpoint else latest_pin
        self._begun_at = checkpoint.begun_at if checkpoint else None
        self.skipped = False
        self.revoked = False  # its lease was lost: nothing more may be saved
        self.announced = False  # on_shard_started was called for it
        self.records_delivered = 0
        self.failures = 0  # consecutive failures of the kind below
        self.failure_kind: FailureKind | None = None
        self.last_error: str | None = None
        self._empty_pages = 0
        self._checkpointed = self.delivered
        self._since_checkpoint = 0
        self._unsaved = 0  # records delivered since the last checkpoint that was saved
        self._last_checkpoint_at = clock()
        self._store_retry_at = -float("inf")
        self._iterator: str | None = None
        self._page: RecordsPage | None = None  # the page in hand...
        self._held: dict[str, Any] | None = None  # ...and its first record not yet handled
        self._skip_created_before: float | None = None
        self._end_reached = False
        # Running totals for metrics and health, kept per page or per event, never per record.
        self.bytes_delivered = 0
        self.empty_pages = 0
        self.malformed_pages = 0
        self.handler_failures = 0
        self.destination_failures = 0
        self.retries = 0
        self.checkpoint_writes = 0
        self.checkpoint_failures = 0
        self._store_seconds = 0.0  # time spent saving checkpoints (not the handler's)
        # Creation times (UNIX seconds) of the newest record done and of the oldest fetched
        # and not done; whether the last page was empty with nothing in hand (caught up).
        self.newest_created: float | None = None
        self.waiting_created: float | None = None
        self.caught_up = False
        self.progress_at = clock()  # when records were last done, or began to wait
        self.failing_since: float | None = None  # the handler's first failure since a success
        self._report = ShardReport(metrics, shard.shard_id) if metrics is not None else None
        # With delivery policies, fetched records wait in a queue of their own; reading
        # resumes after the last record queued, not the last one done.
        self._policies: ShardDelivery | None = None
        self._read_to: str | None = None
        if delivery is not None:
            self._policies = ShardDelivery(
                delivery,
                handler,
                stream_arn=stream_arn,
                shard_id=shard.shard_id,
                on_failed=self._failed,
                clock=clock,
                wall_clock=wall_clock,
                random_fraction=random_fraction,
                keep_durations=metrics is not None,
            )
        # Held while the handler runs and while a checkpoint is written, so that a final
        # checkpoint taken from another thread sees a consistent position.
        self._lock = threading.Lock()

    @property
    def shard_id(self) -> str:
        return self.shard.shard_id

    @property
    def _has_pending(self) -> bool:
        return self._held is not None or bool(self._policies and self._policies.pending)

    @property
    def checkpointed_sequence_number(self) -> str | None:
        """The last sequence number saved in the store."""
        return self._checkpointed

    def policy_counts(self) -> dict[str, int]:
        """Records the delivery policies filtered out, failed over and discarded."""
        policies = self._policies
        if policies is None:
            return {}
        return {
            "records_filtered": policies.filtered,
            "records_failed_over": policies.failed_over,
            "records_discarded": policies.discarded,
        }

    def skip(self) -> bool:
        """Treat this shard as done without reading it (a closed shard under LATEST), and
        store that, so that a restart does not read it either (before its children).
        False if the store failed: the shard is not finished until it succeeds."""
        self.skipped = True
        try:
            self._save(Checkpoint(None, finished=True))
        except LeaseLostError:
            raise
        except CheckpointStoreError as exc:
            self._failed("store", exc, "could not store the shard as skipped")
            return False
        self.finished = self.begun = True
        return True

    def step(self, stop: threading.Event) -> float:
        """Fetch a page if needed and hand its records to the handler.

        Returns the seconds to wait before the next step: 0 while records flow, the poll
        interval after an empty page, a growing backoff after failures.
        """
        try:
            return self._step(stop)
        finally:
            if self._report is not None:
                self.report()

    def report(self) -> None:
        """Hand the counts since the last report to the metrics (once per step)."""
        report = self._report
        if report is None:
            return
        totals = {
            "records_handled": self.records_delivered,
            "bytes_delivered": self.bytes_delivered,
            "handler_failures": self.handler_failures,
            "retries": self.retries,
            "destination_failures": self.destination_failures,
            "empty_pages": self.empty_pages,
            "checkpoint_writes": self.checkpoint_writes,
            "checkpoint_failures": self.checkpoint_failures,
            "records_sent_to_destination": 0,
            "records_discarded": 0,
            "records_filtered": 0,
        }
        policies = self._policies
        if policies is not None:
            done_otherwise = policies.filtered + policies.failed_over + policies.discarded
            totals["records_handled"] -= done_otherwise
            totals["retries"] += policies.retries
            totals["records_sent_to_destination"] = policies.failed_over
            totals["records_discarded"] = policies.discarded
            totals["records_filtered"] = policies.filtered
            report.durations.extend(policies.take_durations())
        report.flush(totals, self.malformed_pages)

    def ages(self, now: float) -> tuple[float, float]:
        """Iterator age and oldest waiting record's age at ``now`` (wall clock), seconds."""
        waiting = self.waiting_created
        newest = self.newest_created
        if self.finished or (self.caught_up and waiting is None) or newest is None:
            iterator_age = 0.0
        else:
            iterator_age = max(0.0, now - newest)
        return iterator_age, (max(0.0, now - waiting) if waiting is not None else 0.0)

    def _step(self, stop: threading.Event) -> float:
        if stop.is_set():
            return 0.0
        try:
            if self.skipped:  # its marker could not be stored when it was skipped
                return 0.0 if self.skip() else self._backoff()
            # Too far past the last saved checkpoint: deliver nothing until it is saved.
            too_far = self._unsaved >= self._settings.max_records_without_checkpoint
            if too_far and not self._save_progress():
                return self._backoff()
            if self._policies is not None:
                return self._step_with_policies(self._policies, stop)
            page_had_records = False
            if not self._has_pending and not self._end_reached:
                page_had_records = self._fetch()
            if not self._deliver(stop):
                return self._backoff()
            if self._end_reached and not self._has_pending:
                if stop.is_set() or not self._finish():
                    return 0.0 if stop.is_set() else self._backoff()
                return 0.0
            if self._since_checkpoint and (
                self._clock() - self._last_checkpoint_at >= self._settings.checkpoint_interval
            ):
                self._save_progress()
            if self.failure_kind != "store" or self._unsaved == 0:
                self._succeeded()
            if page_had_records or self._has_pending:
                self._empty_pages = 0
                return 0.0
            return self._idle_wait()
        except Interrupted:
            return 0.0
        except ExpiredIteratorError:
            logger.info("shard %s: iterator expired; taking a new one", self.shard_id)
            self._drop_page()
            return 0.0
        except TransientError as exc:
            if isinstance(exc, MalformedResponseError):
                # The page is dropped; a new iterator resumes after the last delivered record.
                self._drop_page()
                if not isinstance(exc.__cause__, UnicodeDecodeError):  # else counted per call
                    self.malformed_pages += 1
            self._failed(_kind_of(exc), exc)
            return self._backoff()
        except LeaseLostError:
            self.revoked = True  # another worker reads it now; the coordinator lets go
            return 0.0
        except CheckpointStoreError as exc:
            self._failed("store", exc)
            return self._backoff()

    def checkpoint(self) -> None:
        """Save the last delivered record as this shard's checkpoint, if it moved.

        Waits for a handler call in progress. Raises :class:`CheckpointStoreError`.
        """
        with self._lock:
            if self._policies is not None:
                self._policies.drain()
                self._take_done(self._policies)
            self._save_checkpoint()

    @property
    def busy(self) -> bool:
        """True while a delivery-policy lane is in a handler call (past the last step)."""
        return self._policies is not None and self._policies.in_flight

    def settle(self) -> float:
        """Wait for the delivery policies' handler calls in flight and take their outcome
        (before a handover or a shutdown, off the scheduling thread); returns 0."""
        with self._lock:
            if self._policies is not None:
                self._policies.drain()
                self._take_done(self._policies)
        return 0.0

    def _save_checkpoint(self) -> None:
        if self.delivered != self._checkpointed:
            self._save(Checkpoint(self.delivered))
            self._checkpointed = self.delivered
            self.begun = True
        self._since_checkpoint = 0
        self._unsaved = 0
        self._last_checkpoint_at = self._clock()

    def _save(self, checkpoint: Checkpoint) -> None:
        """Save to the store, counting writes, failures and the time it took."""
        started = self._clock()
        try:
            self._store.save(self.stream_arn, self.shard_id, checkpoint)
        except LeaseLostError:
            raise
        except CheckpointStoreError:
            self.checkpoint_failures += 1
            raise
        finally:
            self._store_seconds += self._clock() - started
        self.checkpoint_writes += 1

    def _save_progress(self) -> bool:
        """Checkpoint unless the store is failing and its retry is not due; False if not saved."""
        if self._clock() < self._store_retry_at:
            return False
        try:
            self._save_checkpoint()
        except LeaseLostError:
            raise
        except CheckpointStoreError as exc:
            self._failed("store", exc)
            self._store_retry_at = self._clock() + self._backoff()
            self._since_checkpoint = 0
            return False
        return True

    def _drop_page(self) -> None:
        self._page, self._held, self._iterator = None, None, None

    def _fetch(self) -> bool:
        if self._iterator is None:
            try:
                self._iterator = self._acquire_iterator()
            except StreamNotFoundError as exc:
                self._shard_gone(exc)
                return False
        try:
            page = self._api.get_records(self.shard_id, self._iterator, self._settings.batch_size)
        except TrimmedDataError as exc:
            self._iterator = None
            self._on_trimmed(exc, self.delivered)
            return False
        except StreamNotFoundError as exc:
            self._iterator = None
            self._shard_gone(exc)
            return False
        self._page = page
        self._held = next(page.records, None)
        if self._held is None:
            self.empty_pages += 1
        elif self._skip_created_before is not None:
            self._skip_before_pin()
        if self._held is None:
            self.caught_up = not self._has_pending
            self._page_read()
            return False
        self.caught_up = False
        if self.waiting_created is None:
            self.waiting_created = _created_at(self._held)
            self.progress_at = self._clock()  # records wait from now
        return True

    def _skip_before_pin(self) -> None:
        """Resuming a LATEST start: pass over the records written before it was pinned."""
        assert self._page is not None and self._skip_created_before is not None
        skipped = 0
        while self._held is not None:
            created = _created_at(self._held)
            if created is None or created >= self._skip_created_before:
                self._skip_created_before = None
                break
            skipped += 1
            self._held = next(self._page.records, None)
        if skipped:
            logger.debug("shard %s: %d records older than the LATEST pin", self.shard_id, skipped)

    def _page_read(self) -> None:
        """Every record of the page in hand was handled: go on where it says."""
        assert self._page is not None
        self._iterator = self._page.next_iterator
        self._end_reached = self._iterator is None
        self.bytes_delivered += self._page.size
        self._page = None

    def _acquire_iterator(self) -> str:
        after = self._read_to if self._read_to is not None else self.delivered
        if after is not None:
            try:
                return self._iterator_of("AFTER_SEQUENCE_NUMBER", after)
            except TrimmedDataError as exc:
                self._on_trimmed(exc, after)
        self._check_begun_within_retention()
        if self._start == "LATEST" and not self.begun:
            # Pinned when the consumer met the stream: never a LATEST iterator, which would
            # skip what was written between that moment and this first step.
            pin = self._latest_at if self._latest_at is not None else self._wall_clock()
            self._save(Checkpoint(None, latest_at=pin, begun_at=pin))
            self._latest_at, self._begun_at, self.begun = pin, pin, True
        if self._latest_at is not None:
            # Creation times are rounded down to the second: so is the pin.
            self._skip_created_before = math.floor(self._latest_at)
            return self._iterator_of("TRIM_HORIZON")
        if not self.begun:
            self._mark_begun()
        start = self.shard.starting_sequence_number
        if self._start == "SHARD_START" and start is not None:
            try:
                return self._iterator_of("AT_SEQUENCE_NUMBER", start)
            except TrimmedDataError as exc:
                self._on_trimmed(exc, None)
        return self._iterator_of("TRIM_HORIZON")

    def _check_begun_within_retention(self) -> None:
        """A shard that has delivered nothing in the 24 hours since it began may have lost
        records to the retention: the service cannot say so for a start without a position."""
        # When its position was set: a seek may pin a start older than that (docs/checkpoints.md).
        began = self._begun_at if self._begun_at is not None else self._latest_at
        if not self.begun or began is None or self._wall_clock() - RETENTION_SECONDS <= began:
            return
        reason = (
            f"shard {self.shard_id} began more than 24 hours ago and none of its records was "
            "delivered since, so its records from then that passed the retention may have "
            "been lost"
        )
        self._report_gap(reason, None, None)
        self._latest_at, self._begun_at = None, self._wall_clock()
        self._start = "TRIM_HORIZON"

    def _iterator_of(self, iterator_type: str, sequence_number: str | None = None) -> str:
        return self._api.get_shard_iterator(
            self.stream_arn, self.shard_id, iterator_type, sequence_number
        )

    def _mark_begun(self) -> None:
        """Store that this shard's reading has begun, and when (lineage prunes only then)."""
        began = self._wall_clock()
        try:
            self._save(Checkpoint(None, begun_at=began))
            self.begun, self._begun_at = True, began
        except LeaseLostError:
            raise
        except CheckpointStoreError as exc:  # the first checkpoint will say it instead
            logger.warning("shard %s: could not mark it begun: %s", self.shard_id, exc)

    def _shard_gone(self, exc: StreamNotFoundError) -> None:
        """ResourceNotFound for this shard: is it removed (24 h after it closed), or the
        whole stream deleted, or a passing error for a shard still listed?"""
        listed = {shard.shard_id for shard in self._api.describe_stream(self.stream_arn).shards}
        if self.shard_id in listed:
            raise ServerError(f"{exc} (yet DescribeStream still lists the shard)") from exc
        reason = (
            f"shard {self.shard_id} was removed from the stream (24 hours after it closed) "
            + (f"after record {self.delivered}" if self.delivered else "before its first record")
            + " was read, so its records after that may have been lost"
        )
        self._report_gap(reason, self.delivered, exc)
        self._end_reached = True  # nothing of it is left to read: its children may start

    def _on_trimmed(self, exc: TrimmedDataError, after: str | None) -> None:
        if after is None and self._start != "SHARD_START":
            # Reading from the oldest record: trimming only moved where that is.
            return
        if after is None:
            reason = (
                f"the first records of shard {self.shard_id} are older than the 24-hour "
                "retention and were not read, so records may have been lost"
            )
        else:
            reason = (
                f"record {after} of shard {self.shard_id}, where reading resumes, is older "
                "than the 24-hour retention, so records after it may have been trimmed "
                "before they were read"
            )
        self._report_gap(reason, after, exc)
        self.delivered = self._latest_at = self._read_to = None
        self._start = "TRIM_HORIZON"

    def _report_gap(self, reason: str, after: str | None, exc: Exception | None) -> None:
        """Raise, or report and go on, as ``settings.trimmed_data`` says."""
        if self._settings.trimmed_data == "raise":
            raise TrimmedDataError(
                f"{self.stream_arn}: {reason}. To go on from the oldest record still retained "
                "and have the possible gap reported, set trimmed_data='restart_from_trim_horizon'.",
                shard_id=self.shard_id,
                after_sequence_number=after,
            ) from exc
        logger.error("%s; going on from the oldest record still retained", reason)
        if self._on_data_loss is not None:
            self._on_data_loss(TrimmedDataGap(self.stream_arn, self.shard_id, after, reason))

    def _deliver(self, stop: threading.Event) -> bool:
        """Hand the page's records to the handler; False if it raised (the record is held)."""
        if self._held is None:
            return True
        with self._lock:
            return self._deliver_held(stop)

    def _deliver_held(self, stop: threading.Event) -> bool:
        raw = self._held
        assert self._page is not None
        # The per-record loop is the hot path: locals only, bookkeeping once at the end.
        records, handler, shard_id = self._page.records, self._handler, self.shard_id
        every, interval = self._settings.checkpoint_every, self._settings.checkpoint_interval
        most_unsaved = self._settings.max_records_without_checkpoint
        clock, stopping = self._clock, self._stopping(stop)
        due_at = max(self._last_checkpoint_at + interval, self._store_retry_at)
        since, unsaved = self._since_checkpoint, self._unsaved
        handled = failed = 0
        last: dict[str, Any] | None = None
        started, store_seconds = clock(), self._store_seconds
        try:
            while raw is not None and not stopping():
                try:
                    result = handler(Record(raw, shard_id))
                    if result is not None:
                        check_record_result(handler, raw, result)
                except Exception as exc:
                    failed = 1
                    self._handler_failed(raw, exc)
                    return False
                last = raw
                handled += 1
                since += 1
                unsaved += 1
                if since >= every or clock() >= due_at:
                    self.delivered = raw["dynamodb"]["SequenceNumber"]
                    self.progress_at = clock()
                    if self._save_progress():
                        unsaved = 0
                    since = 0
                    due_at = max(self._last_checkpoint_at + interval, self._store_retry_at)
                raw = next(records, None)
                if unsaved >= most_unsaved:
                    break
        finally:
            self._held = raw
            if last is not None:
                self.delivered = last["dynamodb"]["SequenceNumber"]
                self.records_delivered += handled
                self.newest_created = _created_at(last)
                self.waiting_created = _created_at(raw) if raw is not None else None
                self.progress_at = clock()
            self._since_checkpoint, self._unsaved = since, unsaved
            if self._report is not None and handled + failed:
                # One observation per step: the mean per call, checkpoint writes left out.
                spent = clock() - started - (self._store_seconds - store_seconds)
                self._report.durations.append(max(spent, 0.0) / (handled + failed))
        if raw is None:
            self._page_read()
        return True

    def _stopping(self, stop: threading.Event) -> Callable[[], bool]:
        """Whether to stop delivering: asked to, or past the group lease's fence."""
        fence, clock = self.fence, self._clock
        if fence is None:
            return stop.is_set
        return lambda: stop.is_set() or clock() >= fence()

    def _step_with_policies(self, policies: ShardDelivery, stop: threading.Event) -> float:
        """A step under delivery policies: fetch while the queue has room, let the lanes
        work, move the checkpoint over the records done at the head of the shard."""
        page_had_records = False
        if not self._end_reached and policies.has_room:
            page_had_records = self._fetch()
            self._queue_page(policies)
        with self._lock:
            due_in, failed = policies.run(
                self._stopping(stop), self._end_reached, block=self._settings.poll_interval
            )
            self._take_done(policies)
        self.waiting_created = policies.oldest_created()
        if self._end_reached and not policies.pending:
            if stop.is_set() or not self._finish():
                return 0.0 if stop.is_set() else self._backoff()
            return 0.0
        settings = self._settings
        if self._since_checkpoint and (
            self._since_checkpoint >= settings.checkpoint_every
            or self._clock() - self._last_checkpoint_at >= settings.checkpoint_interval
        ):
            self._save_progress()
        if (
            not failed
            and not policies.failing
            and (self.failure_kind != "store" or self._unsaved == 0)
        ):
            self._succeeded()
        if page_had_records:
            self._empty_pages = 0
            return 0.0 if policies.has_room else due_in
        if self._end_reached or not policies.has_room:
            return due_in
        return min(due_in, self._idle_wait())

    def _take_done(self, policies: ShardDelivery) -> None:
        """Move past the records done at the head of the shard."""
        done, last = policies.take_done()
        if last is not None:
            self.delivered = last["dynamodb"]["SequenceNumber"]
            self.records_delivered += done
            self.newest_created = _created_at(last)
            self.progress_at = self._clock()
            self._since_checkpoint += done
            self._unsaved += done

    def _queue_page(self, policies: ShardDelivery) -> None:
        """Move the page's records to the policies' queue (those decoded before a
        malformed part of the body too)."""
        if self._page is None:
            return
        raws: list[dict[str, Any]] = []
        try:
            while self._held is not None:
                raws.append(self._held)
                self._held = next(self._page.records, None)
        finally:
            if raws:
                if not policies.pending:
                    self.progress_at = self._clock()  # records wait from now
                policies.add(raws)
                self._read_to = raws[-1]["dynamodb"]["SequenceNumber"]
        self._page_read()

    def _handler_failed(self, raw: dict[str, Any], exc: Exception) -> None:
        sequence_number = raw.get("dynamodb", {}).get("SequenceNumber")
        self.retries += 1  # a record handler's record is retried until it succeeds
        self._failed("handler", exc, f"the handler raised on record {sequence_number}")

    def _failed(self, kind: FailureKind, exc: BaseException, what: str = "") -> None:
        """Count a failure; log it, as an error with its traceback once it keeps happening."""
        self.failures = self.failures + 1 if kind == self.failure_kind else 1
        self.failure_kind = kind
        if kind == "handler" or kind == "destination":
            if kind == "handler":
                self.handler_failures += 1
            else:
                self.destination_failures += 1
            if self.failing_since is None:
                self.failing_since = self._clock()
        self.last_error = f"{what}: {exc}" if what else str(exc)
        threshold = self._settings.failures_before_unhealthy
        escalated = self.failures % threshold == 0
        level = logging.ERROR if escalated else logging.WARNING
        logger.log(
            level,
            "shard %s: %s (%s failure %d in a row%s); retrying",
            self.shard_id,
            self.last_error,
            kind,
            self.failures,
            ": the shard is failing" if escalated else "",
            exc_info=exc if (escalated or self.failures == 1) else None,
        )

    def _succeeded(self) -> None:
        if self.failure_kind is not None:
            logger.info(
                "shard %s: going on after %d %s failure(s)",
                self.shard_id,
                self.failures,
                self.failure_kind,
            )
        self.failures, self.failure_kind, self.last_error = 0, None, None
        self.failing_since = None

    def _finish(self) -> bool:
        """Store that the shard was read to its end; False if the store failed."""
        with self._lock:
            try:
                self._save(Checkpoint(self.delivered, finished=True))
            except LeaseLostError:
                raise
            except CheckpointStoreError as exc:
                self._failed("store", exc)
                return False
            self._checkpointed = self.delivered
            self._since_checkpoint = self._unsaved = 0
        self.finished = self.begun = True
        self._succeeded()
        logger.info(
            "shard %s: read to its end (%d records this run)", self.shard_id, self.records_delivered
        )
        return True

    def _idle_wait(self) -> float:
        """poll_interval, doubling once the shard has been idle a while, up to the cap."""
        settings = self._settings
        self._empty_pages += 1
        return _doubled(
            settings.poll_interval,
            self._empty_pages - EMPTY_PAGES_BEFORE_IDLE_BACKOFF,
            max(settings.poll_interval, settings.idle_poll_interval_max),
        )

    def _backoff(self) -> float:
        settings = self._settings
        ceiling = _doubled(
            settings.handler_retry_initial, self.failures - 1, settings.handler_retry_max
        )
        return ceiling * (0.5 + self._random_fraction() / 2)


def _kind_of(exc: TransientError) -> FailureKind:
    if isinstance(exc, MalformedResponseError):
        return "malformed"
    if isinstance(exc, ThrottledError):
        return "throttled"
    if isinstance(exc, EndpointUnreachableError):
        return "unreachable"
    return "server"


def _created_at(raw: dict[str, Any]) -> float | None:
    """A wire record's ApproximateCreationDateTime as UNIX seconds (botocore gives datetime)."""
    value = raw.get("dynamodb", {}).get("ApproximateCreationDateTime")
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _doubled(base: float, times: int, cap: float) -> float:
    """``base`` doubled ``times`` times (none if negative), at most ``cap``."""
    return min(base * 2.0 ** min(max(times, 0), 30), cap)
