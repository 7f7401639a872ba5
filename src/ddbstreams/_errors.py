"""Every error ddbstreams raises, under one base class.

```
DDBStreamsError                   base of everything below; .retriable says if trying again may help
├── ConfigurationError            a setting is invalid (also a ValueError)
├── CredentialsError              no AWS credentials, or AWS rejected them
├── TableNotFoundError            the table does not exist in this account/region/endpoint
├── StreamNotEnabledError         the table has no stream: enable one with update-table
├── StreamNotFoundError           the stream ARN does not exist (or was deleted)
├── StreamDisabledError           the stream was disabled; every record it held was delivered
├── TrimmedDataError              records passed the 24 h retention before they were read
├── CheckpointStoreError          the checkpoint store cannot be read or written
│   └── LeaseLostError            another worker of the group holds the shard now
├── LocalEndpointError            the embedded local endpoint cannot start
├── SeekRefusedError              a seek or reset cannot be done safely now
├── HandlerResultError            a batch handler returned something other than None/BatchResult
├── ReportedFailuresError         a batch handler reported records as failed (BatchResult)
├── FailedBatchFormatError        not a failed-batch document ddbstreams reads (a ValueError)
├── ServiceError                  any other error answered by the service; .code holds its code
└── TransientError                retriable: the consumer backs off and tries again
    ├── ThrottledError            LimitExceededException, throttling
    ├── ServerError               HTTP 5xx, InternalServerError
    │   └── MalformedResponseError  an answer that is not a GetRecords page
    ├── EndpointUnreachableError  connection refused/reset, timeouts
    ├── ExpiredIteratorError      a shard iterator was older than 15 minutes
    └── DestinationError          a failure destination (SQS, SNS, S3, file) failed
```

Errors that wrap a botocore error keep it as ``__cause__`` (``raise ... from exc``).
"""

from __future__ import annotations


class DDBStreamsError(Exception):
    """Base class of every error raised by ddbstreams."""

    retriable: bool = False


class ConfigurationError(DDBStreamsError, ValueError):
    """A setting passed to ddbstreams is invalid; the message names the parameter."""


class HandlerResultError(DDBStreamsError):
    """A batch handler returned something other than ``None`` or a :class:`BatchResult`,
    or a ``BatchResult`` naming records that were not in its batch. Counted as a failure
    of the batch; the message says what was returned."""


class ReportedFailuresError(DDBStreamsError):
    """Stands for the failure a batch handler reported with ``BatchResult(failed=...)``:
    what :class:`FailedBatch` and the logs show, as the handler raised nothing."""


class CredentialsError(DDBStreamsError):
    """No AWS credentials were found, or AWS rejected them."""


class TableNotFoundError(DDBStreamsError):
    """The table does not exist at this endpoint, account and region."""


class StreamNotEnabledError(DDBStreamsError):
    """The table exists but has no stream."""


class StreamNotFoundError(DDBStreamsError):
    """The stream ARN is unknown to the service (wrong ARN, or the table was deleted)."""


class StreamDisabledError(DDBStreamsError):
    """The stream was disabled and every record it still held has been delivered.

    Re-enabling a stream creates a *new* stream with a new ARN (the table's
    ``LatestStreamArn``); start a consumer on that one.
    """


class TrimmedDataError(DDBStreamsError):
    """Records of a shard may have been trimmed (older than 24 h) before they were read.

    Attributes name the possibly lost range: ``shard_id`` and ``after_sequence_number``
    (the last sequence number that was delivered, or ``None`` if nothing was).
    """

    def __init__(
        self, message: str, *, shard_id: str = "", after_sequence_number: str | None = None
    ) -> None:
        super().__init__(message)
        self.shard_id = shard_id
        self.after_sequence_number = after_sequence_number


class CheckpointStoreError(DDBStreamsError):
    """The checkpoint store could not be opened, read or written."""


class LocalEndpointError(DDBStreamsError):
    """The embedded local endpoint could not start (extra missing, port taken)."""


class SeekRefusedError(DDBStreamsError):
    """A seek or reset of checkpoints was refused, or only partly done: the message says
    why (a consumer holds the SQLite file, workers of the group are running, the group's
    leases kept changing) and what to do."""


class FailedBatchFormatError(DDBStreamsError, ValueError):
    """A document is not a failed batch ddbstreams wrote (or not a version it reads)."""


class ServiceError(DDBStreamsError):
    """The service answered with an error ddbstreams has no more specific class for."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class TransientError(DDBStreamsError):
    """A failure that may pass: the consumer backs off and tries again."""

    retriable = True


class ThrottledError(TransientError):
    """The service throttled a call (``LimitExceededException`` and friends)."""


class ServerError(TransientError):
    """The service failed on its side (HTTP 5xx, ``InternalServerError``)."""


class MalformedResponseError(ServerError):
    """An answer is not a ``GetRecords`` page: cut short, not JSON, or without ``Records``."""


class EndpointUnreachableError(TransientError):
    """The endpoint could not be reached: connection refused or reset, or a timeout."""


class ExpiredIteratorError(TransientError):
    """A shard iterator expired (they live 15 minutes); the reader takes a new one."""


class DestinationError(TransientError):
    """A failure destination (SQS, SNS, S3, a file) did not take a failed batch, or could not
    be read back; the message names the destination and the cause. The consumer keeps
    trying, and does not move its checkpoint past those records meanwhile."""
