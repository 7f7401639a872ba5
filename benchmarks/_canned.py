"""Canned DynamoDB Streams answers served through botocore's real client stack.

A ``before-send`` handler answers each call with a prepared body, so request building,
signing, response handling and parsing all run as they would against AWS; only the network
is left out.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

STREAM_ARN = (
    "arn:aws:dynamodb:us-east-1:123456789012:table/example-customer-order-table"
    "/stream/2026-01-01T00:00:00.000"
)
SHARD_ID = "shardId-00000001700000000000-bench000"


def order_image(n: int, status: str, nested: bool = True) -> dict[str, Any]:
    """An order of the exercise, plus (``nested``) a map/list/set attribute."""
    order = {
        "email": {"S": f"customer{n % 997}@example.com"},
        "order_number": {"S": f"2023/01/01#{n:06d}"},
        "order_amount": {"N": str(100 + n % 900)},
        "order_status": {"S": status},
        "details": {
            "M": {
                "lines": {
                    "L": [
                        {"M": {"sku": {"S": f"SKU-{n % 50:04d}"}, "qty": {"N": "2"}}},
                    ]
                },
                "tags": {"SS": ["gift", f"region-{n % 5}"]},
                "paid": {"BOOL": True},
            }
        },
    }
    if not nested:
        del order["details"]
    return order


def records_page(
    first_sequence: int, count: int, view_type: str, nested: bool
) -> list[dict[str, Any]]:
    records = []
    rng = random.Random(first_sequence)
    for i in range(count):
        n = first_sequence + i
        keys = {k: v for k, v in order_image(n, "").items() if k in ("email", "order_number")}
        stream: dict[str, Any] = {
            "ApproximateCreationDateTime": 1767225600.0 + i,
            "Keys": keys,
            "SequenceNumber": str(10**20 + n),
            "SizeBytes": 300 + rng.randrange(100),
            "StreamViewType": view_type,
        }
        if view_type == "NEW_AND_OLD_IMAGES":
            stream["NewImage"] = order_image(n, "shipped", nested)
            stream["OldImage"] = order_image(n, "pending", nested)
        records.append(
            {
                "eventID": f"{n:032x}",
                "eventName": "MODIFY",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": stream,
            }
        )
    return records


def get_records_bodies(
    pages: int, per_page: int, view_type: str, nested: bool = True
) -> list[bytes]:
    """``pages`` GetRecords bodies; the last one ends the shard (no NextShardIterator)."""
    bodies = []
    for page in range(pages):
        records = records_page(page * per_page, per_page, view_type, nested)
        body: dict[str, Any] = {"Records": records}
        if page < pages - 1:
            body["NextShardIterator"] = f"iterator-{page + 1}"
        bodies.append(json.dumps(body).encode())
    return bodies


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


class CannedStream:
    """A stream of one shard whose GetRecords pages are ``bodies``.

    By default the stream is disabled and its shard closed: reading ends after the last
    body. ``endless=True`` keeps the shard open and serves the bodies round and round.
    """

    def __init__(self, bodies: list[bytes], *, endless: bool = False) -> None:
        self.bodies = bodies[:-1] if endless else bodies
        self.endless = endless
        self.next_page = 0
        self._client = boto3.client(
            "dynamodbstreams",
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        self._client.meta.events.register("before-send.dynamodb-streams", self.answer)

    def answer(self, request: Any, **_: Any) -> AWSResponse:
        operation = request.headers["X-Amz-Target"].decode().split(".")[-1]
        if operation == "GetRecords":
            body = self.bodies[self.next_page]
            if self.endless:
                self.next_page = (self.next_page + 1) % len(self.bodies)
            else:
                self.next_page = min(self.next_page + 1, len(self.bodies) - 1)
        elif operation == "GetShardIterator":
            self.next_page = 0
            body = json.dumps({"ShardIterator": "iterator-0"}).encode()
        elif operation == "DescribeStream":
            body = json.dumps(
                {
                    "StreamDescription": {
                        "StreamArn": STREAM_ARN,
                        "StreamStatus": "ENABLED" if self.endless else "DISABLED",
                        "StreamViewType": "NEW_AND_OLD_IMAGES",
                        "Shards": [
                            {
                                "ShardId": SHARD_ID,
                                "SequenceNumberRange": self._sequence_range(),
                            }
                        ],
                    }
                }
            ).encode()
        else:
            raise AssertionError(operation)
        headers = {"content-type": "application/x-amz-json-1.0", "x-amzn-requestid": "bench"}
        return AWSResponse(request.url, 200, headers, _Raw(body))

    def _sequence_range(self) -> dict[str, str]:
        if self.endless:
            return {"StartingSequenceNumber": str(10**20)}
        return {"StartingSequenceNumber": str(10**20), "EndingSequenceNumber": str(10**21)}

    def client(self) -> Any:
        """A real boto3 dynamodbstreams client whose calls this stream answers."""
        return self._client
