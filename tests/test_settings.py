"""Invalid settings fail at construction, naming the parameter."""

from __future__ import annotations

from typing import Any

import pytest

from ddbstreams import ConfigurationError, ConsumerSettings, StreamConsumer
from ddbstreams.testing import StreamSimulator

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-01-01T00:00:00.000"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("start_position", "EARLIEST"),
        ("trimmed_data", "ignore"),
        ("poll_interval", -1),
        ("poll_interval", float("nan")),
        ("poll_interval", "0.25"),
        ("checkpoint_interval", -0.1),
        ("discovery_interval", float("inf")),
        ("batch_size", 0),
        ("batch_size", 1001),
        ("batch_size", 10.5),
        ("checkpoint_every", 0),
        ("max_workers", 0),
        ("max_workers", True),
        ("request_attempts", 0),
        ("handler_retry_initial", -1),
    ],
)
def test_invalid_setting_names_the_parameter(field: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=field):
        ConsumerSettings(**{field: value})


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("LATEST", "LATEST"),
        ("latest", "LATEST"),
        ("Latest", "LATEST"),
        ("TRIM_HORIZON", "TRIM_HORIZON"),
        ("trim_horizon", "TRIM_HORIZON"),
        ("trim-horizon", "TRIM_HORIZON"),
        ("TRIM-HORIZON", "TRIM_HORIZON"),
    ],
)
def test_start_position_accepts_any_case_and_a_hyphen(spelling: str, canonical: str) -> None:
    assert ConsumerSettings(start_position=spelling).start_position == canonical
    consumer = StreamConsumer(
        handler,
        stream_arn=ARN,
        client=StreamSimulator(),
        start_position=spelling,
    )
    assert consumer.settings.start_position == canonical
    assert ConsumerSettings(start_position=spelling) == ConsumerSettings(start_position=canonical)


@pytest.mark.parametrize("spelling", ["trim horizon", "LATEST ", "earliest", "", None, 0])
def test_start_position_refuses_other_values(spelling: Any) -> None:
    with pytest.raises(ConfigurationError, match="start_position must be one of"):
        ConsumerSettings(start_position=spelling)


def test_retry_bounds_must_be_ordered() -> None:
    with pytest.raises(ConfigurationError, match="handler_retry_max"):
        ConsumerSettings(handler_retry_initial=5, handler_retry_max=1)


def test_configuration_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        ConsumerSettings(batch_size=-5)


def handler(record: Any) -> None:
    pass


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of table_name= or stream_arn="),
        ({"table_name": "t", "stream_arn": ARN}, "exactly one"),
        ({"table_name": ""}, "table_name"),
        ({"stream_arn": "not-an-arn"}, "stream_arn"),
        ({"stream_arn": ARN, "start_position": "NOW"}, "start_position"),
        ({"stream_arn": ARN, "checkpoint_store": {}}, "checkpoint_store"),
        ({"stream_arn": ARN, "endpoint_url": "localhost:8000"}, "endpoint_url"),
        ({"stream_arn": ARN, "on_data_loss": 42}, "on_data_loss"),
    ],
)
def test_invalid_consumer_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        StreamConsumer(handler, region_name="us-east-1", **kwargs)


def test_handler_must_be_callable() -> None:
    with pytest.raises(ConfigurationError, match="handler"):
        StreamConsumer("print", stream_arn=ARN, region_name="us-east-1")


def test_client_excludes_endpoint_url() -> None:
    with pytest.raises(ConfigurationError, match="client="):
        StreamConsumer(handler, stream_arn=ARN, client=StreamSimulator(), endpoint_url="http://x")


def test_start_position_argument_overrides_settings() -> None:
    consumer = StreamConsumer(
        handler,
        stream_arn=ARN,
        client=StreamSimulator(),
        settings=ConsumerSettings(poll_interval=1.0),
        start_position="LATEST",
    )
    assert consumer.settings == ConsumerSettings(poll_interval=1.0, start_position="LATEST")


def test_table_name_with_a_streams_only_client_says_what_to_do() -> None:
    import boto3

    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    consumer = StreamConsumer(handler, table_name="orders", client=streams)
    with pytest.raises(ConfigurationError, match="pass stream_arn="):
        consumer.run()
