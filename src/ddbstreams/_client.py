"""The only place that talks to AWS: calls, the raw GetRecords fast path, errors, retries."""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from ._errors import (
    ConfigurationError,
    CredentialsError,
    DDBStreamsError,
    EndpointUnreachableError,
    ExpiredIteratorError,
    MalformedResponseError,
    ServerError,
    ServiceError,
    StreamNotEnabledError,
    StreamNotFoundError,
    TableNotFoundError,
    ThrottledError,
    TrimmedDataError,
)
from ._lineage import ShardInfo
from ._pages import RecordsPage
from ._redact import redact

logger = logging.getLogger("ddbstreams")

_THROTTLING_CODES = frozenset(
    {
        "LimitExceededException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "TooManyRequestsException",
    }
)
_SERVER_CODES = frozenset({"InternalServerError", "InternalFailure", "ServiceUnavailable"})
_CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "MissingAuthenticationTokenException",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    }
)


@dataclass(frozen=True)
class StreamDescription:
    """What ``DescribeStream`` said about a stream, every page merged."""

    stream_arn: str
    status: str
    shards: tuple[ShardInfo, ...]
    # The service's clock when it answered (its HTTP Date header, to the second), if known.
    service_time: float | None = None
    view_type: str | None = None  # KEYS_ONLY, NEW_IMAGE, OLD_IMAGE or NEW_AND_OLD_IMAGES


# Set while ddbstreams itself calls GetRecords, so that the raw fast path never changes
# what other code sharing the client gets from its own get_records calls.
_ddbstreams_call = threading.local()
_PAGE = "ddbstreams.page"


def _take_raw_records(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """``before-parse`` hook: hand the GetRecords body to a :class:`RecordsPage`.

    botocore's generic parser walks every AttributeValue against the service model, which
    costs ten times the JSON decoding. The body goes to the parser empty and the page (which
    decodes each record as it is taken) comes back through ``customized_response_dict``;
    error answers (status other than 200) are left to botocore.
    """
    if not getattr(_ddbstreams_call, "active", False) or response_dict.get("status_code") != 200:
        return
    customized_response_dict[_PAGE] = RecordsPage.from_body(response_dict["body"])
    response_dict["body"] = b"{}"


def install_raw_records_hook(streams_client: Any) -> None:
    """Make a botocore ``dynamodbstreams`` client's GetRecords, when called by ddbstreams,
    return a :class:`RecordsPage` of wire-form records."""
    events = getattr(getattr(streams_client, "meta", None), "events", None)
    if events is not None:
        events.register(
            "before-parse.dynamodb-streams.GetRecords",
            _take_raw_records,
            unique_id="ddbstreams-raw-records",
        )


def build_boto3_clients(
    *,
    session: Any = None,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    max_pool_connections: int = 16,
) -> tuple[Any, Any]:
    """A ``dynamodbstreams`` and a ``dynamodb`` client sharing one configuration.

    Retries are left to ddbstreams (``total_max_attempts=1``), so that one policy decides.
    """
    import boto3

    session = session if session is not None else boto3.Session()
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=max_pool_connections,
        connect_timeout=5,
        read_timeout=20,
        user_agent_extra="ddbstreams",
    )
    try:
        streams = session.client(
            "dynamodbstreams", endpoint_url=endpoint_url, region_name=region_name, config=config
        )
        dynamodb = session.client(
            "dynamodb", endpoint_url=endpoint_url, region_name=region_name, config=config
        )
    except NoRegionError as exc:
        raise ConfigurationError(
            "no AWS region is configured: pass region_name='us-east-1' (for example), "
            "or set AWS_REGION / AWS_DEFAULT_REGION"
        ) from exc
    except ValueError as exc:
        raise ConfigurationError(f"endpoint_url {endpoint_url!r} is not usable: {exc}") from exc
    return streams, dynamodb


