"""``ddbstreams checkpoints show|seek|reset`` end to end: the local endpoint (moto) and the
simulator served over HTTP (for lineage), exit codes and messages for bad input."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest

from conftest import FAST, put_order, serving
from ddbstreams import (
    DynamoDBCheckpointStore,
    SQLiteCheckpointStore,
    StreamConsumer,
)
from ddbstreams._cli import main
from ddbstreams.testing import LocalEndpoint, RecordCollector, SimulatorServer, StreamSimulator

pytestmark = [pytest.mark.local_endpoint, pytest.mark.timeout(90)]


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        status = main(["checkpoints", *args])
    except SystemExit as exc:  # argparse: usage errors
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def consume(store: Any, count: int, **where: Any) -> list[str]:
    collector = RecordCollector()
    with StreamConsumer(collector, checkpoint_store=store, settings=FAST, **where):
        collector.wait_for(count, timeout=20)
    return collector.sequence_numbers()


# ----------------------------------------------------------------- lineage, over HTTP


@pytest.fixture
def rolled() -> Any:
    """A simulated stream served over HTTP: a parent (5 records) rolled over into a child
    (5 records), one record a second."""
    sim = StreamSimulator()
    parent = sim.open_shard_ids()[0]
    for n in range(5):
        sim.insert({"email": f"user{n}@example.com", "order_number": "1"})
        sim.advance(1.0)
    (child,) = sim.rollover(parent)
    for n in range(5, 10):
        sim.insert({"email": f"user{n}@example.com", "order_number": "1"})
        sim.advance(1.0)
    with SimulatorServer(sim) as server:
        yield sim, server, parent, child


def test_seek_by_time_over_a_rollover_then_the_consumer_delivers_that_record_next(
    rolled: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim, server, parent, child = rolled
    db = tmp_path / "orders.db"
    store = SQLiteCheckpointStore(db)
    consume(store, 10, stream_arn=sim.stream_arn, client=sim)
    where = ["--sqlite", str(db), "--table", sim.table_name, "--endpoint-url", server.url]
    target = sim.records(child)[2]["dynamodb"]
    when = iso(target["ApproximateCreationDateTime"])

    status, out, _ = run_cli(capsys, "seek", *where, "--to-time", when, "--dry-run")
    assert status == 0
    assert f"{parent}  unchanged: finished" in out
    assert f"next record {target['SequenceNumber']}" in out
    assert "scanned 8 record(s) in 2 shard(s)" in out
    assert "dry run: 1 shard(s) would change; nothing written" in out

    status, out, _ = run_cli(capsys, "seek", *where, "--to-time", when)
    assert status == 0, out
    assert "moved 1 shard(s)" in out
    status, out, _ = run_cli(capsys, "show", *where)
    assert status == 0
    assert "lag" in out and f"(next {target['SequenceNumber']})" in out
    children = [r["dynamodb"]["SequenceNumber"] for r in sim.records(child)]
    assert consume(store, 3, stream_arn=sim.stream_arn, client=sim) == children[2:]


def test_seek_refuses_while_a_consumer_process_holds_the_sqlite_file(
    rolled: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim, server, _, _ = rolled
    db = tmp_path / "orders.db"
    SQLiteCheckpointStore(db).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, ddbstreams; s = ddbstreams.SQLiteCheckpointStore(sys.argv[1]); "
            "s.load_all('x'); print('open', flush=True); sys.stdin.read()",
            str(db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        where = ["--sqlite", str(db), "--table", sim.table_name, "--endpoint-url", server.url]
        status, _, err = run_cli(capsys, "seek", *where, "--to", "trim-horizon")
        assert status == 1
        assert f"is open in process {holder.pid} (a running consumer?)" in err
        assert "stop every consumer using it" in err
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
    status, out, _ = run_cli(capsys, "seek", *where, "--to", "trim-horizon")
    assert status == 0 and "moved 1 shard(s)" in out  # the child was not begun already


# ----------------------------------------------------------------- moto, real HTTP


def test_seek_by_time_on_the_local_endpoint_with_sqlite_and_dynamodb_stores(
    local_endpoint: LocalEndpoint,
    dynamodb: Any,
    order_table: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for n in range(6):
        put_order(dynamodb, order_table, f"user{n}@example.com", f"2023/01/01#{n}")
    arn = dynamodb.describe_table(TableName=order_table)["Table"]["LatestStreamArn"]
    streams = boto3.client("dynamodbstreams", **local_endpoint.client_kwargs())
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator)["Records"]
    sequence_numbers = [r["dynamodb"]["SequenceNumber"] for r in records]
    created = [r["dynamodb"]["ApproximateCreationDateTime"].timestamp() for r in records]
    when = iso(created[3])
    # The first record at or after that time: record 3, or an earlier one made in the same
    # second where the endpoint's creation times are whole seconds (MiniStack).
    k = next(i for i, c in enumerate(created) if c >= created[3])
    endpoint = ["--endpoint-url", local_endpoint.url]

    db = tmp_path / "orders.db"
    sqlite = SQLiteCheckpointStore(db)
    consume(sqlite, 6, table_name=order_table, endpoint_url=local_endpoint.url)
    where = ["--sqlite", str(db), "--table", order_table, *endpoint]
    status, out, _ = run_cli(capsys, "seek", *where, "--to-time", when)
    assert status == 0, out
    assert f"next record {sequence_numbers[k]}" in out and f"{k + 1} record(s) scanned" in out
    assert (
        consume(sqlite, 6 - k, table_name=order_table, endpoint_url=local_endpoint.url)
        == (sequence_numbers[k:])
    )

    leases = f"leases-{order_table}"
    group = DynamoDBCheckpointStore(
        leases, group="billing", **_store_kwargs(local_endpoint), lease_duration=1.0
    )
    consume(group, 6, table_name=order_table, endpoint_url=local_endpoint.url)
    where = ["--dynamodb", leases, "--group", "billing", "--table", order_table, *endpoint]
    status, out, _ = run_cli(capsys, "seek", *where, "--to-time", when, "--wait", "0")
    assert status == 0, out
    assert "moved 1 shard(s)" in out
    status, out, _ = run_cli(capsys, "show", *where)
    before = f"after {sequence_numbers[k - 1]}" if k else "from records created at or after"
    assert before in out and "owner (free)" in out
    assert (
        consume(group, 6 - k, table_name=order_table, endpoint_url=local_endpoint.url)
        == (sequence_numbers[k:])
    )

    # An unknown group is an error naming the groups there are, not an empty listing.
    wrong = ["--dynamodb", leases, "--group", "biling", "--table", order_table, *endpoint]
    status, _, err = run_cli(capsys, "seek", *wrong, "--to", "latest")
    assert status == 1
    assert "group 'biling' has no leases for" in err
    assert "groups with leases for this stream: billing" in err

    # reset: refused while a worker heartbeats? None runs now: it forgets the leases.
    status, out, _ = run_cli(capsys, "reset", *where, "--lease-duration", "1")
    assert status == 0 and "forgot 1 shard(s)" in out
    assert group.leases(arn) == []


def _store_kwargs(endpoint: LocalEndpoint) -> dict[str, Any]:
    kwargs = endpoint.client_kwargs()
    return {"endpoint_url": kwargs["endpoint_url"], "region_name": kwargs["region_name"]}


def test_bad_input_exit_codes_and_messages(
    local_endpoint: LocalEndpoint,
    order_table: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint = ["--endpoint-url", local_endpoint.url]
    db = tmp_path / "orders.db"
    SQLiteCheckpointStore(db).close()
    where = ["--sqlite", str(db), "--table", order_table, *endpoint]

    status, _, err = run_cli(capsys, "seek", *where, "--to-time", "2026-11-27 10:00")
    assert status == 2 and "has no time zone: add Z for UTC" in err
    status, _, err = run_cli(capsys, "seek", *where, "--to-time", "last tuesday")
    assert status == 2 and "is not a time: give ISO 8601 with a time zone" in err
    status, _, err = run_cli(capsys, "seek", *where, "--to-sequence", "12")
    assert status == 2 and "--shard goes with --to-sequence" in err
    status, _, err = run_cli(capsys, "seek", *where, "--to", "earliest")
    assert status == 2 and "invalid choice: 'earliest'" in err
    status, _, err = run_cli(capsys, "show", "--sqlite", str(tmp_path / "nope.db"), "--table", "t")
    assert status == 1 and "no checkpoint file at" in err
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("not a database\n" * 100)
    status, _, err = run_cli(capsys, "show", "--sqlite", str(not_sqlite), "--table", "t")
    assert status == 1 and "--sqlite" in err and "--checkpoint-db" not in err, err
    status, _, err = run_cli(capsys, "show", "--sqlite", str(db), "--table", "no-such", *endpoint)
    assert status == 1 and "table 'no-such' was not found" in err
    status, _, err = run_cli(capsys, "seek", *where, "--to-time", "2999-01-01T00:00Z")
    assert status == 1 and "is in the future" in err

    # The lease table unreachable: one line naming the table, exit 1.
    closed = ["--endpoint-url", "http://127.0.0.1:9"]
    status, _, err = run_cli(
        capsys, "show", "--dynamodb", "leases", "--table", order_table, *closed
    )
    assert status == 1
    assert err.startswith("ddbstreams: error: could not describe the lease table 'leases'")
    assert "pass --endpoint-url" not in err  # it was given
    assert len(err.strip().splitlines()) == 1

    # A usage slip is a usage error (exit 2), as argparse's own are.
    status, _, err = run_cli(capsys, "show", *where, "--group", "g")
    assert status == 2 and "--group goes with --dynamodb" in err


class NotFound(http.server.BaseHTTPRequestHandler):
    """Every request answered with a 404 page, as a server that is not DynamoDB does."""

    def do_POST(self) -> None:
        page = b"<!doctype html>\n<html><title>404 Not Found</title><h1>Not Found</h1>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_wrong_lease_table_endpoint_or_region_is_named_with_its_fix(
    local_endpoint: LocalEndpoint,
    order_table: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(variable, raising=False)
    where = ["--table", order_table]

    # A misspelt table: the fix on the command line, not the Python API's create_table.
    status, _, err = run_cli(
        capsys, "show", "--dynamodb", "no-such-leases", *where, "--endpoint-url", local_endpoint.url
    )
    assert status == 1
    assert (
        "the lease table 'no-such-leases' does not exist (check the name, --region and "
        "--endpoint-url)" in err
    )
    assert "start a consumer on it first" in err
    assert "create_table" not in err

    # An endpoint URL that answers with a web page (some other server): named, not printed.
    with serving(NotFound) as url:
        status, _, err = run_cli(
            capsys, "show", "--dynamodb", "leases", *where, "--endpoint-url", url
        )
    assert status == 1 and "answered HTTP 404 with a web page, not an AWS answer" in err, err
    assert "<" not in err and len(err.strip().splitlines()) == 1

    # No --endpoint-url: AWS itself was asked (a region with no endpoint fails at once here).
    status, _, err = run_cli(
        capsys, "show", "--dynamodb", "leases", *where, "--region", "xx-nowhere-1"
    )
    assert status == 1 and "could not reach the endpoint" in err, err
    assert "no --endpoint-url was given, so this went to AWS itself" in err


def test_the_command_runs_as_a_process_with_its_exit_status(tmp_path: Path) -> None:
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ddbstreams._cli",
            "checkpoints",
            "seek",
            "--sqlite",
            "x.db",
            "--table",
            "t",
            "--to-time",
            "soon",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert "argument --to-time: 'soon' is not a time" in done.stderr
