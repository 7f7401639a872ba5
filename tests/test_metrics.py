"""Metrics and health: values checked against known scenarios on the simulator (its virtual
clock sets record ages exactly), Prometheus' exposition over HTTP, OpenTelemetry through
the SDK's in-memory reader, and /healthz's status codes."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from conftest import FAST
from ddbstreams import (
    Batching,
    BatchResult,
    Checkpoint,
    CheckpointStoreError,
    ConfigurationError,
    ConsumerSettings,
    DynamoDBCheckpointStore,
    InMemoryCheckpointStore,
    Metrics,
    Record,
    RetryPolicy,
    StreamConsumer,
)
from ddbstreams._client import StreamsAPI
from ddbstreams._lineage import ShardInfo
from ddbstreams._metrics import METRICS, Reporter
from ddbstreams._reader import ShardReader
from ddbstreams.metrics import OpenTelemetryMetrics, PrometheusMetrics
from ddbstreams.testing import RecordCollector, StreamSimulator
from test_groups import new_store

NO_STOP = threading.Event()


def item(n: int) -> dict[str, Any]:
    return {"email": f"user{n}@example.com", "order_number": f"#{n}", "order_amount": n}


class Recorder:
    """A Metrics of the test's own: keeps every report."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, frozenset[tuple[str, str]]]] = Counter()
        self.gauges: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        self.observed: dict[str, list[float]] = defaultdict(list)
        self.forgotten: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def count(self, name: str, value: float, labels: Mapping[str, str]) -> None:
        with self._lock:
            self.counts[(name, frozenset(labels.items()))] += value

    def gauge(self, name: str, value: float, labels: Mapping[str, str]) -> None:
        with self._lock:
            self.gauges[(name, frozenset(labels.items()))] = value

    def observe(self, name: str, value: float, labels: Mapping[str, str]) -> None:
        with self._lock:
            self.observed[name].append(value)

    def forget(self, labels: Mapping[str, str]) -> None:
        self.forgotten.append(dict(labels))

    def total(self, name: str, **labels: str) -> float:
        with self._lock:
            return sum(
                value
                for (metric, found), value in self.counts.items()
                if metric == name and set(labels.items()) <= found
            )

    def value(self, name: str, **labels: str) -> float | None:
        with self._lock:
            for (metric, found), value in self.gauges.items():
                if metric == name and set(labels.items()) <= found:
                    return value
        return None


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    step = threading.Event()
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        step.wait(0.005)


def shard_of(sim: StreamSimulator) -> str:
    (shard_id,) = sim.open_shard_ids()
    return shard_id


# ------------------------------------------------------------- one shard, stepped by hand


class Stepped:
    """A reader stepped by hand on the simulator's virtual clock, reporting to a Recorder."""

    def __init__(
        self,
        sim: StreamSimulator,
        handler: Any,
        store: InMemoryCheckpointStore | None = None,
        **settings: Any,
    ) -> None:
        self.sim = sim
        self.recorder = Recorder()
        self.reporter = Reporter(self.recorder, sim.stream_arn)
        self.api = StreamsAPI(sim, sim, attempts=3, sleep=lambda _: None)
        self.api.observer = self.reporter.api_call
        self.store = store if store is not None else InMemoryCheckpointStore()
        described = sim.describe_stream(StreamArn=sim.stream_arn)
        self.reader = ShardReader(
            shard=ShardInfo.from_wire(described["StreamDescription"]["Shards"][0]),
            stream_arn=sim.stream_arn,
            api=self.api,
            handler=handler,
            store=self.store,
            settings=ConsumerSettings(**{"checkpoint_every": 2, **settings}),
            checkpoint=None,
            start_position="TRIM_HORIZON",
            clock=lambda: sim.now,
            wall_clock=sim.wall_time,
            random_fraction=lambda: 1.0,
            metrics=self.reporter,
        )

    def total(self, name: str, **labels: str) -> float:
        return self.recorder.total(name, **labels)


