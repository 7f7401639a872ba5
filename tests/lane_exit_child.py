"""Child of test_delivery_review: a handler that never returns, and a main that exits."""

from __future__ import annotations

import sys
import threading

import ddbstreams._consumer as consumer_module
from ddbstreams import ConsumerSettings, Record, StreamConsumer
from ddbstreams.testing import StreamSimulator

consumer_module.EXIT_GRACE_SECONDS = 1.0  # the documented 30 s grace, shortened

parallelism = int(sys.argv[1])
sim = StreamSimulator()
sim.insert({"email": "a@example.com", "order_number": "1", "n": 0})
started = threading.Event()
never = threading.Event()


def handle(record: Record) -> None:
    started.set()
    never.wait()  # a handler stuck on a network that never answers


consumer = StreamConsumer(
    handle,
    stream_arn=sim.stream_arn,
    client=sim,
    settings=ConsumerSettings(poll_interval=0.02),
    parallelism=parallelism,
)
consumer.start()
assert started.wait(10)
print(f"parallelism={parallelism}: handler running; main returns", flush=True)
# main ends here: atexit stops the consumer, waits EXIT_GRACE_SECONDS, and gives up
