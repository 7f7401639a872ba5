"""Launch MiniStack (DynamoDB + Streams only) on a free loopback port, with test lifetimes.

Runs under MiniStack's own virtualenv (it pins its own botocore), never the test venv:

    .nox/compat-ministack/bin/python tests/ministack_server.py \
        [--iterator-lifetime SECONDS] [--retention SECONDS]

It binds 127.0.0.1 on a port the kernel picks, prints ``port N`` on stdout once the socket
listens, and serves until SIGTERM. MiniStack keeps the two lifetimes as module constants of
ministack 1.5.x (``dynamodb_streams._ITERATOR_TTL_SECONDS``, 15 min;
``dynamodb._STREAM_RETENTION_SECONDS``, 24 h); this sets them before the first request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterator-lifetime", type=float, default=None)
    parser.add_argument("--retention", type=float, default=None)
    args = parser.parse_args()

    # Read by ministack.app at import time: serve only what ddbstreams talks to, quietly.
    os.environ["SERVICES"] = "dynamodb,dynamodbstreams"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["PERSIST_STATE"] = "0"

    from hypercorn.asyncio import serve
    from hypercorn.config import Config
    from ministack import app as ministack_app
    from ministack.services import dynamodb, dynamodb_streams

    for module, name, value in (
        (dynamodb_streams, "_ITERATOR_TTL_SECONDS", args.iterator_lifetime),
        (dynamodb, "_STREAM_RETENTION_SECONDS", args.retention),
    ):
        if not hasattr(module, name):  # a MiniStack whose internals moved: say so, loudly
            sys.exit(f"ministack_server: {module.__name__}.{name} does not exist")
        if value is not None:
            setattr(module, name, value)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    print(f"port {listener.getsockname()[1]}", flush=True)

    config = Config()
    config.bind = [f"fd://{listener.fileno()}"]
    config.keep_alive_timeout = 75
    config.loglevel = "WARNING"

    shutdown = asyncio.Event()

    async def serve_until_terminated() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, shutdown.set)
        await serve(ministack_app.app, config, shutdown_trigger=shutdown.wait)

    asyncio.run(serve_until_terminated())


if __name__ == "__main__":
    main()
