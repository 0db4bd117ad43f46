"""Writing a dataset into the upstream databases, and its checksum."""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time as _time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Date, Float, Integer, MetaData, Table, event, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tqdm import tqdm

from loaders import MODULES
from loaders.demo.payments import (
    _rows_billing,
)
from loaders.demo.plan import (
    _plan,
    _World,
)
from loaders.demo.rows import (
    _rows_mentorship,
    _rows_missions,
    _rows_portfolio,
    _rows_programs,
    _rows_talentscope,
)
from loaders.demo.scale import (
    CHUNK_ROWS,
    COPY_CHUNK_ROWS,
    SCALES,
    Row,
    Rows,
    SeedReport,
)
from loaders.engines import make_engine
from loaders.registry import module_metadata
from loaders.types import UTCDateTime

GENERATORS: dict[str, Callable[[_World], Rows]] = {
    "programs": _rows_programs,
    "mentorship": _rows_mentorship,
    "talentscope": _rows_talentscope,
    "missions": _rows_missions,
    "portfolio": _rows_portfolio,
    "billing": _rows_billing,
}


# --- writing ---------------------------------------------------------------------------


def _engines(urls: Mapping[str, str], *, fast_sqlite: bool) -> dict[str, AsyncEngine]:
    """One engine per distinct URL (modules sharing a database share its engine)."""
    by_url: dict[str, AsyncEngine] = {}
    out: dict[str, AsyncEngine] = {}
    for module in MODULES:
        url = urls[module]
        if url not in by_url:
            engine = make_engine(url)
            if fast_sqlite and engine.dialect.name == "sqlite":
                event.listen(engine.sync_engine, "connect", _sqlite_bulk_pragmas)
            by_url[url] = engine
        out[module] = by_url[url]
    return out


def _sqlite_bulk_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Seeding is a rebuildable bulk load: durability per commit buys nothing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


class _Writer:
    """Buffers rows per table; flushes every table of the module, parents first.

    On PostgreSQL a flush is a binary COPY per table (asyncpg's copy_records_to_table),
    in larger chunks; elsewhere an INSERT of the chunk (executemany)."""

    def __init__(self, conn: AsyncConnection, metadata: MetaData, bar: tqdm[Any]) -> None:
        self.conn = conn
        self.order = list(metadata.sorted_tables)
        self.buffers: dict[Table, list[Row]] = {t: [] for t in self.order}
        self.counts: dict[str, int] = {t.name: 0 for t in self.order}
        self.bar = bar
        self.copy = conn.dialect.name == "postgresql"
        self.chunk_rows = COPY_CHUNK_ROWS if self.copy else CHUNK_ROWS

    async def add(self, table: Table, row: Row) -> None:
        buffer = self.buffers[table]
        buffer.append(row)
        if len(buffer) >= self.chunk_rows:
            await self.flush()

    async def flush(self) -> None:
        if self.copy:
            await self._copy()
            return
        async with self.conn.begin():
            for table in self.order:
                rows = self.buffers[table]
                if rows:
                    await self.conn.execute(table.insert(), rows)
                    self._written(table, len(rows))

    async def _copy(self) -> None:
        # Each COPY commits on its own: a half-seeded database is reseeded whole anyway.
        raw = await self.conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        for table in self.order:
            rows = self.buffers[table]
            if not rows:
                continue
            columns = [c.name for c in table.columns]
            convert = [_copy_value(c.type, self.conn.dialect) for c in table.columns]
            records = [
                tuple(f(row.get(name)) for f, name in zip(convert, columns, strict=True))
                for row in rows
            ]
            await driver.copy_records_to_table(table.name, records=records, columns=columns)
            self._written(table, len(rows))

    def _written(self, table: Table, rows: int) -> None:
        self.counts[table.name] += rows
        self.bar.update(rows)
        self.buffers[table] = []


