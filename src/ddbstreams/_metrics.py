"""Metrics: what a consumer reports, to whom, and how often.

The consumer reports to a :class:`Metrics` object: counters and handler durations once per
step of a shard (a step handles up to one ``GetRecords`` page), AWS call outcomes once per
call, and gauges (ages, shard counts, heartbeat age) from the scheduling thread about once
a second. Nothing is reported per record: the record loop only keeps the counts it already
kept, and a step hands on their differences.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

logger = logging.getLogger("ddbstreams")

MetricKind = Literal["counter", "gauge", "histogram"]
Labels = Mapping[str, str]

# How often (seconds of the coordinator's clock) gauges are reported.
GAUGE_INTERVAL = 1.0
# Handler duration buckets (seconds): from 100 µs (a quick in-memory handler) to 5 minutes.
DURATION_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)


@runtime_checkable
class Metrics(Protocol):
    """What a consumer reports its metrics to (``StreamConsumer(..., metrics=...)``).

    ddbstreams ships two implementations in :mod:`ddbstreams.metrics` (Prometheus and
    OpenTelemetry); any object with these four methods will do (StatsD, logs, a test's
    recorder). ``name`` is one of :data:`ddbstreams.metrics.METRICS` (for example
    ``"ddbstreams_records_delivered_total"``) and ``labels`` carries exactly that metric's
    label names (``stream``, ``shard``, ``operation``, ``kind``, ``state``). The methods
    are called from several threads at once and must be quick and never raise: an
    exception is logged and the report dropped.
    """

    def count(self, name: str, value: float, labels: Labels) -> None:
        """Add ``value`` (> 0) to a counter."""
        ...

    def gauge(self, name: str, value: float, labels: Labels) -> None:
        """Set a gauge to ``value``."""
        ...

    def observe(self, name: str, value: float, labels: Labels) -> None:
        """Record one observation of a histogram."""
        ...

    def forget(self, labels: Labels) -> None:
        """Drop every series whose labels include these (``stream`` and ``shard``): the
        shard is gone from the stream, so its series would only linger."""
        ...


@dataclass(frozen=True)
class MetricSpec:
    """One metric a consumer reports: its name, kind, label names, unit and meaning."""

    name: str
    kind: MetricKind
    labels: tuple[str, ...]
    unit: str
    help: str

    @property
    def per_shard(self) -> bool:
        return "shard" in self.labels


_SHARD = ("stream", "shard")


def _counter(name: str, unit: str, help: str, labels: tuple[str, ...] = _SHARD) -> MetricSpec:
    return MetricSpec(name, "counter", labels, unit, help)


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "ddbstreams_iterator_age_seconds",
        "gauge",
        _SHARD,
        "s",
        "Now minus the ApproximateCreationDateTime of the newest record delivered "
        "(Lambda's IteratorAge); 0 once the shard is caught up",
    ),
    MetricSpec(
        "ddbstreams_oldest_waiting_record_age_seconds",
        "gauge",
        _SHARD,
        "s",
        "Now minus the ApproximateCreationDateTime of the oldest record fetched and not "
        "done yet; 0 when none waits",
    ),
    _counter(
        "ddbstreams_records_delivered_total", "{record}", "Records the handler succeeded with"
    ),
    _counter(
        "ddbstreams_bytes_delivered_total",
        "By",
        "Bytes of the GetRecords pages whose records were all handed on (answer body size)",
    ),
    MetricSpec(
        "ddbstreams_handler_duration_seconds",
        "histogram",
        ("stream",),
        "s",
        "Seconds per handler call: a batch handler's call, or a record handler's mean over "
        "the records of one step (up to a page)",
    ),
    _counter("ddbstreams_handler_failures_total", "{call}", "Handler calls that failed"),
    _counter("ddbstreams_retries_total", "{call}", "Failed handler calls that will be retried"),
    _counter(
        "ddbstreams_records_sent_to_destination_total",
        "{record}",
        "Records given up on and accepted by on_failure",
    ),
    _counter(
        "ddbstreams_records_discarded_total",
        "{record}",
        "Records given up on with on_failure='discard'",
    ),
    _counter("ddbstreams_records_filtered_total", "{record}", "Records the filter passed over"),
    _counter("ddbstreams_destination_failures_total", "{call}", "on_failure calls that raised"),
    _counter(
        "ddbstreams_getrecords_calls_total",
        "{call}",
        "GetRecords calls, each attempt (retries included)",
    ),
    _counter("ddbstreams_empty_pages_total", "{page}", "GetRecords answers without records"),
    _counter(
        "ddbstreams_api_errors_total",
        "{call}",
        "AWS calls that failed, each attempt, by operation and kind (throttled, server, "
        "unreachable, malformed, expired_iterator, trimmed, not_found, credentials, other)",
        ("stream", "operation", "kind"),
    ),
    _counter("ddbstreams_checkpoint_writes_total", "{write}", "Checkpoints saved"),
    _counter(
        "ddbstreams_checkpoint_failures_total",
        "{write}",
        "Checkpoint saves the store refused or failed (a lost lease is counted as leases lost)",
    ),
    MetricSpec(
        "ddbstreams_shards",
        "gauge",
        ("stream", "state"),
        "{shard}",
        "Known shards by state: held (read by this worker now), waiting (for its parent), "
        "finished, elsewhere (in a group: another worker's, or free)",
    ),
    _counter("ddbstreams_leases_taken_total", "{lease}", "Leases this worker took", ("stream",)),
    _counter(
        "ddbstreams_leases_lost_total",
        "{lease}",
        "Leases taken away from this worker (or let go after missed heartbeats)",
        ("stream",),
    ),
    _counter(
        "ddbstreams_leases_handed_over_total",
        "{lease}",
        "Leases this worker handed over to balance the group",
        ("stream",),
    ),
    MetricSpec(
        "ddbstreams_heartbeat_age_seconds",
        "gauge",
        ("stream",),
        "s",
        "Seconds since this worker's last successful heartbeat (consumer groups only)",
    ),
    _counter(
        "ddbstreams_heartbeat_failures_total",
        "{write}",
        "Heartbeat writes that failed (consumer groups only)",
        ("stream",),
    ),
)

SPECS: dict[str, MetricSpec] = {spec.name: spec for spec in METRICS}


class Reporter:
    """A consumer's link to its :class:`Metrics`: one stream's labels, and a guard so that
    a failing exporter costs a log line, never a shard."""

    def __init__(self, metrics: Metrics, stream_arn: str) -> None:
        self.metrics = metrics
        self.stream_arn = stream_arn
        self.stream: Labels = {"stream": stream_arn}
        self._shard_labels: dict[str, Labels] = {}
        self._warned = False

    def shard(self, shard_id: str) -> Labels:
        labels = self._shard_labels.get(shard_id)
        if labels is None:
            labels = self._shard_labels[shard_id] = {"stream": self.stream_arn, "shard": shard_id}
        return labels

    def count(self, name: str, value: float, labels: Labels) -> None:
        if value:
            try:
                self.metrics.count(name, value, labels)
            except Exception as exc:
                self._failed(exc)

    def gauge(self, name: str, value: float, labels: Labels) -> None:
        try:
            self.metrics.gauge(name, value, labels)
        except Exception as exc:
            self._failed(exc)

    def observe(self, name: str, value: float, labels: Labels) -> None:
        try:
            self.metrics.observe(name, value, labels)
        except Exception as exc:
            self._failed(exc)

    def forget_shard(self, shard_id: str) -> None:
        try:
            self.metrics.forget(self.shard(shard_id))
        except Exception as exc:
            self._failed(exc)
        self._shard_labels.pop(shard_id, None)

    def api_call(self, operation: str, shard_id: str | None, error_kind: str | None) -> None:
        """One AWS call attempt (see ``StreamsAPI.observer``)."""
        if operation == "GetRecords" and shard_id is not None:
            self.count("ddbstreams_getrecords_calls_total", 1, self.shard(shard_id))
        if error_kind is not None:
            labels = {"stream": self.stream_arn, "operation": operation, "kind": error_kind}
            self.count("ddbstreams_api_errors_total", 1, labels)

    def _failed(self, exc: Exception) -> None:
        if not self._warned:  # once: an exporter that fails, fails at every report
            self._warned = True
            logger.warning("the metrics exporter raised; reports are dropped: %r", exc)


# A reader's running totals, by the counter they feed.
_SHARD_COUNTERS = (
    ("records_handled", "ddbstreams_records_delivered_total"),
    ("bytes_delivered", "ddbstreams_bytes_delivered_total"),
    ("handler_failures", "ddbstreams_handler_failures_total"),
    ("retries", "ddbstreams_retries_total"),
    ("records_sent_to_destination", "ddbstreams_records_sent_to_destination_total"),
    ("records_discarded", "ddbstreams_records_discarded_total"),
    ("records_filtered", "ddbstreams_records_filtered_total"),
    ("destination_failures", "ddbstreams_destination_failures_total"),
    ("empty_pages", "ddbstreams_empty_pages_total"),
    ("checkpoint_writes", "ddbstreams_checkpoint_writes_total"),
    ("checkpoint_failures", "ddbstreams_checkpoint_failures_total"),
)


class ShardReport:
    """Hands a reader's running totals on as counter increments, once per step."""

    def __init__(self, reporter: Reporter, shard_id: str) -> None:
        self.reporter = reporter
        self.labels = reporter.shard(shard_id)
        self._reported = dict.fromkeys([name for name, _ in _SHARD_COUNTERS], 0)
        self._malformed = 0
        self.durations: list[float] = []  # handler durations not reported yet

    def flush(self, totals: Mapping[str, int], malformed: int) -> None:
        reporter, labels, reported = self.reporter, self.labels, self._reported
        for total, metric in _SHARD_COUNTERS:
            value = totals[total]
            if value != reported[total]:
                reporter.count(metric, value - reported[total], labels)
                reported[total] = value
        if malformed != self._malformed:
            errors = {"stream": reporter.stream_arn, "operation": "GetRecords", "kind": "malformed"}
            reporter.count("ddbstreams_api_errors_total", malformed - self._malformed, errors)
            self._malformed = malformed
        if self.durations:
            durations, self.durations = self.durations, []
            for seconds in durations:
                reporter.observe("ddbstreams_handler_duration_seconds", seconds, reporter.stream)
