"""``ddbstreams replay``: a destination's failed batches, back through a handler."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap
from collections.abc import Callable
from typing import Any

from ._errors import DDBStreamsError
from ._policies import BatchResult
from .destinations import iter_failed_batches

REPLAY_EPILOG = """\
The handler is called as the consumer calls it: once per record (a ddbstreams.Record), or
with --batch once per failed batch (a list of records; it may return a BatchResult).
A batch is taken out of its source (SQS messages deleted, the S3 object deleted unless
--keep) once the handler has returned for all its records. On the first handler failure,
replay stops with status 1: that batch and the ones after it stay where they are, and a
second run starts again with it (records before the failing one are handled again). A
JSON Lines file is never changed: a second run replays it from its start.

exit status:
  0  every failed batch found was replayed
  1  the handler failed, the source could not be read, or something in it was left over
     (a queue's message that is not a failed batch, a part of a batch without the others)
  2  a usage error: a flag missing or wrong, a handler that cannot be imported

examples:
  ddbstreams replay --jsonl failed.jsonl --handler myapp.handlers:on_record
  ddbstreams replay --sqs https://sqs.us-east-1.amazonaws.com/123456789012/failed \\
      --handler myapp.handlers:on_batch --batch
  ddbstreams replay --s3 s3://my-bucket/ddbstreams/failed/2025/01/31/ --handler app:handle
"""


def add_replay_command(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``replay`` on the ``ddbstreams`` command's subparsers."""
    replay = commands.add_parser(
        "replay",
        parents=parents,
        help="send the failed batches of a destination (file, SQS, S3) back through a handler",
        description=textwrap.fill(
            "Read the failed batches a destination holds (a JSON Lines file, an SQS queue, "
            "or an S3 prefix) and call a handler with their records, in stream order.",
            width=79,
        ),
        epilog=REPLAY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = replay.add_mutually_exclusive_group(required=True)
    source.add_argument("--jsonl", metavar="PATH", help="a file of JSONLinesDestination")
    source.add_argument("--sqs", metavar="URL", help="the queue URL of SQSDestination")
    source.add_argument(
        "--s3", metavar="s3://BUCKET/PREFIX", type=_s3_url, help="where S3Destination wrote"
    )
    replay.add_argument(
        "--handler",
        required=True,
        type=_handler,
        metavar="MODULE:FUNCTION",
        help="the function to call, importable from the current directory or sys.path",
    )
    replay.add_argument(
        "--batch",
        action="store_true",
        help="call the handler once per batch with a list of records (default: per record)",
    )
    replay.add_argument(
        "--keep", action="store_true", help="with --s3: leave the objects in place after replay"
    )
    replay.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="a local or custom endpoint for SQS and S3 (default: AWS itself; for --sqs, "
        "the queue URL's host when it is not AWS's)",
    )
    replay.add_argument(
        "--region",
        help="the AWS region (default: AWS_REGION, AWS_DEFAULT_REGION or the AWS config file)",
    )
    replay.set_defaults(run=_replay, parser=replay)


def _s3_url(text: str) -> str:
    if not text.startswith("s3://") or len(text) <= len("s3://") or text[5] == "/":
        raise argparse.ArgumentTypeError(f"{text!r} is not an S3 location: give s3://bucket/prefix")
    return text


def _handler(text: str) -> Callable[..., Any]:
    module_name, _, attribute = text.partition(":")
    if not module_name or not attribute:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not MODULE:FUNCTION (for example myapp.handlers:on_record)"
        )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        value: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise argparse.ArgumentTypeError(
            f"cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    for name in attribute.split("."):
        try:
            value = getattr(value, name)
        except AttributeError:
            raise argparse.ArgumentTypeError(f"{module_name!r} has no {attribute!r}") from None
    if not callable(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not callable")
    handler: Callable[..., Any] = value
    return handler


class HandlerFailed(DDBStreamsError):
    """The handler raised (or returned failed records) during a replay."""


def _replay(args: argparse.Namespace) -> int:
    if args.keep and not args.s3:
        args.parser.error("--keep applies to --s3 only (a queue's messages are always deleted)")
    source = args.jsonl or args.sqs or args.s3
    flag = "--jsonl" if args.jsonl else "--sqs" if args.sqs else "--s3"
    batches = iter_failed_batches(
        source, delete=not args.keep, endpoint_url=args.endpoint_url, region_name=args.region
    )
    done = records = 0
    for batch in batches:
        try:
            if args.batch:
                result = args.handler(list(batch.records))
                if isinstance(result, BatchResult) and result.failed:
                    raise HandlerFailed(
                        f"it returned {len(result.failed)} failed record(s), the first "
                        f"{result.failed[0].sequence_number}"
                    )
            else:
                for record in batch.records:
                    args.handler(record)
        except Exception as exc:
            print(
                f"ddbstreams: error: the handler failed on the failed batch of shard "
                f"{batch.shard_id}, records {batch.first_sequence_number} to "
                f"{batch.last_sequence_number} ({type(exc).__name__}: {exc}). That batch and "
                f"those after it stay in {flag} {source}; {done} batch(es) ({records} records) "
                "were replayed before it.",
                file=sys.stderr,
            )
            return 1
        done += 1
        records += len(batch.records)
    print(f"replayed {done} failed batch(es), {records} record(s), from {source}", file=sys.stderr)
    if batches.left_over:
        lines = "\n".join(f"  {line}" for line in batches.left_over)
        print(
            f"ddbstreams: error: {len(batches.left_over)} item(s) of {flag} {source} were not "
            f"replayed and are left there:\n{lines}",
            file=sys.stderr,
        )
        return 1
    return 0
