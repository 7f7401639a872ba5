"""One shard: its iterator, its fetches, its handler calls, its checkpoints, its end.

A ``ShardReader`` is a state machine advanced by ``step()``; the coordinator runs at most
one step of a shard at a time, so a shard's records reach the handler one by one, in order.
Steps never sleep: they return how long to wait before the next one.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._checkpoints import Checkpoint, CheckpointStore
from ._client import StreamsAPI
from ._errors import (
    ExpiredIteratorError,
    MalformedResponseError,
    TransientError,
    TrimmedDataError,
)
from ._lineage import ShardInfo
from ._pages import RecordsPage
from ._records import Record
from ._settings import ConsumerSettings

logger = logging.getLogger("ddbstreams")

EMPTY_PAGES_BEFORE_IDLE_BACKOFF = 4

Handler = Callable[[Record], Any]


@dataclass(frozen=True)
class TrimmedDataGap:
    """Records lost to the 24 h retention, reported when ``trimmed_data`` allows going on.

    Every record of shard ``shard_id`` after ``after_sequence_number`` (the last one
    delivered) up to the oldest record still retained was trimmed unread.
    """

    stream_arn: str
    shard_id: str
    after_sequence_number: str | None


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
        start_position: str,
        on_data_loss: Callable[[TrimmedDataGap], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self.shard = shard
        self.stream_arn = stream_arn
        self._api = api
        self._handler = handler
        self._store = store
        self._settings = settings
        self._on_data_loss = on_data_loss
        self._clock = clock
        self._random_fraction = random_fraction
        self._start_position = start_position

        self.delivered: str | None = checkpoint.sequence_number if checkpoint else None
        self.finished = bool(checkpoint and checkpoint.finished)
        self.skipped = False
        self.records_delivered = 0
        self.failures = 0
        self._empty_pages = 0
        self._checkpointed = self.delivered
        self._since_checkpoint = 0
        self._last_checkpoint_at = clock()
        self._iterator: str | None = None
        self._page: RecordsPage | None = None  # the page in hand...
        self._held: dict[str, Any] | None = None  # ...and its first record not yet handled
        self._end_reached = False

    @property
    def shard_id(self) -> str:
        return self.shard.shard_id

    @property
    def _has_pending(self) -> bool:
        return self._held is not None

    def skip(self) -> None:
        """Treat this shard as done without reading it (a closed shard under LATEST)."""
        self.skipped = True
        self.finished = True

    def step(self, stop: threading.Event) -> float:
        """Fetch a page if needed and hand its records to the handler.

        Returns the seconds to wait before the next step: 0 while records flow, the poll
        interval after an empty page, a growing backoff after failures.
        """
        try:
            page_had_records = False
            if not self._has_pending and not self._end_reached:
                page_had_records = self._fetch()
            if not self._deliver(stop):
                return self._backoff()
            if self._end_reached and not self._has_pending:
                self._finish()
                return 0.0
            self.failures = 0
            if self._since_checkpoint and (
                self._clock() - self._last_checkpoint_at >= self._settings.checkpoint_interval
            ):
                self.checkpoint()
            if page_had_records or self._has_pending:
                self._empty_pages = 0
                return 0.0
            return self._idle_wait()
        except ExpiredIteratorError:
            logger.info("shard %s: iterator expired; taking a new one", self.shard_id)
            self._iterator = None
            return 0.0
        except TransientError as exc:
            if isinstance(exc, MalformedResponseError):
                # The page is dropped; a new iterator resumes after the last delivered record.
                self._page, self._held, self._iterator = None, None, None
            self.failures += 1
            delay = self._backoff()
            logger.warning("shard %s: %s; retrying in %.2fs", self.shard_id, exc, delay)
            return delay

    def checkpoint(self) -> None:
        """Save the last delivered record as this shard's checkpoint, if it moved."""
        if self.delivered != self._checkpointed:
            self._store.save(self.stream_arn, self.shard_id, Checkpoint(self.delivered))
            self._checkpointed = self.delivered
        self._since_checkpoint = 0
        self._last_checkpoint_at = self._clock()

    def _fetch(self) -> bool:
        if self._iterator is None:
            self._iterator = self._acquire_iterator()
        try:
            page = self._api.get_records(self.shard_id, self._iterator, self._settings.batch_size)
        except TrimmedDataError as exc:
            self._iterator = None
            self._on_trimmed(exc)
            return False
        self._page = page
        self._held = next(page.records, None)
        if self._held is None:
            self._page_read()
            return False
        return True

    def _page_read(self) -> None:
        """Every record of the page in hand was handled: go on where it says."""
        assert self._page is not None
        self._iterator = self._page.next_iterator
        self._end_reached = self._iterator is None
        self._page = None

    def _acquire_iterator(self) -> str:
        if self.delivered is not None:
            try:
                return self._api.get_shard_iterator(
                    self.stream_arn, self.shard_id, "AFTER_SEQUENCE_NUMBER", self.delivered
                )
            except TrimmedDataError as exc:
                self._on_trimmed(exc)
        return self._api.get_shard_iterator(
            self.stream_arn, self.shard_id, self._start_position, None
        )

    def _on_trimmed(self, exc: TrimmedDataError) -> None:
        if self.delivered is None:
            # Reading from the oldest record: trimming only moved where that is.
            self._start_position = "TRIM_HORIZON"
            return
        if self._settings.trimmed_data == "raise":
            raise TrimmedDataError(
                f"shard {self.shard_id} of {self.stream_arn}: the records after sequence "
                f"number {self.delivered} were trimmed by the 24-hour retention before they "
                "were read, so they are lost. To go on from the oldest record still retained "
                "and have the gap reported, set trimmed_data='restart_from_trim_horizon'.",
                shard_id=self.shard_id,
                after_sequence_number=self.delivered,
            ) from exc
        gap = TrimmedDataGap(self.stream_arn, self.shard_id, self.delivered)
        logger.error(
            "shard %s: records after sequence number %s were trimmed unread (24 h retention); "
            "going on from the oldest record still retained",
            self.shard_id,
            self.delivered,
        )
        if self._on_data_loss is not None:
            self._on_data_loss(gap)
        self.delivered = None
        self._start_position = "TRIM_HORIZON"

    def _deliver(self, stop: threading.Event) -> bool:
        """Hand the page's records to the handler; False if it raised (the record is held)."""
        raw = self._held
        if raw is None:
            return True
        assert self._page is not None
        # The per-record loop is the hot path: locals only, bookkeeping once at the end.
        records, handler, shard_id = self._page.records, self._handler, self.shard_id
        every, interval = self._settings.checkpoint_every, self._settings.checkpoint_interval
        clock, stopping = self._clock, stop.is_set
        due_at = self._last_checkpoint_at + interval
        since = self._since_checkpoint
        handled = 0
        last: dict[str, Any] | None = None
        try:
            while raw is not None and not stopping():
                try:
                    handler(Record(raw, shard_id))
                except Exception:
                    self._handler_failed(raw)
                    return False
                last = raw
                handled += 1
                since += 1
                if since >= every or clock() >= due_at:
                    self.delivered = raw["dynamodb"]["SequenceNumber"]
                    self.checkpoint()
                    since = 0
                    due_at = self._last_checkpoint_at + interval
                raw = next(records, None)
        finally:
            self._held = raw
            if last is not None:
                self.delivered = last["dynamodb"]["SequenceNumber"]
                self.records_delivered += handled
            self._since_checkpoint = since
        if raw is None:
            self._page_read()
        return True

    def _handler_failed(self, raw: dict[str, Any]) -> None:
        self.failures += 1
        logger.exception(
            "shard %s: the handler raised on record %s (failure %d); the shard waits "
            "and retries this record",
            self.shard_id,
            raw.get("dynamodb", {}).get("SequenceNumber"),
            self.failures,
        )

    def _finish(self) -> None:
        self._store.save(self.stream_arn, self.shard_id, Checkpoint(self.delivered, finished=True))
        self._checkpointed = self.delivered
        self.finished = True
        logger.info(
            "shard %s: read to its end (%d records this run)", self.shard_id, self.records_delivered
        )

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


def _doubled(base: float, times: int, cap: float) -> float:
    """``base`` doubled ``times`` times (none if negative), at most ``cap``."""
    return min(base * 2.0 ** min(max(times, 0), 30), cap)
