"""Child of test_delivery_review: a healthy consumer with lanes, left to the atexit stop."""

from __future__ import annotations

import threading
import time

from ddbstreams import ConsumerSettings, InMemoryCheckpointStore, Record, StreamConsumer
from ddbstreams.testing import StreamSimulator

sim = StreamSimulator()
for n in range(5000):
    sim.insert({"email": f"u{n % 50}@example.com", "order_number": "1", "n": n})
started = threading.Event()
store = InMemoryCheckpointStore()


def handle(record: Record) -> None:
    started.set()
    time.sleep(0.001)  # some work


consumer = StreamConsumer(
    handle,
    stream_arn=sim.stream_arn,
    client=sim,
    checkpoint_store=store,
    settings=ConsumerSettings(poll_interval=0.02),
    parallelism=4,
)
consumer.start()
assert started.wait(10)
print("records flowing; main returns", flush=True)
