"""ddbstreams: consume Amazon DynamoDB Streams from Python.

Hand a function to :class:`StreamConsumer`; it reads every shard of the stream in
lineage order, calls the function once per :class:`Record`, and remembers its progress in
a :class:`CheckpointStore` so that a restart resumes where it left off.
"""

import logging

from . import destinations as destinations  # ddbstreams.destinations.SQSDestination(...)
from ._checkpoints import (
    Checkpoint,
    CheckpointStore,
    InMemoryCheckpointStore,
    SQLiteCheckpointStore,
)
from ._consumer import StreamConsumer
from ._coordinator import ShardCoordinator, ShardStatus
from ._dynamodb_store import DynamoDBCheckpointStore
from ._errors import (
    CheckpointStoreError,
    ConfigurationError,
    CredentialsError,
    DDBStreamsError,
    DestinationError,
    EndpointUnreachableError,
    ExpiredIteratorError,
    FailedBatchFormatError,
    HandlerResultError,
    LocalEndpointError,
    MalformedResponseError,
    ReportedFailuresError,
    SeekRefusedError,
    ServerError,
    ServiceError,
    StreamDisabledError,
    StreamNotEnabledError,
    StreamNotFoundError,
    TableNotFoundError,
    ThrottledError,
    TransientError,
    TrimmedDataError,
)
from ._health import Health
from ._leases import Heartbeat, Lease, LeaseLostError, LeaseTable
from ._metrics import Metrics
from ._policies import Batching, BatchResult, FailedBatch, RetryPolicy
from ._positions import Positions, SeekOutcome, SeekPlan, ShardMove, ShardPosition
from ._reader import TrimmedDataGap
from ._records import Record
from ._redact import protect as _protect
from ._settings import ConsumerSettings

__version__ = "0.1.0"

_protect(logging.getLogger("ddbstreams"))

__all__ = [
    "BatchResult",
    "Batching",
    "Checkpoint",
    "CheckpointStore",
    "CheckpointStoreError",
    "ConfigurationError",
    "ConsumerSettings",
    "CredentialsError",
    "DDBStreamsError",
    "DestinationError",
    "DynamoDBCheckpointStore",
    "EndpointUnreachableError",
    "ExpiredIteratorError",
    "FailedBatch",
    "FailedBatchFormatError",
    "HandlerResultError",
    "Health",
    "Heartbeat",
    "InMemoryCheckpointStore",
    "Lease",
    "LeaseLostError",
    "LeaseTable",
    "LocalEndpointError",
    "MalformedResponseError",
    "Metrics",
    "Positions",
    "Record",
    "ReportedFailuresError",
    "RetryPolicy",
    "SQLiteCheckpointStore",
    "SeekOutcome",
    "SeekPlan",
    "SeekRefusedError",
    "ServerError",
    "ServiceError",
    "ShardCoordinator",
    "ShardMove",
    "ShardPosition",
    "ShardStatus",
    "StreamConsumer",
    "StreamDisabledError",
    "StreamNotEnabledError",
    "StreamNotFoundError",
    "TableNotFoundError",
    "ThrottledError",
    "TransientError",
    "TrimmedDataError",
    "TrimmedDataGap",
    "__version__",
]
