"""Botocore errors become ddbstreams errors at one boundary, with the cause chained."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from ddbstreams import (
    CredentialsError,
    EndpointUnreachableError,
    ExpiredIteratorError,
    ServerError,
    ServiceError,
    StreamNotFoundError,
    TableNotFoundError,
    ThrottledError,
    TrimmedDataError,
)
from ddbstreams._client import Interrupted, StreamsAPI, map_error
from ddbstreams.testing import StreamSimulator


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "Op",
    )


@pytest.mark.parametrize(
    ("exc", "operation", "expected"),
    [
        (client_error("LimitExceededException"), "GetRecords", ThrottledError),
        (client_error("ThrottlingException"), "DescribeStream", ThrottledError),
        (client_error("InternalServerError", 500), "GetRecords", ServerError),
        (client_error("500", 500), "GetRecords", ServerError),
        (client_error("ExpiredIteratorException"), "GetRecords", ExpiredIteratorError),
        (client_error("TrimmedDataAccessException"), "GetRecords", TrimmedDataError),
        (client_error("ResourceNotFoundException"), "DescribeTable", TableNotFoundError),
        (client_error("ResourceNotFoundException"), "DescribeStream", StreamNotFoundError),
        (client_error("UnrecognizedClientException"), "DescribeTable", CredentialsError),
        (client_error("AccessDeniedException"), "GetRecords", CredentialsError),
        (client_error("ValidationException"), "GetRecords", ServiceError),
        (EndpointConnectionError(endpoint_url="http://x"), "GetRecords", EndpointUnreachableError),
        (NoCredentialsError(), "DescribeTable", CredentialsError),
    ],
)
def test_error_mapping(exc: Exception, operation: str, expected: type) -> None:
    mapped = map_error(exc, operation, "resource")
    assert type(mapped) is expected
    assert mapped.retriable == (
        expected in (ThrottledError, ServerError, EndpointUnreachableError, ExpiredIteratorError)
    )


def test_service_error_keeps_its_code() -> None:
    mapped = map_error(client_error("ValidationException"), "GetRecords", "shard")
    assert isinstance(mapped, ServiceError)
    assert mapped.code == "ValidationException"


def test_retries_are_bounded_and_chain_the_cause() -> None:
    sim = StreamSimulator()
    sleeps: list[float] = []
    api = StreamsAPI(sim, attempts=3, sleep=sleeps.append)
    sim.throttle("DescribeStream", times=10)
    with pytest.raises(ThrottledError) as caught:
        api.describe_stream(sim.stream_arn)
    assert sim.calls["DescribeStream"] == 3
    assert len(sleeps) == 2
    assert all(0 <= s <= 2.0 for s in sleeps)
    assert isinstance(caught.value.__cause__, ClientError)


def test_non_retriable_errors_are_not_retried() -> None:
    sim = StreamSimulator()
    api = StreamsAPI(sim, attempts=5, sleep=lambda _: None)
    with pytest.raises(StreamNotFoundError):
        api.describe_stream(sim.stream_arn + "-other")
    assert sim.calls["DescribeStream"] == 1


def test_describe_stream_follows_every_page() -> None:
    sim = StreamSimulator(shard_count=230)
    api = StreamsAPI(sim)
    description = api.describe_stream(sim.stream_arn)
    assert len({s.shard_id for s in description.shards}) == 230
    assert sim.calls["DescribeStream"] == 3


BODY = {
    "Records": [
        {
            "eventName": "INSERT",
            "dynamodb": {
                "Keys": {"k": {"B": "AAE="}},
                "ApproximateCreationDateTime": 1767225600.123,
                "SequenceNumber": "1" * 40,
            },
        }
    ],
    "NextShardIterator": "next",
}


def take_raw_records(response: dict[str, Any], *, by_ddbstreams: bool) -> dict[str, Any]:
    from ddbstreams import _client

    customized: dict[str, Any] = {}
    _client._ddbstreams_call.active = by_ddbstreams
    try:
        _client._take_raw_records(response_dict=response, customized_response_dict=customized)
    finally:
        _client._ddbstreams_call.active = False
    return customized


def test_raw_records_hook_hands_the_body_to_a_page() -> None:
    from ddbstreams._client import _PAGE

    response = {"status_code": 200, "body": json.dumps(BODY).encode()}
    page = take_raw_records(response, by_ddbstreams=True)[_PAGE]
    assert list(page.records) == BODY["Records"]  # wire form: binary stays base64 text
    assert page.next_iterator == "next"
    assert response["body"] == b"{}"  # botocore's parser is left nothing to walk


def test_raw_records_hook_leaves_other_callers_of_the_client_alone() -> None:
    response = {"status_code": 200, "body": json.dumps(BODY).encode()}
    assert take_raw_records(response, by_ddbstreams=False) == {}
    assert response["body"] == json.dumps(BODY).encode()


def test_raw_records_hook_leaves_errors_to_botocore() -> None:
    response = {"status_code": 400, "body": b'{"__type": "ExpiredIteratorException"}'}
    assert take_raw_records(response, by_ddbstreams=True) == {}
    assert response["body"] == b'{"__type": "ExpiredIteratorException"}'


def test_a_missing_shard_is_named_as_a_shard_not_a_stream() -> None:
    sim = StreamSimulator()
    api = StreamsAPI(sim, attempts=1)
    with pytest.raises(StreamNotFoundError) as caught:
        api.get_shard_iterator(sim.stream_arn, "shardId-00000000000000000099-x", "LATEST", None)
    message = str(caught.value)
    assert "shard shardId-00000000000000000099-x of stream arn:aws:dynamodb" in message
    assert "stream 'shardId" not in message
    assert "removed 24 hours after it closes" in message


def test_retry_waits_end_at_once_when_interrupted() -> None:
    sim = StreamSimulator()
    sim.throttle("DescribeStream", times=10)
    api = StreamsAPI(sim, attempts=10)
    api.interrupt()  # a stop before or during the waits: no wait happens at all
    with pytest.raises(Interrupted):
        api.describe_stream(sim.stream_arn)
    assert sim.calls["DescribeStream"] == 1