def test_iterator_age_is_the_pause_since_the_newest_record_delivered() -> None:
    sim = StreamSimulator()
    for n in range(3):
        sim.insert(item(n))
    sim.advance(120.0)  # the consumer was away for two minutes
    sim.insert(item(3))  # ...and the newest record was written just now
    sim.advance(5.0)
    fail = {"on": "user3@example.com"}

    def handler(record: Record) -> None:
        if record.keys["email"] == fail["on"]:
            raise RuntimeError("not yet")

    run = Stepped(sim, handler)
    run.reader.step(NO_STOP)  # delivers three records, fails on the fourth
    iterator_age, waiting_age = run.reader.ages(sim.wall_time())
    assert iterator_age == pytest.approx(125.0, abs=0.01)  # the third record, 125 s old
    assert waiting_age == pytest.approx(5.0, abs=0.01)  # the fourth waits, 5 s old
    sim.advance(60.0)
    assert run.reader.ages(sim.wall_time()) == (
        pytest.approx(185.0, abs=0.01),
        pytest.approx(65.0, abs=0.01),
    )
    fail["on"] = ""
    run.reader.step(NO_STOP)
    assert run.reader.ages(sim.wall_time())[0] == pytest.approx(65.0, abs=0.01)
    run.reader.step(NO_STOP)  # an empty page: caught up
    assert run.reader.ages(sim.wall_time()) == (0.0, 0.0)
    assert run.total("ddbstreams_empty_pages_total") == 1
    assert run.total("ddbstreams_records_delivered_total") == 4


def test_getrecords_calls_and_throttles_are_counted_per_attempt() -> None:
    sim = StreamSimulator()
    sim.insert(item(1))
    run = Stepped(sim, lambda record: None)
    sim.throttle("GetRecords", times=5)  # attempts=3: one step fails, the next goes on
    run.reader.step(NO_STOP)
    assert run.reader.failure_kind == "throttled"
    run.reader.step(NO_STOP)
    assert run.reader.records_delivered == 1
    errors = run.total("ddbstreams_api_errors_total", operation="GetRecords", kind="throttled")
    assert errors == 5
    shard = run.reader.shard_id
    assert run.total("ddbstreams_getrecords_calls_total", shard=shard) == 6
    sim.inject("GetRecords", "InternalServerError", times=1)
    sim.inject("GetShardIterator", "ConnectionError", times=1)
    run.reader._drop_page()  # a new iterator: GetShardIterator is called again
    run.reader.step(NO_STOP)
    assert run.total("ddbstreams_api_errors_total", kind="server") == 1
    assert run.total("ddbstreams_api_errors_total", operation="GetShardIterator") == 1
    assert run.total("ddbstreams_api_errors_total", kind="unreachable") == 1


def test_handler_durations_failures_retries_and_bytes() -> None:
    sim = StreamSimulator()
    written = [sim.insert(item(n)) for n in range(4)]
    failures = {"left": 2}

    def handler(record: Record) -> None:
        sim.advance(0.5)  # each call takes half a second of the simulator's clock
        if record.sequence_number == written[2] and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("boom")

    run = Stepped(sim, handler, checkpoint_every=1000)
    for _ in range(3):
        run.reader.step(NO_STOP)
    assert run.reader.records_delivered == 4
    assert run.total("ddbstreams_handler_failures_total") == 2
    assert run.total("ddbstreams_retries_total") == 2
    assert run.total("ddbstreams_records_delivered_total") == 4
    # One observation per step: the mean of its calls (3 calls, 1 call, 2 calls).
    assert run.recorder.observed["ddbstreams_handler_duration_seconds"] == [0.5, 0.5, 0.5]
    sizes = sum(record["dynamodb"]["SizeBytes"] for record in sim.records(run.reader.shard_id))
    assert run.total("ddbstreams_bytes_delivered_total") == sizes


