"""Lambda's event filters (EventBridge patterns) compiled to a predicate on a record's wire form.

The pattern language is the one AWS documents for Lambda event filtering, which is
EventBridge's (docs/filters.md cites the pages):

- a pattern is a JSON object with the shape of the record; a key whose value is an object
  goes one level down, a key whose value is a list is a *leaf rule*: the record's value(s)
  there must match at least one element of the list. Every key must match (AND).
- list elements: a string, number, ``true``/``false`` or ``null`` (exact match; numbers by
  their written form, so 300 and 300.0 differ) or a one-key object: ``prefix``, ``suffix``,
  ``equals-ignore-case``, ``anything-but`` (a value, a list of strings or of numbers, or
  ``{"prefix": s}`` / ``{"suffix": s}``), ``numeric`` (``["=", n]`` or one or two bounds)
  and ``exists`` (true/false; only leaves exist).
- ``"$or": [pattern, pattern, ...]`` (two or more) matches if any of them does.
- where the record holds a list, the rule matches if any element does, and keys below it
  apply to each element that is an object (how ``{"L": {"S": [...]}}`` reaches list items).

Records: ``Record.raw``, as Lambda sees it on the wire; on boto3's fallback path a
``datetime`` counts as its epoch number and ``bytes`` as their base64 text.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from ._errors import ConfigurationError

__all__ = ["MAX_FILTERS", "MAX_PATTERN_LENGTH", "compile_filter"]

#: Lambda's default quota of filters per event source mapping (the issue's limit).
MAX_FILTERS = 5
#: Lambda's ``Filter.Pattern`` length constraint (API reference: maximum length 4096).
MAX_PATTERN_LENGTH = 4096
#: EventBridge rejects patterns whose ``$or`` arrays multiply out past 1000 combinations.
MAX_OR_COMBINATIONS = 1000

Predicate = Callable[[dict[str, Any]], bool]
_Nodes = list[Any]
_NodeMatcher = Callable[[_Nodes], bool]
_ValueTest = Callable[[Any], bool]

_MISSING: Any = object()
_PLAIN_LEAVES = frozenset({str, int, float, bool, type(None)})
_NO_NODES: _Nodes = []

_RULES_ALLOWED = (
    'allowed: strings, numbers, true, false, null, or one-key objects {"prefix": "..."}, '
    '{"suffix": "..."}, {"equals-ignore-case": "..."}, {"anything-but": ...}, '
    '{"numeric": [...]}, {"exists": true|false}'
)
_NUMERIC_ALLOWED = (
    'allowed: ["=", n], ["<", n], ["<=", n], [">", n], [">=", n], or a lower and an upper '
    'bound such as [">", 0, "<=", 5]'
)
_ANYTHING_BUT_ALLOWED = (
    "allowed: a string, a number, a non-empty list of only strings or only numbers, "
    '{"prefix": "..."} or {"suffix": "..."}'
)
_UNSUPPORTED = {
    "wildcard": "wildcard",
    "cidr": "cidr (IP address)",
}
# Under these record keys every leaf is a DynamoDB AttributeValue member, and "N"/"NS"
# hold numbers written as strings.
_IMAGE_KEYS = frozenset({"Keys", "NewImage", "OldImage"})
_NUMBER_TYPE_KEYS = frozenset({"N", "NS"})
_LOWER_OPS = frozenset({">", ">="})
_UPPER_OPS = frozenset({"<", "<="})

logger = logging.getLogger("ddbstreams")


def compile_filter(criteria: object) -> Callable[[dict[str, Any]], bool]:
    """Compile Lambda-style filter criteria into a predicate on ``Record.raw``.

    ``criteria``: one pattern (a ``dict``), a JSON string of one, a list of up to five of
    either (a record passes if any matches), or Lambda's ``FilterCriteria`` form
    ``{"Filters": [{"Pattern": "<json>"}, ...]}`` as an event source mapping shows it.

    Raises:
        ConfigurationError: the criteria are malformed; the message names the filter, the
            path in its pattern, what is wrong there and what is allowed.
    """
    patterns = _patterns_of(criteria)
    matchers = [_compile_pattern(pattern, where) for where, pattern in patterns]
    if len(matchers) == 1:
        only = matchers[0]
        return lambda raw: only([raw])

    def any_matches(raw: dict[str, Any]) -> bool:
        nodes = [raw]
        for matcher in matchers:  # noqa: SIM110
            if matcher(nodes):
                return True
        return False

    return any_matches


# --- criteria forms -------------------------------------------------------------------------


def _patterns_of(criteria: object) -> list[tuple[str, dict[str, Any]]]:
    """The criteria's patterns, each with the name error messages give it."""
    if isinstance(criteria, str):
        parsed = _parse_json(criteria, "pattern")
        if isinstance(parsed, list):
            return _pattern_list(parsed)
        criteria = parsed
    if isinstance(criteria, dict) and "Filters" in criteria:
        return _filter_criteria(criteria)
    if isinstance(criteria, (list, tuple)):
        return _pattern_list(criteria)
    return [("pattern", _one_pattern(criteria, "pattern"))]