def _copy_value(column_type: Any, dialect: Any) -> Callable[[Any], Any]:
    """What an INSERT would bind for this column (UTCDateTime: an aware UTC instant)."""
    if isinstance(column_type, UTCDateTime):
        return lambda v: None if v is None else column_type.process_bind_param(v, dialect)
    return lambda v: v


async def _analyze(engine: AsyncEngine, metadata: MetaData) -> None:
    """Planner statistics right after a bulk load (autovacuum would take its time)."""
    if engine.dialect.name != "postgresql":
        return
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert raw.driver_connection is not None
        for table in metadata.sorted_tables:
            await raw.driver_connection.execute(f'ANALYZE "{table.name}"')


async def seed(
    urls: Mapping[str, str],
    *,
    scale: str = "demo",
    seed: int = 7,
    today: date | None = None,
    progress: bool = False,
    reset: bool = True,
    with_checksum: bool = True,
) -> SeedReport:
    """Create the upstream tables (dropping them first when `reset`) and fill them.

    Without `reset` the tables must be empty: ids are explicit and start at 1. Without
    `with_checksum` the report's checksum is empty (reading every row back takes about
    as long as writing them).
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    started = _time.perf_counter()
    today = today or datetime.now(UTC).date()
    world = _plan(SCALES[scale], random.Random(seed), today)
    engines = _engines(urls, fast_sqlite=True)
    rows_by_table: dict[str, int] = {}
    try:
        with tqdm(
            unit=" rows", unit_scale=True, file=sys.stderr, disable=not progress, desc="seed"
        ) as bar:
            for module in MODULES:
                metadata, engine = module_metadata(module), engines[module]
                bar.set_description(f"seed {module}")
                async with engine.begin() as conn:
                    if reset:
                        await conn.run_sync(metadata.drop_all)
                    await conn.run_sync(metadata.create_all)
                async with engine.connect() as conn:
                    writer = _Writer(conn, metadata, bar)
                    for table, row in GENERATORS[module](world):
                        await writer.add(table, row)
                    await writer.flush()
                await _analyze(engine, metadata)
                rows_by_table.update(writer.counts)
    finally:
        for engine in set(engines.values()):
            await engine.dispose()
    digest = await checksum(urls) if with_checksum else ""
    return SeedReport(
        scale=scale,
        seed=seed,
        today=today,
        rows_by_table=rows_by_table,
        seconds=round(_time.perf_counter() - started, 3),
        admin_id=world.admin_ids[0],
        director_ids=sorted(world.director_ids),
        checksum=digest,
    )


# --- checksum --------------------------------------------------------------------------


def _formatter(column_type: Any) -> Callable[[Any], Any]:
    """Canonical JSON-able form of one column's values, equal on SQLite and PostgreSQL."""
    if isinstance(column_type, UTCDateTime):
        return lambda v: v.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(column_type, Date):
        return lambda v: v.isoformat()
    if isinstance(column_type, Float):
        return lambda v: repr(round(float(v), 6))
    if isinstance(column_type, Integer):
        return int
    return str


async def checksum(urls: Mapping[str, str]) -> str:
    """sha256 over every upstream table, read back in primary-key order."""
    digest = hashlib.sha256()
    engines = _engines(urls, fast_sqlite=False)
    try:
        for module in MODULES:
            for table in sorted(module_metadata(module).tables.values(), key=lambda t: t.name):
                digest.update(f"# {module}.{table.name}\n".encode())
                formats = [_formatter(col.type) for col in table.columns]
                query = select(table).order_by(*table.primary_key.columns)
                async with engines[module].connect() as conn:
                    result = await conn.stream(query)
                    async for rows in result.partitions(CHUNK_ROWS):
                        lines = [
                            json.dumps(
                                [
                                    None if v is None else f(v)
                                    for f, v in zip(formats, row, strict=True)
                                ]
                            )
                            for row in rows
                        ]
                        digest.update(("\n".join(lines) + "\n").encode())
    finally:
        for engine in set(engines.values()):
            await engine.dispose()
    return digest.hexdigest()