def test_checkpoint_writes_and_failures() -> None:
    sim = StreamSimulator()
    for n in range(4):
        sim.insert(item(n))

    class Flaky(InMemoryCheckpointStore):
        failing = True

        def save(self, stream_arn: str, shard_id: str, checkpoint: Checkpoint) -> None:
            if self.failing:
                raise CheckpointStoreError("store down (test)")
            super().save(stream_arn, shard_id, checkpoint)

    store = Flaky()
    run = Stepped(sim, lambda record: None, store, checkpoint_every=2)
    run.reader.step(NO_STOP)  # marking it begun, then the checkpoint after 2 records fail
    failed = run.total("ddbstreams_checkpoint_failures_total")
    assert failed >= 2
    assert run.total("ddbstreams_checkpoint_writes_total") == 0
    store.failing = False
    sim.advance(10.0)  # past the store's retry backoff
    run.reader.checkpoint()
    run.reader.report()
    assert run.total("ddbstreams_checkpoint_writes_total") == 1
    assert run.total("ddbstreams_checkpoint_failures_total") == failed


# ------------------------------------------------------------- whole consumers


def test_consumer_reports_iterator_age_after_a_pause_on_the_virtual_clock() -> None:
    sim = StreamSimulator()
    for n in range(3):
        sim.insert(item(n))
    stuck = sim.insert(item(99))
    sim.advance(300.0)  # the records are five minutes old when the consumer starts
    recorder = Recorder()
    release = threading.Event()

    def handler(record: Record) -> None:
        if record.sequence_number == stuck and not release.is_set():
            raise RuntimeError("held back")

    consumer = StreamConsumer(
        handler, stream_arn=sim.stream_arn, client=sim, settings=FAST, metrics=recorder
    )
    shard = shard_of(sim)
    with consumer:
        age = "ddbstreams_iterator_age_seconds"
        waiting = "ddbstreams_oldest_waiting_record_age_seconds"
        wait_until(lambda: recorder.value(age, shard=shard) == pytest.approx(300.0, abs=0.01))
        assert recorder.value(waiting, shard=shard) == pytest.approx(300.0, abs=0.01)
        sim.advance(60.0)  # a minute more: the next report says so
        wait_until(lambda: recorder.value(age, shard=shard) == pytest.approx(360.0, abs=0.01))
        (status,) = consumer.shards()
        assert status.iterator_age == pytest.approx(360.0, abs=0.01)
        release.set()
        wait_until(lambda: recorder.value(age, shard=shard) == 0.0)
        wait_until(lambda: recorder.value(waiting, shard=shard) == 0.0)
        assert recorder.value("ddbstreams_shards", state="held") == 1
        assert recorder.value("ddbstreams_shards", state="finished") == 0
    assert recorder.total("ddbstreams_records_delivered_total", shard=shard) == 4
    assert recorder.total("ddbstreams_handler_failures_total", shard=shard) >= 1


def test_consumer_counts_throttles_under_injected_throttling() -> None:
    sim = StreamSimulator()
    sim.insert(item(1))
    sim.throttle("GetRecords", times=5)  # request_attempts=4: a step fails, the next goes on
    recorder = Recorder()
    collector = RecordCollector()
    consumer = StreamConsumer(
        collector, stream_arn=sim.stream_arn, client=sim, settings=FAST, metrics=recorder
    )
    with consumer:
        collector.wait_for(1)
    throttled = recorder.total(
        "ddbstreams_api_errors_total", operation="GetRecords", kind="throttled"
    )
    assert throttled == 5
    assert recorder.total("ddbstreams_getrecords_calls_total") >= 6
    assert recorder.total("ddbstreams_api_errors_total") == 5  # nothing else failed