def _filter_criteria(criteria: dict[Any, Any]) -> list[tuple[str, dict[str, Any]]]:
    extra = sorted(str(key) for key in criteria if key != "Filters")
    if extra:
        raise _error("FilterCriteria", f"unknown member(s) {', '.join(extra)}", "allowed: Filters")
    filters = criteria["Filters"]
    if not isinstance(filters, list):
        raise _error("FilterCriteria.Filters", f"is {_kind(filters)}", "allowed: a list")
    _check_count(len(filters), "FilterCriteria.Filters")
    patterns = []
    for index, item in enumerate(filters):
        where = f"FilterCriteria.Filters[{index}]"
        if not isinstance(item, dict) or set(item) != {"Pattern"}:
            raise _error(
                where, f"is {_describe(item)}", 'allowed: an object {"Pattern": "<JSON text>"}'
            )
        text = item["Pattern"]
        if not isinstance(text, str):
            raise _error(f"{where}.Pattern", f"is {_kind(text)}", "allowed: the pattern as text")
        patterns.append((where, _one_pattern(text, where)))
    return patterns


def _pattern_list(items: Sequence[Any]) -> list[tuple[str, dict[str, Any]]]:
    _check_count(len(items), "filter list")
    return [
        (f"filter[{index}]", _one_pattern(item, f"filter[{index}]"))
        for index, item in enumerate(items)
    ]


def _check_count(count: int, where: str) -> None:
    if count == 0:
        raise _error(
            where,
            "holds no filter",
            "pass filter=None to hand every record to the handler, or give 1 to "
            f"{MAX_FILTERS} patterns",
        )
    if count > MAX_FILTERS:
        raise _error(
            where,
            f"holds {count} filters",
            f"allowed: at most {MAX_FILTERS}, Lambda's limit per event source mapping; "
            'merge them with "$or" or with lists of values',
        )


def _one_pattern(item: Any, where: str) -> dict[str, Any]:
    if isinstance(item, str):
        if len(item) > MAX_PATTERN_LENGTH:
            raise _error(
                where,
                f"the pattern is {len(item)} characters long",
                f"allowed: at most {MAX_PATTERN_LENGTH}, Lambda's limit",
            )
        item = _parse_json(item, where)
    elif isinstance(item, dict):
        length = len(json.dumps(item, separators=(",", ":"), default=str))
        if length > MAX_PATTERN_LENGTH:
            raise _error(
                where,
                f"the pattern is {length} characters long as compact JSON",
                f"allowed: at most {MAX_PATTERN_LENGTH}, Lambda's limit",
            )
    if not isinstance(item, dict):
        raise _error(where, f"is {_describe(item)}", "allowed: a pattern object or its JSON text")
    return item


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_merge_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise _error(
            where, f"is not valid JSON ({exc.msg} at character {exc.pos})", "allowed: JSON text"
        ) from None


