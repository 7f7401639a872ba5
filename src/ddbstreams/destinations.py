"""Where failed batches go, and how they come back: failure destinations and replay.

A *destination* is any callable that takes one :class:`~ddbstreams.FailedBatch`, the records
the consumer gave up on (``on_failure``). Returning means the destination has the batch
durably; raising means it does not, and the consumer tries again with backoff, for as long
as it takes, without moving its checkpoint past those records: nothing is dropped.

Built in: :class:`JSONLinesDestination` (a local file), :class:`SQSDestination`,
:class:`SNSDestination` and :class:`S3Destination`. Each writes *failed-batch documents*
(:func:`to_json`): the records in their wire form, the error with its traceback, the
attempts, the shard and sequence numbers, the stream and the times. :func:`iter_failed_batches`
reads them back (a file, a queue, an S3 prefix) for a replay through the handler; so does
``ddbstreams replay`` on the command line.

Destinations with a size limit have ``check_stream(view_type)``, which the consumer calls
at start: it raises :class:`~ddbstreams.ConfigurationError` when records of that stream can
be too large for a message and no S3 bucket is set to hold them.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlparse

from . import _documents
from ._errors import ConfigurationError, DestinationError, FailedBatchFormatError
from ._policies import FailedBatch
from ._redact import redact

__all__ = [
    "Destination",
    "FailedBatches",
    "JSONLinesDestination",
    "S3Destination",
    "SNSDestination",
    "SQSDestination",
    "FORMAT",
    "from_json",
    "iter_failed_batches",
    "to_json",
]

logger = logging.getLogger("ddbstreams")

FORMAT = _documents.FORMAT
"""The ``format`` member of every failed-batch document: ``"ddbstreams.failed-batch/1"``."""

# Message size limits, in bytes.
# SQS: "The maximum size is 1 MiB or 1,048,576 bytes" (SendMessage's MessageBody, in the
# SQS API model shipped with botocore 1.44; AWS raised it from 256 KiB in August 2025). A
# queue's own MaximumMessageSize attribute (1 KiB to 1 MiB) may set it lower: it is read.
SQS_MAX_MESSAGE_BYTES = 1_048_576
# SNS: "By default, a message can be at most 256 KiB in size (262,144 bytes)" (Publish, in
# the SNS API model of botocore 1.44); a topic's MaximumMessageSize may raise it to 1 MiB.
SNS_MAX_MESSAGE_BYTES = 262_144

# Worst cases of one record's wire form (compact ASCII JSON), from DynamoDB's limits:
# a key is at most 2048 (partition) + 1024 (sort) bytes of values and 2 x 255 bytes of
# names, and a control character takes 6 characters as JSON (\u0001): about 21.5 KB, plus
# at most 1 KB of record metadata. An item is up to 400 KB, and its wire form can be far
# larger: a list element NULL or BOOL counts 2 bytes and takes 14-15 characters, and a
# number stored in a few bytes (1E+125) is written out in full, 126 digits. So one image can
# exceed any message size; records of every view type but KEYS_ONLY may need S3.
KEYS_ONLY_WORST_RECORD_BYTES = 23_552
_VIEW_TYPES = ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES")


@runtime_checkable
class Destination(Protocol):
    """What ``on_failure`` takes: a callable that keeps a failed batch durably, or raises."""

    def __call__(self, batch: FailedBatch) -> None:
        """Keep ``batch`` durably; return only once it is kept."""


def to_json(batch: FailedBatch) -> dict[str, Any]:
    """The failed-batch document of ``batch``: a JSON-ready dict.

    Members: ``format`` (:data:`FORMAT`), every field of :class:`~ddbstreams.FailedBatch`
    but ``error``, and ``records``, each record's wire form (AttributeValue JSON as
    ``GetRecords`` answers it): ``datetime`` values become epoch seconds and ``bytes`` base64
    text, as on the wire, so that the document round-trips exactly.
    """
    return _documents.to_json(batch)


def from_json(document: Mapping[str, Any], *, s3_client: Any = None) -> FailedBatch:
    """The :class:`~ddbstreams.FailedBatch` of a failed-batch document.

    Records are :class:`~ddbstreams.Record` objects over the wire form; ``error`` is
    ``None``. A document from :class:`SQSDestination` or :class:`SNSDestination` may name
    records stored in S3 (too large for a message): pass ``s3_client`` (a boto3 ``s3``
    client) to read them. One message of a batch that was split holds part of its records;
    :func:`iter_failed_batches` puts the parts together.

    Raises:
        FailedBatchFormatError: not a failed-batch document (or a later version).
        DestinationError: a record stored in S3 could not be read.
    """
    fetch = None if s3_client is None else _S3Records(s3_client).fetch
    return _documents.from_json(document, fetch=fetch)


# ---------------------------------------------------------------------------- AWS clients


def _aws_client(service: str, session: Any, endpoint_url: str | None, region: str | None) -> Any:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import NoRegionError

    session = session if session is not None else boto3.Session()
    config = Config(
        retries={"total_max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,  # above SQS's longest long poll (20 s)
        user_agent_extra="ddbstreams",
    )
    try:
        return session.client(service, endpoint_url=endpoint_url, region_name=region, config=config)
    except NoRegionError as exc:
        raise ConfigurationError(
            "no AWS region is configured: pass region_name='us-east-1' (for example), "
            "or set AWS_REGION / AWS_DEFAULT_REGION"
        ) from exc
    except ValueError as exc:
        raise ConfigurationError(f"endpoint_url {endpoint_url!r} is not usable: {exc}") from exc


_PERMISSIONS = {
    "SendMessage": "sqs:SendMessage",
    "GetQueueAttributes": "sqs:GetQueueAttributes",
    "ReceiveMessage": "sqs:ReceiveMessage",
    "DeleteMessage": "sqs:DeleteMessage",
    "Publish": "sns:Publish",
    "GetTopicAttributes": "sns:GetTopicAttributes",
    "PutObject": "s3:PutObject",
    "GetObject": "s3:GetObject",
    "DeleteObject": "s3:DeleteObject",
    "ListObjectsV2": "s3:ListBucket",
}


def _aws_error(destination: str, operation: str, exc: Exception) -> DestinationError:
    """A botocore error as a :class:`DestinationError` that names the destination, the call
    and the cause (credentials never appear: messages go through ``redact``)."""
    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        HTTPClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        cause = "no usable AWS credentials (configure AWS_PROFILE, keys or a role)"
    elif isinstance(exc, (HTTPClientError, ConnectionError)):
        cause = f"the endpoint could not be reached ({exc}); check endpoint_url and region_name"
    elif isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = str(error.get("Message", "")).strip()[:300]
        cause = f"{code}: {message}" if message else str(code)
        permission = _PERMISSIONS.get(operation)
        if permission:
            cause += f" (it needs {permission} on it)"
    else:
        cause = str(exc)
    return DestinationError(redact(f"{destination}: {operation} failed: {cause}"))


class _S3Records:
    """Records too large for a message, stored one per object, and read back."""

    def __init__(self, client: Any, bucket: str = "", prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def store(self, batch: FailedBatch, raw: dict[str, Any], ident: str) -> dict[str, Any]:
        seq = _documents.sequence_number(raw)
        key = f"{self.prefix}records/{ident}/{seq}.json"
        body = _documents.dumps(
            {
                "format": _documents.RECORD_FORMAT,
                "stream_arn": batch.stream_arn,
                "shard_id": batch.shard_id,
                "record": raw,
            }
        )
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body.encode())
        except Exception as exc:
            raise _aws_error(f"s3://{self.bucket}/{key}", "PutObject", exc) from exc
        return {_documents.POINTER: {"bucket": self.bucket, "key": key}, "sequence_number": seq}

    def fetch(self, pointer: Mapping[str, Any]) -> dict[str, Any]:
        where = f"s3://{pointer.get('bucket')}/{pointer.get('key')}"
        document = _read_s3_json(self.client, str(pointer["bucket"]), str(pointer["key"]))
        if not isinstance(document, dict) or document.get("format") != _documents.RECORD_FORMAT:
            raise FailedBatchFormatError(f"{where} is not a record stored by ddbstreams")
        record: dict[str, Any] = document["record"]
        return record

    def delete(self, pointers: list[Mapping[str, Any]]) -> None:
        for pointer in pointers:
            _delete_s3_object(self.client, str(pointer["bucket"]), str(pointer["key"]))


def _read_s3_json(client: Any, bucket: str, key: str) -> Any:
    import json

    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        raise _aws_error(f"s3://{bucket}/{key}", "GetObject", exc) from exc
    try:
        return json.loads(body)
    except ValueError as exc:
        raise FailedBatchFormatError(f"s3://{bucket}/{key} is not JSON: {exc}") from exc


def _delete_s3_object(client: Any, bucket: str, key: str) -> None:
    try:
        client.delete_object(Bucket=bucket, Key=key)
    except Exception as exc:
        raise _aws_error(f"s3://{bucket}/{key}", "DeleteObject", exc) from exc


# ---------------------------------------------------------------------------- destinations


class JSONLinesDestination:
    """Appends one failed-batch document per line to a local file.

    Each call writes its line, flushes it and ``os.fsync``\\ s the file before it returns, so
    the batch is on disk before the consumer moves its checkpoint. Safe to call from several
    threads at once (shards fail independently); use one file per process.

    The file is created at once if it does not exist (its directory must exist: a missing
    one is a :class:`~ddbstreams.ConfigurationError` here rather than a failure later). A
    last line cut short by a crash is left as it is, and the next line starts on a line
    of its own; :func:`iter_failed_batches` skips such a cut line.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        if not self.path.parent.is_dir():
            raise ConfigurationError(
                f"JSONLinesDestination: the directory of {str(self.path)!r} does not exist: "
                "create it, or give a path in an existing directory"
            )
        try:
            created = not self.path.exists()
            with open(self.path, "ab") as file:
                os.fsync(file.fileno())
            if created:
                _fsync_directory(self.path.parent)
        except OSError as exc:
            raise ConfigurationError(
                f"JSONLinesDestination cannot write {str(self.path)!r}: {exc}"
            ) from exc

    def __call__(self, batch: FailedBatch) -> None:
        line = (_documents.dumps(to_json(batch)) + "\n").encode("ascii")
        with self._lock:
            try:
                with open(self.path, "ab+") as file:
                    if file.seek(0, os.SEEK_END) > 0:
                        file.seek(-1, os.SEEK_END)
                        if file.read(1) != b"\n":  # a line cut short by a crash
                            line = b"\n" + line
                    file.write(line)
                    file.flush()
                    os.fsync(file.fileno())
            except OSError as exc:
                raise DestinationError(
                    f"JSONLinesDestination({str(self.path)!r}) could not write a failed batch "
                    f"of shard {batch.shard_id}: {exc}"
                ) from exc

    def check_stream(self, view_type: str) -> None:
        """Any record fits in a file: nothing to check."""

    def __repr__(self) -> str:
        return f"JSONLinesDestination({str(self.path)!r})"


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible everywhere (Windows); the file itself is synced
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _MessageDestination:
    """What SQS and SNS destinations share: a size limit, splitting, S3 for large records."""

    _service = ""
    _what = ""

    def __init__(
        self,
        target: str,
        *,
        s3_bucket: str | None,
        s3_prefix: str,
        max_message_bytes: int | None,
        session: Any,
        endpoint_url: str | None,
        region_name: str | None,
        client: Any,
        s3_client: Any,
    ) -> None:
        if not isinstance(target, str) or not target:
            raise ConfigurationError(f"{type(self).__name__} needs a {self._what}, not {target!r}")
        if max_message_bytes is not None and (
            isinstance(max_message_bytes, bool)
            or not isinstance(max_message_bytes, int)
            or not 1024 <= max_message_bytes <= SQS_MAX_MESSAGE_BYTES
        ):
            raise ConfigurationError(
                f"max_message_bytes must be a whole number from 1024 to {SQS_MAX_MESSAGE_BYTES}, "
                f"not {max_message_bytes!r}"
            )
        if s3_bucket is not None and (not isinstance(s3_bucket, str) or not s3_bucket):
            raise ConfigurationError(f"s3_bucket must be a bucket name, not {s3_bucket!r}")
        self.target = target
        self.s3_bucket = s3_bucket
        self.s3_prefix = s3_prefix
        self._limit = max_message_bytes
        self._client = (
            client
            if client is not None
            else _aws_client(self._service, session, endpoint_url, region_name)
        )
        self._s3: _S3Records | None = None
        if s3_bucket is not None:
            s3 = s3_client
            if s3 is None:
                s3 = _aws_client("s3", session, endpoint_url, region_name)
            self._s3 = _S3Records(s3, s3_bucket, s3_prefix)
        self._fifo = target.endswith(".fifo")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"

    @property
    def max_message_bytes(self) -> int:
        """The largest message this destination sends (asked of the service once)."""
        if self._limit is None:
            self._limit = self._ask_limit()
        return self._limit

    def _ask_limit(self) -> int:
        raise NotImplementedError

    def _clip_to(self) -> int:
        return self.max_message_bytes // 16  # error message and traceback: a sixteenth each

    def check_stream(self, view_type: str) -> None:
        """Raise :class:`~ddbstreams.ConfigurationError` if records of a stream with this
        ``StreamViewType`` can be too large for one message and no ``s3_bucket`` is set.

        The worst case of a KEYS_ONLY record is about 23 KB of JSON (2 KB + 1 KB of key
        values, every byte a control character written as ``\\u0001``, plus names and
        metadata), which fits in messages of 64 KB or more. A record with an image has no
        useful bound: an item of up to 400 KB can take many times that as JSON (a list of
        NULL or BOOL values takes 7 to 7.5 times its stored size; a number stored in 2
        bytes, 1E+125, is written out as 126 digits), far above SQS's 1 MiB and SNS's 256
        KiB. So NEW_IMAGE, OLD_IMAGE and NEW_AND_OLD_IMAGES need ``s3_bucket``.
        """
        if view_type not in _VIEW_TYPES:
            raise ConfigurationError(
                f"view_type must be one of {', '.join(_VIEW_TYPES)}, not {view_type!r}"
            )
        if self._s3 is not None:
            return
        room = self.max_message_bytes - 2 * self._clip_to() - 2048
        if view_type == "KEYS_ONLY" and room >= KEYS_ONLY_WORST_RECORD_BYTES:
            return
        raise ConfigurationError(
            f"{self!r}: records of a {view_type} stream can be larger than one message "
            f"({self.max_message_bytes} bytes), and a record too large is stored in S3: pass "
            "s3_bucket='your-bucket' (it needs s3:PutObject on it)"
            + (
                ""
                if view_type == "KEYS_ONLY"
                else "; an item of 400 KB can take several MB as the stream's JSON"
            )
        )

    def __call__(self, batch: FailedBatch) -> None:
        store = None
        if self._s3 is not None:
            s3 = self._s3

            def store(raw: dict[str, Any], ident: str) -> dict[str, Any]:
                return s3.store(batch, raw, ident)

        try:
            bodies = _documents.split(batch, self.max_message_bytes, store, self._clip_to())
        except _documents.OversizeRecord as exc:
            raise DestinationError(
                f"{self!r}: record {exc.sequence_number} of shard {batch.shard_id} needs a "
                f"message of {exc.size} bytes, more than {self.max_message_bytes}: pass "
                "s3_bucket= so that such records are stored in S3"
            ) from exc
        ident = _documents.batch_id(batch)
        for number, body in enumerate(bodies, 1):
            self._send(body, batch.shard_id, f"{ident}-{number}")

    def _send(self, body: str, shard_id: str, dedup_id: str) -> None:
        raise NotImplementedError


