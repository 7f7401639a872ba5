"""The embedded local endpoint: DynamoDB and DynamoDB Streams served by moto on loopback."""

from __future__ import annotations

import errno
import logging
import socket
from types import TracebackType
from typing import Any

from ._errors import LocalEndpointError

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class LocalEndpoint:
    """DynamoDB + DynamoDB Streams in memory, over real HTTP, on ``host:port``.

    Needs the ``local`` extra (``pip install 'ddbstreams[local]'``). ``port=0`` picks a free
    port; :attr:`url` tells which. Use as a context manager, or call :meth:`start` and
    :meth:`stop`. Any credentials are accepted; :data:`DUMMY_CREDENTIALS` are a ready set.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: Any = None

    @property
    def url(self) -> str:
        """The endpoint URL, such as ``http://127.0.0.1:8000``."""
        if self._server is None:
            raise LocalEndpointError("the local endpoint is not started")
        return f"http://{self.host}:{self.port}"

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``boto3.client(...)`` that reach this endpoint, with the
        dummy credentials and region (the process environment is left as it is)."""
        return {
            "endpoint_url": self.url,
            "region_name": DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"],
            "aws_access_key_id": DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        }

    def start(self) -> LocalEndpoint:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as exc:
            raise LocalEndpointError(
                "the local endpoint needs the 'local' extra: pip install 'ddbstreams[local]'"
            ) from exc
        self._check_port_free()
        # No AWS_ACCOUNT_ID_ENDPOINT_MODE here: botocore's account-based endpoints
        # (ACCOUNT.streams-ddb.REGION..., which moto's in-process mock does not route) are
        # chosen only when no endpoint_url is given, and this endpoint is always reached by
        # its URL.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        try:
            server.start()
        except OSError as exc:
            raise self._port_error(exc) from exc
        self._server = server
        self.port = server.get_host_and_port()[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _check_port_free(self) -> None:
        if self.port == 0:
            return
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host, self.port))
            except OSError as exc:
                raise self._port_error(exc) from exc

    def _port_error(self, exc: OSError) -> LocalEndpointError:
        if exc.errno == errno.EADDRINUSE:
            return LocalEndpointError(
                f"port {self.port} on {self.host} is already in use: stop what uses it, or "
                "pass --port with another number (0 picks a free one)"
            )
        return LocalEndpointError(f"cannot listen on {self.host}:{self.port}: {exc}")