def _merge_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A key given twice: two objects merge (Lambda's DynamoDB page ANDs two "dynamodb"
    objects this way); otherwise the last one counts (EventBridge's documented rule)."""
    merged: dict[str, Any] = {}
    for key, value in pairs:
        earlier = merged.get(key)
        if isinstance(earlier, dict) and isinstance(value, dict):
            value = _merge_duplicate_keys([*earlier.items(), *value.items()])
        merged[key] = value
    return merged


# --- patterns -------------------------------------------------------------------------------


def _compile_pattern(pattern: dict[str, Any], where: str) -> _NodeMatcher:
    combinations = _or_combinations(pattern)
    if combinations > MAX_OR_COMBINATIONS:
        raise _error(
            where,
            f'its "$or" lists make {combinations} combinations',
            f"allowed: at most {MAX_OR_COMBINATIONS} (EventBridge's limit)",
        )
    return _compile_object(pattern, where, ())


# The fields of a DynamoDB Streams record, and of its "dynamodb" member: a rule on any
# other name (often a case slip, "eventname") can never match, which is worth a warning.
RECORD_FIELDS = frozenset(
    {"eventID", "eventName", "eventVersion", "eventSource", "awsRegion", "dynamodb"}
    | {"userIdentity"}
)
STREAM_RECORD_FIELDS = frozenset(
    {"ApproximateCreationDateTime", "Keys", "NewImage", "OldImage", "SequenceNumber"}
    | {"SizeBytes", "StreamViewType"}
)


def _warn_if_unknown(key: str, where: str, path: tuple[str, ...]) -> None:
    known = {(): RECORD_FIELDS, ("dynamodb",): STREAM_RECORD_FIELDS}.get(path)
    if known is None or key in known or key == "$or":
        return
    logger.warning(
        "filter: %s names %r, which DynamoDB stream records do not have (at this level: %s), "
        "so that rule never matches; names are case-sensitive",
        _at(where, path),
        key,
        ", ".join(sorted(known)),
    )


def _compile_object(obj: dict[str, Any], where: str, path: tuple[str, ...]) -> _NodeMatcher:
    if not obj:
        raise _error(
            _at(where, path),
            "is an empty object",
            "allowed: an object with at least one field to match",
        )
    parts: list[_NodeMatcher] = []
    for key, value in obj.items():
        if not isinstance(key, str):
            raise _error(_at(where, path), f"has a non-string key {key!r}", "allowed: strings")
        _warn_if_unknown(key, where, path)
        if key == "$or" and isinstance(value, list):
            parts.append(_compile_or(value, where, path))
        elif isinstance(value, dict):
            parts.append(_descend(key, _compile_object(value, where, (*path, key))))
        elif isinstance(value, list):
            parts.append(_leaf(key, _compile_rules(value, where, (*path, key))))
        else:
            raise _error(
                _at(where, (*path, key)),
                f"is {_describe(value)}",
                "allowed: an object (to go one level down) or a list of values to match",
            )
    if len(parts) == 1:
        return parts[0]

    def every(nodes: _Nodes) -> bool:
        for part in parts:  # noqa: SIM110 (a plain loop: no generator on each call)
            if not part(nodes):
                return False
        return True

    return every


def _compile_or(options: list[Any], where: str, path: tuple[str, ...]) -> _NodeMatcher:
    here = _at(where, (*path, "$or"))
    if len(options) < 2 or not all(isinstance(option, dict) for option in options):
        raise _error(
            here,
            f"is {_describe(options)}",
            "allowed: a list of two or more pattern objects",
        )
    alternatives = [
        _compile_object(option, where, (*path, f"$or[{index}]"))
        for index, option in enumerate(options)
    ]

    def either(nodes: _Nodes) -> bool:
        for alternative in alternatives:  # noqa: SIM110
            if alternative(nodes):
                return True
        return False

    return either


def _or_combinations(obj: Any) -> int:
    if isinstance(obj, dict):
        total = 1
        for key, value in obj.items():
            if key == "$or" and isinstance(value, list):
                total *= max(1, sum(_or_combinations(option) for option in value))
            else:
                total *= _or_combinations(value)
        return total
    return 1


def _descend(key: str, below: _NodeMatcher) -> _NodeMatcher:
    return lambda nodes: below(_step(nodes, key))


def _leaf(key: str, test: Callable[[_Nodes], bool]) -> _NodeMatcher:
    return lambda nodes: test(_step(nodes, key))


# --- walking the record ---------------------------------------------------------------------


def _step(nodes: _Nodes, key: str) -> _Nodes:
    """The values under ``key`` of every object in ``nodes``, lists flattened."""
    if len(nodes) == 1:  # the usual case: one object, no lists on the way
        node = nodes[0]
        if type(node) is not dict:
            return _NO_NODES
        value = node.get(key, _MISSING)
        if value is _MISSING:
            return _NO_NODES
        return _flatten(value) if type(value) is list else [value]
    found: _Nodes = []
    for node in nodes:
        if type(node) is dict:
            value = node.get(key, _MISSING)
            if value is _MISSING:
                continue
            if type(value) is list:
                found.extend(_flatten(value))
            else:
                found.append(value)
    return found


def _flatten(values: list[Any]) -> _Nodes:
    if not any(type(value) is list for value in values):
        return values
    flat: _Nodes = []
    for value in values:
        if type(value) is list:
            flat.extend(_flatten(value))
        else:
            flat.append(value)
    return flat


def _leaves(nodes: _Nodes) -> _Nodes:
    """The leaf values among ``nodes`` (objects are intermediate nodes), in wire form."""
    if len(nodes) == 1 and type(nodes[0]) in _PLAIN_LEAVES:  # the usual case
        return nodes
    leaves: _Nodes = []
    for node in nodes:
        kind = type(node)
        if kind is dict:
            continue
        if kind is datetime:
            node = node.timestamp()
        elif kind is bytes or kind is bytearray:
            node = base64.b64encode(node).decode("ascii")
        leaves.append(node)
    return leaves


# --- leaf rules -----------------------------------------------------------------------------


def _compile_rules(rules: list[Any], where: str, path: tuple[str, ...]) -> Callable[[_Nodes], bool]:
    if not rules:
        raise _error(_at(where, path), "is an empty list", _RULES_ALLOWED)
    number_leaf = len(path) >= 3 and path[0] == "dynamodb" and path[1] in _IMAGE_KEYS
    number_leaf = number_leaf and path[-1] in _NUMBER_TYPE_KEYS
    strings: set[str] = set()
    exact: set[tuple[type, Any]] = set()
    tests: list[_ValueTest] = []
    exists: set[bool] = set()
    for index, rule in enumerate(rules):
        here = _at(where, path, index)
        if isinstance(rule, str):
            strings.add(rule)
        elif rule is None or isinstance(rule, (bool, int, float)):
            if number_leaf and not isinstance(rule, bool) and rule is not None:
                raise _number_leaf_error(here, f"the number {rule!r}", f'"{rule}"')
            _check_number(rule, here)
            exact.add((type(rule), rule))
        elif isinstance(rule, dict):
            if len(rule) != 1:
                raise _error(here, f"is {_describe(rule)}", "allowed: an object with one key")
            (name, argument), *_ = rule.items()
            if name == "exists":
                if not isinstance(argument, bool):
                    raise _error(
                        f"{here}.exists", f"is {_describe(argument)}", "allowed: true, false"
                    )
                exists.add(argument)
            else:
                if number_leaf and (name == "numeric" or _has_number(argument)):
                    raise _number_leaf_error(
                        here, f'"{name}" with numbers', '["101"], {"prefix": "10"}'
                    )
                tests.append(_compile_operator(name, argument, f"{here}.{name}"))
        else:
            raise _error(here, f"is {_describe(rule)}", _RULES_ALLOWED)
    return _leaf_test(frozenset(strings), frozenset(exact), tests, frozenset(exists))


def _leaf_test(
    strings: frozenset[str],
    exact: frozenset[tuple[type, Any]],
    tests: list[_ValueTest],
    exists: frozenset[bool],
) -> Callable[[_Nodes], bool]:
    """Any rule of the list matches: ``exists`` on the leaves as a whole, others on one."""
    if_present, if_absent = True in exists, False in exists

    def test(nodes: _Nodes) -> bool:
        leaves = _leaves(nodes)
        if not leaves:
            return if_absent
        if if_present:
            return True
        for value in leaves:
            if type(value) is str:
                if value in strings:
                    return True
            elif (type(value), value) in exact:
                return True
            for other in tests:
                if other(value):
                    return True
        return False

    return test


def _compile_operator(name: str, argument: Any, here: str) -> _ValueTest:
    if name in ("prefix", "suffix", "equals-ignore-case"):
        text = _string_argument(argument, here)
        return _string_test(name, text)
    if name == "anything-but":
        return _compile_anything_but(argument, here)
    if name == "numeric":
        return _compile_numeric(argument, here)
    if name in _UNSUPPORTED:
        raise _error(
            here,
            f"{_UNSUPPORTED[name]} matching is not among the operators Lambda documents for "
            "event filtering",
            _RULES_ALLOWED,
        )
    raise _error(here, f"{name!r} is not an operator", _RULES_ALLOWED)


def _string_argument(argument: Any, here: str) -> str:
    if not isinstance(argument, str):
        raise _error(here, f"is {_describe(argument)}", "allowed: one string")
    return argument


def _string_test(name: str, text: str) -> _ValueTest:
    if name == "prefix":
        return lambda value: type(value) is str and value.startswith(text)
    if name == "suffix":
        return lambda value: type(value) is str and value.endswith(text)
    lowered = text.lower()
    return lambda value: type(value) is str and value.lower() == lowered


def _compile_anything_but(argument: Any, here: str) -> _ValueTest:
    if isinstance(argument, dict):
        if len(argument) != 1 or next(iter(argument)) not in ("prefix", "suffix"):
            raise _error(here, f"is {_describe(argument)}", _ANYTHING_BUT_ALLOWED)
        (name, text), *_ = argument.items()
        if isinstance(text, list):
            raise _error(
                f"{here}.{name}",
                "is a list",
                f"allowed: one string (EventBridge: anything-but works with a single {name})",
            )
        inner = _string_test(name, _string_argument(text, f"{here}.{name}"))
        return lambda value: not inner(value)
    values = argument if isinstance(argument, list) else [argument]
    if not values:
        raise _error(here, "is an empty list", _ANYTHING_BUT_ALLOWED)
    all_strings = all(isinstance(value, str) for value in values)
    all_numbers = all(_is_number(value) for value in values)
    if not (all_strings or all_numbers):
        raise _error(here, f"is {_describe(argument)}", _ANYTHING_BUT_ALLOWED)
    for value in values:
        _check_number(value, here)
    excluded = frozenset((type(value), value) for value in values)
    return lambda value: (type(value), value) not in excluded


def _compile_numeric(argument: Any, here: str) -> _ValueTest:
    if not isinstance(argument, list) or len(argument) not in (2, 4):
        raise _error(here, f"is {_describe(argument)}", _NUMERIC_ALLOWED)
    bounds: list[tuple[str, float]] = []
    for index in range(0, len(argument), 2):
        operator, number = argument[index], argument[index + 1]
        if operator not in ("=", "<", "<=", ">", ">="):
            raise _error(f"{here}[{index}]", f"is {_describe(operator)}", _NUMERIC_ALLOWED)
        if not _is_number(number):
            raise _error(
                f"{here}[{index + 1}]",
                f"{operator!r} needs a JSON number after it, got {_describe(number)}",
                _NUMERIC_ALLOWED,
            )
        _check_number(number, f"{here}[{index + 1}]")
        bounds.append((operator, number))
    if len(bounds) == 1:
        operator, number = bounds[0]
        return _bound_test(operator, number)
    (op1, n1), (op2, n2) = bounds
    if op1 in _UPPER_OPS and op2 in _LOWER_OPS:
        (op1, n1), (op2, n2) = (op2, n2), (op1, n1)
    if op1 not in _LOWER_OPS or op2 not in _UPPER_OPS:
        raise _error(here, "needs one lower and one upper bound", _NUMERIC_ALLOWED)
    if not n1 < n2:
        raise _error(
            here,
            f"its lower bound {n1} is not below its upper bound {n2}",
            "allowed: a range that some number falls in",
        )
    low, high = _bound_test(op1, n1), _bound_test(op2, n2)
    return lambda value: low(value) and high(value)


def _bound_test(operator: str, number: float) -> _ValueTest:
    if operator == "=":
        return lambda value: _is_number(value) and value == number
    if operator == "<":
        return lambda value: _is_number(value) and value < number
    if operator == "<=":
        return lambda value: _is_number(value) and value <= number
    if operator == ">":
        return lambda value: _is_number(value) and value > number
    return lambda value: _is_number(value) and value >= number


def _is_number(value: Any) -> bool:
    kind = type(value)
    return kind is int or kind is float


def _check_number(value: Any, here: str) -> None:
    if type(value) is float and not math.isfinite(value):
        raise _error(here, f"is {value!r}", "allowed: finite numbers")


def _has_number(argument: Any) -> bool:
    if isinstance(argument, list):
        return any(_is_number(item) for item in argument)
    return _is_number(argument)


def _number_leaf_error(here: str, what: str, instead: str) -> ConfigurationError:
    return _error(
        here,
        f"{what} can never match: DynamoDB writes N and NS values as strings on the wire, "
        "and Lambda's DynamoDB filtering does not support numeric operators",
        f"match the number's text instead ({instead}), or test the number in your handler",
    )


# --- messages -------------------------------------------------------------------------------


def _at(where: str, path: tuple[str, ...], index: int | None = None) -> str:
    text = f"{where} at {'.'.join(path)}" if path else where
    return text if index is None else f"{text}[{index}]"


def _error(where: str, what: str, allowed: str) -> ConfigurationError:
    message = f"invalid filter: {where}: {what}"
    return ConfigurationError(f"{message}; {allowed}" if allowed else message)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _describe(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{_kind(value)} {text}" if value is not None else "null"