def _client_error_parts(exc: ClientError) -> tuple[str, int, str]:
    """A service error's code, HTTP status and message, short and safe to print. A web page
    in place of an AWS answer (an endpoint URL that points at some other server) is named,
    not printed."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = redact(str(error.get("Message", "")).strip())
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if message[:200].lower().lstrip().startswith(("<!doctype html", "<html")):
        message = (
            f"the endpoint answered HTTP {status} with a web page, not an AWS answer: check "
            "that endpoint_url is the DynamoDB endpoint"
        )
    return code, status, message[:300]


def error_text(exc: Exception) -> str:
    """One short line for a botocore error, for messages that are not ``map_error``'s."""
    if isinstance(exc, ClientError):
        code, status, message = _client_error_parts(exc)
        return f"{code or status}: {message}"
    if isinstance(exc, (HTTPClientError, ConnectionError)):
        return (
            f"could not reach the endpoint ({exc}). Check endpoint_url / region_name and that "
            "the endpoint is running and reachable"
        )
    return redact(str(exc))


def map_error(exc: Exception, operation: str, resource: str) -> DDBStreamsError:
    """Translate a botocore error into the ddbstreams error a user can act on."""
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)):
        return CredentialsError(
            f"{operation} needs AWS credentials and none were usable ({exc}). Configure them "
            "(AWS_PROFILE, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or an instance role); "
            "a local endpoint accepts any dummy values."
        )
    if isinstance(exc, (HTTPClientError, ConnectionError)):
        return EndpointUnreachableError(f"{operation} {error_text(exc)}.")
    if not isinstance(exc, ClientError):
        return ServiceError(f"{operation} failed: {exc}")
    code, status, message = _client_error_parts(exc)
    detail = f"{operation} on {resource} failed: {code or status}: {message}"
    if code in _THROTTLING_CODES:
        return ThrottledError(detail)
    if code == "ExpiredIteratorException":
        return ExpiredIteratorError(detail)
    if code == "TrimmedDataAccessException":
        return TrimmedDataError(detail)
    if code in _CREDENTIAL_CODES:
        return CredentialsError(
            f"{detail}. Check the AWS credentials in use and that they allow "
            "dynamodb:DescribeTable, DescribeStream, GetShardIterator and GetRecords."
        )
    if code == "ResourceNotFoundException":
        if operation == "DescribeTable":
            return TableNotFoundError(
                f"table {resource!r} was not found. Check the table name, region_name and "
                "endpoint_url."
            )
        if operation in ("GetShardIterator", "GetRecords"):
            return StreamNotFoundError(
                f"{resource} was not found ({operation}: {message[:200]}): the stream was "
                "deleted, or the shard was removed (a closed shard is removed 24 hours after "
                "it closes, with its records)."
            )
        return StreamNotFoundError(
            f"stream {resource!r} was not found ({operation}: {message[:200]}). Check the "
            "ARN, or use table_name= to follow the table's current stream."
        )
    if code in _SERVER_CODES or status >= 500 or code.isdigit():
        return ServerError(detail)
    return ServiceError(detail, code=code)


_ERROR_KINDS: tuple[tuple[type[DDBStreamsError], str], ...] = (
    (ThrottledError, "throttled"),
    (ServerError, "server"),
    (EndpointUnreachableError, "unreachable"),
    (MalformedResponseError, "malformed"),
    (ExpiredIteratorError, "expired_iterator"),
    (TrimmedDataError, "trimmed"),
    (StreamNotFoundError, "not_found"),
    (TableNotFoundError, "not_found"),
    (CredentialsError, "credentials"),
)


def error_kind(exc: BaseException, operation: str) -> str:
    """A word for what went wrong with a call, for metrics: ``throttled``, ``server``,
    ``unreachable``, ``malformed``, ``expired_iterator``, ``trimmed``, ``not_found``,
    ``credentials`` or ``other``."""
    if isinstance(exc, (ClientError, BotoCoreError)):
        exc = map_error(exc, operation, "")
    elif isinstance(exc, UnicodeDecodeError):
        return "malformed"
    for cls, kind in _ERROR_KINDS:
        if isinstance(exc, cls):
            return kind
    return "other"


def _date_header(response: Any) -> float | None:
    """The UNIX time of an answer's HTTP ``Date`` header (the service's clock), if any."""
    try:
        date = response["ResponseMetadata"]["HTTPHeaders"]["date"]
        return email.utils.parsedate_to_datetime(date).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


def _member(response: Any, name: str, operation: str) -> Any:
    """A required member of an answer. botocore parses a 200 body that is not JSON (a proxy's
    HTML page, a cut body) into an answer without its members: that is malformed."""
    value = response.get(name) if isinstance(response, dict) else None
    if value is None:
        raise MalformedResponseError(
            f"{operation} answered without {name}: the body was not the JSON the API "
            "documents (is something between the consumer and the endpoint, such as a proxy?)"
        )
    return value


