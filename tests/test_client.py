"""Botocore errors become ddbstreams errors at one boundary, with the cause chained."""

from __future__ import annotations

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
from ddbstreams._client import StreamsAPI, map_error
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


@pytest.mark.parametrize("loads", ["json", "orjson"])
def test_raw_records_hook_gives_the_same_records_with_either_decoder(
    loads: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from ddbstreams import _client

    decoder = pytest.importorskip(loads)
    monkeypatch.setattr(_client, "json_loads", decoder.loads)
    body = {
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
    response = {"status_code": 200, "body": json.dumps(body).encode()}
    customized: dict[str, object] = {}
    _client._take_raw_records(response_dict=response, customized_response_dict=customized)
    assert customized == body
    assert response["body"] == b"{}"  # botocore's parser is left nothing to walk


def test_raw_records_hook_leaves_errors_to_botocore() -> None:
    from ddbstreams import _client

    response = {"status_code": 400, "body": b'{"__type": "ExpiredIteratorException"}'}
    customized: dict[str, object] = {}
    _client._take_raw_records(response_dict=response, customized_response_dict=customized)
    assert customized == {}
    assert response["body"] == b'{"__type": "ExpiredIteratorException"}'
