"""A consumer in its own process, for the crash test: logs every record to a file."""

from __future__ import annotations

import sys
import time

from ddbstreams import ConsumerSettings, Record, SQLiteCheckpointStore, StreamConsumer


def main(endpoint_url: str, table: str, db_path: str, out_path: str) -> None:
    out = open(out_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    def handler(record: Record) -> None:
        out.write(record.sequence_number + "\n")
        time.sleep(0.02)  # slow enough to be killed mid-stream

    StreamConsumer(
        handler,
        table_name=table,
        endpoint_url=endpoint_url,
        checkpoint_store=SQLiteCheckpointStore(db_path),
        settings=ConsumerSettings(poll_interval=0.02, checkpoint_every=5),
    ).run()


if __name__ == "__main__":
    main(*sys.argv[1:5])
