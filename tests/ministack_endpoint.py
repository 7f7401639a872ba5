"""Start and stop a MiniStack server (tests/ministack_server.py) from another Python.

Standard library only: the noxfile's ``compat`` session uses it as well as the tests.
"""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

LAUNCHER = Path(__file__).with_name("ministack_server.py")
HEALTH_PATH = "/_ministack/health"


class MiniStack:
    """A MiniStack process serving DynamoDB + Streams on a loopback port.

    ``python`` is the interpreter of a virtualenv where ``ministack`` is installed.
    ``iterator_lifetime`` and ``retention`` (seconds) replace MiniStack's 15 min and 24 h.
    """

    def __init__(
        self,
        python: str,
        *,
        iterator_lifetime: float | None = None,
        retention: float | None = None,
        startup_timeout: float = 60,
    ) -> None:
        self.python = python
        self.iterator_lifetime = iterator_lifetime
        self.retention = retention
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self._process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("MiniStack is not started")
        return f"http://127.0.0.1:{self.port}"

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``boto3.client(...)`` that reach this server."""
        return {
            "endpoint_url": self.url,
            "region_name": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }

    def start(self) -> MiniStack:
        command = [self.python, str(LAUNCHER)]
        if self.iterator_lifetime is not None:
            command += ["--iterator-lifetime", str(self.iterator_lifetime)]
        if self.retention is not None:
            command += ["--retention", str(self.retention)]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            self.port = self._read_port()
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise
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

    def __enter__(self) -> MiniStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _read_port(self) -> int:
        """The port the launcher prints once its socket listens (bounded wait)."""
        assert self._process is not None and self._process.stdout is not None
        line: list[str] = []
        reader = threading.Thread(
            target=lambda: line.append(self._process.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        reader.join(self.startup_timeout)
        text = line[0].strip() if line else ""
        if not text.startswith("port "):
            status = self._process.poll()
            raise RuntimeError(
                f"MiniStack did not start within {self.startup_timeout}s "
                f"(exit status {status}, first line {text!r}); see its stderr above"
            )
        return int(text.split()[1])

    def _wait_until_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + HEALTH_PATH, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if self._process.poll() is not None:
                raise RuntimeError(f"MiniStack exited with status {self._process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"MiniStack did not answer within {self.startup_timeout}s")
            time.sleep(0.05)
