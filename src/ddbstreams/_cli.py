"""The ``ddbstreams`` command: ``tail`` a table's stream, serve a ``local`` endpoint."""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import logging
import os
import signal
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from decimal import Decimal
from types import FrameType
from typing import Any

from . import __version__
from ._checkpoints import InMemoryCheckpointStore, SQLiteCheckpointStore
from ._client import StreamsAPI, build_boto3_clients
from ._consumer import StreamConsumer
from ._dynamodb_store import DynamoDBCheckpointStore
from ._errors import ConfigurationError, DDBStreamsError, EndpointUnreachableError
from ._filters import compile_filter
from ._local import DUMMY_CREDENTIALS, LocalEndpoint
from ._positions_cli import add_checkpoints_command
from ._records import Record
from ._redact import RedactSecrets
from ._replay import add_replay_command
from ._settings import ConsumerSettings, StartPosition, canonical_start_position


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ddbstreams`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose + getattr(args, "verbose_after", 0))
    try:
        result: int = args.run(args)
        return result
    except DDBStreamsError as exc:
        sqlite_flag = "--sqlite" if hasattr(args, "sqlite") else "--checkpoint-db"
        message = in_cli_words(str(exc), sqlite_flag)
        if "could not reach the endpoint" in message and _went_to_aws(args):
            message += (
                " (no --endpoint-url was given, so this went to AWS itself; for a local "
                "endpoint, pass --endpoint-url URL)"
            )
        print(f"ddbstreams: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _went_to_aws(args: argparse.Namespace) -> bool:
    """Whether the command talked to AWS itself: no --endpoint-url, and none from botocore's
    environment variables either."""
    settings = (
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
    )
    return getattr(args, "endpoint_url", "") is None and not any(map(os.environ.get, settings))


# Error messages name the Python API's parameters; on the command line, the flags that set them.
CLI_WORDS = (
    ("region_name='us-east-1'", "--region us-east-1"),
    (
        "or pass create_table=True to have it created on first use",
        "or start a consumer on it first (a DynamoDBCheckpointStore creates its table)",
    ),
    ("region_name", "--region"),
    ("endpoint_url", "--endpoint-url"),
    ("table_name=", "the TABLE argument"),
    ("table_name", "the TABLE argument"),
    ("SQLiteCheckpointStore", "--checkpoint-db"),
    ("poll_interval", "--poll-interval"),
    ("start_position", "--from"),
    (
        "set trimmed_data='restart_from_trim_horizon'",
        "move the --checkpoint-db file aside (tail then starts again from --from)",
    ),
)


def in_cli_words(message: str, sqlite_flag: str = "--checkpoint-db") -> str:
    """An error message of the Python API, with the command line's names for its parameters
    (``sqlite_flag``: the command's option for a SQLite file)."""
    for api_words, cli_words in CLI_WORDS:
        if cli_words == "--checkpoint-db":
            cli_words = sqlite_flag
        message = message.replace(api_words, cli_words)
    return message


def _log_in_cli_words(record: logging.LogRecord) -> bool:
    """ddbstreams' own log lines (warnings embed error messages) in the command line's words."""
    if record.name == "ddbstreams" or record.name.startswith("ddbstreams."):
        record.msg, record.args = in_cli_words(record.getMessage()), None
    return True


VERBOSE_HELP = (
    "-v logs what ddbstreams does; -vv adds botocore's requests and answers, with "
    "credentials, tokens and signatures masked (default: warnings and errors only)"
)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


_handler: logging.Handler | None = None


def configure_logging(verbosity: int) -> None:
    """Warnings of every library to stderr; ``-v`` adds ddbstreams' own log, ``-vv`` botocore's
    requests. Only the ``ddbstreams`` logger (and, at ``-vv``, botocore's and urllib3's) gets
    more verbose: the root logger stays at WARNING, and every line goes through
    :class:`RedactSecrets`."""
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = _StderrHandler()
    _handler.setFormatter(logging.Formatter(LOG_FORMAT))
    _handler.addFilter(_log_in_cli_words)
    _handler.addFilter(RedactSecrets())
    _handler.addFilter(lambda record: not _is_stdout_closed(record))  # not a handler failure
    root.addHandler(_handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("ddbstreams").setLevel(logging.DEBUG if verbosity >= 1 else logging.NOTSET)
    for name in ("botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= 2 else logging.NOTSET)


TAIL_EPILOG = """\
output:
  One line per record on stdout, for example:
    INSERT 1100000000017454423009 email=anil@example.com order_number=1344 {"status": "new"}
    MODIFY 1100000000017454423010 email=anil@example.com order_number=1344 changed status: \
new -> shipped
    REMOVE 1100000000017454423011 email=anil@example.com order_number=1344 {"status": "shipped"}

  With --json, one JSON object per line, with the fields:
    event_name                 INSERT, MODIFY or REMOVE
    sequence_number            the record's sequence number (a string of digits)
    shard_id                   the shard it was read from
    approximate_creation_time  when the change was made (ISO 8601), or null
    keys                       the item's key attributes
    new_image, old_image       the item after and before the change, or null when the
                               stream's view type leaves it out
    user_identity              who made the change (a TTL deletion), or null
  Numbers are JSON numbers, binary values base64 strings, sets lists.
  What tail says about itself (the stream it reads, stopping, errors) goes to stderr.

examples:
  ddbstreams tail example-customer-order-table --endpoint-url http://localhost:8000
  ddbstreams tail orders --from latest --json | jq -c .new_image
  ddbstreams tail orders --checkpoint-db orders.db   # resumes where the last run stopped
  ddbstreams tail orders | head -3                   # the first three changes, then exits
"""

LOCAL_EPILOG = """\
examples:
  ddbstreams local --port 8000 &
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
  aws dynamodb list-tables --endpoint-url http://localhost:8000
  ddbstreams tail example-customer-order-table --endpoint-url http://localhost:8000
"""


def _wrapped(text: str) -> str:
    return textwrap.fill(text, width=79)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ddbstreams",
        description=_wrapped(
            "Consume Amazon DynamoDB Streams: print a table's changes as they happen (tail), "
            "serve DynamoDB and DynamoDB Streams locally (local), show a consumer group's "
            "leases (leases), show or move a consumer's positions (checkpoints), or send "
            "failed batches back through a handler (replay)."
        ),
        epilog="'ddbstreams COMMAND --help' tells a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help=VERBOSE_HELP)
    # -v is also accepted after the command; its own dest, so neither count hides the other.
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument(
        "-v", "--verbose", action="count", default=0, dest="verbose_after", help=VERBOSE_HELP
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    tail = commands.add_parser(
        "tail",
        parents=[after],
        help="print every change of a table, one line per record, until Ctrl-C",
        description=_wrapped(
            "Print every change of TABLE as it happens, one line per record, until Ctrl-C: "
            "every shard of the table's stream, parents before children."
        ),
        epilog=TAIL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tail.add_argument("table", metavar="TABLE", help="the table whose stream to read")
    tail.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="a local or custom endpoint, such as http://localhost:8000 (default: AWS itself)",
    )
    tail.add_argument(
        "--region",
        help="the AWS region (default: AWS_REGION, AWS_DEFAULT_REGION or the AWS config file)",
    )
    tail.add_argument(
        "--from",
        dest="start",
        type=_start_position,
        metavar="{trim-horizon,latest}",
        default="trim-horizon",
        help="where to start on shards without a checkpoint: the oldest record still kept "
        "(trim-horizon) or only changes made from now on (latest); any case, _ or - "
        "(default: trim-horizon)",
    )
    tail.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per record, fields below (default: one readable line)",
    )
    tail.add_argument(
        "--filter",
        type=_filter,
        metavar="JSON",
        help="print only the records matching this Lambda-style filter pattern, such as "
        '\'{"eventName": ["INSERT"]}\'; see docs/filters.md (default: none, every record)',
    )
    tail.add_argument(
        "--checkpoint-db",
        metavar="PATH",
        help="a SQLite file where tail keeps how far it has read, so that the next run "
        "resumes there (default: none, every run starts at --from)",
    )
    tail.add_argument(
        "--poll-interval",
        type=_seconds,
        metavar="SECONDS",
        default=0.25,
        help="how long to wait after an empty read before asking a shard again "
        "(default: %(default)s)",
    )
    tail.add_argument(
        "--connect-timeout",
        type=_seconds,
        metavar="SECONDS",
        default=10.0,
        help="how long to wait for an endpoint that does not answer yet, such as a "
        "'ddbstreams local' started at the same time (default: %(default)g)",
    )
    tail.set_defaults(run=_tail)

    local = commands.add_parser(
        "local",
        parents=[after],
        help="serve DynamoDB and DynamoDB Streams in memory (needs the 'local' extra)",
        description=_wrapped(
            "Serve DynamoDB and DynamoDB Streams in memory over HTTP (moto's server), until "
            "Ctrl-C or SIGTERM: the AWS CLI, boto3 and 'ddbstreams tail' reach it with "
            "--endpoint-url and any credentials. Needs pip install 'ddbstreams[local]'."
        ),
        epilog=LOCAL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    local.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)"
    )
    local.add_argument(
        "--port",
        type=_port,
        default=8000,
        help="the port to listen on; 0 picks a free one (default: %(default)s)",
    )
    local.set_defaults(run=_local)

    leases = commands.add_parser(
        "leases",
        parents=[after],
        help="show a consumer group's leases: who reads which shard, how far",
        description=_wrapped(
            "Show a consumer group's leases in the lease TABLE of a DynamoDBCheckpointStore: "
            "per shard its owner, epoch, checkpoint and whether it is finished, and per "
            "stream how many shards each worker holds."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    leases.add_argument("table", metavar="TABLE", help="the lease table")
    leases.add_argument(
        "--group", default="default", help="the consumer group (default: %(default)s)"
    )
    leases.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="a local or custom endpoint, such as http://localhost:8000 (default: AWS itself)",
    )
    leases.add_argument(
        "--region",
        help="the AWS region (default: AWS_REGION, AWS_DEFAULT_REGION or the AWS config file)",
    )
    leases.add_argument("--json", action="store_true", help="print one JSON document")
    leases.set_defaults(run=_leases)
    add_replay_command(commands, [after])
    add_checkpoints_command(commands, [after])
    return parser


class StdoutClosed(Exception):
    """The reader of stdout went away (``ddbstreams tail T | head -1``): the record was not
    printed, so it is not delivered either; ``tail`` stops and exits quietly."""


def _is_stdout_closed(record: logging.LogRecord) -> bool:
    return bool(record.exc_info and isinstance(record.exc_info[1], StdoutClosed))


def _silence_stdout() -> None:
    """Point stdout's file descriptor at /dev/null, so that flushing what is still buffered
    at exit does not end in "Exception ignored ... BrokenPipeError"."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _start_position(text: str) -> StartPosition:
    position = canonical_start_position(text)
    if position is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a start position: give trim-horizon or latest"
        )
    return position


def _filter(text: str) -> str:
    try:
        compile_filter(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return seconds


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port number: give one from 0 to 65535 (0 picks a free one)"
        )
    return port


class TailStatus:
    """The one-line status ``tail`` keeps on stderr while stdout is a terminal: records
    printed, records/s over the last interval, and lag: how old the last record printed was
    when it was printed (now minus its ApproximateCreationDateTime, as Lambda's IteratorAge)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.printed = 0
        self.lag: float | None = None
        self.shown = False
        self._clock = clock
        self._last = (clock(), 0)

    def record(self, record: Record) -> None:
        """Count a printed record (called under the print lock)."""
        self.printed += 1
        created = record.approximate_creation_time
        if created is not None:
            self.lag = max(0.0, time.time() - created.timestamp())

    def line(self) -> str:
        now = self._clock()
        then, count = self._last
        rate = (self.printed - count) / (now - then) if now > then else 0.0
        self._last = (now, self.printed)
        lag = "-" if self.lag is None else f"{self.lag:.1f} s"
        return f"{self.printed} records, {rate:.1f} records/s, lag {lag}"


def _tail(args: argparse.Namespace) -> int:
    lock = threading.Lock()
    stdout_closed = threading.Event()
    status = TailStatus() if _is_terminal(sys.stdout) else None

    def print_record(record: Record) -> None:
        line = json.dumps(record_as_json(record)) if args.json else describe(record)
        with lock:
            if stdout_closed.is_set():
                raise StdoutClosed
            try:
                if status is not None and status.shown:
                    sys.stderr.write("\r\033[K")  # the status line goes, the record comes
                    status.shown = False
                print(line, flush=True)
                if status is not None:
                    status.record(record)
            except BrokenPipeError:
                stdout_closed.set()
                _silence_stdout()
                consumer.stop()  # from a handler: asks for the stop, which follows its return
                raise StdoutClosed from None  # not printed: not delivered, not checkpointed

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
            start_position=args.start,
            poll_interval=args.poll_interval,
        ),
        filter=args.filter,
    )
    _wait_for_endpoint(args)
    where = args.start.lower().replace("_", "-")
    if args.checkpoint_db:
        where += f" where {args.checkpoint_db} has no checkpoint"
    if args.filter:
        where += ", records matching --filter"

    def show_status() -> None:
        assert status is not None
        with lock:
            sys.stderr.write(f"\r\033[K{status.line()}")
            sys.stderr.flush()
            status.shown = True

    return _run_until_stopped(consumer, where, show_status if status is not None else None)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _wait_for_endpoint(args: argparse.Namespace) -> None:
    """Ask for the table's stream until the endpoint answers, for --connect-timeout seconds:
    ``ddbstreams local & ddbstreams tail ...`` starts both at once. Any answer ends the wait;
    an error answer (no such table, no stream) is raised at once."""
    streams, dynamodb = build_boto3_clients(endpoint_url=args.endpoint_url, region_name=args.region)
    api = StreamsAPI(streams, dynamodb, attempts=1)
    url = args.endpoint_url or dynamodb.meta.endpoint_url
    deadline = time.monotonic() + args.connect_timeout
    waiting = False
    while True:
        try:
            api.resolve_stream_arn(args.table)
            return
        except EndpointUnreachableError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise EndpointUnreachableError(
                    f"nothing answered at {url} for {args.connect_timeout:g} s ({exc.__cause__}). "
                    "Check --endpoint-url and --region and that the endpoint is running, or "
                    "wait longer with --connect-timeout."
                ) from exc
            if not waiting:
                waiting = True
                print(f"waiting for the endpoint at {url}…", file=sys.stderr, flush=True)
            time.sleep(min(0.2, left))


STATUS_INTERVAL = 1.0  # seconds between two status lines of tail


def _run_until_stopped(
    consumer: StreamConsumer, where: str, show_status: Callable[[], None] | None = None
) -> int:
    """Run ``consumer`` in a thread; the main thread tells what is read and handles signals.

    The first Ctrl-C (or SIGTERM) stops cleanly: handler calls in progress finish and
    checkpoints are written. A second one exits at once (status 128 + signal number),
    without waiting for a handler that may never return.
    """
    failures: list[BaseException] = []

    def run() -> None:
        try:
            consumer.run()  # outside the main thread it leaves signals to us
        except BaseException as exc:
            failures.append(exc)

    received: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) > 1:
            os._exit(128 + signum)

    thread = threading.Thread(target=run, name="tail-consumer", daemon=True)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    started, announced, stopping = time.monotonic(), False, False
    next_status, status_shown = started, False
    try:
        thread.start()
        while thread.is_alive():
            thread.join(0.1)
            if received and not stopping:
                stopping = True
                if status_shown:
                    sys.stderr.write("\n")  # the status line stays, with its last figures
                print("stopping… (Ctrl-C again to exit at once)", file=sys.stderr, flush=True)
                # Only ask: this loop must stay in short waits, or a second signal that the
                # system hands to another thread would wait for a stop that cannot come.
                consumer.stop(timeout=0)
            due = announced and not stopping and time.monotonic() >= next_status
            if show_status is not None and due:
                next_status = time.monotonic() + STATUS_INTERVAL
                show_status()
                status_shown = True
            if not announced and consumer.stream_arn is not None:
                shards = consumer.shards()
                if shards or time.monotonic() - started > 2:
                    announced = True
                    count = f"{len(shards)} shard{'s' if len(shards) != 1 else ''}, "
                    print(
                        f"tailing {consumer.stream_arn} ({count if shards else ''}from "
                        f"{where}); Ctrl-C stops",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if status_shown and not stopping:
            sys.stderr.write("\n")
    if failures:
        raise failures[0]
    return 0


def _leases(args: argparse.Namespace) -> int:
    store = DynamoDBCheckpointStore(
        args.table,
        group=args.group,
        create_table=False,
        endpoint_url=args.endpoint_url,
        region_name=args.region,
    )
    report = {
        arn: [dataclasses.asdict(lease) for lease in store.leases(arn)] for arn in store.streams()
    }
    if args.json:
        print(json.dumps({"group": args.group, "streams": report}, indent=2))
        return 0
    if not report:
        others = sorted(set(store.groups()) - {args.group})
        print(
            f"ddbstreams: error: group {args.group!r} has no leases in {args.table!r}"
            + (f"; groups there: {', '.join(others)}" if others else "; the table is empty")
            + ". Check --group and the TABLE argument.",
            file=sys.stderr,
        )
        return 1
    for arn, leases in report.items():
        held = Counter(lease["owner"] or "(free)" for lease in leases if not lease["finished"])
        print(
            f"{arn}  ({', '.join(f'{w}: {n}' for w, n in sorted(held.items())) or 'all finished'})"
        )
        for lease in leases:
            state = "finished" if lease["finished"] else lease["owner"] or "(free)"
            print(
                f"  {lease['shard_id']}  {state:<24} epoch {lease['epoch']:<4} "
                f"checkpoint {lease['checkpoint'] or '-'}"
            )
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