def test_delivery_policies_report_filtered_discarded_and_batch_durations() -> None:
    sim = StreamSimulator()
    for n in range(10):
        sim.insert(item(n))
    recorder = Recorder()

    def handler(batch: list[Record]) -> BatchResult | None:
        bad = [r for r in batch if r.new_image and r.new_image["order_amount"] == 7]
        return BatchResult(failed=bad) if bad else None

    consumer = StreamConsumer(
        handler,
        stream_arn=sim.stream_arn,
        client=sim,
        settings=FAST,
        metrics=recorder,
        batching=Batching(max_records=1, max_wait=0),
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.001),
        on_failure="discard",
        filter={"dynamodb": {"NewImage": {"order_amount": {"N": [{"anything-but": ["0", "1"]}]}}}},
    )
    with consumer:
        wait_until(
            lambda: (
                recorder.total("ddbstreams_records_discarded_total")
                + recorder.total("ddbstreams_records_filtered_total")
                + recorder.total("ddbstreams_records_delivered_total")
                == 10
            )
        )
    assert recorder.total("ddbstreams_records_filtered_total") == 2  # amounts 0 and 1
    assert recorder.total("ddbstreams_records_discarded_total") == 1  # amount 7
    assert recorder.total("ddbstreams_records_delivered_total") == 7
    assert recorder.total("ddbstreams_handler_failures_total") == 2  # two attempts at 7
    assert recorder.total("ddbstreams_retries_total") == 1  # the second; then given up
    assert len(recorder.observed["ddbstreams_handler_duration_seconds"]) >= 3


def test_metrics_must_be_a_metrics() -> None:
    sim = StreamSimulator()
    assert isinstance(Recorder(), Metrics)
    with pytest.raises(ConfigurationError, match="count, gauge, observe and forget"):
        StreamConsumer(print, stream_arn=sim.stream_arn, client=sim, metrics=object())  # type: ignore[arg-type]


def test_an_exporter_that_raises_costs_a_log_line_not_a_shard(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Recorder):
        def count(self, name: str, value: float, labels: Mapping[str, str]) -> None:
            raise RuntimeError("exporter down")

    sim = StreamSimulator()
    for n in range(3):
        sim.insert(item(n))
    collector = RecordCollector()
    consumer = StreamConsumer(
        collector, stream_arn=sim.stream_arn, client=sim, settings=FAST, metrics=Broken()
    )
    with consumer:
        collector.wait_for(3)
        assert consumer.health().status == "healthy"
    warnings = [r for r in caplog.records if "metrics exporter raised" in r.getMessage()]
    assert len(warnings) == 1


# ------------------------------------------------------------- health


def test_health_says_failing_for_a_handler_failing_too_long() -> None:
    sim = StreamSimulator()
    sim.insert(item(1))

    def handler(record: Record) -> None:
        raise RuntimeError("always")

    settings = ConsumerSettings(
        poll_interval=0.02,
        handler_retry_initial=0.01,
        handler_retry_max=0.01,
        failures_before_unhealthy=1_000_000,  # only the time can make it failing
        unhealthy_handler_failing_for=0.3,
    )
    consumer = StreamConsumer(handler, stream_arn=sim.stream_arn, client=sim, settings=settings)
    with consumer:
        wait_until(lambda: consumer.health().status == "degraded")
        wait_until(lambda: consumer.health().status == "failing")
        reasons = consumer.health().reasons
        assert any("the handler has failed for" in reason for reason in reasons), reasons


def test_health_says_failing_for_a_stuck_shard() -> None:
    sim = StreamSimulator()
    sim.insert(item(1))
    release = threading.Event()
    settings = ConsumerSettings(poll_interval=0.02, unhealthy_handler_failing_for=0.3)
    consumer = StreamConsumer(
        lambda record: release.wait(10),
        stream_arn=sim.stream_arn,
        client=sim,
        settings=settings,
    )
    try:
        consumer.start()
        wait_until(lambda: consumer.health().status == "failing")
        (reason,) = consumer.health().reasons
        assert "stuck" in reason
    finally:
        release.set()
        consumer.stop()


