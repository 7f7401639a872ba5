"""Step 3: the exercise's read-stream.py, rewritten on ddbstreams.

Unlike the original it reads every shard (parents before children), never re-reads from
TRIM_HORIZON, compares sequence numbers as numbers, keeps a checkpoint so a restart picks
up where it stopped, and stops cleanly on Ctrl-C. Against AWS, pass --endpoint-url aws.

    python examples/read_stream.py [--endpoint-url http://localhost:8000]
"""

from __future__ import annotations

from orders import endpoint, options, use_dummy_credentials_for

import ddbstreams


def show(record: ddbstreams.Record) -> None:
    """Print the event name, sequence number, keys, and what changed."""
    print(f"eventName = {record.event_name}, Sequence# = {record.sequence_number}")
    print(f"  keys: {record.keys}")
    old, new = record.old_image or {}, record.new_image or {}
    changed = {
        name: (old.get(name), new.get(name))
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name) and name not in record.keys
    }
    for name, (before, after) in changed.items():
        print(f"  {name}: {before!r} -> {after!r}")


def consumer(endpoint_url: str | None, table: str, checkpoint_db: str) -> ddbstreams.StreamConsumer:
    return ddbstreams.StreamConsumer(
        show,
        table_name=table,
        endpoint_url=endpoint_url,
        checkpoint_store=ddbstreams.SQLiteCheckpointStore(checkpoint_db),
        start_position="TRIM_HORIZON",
    )


if __name__ == "__main__":
    parser = options(__doc__.splitlines()[0])
    parser.add_argument("--checkpoint-db", default="orders.checkpoints.db")
    args = parser.parse_args()
    use_dummy_credentials_for(endpoint(args))
    print("Reading DynamoDB Stream (Ctrl-C to stop):")
    consumer(endpoint(args), args.table, args.checkpoint_db).run()
