"""Test your handlers, and ddbstreams itself, without AWS.

- :class:`StreamSimulator`: an in-memory DynamoDB Stream that a :class:`StreamConsumer`
  reads in place of the AWS client (``StreamConsumer(..., client=simulator)``). It models
  what no local server does: many shards, rollover and splits with parent/child lineage,
  more than 100 shards (paged ``DescribeStream``), sequence numbers that change length,
  iterator expiry, the 24 h trimming, throttling and injected faults. Time is a virtual
  clock that only moves when you call :meth:`StreamSimulator.advance`, so runs are
  deterministic.
- :class:`RecordCollector`: a thread-safe handler that keeps what it receives and lets a
  test wait for it.
- :class:`LocalEndpoint`: the embedded local endpoint (moto's server; the ``local`` extra)
  on a loopback port, for tests over real HTTP; :func:`create_order_table` makes the
  exercise's table on it (or on any endpoint).

Example::

    sim = StreamSimulator(shard_count=4)
    collector = RecordCollector()
    consumer = StreamConsumer(collector, stream_arn=sim.stream_arn, client=sim)
    with consumer:
        sim.insert({"email": "a@example.com", "order_number": "1", "order_amount": 5})
        collector.wait_for(1)
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import itertools
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.types import Binary, TypeSerializer
from botocore.exceptions import ClientError, EndpointConnectionError

from ._local import LocalEndpoint
from ._records import Record
from ._simserver import SimulatorServer

__all__ = [
    "LocalEndpoint",
    "RecordCollector",
    "SimulatorServer",
    "StreamSimulator",
    "create_order_table",
]

_HASH_SPACE = 2**32
_MAX_DESCRIBE_PAGE = 100
_EVENTS_KEPT = 100_000


@dataclass
class _SimShard:
    shard_id: str
    parent_shard_id: str | None
    hash_low: int
    hash_high: int
    starting_sequence_number: int
    ending_sequence_number: int | None = None
    closed_at: float | None = None
    # (sequence number, virtual time written, wire record)
    records: list[tuple[int, float, dict[str, Any]]] = field(default_factory=list)

    @property
    def closed(self) -> bool:
        return self.ending_sequence_number is not None


@dataclass
class _Iterator:
    shard_id: str
    position: int  # index into _SimShard.records of the next record to return
    issued_at: float


class StreamSimulator:
    """An in-memory DynamoDB Stream of one table, with the ``dynamodbstreams`` client API.

    It answers ``describe_stream``, ``get_shard_iterator``, ``get_records`` (records in
    wire form, as on the network) and ``describe_table`` like the service does, raising
    ``botocore.exceptions.ClientError`` with the service's error codes. Thread-safe.

    Args:
        table_name: the table whose stream this is.
        key_names: the primary key attribute names (hash key, then range key if any).
        stream_view_type: KEYS_ONLY, NEW_IMAGE, OLD_IMAGE or NEW_AND_OLD_IMAGES.
        shard_count: how many open shards the stream starts with.
        first_sequence_number: the first sequence number given out (default 21 digits).
            Start just below a power of ten to see sequence numbers change length.
        sequence_step: how much each new sequence number exceeds the previous one.
        iterator_ttl: seconds of virtual time a shard iterator stays valid (900).
        retention: seconds of virtual time records are kept before trimming (86400).
        describe_page_size: shards per ``DescribeStream`` page (at most 100, as AWS).
        records_with_end: when a closed shard's last page is read, answer it without a
            ``NextShardIterator`` at once (True) or with one more empty page (False).
    """

    def __init__(
        self,
        *,
        table_name: str = "example-customer-order-table",
        key_names: tuple[str, ...] = ("email", "order_number"),
        stream_view_type: str = "NEW_AND_OLD_IMAGES",
        shard_count: int = 1,
        first_sequence_number: int = 10**20,
        sequence_step: int = 1,
        iterator_ttl: float = 900.0,
        retention: float = 86400.0,
        describe_page_size: int = _MAX_DESCRIBE_PAGE,
        records_with_end: bool = True,
        region: str = "us-east-1",
        account_id: str = "123456789012",
    ) -> None:
        if shard_count < 1:
            raise ValueError("shard_count must be at least 1")
        self.table_name = table_name
        self.key_names = key_names
        self.stream_view_type = stream_view_type
        self.region = region
        self.stream_label = "2026-01-01T00:00:00.000"
        self.stream_arn = (
            f"arn:aws:dynamodb:{region}:{account_id}:table/{table_name}/stream/{self.stream_label}"
        )
        self.status = "ENABLED"
        self.iterator_ttl = iterator_ttl
        self.retention = retention
        self.describe_page_size = min(describe_page_size, _MAX_DESCRIBE_PAGE)
        self.records_with_end = records_with_end
        self.now = 0.0
        self.calls: Counter[str] = Counter()
        # The latest calls in order: (operation, shard id or None, detail); see note().
        self.events: deque[tuple[str, str | None, Any]] = deque(maxlen=_EVENTS_KEPT)
        self._wall_clock_origin = time.time()
        self._next_sequence_number = first_sequence_number
        self._sequence_step = sequence_step
        self._shard_numbers = itertools.count(1)
        self._iterator_numbers = itertools.count(1)
        self._shards: dict[str, _SimShard] = {}
        # open shards sorted by the start of their hash range, for routing writes
        self._open_by_range: tuple[list[int], list[_SimShard]] | None = None
        self._iterators: dict[str, _Iterator] = {}
        self._faults: dict[str, deque[tuple[str, str]]] = {}
        self._serializer = TypeSerializer()
        self._lock = threading.RLock()
        width = _HASH_SPACE // shard_count
        for index in range(shard_count):
            high = _HASH_SPACE if index == shard_count - 1 else (index + 1) * width
            self._new_shard(None, index * width, high)

    # ----------------------------------------------------------------- writing the table

    def insert(self, item: Mapping[str, Any]) -> str:
        """Record an INSERT of ``item``; returns its sequence number."""
        return self.write("INSERT", keys=self._keys_of(item), new_image=item)

    def modify(self, old_item: Mapping[str, Any], new_item: Mapping[str, Any]) -> str:
        """Record a MODIFY from ``old_item`` to ``new_item``; returns its sequence number."""
        return self.write(
            "MODIFY", keys=self._keys_of(new_item), new_image=new_item, old_image=old_item
        )

    def remove(self, old_item: Mapping[str, Any], *, ttl: bool = False) -> str:
        """Record a REMOVE of ``old_item`` (``ttl=True``: deleted by Time to Live)."""
        return self.write("REMOVE", keys=self._keys_of(old_item), old_image=old_item, ttl=ttl)

    def write(
        self,
        event_name: str,
        *,
        keys: Mapping[str, Any],
        new_image: Mapping[str, Any] | None = None,
        old_image: Mapping[str, Any] | None = None,
        ttl: bool = False,
    ) -> str:
        """Append one record to the open shard that owns ``keys``; images are Python values."""
        with self._lock:
            if self.status != "ENABLED":
                raise RuntimeError("the stream is disabled: writes no longer reach it")
            shard = self._shard_for(keys)
            sequence_number = self._next_sequence_number
            self._next_sequence_number += self._sequence_step
            wire_keys = self._wire(keys)
            stream: dict[str, Any] = {
                "ApproximateCreationDateTime": round(self._wall_clock_origin + self.now, 3),
                "Keys": wire_keys,
                "SequenceNumber": str(sequence_number),
                "StreamViewType": self.stream_view_type,
            }
            if new_image is not None and self.stream_view_type in (
                "NEW_IMAGE",
                "NEW_AND_OLD_IMAGES",
            ):
                stream["NewImage"] = self._wire(new_image)
            if old_image is not None and self.stream_view_type in (
                "OLD_IMAGE",
                "NEW_AND_OLD_IMAGES",
            ):
                stream["OldImage"] = self._wire(old_image)
            stream["SizeBytes"] = len(repr(stream))
            record: dict[str, Any] = {
                "eventID": hashlib.sha1(str(sequence_number).encode()).hexdigest()[:32],
                "eventName": event_name,
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": self.region,
                "dynamodb": stream,
            }
            if ttl:
                record["userIdentity"] = {
                    "Type": "Service",
                    "PrincipalId": "dynamodb.amazonaws.com",
                }
            shard.records.append((sequence_number, self.now, record))
            return str(sequence_number)

    # ------------------------------------------------------------- changing the stream

    def open_shard_ids(self) -> list[str]:
        """Ids of the shards that still take writes."""
        with self._lock:
            return [s.shard_id for s in self._shards.values() if not s.closed]

    def rollover(self, shard_id: str | None = None) -> list[str]:
        """Close ``shard_id`` (default: every open shard), each replaced by one child."""
        with self._lock:
            targets = [shard_id] if shard_id else self.open_shard_ids()
            children = []
            for target in targets:
                parent = self._close(target)
                children.append(self._new_shard(target, parent.hash_low, parent.hash_high))
            return [child.shard_id for child in children]

    def split(self, shard_id: str) -> list[str]:
        """Close ``shard_id`` and give its keys to two children."""
        with self._lock:
            parent = self._close(shard_id)
            middle = (parent.hash_low + parent.hash_high) // 2
            left = self._new_shard(shard_id, parent.hash_low, middle)
            right = self._new_shard(shard_id, middle, parent.hash_high)
            return [left.shard_id, right.shard_id]

    def disable(self) -> None:
        """Disable the stream: every open shard closes; records stay readable."""
        with self._lock:
            for shard_id in self.open_shard_ids():
                self._close(shard_id)
            self.status = "DISABLED"

    def advance(self, seconds: float) -> None:
        """Move the virtual clock: iterators expire, old records are trimmed."""
        with self._lock:
            self.now += seconds

    def expire_iterators(self) -> None:
        """Make every shard iterator handed out so far expired."""
        with self._lock:
            for iterator in self._iterators.values():
                iterator.issued_at = -float("inf")

    def inject(self, operation: str, error_code: str, *, times: int = 1, message: str = "") -> None:
        """Make the next ``times`` calls of ``operation`` (e.g. ``"GetRecords"``) fail.

        ``error_code`` is a service error code (``LimitExceededException``,
        ``InternalServerError``, ...) or ``"ConnectionError"`` for a connection failure.
        """
        with self._lock:
            queue = self._faults.setdefault(operation, deque())
            queue.extend([(error_code, message or f"injected {error_code}")] * times)

    def throttle(self, operation: str = "GetRecords", *, times: int = 1) -> None:
        """Shorthand for ``inject(operation, "LimitExceededException", times=times)``."""
        self.inject(operation, "LimitExceededException", times=times)

    def note(self, event: str, shard_id: str | None = None, detail: Any = None) -> None:
        """Add an event of your own (a checkpoint saved, say) to :attr:`events`, in order
        with the calls the simulator logs there, so a test can check what came first."""
        with self._lock:
            self.events.append((event, shard_id, detail))

    def wall_time(self) -> float:
        """The simulator's wall-clock time (UNIX seconds), as in ApproximateCreationDateTime.

        A consumer given ``client=simulator`` takes its wall clock from here, so that
        virtual time moves it too (it pins LATEST starts by time)."""
        with self._lock:
            return self._wall_clock_origin + self.now

    def records(self, shard_id: str) -> list[dict[str, Any]]:
        """Every record ever written to a shard, trimmed ones included (wire form)."""
        with self._lock:
            return [record for _, _, record in self._shards[shard_id].records]

    # ------------------------------------------------------------------- the client API

    def describe_table(self, *, TableName: str) -> dict[str, Any]:
        with self._lock:
            self._call("DescribeTable")
            if TableName != self.table_name:
                raise _client_error(
                    "ResourceNotFoundException",
                    f"Requested resource not found: Table: {TableName} not found",
                    "DescribeTable",
                )
            return {
                "Table": {
                    "TableName": self.table_name,
                    "TableStatus": "ACTIVE",
                    "LatestStreamArn": self.stream_arn,
                    "LatestStreamLabel": self.stream_label,
                    "StreamSpecification": {
                        "StreamEnabled": self.status == "ENABLED",
                        "StreamViewType": self.stream_view_type,
                    },
                }
            }

    def describe_stream(
        self,
        *,
        StreamArn: str,
        Limit: int = _MAX_DESCRIBE_PAGE,
        ExclusiveStartShardId: str | None = None,
        ShardFilter: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            self._call("DescribeStream", None, ShardFilter and ShardFilter.get("Type"))
            self._check_arn(StreamArn, "DescribeStream")
            listed = [s for s in self._shards.values() if not self._gone(s)]
            if ShardFilter is not None:
                if ShardFilter.get("Type") != "CHILD_SHARDS" or not ShardFilter.get("ShardId"):
                    raise _client_error(
                        "ValidationException",
                        f"invalid ShardFilter {ShardFilter}",
                        "DescribeStream",
                    )
                listed = [s for s in listed if s.parent_shard_id == ShardFilter["ShardId"]]
            start = 0
            if ExclusiveStartShardId is not None:
                ids = [s.shard_id for s in listed]
                start = ids.index(ExclusiveStartShardId) + 1 if ExclusiveStartShardId in ids else 0
            size = min(Limit, self.describe_page_size)
            page = listed[start : start + size]
            description: dict[str, Any] = {
                "StreamArn": self.stream_arn,
                "StreamLabel": self.stream_label,
                "StreamStatus": self.status,
                "StreamViewType": self.stream_view_type,
                "TableName": self.table_name,
                "Shards": [self._describe(s) for s in page],
            }
            if start + size < len(listed):
                description["LastEvaluatedShardId"] = page[-1].shard_id
            return {"StreamDescription": description}

    def get_shard_iterator(
        self,
        *,
        StreamArn: str,
        ShardId: str,
        ShardIteratorType: str,
        SequenceNumber: str | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            self._call("GetShardIterator", ShardId, ShardIteratorType)
            self._check_arn(StreamArn, "GetShardIterator")
            shard = self._shards.get(ShardId)
            if shard is None or self._gone(shard):
                raise _client_error(
                    "ResourceNotFoundException", f"Shard {ShardId} not found", "GetShardIterator"
                )
            first_kept = self._first_kept_index(shard)
            if ShardIteratorType == "TRIM_HORIZON":
                position = first_kept
            elif ShardIteratorType == "LATEST":
                position = len(shard.records)
            elif ShardIteratorType in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
                if SequenceNumber is None or not SequenceNumber.isdigit():
                    raise _client_error(
                        "ValidationException", "SequenceNumber is required", "GetShardIterator"
                    )
                wanted = int(SequenceNumber)
                position = self._position_of(shard, wanted, ShardIteratorType)
                if position < first_kept:
                    raise _client_error(
                        "TrimmedDataAccessException",
                        f"sequence number {SequenceNumber} is beyond the trim horizon",
                        "GetShardIterator",
                    )
            else:
                raise _client_error(
                    "ValidationException",
                    f"invalid ShardIteratorType {ShardIteratorType}",
                    "GetShardIterator",
                )
            return {"ShardIterator": self._issue(shard.shard_id, position)}

    def get_records(self, *, ShardIterator: str, Limit: int = 1000) -> dict[str, Any]:
        with self._lock:
            iterator = self._iterators.get(ShardIterator)
            self._call("GetRecords", iterator.shard_id if iterator else None)
            if iterator is None:
                if ShardIterator.startswith("sim-iterator-"):  # one forgotten since it expired
                    raise _client_error(
                        "ExpiredIteratorException", "Iterator expired", "GetRecords"
                    )
                raise _client_error("ValidationException", "Invalid ShardIterator", "GetRecords")
            if self.now - iterator.issued_at > self.iterator_ttl:
                raise _client_error("ExpiredIteratorException", "Iterator expired", "GetRecords")
            shard = self._shards[iterator.shard_id]
            if iterator.position < self._first_kept_index(shard):
                raise _client_error(
                    "TrimmedDataAccessException",
                    "the requested records are beyond the trim horizon",
                    "GetRecords",
                )
            end = min(iterator.position + max(1, min(Limit, 1000)), len(shard.records))
            page = [record for _, _, record in shard.records[iterator.position : end]]
            response: dict[str, Any] = {"Records": page}
            drained = end >= len(shard.records)
            if shard.closed and drained and (self.records_with_end or not page):
                return response
            response["NextShardIterator"] = self._issue(shard.shard_id, end)
            return response

    # -------------------------------------------------------------------- internals

    def _call(self, operation: str, shard_id: str | None = None, detail: Any = None) -> None:
        self.calls[operation] += 1
        self.events.append((operation, shard_id, detail))
        queue = self._faults.get(operation)
        if queue:
            code, message = queue.popleft()
            if code == "ConnectionError":
                raise EndpointConnectionError(endpoint_url="http://simulator.invalid")
            raise _client_error(code, message, operation)

    def _check_arn(self, stream_arn: str, operation: str) -> None:
        if stream_arn != self.stream_arn:
            raise _client_error(
                "ResourceNotFoundException",
                f"Requested resource not found: {stream_arn}",
                operation,
            )

    def _new_shard(self, parent: str | None, low: int, high: int) -> _SimShard:
        number = next(self._shard_numbers)
        shard = _SimShard(
            shard_id=f"shardId-{number:020d}-{hashlib.sha1(str(number).encode()).hexdigest()[:8]}",
            parent_shard_id=parent,
            hash_low=low,
            hash_high=high,
            starting_sequence_number=self._next_sequence_number,
        )
        self._shards[shard.shard_id] = shard
        self._open_by_range = None
        return shard

    def _close(self, shard_id: str) -> _SimShard:
        shard = self._shards[shard_id]
        if shard.closed:
            raise ValueError(f"shard {shard_id} is already closed")
        last = shard.records[-1][0] if shard.records else shard.starting_sequence_number
        shard.ending_sequence_number = last
        shard.closed_at = self.now
        self._open_by_range = None
        return shard

    def _shard_for(self, keys: Mapping[str, Any]) -> _SimShard:
        digest = hashlib.sha1(repr(sorted(keys.items())).encode()).digest()
        point = int.from_bytes(digest[:4], "big")
        if self._open_by_range is None:
            open_shards = sorted((s for s in self._shards.values() if not s.closed), key=_low)
            self._open_by_range = ([s.hash_low for s in open_shards], open_shards)
        lows, shards = self._open_by_range
        return shards[bisect.bisect_right(lows, point) - 1]

    def _gone(self, shard: _SimShard) -> bool:
        """A closed shard drops out of DescribeStream once all of it is past retention."""
        return shard.closed_at is not None and self.now - shard.closed_at > self.retention

    def _first_kept_index(self, shard: _SimShard) -> int:
        cutoff = self.now - self.retention
        index = 0
        while index < len(shard.records) and shard.records[index][1] < cutoff:
            index += 1
        return index

    def _position_of(self, shard: _SimShard, wanted: int, iterator_type: str) -> int:
        for index, (sequence_number, _, _) in enumerate(shard.records):
            if sequence_number >= wanted:
                exact = sequence_number == wanted
                return index + 1 if exact and iterator_type == "AFTER_SEQUENCE_NUMBER" else index
        if wanted < shard.starting_sequence_number:
            return 0
        return len(shard.records)

    def _issue(self, shard_id: str, position: int) -> str:
        number = next(self._iterator_numbers)
        if number % 1024 == 0:  # forget iterators long expired: memory stays bounded
            cutoff = self.now - 2 * self.iterator_ttl
            for old in [t for t, it in self._iterators.items() if it.issued_at < cutoff]:
                del self._iterators[old]
        token = f"sim-iterator-{number}"
        self._iterators[token] = _Iterator(shard_id, position, self.now)
        return token

    def _describe(self, shard: _SimShard) -> dict[str, Any]:
        sequence_range = {"StartingSequenceNumber": str(shard.starting_sequence_number)}
        if shard.ending_sequence_number is not None:
            sequence_range["EndingSequenceNumber"] = str(shard.ending_sequence_number)
        described: dict[str, Any] = {
            "ShardId": shard.shard_id,
            "SequenceNumberRange": sequence_range,
        }
        if shard.parent_shard_id is not None:
            described["ParentShardId"] = shard.parent_shard_id
        return described

    def _keys_of(self, item: Mapping[str, Any]) -> dict[str, Any]:
        missing = [name for name in self.key_names if name not in item]
        if missing:
            raise ValueError(f"item lacks key attribute(s) {missing}")
        return {name: item[name] for name in self.key_names}

    def _wire(self, image: Mapping[str, Any]) -> dict[str, Any]:
        return {name: _to_wire(self._serializer.serialize(value)) for name, value in image.items()}


def _low(shard: _SimShard) -> int:
    return shard.hash_low


def _to_wire(attribute_value: dict[str, Any]) -> dict[str, Any]:
    """boto3's serializer gives bytes for binary; the wire carries base64 text."""
    ((type_name, value),) = attribute_value.items()
    if type_name == "B":
        return {"B": base64.b64encode(_raw_bytes(value)).decode()}
    if type_name == "BS":
        return {"BS": [base64.b64encode(_raw_bytes(v)).decode() for v in value]}
    if type_name == "M":
        return {"M": {k: _to_wire(v) for k, v in value.items()}}
    if type_name == "L":
        return {"L": [_to_wire(v) for v in value]}
    return attribute_value


