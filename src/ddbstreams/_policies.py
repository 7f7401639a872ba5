"""Delivery policies a user sets: batching, retries, and what a failed batch carries."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from ._records import Record


@dataclass(frozen=True)
class Batching:
    """Hand the handler a ``list[Record]`` instead of one record at a time.

    Attributes:
        max_records: the most records in one batch (1 to 10,000). Batches fill across
            ``GetRecords`` pages and never span two shards.
        max_wait: seconds to wait, from a batch's first record, for it to fill before it is
            handed over anyway (like Lambda's ``MaximumBatchingWindowInSeconds``). With 0,
            the default, a batch holds what is at hand when the handler is free. A shard's
            end always hands over what is left.
    """

    max_records: int = 100
    max_wait: float = 0.0

    def __post_init__(self) -> None:
        _check_int("Batching.max_records", self.max_records, 1, 10_000)
        _check_seconds("Batching.max_wait", self.max_wait, upper=900.0)


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and for how long, records that make the handler fail are tried.

    Attributes:
        max_attempts: handler calls a record gets before it goes to ``on_failure``
            (first call included: Lambda's ``MaximumRetryAttempts`` + 1). ``None``, the
            default, retries forever: the shard waits for the record.
        max_record_age: seconds; a record whose ``approximate_creation_time`` is older than
            this goes to ``on_failure`` without a handler call. ``None``: no limit.
        bisect_on_error: split a failing batch in two and try each half, down to the single
            failing record, so that one poison record does not take its batch with it.
            Calls made while splitting do not count towards ``max_attempts``.
        initial_backoff: the first wait, in seconds, before a failed call is tried again;
            it doubles on each failure, up to ``max_backoff``.
        max_backoff: the longest wait between two attempts.
    """

    max_attempts: int | None = None
    max_record_age: float | None = None
    bisect_on_error: bool = False
    initial_backoff: float = 0.1
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts is not None:
            _check_int("RetryPolicy.max_attempts", self.max_attempts, 1, 10_000)
        if self.max_record_age is not None:
            _check_seconds("RetryPolicy.max_record_age", self.max_record_age, lower=1.0)
        if not isinstance(self.bisect_on_error, bool):
            raise ConfigurationError(
                f"RetryPolicy.bisect_on_error must be True or False, not {self.bisect_on_error!r}"
            )
        _check_seconds("RetryPolicy.initial_backoff", self.initial_backoff)
        _check_seconds("RetryPolicy.max_backoff", self.max_backoff)
        if self.max_backoff < self.initial_backoff:
            raise ConfigurationError(
                "RetryPolicy.max_backoff must be at least initial_backoff "
                f"({self.max_backoff} < {self.initial_backoff})"
            )

    @property
    def gives_up(self) -> bool:
        """True when some records may go to ``on_failure`` instead of being retried."""
        return self.max_attempts is not None or self.max_record_age is not None


@dataclass(frozen=True)
class BatchResult:
    """What a batch handler may return: the records of the batch it could not process.

    Like Lambda's ``ReportBatchItemFailures``: the checkpoint moves to just before the
    earliest failed record, and the retry starts there, so records after it in the batch
    are delivered again, whether they succeeded or not. Returning ``None`` (or
    ``BatchResult()``) means every record succeeded; raising means every record failed.
    """

    failed: Sequence[Record] = ()


FailureReason = Literal["max_attempts", "max_record_age"]


@dataclass(frozen=True)
class FailedBatch:
    """Records the consumer gave up on, as handed to ``on_failure``.

    ``records`` are the records themselves; ``record.raw`` is each one's wire form
    (AttributeValue JSON, exactly as read), so nothing is lost to decoding.

    Attributes:
        records: the records, in stream order (all from one shard).
        reason: ``"max_attempts"`` (the handler failed that often) or ``"max_record_age"``
            (too old to be tried again, or at all).
        attempts: handler calls made with these records (0 when too old for any).
        error_type: the qualified name of the last exception's class ("" if none).
        error_message: ``str()`` of the last exception ("" if none).
        traceback: the last exception's formatted traceback ("" if none).
        stream_arn: the stream the records come from.
        shard_id: their shard.
        first_sequence_number: the first record's sequence number.
        last_sequence_number: the last record's sequence number.
        first_attempt_at: UNIX time of the first handler call with them (None if none).
        failed_at: UNIX time the consumer gave up on them.
        error: the last exception itself, when the batch was made in this process.
    """

    records: tuple[Record, ...]
    reason: FailureReason
    attempts: int
    error_type: str
    error_message: str
    traceback: str
    stream_arn: str
    shard_id: str
    first_sequence_number: str
    last_sequence_number: str
    first_attempt_at: float | None
    failed_at: float
    error: BaseException | None = field(default=None, compare=False, repr=False)


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(
            f"{name} must be a whole number from {low} to {high}, not {value!r}"
        )


def _check_seconds(
    name: str, value: object, lower: float = 0.0, upper: float | None = None
) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < lower
        or (upper is not None and value > upper)
    ):
        bounds = f">= {lower:g}" + (f" and <= {upper:g}" if upper is not None else "")
        raise ConfigurationError(f"{name} must be a number of seconds {bounds}, not {value!r}")
