"""The deployment example (examples/deploy): the service runs and stops as docs/deployment.md
says, and the Kubernetes manifest, the Dockerfile and the systemd unit agree with it.

The service talks only to the local endpoint (DDBSTREAMS_ENDPOINT_URL), with the dummy
credentials of conftest, so nothing reaches AWS.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conftest import put_order
from ddbstreams import DynamoDBCheckpointStore

DEPLOY = Path(__file__).resolve().parent.parent / "examples" / "deploy"
_names = itertools.count(1)


def load_service() -> ModuleType:
    spec = importlib.util.spec_from_file_location("orders_service_example", DEPLOY / "service.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def service_env(local_endpoint: Any, order_table: str, tmp_path: Path) -> dict[str, str]:
    """The environment a container would get, pointed at the local endpoint."""
    return {
        "DDBSTREAMS_TABLE": order_table,
        "DDBSTREAMS_LEASE_TABLE": f"orders-consumers-{os.getpid()}-{next(_names)}",
        "DDBSTREAMS_GROUP": "orders-service",
        "DDBSTREAMS_LEASE_DURATION": "3",
        "DDBSTREAMS_ENDPOINT_URL": local_endpoint.url,
        "DDBSTREAMS_FAILED_FILE": str(tmp_path / "failed-orders.jsonl"),
        "DDBSTREAMS_METRICS_PORT": "0",
        "LOG_LEVEL": "DEBUG",
    }


class LogWatch:
    """Lines of a child's stderr, read on a thread, waited for with a bound."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                line = None
            if line is None:  # timed out, or the child closed stderr
                raise AssertionError(f"no line matching {pattern!r}; got:\n{''.join(self.lines)}")
            self.lines.append(line)
            if re.search(pattern, line):
                return line


def test_config_from_env_reads_every_variable_the_docs_name() -> None:
    service = load_service()
    config = service.Config.from_env(
        {
            "DDBSTREAMS_TABLE": "orders",
            "DDBSTREAMS_LEASE_TABLE": "leases",
            "DDBSTREAMS_GROUP": "billing",
            "DDBSTREAMS_LEASE_DURATION": "20",
            "DDBSTREAMS_ENDPOINT_URL": "http://localhost:8000",
            "DDBSTREAMS_MAX_ATTEMPTS": "0",
            "DDBSTREAMS_FAILED_QUEUE_URL": "https://sqs.example/q",
            "DDBSTREAMS_FAILED_BUCKET": "bucket",
            "DDBSTREAMS_FAILED_FILE": "/tmp/x.jsonl",
            "DDBSTREAMS_PARALLELISM": "4",
            "DDBSTREAMS_MAX_WORKERS": "8",
            "DDBSTREAMS_METRICS_PORT": "9000",
            "DDBSTREAMS_UNHEALTHY_ITERATOR_AGE": "600",
            "LOG_LEVEL": "debug",
        }
    )
    assert config == service.Config(
        table="orders",
        lease_table="leases",
        group="billing",
        lease_duration=20.0,
        endpoint_url="http://localhost:8000",
        max_attempts=0,
        failed_queue_url="https://sqs.example/q",
        failed_bucket="bucket",
        failed_file="/tmp/x.jsonl",
        parallelism=4,
        max_workers=8,
        metrics_port=9000,
        unhealthy_iterator_age=600.0,
        log_level="DEBUG",
    )
    assert service.Config.from_env({"DDBSTREAMS_ENDPOINT_URL": ""}) == service.Config()
    documented = set(re.findall(r"^    ([A-Z_]+) ", service.__doc__, re.MULTILINE))
    read = set(re.findall(r'get\("([A-Z_]+)"\)', (DEPLOY / "service.py").read_text()))
    assert documented == read


@pytest.mark.local_endpoint
def test_service_builds_its_consumer_and_delivers_on_the_local_endpoint(
    service_env: dict[str, str], dynamodb: Any, caplog: pytest.LogCaptureFixture
) -> None:
    service = load_service()
    config = service.Config.from_env(service_env)
    consumer = service.build_consumer(config)
    seen = threading.Event()

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("INSERT order"):
                seen.set()

    caplog.set_level("DEBUG", logger="orders_service")
    watcher = Seen()
    service.logger.addHandler(watcher)
    try:
        consumer.start()
        put_order(dynamodb, config.table, "anil@example.com", "2023/01/01#1344")
        assert seen.wait(30), caplog.text
        assert consumer.health().ok, consumer.health()
        assert consumer.stop(timeout=30)
    finally:
        service.logger.removeHandler(watcher)
        consumer.stop(timeout=30)
    store = DynamoDBCheckpointStore(
        config.lease_table, group=config.group, endpoint_url=config.endpoint_url
    )
    assert consumer.stream_arn is not None
    leases = store.leases(consumer.stream_arn)
    assert leases, "the worker wrote no lease"
    assert all(lease.owner is None for lease in leases), leases  # released at the stop
    assert any(lease.checkpoint is not None for lease in leases), leases