class SQSDestination(_MessageDestination):
    """Sends each failed batch to an SQS queue, as one or more messages.

    Each message is a failed-batch document (:func:`to_json`) with ``batch_id``, ``part``
    and ``parts``: a batch larger than one message is split between records, in order, and
    :func:`iter_failed_batches` puts it back together. The size limit is the queue's
    ``MaximumMessageSize`` (at most 1 MiB), read once with ``GetQueueAttributes``, unless
    ``max_message_bytes`` is given. A single record too large for a message is stored in
    S3, at ``{s3_prefix}records/{batch_id}/{sequence_number}.json``, and the message holds
    a pointer to it; without ``s3_bucket`` that is an error (see :meth:`check_stream`).
    The error message and traceback are cut in the middle when longer than a sixteenth of
    the limit each (the file and S3 destinations keep them whole).

    FIFO queues (``.fifo``) get the shard id as message group and a deduplication id per
    part. IAM: ``sqs:SendMessage``, ``sqs:GetQueueAttributes`` (unless
    ``max_message_bytes``), and ``s3:PutObject`` on the bucket if one is set.

    Args:
        queue_url: the queue's URL.
        s3_bucket: a bucket for records too large for a message.
        s3_prefix: where in the bucket.
        max_message_bytes: the largest message to send (1024 to 1,048,576).
        session: a boto3 session to build clients from.
        endpoint_url: a custom or local endpoint for SQS and S3.
        region_name: the AWS region.
        client: a boto3 ``sqs`` client to use instead of building one.
        s3_client: a boto3 ``s3`` client to use instead of building one.
    """

    _service = "sqs"
    _what = "queue URL"

    def __init__(
        self,
        queue_url: str,
        *,
        s3_bucket: str | None = None,
        s3_prefix: str = "ddbstreams/",
        max_message_bytes: int | None = None,
        session: Any = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client: Any = None,
        s3_client: Any = None,
    ) -> None:
        super().__init__(
            queue_url,
            s3_bucket=s3_bucket,
            s3_prefix=s3_prefix,
            max_message_bytes=max_message_bytes,
            session=session,
            endpoint_url=endpoint_url,
            region_name=region_name,
            client=client,
            s3_client=s3_client,
        )
        self.queue_url = queue_url

    def _ask_limit(self) -> int:
        try:
            attributes = self._client.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["MaximumMessageSize"]
            )["Attributes"]
        except Exception as exc:
            raise _aws_error(repr(self), "GetQueueAttributes", exc) from exc
        limit = int(attributes.get("MaximumMessageSize", SQS_MAX_MESSAGE_BYTES))
        return min(limit, SQS_MAX_MESSAGE_BYTES)

    def _send(self, body: str, shard_id: str, dedup_id: str) -> None:
        extra = (
            {"MessageGroupId": shard_id[-128:], "MessageDeduplicationId": dedup_id}
            if self._fifo
            else {}
        )
        try:
            self._client.send_message(QueueUrl=self.queue_url, MessageBody=body, **extra)
        except Exception as exc:
            raise _aws_error(repr(self), "SendMessage", exc) from exc


