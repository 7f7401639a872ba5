"""DynamoDBCheckpointStore: checkpoints and a consumer group's leases in a DynamoDB table.

One table holds many groups and many streams. Key schema (both strings):

- ``pk``: ``"{group}|{stream_arn}"``
- ``sk``: ``"shard|{shard_id}"`` for a shard's lease, ``"worker|{worker_id}"`` for a
  worker's heartbeat.

A lease item: ``shard_id``, ``parent_shard_id`` (if any), ``owner`` (if held), ``epoch``
(N, grows on every change of owner), ``checkpoint`` (the last checkpointed sequence number,
as the service writes it), ``checkpoint_key`` (the same, zero-padded to 40 digits so that
DynamoDB's string comparison orders it as a number), ``finished`` (BOOL), ``begun`` (BOOL),
``latest_at`` (N, a pinned LATEST start), ``begun_at`` (N, when reading began),
``handover_to`` (a worker asking for the lease),
``updated_at`` (N, informational only: no decision reads another host's clock).

A heartbeat item: ``worker_id``, ``beat`` (N, a counter), ``changes`` (N, how many lease
changes the worker made: the others read the leases again when it moves), ``updated_at``
(informational).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ._checkpoints import Checkpoint
from ._client import error_text
from ._errors import CheckpointStoreError, ConfigurationError
from ._leases import Heartbeat, Lease, LeaseLostError
from ._lineage import ShardInfo

_SEQUENCE_DIGITS = 40
_KEY_SCHEMA = [
    {"AttributeName": "pk", "KeyType": "HASH"},
    {"AttributeName": "sk", "KeyType": "RANGE"},
]


def _padded(sequence_number: str) -> str:
    return sequence_number.rjust(_SEQUENCE_DIGITS, "0")


class DynamoDBCheckpointStore:
    """Checkpoints and leases in a DynamoDB table, for one consumer group.

    Workers of the same ``group`` (processes on any hosts) share a stream's shards: each
    shard is read by one live worker at a time; when a worker dies or stops, its shards move
    to the others. See "Running many workers" in the docs for the model and the IAM policy.

    Args:
        table_name: the lease table; created (on-demand billing) on first use unless
            ``create_table=False``.
        group: the consumer group; groups on one stream each receive every record.
        lease_duration: seconds without a heartbeat after which a worker's shards may be
            taken. Workers heartbeat every third of it.
        endpoint_url: as for :class:`StreamConsumer`.
        region_name: as for :class:`StreamConsumer`.
        session: as for :class:`StreamConsumer`.
        client: a boto3 ``dynamodb`` client to use instead of building one.
    """

    def __init__(
        self,
        table_name: str,
        *,
        group: str = "default",
        lease_duration: float = 10.0,
        create_table: bool = True,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        session: Any = None,
        client: Any = None,
    ) -> None:
        if not isinstance(table_name, str) or not 3 <= len(table_name) <= 255:
            raise ConfigurationError(
                f"table_name must be a DynamoDB table name (3 to 255 characters), not "
                f"{table_name!r}"
            )
        if not isinstance(group, str) or not group or "|" in group:
            raise ConfigurationError(f"group must be a non-empty name without '|', not {group!r}")
        if (
            isinstance(lease_duration, bool)
            or not isinstance(lease_duration, (int, float))
            or not lease_duration >= 1.0
        ):
            raise ConfigurationError(
                f"lease_duration must be at least 1 second (10 is a good default), not "
                f"{lease_duration!r}"
            )
        self.table_name = table_name
        self.group = group
        self.lease_duration = float(lease_duration)
        if client is None:
            from ._client import build_boto3_clients

            _, client = build_boto3_clients(
                session=session, endpoint_url=endpoint_url, region_name=region_name
            )
        self._db = client
        self._ensure_table(create_table)

    # ------------------------------------------------------------------ the table

    def _ensure_table(self, create: bool) -> None:
        try:
            described = self._db.describe_table(TableName=self.table_name)["Table"]
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise self._error("describe", exc) from exc
            if not create:
                raise CheckpointStoreError(
                    f"the lease table {self.table_name!r} does not exist (check the name, "
                    "region_name and endpoint_url). Create it (key schema: pk HASH, sk RANGE, "
                    "both strings), or pass create_table=True to have it created on first use."
                ) from exc
            described = self._create_table()
        except BotoCoreError as exc:
            raise self._error("describe", exc) from exc
        if described.get("KeySchema") and sorted(
            (k["AttributeName"], k["KeyType"]) for k in described["KeySchema"]
        ) != sorted((k["AttributeName"], k["KeyType"]) for k in _KEY_SCHEMA):
            raise CheckpointStoreError(
                f"the table {self.table_name!r} exists with another key schema "
                f"({described['KeySchema']}); a lease table needs pk (HASH) and sk (RANGE), "
                "both strings. Give another table name."
            )

    def _create_table(self) -> dict[str, Any]:
        try:
            self._db.create_table(
                TableName=self.table_name,
                KeySchema=_KEY_SCHEMA,
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as exc:
            if _code(exc) != "ResourceInUseException":  # another worker created it first
                raise self._error("create", exc) from exc
        try:
            self._db.get_waiter("table_exists").wait(
                TableName=self.table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
            return dict(self._db.describe_table(TableName=self.table_name)["Table"])
        except (ClientError, BotoCoreError) as exc:
            raise self._error("create", exc) from exc

    # ------------------------------------------------------------------ CheckpointStore

    def load(self, stream_arn: str, shard_id: str) -> Checkpoint | None:
        item = self._shard_item(stream_arn, shard_id)
        return _checkpoint(item) if item else None

    def load_all(self, stream_arn: str) -> dict[str, Checkpoint]:
        checkpoints: dict[str, Checkpoint] = {}
        for item in self._query(stream_arn, "shard|"):
            checkpoint = _checkpoint(item)
            if checkpoint is not None:
                checkpoints[item["shard_id"]["S"]] = checkpoint
        return checkpoints

    def save(self, stream_arn: str, shard_id: str, checkpoint: Checkpoint) -> None:
        """Save a checkpoint whoever holds the lease (never backwards): for tools. A
        consumer's own writes go through :meth:`save_fenced`."""
        self._save(stream_arn, shard_id, checkpoint, None, None)

    def save_fenced(
        self, stream_arn: str, shard_id: str, checkpoint: Checkpoint, worker_id: str, epoch: int
    ) -> None:
        """Save a checkpoint if ``worker_id`` still holds the lease at ``epoch``; else
        raise :class:`LeaseLostError`. Never moves the checkpoint backwards."""
        self._save(stream_arn, shard_id, checkpoint, worker_id, epoch)

    def _save(
        self,
        stream_arn: str,
        shard_id: str,
        checkpoint: Checkpoint,
        worker: str | None,
        epoch: int | None,
    ) -> None:
        names: dict[str, str] = {}
        values: dict[str, Any] = {":now": {"N": repr(time.time())}}
        sets = ["updated_at = :now"]
        conditions = []
        if worker is not None:
            names.update({"#o": "owner", "#e": "epoch"})
            values.update({":me": {"S": worker}, ":epoch": {"N": str(epoch)}})
            conditions.append("#o = :me AND #e = :epoch")
        if checkpoint.sequence_number is not None:
            values[":seq"] = {"S": checkpoint.sequence_number}
            values[":key"] = {"S": _padded(checkpoint.sequence_number)}
            sets += ["checkpoint = :seq", "checkpoint_key = :key"]
            if not checkpoint.finished:
                conditions.append("(attribute_not_exists(checkpoint_key) OR checkpoint_key < :key)")
        if checkpoint.finished:
            values[":true"] = {"BOOL": True}
            sets.append("finished = :true")
        sets.append("begun = :begun")
        values[":begun"] = {"BOOL": True}
        for name in ("latest_at", "begun_at"):
            value = getattr(checkpoint, name)
            if value is not None:
                values[f":{name}"] = {"N": repr(value)}
                sets.append(f"{name} = if_not_exists({name}, :{name})")
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": self._key(stream_arn, f"shard|{shard_id}"),
            "UpdateExpression": "SET " + ", ".join(sets),
            "ExpressionAttributeValues": values,
        }
        if conditions:
            request["ConditionExpression"] = " AND ".join(conditions)
        if names:
            request["ExpressionAttributeNames"] = names
        try:
            self._db.update_item(**request)
        except ClientError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise self._error("write", exc) from exc
            current = self.lease(stream_arn, shard_id)
            if worker is not None and (
                current is None or current.owner != worker or current.epoch != epoch
            ):
                raise LeaseLostError(
                    f"shard {shard_id}: its lease in group {self.group!r} now belongs to "
                    f"{current.owner if current else None!r} (epoch "
                    f"{current.epoch if current else '-'}); this worker's checkpoint was "
                    "refused"
                ) from exc
            # Still ours: the stored checkpoint already covers this one.
        except BotoCoreError as exc:
            raise self._error("write", exc) from exc

    def delete(self, stream_arn: str, shard_ids: Iterable[str]) -> None:
        """Forget the leases of shards the stream no longer lists."""
        for shard_id in shard_ids:
            self._call(
                "delete",
                self._db.delete_item,
                TableName=self.table_name,
                Key=self._key(stream_arn, f"shard|{shard_id}"),
            )

    # ------------------------------------------------------------------ LeaseTable

    def heartbeat(self, stream_arn: str, worker_id: str, beat: int, changes: int = 0) -> None:
        self._call(
            "heartbeat",
            self._db.put_item,
            TableName=self.table_name,
            Item={
                **self._key(stream_arn, f"worker|{worker_id}"),
                "worker_id": {"S": worker_id},
                "beat": {"N": str(beat)},
                "changes": {"N": str(changes)},
                "updated_at": {"N": repr(time.time())},
            },
        )

    def heartbeats(self, stream_arn: str) -> dict[str, Heartbeat]:
        return {
            item["worker_id"]["S"]: Heartbeat(
                int(item["beat"]["N"]), int(item.get("changes", {}).get("N", "0"))
            )
            for item in self._query(stream_arn, "worker|")
        }

    def remove_worker(self, stream_arn: str, worker_id: str) -> None:
        self._call(
            "delete",
            self._db.delete_item,
            TableName=self.table_name,
            Key=self._key(stream_arn, f"worker|{worker_id}"),
        )

    def leases(self, stream_arn: str) -> list[Lease]:
        """Every lease of the stream in this group: who holds what, how far it is read."""
        return [_lease(item) for item in self._query(stream_arn, "shard|")]

    def streams(self) -> list[str]:
        """The streams this group has leases for (a scan of the table: for tools)."""
        arns: set[str] = set()
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "FilterExpression": "begins_with(pk, :group)",
            "ExpressionAttributeValues": {":group": {"S": f"{self.group}|"}},
            "ProjectionExpression": "pk",
        }
        while True:
            page = self._call("read", self._db.scan, **kwargs)
            arns.update(item["pk"]["S"].split("|", 1)[1] for item in page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                return sorted(arns)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def groups(self) -> dict[str, list[str]]:
        """Every group with items in the table, with its streams (a scan: for tools)."""
        found: dict[str, set[str]] = {}
        kwargs: dict[str, Any] = {"TableName": self.table_name, "ProjectionExpression": "pk"}
        while True:
            page = self._call("read", self._db.scan, **kwargs)
            for item in page.get("Items", []):
                group, _, arn = item["pk"]["S"].partition("|")
                found.setdefault(group, set()).add(arn)
            if not page.get("LastEvaluatedKey"):
                return {group: sorted(arns) for group, arns in sorted(found.items())}
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def add_leases(self, stream_arn: str, shards: Sequence[ShardInfo]) -> None:
        for shard in shards:
            item = {
                **self._key(stream_arn, f"shard|{shard.shard_id}"),
                "shard_id": {"S": shard.shard_id},
                "epoch": {"N": "0"},
                "finished": {"BOOL": False},
            }
            if shard.parent_shard_id:
                item["parent_shard_id"] = {"S": shard.parent_shard_id}
            try:
                self._db.put_item(
                    TableName=self.table_name,
                    Item=item,
                    ConditionExpression="attribute_not_exists(sk)",
                )
            except ClientError as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    raise self._error("write", exc) from exc
            except BotoCoreError as exc:
                raise self._error("write", exc) from exc

    def take(self, stream_arn: str, lease: Lease, worker_id: str) -> bool:
        values: dict[str, Any] = {
            ":me": {"S": worker_id},
            ":epoch": {"N": str(lease.epoch)},
            ":next": {"N": str(lease.epoch + 1)},
        }
        condition = "#e = :epoch AND "
        if lease.owner is None:
            condition += "attribute_not_exists(#o)"
        else:
            condition += "#o = :was"
            values[":was"] = {"S": lease.owner}
        return self._conditional(
            stream_arn,
            lease.shard_id,
            "SET #o = :me, #e = :next REMOVE handover_to",
            condition,
            values,
        )

    def ask_handover(self, stream_arn: str, lease: Lease, worker_id: str) -> bool:
        return self._conditional(
            stream_arn,
            lease.shard_id,
            "SET handover_to = :me",
            "#o = :owner AND #e = :epoch AND attribute_not_exists(handover_to)",
            {
                ":me": {"S": worker_id},
                ":owner": {"S": lease.owner or ""},
                ":epoch": {"N": str(lease.epoch)},
            },
        )

    def hand_over(
        self, stream_arn: str, shard_id: str, epoch: int, owner: str, to: str | None
    ) -> bool:
        values: dict[str, Any] = {
            ":me": {"S": owner},
            ":epoch": {"N": str(epoch)},
            ":next": {"N": str(epoch + 1)},
        }
        if to is None:
            update = "SET #e = :next REMOVE #o, handover_to"
        else:
            update = "SET #o = :to, #e = :next REMOVE handover_to"
            values[":to"] = {"S": to}
        return self._conditional(stream_arn, shard_id, update, "#o = :me AND #e = :epoch", values)

    # ------------------------------------------------------------------ seeking

    def move(
        self,
        stream_arn: str,
        shard: ShardInfo,
        checkpoint: Checkpoint | None,
        lease: Lease | None,
    ) -> bool:
        """Set a shard's position as given, backwards too, and take its lease from whoever
        holds it, as a failover does: the lease is released and its epoch bumped, so that the
        owner's next checkpoint is refused and it stops reading; the next worker to take the
        lease reads from the new position. ``checkpoint=None``: not begun (read from its
        first record once its parent is finished).

        Conditional on the lease still being ``lease`` (owner and epoch; ``None``: no lease
        yet): False if it changed meanwhile (read it again and retry)."""
        names = {"#o": "owner", "#e": "epoch"}
        values: dict[str, Any] = {
            ":next": {"N": str(lease.epoch + 1 if lease is not None else 1)},
            ":shard": {"S": shard.shard_id},
            ":now": {"N": repr(time.time())},
            ":finished": {"BOOL": bool(checkpoint and checkpoint.finished)},
            ":begun": {"BOOL": checkpoint is not None},
        }
        sets = ["shard_id = :shard", "#e = :next", "finished = :finished", "begun = :begun"]
        sets.append("updated_at = :now")
        removes = ["#o", "handover_to"]
        if shard.parent_shard_id:
            values[":parent"] = {"S": shard.parent_shard_id}
            sets.append("parent_shard_id = :parent")
        sequence_number = checkpoint.sequence_number if checkpoint else None
        if sequence_number is not None:
            values[":seq"] = {"S": sequence_number}
            values[":key"] = {"S": _padded(sequence_number)}
            sets += ["checkpoint = :seq", "checkpoint_key = :key"]
        else:
            removes += ["checkpoint", "checkpoint_key"]
        for name in ("latest_at", "begun_at"):
            value = getattr(checkpoint, name) if checkpoint is not None else None
            if value is None:
                removes.append(name)
            else:
                values[f":{name}"] = {"N": repr(value)}
                sets.append(f"{name} = :{name}")
        if lease is None:
            condition = "attribute_not_exists(sk)"
        else:
            values[":epoch"] = {"N": str(lease.epoch)}
            condition = "#e = :epoch AND " + (
                "attribute_not_exists(#o)" if lease.owner is None else "#o = :owner"
            )
            if lease.owner is not None:
                values[":owner"] = {"S": lease.owner}
        try:
            self._db.update_item(
                TableName=self.table_name,
                Key=self._key(stream_arn, f"shard|{shard.shard_id}"),
                UpdateExpression=f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise self._error("write", exc) from exc
        except BotoCoreError as exc:
            raise self._error("write", exc) from exc
        return True

    # ------------------------------------------------------------------ plumbing

    def _key(self, stream_arn: str, sk: str) -> dict[str, Any]:
        return {"pk": {"S": f"{self.group}|{stream_arn}"}, "sk": {"S": sk}}

    def lease(self, stream_arn: str, shard_id: str) -> Lease | None:
        """One shard's lease (a consistent read), or None if it has none."""
        item = self._shard_item(stream_arn, shard_id)
        return _lease(item) if item else None

    def _shard_item(self, stream_arn: str, shard_id: str) -> dict[str, Any] | None:
        """A shard's item (its lease and checkpoint), read consistently."""
        item: dict[str, Any] | None = self._call(
            "read",
            self._db.get_item,
            TableName=self.table_name,
            Key=self._key(stream_arn, f"shard|{shard_id}"),
            ConsistentRead=True,
        ).get("Item")
        return item

    def _query(self, stream_arn: str, prefix: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {
                ":pk": {"S": f"{self.group}|{stream_arn}"},
                ":prefix": {"S": prefix},
            },
            "ConsistentRead": True,
        }
        while True:
            page = self._call("read", self._db.query, **kwargs)
            items.extend(page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if not last:
                return items
            kwargs["ExclusiveStartKey"] = last

    def _conditional(
        self,
        stream_arn: str,
        shard_id: str,
        update: str,
        condition: str,
        values: dict[str, Any],
    ) -> bool:
        try:
            self._db.update_item(
                TableName=self.table_name,
                Key=self._key(stream_arn, f"shard|{shard_id}"),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={
                    name: attr
                    for name, attr in (("#o", "owner"), ("#e", "epoch"))
                    if name in update or name in condition
                },
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise self._error("write", exc) from exc
        except BotoCoreError as exc:
            raise self._error("write", exc) from exc
        return True

    def _call(self, action: str, method: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return dict(method(**kwargs))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(action, exc) from exc

    def _error(self, action: str, exc: Exception) -> CheckpointStoreError:
        code = _code(exc) if isinstance(exc, ClientError) else ""
        if code in ("AccessDeniedException", "UnrecognizedClientException"):
            return CheckpointStoreError(
                f"not allowed to {action} the lease table {self.table_name!r} ({code}). "
                "A worker needs dynamodb:DescribeTable, CreateTable (or create_table=False), "
                "GetItem, PutItem, UpdateItem, DeleteItem and Query on it; see 'Running many "
                "workers' in the docs for the policy."
            )
        return CheckpointStoreError(
            f"could not {action} the lease table {self.table_name!r}: {error_text(exc)}"
        )


def _code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _lease(item: dict[str, Any]) -> Lease:
    return Lease(
        shard_id=item["shard_id"]["S"],
        parent_shard_id=item.get("parent_shard_id", {}).get("S"),
        owner=item.get("owner", {}).get("S"),
        epoch=int(item.get("epoch", {}).get("N", "0")),
        checkpoint=item.get("checkpoint", {}).get("S"),
        finished=bool(item.get("finished", {}).get("BOOL", False)),
        handover_to=item.get("handover_to", {}).get("S"),
        latest_at=float(item["latest_at"]["N"]) if "latest_at" in item else None,
        begun_at=float(item["begun_at"]["N"]) if "begun_at" in item else None,
        begun=bool(item.get("begun", {}).get("BOOL", False)),
    )


def _checkpoint(item: dict[str, Any]) -> Checkpoint | None:
    """A lease item as a checkpoint; None for a lease whose shard has not begun."""
    return _lease(item).as_checkpoint()
