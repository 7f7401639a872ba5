"""A moto server that answers one request at a time, for lease tables shared by processes.

    python tests/serial_moto.py      # prints "port N" once it listens; serves until SIGTERM

moto's threaded server (the embedded local endpoint) serves each request on a thread of its
own, and its DynamoDB backend checks a conditional write's condition and then applies the
update in two steps that concurrent requests interleave: two workers once both "took" one
lease. DynamoDB applies a conditional write atomically. This serves moto's WSGI app (built as
``moto.server`` builds it) with werkzeug's single-threaded server: one request at a time,
so every conditional write is atomic, whichever process sends it. werkzeug closes the
connection after each answer, so one client's idle connection never holds up another's.

:class:`SerialMoto` starts and stops it from another Python (standard library only; the
child needs moto, as the ``local`` extra installs it).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType

STARTUP_TIMEOUT = 60.0


class SerialMoto:
    """A single-threaded moto server in a child process, on a free loopback port."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self.port: int | None = None
        self._process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the serial moto server is not started")
        return f"http://127.0.0.1:{self.port}"

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``boto3.client("dynamodb", ...)`` that reach this server."""
        return {
            "endpoint_url": self.url,
            "region_name": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }

    def start(self) -> SerialMoto:
        self._process = subprocess.Popen(
            [self.python, str(Path(__file__).resolve())], stdout=subprocess.PIPE, text=True
        )
        line: list[str] = []
        assert self._process.stdout is not None
        stdout = self._process.stdout
        reader = threading.Thread(target=lambda: line.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(STARTUP_TIMEOUT)
        text = line[0].strip() if line else ""
        if not text.startswith("port "):
            status = self._process.poll()
            self.stop()
            raise RuntimeError(
                f"the serial moto server did not start within {STARTUP_TIMEOUT}s "
                f"(exit status {status}, first line {text!r})"
            )
        self.port = int(text.split()[1])
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> SerialMoto:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve() -> None:
    import faulthandler
    import logging
    import signal

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class Handler(MotoRequestHandler):
        # A client stopped (SIGSTOP) in the middle of sending a request would otherwise hold
        # up every other client: drop its connection after a second of silence.
        timeout = 1.0

    faulthandler.register(signal.SIGUSR1)  # stacks on stderr, to look into a hang
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", 0, app, threaded=False, processes=1, request_handler=Handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    print(f"port {server.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    serve()
