"""Health: can a supervisor trust this consumer to be making progress?"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ._coordinator import ShardStatus

HealthStatus = Literal["healthy", "degraded", "failing"]


@dataclass(frozen=True)
class Health:
    """What :meth:`StreamConsumer.health` says, for a liveness probe or a dashboard.

    - ``healthy``: running, and no shard is failing.
    - ``degraded``: running, but some shard or the discovery of shards is retrying after
      failures (throttling, server errors, a handler raising, a store outage...).
    - ``failing``: not running (never started, stopped, or stopped on an error), or a shard
      or discovery has failed ``failures_before_unhealthy`` times in a row: it is stuck
      until someone acts, although it keeps retrying.

    ``reasons`` says why, one line per problem.
    """

    status: HealthStatus
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True unless ``failing``: what a liveness probe should check."""
        return self.status != "failing"


def assess(
    shards: Iterable[ShardStatus], failures_before_unhealthy: int, discovery_failures: int
) -> Health:
    """The health of a running coordinator from its shards' failure counts."""
    failing: list[str] = []
    degraded: list[str] = []
    for shard in shards:
        if shard.failures == 0:
            continue
        line = (
            f"shard {shard.shard_id}: {shard.failures} {shard.failure_kind} failure(s) in a "
            f"row: {shard.last_error}"
        )
        (failing if shard.failures >= failures_before_unhealthy else degraded).append(line)
    if discovery_failures:
        line = f"discovering shards failed {discovery_failures} time(s) in a row"
        (failing if discovery_failures >= failures_before_unhealthy else degraded).append(line)
    if failing:
        return Health("failing", tuple(failing + degraded))
    if degraded:
        return Health("degraded", tuple(degraded))
    return Health("healthy")
