"""The ddbstreams command: tail over real HTTP, and the local endpoint as a process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import boto3
import pytest

from conftest import put_order
from ddbstreams._cli import describe, main
from ddbstreams.testing import LocalEndpoint, StreamSimulator, create_order_table

pytestmark = pytest.mark.local_endpoint
CLI = [sys.executable, "-m", "ddbstreams._cli"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def read_lines(process: subprocess.Popen[str], count: int, timeout: float = 20) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while len(lines) < count:
        assert time.monotonic() < deadline, f"got {lines}"
        line = process.stdout.readline()
        if line:
            lines.append(line.rstrip("\n"))
    return lines


def test_tail_json_prints_one_object_per_record(
    local_endpoint: LocalEndpoint, dynamodb: Any, order_table: str
) -> None:
    for n in range(3):
        put_order(dynamodb, order_table, f"user{n}@example.com", f"2023/01/01#{n}", amount=10 + n)
    tail = subprocess.Popen(
        [*CLI, "tail", order_table, "--endpoint-url", local_endpoint.url, "--json"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = read_lines(tail, 3)
    finally:
        tail.send_signal(signal.SIGINT)
        assert tail.wait(10) == 0
    records = [json.loads(line) for line in lines]
    assert [r["event_name"] for r in records] == ["INSERT"] * 3
    assert [r["new_image"]["order_amount"] for r in records] == [10, 11, 12]
    assert records[0]["keys"] == {"email": "user0@example.com", "order_number": "2023/01/01#0"}


def test_tail_missing_table_is_one_clear_line(
    local_endpoint: LocalEndpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["tail", "no-such-table", "--endpoint-url", local_endpoint.url])
    assert status == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ddbstreams: error: table 'no-such-table' was not found")
    assert "Traceback" not in err


def test_describe_shows_what_changed() -> None:
    sim = StreamSimulator()
    old = {"email": "a@example.com", "order_number": "1", "order_status": "pending"}
    sim.modify(old, {**old, "order_status": "shipped"})
    from ddbstreams import Record

    shard = sim.open_shard_ids()[0]
    line = describe(Record(sim.records(shard)[0], shard))
    assert line.startswith("MODIFY ")
    assert "email=a@example.com order_number=1" in line
    assert "order_status: pending -> shipped" in line


@pytest.mark.moto_only(reason="tests `ddbstreams local`, which serves moto")
@pytest.mark.slow
def test_local_serves_the_exercise_commands() -> None:
    port = free_port()
    server = subprocess.Popen(
        [*CLI, "local", "--port", str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        banner = read_lines(server, 4)
        assert banner[0].startswith(f"ddbstreams local endpoint: http://127.0.0.1:{port}")
        assert "AWS_ACCESS_KEY_ID=" in banner[1]
        url = f"http://localhost:{port}"  # as the exercise writes it
        dynamodb = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1")
        create_order_table(dynamodb, "example-customer-order-table", None)
        if shutil.which("aws"):
            # The exercise's own command, verbatim but for the port.
            subprocess.run(
                [
                    "aws",
                    "dynamodb",
                    "update-table",
                    "--table-name",
                    "example-customer-order-table",
                    "--stream-specification",
                    "StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES",
                    "--endpoint-url",
                    url,
                ],
                check=True,
                capture_output=True,
                env={**os.environ, "AWS_PAGER": ""},
            )
        else:
            dynamodb.update_table(
                TableName="example-customer-order-table",
                StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
            )
        put_order(dynamodb, "example-customer-order-table", "anil@example.com", "2023/01/01#1344")
        tail = subprocess.Popen(
            [*CLI, "tail", "example-customer-order-table", "--endpoint-url", url],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            (line,) = read_lines(tail, 1)
        finally:
            tail.send_signal(signal.SIGTERM)
            tail.wait(10)
        assert line.startswith("INSERT ")
        assert "email=anil@example.com" in line
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0


@pytest.mark.moto_only(reason="tests `ddbstreams local`, which serves moto")
def test_local_port_taken_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["local", "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"ddbstreams: error: port {port} on 127.0.0.1 is already in use: stop what uses it, "
        "or pass --port with another number (0 picks a free one)"
    )


@pytest.mark.moto_only(reason="tests `ddbstreams local`, which serves moto")
def test_local_without_the_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "moto.server", None)  # as if moto were not installed
    assert main(["local", "--port", "0"]) == 1
    assert capsys.readouterr().err.strip() == (
        "ddbstreams: error: the local endpoint needs the 'local' extra: "
        "pip install 'ddbstreams[local]'"
    )
