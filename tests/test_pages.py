"""GetRecords bodies decoded record by record give exactly what json.loads gives, or a
clear MalformedResponseError: never other records, never fewer without an error."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ddbstreams import MalformedResponseError
from ddbstreams._pages import RecordsPage

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
records = st.lists(st.dictionaries(st.text(), json_values, max_size=5), max_size=6)
formats = st.sampled_from(
    [
        {},  # json.dumps' default, as moto answers: ", " and ": "
        {"separators": (",", ":")},  # compact
        {"indent": 2},
        {"indent": "\t", "separators": (" ,", " : ")},
        {"ensure_ascii": False},
    ]
)


def decoded(body: bytes) -> tuple[list[dict[str, Any]], str | None]:
    page = RecordsPage.from_body(body)
    return list(page.records), page.next_iterator


@given(
    records=records,
    next_iterator=st.none() | st.text(),
    records_first=st.booleans(),
    other=st.dictionaries(
        st.text().filter(lambda k: k not in ("Records", "NextShardIterator")), json_values
    ),
    dump_format=formats,
)
def test_records_and_next_iterator_equal_json_loads(
    records: list[dict[str, Any]],
    next_iterator: str | None,
    records_first: bool,
    other: dict[str, Any],
    dump_format: dict[str, Any],
) -> None:
    members: dict[str, Any] = {"Records": records} if records_first else {}
    members.update(other)
    if next_iterator is not None:
        members["NextShardIterator"] = next_iterator
    members.setdefault("Records", records)
    body = json.dumps(members, **dump_format).encode()
    assert decoded(body) == (records, next_iterator)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"Records": []}', ([], None)),
        (b' \n{ "Records" : [ ] , "NextShardIterator" : "n" } \n', ([], "n")),
        (b'{"NextShardIterator":"n","Records":[{"a":1},{"b":2}]}', ([{"a": 1}, {"b": 2}], "n")),
    ],
)
def test_edge_shapes(body: bytes, expected: tuple[list[dict[str, Any]], str | None]) -> None:
    assert decoded(body) == expected


def test_next_iterator_after_the_records_is_known_once_they_are_taken() -> None:
    page = RecordsPage.from_body(b'{"Records": [{"a": 1}], "NextShardIterator": "n"}')
    assert next(page.records) == {"a": 1}
    assert next(page.records, None) is None
    assert page.next_iterator == "n"


VALID = json.dumps(
    {"NextShardIterator": "n", "Records": [{"eventID": str(n), "n": n} for n in range(3)]}
).encode()


@pytest.mark.parametrize("cut", range(len(VALID)))
def test_a_body_cut_short_anywhere_is_an_error_after_the_complete_records(cut: int) -> None:
    page = RecordsPage.from_body(VALID[:cut])
    taken: list[dict[str, Any]] = []
    with pytest.raises(MalformedResponseError, match="not a valid page"):
        taken.extend(page.records)  # keeps the records taken before the error
    assert taken == json.loads(VALID)["Records"][: len(taken)]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[]", "expected '{' at character 0"),
        (b'{"Records": [{"a": 1},]}', "expected a value at character"),
        (b'{"Records": [{"a": 1} {"b": 2}]}', "expected ',' or ']' at character"),
        (b'{"Records": []} x', "extra data after character"),
        (b'{"Records" []}', "expected a member name and ':'"),
        (b'{"Records": [], }', "expected a value at character"),
        (b'{"Records": ["\xff"]}', "can't decode byte 0xff"),
        (b'{"Records": [{"a": tru}]}', "expected a value at character"),
        (b"{}", "no Records list"),
        (b'{"NextShardIterator": "n"}', "no Records list"),
        (b'{"Records": {}, "NextShardIterator": "n"}', "no Records list"),
    ],
)
def test_malformed_bodies_name_what_is_wrong(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedResponseError, match=reason.replace("[", r"\[")):
        list(RecordsPage.from_body(body).records)


NO_RECORDS = "the answer has no Records list"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({}, f"{NO_RECORDS} and no NextShardIterator"),
        ({"ResponseMetadata": {"HTTPStatusCode": 200}}, f"{NO_RECORDS} and no NextShardIterator"),
        ({"NextShardIterator": "n"}, NO_RECORDS),
        ({"Records": None}, f"{NO_RECORDS} and no NextShardIterator"),
    ],
)
def test_a_decoded_answer_without_records_is_malformed_not_a_shard_end(
    answer: dict[str, Any], reason: str
) -> None:
    # botocore parses a cut or HTML 200 body into {}: that must never read as a shard's end.
    with pytest.raises(MalformedResponseError) as caught:
        RecordsPage.from_response(answer)
    assert (
        str(caught.value) == f"GetRecords answered with a body that is not a valid page: {reason}"
    )


def test_a_decoded_answer_is_served_as_it_is() -> None:
    answer = {"Records": [{"a": 1}], "NextShardIterator": "n"}
    page = RecordsPage.from_response(answer)
    assert list(page.records) == [{"a": 1}]
    assert page.next_iterator == "n"
