"""``ddbstreams checkpoints show|seek|reset``: read and move a consumer's position."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import textwrap
from typing import Any

from ._checkpoints import CheckpointStore, SQLiteCheckpointStore
from ._dynamodb_store import DynamoDBCheckpointStore
from ._errors import CheckpointStoreError, ConfigurationError
from ._positions import (
    Positions,
    SeekPlan,
    ShardPosition,
    describe_checkpoint,
    describe_moves,
    parse_time,
)

EPILOG = """\
store (one of):
  --sqlite PATH               a SQLiteCheckpointStore's file (it must exist)
  --dynamodb TABLE [--group G] a DynamoDBCheckpointStore's lease table and group

stream (one of):
  --table TABLE               the table's current stream
  --stream-arn ARN            a stream by its ARN (an older stream of the table, say)

examples:
  ddbstreams checkpoints show --sqlite orders.db --table orders
  ddbstreams checkpoints seek --dynamodb orders-consumers --group billing --table orders \\
      --to-time 2026-11-27T10:00Z --dry-run
  ddbstreams checkpoints seek --sqlite orders.db --table orders \\
      --after-sequence 4000000000000123 --shard shardId-00000001700000000000-abcd1234
  ddbstreams checkpoints reset --sqlite orders.db --table orders

exit status: 0 done (or dry run), 1 error or refused (the message says why and what to do),
2 usage error (a bad option, a time that is not ISO 8601 with a zone).
"""


def add_checkpoints_command(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """The ``checkpoints`` command and its three subcommands."""
    checkpoints = commands.add_parser(
        "checkpoints",
        parents=parents,
        help="show a consumer's checkpoints, seek (rewind or skip) or reset them",
        description=textwrap.fill(
            "Show how far a consumer (or consumer group) has read each shard of a stream, "
            "move it to a time or a record (seek), or forget it (reset). With a DynamoDB "
            "lease table a seek is safe while workers run: their leases are taken as in a "
            "failover and they go on from the new position. A SQLite file must not be in "
            "use by a consumer.",
            width=79,
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = checkpoints.add_subparsers(required=True, metavar="ACTION")
    show = actions.add_parser(
        "show",
        parents=parents,
        help="per shard: checkpoint, finished, owner, lag",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(show)
    show.add_argument("--json", action="store_true", help="print one JSON document")
    show.add_argument(
        "--no-lag",
        dest="lag",
        action="store_false",
        help="do not read the stream to tell each shard's lag (one page per shard)",
    )
    show.set_defaults(run=_show, parser=show)

    seek = actions.add_parser(
        "seek",
        parents=parents,
        help="move the position to a time, a record, the oldest or the newest record",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(seek)
    target = seek.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--to-time",
        type=_time,
        metavar="ISO8601",
        help="every shard's first record created at or after this time (2026-11-27T10:00Z); "
        "shards that ended before it are marked finished",
    )
    target.add_argument(
        "--to-sequence", metavar="N", help="with --shard: record N (or the first after it) next"
    )
    target.add_argument(
        "--after-sequence",
        metavar="N",
        help="with --shard: the record after N next (skip N, a poison record say)",
    )
    target.add_argument(
        "--to",
        type=lambda text: text.lower().replace("_", "-"),  # as tail --from: any spelling
        choices=("trim-horizon", "latest"),
        help="the oldest record still retained, or only records created from now on",
    )
    seek.add_argument("--shard", metavar="SHARD_ID", help="the shard of --to/--after-sequence")
    seek.add_argument(
        "--dry-run", action="store_true", help="print what would change, write nothing"
    )
    seek.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="with --dynamodb: how long to wait for running workers to take the moved "
        "shards again (default: %(default)g; 0: do not wait)",
    )
    seek.set_defaults(run=_seek, parser=seek)

    reset = actions.add_parser(
        "reset",
        parents=parents,
        help="forget every checkpoint of the stream (the next consumer starts afresh)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(reset)
    reset.add_argument("--dry-run", action="store_true", help="print what would change")
    reset.set_defaults(run=_reset, parser=reset)


def _common(parser: argparse.ArgumentParser) -> None:
    store = parser.add_mutually_exclusive_group(required=True)
    store.add_argument("--sqlite", metavar="PATH", help="a SQLite checkpoint file")
    store.add_argument("--dynamodb", metavar="TABLE", help="a DynamoDB lease table")
    parser.add_argument(
        "--group", help="the consumer group in the --dynamodb table (default: default)"
    )
    parser.add_argument(
        "--lease-duration",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="the group's lease_duration (default: %(default)g): how long to watch for "
        "running workers, how long to tell them of a seek",
    )
    stream = parser.add_mutually_exclusive_group(required=True)
    stream.add_argument("--table", help="the table whose current stream it is")
    stream.add_argument("--stream-arn", metavar="ARN", help="the stream's ARN")
    parser.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="a local or custom endpoint, such as http://localhost:8000 (default: AWS itself)",
    )
    parser.add_argument(
        "--region",
        help="the AWS region (default: AWS_REGION, AWS_DEFAULT_REGION or the AWS config file)",
    )


def _time(text: str) -> float:
    try:
        return parse_time(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _open(args: argparse.Namespace) -> Positions:
    """The store and the stream the options name, checked: an unknown group or a missing
    file is an error, not an empty position."""
    if args.group is not None and args.dynamodb is None:
        args.parser.error("--group goes with --dynamodb")  # a usage error: exit status 2
    store: CheckpointStore
    if args.sqlite is not None:
        if not os.path.isfile(args.sqlite):
            raise CheckpointStoreError(
                f"no checkpoint file at {args.sqlite!r}: give --sqlite the path of the file "
                "the consumer keeps its checkpoints in"
            )
        store = SQLiteCheckpointStore(args.sqlite)
    else:
        store = DynamoDBCheckpointStore(
            args.dynamodb,
            group=args.group or "default",
            lease_duration=max(1.0, args.lease_duration),
            create_table=False,
            endpoint_url=args.endpoint_url,
            region_name=args.region,
        )
    positions = Positions(
        store,
        table_name=args.table,
        stream_arn=args.stream_arn,
        endpoint_url=args.endpoint_url,
        region_name=args.region,
    )
    if isinstance(store, DynamoDBCheckpointStore):
        _check_group(store, positions.stream_arn)
    return positions


def _check_group(store: DynamoDBCheckpointStore, arn: str) -> None:
    if store.leases(arn) or store.heartbeats(arn):
        return
    groups = store.groups()
    here = sorted(group for group, arns in groups.items() if arn in arns)
    raise ConfigurationError(
        f"group {store.group!r} has no leases for {arn} in table {store.table_name!r}"
        + (
            f"; groups with leases for this stream: {', '.join(here)}"
            if here
            else "; no group has leases for this stream there"
            + (f" (groups in the table: {', '.join(groups)})" if groups else "")
        )
        + ". Check --group, --dynamodb and --table/--stream-arn."
    )


def _show(args: argparse.Namespace) -> int:
    positions = _open(args)
    rows = positions.show(lag=args.lag)
    if args.json:
        print(
            json.dumps(
                {
                    "stream_arn": positions.stream_arn,
                    "shards": [
                        {**dataclasses.asdict(row), "position": row.position} for row in rows
                    ],
                },
                indent=2,
            )
        )
        return 0
    print(positions.stream_arn)
    if not rows:
        print("  (no shards)")
    for row in rows:
        print("  " + _row(row))
    return 0


def _row(row: ShardPosition) -> str:
    parts = [row.shard_id, "open" if not row.closed else "closed" if row.listed else "gone"]
    parts.append(describe_checkpoint(row.checkpoint))
    if row.owner is not None or row.epoch is not None:
        parts.append(f"owner {row.owner or '(free)'} epoch {row.epoch}")
    if row.lag is not None:
        parts.append(
            "caught up"
            if row.lag == 0 and row.next_sequence_number is None
            else f"lag {_duration(row.lag)} (next {row.next_sequence_number})"
        )
    return "  ".join(parts)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _seek(args: argparse.Namespace) -> int:
    sequence = args.to_sequence if args.to_sequence is not None else args.after_sequence
    if (sequence is not None) != (args.shard is not None):
        args.parser.error("--shard goes with --to-sequence or --after-sequence, and they need it")
    positions = _open(args)
    plan = positions.plan_seek(
        to_time=args.to_time,
        to_sequence=args.to_sequence,
        after_sequence=args.after_sequence,
        shard_id=args.shard,
        to=args.to,
    )
    return _carry_out(args, positions, plan)


def _reset(args: argparse.Namespace) -> int:
    positions = _open(args)
    return _carry_out(args, positions, positions.plan_reset())


def _carry_out(args: argparse.Namespace, positions: Positions, plan: SeekPlan) -> int:
    print(
        f"reset {plan.stream_arn}:" if plan.reset else f"seek {plan.stream_arn} to {plan.target}:"
    )
    for line in describe_moves(plan.moves):
        print(f"  {line}")
    for note in plan.notes:
        print(f"  note: {note}")
    scanned = [move for move in plan.moves if move.scanned]
    if plan.scanned or plan.target.startswith("time"):
        print(f"scanned {plan.scanned} record(s) in {len(scanned)} shard(s)")
    changes = plan.changes
    if args.dry_run:
        print(f"dry run: {len(changes)} shard(s) would change; nothing written")
        return 0
    if not changes and not plan.reset:
        print("nothing to change")
        return 0
    outcome = positions.apply(
        plan,
        wait_for_workers=max(0.0, getattr(args, "wait", 0.0)),
        lease_duration=max(1.0, args.lease_duration),
        on_progress=lambda text: print(text, file=sys.stderr, flush=True),
    )
    print(f"{'forgot' if plan.reset else 'moved'} {len(outcome.moved)} shard(s)")
    if outcome.taken_from:
        owners = sorted(set(outcome.taken_from.values()))
        print(f"taken from running workers: {', '.join(owners)}")
    if outcome.picked_up_by:
        takers = sorted(set(outcome.picked_up_by.values()))
        print(f"picked up again by: {', '.join(takers)}")
    if outcome.not_picked_up:
        print(
            f"not picked up yet (no worker running?): {', '.join(outcome.not_picked_up)}; "
            "they are read from the new position when a worker takes them"
        )
    return 0
