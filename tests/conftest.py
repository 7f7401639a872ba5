"""Shared fixtures: the embedded local endpoint over real HTTP, and order tables on it.

By default the integration tests start moto's server (``LocalEndpoint``). With
``DDBSTREAMS_TEST_ENDPOINT_URL`` set they talk to that endpoint instead (``nox -s compat``
points it at MiniStack, and sets ``DDBSTREAMS_TEST_SERVER=ministack``); tests marked
``moto_only`` are then skipped, with their reason.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from hypothesis import settings as hypothesis_settings

from ddbstreams import ConsumerSettings
from ddbstreams.testing import LocalEndpoint, create_order_table

ENDPOINT_URL = os.environ.get("DDBSTREAMS_TEST_ENDPOINT_URL")
SERVER = os.environ.get("DDBSTREAMS_TEST_SERVER", "external" if ENDPOINT_URL else "moto")

# A suite run draws the same examples every time, so it never passes or fails by luck;
# `HYPOTHESIS_PROFILE=explore` draws new ones to hunt for cases the fixed ones miss.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", derandomize=False, database=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

FAST = ConsumerSettings(poll_interval=0.02, checkpoint_interval=0.2, handler_retry_initial=0.01)
_table_numbers = itertools.count(1)


class ExternalEndpoint:
    """An endpoint someone else started: what the tests use of ``LocalEndpoint``."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def client_kwargs(self) -> dict[str, str]:
        return {
            "endpoint_url": self.url,
            "region_name": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if ENDPOINT_URL is None:
        return
    for item in items:
        marker = item.get_closest_marker("moto_only")
        if marker is not None:
            reason = marker.kwargs.get("reason", "relies on moto's server")
            item.add_marker(pytest.mark.skip(reason=f"moto only: {reason}"))


@pytest.fixture(scope="session")
def local_endpoint() -> Iterator[LocalEndpoint | ExternalEndpoint]:
    if ENDPOINT_URL is not None:
        yield ExternalEndpoint(ENDPOINT_URL)
        return
    with LocalEndpoint("127.0.0.1", 0) as endpoint:
        yield endpoint


@pytest.fixture(autouse=True)
def _dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def dynamodb(local_endpoint: LocalEndpoint) -> Any:
    return boto3.client("dynamodb", **local_endpoint.client_kwargs())


@pytest.fixture
def order_table(dynamodb: Any) -> Iterator[str]:
    """A fresh example-customer-order-table (unique name) with a NEW_AND_OLD_IMAGES stream."""
    name = f"example-customer-order-table-{os.getpid()}-{next(_table_numbers)}"
    create_order_table(dynamodb, name)
    yield name
    dynamodb.delete_table(TableName=name)


def put_order(dynamodb: Any, table: str, email: str, number: str, amount: int = 234) -> None:
    dynamodb.put_item(
        TableName=table,
        Item={
            "email": {"S": email},
            "order_number": {"S": number},
            "order_amount": {"N": str(amount)},
            "order_status": {"S": "pending"},
        },
    )


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A web server on a free local port answering with ``handler`` (a fake endpoint that
    misbehaves on purpose) for the block; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