def test_health_says_failing_above_the_iterator_age_threshold() -> None:
    sim = StreamSimulator()
    sim.insert(item(1))
    late = sim.insert(item(2))
    sim.advance(900.0)
    release = threading.Event()

    def handler(record: Record) -> None:
        if record.sequence_number == late and not release.is_set():
            raise RuntimeError("held back")

    settings = ConsumerSettings(
        poll_interval=0.02, handler_retry_initial=0.01, unhealthy_iterator_age=600.0
    )
    consumer = StreamConsumer(handler, stream_arn=sim.stream_arn, client=sim, settings=settings)
    with consumer:
        wait_until(lambda: consumer.health().status == "failing")
        assert any("iterator age 900s" in reason for reason in consumer.health().reasons)
        release.set()
        wait_until(lambda: consumer.health().status == "healthy")


def test_health_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="unhealthy_iterator_age"):
        ConsumerSettings(unhealthy_iterator_age=-1)
    with pytest.raises(ConfigurationError, match="unhealthy_handler_failing_for"):
        ConsumerSettings(unhealthy_handler_failing_for=float("nan"))
    assert ConsumerSettings().unhealthy_handler_failing_for == 300.0
    assert ConsumerSettings().unhealthy_iterator_age is None


# ------------------------------------------------------------- Prometheus over HTTP


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, content_type, body = get(url + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_prometheus_exposition_and_healthz_over_http() -> None:
    sim = StreamSimulator(shard_count=2)
    for n in range(20):
        sim.insert(item(n))
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry=registry)
    collector = RecordCollector()
    consumer = StreamConsumer(
        collector, stream_arn=sim.stream_arn, client=sim, settings=FAST, metrics=metrics
    )
    with metrics.serve(0, consumer, host="127.0.0.1") as server:
        status, _, body = get(server.url + "/healthz")
        assert (status, json.loads(body)) == (
            503,
            {"status": "failing", "reasons": ["not started"]},
        )
        with consumer:
            collector.wait_for(20)
            stream = {("stream", sim.stream_arn)}
            wait_until(
                lambda: (
                    sum(
                        value
                        for (name, labels), value in scrape(server.url).items()
                        if name == "ddbstreams_records_delivered_total" and stream <= labels
                    )
                    == 20
                )
            )
            samples = scrape(server.url)
            per_shard = {
                dict(labels)["shard"]: value
                for (name, labels), value in samples.items()
                if name == "ddbstreams_records_delivered_total"
            }
            assert sorted(per_shard) == sorted(sim.open_shard_ids())
            assert ("ddbstreams_shards", frozenset({*stream, ("state", "held")})) in samples
            count = samples[("ddbstreams_handler_duration_seconds_count", frozenset(stream))]
            assert count >= 2  # one per step that delivered, per shard
            status, content_type, body = get(server.url + "/healthz")
            assert (status, content_type) == (200, "application/json")
            assert json.loads(body) == {"status": "healthy", "reasons": []}
            assert get(server.url + "/nothing")[0] == 404
        status, _, body = get(server.url + "/healthz")
        assert (status, json.loads(body)["status"]) == (503, "failing")  # stopped