@pytest.mark.local_endpoint
def test_a_poison_record_is_set_aside_after_max_attempts(
    service_env: dict[str, str], dynamodb: Any
) -> None:
    service = load_service()
    config = service.Config.from_env({**service_env, "DDBSTREAMS_MAX_ATTEMPTS": "2"})
    consumer = service.build_consumer(config)
    dynamodb.put_item(  # no order_amount: InvalidOrder
        TableName=config.table,
        Item={"email": {"S": "bad@example.com"}, "order_number": {"S": "1"}},
    )
    failed = Path(config.failed_file)
    with consumer:
        deadline = time.monotonic() + 30
        while not failed.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a file for a condition, bounded
    document = json.loads(failed.read_text().splitlines()[0])
    assert document["error_type"].endswith("InvalidOrder")
    assert document["attempts"] == 2
    assert document["records"][0]["dynamodb"]["Keys"]["email"] == {"S": "bad@example.com"}


@pytest.mark.slow
@pytest.mark.local_endpoint
@pytest.mark.timeout(90)
def test_the_service_process_stops_cleanly_on_sigterm_and_exits_0(
    service_env: dict[str, str], dynamodb: Any
) -> None:
    child = subprocess.Popen(
        [sys.executable, str(DEPLOY / "service.py")],
        env={**os.environ, **service_env},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        log = LogWatch(child.stderr)
        log.wait_for(r"worker of group 'orders-service'", 30)
        put_order(dynamodb, service_env["DDBSTREAMS_TABLE"], "anil@example.com", "1344")
        log.wait_for(r"INSERT order", 30)
        child.send_signal(signal.SIGTERM)
        assert child.wait(30) == 0, "".join(log.lines)
        log.wait_for(r"stopped cleanly", 5)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    store = DynamoDBCheckpointStore(
        service_env["DDBSTREAMS_LEASE_TABLE"],
        group="orders-service",
        endpoint_url=service_env["DDBSTREAMS_ENDPOINT_URL"],
    )
    (arn,) = store.streams()
    assert all(lease.owner is None for lease in store.leases(arn))


@pytest.mark.slow
@pytest.mark.local_endpoint
@pytest.mark.timeout(60)
def test_an_error_it_cannot_get_past_is_one_line_and_exit_1(
    service_env: dict[str, str],
) -> None:
    result = subprocess.run(
        [sys.executable, str(DEPLOY / "service.py")],
        env={**os.environ, **service_env, "DDBSTREAMS_TABLE": "no-such-table"},
        capture_output=True,
        text=True,
        timeout=45,
    )
    assert result.returncode == 1, result.stderr
    assert "stopped: TableNotFoundError" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.local_endpoint
def test_metrics_port_without_the_exporter_says_what_to_do(service_env: dict[str, str]) -> None:
    service = load_service()
    config = service.Config.from_env({**service_env, "DDBSTREAMS_METRICS_PORT": "9102"})
    if importlib.util.find_spec("ddbstreams.metrics") is not None:
        pytest.skip("ddbstreams.metrics is installed: covered by the endpoint test below")
    with pytest.raises(Exception, match=r"pip install 'ddbstreams\[prometheus\]'"):
        service.prometheus_metrics(config)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.local_endpoint
@pytest.mark.timeout(90)
def test_the_service_serves_healthz_and_metrics(service_env: dict[str, str]) -> None:
    """/healthz and /metrics of the Prometheus exporter, as the probes and a scraper see them."""
    if importlib.util.find_spec("ddbstreams.metrics") is None:
        pytest.skip("ddbstreams.metrics (the Prometheus exporter) is not in this tree yet")
    pytest.importorskip("prometheus_client", reason="the prometheus extra is not installed")
    port = free_port()
    env = {**os.environ, **service_env, "DDBSTREAMS_METRICS_PORT": str(port)}
    child = subprocess.Popen(
        [sys.executable, str(DEPLOY / "service.py")],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        log = LogWatch(child.stderr)
        log.wait_for(r"worker of group", 30)
        deadline = time.monotonic() + 30
        while True:  # healthy once the stream is described; bounded
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    status, body = r.status, json.loads(r.read())
                break
            except urllib.error.HTTPError as exc:
                if time.monotonic() > deadline:
                    raise AssertionError(f"/healthz stayed {exc.code}") from exc
                time.sleep(0.1)
        assert status == 200
        assert body["status"] in ("healthy", "degraded")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert "ddbstreams_" in r.read().decode()
        child.send_signal(signal.SIGTERM)
        assert child.wait(30) == 0, "".join(log.lines)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


# ------------------------------------------------------------- the manifests agree


def kubernetes_documents() -> list[dict[str, Any]]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (moto brings it)")
    return [d for d in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()) if d]


def test_kubernetes_manifest_parses_and_agrees_with_the_service() -> None:
    documents = kubernetes_documents()
    kinds = {d["kind"]: d for d in documents}
    assert {"ServiceAccount", "ConfigMap", "Deployment"} <= set(kinds)
    account = kinds["ServiceAccount"]
    assert "eks.amazonaws.com/role-arn" in account["metadata"]["annotations"]

    deployment = kinds["Deployment"]
    spec = deployment["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    (container,) = spec["containers"]
    config = kinds["ConfigMap"]["data"]
    service = load_service()
    known = set(re.findall(r'get\("([A-Z_]+)"\)', (DEPLOY / "service.py").read_text()))
    assert set(config) - {"AWS_DEFAULT_REGION"} <= known, set(config) - known
    assert not any("SECRET" in name or "ACCESS_KEY" in name for name in config)
    assert not any(
        "SECRET" in e["name"] or "ACCESS_KEY" in e["name"] for e in container.get("env", [])
    )

    port = int(config["DDBSTREAMS_METRICS_PORT"])
    assert {"containerPort": port, "name": "metrics"} in [
        {k: p[k] for k in ("containerPort", "name")} for p in container["ports"]
    ]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe
    liveness = container["livenessProbe"]
    # a restart must not come faster than failing shards are declared failing
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 120

    # the grace period covers a handler call, the final checkpoints and the lease release:
    # never less than Kubernetes' default
    assert spec["terminationGracePeriodSeconds"] >= 30
    assert service.Config.from_env(config).group == config["DDBSTREAMS_GROUP"]
    assert deployment["spec"]["replicas"] >= 2
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_dockerfile_runs_the_service_in_exec_form() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    (cmd,) = re.findall(r"^CMD (.*)$", text, re.MULTILINE)
    # exec form: python is PID 1 and receives SIGTERM itself (a shell would not pass it on)
    assert json.loads(cmd) == ["python", "/app/service.py"]
    assert re.search(r"^USER \d+", text, re.MULTILINE), "runs as an unprivileged user"
    assert "AWS_SECRET_ACCESS_KEY" not in text and "AWS_ACCESS_KEY_ID" not in text
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.MULTILINE):
        assert (DEPLOY.parent.parent / source).exists(), source


def test_systemd_unit_stops_with_sigterm_and_restarts_on_failure() -> None:
    unit = (DEPLOY / "orders-service.service").read_text()
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0] != "#"
    )
    assert settings["Restart"] == "on-failure"
    assert settings.get("KillSignal", "SIGTERM") == "SIGTERM"
    assert int(settings["TimeoutStopSec"]) >= 30
    assert settings["ExecStart"].endswith("service.py")
    assert "AWS_SECRET_ACCESS_KEY" not in unit
    # systemd has no comments after a value: it would become part of the value
    assert not [value for value in settings.values() if "#" in value]
    # what docs/deployment.md shows of the unit is in the unit
    guide = (DEPLOY.parent.parent / "docs" / "deployment.md").read_text()
    (shown,) = re.findall(r"```ini\n(.*?)```", guide, re.DOTALL)
    for line in shown.splitlines():
        if "=" in line and not line.startswith("#"):
            assert line in unit.splitlines(), line


def test_service_module_names_no_credentials() -> None:
    text = (DEPLOY / "service.py").read_text()
    assert "aws_access_key_id" not in text and "aws_secret_access_key" not in text
