"""SIGTERM and Ctrl-C while ``run()`` consumes in the main thread.

A signal handler runs in the main thread between two bytecodes, wherever that thread is:
possibly inside a ``threading.Event`` method, holding the event's lock. A handler that then
sets the same event blocks on that lock for ever. The scheduler loop of ``run()`` spends
its life in its wake-up event's ``clear()`` and ``wait()``, and the SIGTERM handler set that
event: a worker of tests/test_groups_processes.py once never exited after SIGTERM. Each
test here makes the signal land inside the lock, every time, in a process of its own.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(60)

CONSUMER = textwrap.dedent(
    """
    import faulthandler
    import signal

    from ddbstreams import ConsumerSettings, StreamConsumer
    from ddbstreams.testing import StreamSimulator

    faulthandler.dump_traceback_later(20, exit=True)  # a deadlock: its stacks, exit 1
    sim = StreamSimulator(shard_count=1)
    sim.insert({"email": "a@example.com", "order_number": "1"})


    def started(shard_id):
        # On the scheduling thread, the main one in run(): the signal lands while that
        # thread is inside its wake-up event's clear() or wait(), holding the event's lock.
        with consumer._coordinator._wake._cond:
            signal.raise_signal(signal.SIGNAME)


    consumer = StreamConsumer(
        lambda record: None,
        stream_arn=sim.stream_arn,
        client=sim,
        on_shard_started=started,
        settings=ConsumerSettings(poll_interval=0.01),
    )
    consumer.run()
    print("stopped", flush=True)
    """
)


@pytest.mark.parametrize("name", ["TERM", "INT"])
def test_a_signal_that_lands_while_the_scheduler_holds_its_event_s_lock_stops_run(
    name: str,
) -> None:
    try:
        done = subprocess.run(
            [sys.executable, "-c", CONSUMER.replace("SIGNAME", f"SIG{name}")],
            capture_output=True,
            text=True,
            timeout=30,  # it stops within a second; without the fix it never does
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"SIG{name} did not stop run() (a deadlock in the handler): {exc.stderr!r}")
    assert (done.returncode, done.stdout) == (0, "stopped\n"), done.stderr
