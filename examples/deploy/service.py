"""A long-lived consumer of the exercise's order table, as a container or systemd runs it.

One process is one worker of a consumer group (``DynamoDBCheckpointStore``): start as many
as you like, on any hosts; they share the stream's shards. Everything is set by environment
variables, so one image serves every environment:

    DDBSTREAMS_TABLE            the table whose stream is read (example-customer-order-table)
    DDBSTREAMS_LEASE_TABLE      the lease table, created on first use (orders-consumers)
    DDBSTREAMS_GROUP            the consumer group (orders-service)
    DDBSTREAMS_LEASE_DURATION   seconds without a heartbeat before a worker's shards move (10)
    DDBSTREAMS_ENDPOINT_URL     a local endpoint (http://localhost:8000); unset: AWS itself
    DDBSTREAMS_MAX_ATTEMPTS     handler calls a record gets before it goes to the failed
                                records (5); 0: retry forever (the shard waits for it)
    DDBSTREAMS_FAILED_QUEUE_URL an SQS queue for the failed records...
    DDBSTREAMS_FAILED_BUCKET    ...with an S3 bucket for records too large for a message
    DDBSTREAMS_FAILED_FILE      without a queue, a JSON Lines file (failed-orders.jsonl)
    DDBSTREAMS_PARALLELISM      items handled at once per shard (1)
    DDBSTREAMS_MAX_WORKERS      shards read at once by this process (16)
    DDBSTREAMS_METRICS_PORT     /metrics and /healthz on this port (9102); 0: none
    DDBSTREAMS_UNHEALTHY_ITERATOR_AGE  seconds of lag after which /healthz says failing
    LOG_LEVEL                   INFO (DEBUG logs one line per order)

Credentials and region come from boto3's usual chain (an instance role, IRSA, an ECS task
role, AWS_DEFAULT_REGION): none are read or written here. SIGTERM (or Ctrl-C) stops the
worker cleanly: handler calls in progress finish, checkpoints are written, leases released;
then the process exits 0. An error it cannot get past (the stream disabled and drained,
records trimmed, no permission...) is logged in one line and the process exits 1.

    python examples/deploy/service.py
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ddbstreams
from ddbstreams.destinations import JSONLinesDestination, SQSDestination

logger = logging.getLogger("orders_service")


class InvalidOrder(Exception):
    """An order the service cannot handle: after DDBSTREAMS_MAX_ATTEMPTS it is set aside."""


def handle(record: ddbstreams.Record) -> None:
    """Handle one change of the order table. Idempotent: a record may come twice."""
    keys = record.keys
    order = record.new_image
    if order is not None and "order_amount" not in order:
        raise InvalidOrder(f"order {keys} has no order_amount")
    status = (order or record.old_image or {}).get("order_status")
    logger.debug("%s order %s status=%s", record.event_name, keys, status)


@dataclass(frozen=True)
class Config:
    """The service's settings, read from environment variables (see the module's doc)."""

    table: str = "example-customer-order-table"
    lease_table: str = "orders-consumers"
    group: str = "orders-service"
    lease_duration: float = 10.0
    endpoint_url: str | None = None
    max_attempts: int = 5
    failed_queue_url: str | None = None
    failed_bucket: str | None = None
    failed_file: str = "failed-orders.jsonl"
    parallelism: int = 1
    max_workers: int = 16
    metrics_port: int = 9102
    unhealthy_iterator_age: float | None = None
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        def get(name: str) -> str | None:
            return env.get(name) or None  # an empty variable counts as unset

        defaults = cls()
        age = get("DDBSTREAMS_UNHEALTHY_ITERATOR_AGE")
        return cls(
            table=get("DDBSTREAMS_TABLE") or defaults.table,
            lease_table=get("DDBSTREAMS_LEASE_TABLE") or defaults.lease_table,
            group=get("DDBSTREAMS_GROUP") or defaults.group,
            lease_duration=float(get("DDBSTREAMS_LEASE_DURATION") or defaults.lease_duration),
            endpoint_url=get("DDBSTREAMS_ENDPOINT_URL"),
            max_attempts=int(get("DDBSTREAMS_MAX_ATTEMPTS") or defaults.max_attempts),
            failed_queue_url=get("DDBSTREAMS_FAILED_QUEUE_URL"),
            failed_bucket=get("DDBSTREAMS_FAILED_BUCKET"),
            failed_file=get("DDBSTREAMS_FAILED_FILE") or defaults.failed_file,
            parallelism=int(get("DDBSTREAMS_PARALLELISM") or defaults.parallelism),
            max_workers=int(get("DDBSTREAMS_MAX_WORKERS") or defaults.max_workers),
            metrics_port=int(get("DDBSTREAMS_METRICS_PORT") or defaults.metrics_port),
            unhealthy_iterator_age=float(age) if age else None,
            log_level=(get("LOG_LEVEL") or defaults.log_level).upper(),
        )


def failure_destination(config: Config) -> Any:
    """Where records go once DDBSTREAMS_MAX_ATTEMPTS calls failed: SQS, or a local file."""
    if config.failed_queue_url:
        return SQSDestination(
            config.failed_queue_url,
            s3_bucket=config.failed_bucket,
            endpoint_url=config.endpoint_url,
        )
    return JSONLinesDestination(config.failed_file)


def prometheus_metrics(config: Config) -> Any:
    """The Prometheus exporter (``ddbstreams[prometheus]``), or None with port 0."""
    if not config.metrics_port:
        return None
    try:
        from ddbstreams.metrics import PrometheusMetrics
    except ImportError as exc:
        raise ddbstreams.ConfigurationError(
            f"DDBSTREAMS_METRICS_PORT={config.metrics_port} needs the Prometheus exporter: "
            "pip install 'ddbstreams[prometheus]', or set DDBSTREAMS_METRICS_PORT=0"
        ) from exc
    return PrometheusMetrics()


def build_consumer(config: Config, metrics: Any = None) -> ddbstreams.StreamConsumer:
    """One worker of the group, not started yet."""
    store = ddbstreams.DynamoDBCheckpointStore(
        config.lease_table,
        group=config.group,
        lease_duration=config.lease_duration,
        endpoint_url=config.endpoint_url,
    )
    settings: dict[str, Any] = {"max_workers": config.max_workers}
    if config.unhealthy_iterator_age is not None:
        settings["unhealthy_iterator_age"] = config.unhealthy_iterator_age
    extra: dict[str, Any] = {}
    if metrics is not None:  # only passed when used, so that port 0 needs no exporter
        extra["metrics"] = metrics
    if config.max_attempts > 0:
        extra["retry"] = ddbstreams.RetryPolicy(max_attempts=config.max_attempts)
        extra["on_failure"] = failure_destination(config)
    return ddbstreams.StreamConsumer(
        handle,
        table_name=config.table,
        checkpoint_store=store,
        endpoint_url=config.endpoint_url,
        settings=ddbstreams.ConsumerSettings(**settings),
        parallelism=config.parallelism,
        **extra,
    )


def configure_logging(level: str) -> None:
    """One line per event on stderr. ddbstreams masks credentials in its own log lines;
    botocore stays at WARNING (its DEBUG output shows request headers)."""
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    for name in ("botocore", "boto3", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(env: Mapping[str, str] = os.environ) -> int:
    config = Config.from_env(env)
    configure_logging(config.log_level)
    try:
        metrics = prometheus_metrics(config)
        consumer = build_consumer(config, metrics)
        if metrics is not None:
            metrics.serve(config.metrics_port, consumer)
            logger.info("serving /metrics and /healthz on port %d", config.metrics_port)
        logger.info(
            "worker of group %r on the stream of %r (lease table %r)",
            config.group,
            config.table,
            config.lease_table,
        )
        consumer.run()  # until SIGTERM / Ctrl-C, after which checkpoints are written
    except ddbstreams.DDBStreamsError as exc:
        logger.error("stopped: %s: %s", type(exc).__name__, exc)
        return 1
    logger.info("stopped cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
