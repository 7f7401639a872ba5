"""One worker process of a consumer group (tests/test_groups_processes.py, bench_leases.py).

    python tests/group_worker.py STREAM_URL STREAM_ARN LEASE_URL TABLE WORKER_ID LOG_PATH \
        [--lease-duration S] [--group NAME] [--checkpoint-every N] ...

Reads the stream served at STREAM_URL (a SimulatorServer) with a DynamoDBCheckpointStore on
the lease table at LEASE_URL, and appends one line per delivered record to LOG_PATH:
``worker shard sequence_number key version monotonic_time``, one write per line, before the
handler returns, so that every record it may have checkpointed is in the log when it is
SIGKILLed. ``time.monotonic()`` is the system's monotonic clock, the same in every process
of the host. Each lease lost is appended to LOG_PATH.events as ``lost shard time``.
SIGTERM stops it cleanly (checkpoints written, leases released), then it exits 0; SIGUSR1
prints every thread's stack on stderr.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import sys
import time

from ddbstreams import ConsumerSettings, DynamoDBCheckpointStore, Record, StreamConsumer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("stream_url", "stream_arn", "lease_url", "table", "worker_id", "log_path"):
        parser.add_argument(name)
    parser.add_argument("--lease-duration", type=float, default=3.0)
    parser.add_argument("--group", default="test")
    parser.add_argument("--checkpoint-every", type=int, default=5)
    parser.add_argument("--checkpoint-interval", type=float, default=0.5)
    parser.add_argument("--discovery-interval", type=float, default=1.0)
    parser.add_argument("--poll-interval", type=float, default=0.05)
    parser.add_argument("--idle-poll-interval-max", type=float, default=0.25)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {args.worker_id} %(levelname)s %(message)s"
    )
    faulthandler.register(signal.SIGUSR1)  # every thread's stack on stderr, for a hang
    log = os.open(args.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    events = os.open(args.log_path + ".events", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    worker = args.worker_id

    def handler(record: Record) -> None:
        image = record.new_image or {}
        line = (
            f"{worker} {record.shard_id} {record.sequence_number} {record.keys['email']} "
            f"{image.get('version')} {time.monotonic():.6f}\n"
        )
        os.write(log, line.encode())  # one write per line: whole lines, even when killed

    def lease_lost(shard_id: str) -> None:
        os.write(events, f"lost {shard_id} {time.monotonic():.6f}\n".encode())

    store = DynamoDBCheckpointStore(
        args.table,
        group=args.group,
        lease_duration=args.lease_duration,
        endpoint_url=args.lease_url,
        region_name="us-east-1",
    )
    consumer = StreamConsumer(
        handler,
        stream_arn=args.stream_arn,
        endpoint_url=args.stream_url,
        region_name="us-east-1",
        checkpoint_store=store,
        settings=ConsumerSettings(
            poll_interval=args.poll_interval,
            idle_poll_interval_max=args.idle_poll_interval_max,
            checkpoint_every=args.checkpoint_every,
            checkpoint_interval=args.checkpoint_interval,
            discovery_interval=args.discovery_interval,
            handler_retry_initial=0.02,
        ),
        worker_id=worker,
        on_lease_lost=lease_lost,
    )
    consumer.run()  # until SIGTERM
    return 0


if __name__ == "__main__":
    sys.exit(main())
