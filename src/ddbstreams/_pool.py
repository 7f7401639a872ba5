"""A bounded pool of daemon threads that the coordinator can walk away from.

``concurrent.futures.ThreadPoolExecutor`` joins its threads when the interpreter exits,
so a call stuck on a network that never answers would hold the exit (and a ``stop()``
that waits for the pool) for as long as the socket's timeout. These threads are daemons:
stopping the pool never waits for them, and each one ends after its current call.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

Task = Callable[[], Any]
Done = Callable[[Any, BaseException | None], None]


class WorkerPool:
    """At most ``size`` threads named ``{name}_N``; threads start as work arrives."""

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name
        self._tasks: queue.SimpleQueue[tuple[Task, Done] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    def submit(self, task: Task, done: Done) -> None:
        """Run ``task`` on a pool thread, then ``done(result, error)`` on that thread."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the pool is shut down")
            if self._idle > 0:
                self._idle -= 1
            elif len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            self._tasks.put((task, done))

    def owns(self, thread: threading.Thread) -> bool:
        """True if ``thread`` is one of this pool's threads."""
        with self._lock:
            return thread in self._threads

    def shutdown(self) -> None:
        """Take no more work; each thread ends after its current task. Does not wait."""
        with self._lock:
            self._closed = True
            for _ in self._threads:
                self._tasks.put(None)

    def _work(self) -> None:
        while True:
            work = self._tasks.get()
            if work is None:
                return
            task, done = work
            try:
                result, error = task(), None
            except BaseException as exc:
                result, error = None, exc
            done(result, error)
            with self._lock:
                self._idle += 1


class Abandoned(Exception):
    """``call_unless_stopped`` returned because of the stop, leaving the call behind."""


def call_unless_stopped(task: Task, stop: threading.Event, name: str) -> Any:
    """``task()`` on a daemon thread; its result, or :class:`Abandoned` once ``stop`` is set
    (the call goes on, unwaited for, until the network lets it end)."""
    outcome: list[tuple[Any, BaseException | None]] = []
    finished = threading.Event()

    def call() -> None:
        try:
            outcome.append((task(), None))
        except BaseException as exc:
            outcome.append((None, exc))
        finished.set()

    threading.Thread(target=call, name=name, daemon=True).start()
    while not finished.wait(0.05):  # a stop is noticed within 50 ms
        if stop.is_set():
            raise Abandoned()
    result, error = outcome[0]
    if error is not None:
        raise error
    return result
