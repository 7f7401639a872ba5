"""The ddbstreams command: tail over real HTTP, and the local endpoint as a process."""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

import ddbstreams
from conftest import put_order
from ddbstreams._cli import (
    _parser,
    configure_logging,
    describe,
    main,
    record_as_json,
)
from ddbstreams._redact import RedactSecrets
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
        else:
            assert process.poll() is None, f"exited with {process.returncode}; got {lines}"
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


class Lines:
    """The lines of a child's output stream, each waited for with a timeout."""

    def __init__(self, stream: Any) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put("<EOF>")

    def next(self, timeout: float = 20) -> str:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout} s") from None

    def until(self, prefix: str, timeout: float = 20) -> str:
        """The first line starting with ``prefix`` (the ones before it are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.next(max(0.0, deadline - time.monotonic()))
            assert line != "<EOF>", f"the stream ended before a line starting {prefix!r}"
            if line.startswith(prefix):
                return line


def tail_process(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "tail", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def test_tail_tells_what_it_reads(
    local_endpoint: LocalEndpoint, dynamodb: Any, order_table: str
) -> None:
    arn = dynamodb.describe_table(TableName=order_table)["Table"]["LatestStreamArn"]
    tail = tail_process(order_table, "--endpoint-url", local_endpoint.url, "--from", "LATEST")
    try:
        header = Lines(tail.stderr).until("tailing ")
    finally:
        tail.send_signal(signal.SIGINT)
        assert tail.wait(10) == 0
    assert header == f"tailing {arn} (1 shard, from latest); Ctrl-C stops"


def test_second_ctrl_c_exits_at_once_without_a_traceback(
    local_endpoint: LocalEndpoint, dynamodb: Any, order_table: str
) -> None:
    # A record far larger than a pipe's buffer, and nobody reading stdout past its first
    # character: the handler stays blocked in print, so the clean stop cannot finish.
    dynamodb.put_item(
        TableName=order_table,
        Item={
            "email": {"S": "anil@example.com"},
            "order_number": {"S": "1"},
            "note": {"S": "x" * 300_000},
        },
    )
    tail = tail_process(order_table, "--endpoint-url", local_endpoint.url)
    try:
        assert tail.stdout is not None
        stderr = Lines(tail.stderr)
        stderr.until("tailing ")
        assert tail.stdout.read(1) == "I"  # the handler is printing the INSERT...
        tail.send_signal(signal.SIGINT)
        assert stderr.next() == "stopping… (Ctrl-C again to exit at once)"
        assert tail.poll() is None  # ...and cannot finish, so neither can the clean stop
        tail.send_signal(signal.SIGINT)
        assert tail.wait(10) == 130
        assert stderr.next() == "<EOF>"  # nothing more: no traceback
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()


@pytest.mark.moto_only(reason="starts the embedded moto endpoint late")
def test_tail_waits_for_an_endpoint_that_starts_after_it(dynamodb: Any, order_table: str) -> None:
    # `ddbstreams local & ddbstreams tail ...`: tail first, on a port where nothing listens.
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    tail = tail_process(order_table, "--endpoint-url", url, "--connect-timeout", "60")
    try:
        stderr = Lines(tail.stderr)
        assert stderr.next() == f"waiting for the endpoint at {url}…"
        # The endpoints of one process share moto's state: the table (made through the
        # session's endpoint) is there as soon as this one listens.
        with LocalEndpoint("127.0.0.1", port) as late:
            late_dynamodb = boto3.client("dynamodb", **late.client_kwargs())
            put_order(late_dynamodb, order_table, "anil@example.com", "2023/01/01#1344")
            stderr.until("tailing ")
            (line,) = read_lines(tail, 1)
            tail.send_signal(signal.SIGINT)
            assert tail.wait(10) == 0
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
    assert line.startswith("INSERT ")
    assert "email=anil@example.com" in line


def test_tail_gives_up_on_an_endpoint_after_connect_timeout(
    order_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    assert main(["tail", order_table, "--endpoint-url", url, "--connect-timeout", "0.5"]) == 1
    assert time.monotonic() - started < 5
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"waiting for the endpoint at {url}…"
    assert err[1].startswith(f"ddbstreams: error: nothing answered at {url} for 0.5 s (")
    assert err[1].endswith(
        "Check --endpoint-url and --region and that the endpoint is running, or wait longer "
        "with --connect-timeout."
    )
    assert len(err) == 2


FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIAFAKE0123456789AB",
    "AWS_SECRET_ACCESS_KEY": "fakeSecret/0123456789abcdefghijklmnopqrstu",
    "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEFakeSessionToken0123456789//+abcDEF==",
}


@pytest.mark.parametrize(
    "verbose",
    [["-v", "tail", "{table}"], ["tail", "{table}", "-v"], ["tail", "{table}", "-vv"]],
    ids=["-v before tail", "-v after tail", "-vv"],
)
def test_verbose_logs_what_happens_and_never_a_credential(
    local_endpoint: LocalEndpoint,
    dynamodb: Any,
    order_table: str,
    tmp_path: Path,
    verbose: list[str],
) -> None:
    put_order(dynamodb, order_table, "anil@example.com", "2023/01/01#1344")
    stderr_path = tmp_path / "stderr"
    args = [arg.format(table=order_table) for arg in verbose]
    with stderr_path.open("w") as stderr:
        tail = subprocess.Popen(
            [*CLI, *args, "--endpoint-url", local_endpoint.url],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, **FAKE_CREDENTIALS},
        )
        try:
            (line,) = read_lines(tail, 1)
        finally:
            tail.send_signal(signal.SIGINT)
            out, _ = tail.communicate(timeout=10)
    err = stderr_path.read_text()
    assert line.startswith("INSERT ")
    assert "INFO ddbstreams: consuming arn:aws:dynamodb:" in err  # verbose does log
    if "-vv" in args:
        assert "DEBUG botocore.endpoint: Sending http request" in err
        assert "Authorization" in err
    for output in (err, line + out):
        for secret in FAKE_CREDENTIALS.values():
            assert secret not in output
        assert not re.search(r"(?i)signature['\"]?\s*[:=]\s*b?['\"]?\s*[0-9a-f]{16}", output)
        assert not re.search(r"(?i)credential=AKIA", output)


def test_redact_secrets_masks_credentials_by_shape() -> None:
    redact = RedactSecrets().redact
    assert redact("key ASIAABCDEFGHIJKLMNOP used") == "key <redacted> used"
    assert redact("X-Amz-Security-Token=abc%2Fdef&X-Amz-Signature=0123456789abcdef0123") == (
        "X-Amz-Security-Token=<redacted>&X-Amz-Signature=<redacted>"
    )
    assert redact("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG") == (
        "aws_secret_access_key = <redacted>"
    )
    assert redact("Signature:\n" + "ab" * 32) == "Signature:\n<redacted>"
    assert redact("table testing-orders") == "table testing-orders"


def test_tail_ends_quietly_when_its_reader_closes_the_pipe(
    local_endpoint: LocalEndpoint, dynamodb: Any, order_table: str, tmp_path: Path
) -> None:
    # As in `ddbstreams tail TABLE | head -1`.
    put_order(dynamodb, order_table, "user0@example.com", "1")
    stderr_path = tmp_path / "stderr"
    with stderr_path.open("w") as stderr:
        tail = subprocess.Popen(
            [*CLI, "tail", order_table, "--endpoint-url", local_endpoint.url],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            (line,) = read_lines(tail, 1)
            assert tail.stdout is not None
            tail.stdout.close()  # the reader goes away...
            put_order(dynamodb, order_table, "user1@example.com", "1")  # ...before this is printed
            status = tail.wait(15)
        finally:
            if tail.poll() is None:
                tail.kill()
                tail.wait()
    assert line.startswith("INSERT ")
    assert status == 0
    err = stderr_path.read_text()
    assert "Traceback" not in err
    assert "BrokenPipe" not in err
    assert "Exception ignored" not in err


def test_tail_missing_table_is_one_clear_line(
    local_endpoint: LocalEndpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["tail", "no-such-table", "--endpoint-url", local_endpoint.url])
    assert status == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ddbstreams: error: table 'no-such-table' was not found")
    assert "Traceback" not in err


def test_errors_name_the_command_line_flags(
    local_endpoint: LocalEndpoint,
    order_table: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def error_of(*args: str) -> str:
        assert main(["tail", order_table, *args]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("ddbstreams: error: ")
        return err

    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("not a database, but somebody's notes\n" * 200)
    err = error_of("--endpoint-url", local_endpoint.url, "--checkpoint-db", str(not_a_db))
    assert "give --checkpoint-db another path" in err
    assert "SQLiteCheckpointStore" not in err

    err = error_of("--endpoint-url", "localhost:8000")
    assert "--endpoint-url must start with http:// or https://" in err
    assert "endpoint_url" not in err

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    err = error_of("--endpoint-url", local_endpoint.url)
    assert "no AWS region is configured: pass --region us-east-1 (for example)" in err
    assert "region_name" not in err


@pytest.mark.parametrize(
    ("spelling", "position"),
    [
        ("latest", "LATEST"),
        ("LATEST", "LATEST"),
        ("trim-horizon", "TRIM_HORIZON"),
        ("trim_horizon", "TRIM_HORIZON"),
        ("TRIM_HORIZON", "TRIM_HORIZON"),
    ],
)
def test_from_accepts_any_case_and_underscore(spelling: str, position: str) -> None:
    assert _parser().parse_args(["tail", "T", "--from", spelling]).start == position


def test_from_refuses_other_positions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["tail", "T", "--from", "earliest"])
    assert exit_.value.code == 2
    assert "'earliest' is not a start position: give trim-horizon or latest" in (
        capsys.readouterr().err
    )


def test_log_lines_name_the_command_line_flags(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(0)
    logging.getLogger("ddbstreams").warning("%s: check endpoint_url / region_name", "DescribeTable")
    logging.getLogger("other").warning("endpoint_url is another library's business")
    err = capsys.readouterr().err
    assert "WARNING ddbstreams: DescribeTable: check --endpoint-url / --region" in err
    assert "WARNING other: endpoint_url is another library's business" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"ddbstreams {ddbstreams.__version__}\n"


def parsers() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"ddbstreams": parser, **commands.choices}


@pytest.mark.parametrize("command", ["ddbstreams", "tail", "local"])
def test_every_help_has_a_description_and_every_option_its_default(command: str) -> None:
    parser = parsers()[command]
    assert parser.description
    for action in parser._actions:
        if action.option_strings and action.dest not in ("help", "version"):
            assert "(default: " in (action.help or ""), action.option_strings


def test_tail_help_lists_the_json_fields_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["tail", "--help"])
    help_text = capsys.readouterr().out
    sim = StreamSimulator()
    sim.insert({"email": "a@example.com", "order_number": "1"})
    shard = sim.open_shard_ids()[0]
    fields = record_as_json(ddbstreams.Record(sim.records(shard)[0], shard))
    for field in fields:
        assert f"    {field}" in help_text or f", {field}" in help_text, field
    assert "\nexamples:\n  ddbstreams tail " in help_text
    assert "(default: trim-horizon)" in help_text


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


@pytest.mark.moto_only(reason="starts the embedded moto endpoint")
@pytest.mark.parametrize("account_id_endpoint_mode", [None, "preferred", "required"])
def test_local_endpoint_leaves_the_environment_alone(
    monkeypatch: pytest.MonkeyPatch, account_id_endpoint_mode: str | None
) -> None:
    monkeypatch.delenv("AWS_ACCOUNT_ID_ENDPOINT_MODE", raising=False)
    if account_id_endpoint_mode is not None:
        monkeypatch.setenv("AWS_ACCOUNT_ID_ENDPOINT_MODE", account_id_endpoint_mode)
        monkeypatch.setenv("AWS_ACCOUNT_ID", "123456789012")
    environment = dict(os.environ)
    with LocalEndpoint("127.0.0.1", 0) as endpoint:
        assert dict(os.environ) == environment
        # Clients built from client_kwargs() reach DynamoDB Streams, whatever the mode: with
        # an endpoint_url, botocore never picks an account-based endpoint.
        dynamodb = boto3.client("dynamodb", **endpoint.client_kwargs())
        streams = boto3.client("dynamodbstreams", **endpoint.client_kwargs())
        table = f"environment-{account_id_endpoint_mode}-{os.getpid()}"
        create_order_table(dynamodb, table)
        try:
            put_order(dynamodb, table, "anil@example.com", "2023/01/01#1344")
            arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
            (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
            iterator = streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            (record,) = streams.get_records(ShardIterator=iterator)["Records"]
        finally:
            dynamodb.delete_table(TableName=table)
    assert record["eventName"] == "INSERT"
    assert dict(os.environ) == environment


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


@pytest.mark.parametrize("port", ["99999", "-5", "http"])
def test_local_port_out_of_range_is_a_usage_error(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["local", "--port", port])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --port: {port!r} is not a port number: give one from 0 to 65535" in err
    assert "Traceback" not in err


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
