"""Failed batches as JSON documents: encoding, splitting into messages, and back."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from ._errors import FailedBatchFormatError
from ._policies import FailedBatch
from ._records import Record

FORMAT = "ddbstreams.failed-batch/1"
RECORD_FORMAT = "ddbstreams.record/1"  # one record too large for a message, stored in S3
POINTER = "ddbstreams.s3_object"  # a records entry that stands for a record stored in S3

_FIELDS = (
    "reason",
    "attempts",
    "error_type",
    "error_message",
    "traceback",
    "stream_arn",
    "shard_id",
    "first_sequence_number",
    "last_sequence_number",
    "first_attempt_at",
    "failed_at",
)
_REASONS = ("max_attempts", "max_record_age")


def dumps(value: Any) -> str:
    """Compact, ASCII-only JSON: what every destination writes (its length is its size)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def wire(value: Any) -> Any:
    """A record's raw value in its wire form: botocore's own parse of a GetRecords answer
    (the fallback path) holds ``datetime`` (ApproximateCreationDateTime) and ``bytes``
    (B, BS); the wire has epoch seconds and base64 text."""
    if isinstance(value, dict):
        return {key: wire(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [wire(item) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime):
        return value.timestamp()
    return value


def to_json(batch: FailedBatch) -> dict[str, Any]:
    """The failed-batch document of ``batch`` (every field but ``error``)."""
    document: dict[str, Any] = {"format": FORMAT}
    for name in _FIELDS:
        document[name] = getattr(batch, name)
    document["records"] = [wire(record.raw) for record in batch.records]
    return document


def batch_id(batch: FailedBatch) -> str:
    """Names one failed batch, the same on every try to send it (so that parts sent twice
    are recognised as the same part)."""
    key = "|".join(
        (
            batch.stream_arn,
            batch.shard_id,
            batch.first_sequence_number,
            batch.last_sequence_number,
            repr(batch.failed_at),
        )
    )
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def check_document(document: Any, where: str) -> Mapping[str, Any]:
    """``document`` if it is a failed-batch document, else a :class:`FailedBatchFormatError`."""
    if not isinstance(document, Mapping) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, Mapping) else type(document)
        raise FailedBatchFormatError(
            f"{where} is not a failed batch written by ddbstreams (format {found!r}; "
            f"expected {FORMAT!r})"
        )
    missing = [name for name in (*_FIELDS, "records") if name not in document]
    if missing or document["reason"] not in _REASONS or not isinstance(document["records"], list):
        raise FailedBatchFormatError(
            f"{where} is a damaged failed-batch document (missing or invalid: "
            f"{', '.join(missing) or 'reason or records'})"
        )
    return document


def from_json(
    document: Mapping[str, Any],
    *,
    fetch: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
    where: str = "the document",
) -> FailedBatch:
    """The :class:`FailedBatch` of a document; ``fetch`` reads a record stored in S3."""
    check_document(document, where)
    shard_id = str(document["shard_id"])
    raws: list[dict[str, Any]] = []
    for entry in document["records"]:
        if isinstance(entry, Mapping) and POINTER in entry:
            if fetch is None:
                raise FailedBatchFormatError(
                    f"{where} has records stored in S3 (bucket "
                    f"{entry[POINTER].get('bucket')!r}): pass an S3 client to read them"
                )
            raws.append(fetch(entry[POINTER]))
        elif isinstance(entry, dict):
            raws.append(entry)
        else:
            raise FailedBatchFormatError(f"{where} holds a record that is not an object")
    return FailedBatch(
        records=tuple(Record(raw, shard_id) for raw in raws),
        reason=document["reason"],
        attempts=int(document["attempts"]),
        error_type=str(document["error_type"]),
        error_message=str(document["error_message"]),
        traceback=str(document["traceback"]),
        stream_arn=str(document["stream_arn"]),
        shard_id=shard_id,
        first_sequence_number=str(document["first_sequence_number"]),
        last_sequence_number=str(document["last_sequence_number"]),
        first_attempt_at=(
            None if document["first_attempt_at"] is None else float(document["first_attempt_at"])
        ),
        failed_at=float(document["failed_at"]),
    )


def sequence_number(entry: Mapping[str, Any]) -> str:
    """The sequence number of a records entry: a wire record or a pointer to one."""
    if POINTER in entry:
        return str(entry["sequence_number"])
    return str(entry["dynamodb"]["SequenceNumber"])


def clip(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, its start and end kept."""
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f"{text[:keep]}\n[... {len(text) - 2 * keep} characters cut ...]\n{text[-keep:]}"


def split(
    batch: FailedBatch,
    limit: int,
    store: Callable[[dict[str, Any], str], dict[str, Any]] | None,
    clip_to: int,
) -> list[str]:
    """Message bodies of at most ``limit`` characters (ASCII: bytes) that together hold the
    batch: each a failed-batch document with a slice of the records and ``batch_id``,
    ``part`` (from 1) and ``parts``. A record too large for any message is handed to
    ``store`` (raw record, batch id) which returns the pointer entry to send instead;
    without ``store`` that raises :class:`OversizeRecord`. Error texts longer than
    ``clip_to`` are cut in the middle."""
    document = to_json(batch)
    records = document.pop("records")
    document["error_message"] = clip(document["error_message"], clip_to)
    document["traceback"] = clip(document["traceback"], clip_to)
    document["batch_id"] = ident = batch_id(batch)
    widest = {"first_sequence_number": "9" * 40, "last_sequence_number": "9" * 40}
    overhead = len(_head({**document, **widest, "part": 99_999, "parts": 99_999}, "")) + 2
    budget = limit - overhead
    parts: list[list[tuple[dict[str, Any], str]]] = [[]]
    size = 0
    for raw in records:
        text = dumps(raw)
        if len(text) > budget:
            if store is None:
                raise OversizeRecord(len(text) + overhead, sequence_number(raw))
            raw = store(raw, ident)
            text = dumps(raw)
        extra = len(text) + (1 if parts[-1] else 0)
        if parts[-1] and size + extra > budget:
            parts.append([])
            size, extra = 0, len(text)
        parts[-1].append((raw, text))
        size += extra
    bodies = []
    for number, part in enumerate(parts, 1):
        head = {**document, "part": number, "parts": len(parts)}
        if part:
            head["first_sequence_number"] = sequence_number(part[0][0])
            head["last_sequence_number"] = sequence_number(part[-1][0])
        bodies.append(_head(head, ",".join(text for _, text in part)))
    return bodies


def _head(document: dict[str, Any], records: str) -> str:
    """The document's JSON with ``records`` (already JSON, comma separated) as its last member."""
    return f'{dumps(document)[:-1]},"records":[{records}]}}'


class OversizeRecord(Exception):
    """A record that does not fit in one message, and there is no S3 bucket to put it in."""

    def __init__(self, size: int, sequence_number: str) -> None:
        super().__init__(f"record {sequence_number} needs a message of {size} bytes")
        self.size = size
        self.sequence_number = sequence_number


def join(parts: Iterable[Mapping[str, Any]], where: str) -> dict[str, Any]:
    """One document from all the parts of a split batch (any order, each part once)."""
    by_number = {int(part["part"]): part for part in parts}
    count = {int(part["parts"]) for part in by_number.values()}
    if len(count) != 1 or sorted(by_number) != list(range(1, count.pop() + 1)):
        raise FailedBatchFormatError(f"{where}: parts {sorted(by_number)} do not make a batch")
    ordered = [by_number[number] for number in sorted(by_number)]
    whole = {
        key: value
        for key, value in ordered[0].items()
        if key not in ("part", "parts", "batch_id", "records")
    }
    whole["records"] = [entry for part in ordered for entry in part["records"]]
    whole["last_sequence_number"] = ordered[-1]["last_sequence_number"]
    return whole
