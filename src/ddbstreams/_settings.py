"""ConsumerSettings: the validated knobs of a consumer."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ._errors import ConfigurationError

StartPosition = Literal["TRIM_HORIZON", "LATEST"]
TrimmedDataPolicy = Literal["raise", "restart_from_trim_horizon"]

START_POSITIONS: tuple[StartPosition, ...] = ("TRIM_HORIZON", "LATEST")
TRIMMED_DATA_POLICIES: tuple[TrimmedDataPolicy, ...] = ("raise", "restart_from_trim_horizon")


@dataclass(frozen=True)
class ConsumerSettings:
    """How a consumer polls, checkpoints and recovers. Every field is checked on creation.

    Attributes:
        start_position: where a shard without a checkpoint starts when the consumer first
            meets the stream: ``"TRIM_HORIZON"`` (oldest retained record) or ``"LATEST"``
            (only new records); any case, and ``-`` for ``_``, is accepted (``"latest"``,
            ``"trim-horizon"``) and stored in upper case. It applies only when the store
            holds nothing for the stream: every shard after that (children of a rollover or
            split, shards first seen on a restart) is read from its first record, so nothing
            after the first start is missed. A LATEST start is pinned (see Concepts).
        poll_interval: seconds to wait after an empty ``GetRecords`` page before asking
            that shard again. A shard that returned records is asked again at once.
        idle_poll_interval_max: after 4 empty pages in a row, an idle shard's wait doubles
            on each further empty page, up to this many seconds (never below
            ``poll_interval``); the first record after a long quiet spell then waits up to
            this long. Set it to ``poll_interval`` to poll every shard at a fixed pace.
        batch_size: the ``Limit`` of each ``GetRecords`` call (1 to 1000).
        checkpoint_every: write a shard's checkpoint after this many handled records...
        checkpoint_interval: ...or after this many seconds, whichever comes first. A
            checkpoint is also written at every shard end and at shutdown.
        discovery_interval: seconds between two ``DescribeStream`` scans for new shards
            (a scan also runs as soon as a shard is read to its end).
        max_workers: the most shards read at the same time (threads in the pool).
        handler_retry_initial: first wait, in seconds, after the handler raises; it doubles
            on each new failure of the same record, up to ``handler_retry_max``.
        handler_retry_max: the longest wait between two attempts at a failing record.
        trimmed_data: what to do when a checkpoint points at records already trimmed by
            the 24 h retention: ``"raise"`` a :class:`TrimmedDataError` (default), or
            ``"restart_from_trim_horizon"``, which reports the gap and goes on.
        request_attempts: tries of one AWS call on a transient failure before the error
            reaches the shard reader (which then backs off and goes on).
        max_records_without_checkpoint: while the checkpoint store cannot be written, a
            shard goes on delivering up to this many records past its last saved
            checkpoint, then pauses until a save succeeds (a restart would deliver them
            again).
        failures_before_unhealthy: consecutive failures of the same kind on one shard
            (handler errors, malformed pages, store errors, ...) after which the consumer
            logs an error with its traceback and :meth:`StreamConsumer.health` says
            ``failing``; it keeps retrying.
        startup_timeout: seconds to keep trying an endpoint that cannot be reached when the
            consumer starts (for example one that is still starting) before giving up.
        unhealthy_handler_failing_for: :meth:`StreamConsumer.health` says ``failing`` once
            a shard's handler (or ``on_failure``) has failed for this many seconds without
            a success, or a shard's records have waited this long without any being done
            (a stuck shard: a handler call that does not return, say).
        unhealthy_iterator_age: if set, :meth:`StreamConsumer.health` says ``failing``
            while a shard's iterator age (or its oldest waiting record's age) is above this
            many seconds. Off by default: a restart does not help a consumer catch up, so
            give this threshold to a readiness probe or an alert rather than a liveness
            probe.
    """

    start_position: StartPosition = "TRIM_HORIZON"
    poll_interval: float = 0.25
    idle_poll_interval_max: float = 1.0
    batch_size: int = 1000
    checkpoint_every: int = 1000
    checkpoint_interval: float = 5.0
    discovery_interval: float = 30.0
    max_workers: int = 16
    handler_retry_initial: float = 0.1
    handler_retry_max: float = 30.0
    trimmed_data: TrimmedDataPolicy = "raise"
    request_attempts: int = 4
    max_records_without_checkpoint: int = 10_000
    failures_before_unhealthy: int = 10
    startup_timeout: float = 10.0
    unhealthy_handler_failing_for: float = 300.0
    unhealthy_iterator_age: float | None = None

    def __post_init__(self) -> None:
        start_position = canonical_start_position(self.start_position)
        if start_position is None:
            raise ConfigurationError(
                f"start_position must be one of {', '.join(START_POSITIONS)}, "
                f"not {self.start_position!r}"
            )
        object.__setattr__(self, "start_position", start_position)  # the class is frozen
        if self.trimmed_data not in TRIMMED_DATA_POLICIES:
            raise ConfigurationError(
                f"trimmed_data must be one of {', '.join(TRIMMED_DATA_POLICIES)}, "
                f"not {self.trimmed_data!r}"
            )
        for name in (
            "poll_interval",
            "idle_poll_interval_max",
            "checkpoint_interval",
            "discovery_interval",
            "handler_retry_initial",
            "handler_retry_max",
            "startup_timeout",
            "unhealthy_handler_failing_for",
        ):
            _check_seconds(name, getattr(self, name))
        if self.unhealthy_iterator_age is not None:
            _check_seconds("unhealthy_iterator_age", self.unhealthy_iterator_age)
        _check_int("batch_size", self.batch_size, 1, 1000)
        _check_int("checkpoint_every", self.checkpoint_every, 1, None)
        _check_int("max_workers", self.max_workers, 1, None)
        _check_int("request_attempts", self.request_attempts, 1, None)
        _check_int("max_records_without_checkpoint", self.max_records_without_checkpoint, 1, None)
        _check_int("failures_before_unhealthy", self.failures_before_unhealthy, 1, None)
        if self.handler_retry_max < self.handler_retry_initial:
            raise ConfigurationError(
                "handler_retry_max must be at least handler_retry_initial "
                f"({self.handler_retry_max} < {self.handler_retry_initial})"
            )


def canonical_start_position(value: object) -> StartPosition | None:
    """``"LATEST"`` or ``"TRIM_HORIZON"`` for any spelling of them (``"latest"``,
    ``"trim-horizon"``, ``"Trim_Horizon"``...); None for anything else."""
    if not isinstance(value, str):
        return None
    spelled = value.upper().replace("-", "_")
    for position in START_POSITIONS:
        if spelled == position:
            return position
    return None


def _check_seconds(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigurationError(f"{name} must be a number of seconds >= 0, not {value!r}")


def _check_int(name: str, value: object, low: int, high: int | None) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ConfigurationError(f"{name} must be a whole number {bounds}, not {value!r}")
