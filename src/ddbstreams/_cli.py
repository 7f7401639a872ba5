"""The ``ddbstreams`` command: ``tail`` a table's stream, serve a ``local`` endpoint."""

from __future__ import annotations

import argparse
import base64
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from ._checkpoints import InMemoryCheckpointStore, SQLiteCheckpointStore
from ._consumer import StreamConsumer
from ._errors import DDBStreamsError
from ._local import DUMMY_CREDENTIALS, LocalEndpoint
from ._records import Record
from ._settings import ConsumerSettings


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ddbstreams`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result: int = args.run(args)
        return result
    except DDBStreamsError as exc:
        print(f"ddbstreams: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ddbstreams", description="Consume Amazon DynamoDB Streams."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    tail = commands.add_parser(
        "tail", help="print every change of a table, one line per record, until Ctrl-C"
    )
    tail.add_argument("table", help="the table whose stream to read")
    tail.add_argument("--endpoint-url", help="a local or custom endpoint")
    tail.add_argument("--region", help="the AWS region (default: from the environment)")
    tail.add_argument(
        "--from",
        dest="start",
        choices=["trim-horizon", "latest"],
        default="trim-horizon",
        help="where to start on shards without a checkpoint (default: trim-horizon)",
    )
    tail.add_argument("--json", action="store_true", help="print one JSON object per line")
    tail.add_argument(
        "--checkpoint-db", help="a SQLite file to resume from (default: no checkpoints)"
    )
    tail.add_argument("--poll-interval", type=float, default=0.25, help="seconds (default 0.25)")
    tail.set_defaults(run=_tail)

    local = commands.add_parser(
        "local", help="serve DynamoDB and DynamoDB Streams in memory (needs the 'local' extra)"
    )
    local.add_argument("--host", default="127.0.0.1", help="address to listen on")
    local.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    local.set_defaults(run=_local)
    return parser


def _tail(args: argparse.Namespace) -> int:
    lock = threading.Lock()

    def print_record(record: Record) -> None:
        line = json.dumps(record_as_json(record)) if args.json else describe(record)
        with lock:
            print(line, flush=True)

    consumer = StreamConsumer(
        print_record,
        table_name=args.table,
        endpoint_url=args.endpoint_url,
        region_name=args.region,
        checkpoint_store=(
            SQLiteCheckpointStore(args.checkpoint_db)
            if args.checkpoint_db
            else InMemoryCheckpointStore()
        ),
        settings=ConsumerSettings(
            start_position="LATEST" if args.start == "latest" else "TRIM_HORIZON",
            poll_interval=args.poll_interval,
        ),
    )
    consumer.run()
    return 0


def _local(args: argparse.Namespace) -> int:
    endpoint = LocalEndpoint(args.host, args.port).start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    exports = " ".join(f"{name}={value}" for name, value in DUMMY_CREDENTIALS.items())
    print(f"ddbstreams local endpoint: {endpoint.url} (DynamoDB + DynamoDB Streams, in memory)")
    print(f"use it with: export {exports}")
    print(f"and pass --endpoint-url {endpoint.url} (aws CLI) or endpoint_url= (boto3).")
    print("Ctrl-C stops it.", flush=True)
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        endpoint.stop()
    return 0


def describe(record: Record) -> str:
    """One human line: event, sequence number, keys, and what changed."""
    keys = " ".join(f"{name}={_plain(value)}" for name, value in record.keys.items())
    head = f"{record.event_name:<6} {record.sequence_number} {keys}"
    old, new = record.old_image, record.new_image
    if record.event_name == "MODIFY" and old is not None and new is not None:
        changes = [
            f"{name}: {_plain(old.get(name))} -> {_plain(new.get(name))}"
            for name in sorted(set(old) | set(new))
            if old.get(name) != new.get(name)
        ]
        return f"{head} changed {'; '.join(changes) or 'nothing'}"
    image = new if record.event_name == "INSERT" else old
    if image is None:
        return head
    rest = {name: value for name, value in image.items() if name not in record.keys}
    return f"{head} {json.dumps(to_json(rest), sort_keys=True)}"


def record_as_json(record: Record) -> dict[str, Any]:
    """A JSON-ready dict of a record (Decimal as number, bytes as base64, sets as lists)."""
    created = record.approximate_creation_time
    return {
        "event_name": record.event_name,
        "sequence_number": record.sequence_number,
        "shard_id": record.shard_id,
        "approximate_creation_time": created.isoformat() if created else None,
        "keys": to_json(record.keys),
        "new_image": to_json(record.new_image),
        "old_image": to_json(record.old_image),
        "user_identity": record.user_identity,
    }


def to_json(value: Any) -> Any:
    """Python values of an image in JSON-ready form."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {name: to_json(item) for name, item in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted((to_json(item) for item in value), key=repr)
    if isinstance(value, list):
        return [to_json(item) for item in value]
    return value


def _plain(value: Any) -> str:
    return json.dumps(to_json(value)) if not isinstance(value, str) else value


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
