from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A UTC instant: naive UTC text in SQLite, timestamptz in PostgreSQL, aware UTC in Python."""

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

    # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (naive UTC): the whole seconds of the first 19
    # characters (SQLite's date functions keep milliseconds only: .999999 would round up),
    # then the digits after the point (characters 21-26), both as integers.
    def seconds(x: str) -> str:
        return f"CAST(strftime('%s', substr({x}, 1, 19)) AS INTEGER)"

    def micros(x: str) -> str:
        return f"CAST(substr({x}, 21, 6) AS INTEGER)"

    return f"(({seconds(end)} - {seconds(start)}) * 1000000 + ({micros(end)} - {micros(start)}))"


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
