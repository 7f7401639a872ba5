"""What the exercise's scripts share: the table name, the clients, the command-line options."""

from __future__ import annotations

import argparse
import os
from typing import Any

import boto3

TABLE_NAME = "example-customer-order-table"
LOCAL_ENDPOINT = "http://localhost:8000"


def options(description: str) -> argparse.ArgumentParser:
    """--endpoint-url (default: the local endpoint; 'aws' for real AWS) and --table."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--endpoint-url",
        default=LOCAL_ENDPOINT,
        help=f"the endpoint (default {LOCAL_ENDPOINT}); pass 'aws' to use AWS itself",
    )
    parser.add_argument("--table", default=TABLE_NAME, help=f"the table (default {TABLE_NAME})")
    return parser


def endpoint(args: argparse.Namespace) -> str | None:
    """None means AWS itself, with the usual credential and region lookup."""
    return None if args.endpoint_url == "aws" else args.endpoint_url


def use_dummy_credentials_for(endpoint_url: str | None) -> None:
    """A local endpoint accepts any credentials: provide some unless real ones are set."""
    if endpoint_url is not None:
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def dynamodb_client(endpoint_url: str | None) -> Any:
    use_dummy_credentials_for(endpoint_url)
    return boto3.client("dynamodb", endpoint_url=endpoint_url)