def test_prometheus_healthz_is_200_while_degraded_and_503_once_failing() -> None:
    sim = StreamSimulator()
    sim.insert(item(1))
    fails = threading.Event()

    def handler(record: Record) -> None:
        if not fails.is_set():
            raise RuntimeError("failing handler")

    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry=registry)
    settings = ConsumerSettings(
        poll_interval=0.02,
        handler_retry_initial=0.01,
        handler_retry_max=0.01,
        failures_before_unhealthy=1_000_000,
        unhealthy_handler_failing_for=0.5,
    )
    consumer = StreamConsumer(
        handler, stream_arn=sim.stream_arn, client=sim, settings=settings, metrics=metrics
    )
    shard = {("stream", sim.stream_arn), ("shard", shard_of(sim))}
    with metrics.serve(0, consumer, host="127.0.0.1") as server, consumer:
        wait_until(lambda: consumer.shards() and consumer.shards()[0].failures > 0)
        status, _, body = get(server.url + "/healthz")
        document = json.loads(body)
        assert (status, document["status"]) == (200, "degraded")
        assert "failing handler" in document["reasons"][0]
        wait_until(lambda: get(server.url + "/healthz")[0] == 503)  # half a second on
        document = json.loads(get(server.url + "/healthz")[2])
        assert document["status"] == "failing"
        assert any("the handler has failed for" in reason for reason in document["reasons"])
        failures = scrape(server.url)[("ddbstreams_handler_failures_total", frozenset(shard))]
        assert failures >= 2
        fails.set()
        wait_until(lambda: get(server.url + "/healthz")[0] == 200)


def test_prometheus_without_the_shard_label_sums_counters_and_shows_the_worst_gauge() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry=registry, per_shard=False)
    stream = "arn:aws:dynamodb:us-east-1:1:table/t/stream/x"
    a, b = {"stream": stream, "shard": "a"}, {"stream": stream, "shard": "b"}
    metrics.count("ddbstreams_records_delivered_total", 3, a)
    metrics.count("ddbstreams_records_delivered_total", 4, b)
    metrics.gauge("ddbstreams_iterator_age_seconds", 10.0, a)
    metrics.gauge("ddbstreams_iterator_age_seconds", 30.0, b)

    def sample(name: str) -> float | None:
        return registry.get_sample_value(name, {"stream": stream})

    assert sample("ddbstreams_records_delivered_total") == 7
    assert sample("ddbstreams_iterator_age_seconds") == 30.0
    metrics.forget(b)  # shard b is gone: the worst is now a
    assert sample("ddbstreams_iterator_age_seconds") == 10.0
    metrics.forget(a)
    assert sample("ddbstreams_iterator_age_seconds") is None
    assert sample("ddbstreams_records_delivered_total") == 7  # counters keep their total


def test_prometheus_forgets_a_shard_s_series() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry=registry)
    labels = {"stream": "s", "shard": "a"}
    metrics.count("ddbstreams_records_delivered_total", 3, labels)
    metrics.gauge("ddbstreams_iterator_age_seconds", 5.0, labels)
    assert registry.get_sample_value("ddbstreams_records_delivered_total", labels) == 3
    metrics.forget(labels)
    assert registry.get_sample_value("ddbstreams_records_delivered_total", labels) is None
    assert registry.get_sample_value("ddbstreams_iterator_age_seconds", labels) is None
    metrics.count("ddbstreams_records_delivered_total", 1, labels)  # back from zero
    assert registry.get_sample_value("ddbstreams_records_delivered_total", labels) == 1


def test_every_metric_is_declared_once_with_its_labels() -> None:
    registry = CollectorRegistry()
    PrometheusMetrics(registry=registry)
    names = {spec.name for spec in METRICS}
    assert len(names) == len(METRICS)
    assert all(name.startswith("ddbstreams_") for name in names)
    exposed = {family.name for family in registry.collect()}
    assert {name.removesuffix("_total") for name in names} == exposed
    with pytest.raises(ValueError, match="unknown ddbstreams metric"):
        PrometheusMetrics(registry=CollectorRegistry()).count("nope", 1, {})


# ------------------------------------------------------------- OpenTelemetry


