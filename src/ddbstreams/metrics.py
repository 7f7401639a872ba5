"""Metrics exporters: Prometheus and OpenTelemetry, each an optional extra.

A consumer reports to any :class:`ddbstreams.Metrics`; these two are built in::

    from ddbstreams.metrics import PrometheusMetrics

    metrics = PrometheusMetrics()  # pip install 'ddbstreams[prometheus]'
    consumer = StreamConsumer(handler, table_name="orders", metrics=metrics)
    metrics.serve(9464, consumer)  # /metrics and /healthz
    consumer.run()

    from ddbstreams.metrics import OpenTelemetryMetrics

    metrics = OpenTelemetryMetrics()  # pip install 'ddbstreams[otel]'; your SDK setup applies

Neither client library is imported until its exporter is built. :data:`METRICS` lists every
metric (name, kind, labels, unit, meaning): docs/metrics.md says what to alert on.

**Cardinality.** Most metrics carry a ``shard`` label; a stream has a few shards open at a
time, and each rolls over every few hours, so a long-running consumer sees a new series per
shard and metric every few hours (those of shards gone from the stream are dropped). For a
stream of hundreds of shards, build the exporter with ``per_shard=False``: counters are then
summed over shards and gauges (ages) show the worst shard.
"""

from __future__ import annotations

import contextlib
import http.server
import importlib
import json
import logging
import threading
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError
from ._metrics import DURATION_BUCKETS, METRICS, SPECS, Labels, Metrics, MetricSpec

if TYPE_CHECKING:
    from ._consumer import StreamConsumer

__all__ = [
    "METRICS",
    "MetricSpec",
    "Metrics",
    "MetricsServer",
    "OpenTelemetryMetrics",
    "PrometheusMetrics",
]

logger = logging.getLogger("ddbstreams")

LabelKey = tuple[tuple[str, str], ...]


