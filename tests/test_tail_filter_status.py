"""``ddbstreams tail --filter`` and the status line on stderr, as a process over real HTTP."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from typing import Any

import pytest

from conftest import put_order
from ddbstreams.testing import LocalEndpoint
from test_cli import Lines, read_lines

pytestmark = [pytest.mark.local_endpoint, pytest.mark.slow, pytest.mark.timeout(60)]
CLI = [sys.executable, "-m", "ddbstreams._cli", "tail"]


def test_tail_filter_prints_only_matching_records(
    local_endpoint: LocalEndpoint, dynamodb: Any, order_table: str
) -> None:
    put_order(dynamodb, order_table, "a@example.com", "1", amount=5)
    put_order(dynamodb, order_table, "a@example.com", "1", amount=6)  # a MODIFY
    put_order(dynamodb, order_table, "b@example.com", "2", amount=7)
    put_order(dynamodb, order_table, "b@example.com", "2", amount=8)  # a MODIFY
    tail = subprocess.Popen(
        [
            *CLI,
            order_table,
            "--endpoint-url",
            local_endpoint.url,
            "--json",
            "--filter",
            '{"eventName": ["MODIFY"]}',
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        header = Lines(tail.stderr).until("tailing ")
        lines = read_lines(tail, 2)
    finally:
        tail.send_signal(signal.SIGINT)
        assert tail.wait(10) == 0
    assert header.endswith("from trim-horizon, records matching --filter); Ctrl-C stops")
    records = [json.loads(line) for line in lines]
    assert [(r["event_name"], r["new_image"]["order_amount"]) for r in records] == [
        ("MODIFY", 6),
        ("MODIFY", 8),
    ]


def test_a_malformed_filter_is_a_usage_error_that_says_what_is_wrong() -> None:
    done = subprocess.run(
        [*CLI, "orders", "--filter", '{"eventName": "INSERT"}'],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "argument --filter: invalid filter" in done.stderr
    assert "Traceback" not in done.stderr


def test_status_line_on_stderr_when_stdout_is_a_terminal(
    local_endpoint: LocalEndpoint, dynamodb: Any, order_table: str
) -> None:
    for n in range(3):
        put_order(dynamodb, order_table, f"user{n}@example.com", str(n))
    primary, secondary = pty.openpty()
    tail = subprocess.Popen(
        [*CLI, order_table, "--endpoint-url", local_endpoint.url],
        stdout=secondary,
        stderr=subprocess.PIPE,
    )
    os.close(secondary)
    try:
        assert tail.stderr is not None
        seen = b""
        while b"3 records, " not in seen:
            chunk = tail.stderr.read1(4096)  # type: ignore[attr-defined]
            assert chunk, f"stderr ended: {seen!r}"
            seen += chunk
    finally:
        tail.send_signal(signal.SIGINT)
        assert tail.wait(10) == 0
        os.close(primary)
    status = seen.decode().split("\r\x1b[K")[-1]
    assert status.startswith("3 records, ") and "records/s, lag " in status


def test_no_status_line_when_stdout_is_not_a_terminal(
    local_endpoint: LocalEndpoint, dynamodb: Any, order_table: str
) -> None:
    put_order(dynamodb, order_table, "a@example.com", "1")
    tail = subprocess.Popen(
        [*CLI, order_table, "--endpoint-url", local_endpoint.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        read_lines(tail, 1)
    finally:
        tail.send_signal(signal.SIGINT)
        assert tail.wait(10) == 0
    assert tail.stderr is not None
    assert "records/s" not in tail.stderr.read()
