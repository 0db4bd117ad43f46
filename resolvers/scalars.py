"""Scalars of the schema: instants and dates (already ISO-8601 strings in the cached
subtrees), and SafeInt for sums that can pass GraphQL's 32-bit Int."""

from typing import Any, NewType

import strawberry
from graphql import GraphQLError, IntValueNode, ValueNode
from strawberry.types.scalar import ScalarDefinition

DateTime = NewType("DateTime", str)
Date = NewType("Date", str)
SafeInt = NewType("SafeInt", int)

# graphql-scalars' SafeInt: an integer JSON numbers carry exactly (IEEE-754 doubles).
MAX_SAFE_INT = 2**53 - 1


class SafeIntOverflow(ValueError):
    """A figure the gateway computed does not fit SafeInt: a fault of the gateway (or of
    data past the contract), never of the caller's input."""


def serialize_safe_int(value: Any) -> int:
    if type(value) is not int or not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
        raise SafeIntOverflow(f"SafeInt cannot represent {value!r}")
    return value


def parse_safe_int(value: Any) -> int:
    if type(value) is not int or not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
        raise GraphQLError(f"SafeInt cannot represent non-safe-integer value: {value!r}")
    return value


def parse_safe_int_literal(node: ValueNode, _variables: Any = None) -> int:
    if not isinstance(node, IntValueNode):
        raise GraphQLError(f"SafeInt cannot represent non-integer value: {node.kind}")
    return parse_safe_int(int(node.value))


SCALARS: dict[object, ScalarDefinition] = {
    DateTime: strawberry.scalar(
        name="DateTime",
        description=(
            "An instant, ISO-8601 in UTC with microseconds and a Z suffix "
            "(e.g. 2026-11-24T10:00:00.000000Z)."
        ),
        specified_by_url="https://scalars.graphql.org/andimarek/date-time.html",
        serialize=str,
        parse_value=str,
    ),
    Date: strawberry.scalar(
        name="Date",
        description="A calendar date, ISO-8601 (YYYY-MM-DD).",
        specified_by_url="https://scalars.graphql.org/andimarek/local-date.html",
        serialize=str,
        parse_value=str,
    ),
    SafeInt: strawberry.scalar(
        name="SafeInt",
        description=(
            "An integer within ±(2^53−1), the integers a JSON number carries exactly: money "
            "in cents and counts that can pass 2^31−1 (GraphQL's Int)."
        ),
        # graphql-scalars' SafeInt, and its @specifiedBy URL.
        specified_by_url="https://www.ecma-international.org/ecma-262/#sec-number.issafeinteger",
        serialize=serialize_safe_int,
        parse_value=parse_safe_int,
        parse_literal=parse_safe_int_literal,
    ),
}


def field_resolver(obj: object, name: str) -> object:
    """Subtrees are dicts keyed by the Python field names; other objects use attributes."""
    if type(obj) is dict:
        return obj[name]
    return getattr(obj, name)