class FilterUnsupported(Exception):
    """``DescribeStream``'s ``ShardFilter`` is not supported here: scan the whole stream."""


class Interrupted(Exception):
    """A retry wait was cut short because the consumer is stopping."""


def _should_retry(exc: BaseException) -> bool:
    return (
        isinstance(exc, DDBStreamsError)
        and exc.retriable
        and not isinstance(exc, ExpiredIteratorError)
    )


class StreamsAPI:
    """DynamoDB and DynamoDB Streams calls with ddbstreams errors and bounded retries.

    ``streams_client`` is a boto3 ``dynamodbstreams`` client (its GetRecords gets the raw
    fast path) or anything with the same three methods, such as
    :class:`ddbstreams.testing.StreamSimulator`. ``dynamodb_client`` is only needed to
    resolve a table name.
    """

    def __init__(
        self,
        streams_client: Any,
        dynamodb_client: Any = None,
        *,
        attempts: int = 4,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        install_raw_records_hook(streams_client)
        self._streams = streams_client
        self._dynamodb = dynamodb_client
        self._attempts = attempts
        self._interrupted = threading.Event()
        self._sleep = sleep if sleep is not None else self._wait
        # The service's wall clock: the host's, or a StreamSimulator's virtual one.
        self.wall_time: Callable[[], float] = getattr(streams_client, "wall_time", time.time)
        # Told of every Streams call attempt: (operation, shard id or None, error kind or
        # None for a success); see _metrics.Reporter.api_call.
        self.observer: Callable[[str, str | None, str | None], None] | None = None

    def _observed(
        self, method: Callable[..., Any], operation: str, shard_id: str | None = None
    ) -> Callable[..., Any]:
        """``method``, telling the observer of each attempt and how it went."""
        observer = self.observer
        if observer is None:
            return method

        def observed(**kw: Any) -> Any:
            try:
                result = method(**kw)
            except Exception as exc:
                observer(operation, shard_id, error_kind(exc, operation))
                raise
            observer(operation, shard_id, None)
            return result

        return observed

    def interrupt(self) -> None:
        """Cut every retry wait short, now and later: calls raise :class:`Interrupted`."""
        self._interrupted.set()

    def _wait(self, seconds: float) -> None:
        if self._interrupted.wait(seconds):
            raise Interrupted()

    def _call(self, method: Callable[..., Any], operation: str, resource: str, **kw: Any) -> Any:
        # The common case, success at the first try, builds no retry machinery.
        try:
            return self._call_once(method, operation, resource, kw)
        except DDBStreamsError as exc:
            if not _should_retry(exc) or self._attempts == 1:
                raise
            first_failure: DDBStreamsError | None = exc

        def attempt() -> Any:
            nonlocal first_failure
            if first_failure is not None:  # tenacity's attempt 1 is the call that just failed
                failure, first_failure = first_failure, None
                raise failure
            return self._call_once(method, operation, resource, kw)

        def log_retry(state: Any) -> None:
            logger.debug(
                "%s failed (attempt %d of %d), retrying: %s",
                operation,
                state.attempt_number,
                self._attempts,
                state.outcome.exception() if state.outcome else "",
            )

        return Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_random_exponential(multiplier=0.05, max=2.0),
            retry=retry_if_exception(_should_retry),
            sleep=self._sleep,
            before_sleep=log_retry,
            reraise=True,
        )(attempt)

    @staticmethod
    def _call_once(
        method: Callable[..., Any], operation: str, resource: str, kw: dict[str, Any]
    ) -> Any:
        try:
            return method(**kw)
        except (ClientError, BotoCoreError) as exc:
            raise map_error(exc, operation, resource) from exc
        except UnicodeDecodeError as exc:  # botocore decoding a 200 body that is not text
            raise MalformedResponseError(
                f"{operation} on {resource} answered with a body that is not text: {exc}"
            ) from exc

    def resolve_stream_arn(self, table_name: str, *, enabled_only: bool = False) -> str | None:
        """The table's current stream ARN, or a clear error if it has none.

        With ``enabled_only``, None when the table's current stream is disabled.
        """
        if not hasattr(self._dynamodb, "describe_table"):
            raise ConfigurationError(
                "table_name= needs a client with describe_table (a boto3 'dynamodb' client or "
                "a StreamSimulator); with a 'dynamodbstreams' client pass stream_arn= instead"
            )
        table = _member(
            self._call(
                self._dynamodb.describe_table, "DescribeTable", table_name, TableName=table_name
            ),
            "Table",
            "DescribeTable",
        )
        stream_arn = table.get("LatestStreamArn")
        enabled = table.get("StreamSpecification", {}).get("StreamEnabled", bool(stream_arn))
        if enabled_only:
            return str(stream_arn) if stream_arn and enabled else None
        if not stream_arn:
            raise StreamNotEnabledError(
                f"table {table_name!r} has no stream. Enable one, for example:\n"
                f"  aws dynamodb update-table --table-name {table_name} "
                "--stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES"
            )
        return str(stream_arn)

    def describe_stream(self, stream_arn: str) -> StreamDescription:
        """Every shard of the stream, following ``LastEvaluatedShardId`` to the last page."""
        shards: list[ShardInfo] = []
        kwargs: dict[str, Any] = {"StreamArn": stream_arn}
        service_time: float | None = None
        while True:
            response = self._call(
                self._observed(self._streams.describe_stream, "DescribeStream"),
                "DescribeStream",
                stream_arn,
                **kwargs,
            )
            if service_time is None:
                service_time = _date_header(response)
            page = _member(response, "StreamDescription", "DescribeStream")
            shards.extend(ShardInfo.from_wire(shard) for shard in page.get("Shards", []))
            last = page.get("LastEvaluatedShardId")
            if not last:
                return StreamDescription(
                    stream_arn=stream_arn,
                    status=str(page.get("StreamStatus", "ENABLED")),
                    shards=tuple(shards),
                    service_time=service_time,
                    view_type=page.get("StreamViewType"),
                )
            kwargs["ExclusiveStartShardId"] = last

    def child_shards(self, stream_arn: str, shard_id: str) -> list[ShardInfo]:
        """The children of a shard, by ``DescribeStream`` with ``ShardFilter`` CHILD_SHARDS.

        Raises :class:`FilterUnsupported` where the endpoint or botocore does not know the
        filter (an older botocore, some local endpoints): then scan the whole stream."""
        try:
            response = self._call_once(
                self._observed(self._streams.describe_stream, "DescribeStream"),
                "DescribeStream",
                stream_arn,
                {
                    "StreamArn": stream_arn,
                    "ShardFilter": {"Type": "CHILD_SHARDS", "ShardId": shard_id},
                },
            )
        except TypeError as exc:  # a client whose describe_stream has no such parameter
            raise FilterUnsupported(str(exc)) from exc
        except ServiceError as exc:  # ParamValidationError (older botocore), ValidationException
            raise FilterUnsupported(str(exc)) from exc
        page = _member(response, "StreamDescription", "DescribeStream")
        children = [ShardInfo.from_wire(shard) for shard in page.get("Shards", [])]
        if any(child.parent_shard_id != shard_id for child in children):
            raise FilterUnsupported("the endpoint ignored ShardFilter")  # it listed them all
        return children

    def get_shard_iterator(
        self, stream_arn: str, shard_id: str, iterator_type: str, sequence_number: str | None
    ) -> str:
        kwargs: dict[str, Any] = {
            "StreamArn": stream_arn,
            "ShardId": shard_id,
            "ShardIteratorType": iterator_type,
        }
        if sequence_number is not None:
            kwargs["SequenceNumber"] = sequence_number
        response = self._call(
            self._observed(self._streams.get_shard_iterator, "GetShardIterator", shard_id),
            "GetShardIterator",
            f"shard {shard_id} of stream {stream_arn}",
            **kwargs,
        )
        return str(_member(response, "ShardIterator", "GetShardIterator"))

    def get_records(self, shard_id: str, iterator: str, limit: int) -> RecordsPage:
        _ddbstreams_call.active = True
        try:
            response = self._call(
                self._observed(self._streams.get_records, "GetRecords", shard_id),
                "GetRecords",
                f"shard {shard_id}",
                ShardIterator=iterator,
                Limit=limit,
            )
        finally:
            _ddbstreams_call.active = False
        page: RecordsPage | None = response.get(_PAGE)
        return page if page is not None else RecordsPage.from_response(response)