class SNSDestination(_MessageDestination):
    """Publishes each failed batch to an SNS topic, as one or more messages.

    Messages are those of :class:`SQSDestination`, within SNS's limit: the topic's
    ``MaximumMessageSize`` if set (``GetTopicAttributes``), else 256 KiB, unless
    ``max_message_bytes`` is given. To replay, subscribe an SQS queue to the topic and read
    it with :func:`iter_failed_batches` (it unwraps SNS's envelope; with raw message
    delivery there is none). The queue's own limit must hold the envelope: SNS escapes the
    document inside it, which can double its size; a queue of 1 MiB always does.

    FIFO topics (``.fifo``) get the shard id as message group and a deduplication id per
    part. IAM: ``sns:Publish``, ``sns:GetTopicAttributes`` (unless ``max_message_bytes``),
    and ``s3:PutObject`` on the bucket if one is set.

    Args:
        topic_arn: the topic's ARN.
        s3_bucket: a bucket for records too large for a message.
        s3_prefix: where in the bucket.
        max_message_bytes: the largest message to publish (1024 to 1,048,576).
        session: a boto3 session to build clients from.
        endpoint_url: a custom or local endpoint for SNS and S3.
        region_name: the AWS region.
        client: a boto3 ``sns`` client to use instead of building one.
        s3_client: a boto3 ``s3`` client to use instead of building one.
    """

    _service = "sns"
    _what = "topic ARN"

    def __init__(
        self,
        topic_arn: str,
        *,
        s3_bucket: str | None = None,
        s3_prefix: str = "ddbstreams/",
        max_message_bytes: int | None = None,
        session: Any = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client: Any = None,
        s3_client: Any = None,
    ) -> None:
        super().__init__(
            topic_arn,
            s3_bucket=s3_bucket,
            s3_prefix=s3_prefix,
            max_message_bytes=max_message_bytes,
            session=session,
            endpoint_url=endpoint_url,
            region_name=region_name,
            client=client,
            s3_client=s3_client,
        )
        self.topic_arn = topic_arn

    def _ask_limit(self) -> int:
        try:
            attributes = self._client.get_topic_attributes(TopicArn=self.topic_arn)["Attributes"]
        except Exception as exc:
            raise _aws_error(repr(self), "GetTopicAttributes", exc) from exc
        limit = int(attributes.get("MaximumMessageSize", SNS_MAX_MESSAGE_BYTES))
        return min(limit, SQS_MAX_MESSAGE_BYTES)

    def _send(self, body: str, shard_id: str, dedup_id: str) -> None:
        extra = (
            {"MessageGroupId": shard_id[-128:], "MessageDeduplicationId": dedup_id}
            if self._fifo
            else {}
        )
        try:
            self._client.publish(TopicArn=self.topic_arn, Message=body, **extra)
        except Exception as exc:
            raise _aws_error(repr(self), "Publish", exc) from exc


