"""Scalars whose values are already ISO-8601 strings in the cached subtrees."""

from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

DateTime = NewType("DateTime", str)
Date = NewType("Date", str)

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
}


def field_resolver(obj: object, name: str) -> object:
    """Subtrees are dicts keyed by the Python field names; other objects use attributes."""
    if type(obj) is dict:
        return obj[name]
    return getattr(obj, name)
