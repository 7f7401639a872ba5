"""Record: fields, images by view type, TTL deletes."""

from __future__ import annotations

from datetime import timezone
from decimal import Decimal

import pytest

from ddbstreams import Record
from ddbstreams.testing import StreamSimulator

ORDER = {"email": "anil@example.com", "order_number": "2023/01/01#1344", "order_amount": 234}


def only_record(sim: StreamSimulator) -> Record:
    (shard,) = sim.open_shard_ids()
    (raw,) = sim.records(shard)
    return Record(raw, shard)


def test_fields() -> None:
    sim = StreamSimulator(first_sequence_number=10**25)
    sim.insert({**ORDER, "blob": b"\x00\x01"})
    record = only_record(sim)
    assert record.event_name == "INSERT"
    assert record.sequence_number == str(10**25)
    assert record.keys == {"email": "anil@example.com", "order_number": "2023/01/01#1344"}
    assert record.new_image == {**ORDER, "order_amount": Decimal(234), "blob": b"\x00\x01"}
    assert record.old_image is None
    assert record.stream_view_type == "NEW_AND_OLD_IMAGES"
    assert record.size_bytes > 0
    assert record.event_id
    created = record.approximate_creation_time
    assert created is not None and created.tzinfo == timezone.utc
    assert record.user_identity is None and not record.is_ttl_delete
    assert record.shard_id == sim.open_shard_ids()[0]
    assert "INSERT" in repr(record)


def test_images_are_cached() -> None:
    sim = StreamSimulator()
    sim.insert(ORDER)
    record = only_record(sim)
    assert record.new_image is record.new_image
    assert record.keys is record.keys


@pytest.mark.parametrize(
    ("view", "has_new", "has_old"),
    [
        ("KEYS_ONLY", False, False),
        ("NEW_IMAGE", True, False),
        ("OLD_IMAGE", False, True),
        ("NEW_AND_OLD_IMAGES", True, True),
    ],
)
def test_images_absent_for_the_view_type_are_none(view: str, has_new: bool, has_old: bool) -> None:
    sim = StreamSimulator(stream_view_type=view)
    sim.modify(ORDER, {**ORDER, "order_status": "shipped"})
    record = only_record(sim)
    assert (record.new_image is not None) == has_new
    assert (record.old_image is not None) == has_old
    assert record.keys == {"email": ORDER["email"], "order_number": ORDER["order_number"]}


def test_ttl_delete_is_recognisable() -> None:
    sim = StreamSimulator()
    sim.remove(ORDER, ttl=True)
    record = only_record(sim)
    assert record.event_name == "REMOVE"
    assert record.user_identity == {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
    assert record.is_ttl_delete


def test_a_record_without_keys_has_empty_keys_each_its_own() -> None:
    first, second = Record({"dynamodb": {}}, "s"), Record({"dynamodb": {}}, "s")
    assert first.keys == {}
    first.keys["added"] = 1  # a handler may change its record's dicts...
    assert second.keys == {}  # ...without reaching another record's
