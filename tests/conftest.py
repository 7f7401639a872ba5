"""Shared fixtures: the embedded local endpoint over real HTTP, and order tables on it."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from ddbstreams import ConsumerSettings
from ddbstreams.testing import LocalEndpoint

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


def create_order_table(dynamodb: Any, name: str, stream_view_type: str | None) -> str:
    """The exercise's table: email HASH, order_number RANGE; a stream if a view type is given."""
    kwargs: dict[str, Any] = {}
    if stream_view_type:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream_view_type}
    dynamodb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "email", "KeyType": "HASH"},
            {"AttributeName": "order_number", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "email", "AttributeType": "S"},
            {"AttributeName": "order_number", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
        **kwargs,
    )
    return name


@pytest.fixture
def order_table(dynamodb: Any) -> Iterator[str]:
    """A fresh example-customer-order-table (unique name) with a NEW_AND_OLD_IMAGES stream."""
    name = f"example-customer-order-table-{os.getpid()}-{next(_table_numbers)}"
    create_order_table(dynamodb, name, "NEW_AND_OLD_IMAGES")
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
