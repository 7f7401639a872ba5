"""Lambda event filters (ddbstreams._filters): every example AWS documents, malformed patterns,
the wire forms of both decoding paths, and a property test against moto's EventBridge matcher.

The examples are quoted from these pages (patterns and events as printed there):

- LAMBDA: https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html
- LAMBDA_2022: the same page as of 2022, awsdocs/aws-lambda-developer-guide,
  doc_source/invocation-eventfiltering.md (Kinesis and multi-level examples since removed)
- LAMBDA_DDB: https://docs.aws.amazon.com/lambda/latest/dg/with-ddb-filtering.html
- EB_PATTERNS: https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns.html
- EB_CONTENT: https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-content-based-filtering.html
- EB_NULL: https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-null-values.html
- EB_ARRAYS: https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-arrays.html
- CDK: https://docs.aws.amazon.com/cdk/api/v2/docs/aws-cdk-lib.aws_lambda.FilterRule.html
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FAST
from ddbstreams import ConfigurationError, StreamConsumer
from ddbstreams._filters import MAX_PATTERN_LENGTH, compile_filter
from ddbstreams.testing import RecordCollector, create_order_table


def matches(pattern: Any, event: dict[str, Any]) -> bool:
    return compile_filter(pattern)(event)


# --- LAMBDA_DDB: the DynamoDB page ----------------------------------------------------------

# The page's example record (its "DynamoDB event").
DDB_RECORD: dict[str, Any] = {
    "eventID": "1",
    "eventVersion": "1.0",
    "dynamodb": {
        "ApproximateCreationDateTime": "1678831218.0",
        "Keys": {"CustomerName": {"S": "AnyCompany Industries"}},
        "NewImage": {
            "AccountManager": {"S": "Pat Candella"},
            "PaymentTerms": {"S": "60 days"},
            "CustomerName": {"S": "AnyCompany Industries"},
        },
        "SequenceNumber": "111",
        "SizeBytes": 26,
        "StreamViewType": "NEW_IMAGE",
    },
}


def ddb_record(**changes: Any) -> dict[str, Any]:
    """DDB_RECORD with parts of its ``dynamodb`` member replaced (None removes one)."""
    record = copy.deepcopy(DDB_RECORD)
    for name, value in changes.items():
        if value is None:
            record["dynamodb"].pop(name, None)
        else:
            record["dynamodb"][name] = value
    return record


def test_ddb_filtering_with_table_keys() -> None:
    # "Filtering with table keys": the FilterCriteria exactly as the page prints it.
    criteria = {
        "Filters": [
            {
                "Pattern": '{ "dynamodb" : { "Keys" : { "CustomerName" : { "S" : '
                '[ "AnyCompany Industries" ] } } } }'
            }
        ]
    }
    assert matches(criteria, DDB_RECORD)
    other = ddb_record(Keys={"CustomerName": {"S": "Example Corp"}})
    assert not matches(criteria, other)
    # The console form of the same filter: the pattern only.
    console = (
        '{ "dynamodb" : { "Keys" : { "CustomerName" : { "S" : [ "AnyCompany Industries" ] } } } }'
    )
    assert matches(console, DDB_RECORD)
    assert not matches(console, other)


def test_ddb_filtering_with_table_attributes() -> None:
    pattern = (
        '{ "dynamodb" : { "NewImage" : { "AccountManager" : { "S" : '
        '[ "Pat Candella", "Shirley Rodriguez" ] } } } }'
    )
    assert matches(pattern, DDB_RECORD)
    shirley = ddb_record(NewImage={"AccountManager": {"S": "Shirley Rodriguez"}})
    assert matches(pattern, shirley)
    terry = ddb_record(NewImage={"AccountManager": {"S": "Terry Whitlock"}})
    assert not matches(pattern, terry)
    assert not matches(pattern, ddb_record(NewImage=None))  # a KEYS_ONLY record


def test_ddb_filtering_with_boolean_expressions_and_the_repeated_dynamodb_key() -> None:
    # The page writes the AND as two "dynamodb" members in one object; both must hold.
    pattern = (
        '{ "dynamodb" : { "NewImage" : { "AccountManager" : { "S" : [ "Pat Candella" ] } } } , '
        '"dynamodb" : { "OldImage" : { "AccountManager" : { "S" : [ "Terry Whitlock" ] } } } }'
    )
    both = ddb_record(OldImage={"AccountManager": {"S": "Terry Whitlock"}})
    assert matches(pattern, both)
    assert not matches(pattern, DDB_RECORD)  # no OldImage
    only_old = ddb_record(
        NewImage={"AccountManager": {"S": "Shirley Rodriguez"}},
        OldImage={"AccountManager": {"S": "Terry Whitlock"}},
    )
    assert not matches(pattern, only_old)


def test_ddb_numbers_are_strings_and_numeric_operators_are_refused() -> None:
    # "DynamoDB event filtering doesn't support the use of numeric operators ... these
    # parameters are converted to strings in the JSON record object."
    record = ddb_record(NewImage={"Salary": {"N": "60000"}})
    assert matches({"dynamodb": {"NewImage": {"Salary": {"N": ["60000"]}}}}, record)
    with pytest.raises(ConfigurationError) as caught:
        compile_filter({"dynamodb": {"NewImage": {"Salary": {"N": [{"numeric": [">", 50000]}]}}}})
    message = str(caught.value)
    assert "pattern at dynamodb.NewImage.Salary.N[0]" in message
    assert "strings on the wire" in message and "numeric operators" in message
    with pytest.raises(ConfigurationError, match=r'the number 60000 can never match.*\("60000"\)'):
        compile_filter({"dynamodb": {"NewImage": {"Salary": {"N": [60000]}}}})
    with pytest.raises(ConfigurationError, match="NS values as strings"):
        compile_filter({"dynamodb": {"OldImage": {"S": {"NS": [{"anything-but": [1, 2]}]}}}})


def test_ddb_exists_only_works_on_leaf_nodes() -> None:
    item = {
        "UserID": {"S": "12345"},
        "Name": {"S": "John Doe"},
        "Organizations": {"L": [{"S": "Sales"}, {"S": "Marketing"}, {"S": "Support"}]},
    }
    record = ddb_record(NewImage=item)
    # "this filter pattern would never return a match because "Organizations" is not a leaf"
    never = '{ "dynamodb" : { "NewImage" : { "Organizations" : [ { "exists": true } ] } } }'
    assert not matches(never, record)
    proper = (
        '{ "dynamodb" : { "NewImage" : {"Organizations": {"L": {"S": '
        '[ {"exists": true } ] } } } } }'
    )
    assert matches(proper, record)
    assert not matches(proper, ddb_record(NewImage={"UserID": {"S": "12345"}}))
    # And values inside the list are reached the same way.
    sales = {"dynamodb": {"NewImage": {"Organizations": {"L": {"S": ["Support"]}}}}}
    assert matches(sales, record)


def test_ddb_json_format_a_non_json_pattern_is_refused() -> None:
    # "Lambda throws an exception at the time of the event source mapping creation or update."
    with pytest.raises(ConfigurationError, match="is not valid JSON"):
        compile_filter({"Filters": [{"Pattern": "dynamodb.Keys.CustomerName = 'x'"}]})


# --- LAMBDA: the general page, and its 2022 version -------------------------------------------

LAMBDA_TABLE = [
    # (rule, event it matches, event it does not match): the "Filter rule syntax" table.
    ({"UserID": [None]}, {"UserID": None}, {"UserID": "u-1"}),
    ({"LastName": [""]}, {"LastName": ""}, {"LastName": "Doe"}),
    ({"Name": ["Alice"]}, {"Name": "Alice"}, {"Name": "alice"}),
    ({"Name": [{"equals-ignore-case": "alice"}]}, {"Name": "Alice"}, {"Name": "Alicia"}),
    (
        {"Location": ["New York"], "Day": ["Monday"]},
        {"Location": "New York", "Day": "Monday"},
        {"Location": "New York", "Day": "Tuesday"},
    ),
    ({"PaymentType": ["Credit", "Debit"]}, {"PaymentType": "Debit"}, {"PaymentType": "Cash"}),
    (
        {"$or": [{"Location": ["New York"]}, {"Day": ["Monday"]}]},
        {"Location": "Boston", "Day": "Monday"},
        {"Location": "Boston", "Day": "Tuesday"},
    ),
    ({"Weather": [{"anything-but": ["Raining"]}]}, {"Weather": "Sunny"}, {"Weather": "Raining"}),
    ({"Price": [{"numeric": ["=", 100]}]}, {"Price": 100}, {"Price": 101}),
    ({"Price": [{"numeric": [">", 10, "<=", 20]}]}, {"Price": 20}, {"Price": 10}),
    ({"ProductName": [{"exists": True}]}, {"ProductName": "Pen"}, {"Product": "Pen"}),
    ({"ProductName": [{"exists": False}]}, {"Product": "Pen"}, {"ProductName": "Pen"}),
    ({"Region": [{"prefix": "us-"}]}, {"Region": "us-east-1"}, {"Region": "eu-west-1"}),
    ({"FileName": [{"suffix": ".png"}]}, {"FileName": "cat.png"}, {"FileName": "cat.jpg"}),
]


@pytest.mark.parametrize(("rule", "matching", "other"), LAMBDA_TABLE)
def test_lambda_filter_rule_syntax_table(
    rule: dict[str, Any], matching: dict[str, Any], other: dict[str, Any]
) -> None:
    assert matches(rule, matching)
    assert not matches(rule, other)


def test_lambda_numbers_compare_by_their_written_form() -> None:
    # "For numbers, Lambda also uses string representation. For example, 300, 300.0, and
    # 3.0e2 are not considered equal."
    assert matches({"n": [300]}, {"n": 300})
    assert not matches({"n": [300]}, {"n": 300.0})
    assert not matches('{"n": [3.0e2]}', {"n": 300})
    assert not matches({"n": [1]}, {"n": True})  # nor is a boolean a number
    assert not matches({"n": [True]}, {"n": 1})


def test_lambda_exists_does_not_match_an_intermediate_node() -> None:
    event = {
        "person": {
            "name": "John Doe",
            "age": 30,
            "address": {"street": "123 Main St", "city": "Anytown", "country": "USA"},
        }
    }
    assert not matches({"person": {"address": [{"exists": True}]}}, event)
    assert matches({"person": {"address": {"city": [{"exists": True}]}}}, event)


def test_lambda_multi_level_filtering_on_a_sort_key() -> None:
    record = {"dynamodb": {"Keys": {"ID": {"S": "ABCD"}, "Number": {"N": "1234"}}}}
    criteria = {
        "Filters": [{"Pattern": '{ "dynamodb": { "Keys": { "Number": { "N": [ "4567" ] } } } }'}]
    }
    assert not matches(criteria, record)
    record["dynamodb"]["Keys"]["Number"]["N"] = "4567"
    assert matches(criteria, record)


def test_lambda_console_and_cli_example() -> None:
    # Console: { "Metadata" : [ 1, 2 ] }; CLI: --filter-criteria '{"Filters": [...]}'.
    cli = json.loads('{"Filters": [{"Pattern": "{ \\"Metadata\\" : [ 1, 2 ]}"}]}')
    for criteria in ({"Metadata": [1, 2]}, '{ "Metadata" : [ 1, 2 ] }', cli):
        assert matches(criteria, {"Metadata": 2})
        assert not matches(criteria, {"Metadata": 3})
        assert not matches(criteria, {"Metadata": "1"})


def test_lambda_2022_kinesis_and_dynamodb_examples() -> None:
    kinesis = {"partitionKey": "1", "data": {"Location": "Los Angeles", "Temperature": 55}}
    criteria = {
        "Filters": [
            {"Pattern": '{ "partitionKey": [ "1" ], "data": { "Location": [ "Los Angeles" ] }}'}
        ]
    }
    assert matches(criteria, kinesis)
    assert not matches(criteria, {**kinesis, "partitionKey": "2"})
    temperature = {"data": {"Temperature": [{"numeric": [">", 50, "<=", 60]}]}}
    assert matches(temperature, kinesis)
    assert matches(temperature, {"data": {"Temperature": 60}})
    assert not matches(temperature, {"data": {"Temperature": 50}})
    assert not matches(temperature, {"data": {"Temperature": "55"}})  # a string is no number
    record = {
        "dynamodb": {
            "Keys": {"Id": {"N": "101"}},
            "NewImage": {"Message": {"S": "New item!"}, "Id": {"N": "101"}},
            "SequenceNumber": "111",
            "SizeBytes": 26,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
    }
    assert matches({"dynamodb": {"Keys": {"Id": {"N": ["101"]}}}}, record)
    assert not matches({"dynamodb": {"Keys": {"Id": {"N": ["102"]}}}}, record)


def test_cdk_filter_rule_example_boolean_attribute() -> None:
    pattern = {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"id": {"BOOL": [True]}}}}
    record = {"eventName": "INSERT", "dynamodb": {"NewImage": {"id": {"BOOL": True}}}}
    assert matches(pattern, record)
    assert not matches(pattern, {**record, "eventName": "MODIFY"})
    assert not matches(
        pattern, {"eventName": "INSERT", "dynamodb": {"NewImage": {"id": {"BOOL": False}}}}
    )
    assert not matches(
        pattern, {"eventName": "INSERT", "dynamodb": {"NewImage": {"id": {"S": "true"}}}}
    )


# --- EventBridge's pages --------------------------------------------------------------------

EC2_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "111122223333",
    "time": "2017-12-22T18:43:48Z",
    "region": "us-west-1",
    "resources": ["arn:aws:ec2:us-west-1:123456789012:instance/i-1234567890abcdef0"],
    "detail": {"instance-id": "i-1234567890abcdef0", "state": "terminated"},
}


def test_eb_patterns_ec2_termination() -> None:
    pattern = {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Instance State-change Notification"],
        "detail": {"state": ["terminated"]},
    }
    assert matches(pattern, EC2_EVENT)
    assert not matches(pattern, {**EC2_EVENT, "detail": {"state": "running"}})
    assert matches({"source": ["aws.ec2", "aws.fargate"]}, EC2_EVENT)  # "Match Values"


def test_eb_patterns_field_and_value_matching() -> None:
    autoscaling = {
        "version": "0",
        "detail-type": "EC2 Instance Launch Successful",
        "source": "aws.autoscaling",
        "resources": [],
        "detail": {"eventVersion": "", "responseElements": None},
    }
    pattern = {
        "source": ["aws.autoscaling"],
        "detail-type": ["EC2 Instance Launch Successful"],
        "detail": {"responseElements": [None]},
    }
    assert matches(pattern, autoscaling)
    macie = {
        "detail-type": "Macie Finding",
        "source": "aws.macie",
        "detail": {"severity": {"score": 1, "description": "Low"}, "count": 2},
    }
    macie_pattern = {
        "source": ["aws.macie"],
        "detail-type": ["Macie Finding"],
        "detail": {"severity": {"score": [1]}, "count": [2]},
    }
    assert matches(macie_pattern, macie)
    assert not matches(macie_pattern, {**macie, "detail": {**macie["detail"], "count": 3}})


def test_eb_null_values_and_empty_strings_are_not_interchangeable() -> None:
    event = {"detail": {"eventVersion": "", "responseElements": None}}
    assert matches({"detail": {"eventVersion": [""]}}, event)
    assert matches({"detail": {"responseElements": [None]}}, event)
    assert not matches({"detail": {"eventVersion": [None]}}, event)
    assert not matches({"detail": {"responseElements": [""]}}, event)
    assert not matches({"detail": {"missing": [None]}}, event)


def test_eb_arrays_match_when_the_intersection_is_not_empty() -> None:
    pattern = {
        "resources": [
            "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
            "arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f",
            "arn:aws:ec2:us-east-1:444455556666:instance/i-b188560f",
        ]
    }
    event = {
        "resources": [
            "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:eb56d16b-bbf0-401d-"
            "b893-d5978ed4a025:autoScalingGroupName/ASGTerminate",
            "arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f",
        ]
    }
    assert matches(pattern, event)
    assert not matches(pattern, {"resources": event["resources"][:1]})


def test_eb_prefix_and_suffix() -> None:
    assert matches({"time": [{"prefix": "2017-10-02"}]}, {"time": "2017-10-02T18:43:48Z"})
    assert not matches({"time": [{"prefix": "2017-10-02"}]}, {"time": "2017-10-03T18:43:48Z"})
    assert matches({"FileName": [{"suffix": ".png"}]}, {"FileName": "image.png"})
    assert not matches({"FileName": [{"suffix": ".png"}]}, {"FileName": "image.PNG"})
    assert not matches({"n": [{"prefix": "1"}]}, {"n": 12})  # "only work on string values"


def test_eb_anything_but() -> None:
    state = {"detail": {"state": [{"anything-but": "initializing"}]}}
    assert matches(state, {"detail": {"state": "running"}})
    assert not matches(state, {"detail": {"state": "initializing"}})
    assert not matches(state, {"detail": {}})  # the field must be there
    limit = {"detail": {"x-limit": [{"anything-but": 123}]}}
    assert matches(limit, {"detail": {"x-limit": 124}})
    assert not matches(limit, {"detail": {"x-limit": 123}})
    states = {"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}}
    assert matches(states, {"detail": {"state": "running"}})
    assert not matches(states, {"detail": {"state": "overloaded"}})
    limits = {"detail": {"x-limit": [{"anything-but": [100, 200, 300]}]}}
    assert matches(limits, {"detail": {"x-limit": 150}})
    assert not matches(limits, {"detail": {"x-limit": 200}})
    init = {"detail": {"state": [{"anything-but": {"prefix": "init"}}]}}
    assert matches(init, {"detail": {"state": "running"}})
    assert not matches(init, {"detail": {"state": "initializing"}})
    # The "anything-but suffix" (EventBridge's event-ruler form).
    suffix = {"detail": {"file": [{"anything-but": {"suffix": ".tmp"}}]}}
    assert matches(suffix, {"detail": {"file": "a.txt"}})
    assert not matches(suffix, {"detail": {"file": "a.tmp"}})


def test_eb_numeric_matching() -> None:
    pattern = {
        "detail": {
            "c-count": [{"numeric": [">", 0, "<=", 5]}],
            "d-count": [{"numeric": ["<", 10]}],
            "x-limit": [{"numeric": ["=", 3.018e2]}],
        }
    }
    assert matches(pattern, {"detail": {"c-count": 5, "d-count": 9.5, "x-limit": 301.8}})
    assert not matches(pattern, {"detail": {"c-count": 0, "d-count": 9, "x-limit": 301.8}})
    assert not matches(pattern, {"detail": {"c-count": 1, "d-count": 10, "x-limit": 301.8}})
    assert not matches(pattern, {"detail": {"c-count": 1, "d-count": 9, "x-limit": 301}})


def test_eb_exists_matching() -> None:
    present = {
        "version": "0",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "detail": {"instance-id": "i-abcd1111", "state": "pending"},
    }
    absent = {
        "detail-type": ["EC2 Instance State-change Notification"],
        "detail": {"c-count": {"c1": 100}},
    }
    assert matches({"detail": {"state": [{"exists": True}]}}, present)
    assert not matches({"detail": {"state": [{"exists": True}]}}, absent)
    # 2022 page: exists false matches a missing field, and one that is not a leaf.
    assert matches({"detail": {"c-count": [{"exists": False}]}}, present)
    assert matches({"detail": {"c-count": [{"exists": False}]}}, absent)


def test_eb_equals_ignore_case() -> None:
    pattern = {"detail-type": [{"equals-ignore-case": "ec2 instance state-change notification"}]}
    event = {"detail-type": ["EC2 Instance State-change Notification"], "detail": {}}
    assert matches(pattern, event)
    assert not matches(pattern, {"detail-type": "EC2 Instance State-change"})


def test_eb_complex_example() -> None:
    pattern = {
        "time": [{"prefix": "2017-10-02"}],
        "detail": {
            "state": [{"anything-but": "initializing"}],
            "c-count": [{"numeric": [">", 0, "<=", 5]}],
            "d-count": [{"numeric": ["<", 10]}],
            "x-limit": [{"anything-but": [100, 200, 300]}],
        },
    }
    event = {
        "time": "2017-10-02T10:00:00Z",
        "detail": {"state": "running", "c-count": 3, "d-count": 2, "x-limit": 150},
    }
    assert matches(pattern, event)
    assert not matches(pattern, {**event, "detail": {**event["detail"], "x-limit": 300}})
    assert not matches(pattern, {**event, "time": "2017-10-03T10:00:00Z"})


def test_eb_a_repeated_key_the_last_one_counts() -> None:
    pattern = (
        '{"detail": {"location": [ { "prefix": "us-" } ], '
        '"location": [ { "anything-but": "us-east" } ]}}'
    )
    assert matches(pattern, {"detail": {"location": "eu-west"}})  # prefix "us-" ignored
    assert not matches(pattern, {"detail": {"location": "us-east"}})


def test_eb_or_matching() -> None:
    pattern = {
        "detail": {
            "$or": [
                {"c-count": [{"numeric": [">", 0, "<=", 5]}]},
                {"d-count": [{"numeric": ["<", 10]}]},
                {"x-limit": [{"numeric": ["=", 3.018e2]}]},
            ]
        }
    }
    assert matches(pattern, {"detail": {"c-count": 3}})
    assert matches(pattern, {"detail": {"d-count": 3}})
    assert matches(pattern, {"detail": {"x-limit": 301.8}})
    assert not matches(pattern, {"detail": {"c-count": 6, "d-count": 10, "x-limit": 1}})


def test_a_list_of_patterns_passes_a_record_any_of_them_matches() -> None:
    criteria = [{"eventName": ["INSERT"]}, '{"eventName": ["REMOVE"]}']
    assert matches(criteria, {"eventName": "INSERT"})
    assert matches(criteria, {"eventName": "REMOVE"})
    assert not matches(criteria, {"eventName": "MODIFY"})
    assert matches(
        '[{"eventName": ["INSERT"]}, {"eventName": ["MODIFY"]}]', {"eventName": "MODIFY"}
    )


# --- malformed patterns ---------------------------------------------------------------------

MALFORMED = [
    # (criteria, text the ConfigurationError must contain)
    ("{not json", "pattern: is not valid JSON"),
    ('["eventName"]', "filter[0]: is not valid JSON"),
    ("42", "pattern: is a number 42; allowed: a pattern object or its JSON text"),
    ({}, "pattern: is an empty object"),
    ({"dynamodb": {}}, "pattern at dynamodb: is an empty object"),
    ({"eventName": "INSERT"}, 'pattern at eventName: is a string "INSERT"; allowed: an object'),
    ({"eventName": []}, "pattern at eventName: is an empty list; allowed: strings, numbers"),
    ({"eventName": [["INSERT"]]}, "pattern at eventName[0]: is a list"),
    ({"a": [{"prefix": "x", "suffix": "y"}]}, "pattern at a[0]: is an object"),
    ({"a": [{"contains": "x"}]}, "pattern at a[0].contains: 'contains' is not an operator"),
    ({"a": [{"wildcard": "x*"}]}, "wildcard matching is not among the operators Lambda documents"),
    ({"a": [{"cidr": "10.0.0.0/24"}]}, "cidr (IP address) matching is not among"),
    ({"a": [{"prefix": 1}]}, "pattern at a[0].prefix: is a number 1; allowed: one string"),
    ({"a": [{"suffix": ["a"]}]}, "pattern at a[0].suffix: is a list"),
    ({"a": [{"equals-ignore-case": None}]}, "pattern at a[0].equals-ignore-case: is null"),
    ({"a": [{"anything-but": []}]}, "pattern at a[0].anything-but: is an empty list"),
    ({"a": [{"anything-but": ["x", 1]}]}, "only strings or only numbers"),
    ({"a": [{"anything-but": True}]}, "pattern at a[0].anything-but: is a boolean true"),
    ({"a": [{"anything-but": {"wildcard": "x"}}]}, '{"prefix": "..."} or {"suffix": "..."}'),
    ({"a": [{"anything-but": {"prefix": ["a", "b"]}}]}, "works with a single prefix"),
    ({"a": [{"numeric": 5}]}, 'pattern at a[0].numeric: is a number 5; allowed: ["=", n]'),
    ({"a": [{"numeric": [">", 1, "<"]}]}, "pattern at a[0].numeric: is a list"),
    ({"a": [{"numeric": ["!=", 1]}]}, 'pattern at a[0].numeric[0]: is a string "!="'),
    ({"a": [{"numeric": [">", "10"]}]}, "'>' needs a JSON number after it, got a string \"10\""),
    ({"a": [{"numeric": [">", True]}]}, "needs a JSON number after it, got a boolean"),
    ({"a": [{"numeric": [">", 1, ">=", 2]}]}, "needs one lower and one upper bound"),
    ({"a": [{"numeric": ["=", 1, "<", 2]}]}, "needs one lower and one upper bound"),
    ({"a": [{"numeric": [">", 5, "<", 5]}]}, "its lower bound 5 is not below its upper bound 5"),
    ('{"a": [{"numeric": [">", NaN]}]}', "pattern at a[0].numeric[1]: is nan; allowed: finite"),
    ({"a": [float("inf")]}, "pattern at a[0]: is inf"),
    (
        {"a": [{"exists": "true"}]},
        'pattern at a[0].exists: is a string "true"; allowed: true, false',
    ),
    ({"$or": [{"a": ["x"]}]}, "pattern at $or: is a list"),
    ({"$or": [{"a": ["x"]}, "b"]}, "allowed: a list of two or more pattern objects"),
    ({"$or": [{"a": ["x"]}, {}]}, "pattern at $or[1]: is an empty object"),
    ({1: ["x"]}, "pattern: has a non-string key 1"),
    ([{"a": ["x"]}] * 6, "filter list: holds 6 filters; allowed: at most 5"),
    ([], "filter list: holds no filter; pass filter=None"),
    ({"Filters": []}, "FilterCriteria.Filters: holds no filter"),
    ({"Filters": {"Pattern": "{}"}}, "FilterCriteria.Filters: is an object; allowed: a list"),
    ({"Filters": [], "Other": 1}, "FilterCriteria: unknown member(s) Other"),
    ({"Filters": [{"pattern": "{}"}]}, "FilterCriteria.Filters[0]: is an object"),
    ({"Filters": [{"Pattern": {"a": ["x"]}}]}, "FilterCriteria.Filters[0].Pattern: is an object"),
    (
        {"Filters": [{"Pattern": '{"a": ["x"]}'}, {"Pattern": '{"a": 1}'}]},
        "FilterCriteria.Filters[1] at a: is a number 1",
    ),
    (None, "pattern: is null"),
]


@pytest.mark.parametrize(("criteria", "expected"), MALFORMED)
def test_a_malformed_pattern_is_a_configuration_error_naming_the_bad_part(
    criteria: Any, expected: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        compile_filter(criteria)
    message = str(caught.value)
    assert message.startswith("invalid filter: ")
    assert expected in message, message
    assert isinstance(caught.value, ValueError)  # ConfigurationError is one


def test_or_lists_that_multiply_past_1000_combinations_are_refused() -> None:
    eleven = [{"a": [str(i)]} for i in range(11)]
    pattern = {"x": {"$or": eleven}, "y": {"$or": eleven}, "z": {"$or": eleven}}  # 1331
    with pytest.raises(ConfigurationError, match="make 1331 combinations; allowed: at most 1000"):
        compile_filter(pattern)
    compile_filter({"x": {"$or": eleven}, "y": {"$or": eleven}})  # 121 is fine


def test_lambdas_pattern_length_limit() -> None:
    pattern = {"a": ["x" * (MAX_PATTERN_LENGTH - 20)]}
    text = json.dumps(pattern, separators=(",", ":"))
    compile_filter(pattern)
    compile_filter(text)
    long = {"a": ["x" * MAX_PATTERN_LENGTH]}
    size = len(json.dumps(long, separators=(",", ":")))
    with pytest.raises(ConfigurationError, match=f"pattern: the pattern is {size} characters long"):
        compile_filter(long)
    with pytest.raises(ConfigurationError, match=rf"filter\[0\]: the pattern is {size} characters"):
        compile_filter([json.dumps(long, separators=(",", ":"))])


# --- the wire forms of both decoding paths ---------------------------------------------------


def test_a_fallback_record_matches_as_its_wire_form_would() -> None:
    # boto3's parse (the fallback path): a datetime and bytes where the wire has an epoch
    # number and base64 text.
    created = datetime(2023, 3, 14, 22, 0, 18, tzinfo=timezone.utc)
    parsed = {
        "eventName": "INSERT",
        "dynamodb": {
            "ApproximateCreationDateTime": created,
            "NewImage": {"blob": {"B": b"\x00\xff"}, "blobs": {"BS": [b"\x01", b"\x02"]}},
        },
    }
    wire = {
        "eventName": "INSERT",
        "dynamodb": {
            "ApproximateCreationDateTime": 1678831218.0,
            "NewImage": {"blob": {"B": "AP8="}, "blobs": {"BS": ["AQ==", "Ag=="]}},
        },
    }
    patterns = [
        {"dynamodb": {"ApproximateCreationDateTime": [{"numeric": [">=", 1678831218]}]}},
        {"dynamodb": {"ApproximateCreationDateTime": [{"numeric": ["<", 1678831218]}]}},
        {"dynamodb": {"ApproximateCreationDateTime": [1678831218.0]}},
        {"dynamodb": {"NewImage": {"blob": {"B": ["AP8="]}}}},
        {"dynamodb": {"NewImage": {"blobs": {"BS": ["Ag=="]}}}},
        {"dynamodb": {"NewImage": {"blobs": {"BS": [{"prefix": "A"}]}}}},
        {"dynamodb": {"NewImage": {"blob": {"B": [{"exists": False}]}}}},
    ]
    verdicts = [matches(pattern, wire) for pattern in patterns]
    assert verdicts == [True, False, True, True, True, True, False]
    assert [matches(pattern, parsed) for pattern in patterns] == verdicts


_numbers = itertools.count(1)


@pytest.fixture
def table(dynamodb: Any) -> Iterator[str]:
    name = f"filters-{os.getpid()}-{next(_numbers)}"
    create_order_table(dynamodb, name)
    yield name
    dynamodb.delete_table(TableName=name)


@pytest.mark.local_endpoint
def test_real_records_decoded_both_ways_get_the_same_verdicts(
    local_endpoint: Any, dynamodb: Any, table: str
) -> None:
    """Records from a real server over HTTP: ddbstreams' own decoding (the fast path) and
    botocore's parse (datetimes, bytes) give every pattern the same verdict."""
    key = {"email": {"S": "a@example.com"}, "order_number": {"S": "1"}}
    dynamodb.put_item(
        TableName=table,
        Item={**key, "amount": {"N": "250"}, "blob": {"B": b"\x00\xff"}, "paid": {"BOOL": True}},
    )
    dynamodb.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET amount = :a, tags = :t",
        ExpressionAttributeValues={":a": {"N": "99"}, ":t": {"SS": ["gift", "rush"]}},
    )
    dynamodb.delete_item(TableName=table, Key=key)
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    collector = RecordCollector()
    with StreamConsumer(
        collector, stream_arn=arn, endpoint_url=local_endpoint.url, settings=replace(FAST)
    ):
        fast = [record.raw for record in collector.wait_for(3)]
    plain = boto3.client("dynamodbstreams", **local_endpoint.client_kwargs())
    shard = plain.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = plain.get_shard_iterator(
        StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    parsed = plain.get_records(ShardIterator=iterator)["Records"]
    assert isinstance(parsed[0]["dynamodb"]["ApproximateCreationDateTime"], datetime)
    assert isinstance(parsed[0]["dynamodb"]["NewImage"]["blob"]["B"], bytes)
    blob = base64.b64encode(b"\x00\xff").decode()
    patterns: list[Any] = [
        {"eventName": ["INSERT"]},
        {"eventName": [{"anything-but": "INSERT"}]},
        {"dynamodb": {"NewImage": {"amount": {"N": ["99"]}}}},
        {"dynamodb": {"OldImage": {"amount": {"N": [{"prefix": "2"}]}}}},
        {"dynamodb": {"NewImage": {"blob": {"B": [blob]}}}},
        {"dynamodb": {"NewImage": {"paid": {"BOOL": [True]}}}},
        {"dynamodb": {"NewImage": {"tags": {"SS": ["rush"]}}}},
        {"dynamodb": {"NewImage": [{"exists": False}]}},
        {"dynamodb": {"NewImage": {"email": {"S": [{"exists": False}]}}}},
        {"dynamodb": {"ApproximateCreationDateTime": [{"numeric": [">", 1.6e9]}]}},
        {"dynamodb": {"SizeBytes": [{"numeric": [">", 0]}]}},
        {"dynamodb": {"Keys": {"email": {"S": [{"equals-ignore-case": "A@EXAMPLE.COM"}]}}}},
        {
            "$or": [
                {"eventName": ["REMOVE"]},
                {"dynamodb": {"NewImage": {"tags": {"SS": ["gift"]}}}},
            ]
        },
    ]
    expected = [
        [True, False, False],
        [False, True, True],
        [False, True, False],
        [False, True, False],
        [True, True, False],
        [True, True, False],
        [False, True, False],
        [True, True, True],  # NewImage is no leaf: "exists": false holds (EB_CONTENT)
        [False, False, True],
        [True, True, True],
        # SizeBytes: a positive number on moto's records (and AWS's); MiniStack's differ
        [_positive(raw["dynamodb"].get("SizeBytes")) for raw in fast],
        [True, True, True],
        [False, True, True],
    ]
    for pattern, verdicts in zip(patterns, expected, strict=True):
        predicate = compile_filter(pattern)
        assert [predicate(raw) for raw in fast] == verdicts, pattern
        assert [predicate(raw) for raw in parsed] == verdicts, pattern


# --- property test against moto's EventBridge matcher -----------------------------------------

# moto's EventPattern (moto.events.models) differs from EventBridge's documented semantics in
# a few corners, which the generated space leaves out:
# - it does not reach into lists of objects, so records hold no "L" lists and no list of maps;
# - it takes an empty object for a leaf, so images and maps are never empty;
# - it compares with Python's ==, where True == 1 and 300 == 300.0: numbers are whole, and a
#   path never gets a number rule where the record holds a boolean, nor a boolean rule where
#   it holds a number;
# - it accepts lists after "prefix"/"suffix" and anything-but of booleans, which EventBridge
#   refuses; generated patterns use only the documented forms.
# Rules are typed by the path's last key so that the space stays inside those limits, and
# "N"/"NS" image paths get no numbers (ddbstreams refuses those patterns: see above).

WORDS = st.sampled_from(["a", "ab", "abc", "B", "Ab", "ba", "", "c-1", "10", "99"])
INTS = st.integers(min_value=-5, max_value=60)
ATTRIBUTE_NAMES = ["a", "b", "c"]


@st.composite
def attribute_values(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    kinds = ["S", "N", "BOOL", "SS", "NULL"] + (["M"] if depth < 2 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "S":
        return {"S": draw(WORDS)}
    if kind == "N":
        return {"N": str(draw(INTS))}
    if kind == "BOOL":
        return {"BOOL": draw(st.booleans())}
    if kind == "NULL":
        return {"NULL": True}
    if kind == "SS":
        return {"SS": draw(st.lists(WORDS, min_size=1, max_size=3, unique=True))}
    return {"M": draw(images(depth + 1))}


def images(depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(
        st.sampled_from(ATTRIBUTE_NAMES), attribute_values(depth), min_size=1, max_size=3
    )


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {
        "Keys": {"pk": {"S": draw(WORDS)}},
        "SequenceNumber": "1" + "0" * 20,
        "SizeBytes": draw(INTS),
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if draw(st.booleans()):
        data["ApproximateCreationDateTime"] = draw(INTS)
    for image in ("NewImage", "OldImage"):
        if draw(st.booleans()):
            data[image] = draw(images())
    record: dict[str, Any] = {
        "eventID": "e1",
        "eventName": draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE"])),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": draw(st.sampled_from(["us-east-1", "eu-west-1"])),
        "dynamodb": data,
    }
    if draw(st.booleans()):
        record["userIdentity"] = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
    return record


def string_rules() -> st.SearchStrategy[Any]:
    return st.one_of(
        WORDS,
        st.builds(lambda s: {"prefix": s}, WORDS),
        st.builds(lambda s: {"suffix": s}, WORDS),
        st.builds(lambda s: {"equals-ignore-case": s}, WORDS),
        st.builds(lambda s: {"anything-but": s}, WORDS),
        st.builds(lambda s: {"anything-but": s}, st.lists(WORDS, min_size=1, max_size=3)),
        st.builds(lambda s: {"anything-but": {"prefix": s}}, WORDS),
        st.builds(lambda s: {"anything-but": {"suffix": s}}, WORDS),
    )


@st.composite
def numeric_rules(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        return {"numeric": [draw(st.sampled_from(["=", "<", "<=", ">", ">="])), draw(INTS)]}
    low, high = sorted(draw(st.lists(INTS, min_size=2, max_size=2, unique=True)))
    return {
        "numeric": [
            draw(st.sampled_from([">", ">="])),
            low,
            draw(st.sampled_from(["<", "<="])),
            high,
        ]
    }


def number_rules() -> st.SearchStrategy[Any]:
    return st.one_of(
        INTS,
        numeric_rules(),
        st.builds(lambda n: {"anything-but": n}, INTS),
        st.builds(lambda n: {"anything-but": n}, st.lists(INTS, min_size=1, max_size=3)),
        WORDS,
    )


def rule_lists(last_key: str, image_path: bool) -> st.SearchStrategy[list[Any]]:
    if last_key in ("SizeBytes", "ApproximateCreationDateTime"):
        values = number_rules()
    elif last_key in ("BOOL", "NULL"):
        values = st.one_of(st.booleans(), WORDS)
    else:
        values = string_rules()
    exists = st.builds(lambda b: {"exists": b}, st.booleans())
    return st.lists(st.one_of(values, exists), min_size=1, max_size=3)


@st.composite
def image_patterns(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    pattern: dict[str, Any] = {}
    for name in draw(
        st.lists(st.sampled_from([*ATTRIBUTE_NAMES, "zz"]), min_size=1, max_size=2, unique=True)
    ):
        kind = draw(st.sampled_from(["S", "N", "BOOL", "SS", "NULL", "M", "leaf"]))
        if kind == "leaf":  # rules on the attribute itself: an intermediate node
            pattern[name] = draw(rule_lists("S", True))
        elif kind == "M" and depth < 2:
            pattern[name] = {"M": draw(image_patterns(depth + 1))}
        elif kind != "M":
            pattern[name] = {kind: draw(rule_lists(kind, True))}
        else:
            pattern[name] = {"S": draw(rule_lists("S", True))}
    return pattern


@st.composite
def patterns(draw: st.DrawFn, allow_or: bool = True) -> dict[str, Any]:
    pattern: dict[str, Any] = {}
    fields = draw(
        st.lists(
            st.sampled_from(
                [
                    "eventName",
                    "awsRegion",
                    "userIdentity",
                    "Keys",
                    "NewImage",
                    "OldImage",
                    "SizeBytes",
                    "ApproximateCreationDateTime",
                    "missing",
                    "dynamodb-leaf",
                ]
            ),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    dynamodb: dict[str, Any] = {}
    for field in fields:
        if field in ("eventName", "awsRegion"):
            pattern[field] = draw(rule_lists(field, False))
        elif field == "missing":
            pattern["missing"] = draw(rule_lists("S", False))
        elif field == "userIdentity":
            pattern["userIdentity"] = {"PrincipalId": draw(rule_lists("S", False))}
        elif field == "dynamodb-leaf":
            dynamodb["StreamViewType"] = draw(rule_lists("S", False))
        elif field in ("SizeBytes", "ApproximateCreationDateTime"):
            dynamodb[field] = draw(rule_lists(field, False))
        elif field == "Keys":
            dynamodb["Keys"] = {"pk": {"S": draw(rule_lists("S", True))}}
        else:
            dynamodb[field] = draw(image_patterns())
    if dynamodb:
        pattern["dynamodb"] = dynamodb
    if allow_or and draw(st.booleans()):
        pattern["$or"] = draw(st.lists(patterns(allow_or=False), min_size=2, max_size=3))
    return pattern


def moto_matches(pattern: dict[str, Any], record: dict[str, Any]) -> bool:
    from moto.events.models import EventPattern

    return bool(EventPattern.load(json.dumps(pattern)).matches_event(record))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record=records(), pattern=patterns())
def test_the_matcher_agrees_with_motos_eventbridge_matcher(
    record: dict[str, Any], pattern: dict[str, Any]
) -> None:
    assert compile_filter(pattern)(record) == moto_matches(pattern, record), (pattern, record)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    record=records(),
    criteria=st.lists(patterns(allow_or=False), min_size=1, max_size=5),
)
def test_a_list_of_patterns_agrees_with_moto_pattern_by_pattern(
    record: dict[str, Any], criteria: list[dict[str, Any]]
) -> None:
    expected = any(moto_matches(pattern, record) for pattern in criteria)
    assert compile_filter(criteria)(record) == expected
    wrapped = {"Filters": [{"Pattern": json.dumps(pattern)} for pattern in criteria]}
    assert compile_filter(wrapped)(record) == expected


def test_the_examples_in_docs_filters_md() -> None:
    shipped = {
        "eventName": ["MODIFY"],
        "dynamodb": {
            "NewImage": {"order_status": {"S": ["shipped"]}},
            "OldImage": {"order_status": {"S": [{"anything-but": "shipped"}]}},
        },
    }

    def change(old: str, new: str) -> dict[str, Any]:
        return {
            "eventName": "MODIFY",
            "dynamodb": {
                "NewImage": {"order_status": {"S": new}},
                "OldImage": {"order_status": {"S": old}},
            },
        }

    assert matches(shipped, change("pending", "shipped"))
    assert not matches(shipped, change("shipped", "shipped"))
    not_ttl = {"userIdentity": {"PrincipalId": [{"exists": False}]}}
    ttl = {
        "eventName": "REMOVE",
        "userIdentity": {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"},
    }
    assert not matches(not_ttl, ttl)
    assert matches(not_ttl, {"eventName": "REMOVE"})
    tenant = {
        "$or": [
            {"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "tenant-42#"}]}}}},
            {"eventName": ["REMOVE"]},
        ]
    }
    assert matches(
        tenant, {"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "tenant-42#7"}}}}
    )
    assert not matches(
        tenant, {"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "tenant-4#2"}}}}
    )
    assert matches(tenant, {"eventName": "REMOVE", "dynamodb": {"Keys": {"pk": {"S": "x"}}}})


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def test_a_name_records_do_not_have_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ddbstreams"):
        compile_filter({"eventName": ["INSERT"], "dynamodb": {"NewImage": {"a": {"S": ["x"]}}}})
        assert caplog.records == []  # the names of the issue's own filter: no warning
        compile_filter({"eventname": ["INSERT"], "dynamodb": {"newImage": {"a": {"S": ["x"]}}}})
    warned = [record.getMessage() for record in caplog.records]
    assert len(warned) == 2
    assert "names 'eventname', which DynamoDB stream records do not have" in warned[0]
    assert "pattern at dynamodb names 'newImage'" in warned[1]
