"""Shared fixtures: the embedded local endpoint over real HTTP, and order tables on it."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from ddbstreams import ConsumerSettings
from ddbstreams.testing import LocalEndpoint, create_order_table

FAST = ConsumerSettings(poll_interval=0.02, checkpoint_interval=0.2, handler_retry_initial=0.01)
_table_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def local_endpoint() -> Iterator[LocalEndpoint]:
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
