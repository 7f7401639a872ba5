"""The shard graph on its own: readiness, lineage order, forgetting shards."""

from __future__ import annotations

from ddbstreams._lineage import ShardInfo, ShardLineage


def shard(shard_id: str, parent: str | None = None, closed: bool = False) -> ShardInfo:
    return ShardInfo(shard_id, parent, "1" * 21, "9" * 21 if closed else None)


def test_a_shard_is_ready_when_unfinished_and_its_parent_is_finished_or_unknown() -> None:
    lineage = ShardLineage()
    lineage.merge([shard("p", closed=True), shard("c", "p"), shard("o", "gone")])
    finished: set[str] = set()

    def ready() -> set[str]:
        return {s for s in ("p", "c", "o") if lineage.is_ready(s, finished.__contains__)}

    assert ready() == {"p", "o"}  # "o"'s parent is not listed: nothing to wait for
    finished.add("p")
    assert ready() == {"c", "o"}  # a finished shard is never ready again
    finished.update({"c", "o"})
    assert ready() == set()


def test_lineage_order_puts_every_parent_before_its_children_whatever_their_ids() -> None:
    lineage = ShardLineage()
    # Ids that sort against the lineage: grandchild < child < parent; "m" has no parent.
    shards = [shard("a", "b"), shard("z", None), shard("b", "c"), shard("c"), shard("m")]
    assert [s.shard_id for s in lineage.merge(shards)] == ["c", "m", "z", "b", "a"]
    assert [s.shard_id for s in lineage.in_lineage_order(shards)] == ["c", "m", "z", "b", "a"]


def test_removing_shards_forgets_them_and_their_links() -> None:
    lineage = ShardLineage()
    lineage.merge([shard("p", closed=True), shard("c1", "p"), shard("c2", "p"), shard("x")])
    lineage.remove(["c1"])  # a shard without children of its own
    assert lineage.children("p") == ["c2"]
    lineage.remove(["p", "x"])
    assert set(lineage.shards) == {"c2"}
    assert lineage.children("p") == []
    assert len(lineage) == 1
