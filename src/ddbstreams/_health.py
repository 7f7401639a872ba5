"""Health: can a supervisor trust this consumer to be making progress?"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ._coordinator import ShardStatus
    from ._settings import ConsumerSettings

HealthStatus = Literal["healthy", "degraded", "failing"]


@dataclass(frozen=True)
class Health:
    """What :meth:`StreamConsumer.health` says, for a liveness probe or a dashboard.

    - ``healthy``: running, and no shard is failing.
    - ``degraded``: running, but some shard, the discovery of shards or the heartbeat is
      retrying after failures (throttling, server errors, a handler raising, a store
      outage...).
    - ``failing``: not running (never started, stopped, or stopped on an error), or stuck
      until someone acts, although it keeps retrying: a shard or discovery has failed
      ``failures_before_unhealthy`` times in a row; the handler has failed for
      ``unhealthy_handler_failing_for`` seconds without a success; records have waited that
      long without any being done (a stuck shard, such as a handler call that never
      returns); the heartbeats of a consumer group have failed long enough for this worker
      to stop reading; or a shard's iterator age is above ``unhealthy_iterator_age``.

    ``reasons`` says why, one line per problem.
    """

    status: HealthStatus
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True unless ``failing``: what a liveness probe should check."""
        return self.status != "failing"


def assess(
    shards: Iterable[ShardStatus],
    settings: ConsumerSettings,
    discovery_failures: int,
    heartbeat: tuple[HealthStatus, str] | None = None,
) -> Health:
    """The health of a running coordinator from its shards' state."""
    failing: list[str] = []
    degraded: list[str] = []
    failing_for_max = settings.unhealthy_handler_failing_for
    oldest_allowed = settings.unhealthy_iterator_age
    for shard in shards:
        name = f"shard {shard.shard_id}"
        if shard.failures:
            line = (
                f"{name}: {shard.failures} {shard.failure_kind} failure(s) in a row: "
                f"{shard.last_error}"
            )
            failed_enough = shard.failures >= settings.failures_before_unhealthy
            (failing if failed_enough else degraded).append(line)
        if shard.failing_for > 0 and shard.failing_for >= failing_for_max:
            failing.append(
                f"{name}: the handler has failed for {shard.failing_for:.0f}s without a "
                f"success (unhealthy_handler_failing_for={failing_for_max:g}s)"
            )
        elif shard.stalled_for > 0 and shard.stalled_for >= failing_for_max:
            failing.append(
                f"{name}: stuck: records have waited {shard.stalled_for:.0f}s without any "
                "being done (a handler call that does not return?)"
            )
        age = max(shard.iterator_age, shard.oldest_waiting_age)
        if oldest_allowed is not None and age > oldest_allowed:
            failing.append(
                f"{name}: iterator age {age:.0f}s is above unhealthy_iterator_age="
                f"{oldest_allowed:g}s"
            )
    if discovery_failures:
        line = f"discovering shards failed {discovery_failures} time(s) in a row"
        failed_enough = discovery_failures >= settings.failures_before_unhealthy
        (failing if failed_enough else degraded).append(line)
    if heartbeat is not None:
        status, line = heartbeat
        (failing if status == "failing" else degraded).append(line)
    if failing:
        return Health("failing", tuple(failing + degraded))
    if degraded:
        return Health("degraded", tuple(degraded))
    return Health("healthy")
