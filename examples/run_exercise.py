"""The whole exercise, end to end: model, stream, reader, put/update/delete, clean-up.

By default it starts the embedded local endpoint (needs `pip install 'ddbstreams[local]'`);
--endpoint-url URL uses a running one, --endpoint-url aws uses AWS itself.

    python examples/run_exercise.py
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

from change_items import change_items
from commit_model import commit_model
from delete_table import delete_table
from enable_stream import enable_stream
from orders import dynamodb_client, endpoint, options
from read_stream import show

import ddbstreams

EXPECTED = ["INSERT", "MODIFY", "REMOVE"]


def run(endpoint_url: str | None, table: str, timeout: float = 30.0) -> list[ddbstreams.Record]:
    dynamodb = dynamodb_client(endpoint_url)
    print(f"1. committing the order model to {endpoint_url or 'AWS'}")
    commit_model(dynamodb, table_name=table)
    try:
        print("2. enabling the stream:", enable_stream(dynamodb, table))
        received: list[ddbstreams.Record] = []
        all_arrived = threading.Event()

        def handler(record: ddbstreams.Record) -> None:
            show(record)
            received.append(record)
            if len(received) >= len(EXPECTED):
                all_arrived.set()

        with tempfile.TemporaryDirectory() as scratch:
            consumer = ddbstreams.StreamConsumer(
                handler,
                table_name=table,
                endpoint_url=endpoint_url,
                checkpoint_store=ddbstreams.SQLiteCheckpointStore(Path(scratch) / "cp.db"),
            )
            print("3. reading the stream in the background")
            with consumer:
                print("4. put, update and delete an order")
                change_items(dynamodb, table)
                if not all_arrived.wait(timeout):
                    raise SystemExit(f"only {len(received)} of 3 records arrived in {timeout}s")
        return received
    finally:
        print("5. deleting the table")
        delete_table(dynamodb, table)


def main() -> int:
    parser = options(__doc__.splitlines()[0])
    parser.set_defaults(endpoint_url="embedded")
    args = parser.parse_args()
    if args.endpoint_url == "embedded":
        from ddbstreams.testing import LocalEndpoint

        with LocalEndpoint() as local:
            print(f"embedded local endpoint on {local.url}")
            records = run(local.url, args.table)
    else:
        records = run(endpoint(args), args.table)
    names = [record.event_name for record in records]
    if names != EXPECTED:
        print(f"FAILED: expected {EXPECTED}, got {names}")
        return 1
    print(f"OK: the stream delivered {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