class S3Destination:
    """Writes each failed batch to S3 as one JSON object (a failed-batch document).

    Keys sort by the time the batch failed and name where its records come from::

        {prefix}2025/01/31/235959.123456Z_{table}_{stream label}_{shard id}_{first seq}.json

    Trying the same batch again writes the same key. No size limit applies. IAM:
    ``s3:PutObject`` on the prefix (``s3:ListBucket``, ``s3:GetObject`` and
    ``s3:DeleteObject`` to replay).

    Args:
        bucket: the bucket.
        prefix: where in the bucket.
        session: a boto3 session to build the client from.
        endpoint_url: a custom or local endpoint for S3.
        region_name: the AWS region.
        client: a boto3 ``s3`` client to use instead of building one.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "ddbstreams/failed/",
        session: Any = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client: Any = None,
    ) -> None:
        if not isinstance(bucket, str) or not bucket:
            raise ConfigurationError(f"S3Destination needs a bucket name, not {bucket!r}")
        self.bucket = bucket
        self.prefix = prefix
        self._client = (
            client if client is not None else _aws_client("s3", session, endpoint_url, region_name)
        )

    def key(self, batch: FailedBatch) -> str:
        """The object key of ``batch``."""
        when = datetime.fromtimestamp(batch.failed_at, tz=timezone.utc)
        parts = batch.stream_arn.split("/")  # arn:...:table/NAME/stream/LABEL
        table, label = (parts[1], parts[3]) if len(parts) >= 4 else ("stream", "")
        return (
            f"{self.prefix}{when:%Y/%m/%d/%H%M%S.%f}Z_{table}_{label}_{batch.shard_id}_"
            f"{batch.first_sequence_number}.json"
        )

    def __call__(self, batch: FailedBatch) -> None:
        key = self.key(batch)
        body = _documents.dumps(to_json(batch)).encode("ascii")
        try:
            self._client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/json"
            )
        except Exception as exc:
            raise _aws_error(f"S3Destination(s3://{self.bucket}/{key})", "PutObject", exc) from exc

    def check_stream(self, view_type: str) -> None:
        """Any record fits in an object: nothing to check."""

    def __repr__(self) -> str:
        return f"S3Destination('s3://{self.bucket}/{self.prefix}')"


# ---------------------------------------------------------------------------- replay


def iter_failed_batches(
    source: str | os.PathLike[str],
    *,
    delete: bool = True,
    session: Any = None,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    wait_seconds: int = 1,
    visibility_timeout: int = 300,
) -> FailedBatches:
    """The failed batches a destination holds, one at a time, for a replay.

    ``source`` is a JSON Lines file (a path), an SQS queue (its ``https://`` or ``http://``
    URL) or an S3 prefix (``s3://bucket/prefix``). Without ``endpoint_url``, a queue URL
    that is not AWS's (such as a local endpoint's) is also where SQS is asked.

    A batch is taken out of its source (its messages deleted, its S3 object deleted when
    ``delete`` is true) only when the next one is asked for, that is when the body of a
    ``for`` loop over this iterator has finished with it without raising. If the body
    raises, or the loop stops early, that batch stays where it was (a queue shows it again
    after its visibility timeout). A file is never changed.

    From a queue, the parts of a split batch are gathered (they may come in any order,
    between other messages) and the batch is yielded whole; the queue is read until one
    receive of ``wait_seconds`` finds nothing. Messages that are not failed batches are
    left in the queue, and so are parts whose other parts were not found: both are logged
    (and listed by :attr:`FailedBatches.left_over`). A JSON Lines line cut short by a
    crash (the consumer wrote that batch again after it) is skipped with a warning.

    Args:
        source: a path, a queue URL or ``s3://bucket/prefix``.
        delete: S3 only: delete each object once its batch is replayed (a queue's
            messages are always deleted; a file is never changed).
        session: a boto3 session to build clients from.
        endpoint_url: a custom or local endpoint for SQS and S3.
        region_name: the AWS region.
        wait_seconds: a queue: how long one receive waits for messages; the first that
            finds none ends the iteration.
        visibility_timeout: a queue: seconds a received message stays hidden from other
            readers; a batch must be handled within it, else it may be delivered again.

    Raises:
        DestinationError: the source could not be read or a batch could not be deleted.
        FailedBatchFormatError: the source holds something that is not a failed batch.
    """
    text = os.fspath(source)
    scheme = urlparse(text).scheme if "://" in text else ""
    if scheme == "s3":
        return _S3Source(text, delete, session, endpoint_url, region_name)
    if scheme in ("http", "https"):
        return _SQSSource(
            text, session, endpoint_url, region_name, wait_seconds, visibility_timeout
        )
    if scheme:
        raise ConfigurationError(
            f"{text!r} is not a source of failed batches: give a file path, an SQS queue URL "
            "or s3://bucket/prefix"
        )
    return _JSONLinesSource(Path(text))


class FailedBatches:
    """What :func:`iter_failed_batches` returns: an iterator of :class:`~ddbstreams.FailedBatch`
    that takes each out of its source when the next one is asked for.

    Attributes:
        left_over: what was found but not yielded, and is left in the source, one line
            each: messages of a queue that are not failed batches, parts of a batch whose
            other parts were not found. Complete once the iterator is exhausted.
    """

    def __init__(self) -> None:
        self.left_over: list[str] = []
        self._gen: Iterator[FailedBatch] | None = None

    def __iter__(self) -> Iterator[FailedBatch]:
        return self

    def __next__(self) -> FailedBatch:
        if self._gen is None:
            self._gen = self._batches()
        return next(self._gen)

    def _batches(self) -> Iterator[FailedBatch]:
        raise NotImplementedError


class _JSONLinesSource(FailedBatches):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        if not path.is_file():
            raise ConfigurationError(f"{str(path)!r} is not a file of failed batches")

    def _batches(self) -> Iterator[FailedBatch]:
        import json

        with open(self.path, "rb") as file:
            for number, line in enumerate(file, 1):
                if not line.strip():
                    continue
                where = f"{self.path}:{number}"
                try:
                    document = json.loads(line)
                except ValueError as exc:
                    if not _CUT_LINE.startswith(line[: len(_CUT_LINE)].rstrip(b"\n")):
                        raise FailedBatchFormatError(f"{where} is not JSON: {exc}") from exc
                    # A line cut short by a crash while it was written: the consumer had not
                    # moved its checkpoint, so it wrote that batch again after its restart.
                    logger.warning("%s: skipping a line cut short by a crash", where)
                    continue
                yield _documents.from_json(document, where=where)


_CUT_LINE = _documents.dumps({"format": FORMAT}).encode()[:-1]


class _SQSSource(FailedBatches):
    def __init__(
        self,
        url: str,
        session: Any,
        endpoint_url: str | None,
        region_name: str | None,
        wait_seconds: int,
        visibility_timeout: int,
    ) -> None:
        super().__init__()
        self.url = url
        endpoint_url = _queue_endpoint(url, endpoint_url)
        self._sqs = _aws_client("sqs", session, endpoint_url, region_name)
        self._s3 = _S3Records(_aws_client("s3", session, endpoint_url, region_name))
        self._wait = wait_seconds
        self._visibility = visibility_timeout

    def __repr__(self) -> str:
        return f"SQS queue {self.url}"

    def _receive(self) -> list[dict[str, Any]]:
        try:
            answer = self._sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=self._wait,
                VisibilityTimeout=self._visibility,
            )
        except Exception as exc:
            raise _aws_error(repr(self), "ReceiveMessage", exc) from exc
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        return messages

    def _delete(self, receipts: Mapping[str, str]) -> None:
        for receipt in receipts.values():
            try:
                self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=receipt)
            except Exception as exc:
                raise _aws_error(repr(self), "DeleteMessage", exc) from exc

    def _batches(self) -> Iterator[FailedBatch]:
        # batch id -> {part number: document}; message id -> latest receipt handle
        parts: dict[str, dict[int, dict[str, Any]]] = {}
        receipts: dict[str, dict[str, str]] = {}
        finished: set[str] = set()
        foreign: set[str] = set()
        while True:
            messages = self._receive()
            if not messages:
                break
            for message in messages:
                where = f"message {message['MessageId']} of {self.url}"
                document = _message_document(message.get("Body", ""))
                if document is None:
                    if message["MessageId"] not in foreign:
                        foreign.add(message["MessageId"])
                        logger.warning("%s is not a failed batch: left in the queue", where)
                    continue
                ident = str(document.get("batch_id", message["MessageId"]))
                if ident in finished:  # a part sent twice, its batch replayed already
                    self._delete({message["MessageId"]: message["ReceiptHandle"]})
                    continue
                _documents.check_document(document, where)
                parts.setdefault(ident, {})[int(document.get("part", 1))] = document
                receipts.setdefault(ident, {})[message["MessageId"]] = message["ReceiptHandle"]
                if len(parts[ident]) < int(document.get("parts", 1)):
                    continue
                whole = _documents.join(parts.pop(ident).values(), where)
                pointers = [
                    entry[_documents.POINTER]
                    for entry in whole["records"]
                    if _documents.POINTER in entry
                ]
                yield _documents.from_json(whole, fetch=self._s3.fetch, where=where)
                self._delete(receipts.pop(ident))
                finished.add(ident)
                self._s3.delete(pointers)
        for ident, found in parts.items():
            count = next(iter(found.values())).get("parts")
            note = f"batch {ident}: parts {sorted(found)} of {count} found; left in the queue"
            logger.warning("%s: %s", self.url, note)
            self.left_over.append(note)
        self.left_over.extend(f"message {m}: not a failed batch" for m in sorted(foreign))


def _queue_endpoint(url: str, endpoint_url: str | None) -> str | None:
    """``endpoint_url``, or else the queue URL's own host when it is not AWS's."""
    if endpoint_url is not None:
        return endpoint_url
    parsed = urlparse(url)
    if parsed.hostname and not parsed.hostname.endswith((".amazonaws.com", ".amazonaws.com.cn")):
        return f"{parsed.scheme}://{parsed.netloc}"
    return None


def _message_document(body: str) -> dict[str, Any] | None:
    """The failed-batch document in a message body (unwrapping SNS's envelope), or None."""
    import json

    try:
        document = json.loads(body)
        if isinstance(document, dict) and document.get("Type") == "Notification":
            document = json.loads(document.get("Message", ""))
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        return None
    return document


class _S3Source(FailedBatches):
    def __init__(
        self,
        url: str,
        delete: bool,
        session: Any,
        endpoint_url: str | None,
        region_name: str | None,
    ) -> None:
        super().__init__()
        parsed = urlparse(url)
        if not parsed.netloc:
            raise ConfigurationError(f"{url!r} names no bucket: give s3://bucket/prefix")
        self.bucket, self.prefix = parsed.netloc, parsed.path.lstrip("/")
        self._delete = delete
        self._client = _aws_client("s3", session, endpoint_url, region_name)
        self._records = _S3Records(self._client)

    def __repr__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _keys(self) -> list[str]:
        keys: list[str] = []
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            ):
                keys.extend(item["Key"] for item in page.get("Contents", []))
        except Exception as exc:
            raise _aws_error(repr(self), "ListObjectsV2", exc) from exc
        return sorted(keys)

    def _batches(self) -> Iterator[FailedBatch]:
        for key in self._keys():
            where = f"s3://{self.bucket}/{key}"
            document = _read_s3_json(self._client, self.bucket, key)
            if isinstance(document, dict) and document.get("format") == _documents.RECORD_FORMAT:
                continue  # a record of an SQS or SNS message, read through that message
            yield _documents.from_json(document, fetch=self._records.fetch, where=where)
            if self._delete:
                _delete_s3_object(self._client, self.bucket, key)
