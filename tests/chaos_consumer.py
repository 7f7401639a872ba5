"""The consumer process of the chaos soak (tests/chaos_soak.py), killed and restarted at will.

    python tests/chaos_consumer.py URL STREAM_ARN DBPATH LOGPATH

Reads the stream at URL with a SQLite checkpoint store and appends one line per record to
LOGPATH, ``shard_id sequence_number key version``, written before the handler returns, so
that every record the consumer may have checkpointed is in the log when it is SIGKILLed.
Exits 0 once the stream is disabled and drained.
"""

from __future__ import annotations

import os
import sys

from ddbstreams import (
    ConsumerSettings,
    Record,
    SQLiteCheckpointStore,
    StreamConsumer,
    StreamDisabledError,
)

SETTINGS = ConsumerSettings(
    poll_interval=0.02,
    idle_poll_interval_max=0.25,
    batch_size=100,  # more pages: more calls for the faults to hit, more cut pages
    checkpoint_every=25,
    checkpoint_interval=0.5,
    discovery_interval=1.0,
    handler_retry_initial=0.02,
    handler_retry_max=0.5,
)


def main(endpoint_url: str, stream_arn: str, db_path: str, log_path: str) -> int:
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def handler(record: Record) -> None:
        image = record.new_image or {}
        line = (
            f"{record.shard_id} {record.sequence_number} {record.keys['email']} "
            f"{image.get('version')}\n"
        )
        os.write(log, line.encode())  # one write per line: whole lines, even when killed

    consumer = StreamConsumer(
        handler,
        stream_arn=stream_arn,
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        checkpoint_store=SQLiteCheckpointStore(db_path),
        settings=SETTINGS,
    )
    try:
        consumer.run()
    except StreamDisabledError:
        return 0
    return 3  # run() returns only when stopped by a signal: not expected here


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
