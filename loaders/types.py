"""Column types and SQL functions shared by the loaders: instants, integer lists.

Timestamps are written by the upstream modules, not by the gateway. docs/upstream.md
allows, in SQLite, text `YYYY-MM-DD HH:MM:SS` with a space or `T` between date and time,
0 to 6 fraction digits, and an optional `Z` or `±HH:MM` offset; in PostgreSQL,
`timestamptz`. Every comparison or ordering of instants is made on the instant itself
(`instant`), never on the text, whose order depends on the writer. A value that is not
one of those forms raises InvalidInstant, never a silent miscount.
"""

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

SQLITE_INSTANT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:\d{2})?"
)


class InvalidInstant(ValueError):
    """An upstream value that is not a timestamp in a form docs/upstream.md allows."""


def parse_sqlite_instant(value: Any) -> datetime:
    """The instant of an SQLite timestamp (any form the contract allows), aware UTC."""
    found = SQLITE_INSTANT.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise InvalidInstant(f"not a timestamp: {value!r}")
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    offset = timedelta(0)
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        offset = sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    try:
        local = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "").ljust(6, "0")),  # ".5" is 500,000 µs, not 5
            tzinfo=timezone(offset),
        )
    except ValueError as exc:  # month 13, hour 24, a 30th of February, an offset of 24 h
        raise InvalidInstant(f"not a timestamp: {value!r}") from exc
    return local.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A UTC instant: text in SQLite (written by the gateway as naive UTC
    `YYYY-MM-DD HH:MM:SS.ffffff`; read in every form the contract allows), timestamptz in
    PostgreSQL, aware UTC in Python."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        if dialect.name == "postgresql":
            # asyncpg already returns timestamptz as aware UTC datetimes: those pass as
            # they are (the largest tables carry one or two instants per row).
            def process(value: Any) -> datetime | None:
                if value is None or value.tzinfo is UTC:
                    return value  # type: ignore[no-any-return]
                return self.process_result_value(value, dialect)

            return process
        if dialect.name == "sqlite":
            # The driver's text as stored: read by the one parser of the contract's forms
            # (SQLAlchemy's own reads ".500" as 500 µs and stops at a "T").
            def read(value: Any) -> datetime | None:
                return None if value is None else parse_sqlite_instant(value)

            return read
        return super().result_processor(dialect, coltype)


Timestamp = UTCDateTime()


class micros_between(FunctionElement[int]):
    """`end − start` of two UTCDateTime columns, in whole microseconds (exact, as
    timedelta's: SQL never rounds it through a float). Null when either is null."""

    type = BigInteger()
    inherit_cache = True
    name = "micros_between"


