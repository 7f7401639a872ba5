"""SimulatorServer: a StreamSimulator over the real DynamoDB Streams HTTP protocol, with faults.

The in-memory simulator is handed to a consumer as ``client=``, so it never exercises the
HTTP layer: botocore's signing, connection pool and error parsing, and ddbstreams' raw
GetRecords fast path. This server answers the AWS JSON 1.0 protocol (``POST /`` with an
``X-Amz-Target`` header) so that a real boto3 client, in this process or another, reads the
simulated stream through ``endpoint_url=``; and it injects faults that only exist on a wire:
throttling, server errors, a 200 whose body is not JSON, a 200 cut in the middle.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import json
import math
import random
import socket
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from types import TracebackType

    from .testing import StreamSimulator

#: The faults a SimulatorServer injects, each at its own rate (a fraction of calls).
FAULT_KINDS = ("throttle", "server_error", "malformed", "truncated", "expired")
#: A fault rate: a fraction of calls, for every operation or by operation name.
FaultRate = float | Mapping[str, float]
_OPERATIONS = ("DescribeStream", "GetShardIterator", "GetRecords", "DescribeTable")
# Faults that only make sense for GetRecords: a cut list of records, an expired iterator.
_GET_RECORDS_ONLY = frozenset({"truncated", "expired"})
_ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
_CONTENT_TYPE = "application/x-amz-json-1.0"
# Error codes the service answers with HTTP 500; every other error is a 400.
_SERVER_ERROR_CODES = frozenset({"InternalServerError", "InternalFailure", "ServiceUnavailable"})
# 200 bodies that are not a JSON object: what a proxy or a broken service may send.
_GARBAGE = (
    b"<html><body><h1>Bad Gateway</h1></body></html>",
    b"\x9c\xff\x00 not json",
    b'{"Records": [}',
    b"",
)


class SimulatorServer:
    """Serve a :class:`StreamSimulator` over HTTP, as DynamoDB Streams and DynamoDB do.

    Point any boto3 ``dynamodbstreams`` or ``dynamodb`` client (or a
    :class:`StreamConsumer`, through ``endpoint_url=``) at :attr:`url`, with any dummy
    credentials. It answers ``DescribeStream``, ``GetShardIterator``, ``GetRecords`` and
    ``DescribeTable`` in the AWS JSON 1.0 protocol; the simulator's errors come back as the
    service sends them (HTTP 400 with ``__type`` and ``message``; 500 for server errors).
    Change the stream (writes, rollover, splits, ``advance``) through :attr:`simulator`
    while the server runs: it is thread-safe.

    Faults are injected at random, from a ``random.Random(seed)``, each kind on its own
    fraction of calls (their sum is at most 1):

    - ``throttle``: HTTP 400 ``LimitExceededException``;
    - ``server_error``: HTTP 500 ``InternalServerError``, or 503 with an HTML body;
    - ``malformed``: HTTP 200 with a body that is not JSON (HTML, binary, empty);
    - ``truncated``: a real ``GetRecords`` answer cut at a random byte (HTTP 200);
    - ``expired``: ``GetRecords`` answered ``ExpiredIteratorException``.

    A rate is a fraction for every operation, or a mapping by operation name, such as
    ``malformed={"GetRecords": 0.05}``; ``truncated`` and ``expired`` apply to
    ``GetRecords`` only. Change them while running with :meth:`set_faults`. :attr:`faults`
    counts what was injected, :attr:`requests` every call by operation.

    Args:
        simulator: the stream to serve (default: a new one-shard ``StreamSimulator``).
        host: the address to listen on; keep it on loopback.
        port: the port; 0 takes a free one (then in :attr:`port`).
        seed: seeds the random choice of the calls that get a fault, and of its details.
        throttle: rate of ``LimitExceededException`` answers.
        server_error: rate of 500/503 answers.
        malformed: rate of 200 answers that are not JSON.
        truncated: rate of ``GetRecords`` answers cut short.
        expired: rate of ``ExpiredIteratorException`` answers to ``GetRecords``.

    Example::

        sim = StreamSimulator(shard_count=2)
        with SimulatorServer(sim, throttle=0.1, truncated=0.05, seed=7) as server:
            consumer = StreamConsumer(handler, stream_arn=sim.stream_arn,
                                      endpoint_url=server.url)
            ...
    """

    def __init__(
        self,
        simulator: StreamSimulator | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = 0,
        throttle: FaultRate = 0.0,
        server_error: FaultRate = 0.0,
        malformed: FaultRate = 0.0,
        truncated: FaultRate = 0.0,
        expired: FaultRate = 0.0,
    ) -> None:
        if simulator is None:
            from .testing import StreamSimulator

            simulator = StreamSimulator()
        self.simulator = simulator
        self.host = host
        self.port = port
        self.faults: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        #: Unexpected exceptions raised while answering (a bug in the server or simulator).
        self.errors: list[str] = []
        self._random = random.Random(seed)
        self._rates: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()
        self._request_ids = itertools.count(1)
        self._operations: dict[str, Callable[..., dict[str, Any]]] = {
            "DynamoDBStreams_20120810.DescribeStream": simulator.describe_stream,
            "DynamoDBStreams_20120810.GetShardIterator": simulator.get_shard_iterator,
            "DynamoDBStreams_20120810.GetRecords": simulator.get_records,
            "DynamoDB_20120810.DescribeTable": simulator.describe_table,
        }
        self._parameters = {
            target: frozenset(inspect.signature(method).parameters)
            for target, method in self._operations.items()
        }
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.set_faults(
            throttle=throttle,
            server_error=server_error,
            malformed=malformed,
            truncated=truncated,
            expired=expired,
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server, for ``endpoint_url=``."""
        if self._httpd is None:
            raise RuntimeError("the server is not running: call start() first")
        return f"http://{self.host}:{self.port}"

    def start(self) -> SimulatorServer:
        """Listen (port 0: a free port, then in :attr:`port`) and answer in the background."""
        if self._httpd is not None:
            raise RuntimeError("this server is already running")
        httpd = _HTTPServer((self.host, self.port), _Handler, self)
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="ddbstreams-simserver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close every open connection."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --------------------------------------------------------------------- faults

    def set_faults(
        self,
        *,
        throttle: FaultRate = 0.0,
        server_error: FaultRate = 0.0,
        malformed: FaultRate = 0.0,
        truncated: FaultRate = 0.0,
        expired: FaultRate = 0.0,
    ) -> None:
        """Replace every fault rate (unnamed ones become 0).

        A rate is the fraction of calls (0 to 1) that get the fault: a number for every
        operation it applies to, or a mapping from operation name (``"GetRecords"``,
        ``"DescribeStream"``, ``"GetShardIterator"``, ``"DescribeTable"``) to a fraction.
        The rates of one operation add up to at most 1.
        """
        given = {
            "throttle": throttle,
            "server_error": server_error,
            "malformed": malformed,
            "truncated": truncated,
            "expired": expired,
        }
        rates: dict[str, dict[str, float]] = {operation: {} for operation in _OPERATIONS}
        for kind, rate in given.items():
            applies = ("GetRecords",) if kind in _GET_RECORDS_ONLY else _OPERATIONS
            per_operation = rate if isinstance(rate, Mapping) else dict.fromkeys(applies, rate)
            for operation, fraction in per_operation.items():
                if operation not in applies:
                    raise ConfigurationError(
                        f"{kind} faults apply to {', '.join(applies)}, not {operation!r}"
                    )
                if (
                    isinstance(fraction, bool)
                    or not isinstance(fraction, (int, float))
                    or not (math.isfinite(fraction) and 0 <= fraction <= 1)
                ):
                    raise ConfigurationError(
                        f"{kind} must be a fraction from 0 to 1, not {fraction!r}"
                    )
                rates[operation][kind] = float(fraction)
        for operation, kinds in rates.items():
            if sum(kinds.values()) > 1 + 1e-9:
                raise ConfigurationError(
                    f"the fault rates of {operation} add up to {sum(kinds.values()):.3f}; "
                    "at most 1 is possible"
                )
        with self._lock:
            self._rates = rates

    def _draw_fault(self, operation: str) -> tuple[str | None, random.Random]:
        """Which fault (if any) this call gets; also a private random source for its details."""
        with self._lock:
            self.requests[operation] += 1
            point = self._random.random()
            details = random.Random(self._random.getrandbits(64))
            edge = 0.0
            for kind, rate in self._rates[operation].items():
                edge += rate
                if point < edge:
                    self.faults[kind] += 1
                    return kind, details
            return None, details

    # ------------------------------------------------------------------ answering

    def _answer(self, target: str, body: bytes) -> tuple[int, bytes]:
        """The HTTP status and body for one call."""
        method = self._operations.get(target)
        if method is None:
            return _error(400, "UnknownOperationException", f"unknown operation {target!r}")
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "SerializationException", "the request body is not JSON")
        if not isinstance(params, dict):
            return _error(400, "SerializationException", "the request body is not a JSON object")
        unsupported = sorted(set(params) - self._parameters[target])
        if unsupported:
            return _error(
                400,
                "ValidationException",
                f"parameter(s) {', '.join(unsupported)} not supported by SimulatorServer",
            )
        fault, details = self._draw_fault(target.rpartition(".")[2])
        if fault == "throttle":
            return _error(400, "LimitExceededException", "Rate exceeded for shard (injected)")
        if fault == "server_error":
            if details.random() < 0.5:
                return _error(500, "InternalServerError", "Internal server error (injected)")
            return 503, b"<html><body><b>Http/1.1 Service Unavailable</b></body></html>"
        if fault == "malformed":
            return 200, details.choice(_GARBAGE)
        if fault == "expired":
            return _error(400, "ExpiredIteratorException", "Iterator expired (injected)")
        try:
            answer = method(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "InternalFailure"))
            status = 500 if code in _SERVER_ERROR_CODES else 400
            return _error(status, code, str(error.get("Message", "")))
        except TypeError as exc:  # a required parameter is missing
            return _error(400, "ValidationException", str(exc))
        encoded = json.dumps(answer, separators=(",", ":")).encode()
        if fault == "truncated":
            return 200, encoded[: details.randrange(1, len(encoded))]
        return 200, encoded

    def _request_id(self) -> str:
        return f"simserver-{next(self._request_ids):012d}"


def _error(status: int, code: str, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"__type": _ERROR_PREFIX + code, "message": message}).encode()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        owner: SimulatorServer,
    ) -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def close_connections(self) -> None:
        """Close kept-alive connections, whose threads otherwise wait for a next request."""
        with self.connections_lock:
            connections, self.connections = list(self.connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that goes away mid-call (a killed consumer) is not worth a traceback."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        target = self.headers.get("X-Amz-Target", "")
        try:
            status, answer = owner._answer(target, body)
        except Exception as exc:  # a bug here must not look like a network failure
            owner.errors.append(f"{target}: {exc!r}")
            status, answer = _error(500, "InternalFailure", f"SimulatorServer failed: {exc!r}")
        html = status == 503
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if html else _CONTENT_TYPE)
        self.send_header("Content-Length", str(len(answer)))
        self.send_header("x-amzn-RequestId", owner._request_id())
        self.end_headers()
        self.wfile.write(answer)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header by the simulator's clock, as the service's is by its own (records'
        creation times and a LATEST pin or a seek compare with it)."""
        if timestamp is None:
            timestamp = self.server.owner.simulator.wall_time()
        return super().date_time_string(timestamp)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a consumer makes thousands of calls."""
