"""GetRecords pages: records taken one at a time, each decoded just before it is handled.

``json.loads`` of a whole 1000-record body builds every record's objects before the first
one is handled: megabytes that fall out of the CPU caches before the handler reaches them
and that set off the garbage collector's full collections while they live. Decoding one
record at a time keeps a single record's objects alive: in the record-path benchmark that is
1.7 to 5.1 times the records/s of ``json.loads`` of the whole body (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator, Iterator, Mapping
from json.scanner import make_scanner
from typing import Any

from ._errors import MalformedResponseError

# Decodes one JSON value at a position of a string: json.loads' own C scanner.
# (typeshed types its argument as a scanner, with a TODO; json passes its decoder, as here.)
_scan_value = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _skip_whitespace(text: str, pos: int) -> int:
    """Where the first character at or after ``pos`` that is not JSON whitespace is."""
    match = _WHITESPACE.match(text, pos)
    return match.end() if match else pos


class RecordsPage:
    """One ``GetRecords`` answer: its records (wire form), in order, then where to go on.

    Take records from the ``records`` iterator in order. ``next_iterator`` is known once
    ``records`` is exhausted: a body may put ``NextShardIterator`` after its records.
    ``size`` is the answer's size in bytes (its body; for an answer decoded elsewhere, the
    sum of its records' ``SizeBytes``).
    """

    __slots__ = ("_fields", "records", "size")

    def __init__(
        self, records: Iterator[dict[str, Any]], fields: Mapping[str, Any], size: int = 0
    ) -> None:
        self.records = records
        self._fields = fields
        self.size = size

    @classmethod
    def from_response(cls, response: Mapping[str, Any]) -> RecordsPage:
        """A page from an already decoded answer (a simulator's, or botocore's).

        botocore turns a 200 answer whose body is cut or not JSON into ``{}``: an answer
        without ``Records`` is malformed, never the end of a shard.
        """
        records = response.get("Records")
        if not isinstance(records, list):
            raise _malformed(
                "the answer has no Records list"
                + ("" if "NextShardIterator" in response else " and no NextShardIterator")
            )
        return cls(iter(records), response, _size_of(records))

    @classmethod
    def from_body(cls, body: bytes) -> RecordsPage:
        """A page whose records are decoded from the raw JSON body as they are taken."""
        fields: dict[str, Any] = {}
        return cls(_decode_records(body, fields), fields, len(body))

    @property
    def next_iterator(self) -> str | None:
        """The iterator of the next page; ``None`` once the shard is closed and read."""
        iterator: str | None = self._fields.get("NextShardIterator")
        return iterator


def _decode_records(body: bytes, fields: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield the records of a GetRecords body one by one; its other members go to ``fields``."""
    scan, skip = _scan_value, _skip_whitespace
    saw_records = False
    try:
        text = body.decode("utf-8")
        pos = skip(text, 0)
        if text[pos] != "{":
            raise ValueError(f"expected '{{' at character {pos}")
        pos = skip(text, pos + 1)
        if text[pos] != "}":
            while True:
                name, pos = scan(text, pos)
                pos = skip(text, pos)
                if not isinstance(name, str) or text[pos] != ":":
                    raise ValueError(f"expected a member name and ':' before character {pos}")
                pos = skip(text, pos + 1)
                if name == "Records" and text[pos] == "[":
                    saw_records = True
                    pos = yield from _records_of_list(text, pos)
                else:
                    fields[name], pos = scan(text, pos)
                pos = skip(text, pos)
                if text[pos] == "}":
                    break
                if text[pos] != ",":
                    raise ValueError(f"expected ',' or '}}' at character {pos}")
                pos = skip(text, pos + 1)
        if skip(text, pos + 1) != len(text):
            raise ValueError(f"extra data after character {pos}")
        if not saw_records:  # a shard's end still answers "Records": []
            raise ValueError("the answer has no Records list")
    except StopIteration as exc:  # how the scanner says it found no value
        raise _malformed(f"expected a value at character {exc.value}") from exc
    except IndexError as exc:
        raise _malformed("the body ends too early") from exc
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError too
        raise _malformed(str(exc)) from exc


def _records_of_list(text: str, pos: int) -> Generator[dict[str, Any], None, int]:
    """Yield the elements of the JSON list at ``pos`` one by one; return where it ends."""
    scan, skip = _scan_value, _skip_whitespace
    pos = skip(text, pos + 1)
    if text[pos] == "]":
        return pos + 1
    try:
        while True:
            record, pos = scan(text, pos)
            yield record
            if text[pos] != ",":  # whitespace, or the end of the list
                pos = skip(text, pos)
                if text[pos] == "]":
                    return pos + 1
                if text[pos] != ",":
                    raise ValueError(f"expected ',' or ']' at character {pos}")
            pos += 1
            if text[pos] == " ":  # json.dumps' ", " (moto's answers): skipped cheaply
                pos += 1
            if text[pos] != "{":
                pos = skip(text, pos)
    except StopIteration as exc:  # a generator may not let StopIteration out (PEP 479)
        raise ValueError(f"expected a value at character {exc.value}") from None


def _size_of(records: list[Any]) -> int:
    """The sum of the records' ``SizeBytes`` (what a decoded answer says of its size)."""
    size = 0
    for record in records:
        stream = record.get("dynamodb") if isinstance(record, dict) else None
        value = stream.get("SizeBytes") if isinstance(stream, dict) else None
        if isinstance(value, int):
            size += value
    return size


def _malformed(reason: str) -> MalformedResponseError:
    return MalformedResponseError(
        f"GetRecords answered with a body that is not a valid page: {reason}"
    )
