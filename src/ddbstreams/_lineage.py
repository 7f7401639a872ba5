"""The shard graph of one stream: which shards exist, who is whose parent, what may start.

Pure data, no I/O: the coordinator feeds it ``DescribeStream`` pages and asks it questions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ShardInfo:
    """One shard as ``DescribeStream`` lists it."""

    shard_id: str
    parent_shard_id: str | None
    starting_sequence_number: str | None
    ending_sequence_number: str | None

    @property
    def closed(self) -> bool:
        """A closed shard gets no new records; it ends once its last record is read."""
        return self.ending_sequence_number is not None

    @classmethod
    def from_wire(cls, shard: Mapping[str, Any]) -> ShardInfo:
        """Build from one entry of ``DescribeStream``'s ``Shards`` list."""
        sequence_range = shard.get("SequenceNumberRange", {})
        return cls(
            shard_id=shard["ShardId"],
            parent_shard_id=shard.get("ParentShardId"),
            starting_sequence_number=sequence_range.get("StartingSequenceNumber"),
            ending_sequence_number=sequence_range.get("EndingSequenceNumber"),
        )


class ShardLineage:
    """Every shard seen so far and their parent links.

    A shard is *ready* when it is not finished and its parent is finished or unknown (a
    parent that is no longer listed was trimmed away, so there is nothing left to wait for;
    the coordinator first checks what its stored checkpoint says was left unread).
    """

    def __init__(self) -> None:
        self._shards: dict[str, ShardInfo] = {}
        self._children: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self._shards)

    @property
    def shards(self) -> Mapping[str, ShardInfo]:
        return self._shards

    def merge(self, shards: Iterable[ShardInfo]) -> list[ShardInfo]:
        """Add or update shards; return those not seen before, parents before children."""
        new: list[ShardInfo] = []
        for shard in shards:
            if shard.shard_id not in self._shards:
                new.append(shard)
                if shard.parent_shard_id is not None:
                    self._children.setdefault(shard.parent_shard_id, []).append(shard.shard_id)
            self._shards[shard.shard_id] = shard
        return self.in_lineage_order(new)

    def remove(self, shard_ids: Iterable[str]) -> None:
        """Forget shards the lineage no longer needs (finished, unlisted, children begun)."""
        for shard_id in shard_ids:
            shard = self._shards.pop(shard_id)
            self._children.pop(shard_id, None)
            siblings = self._children.get(shard.parent_shard_id or "")
            if siblings is not None:
                siblings.remove(shard_id)

    def is_ready(self, shard_id: str, is_finished: Callable[[str], bool]) -> bool:
        """May ``shard_id`` be read now, given which shards are finished?"""
        if is_finished(shard_id):
            return False
        parent = self._shards[shard_id].parent_shard_id
        return parent is None or parent not in self._shards or is_finished(parent)

    def children(self, shard_id: str) -> list[str]:
        return list(self._children.get(shard_id, ()))

    def in_lineage_order(self, shards: Iterable[ShardInfo]) -> list[ShardInfo]:
        """Sort so that every parent comes before its children (ties by shard id)."""

        def depth(shard: ShardInfo) -> int:
            level, parent, seen = 0, shard.parent_shard_id, {shard.shard_id}
            while parent is not None and parent in self._shards and parent not in seen:
                seen.add(parent)
                level += 1
                parent = self._shards[parent].parent_shard_id
            return level

        return sorted(shards, key=lambda shard: (depth(shard), shard.shard_id))