def test_opentelemetry_through_the_sdk_in_memory_reader() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = OpenTelemetryMetrics(meter=provider.get_meter("test"))
    sim = StreamSimulator()
    for n in range(5):
        sim.insert(item(n))
    held_back = sim.insert(item(5))
    sim.advance(42.0)
    release = threading.Event()

    def handler(record: Record) -> None:
        if record.sequence_number == held_back and not release.is_set():
            raise RuntimeError("held back")

    consumer = StreamConsumer(
        handler, stream_arn=sim.stream_arn, client=sim, settings=FAST, metrics=metrics
    )
    shard = shard_of(sim)

    def points() -> dict[str, list[Any]]:
        data = reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found

    def delivered() -> float:
        return sum(p.value for p in points().get("ddbstreams_records_delivered", []))

    with consumer:
        wait_until(lambda: delivered() == 5)
        wait_until(
            lambda: any(
                p.value == pytest.approx(42.0, abs=0.01)
                for p in points().get("ddbstreams_iterator_age_seconds", [])
            )
        )
        release.set()
        wait_until(lambda: delivered() == 6)
    found = points()
    (age,) = found["ddbstreams_iterator_age_seconds"]
    assert dict(age.attributes) == {"stream": sim.stream_arn, "shard": shard}
    (durations,) = found["ddbstreams_handler_duration_seconds"]
    assert durations.count >= 2
    failures = found["ddbstreams_handler_failures"]
    assert sum(p.value for p in failures) >= 1
    provider.shutdown()


# ------------------------------------------------------------- consumer groups


@pytest.mark.local_endpoint
def test_group_metrics_leases_and_heartbeat_health(local_endpoint: Any) -> None:
    class Outage(DynamoDBCheckpointStore):
        """The lease table, with heartbeat writes that fail while ``down`` is set."""

        down = False

        def heartbeat(self, stream_arn: str, worker_id: str, beat: int, changes: int) -> None:
            if self.down:
                raise CheckpointStoreError("lease table unreachable (test)")
            super().heartbeat(stream_arn, worker_id, beat, changes)

    sim = StreamSimulator(shard_count=4)
    plain = new_store(local_endpoint, lease_duration=3.0)
    store = Outage(plain.table_name, client=plain._db, lease_duration=3.0)
    settings = ConsumerSettings(poll_interval=0.02, discovery_interval=0.2)
    first, second = Recorder(), Recorder()
    workers = [
        StreamConsumer(
            print,
            stream_arn=sim.stream_arn,
            client=sim,
            checkpoint_store=store if name == "w1" else plain,
            settings=settings,
            worker_id=name,
            metrics=recorder,
        )
        for name, recorder in (("w1", first), ("w2", second))
    ]

    def held(recorder: Recorder) -> float | None:
        return recorder.value("ddbstreams_shards", state="held")

    try:
        workers[0].start()
        wait_until(lambda: held(first) == 4, timeout=30)
        assert first.total("ddbstreams_leases_taken_total") == 4
        workers[1].start()  # asks for its share: w1 hands two leases over
        wait_until(lambda: held(first) == 2 and held(second) == 2, timeout=30)
        assert first.total("ddbstreams_leases_handed_over_total") == 2
        assert second.total("ddbstreams_leases_taken_total") == 2
        assert first.value("ddbstreams_shards", state="elsewhere") == 2
        assert first.value("ddbstreams_heartbeat_age_seconds") is not None
        assert workers[0].health().status == "healthy"
        store.down = True  # w1 cannot heartbeat: degraded, then fenced (failing)
        wait_until(lambda: workers[0].health().status == "degraded", timeout=30)
        wait_until(lambda: workers[0].health().status == "failing", timeout=30)
        assert any("heartbeats have failed" in r for r in workers[0].health().reasons)
        wait_until(lambda: first.total("ddbstreams_leases_lost_total") == 2, timeout=30)
        assert first.total("ddbstreams_heartbeat_failures_total") >= 1
        age = first.value("ddbstreams_heartbeat_age_seconds")
        assert age is not None and age >= 2.0  # two thirds of lease_duration
        store.down = False
        wait_until(lambda: workers[0].health().status == "healthy", timeout=30)
    finally:
        for worker in workers:
            worker.stop(timeout=10)