def _raw_bytes(value: Any) -> bytes:
    return bytes(value.value) if isinstance(value, Binary) else bytes(value)


def _client_error(code: str, message: str, operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}},
        operation,
    )


def create_order_table(
    dynamodb: Any,
    table_name: str = "example-customer-order-table",
    stream_view_type: str | None = "NEW_AND_OLD_IMAGES",
) -> str | None:
    """Create the exercise's order table (``email`` HASH, ``order_number`` RANGE).

    ``dynamodb`` is a boto3 ``dynamodb`` client. With a ``stream_view_type`` the table gets a
    stream, whose ARN is returned; with ``None`` it has none and ``None`` is returned.
    """
    stream: dict[str, Any] = {}
    if stream_view_type is not None:
        stream["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream_view_type}
    dynamodb.create_table(
        TableName=table_name,
        KeySchema=[
            {"AttributeName": "email", "KeyType": "HASH"},
            {"AttributeName": "order_number", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "email", "AttributeType": "S"},
            {"AttributeName": "order_number", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
        **stream,
    )
    table = dynamodb.describe_table(TableName=table_name)["Table"]
    return table.get("LatestStreamArn") if stream_view_type is not None else None


class RecordCollector:
    """A handler that keeps every record it is given; thread-safe.

    Use it as the consumer's handler, then :meth:`wait_for` a number of records.
    ``fail_on`` makes it raise for the records it matches (to test retries).
    """

    def __init__(self, fail_on: Callable[[Record], bool] | None = None) -> None:
        self.records: list[Record] = []
        self.attempts = 0
        self._fail_on = fail_on
        self._changed = threading.Condition()

    def __call__(self, record: Record) -> None:
        with self._changed:
            self.attempts += 1
            if self._fail_on is not None and self._fail_on(record):
                raise RuntimeError(f"RecordCollector told to fail on {record!r}")
            self.records.append(record)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Record]:
        """Wait until at least ``count`` records arrived; raise ``TimeoutError`` if not."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.records) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} records within {timeout}s, got {len(self.records)}"
                )
            return list(self.records)

    def sequence_numbers(self) -> list[str]:
        """The sequence numbers received so far, in arrival order."""
        with self._changed:
            return [record.sequence_number for record in self.records]