def _import(module: str, extra: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(
            f"this exporter needs the {module} package: pip install 'ddbstreams[{extra}]'"
        ) from exc


class _Gauges:
    """Gauge values by series; without the shard label, the worst (largest) shard's."""

    def __init__(self, per_shard: bool) -> None:
        self.per_shard = per_shard
        self._values: dict[str, dict[LabelKey, dict[str, float]]] = {}
        self._lock = threading.Lock()

    def set(self, spec: MetricSpec, value: float, labels: Labels) -> tuple[LabelKey, float]:
        """Store a value; the series it changes and the value that series shows now."""
        shard = labels.get("shard", "") if spec.per_shard else ""
        key = _key(spec, labels, self.per_shard)
        with self._lock:
            by_shard = self._values.setdefault(spec.name, {}).setdefault(key, {})
            by_shard[shard] = value
            return key, max(by_shard.values())

    def forget(self, labels: Labels) -> list[tuple[str, LabelKey, float | None]]:
        """Drop a shard's values: each series changed, and its new value (None: gone)."""
        shard, stream = labels.get("shard"), labels.get("stream")
        changed: list[tuple[str, LabelKey, float | None]] = []
        with self._lock:
            for name, series in self._values.items():
                if not SPECS[name].per_shard:
                    continue
                for key, by_shard in list(series.items()):
                    if dict(key).get("stream") != stream or shard not in by_shard:
                        continue
                    del by_shard[shard]
                    if by_shard:
                        changed.append((name, key, max(by_shard.values())))
                    else:
                        del series[key]
                        changed.append((name, key, None))
        return changed

    def series(self, name: str) -> list[tuple[LabelKey, float]]:
        with self._lock:
            return [(key, max(v.values())) for key, v in self._values.get(name, {}).items()]


def _key(spec: MetricSpec, labels: Labels, per_shard: bool) -> LabelKey:
    return tuple(
        (name, labels.get(name, "")) for name in spec.labels if per_shard or name != "shard"
    )


def _spec(name: str) -> MetricSpec:
    spec = SPECS.get(name)
    if spec is None:
        raise ValueError(f"unknown ddbstreams metric {name!r}")
    return spec


class PrometheusMetrics:
    """Report to a ``prometheus_client`` registry (the ``prometheus`` extra).

    Args:
        registry: a ``prometheus_client.CollectorRegistry``; default its global
            ``REGISTRY`` (what ``prometheus_client.start_http_server`` serves). One
            ``PrometheusMetrics`` per registry.
        per_shard: keep the ``shard`` label (default); ``False`` drops it (counters summed
            over shards, gauges show the worst shard), for streams of many shards.

    :meth:`serve` starts an HTTP endpoint with ``/metrics`` and ``/healthz``.
    """

    def __init__(self, registry: Any = None, per_shard: bool = True) -> None:
        client = _import("prometheus_client", "prometheus")
        self.registry = registry if registry is not None else client.REGISTRY
        self.per_shard = per_shard
        self._gauges = _Gauges(per_shard)
        self._instruments: dict[str, Any] = {}
        self._children: dict[tuple[str, LabelKey], Any] = {}
        for spec in METRICS:
            names = [name for name in spec.labels if per_shard or name != "shard"]
            if spec.kind == "counter":
                metric = client.Counter(spec.name, spec.help, names, registry=self.registry)
            elif spec.kind == "gauge":
                metric = client.Gauge(spec.name, spec.help, names, registry=self.registry)
            else:
                metric = client.Histogram(
                    spec.name, spec.help, names, registry=self.registry, buckets=DURATION_BUCKETS
                )
            self._instruments[spec.name] = metric

    def _child(self, spec: MetricSpec, key: LabelKey) -> Any:
        child = self._children.get((spec.name, key))
        if child is None:
            child = self._instruments[spec.name].labels(*(value for _, value in key))
            self._children[(spec.name, key)] = child
        return child

    def count(self, name: str, value: float, labels: Labels) -> None:
        spec = _spec(name)
        self._child(spec, _key(spec, labels, self.per_shard)).inc(value)

    def gauge(self, name: str, value: float, labels: Labels) -> None:
        spec = _spec(name)
        key, shown = self._gauges.set(spec, value, labels)
        self._child(spec, key).set(shown)

    def observe(self, name: str, value: float, labels: Labels) -> None:
        spec = _spec(name)
        self._child(spec, _key(spec, labels, self.per_shard)).observe(value)

    def forget(self, labels: Labels) -> None:
        for name, key, value in self._gauges.forget(labels):
            if value is not None:
                self._child(SPECS[name], key).set(value)
            else:
                self._remove(name, key)
        if not self.per_shard:
            return
        for spec in METRICS:
            if spec.per_shard and spec.kind == "counter":
                self._remove(spec.name, _key(spec, labels, True))

    def _remove(self, name: str, key: LabelKey) -> None:
        self._children.pop((name, key), None)
        with contextlib.suppress(KeyError):  # never reported
            self._instruments[name].remove(*(value for _, value in key))

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The registry in the text format the ``Accept`` header asks for, and its type."""
        exposition = importlib.import_module("prometheus_client.exposition")
        encoder, content_type = exposition.choose_encoder(accept)
        return encoder(self.registry), content_type

    def serve(
        self, port: int, consumer: StreamConsumer | None = None, host: str = "0.0.0.0"
    ) -> MetricsServer:
        """Serve ``/metrics`` and, given the consumer, ``/healthz`` on ``host:port`` from a
        background thread (``port=0``: any free port, see :attr:`MetricsServer.port`).

        ``/healthz`` answers 200 while :meth:`StreamConsumer.health` says healthy or
        degraded, 503 when failing, with a JSON body: ``{"status": ..., "reasons": [...]}``.
        """
        return MetricsServer(self, consumer, host, port)


class MetricsServer:
    """The HTTP endpoint of :meth:`PrometheusMetrics.serve`; :meth:`close` stops it."""

    def __init__(
        self, metrics: PrometheusMetrics, consumer: StreamConsumer | None, host: str, port: int
    ) -> None:
        handler = _handler_class(metrics, consumer)
        self._server = http.server.ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ddbstreams-metrics", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler_class(
    metrics: PrometheusMetrics, consumer: StreamConsumer | None
) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, content_type = metrics.exposition(self.headers.get("Accept", ""))
                self._answer(200, body, content_type)
            elif path == "/healthz" and consumer is not None:
                health = consumer.health()
                document = {"status": health.status, "reasons": list(health.reasons)}
                self._answer(
                    200 if health.ok else 503,
                    json.dumps(document).encode(),
                    "application/json",
                )
            else:
                self._answer(404, b"not found: try /metrics or /healthz\n", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("metrics endpoint: " + format, *args)

    return Handler


class OpenTelemetryMetrics:
    """Report through OpenTelemetry's metrics API (the ``otel`` extra).

    Args:
        meter: an ``opentelemetry.metrics.Meter``; default
            ``opentelemetry.metrics.get_meter("ddbstreams")`` from the global meter provider,
            so the application's SDK and exporter setup applies (without an SDK, the API's
            no-op provider drops everything).
        per_shard: keep the ``shard`` attribute (default); ``False`` drops it.

    Instrument names are those of :data:`METRICS` without the ``_total`` of counters
    (OpenTelemetry's Prometheus exporter adds it back); counters are Counters, the
    histogram a Histogram, gauges ObservableGauges read at each collection.
    """

    def __init__(self, meter: Any = None, per_shard: bool = True) -> None:
        api = _import("opentelemetry.metrics", "otel")
        if meter is None:
            from . import __version__

            meter = api.get_meter("ddbstreams", __version__)
        self.meter = meter
        self.per_shard = per_shard
        self._observation = api.Observation
        self._gauges = _Gauges(per_shard)
        self._instruments: dict[str, Any] = {}
        for spec in METRICS:
            name = spec.name.removesuffix("_total") if spec.kind == "counter" else spec.name
            if spec.kind == "counter":
                instrument = meter.create_counter(name, unit=spec.unit, description=spec.help)
            elif spec.kind == "histogram":
                try:
                    instrument = meter.create_histogram(
                        name,
                        unit=spec.unit,
                        description=spec.help,
                        explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
                    )
                except TypeError:  # an API older than 1.23: the SDK's buckets apply
                    instrument = meter.create_histogram(name, unit=spec.unit, description=spec.help)
            else:
                instrument = meter.create_observable_gauge(
                    name,
                    callbacks=[self._callback(spec.name)],
                    unit=spec.unit,
                    description=spec.help,
                )
            self._instruments[spec.name] = instrument

    def _callback(self, name: str) -> Any:
        def observe(options: Any) -> Iterable[Any]:
            return [self._observation(value, dict(key)) for key, value in self._gauges.series(name)]

        return observe

    def count(self, name: str, value: float, labels: Labels) -> None:
        spec = _spec(name)
        self._instruments[name].add(value, dict(_key(spec, labels, self.per_shard)))

    def gauge(self, name: str, value: float, labels: Labels) -> None:
        self._gauges.set(_spec(name), value, labels)

    def observe(self, name: str, value: float, labels: Labels) -> None:
        spec = _spec(name)
        self._instruments[name].record(value, dict(_key(spec, labels, self.per_shard)))

    def forget(self, labels: Labels) -> None:
        self._gauges.forget(labels)  # counters' series end with the SDK's own cardinality rules
