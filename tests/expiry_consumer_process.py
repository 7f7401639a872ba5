"""A consumer in its own process, for the pause test: logs every record, and every
ExpiredIteratorException its GetRecords calls were answered, to files."""

from __future__ import annotations

import sys
import time
from typing import Any

import boto3

from ddbstreams import ConsumerSettings, Record, SQLiteCheckpointStore, StreamConsumer


def main(endpoint_url: str, table: str, db_path: str, out_path: str, expired_path: str) -> None:
    out = open(out_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    expired = open(expired_path, "a", buffering=1)  # noqa: SIM115 - likewise

    def handler(record: Record) -> None:
        out.write(record.sequence_number + "\n")
        time.sleep(0.02)  # slow enough to be paused mid-stream

    def on_get_records(parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("Error", {}).get("Code") == "ExpiredIteratorException":
            expired.write("ExpiredIteratorException\n")

    kwargs = {"endpoint_url": endpoint_url, "region_name": "us-east-1"}
    description = boto3.client("dynamodb", **kwargs).describe_table(TableName=table)
    streams = boto3.client("dynamodbstreams", **kwargs)
    streams.meta.events.register("after-call.dynamodb-streams.GetRecords", on_get_records)
    StreamConsumer(
        handler,
        stream_arn=description["Table"]["LatestStreamArn"],
        client=streams,
        checkpoint_store=SQLiteCheckpointStore(db_path),
        settings=ConsumerSettings(poll_interval=0.02, checkpoint_every=5),
    ).run()


if __name__ == "__main__":
    main(*sys.argv[1:6])
