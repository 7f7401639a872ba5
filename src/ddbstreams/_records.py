"""Record: one change of one item, as the stream delivered it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Literal

from ._deserialize import deserialize_image

EventName = Literal["INSERT", "MODIFY", "REMOVE"]
StreamViewType = Literal["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"]

_UNSET: Any = object()
_NO_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})


class Record:
    """One stream record: an item was inserted, modified or removed.

    Images are turned into Python values on first access and cached, with the values
    boto3's ``TypeDeserializer`` gives (``str``, ``Decimal``, ``set``, ``list``, ``dict``,
    ``bool``, ``None``), except that binary attributes are real ``bytes`` and that a number
    DynamoDB writes out past 38 digits (``1E+125`` as "1" and 125 zeros), which boto3
    rejects, is read. An image the stream's view type does not carry is ``None``.

    ``raw`` is the record exactly as it came off the wire (AttributeValue JSON).
    """

    __slots__ = ("_keys", "_new_image", "_old_image", "raw", "shard_id")

    def __init__(self, raw: dict[str, Any], shard_id: str) -> None:
        self.raw = raw
        self.shard_id = shard_id
        self._keys: Any = _UNSET
        self._new_image: Any = _UNSET
        self._old_image: Any = _UNSET

    @property
    def event_name(self) -> EventName:
        """``INSERT``, ``MODIFY`` or ``REMOVE``."""
        name: EventName = self.raw["eventName"]
        return name

    @property
    def event_id(self) -> str:
        """A unique identifier of this record."""
        return str(self.raw["eventID"])

    @property
    def sequence_number(self) -> str:
        """The record's sequence number within its shard: numeric text of 21 to 40 digits.

        Compare sequence numbers with ``int(...)``, never as strings (their length varies).
        """
        return str(self.raw["dynamodb"]["SequenceNumber"])

    @property
    def keys(self) -> dict[str, Any]:
        """The item's primary key attributes."""
        keys: dict[str, Any] = self._keys
        if keys is _UNSET:
            keys = self._keys = deserialize_image(self.raw["dynamodb"].get("Keys", _NO_ATTRIBUTES))
        return keys

    @property
    def new_image(self) -> dict[str, Any] | None:
        """The item after the change; ``None`` for REMOVE or when the view type omits it."""
        new_image: dict[str, Any] | None = self._new_image
        if new_image is _UNSET:
            new_image = self._new_image = self._image("NewImage")
        return new_image

    @property
    def old_image(self) -> dict[str, Any] | None:
        """The item before the change; ``None`` for INSERT or when the view type omits it."""
        old_image: dict[str, Any] | None = self._old_image
        if old_image is _UNSET:
            old_image = self._old_image = self._image("OldImage")
        return old_image

    def _image(self, wire_name: str) -> dict[str, Any] | None:
        image = self.raw["dynamodb"].get(wire_name)
        return None if image is None else deserialize_image(image)

    @property
    def approximate_creation_time(self) -> datetime | None:
        """When the change was made, as an aware UTC datetime (to the second or better)."""
        value = self.raw["dynamodb"].get("ApproximateCreationDateTime")
        if value is None or isinstance(value, datetime):
            return value
        return datetime.fromtimestamp(float(value), tz=timezone.utc)

    @property
    def size_bytes(self) -> int:
        """The size of the record's stream data, as DynamoDB counts it."""
        return int(self.raw["dynamodb"].get("SizeBytes", 0))

    @property
    def stream_view_type(self) -> StreamViewType | None:
        """Which images the stream carries: KEYS_ONLY, NEW_IMAGE, OLD_IMAGE, NEW_AND_OLD_IMAGES."""
        view: StreamViewType | None = self.raw["dynamodb"].get("StreamViewType")
        return view

    @property
    def user_identity(self) -> dict[str, str] | None:
        """Who made the change when it was not a user: ``{"Type": "Service",
        "PrincipalId": "dynamodb.amazonaws.com"}`` for a TTL deletion; else ``None``."""
        identity: dict[str, str] | None = self.raw.get("userIdentity")
        return identity

    @property
    def is_ttl_delete(self) -> bool:
        """True when this is a REMOVE made by DynamoDB's Time to Live."""
        identity = self.user_identity
        return (
            self.event_name == "REMOVE"
            and identity is not None
            and identity.get("PrincipalId") == "dynamodb.amazonaws.com"
        )

    def __repr__(self) -> str:
        return (
            f"Record({self.event_name} seq={self.sequence_number} shard={self.shard_id} "
            f"keys={self.keys!r})"
        )