@compiles(micros_between, "postgresql")
def _micros_between_postgresql(element: micros_between, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    # EXTRACT(EPOCH FROM interval) is numeric (exact) since PostgreSQL 14.
    return f"CAST(ROUND(EXTRACT(EPOCH FROM ({end}) - ({start})) * 1000000) AS BIGINT)"


@compiles(micros_between, "sqlite")
def _micros_between_sqlite(element: micros_between, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"({sqlite_instant_us(end)} - {sqlite_instant_us(start)})"


class instant(FunctionElement[Any]):
    """A UTC timestamp column as a value that compares and orders as the instant it
    holds, whatever form it was written in: the column itself in PostgreSQL
    (timestamptz); in SQLite its text in the gateway's own form, UTC
    `YYYY-MM-DD HH:MM:SS.ffffff` (whose text order is the order of instants), null when
    the text is not a timestamp (see invalid_instant). Compare instant(column) with
    instant(bound)."""

    inherit_cache = True
    name = "instant"


@compiles(instant, "postgresql")
def _instant_postgresql(element: instant, compiler: SQLCompiler, **kw: Any) -> str:
    (value,) = (compiler.process(c, **kw) for c in element.clauses)
    return value


@compiles(instant, "sqlite")
def _instant_sqlite(element: instant, compiler: SQLCompiler, **kw: Any) -> str:
    (value,) = (compiler.process(c, **kw) for c in element.clauses)
    return sqlite_instant_text(value)


class invalid_instant(FunctionElement[bool]):
    """True where a timestamp column holds something that is not a timestamp (never in
    PostgreSQL, whose timestamptz cannot); false for null."""

    type = Boolean()
    inherit_cache = True
    name = "invalid_instant"


@compiles(invalid_instant, "postgresql")
def _invalid_instant_postgresql(element: invalid_instant, compiler: SQLCompiler, **kw: Any) -> str:
    return "false"


@compiles(invalid_instant, "sqlite")
def _invalid_instant_sqlite(element: invalid_instant, compiler: SQLCompiler, **kw: Any) -> str:
    (value,) = (compiler.process(c, **kw) for c in element.clauses)
    return f"({value} IS NOT NULL AND {sqlite_instant_text(value)} IS NULL)"


D = "[0-9]"
# The gateway's own form (most rows hold it), with digits in range: taken as it is.
SQLITE_CANONICAL = f"{D * 4}-[01]{D}-[0-3]{D} [0-2]{D}:[0-5]{D}:[0-5]{D}.{D * 6}"


# ...and its month, day and hour in range (a day past the month's end is not caught here).
def _sqlite_canonical(x: str) -> str:
    return (
        f"({x} GLOB '{SQLITE_CANONICAL}' AND substr({x}, 6, 2) BETWEEN '01' AND '12'"
        f" AND substr({x}, 9, 2) BETWEEN '01' AND '31' AND substr({x}, 12, 2) < '24')"
    )


SQLITE_HEAD = f"{D * 4}-{D * 2}-{D * 2}[ T]{D * 2}:{D * 2}:{D * 2}"


def sqlite_instant_us(x: str) -> str:
    """SQL: microseconds since the epoch of SQLite timestamp text `x` in any form the
    contract allows, exact (SQLite's date functions keep milliseconds only: they read the
    whole seconds and the offset, and the fraction digits are read as an integer); null
    when `x` is null or not a timestamp."""
    canonical = (
        f"CAST(strftime('%s', substr({x}, 1, 19)) AS INTEGER) * 1000000"
        f" + CAST(substr({x}, 21, 6) AS INTEGER)"
    )
    parts = _SQLiteParts(x)
    other = f"{parts.seconds} * 1000000 + CAST({parts.micros} AS INTEGER)"
    return (
        f"(CASE WHEN {_sqlite_canonical(x)} THEN {canonical} WHEN {parts.valid} THEN {other} END)"
    )


def sqlite_instant_text(x: str) -> str:
    """SQL: SQLite timestamp text `x`, in any form the contract allows, rewritten in the
    gateway's own form (UTC, space, six fraction digits), whose text order is the order
    of instants; null when `x` is null or not a timestamp. Text already in that form is
    checked for its shape and ranges only, and taken as it is (no date function)."""
    parts = _SQLiteParts(x)
    other = f"strftime('%Y-%m-%d %H:%M:%S', {parts.head} || {parts.zone}) || '.' || {parts.micros}"
    return f"(CASE WHEN {_sqlite_canonical(x)} THEN {x} WHEN {parts.valid} THEN {other} END)"


class _SQLiteParts:
    """SQL pieces of timestamp text `x` in any allowed form (SQLITE_INSTANT, in SQL)."""

    def __init__(self, x: str) -> None:
        n = f"length({x})"
        zone_len = (
            f"(CASE WHEN substr({x}, -1) = 'Z' THEN 1 "
            f"WHEN substr({x}, -6, 1) IN ('+', '-') THEN 6 ELSE 0 END)"
        )
        middle_len = f"({n} - 19 - {zone_len})"  # "" or "." and the fraction digits
        digits = f"substr({x}, 21, max({middle_len} - 1, 0))"
        self.head = f"substr({x}, 1, 19)"
        self.zone = f"substr({x}, {n} - {zone_len} + 1, {zone_len})"
        self.micros = f"substr({digits} || '000000', 1, 6)"
        self.seconds = f"CAST(strftime('%s', {self.head} || {self.zone}) AS INTEGER)"
        head = self.head
        self.valid = " AND ".join(
            (
                f"typeof({x}) = 'text'",
                f"{head} GLOB '{SQLITE_HEAD}'",
                # SQLite reads 2026-02-30 as 2 March: the date must survive a round trip.
                f"strftime('%Y-%m-%d %H:%M:%S', {head}, '+0 seconds') = replace({head}, 'T', ' ')",
                f"({middle_len} = 0 OR ({middle_len} BETWEEN 2 AND 7"
                f" AND substr({x}, 20, 1) = '.' AND {digits} NOT GLOB '*[^0-9]*'))",
                f"({zone_len} < 6 OR {self.zone} GLOB '[+-][0-2][0-9]:[0-5][0-9]')",
            )
        )


class IntList(TypeDecorator[list[int]]):
    """A list of integers aggregated by the database (`int_list`): an array from
    PostgreSQL, a comma-separated string from SQLite; always a Python list."""

    impl = Text
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> list[int]:
        if value is None:
            return []
        if isinstance(value, str):
            return [int(part) for part in value.split(",")]
        return value if isinstance(value, list) else list(value)


class int_list(FunctionElement[list[int]]):
    """The non-null values of an integer column over a group, in no particular order."""

    type = IntList()
    inherit_cache = True
    name = "int_list"


@compiles(int_list, "postgresql")
def _int_list_postgresql(element: int_list, compiler: SQLCompiler, **kw: Any) -> str:
    (value,) = (compiler.process(c, **kw) for c in element.clauses)
    return f"array_remove(array_agg({value}), NULL)"


@compiles(int_list, "sqlite")
def _int_list_sqlite(element: int_list, compiler: SQLCompiler, **kw: Any) -> str:
    (value,) = (compiler.process(c, **kw) for c in element.clauses)
    return f"group_concat({value})"
