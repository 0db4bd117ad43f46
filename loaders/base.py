"""DataLoader base: one statement per batch, rows regrouped and returned in key order."""

import asyncio
import re
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from operator import attrgetter
from typing import Any, ClassVar

from aiodataloader import DataLoader
from sqlalchemy import Executable, Row

from loaders.engines import Upstream

# Keeps IN lists within every driver's bound-parameter limit (SQLite 32766, asyncpg 32767).
MAX_BATCH_SIZE = 2000


class UpstreamLoader(DataLoader[Hashable, Any], ABC):
    """Loads rows of one upstream module for many keys with a single statement.

    Subclasses set `module`, `key` (the row attribute the keys match) and `many`
    (a list of rows per key, else one row or None), and build `statement(keys)`.
    """

    module: ClassVar[str]
    key: ClassVar[str]
    many: ClassVar[bool] = False
    # A timestamp column whose values the statement checks (rows carry `invalid`).
    checked_instants: ClassVar[str | None] = None

    def __init__(self, upstream: Upstream) -> None:
        super().__init__(max_batch_size=MAX_BATCH_SIZE)
        self.upstream = upstream

    @abstractmethod
    def statement(self, keys: Sequence[Any]) -> Executable: ...

    def load(self, key: Hashable) -> "asyncio.Future[Any]":
        # The future is cached and shared by every field asking for this key: shielded so
        # that one field cancelled (a failing sibling) does not cancel it for the others.
        return asyncio.shield(super().load(key))

    async def batch_load_fn(self, keys: Sequence[Any]) -> list[Any]:
        rows = await self.upstream.fetch(self.module, self.statement(list(keys)))
        if self.checked_instants is not None:
            invalid = sum(1 for row in rows if row.invalid)
            self.upstream.check_instants(self.module, self.checked_instants, invalid)
        return regroup(keys, rows, self.key, many=self.many)

    async def load_all(self, keys: Sequence[Any]) -> list[Any]:
        """What load_many returns, for a batch known up front (a refresh cycle's cohorts):
        the same statements, without a future per key nor the per-request cache."""
        out: list[Any] = []
        for start in range(0, len(keys), MAX_BATCH_SIZE):
            out.extend(await self.batch_load_fn(keys[start : start + MAX_BATCH_SIZE]))
        return out


async def fetch_by_key(
    upstream: Upstream,
    module: str,
    statement: Callable[[list[Any]], Executable],
    keys: Sequence[Any],
    key: str,
) -> list[list[Row[Any]]]:
    """A batch function: each key's rows, in key order, with one statement per
    MAX_BATCH_SIZE keys (for rows that depend on more than the key, such as `now`)."""
    out: list[list[Row[Any]]] = []
    for start in range(0, len(keys), MAX_BATCH_SIZE):
        chunk = list(keys[start : start + MAX_BATCH_SIZE])
        rows = await upstream.fetch(module, statement(chunk))
        out.extend(regroup(chunk, rows, key, many=True))
    return out


def regroup(keys: Sequence[Any], rows: Sequence[Row[Any]], key: str, *, many: bool) -> list[Any]:
    key_of = attrgetter(key)
    if many:
        grouped: dict[Any, list[Row[Any]]] = defaultdict(list)
        for row in rows:
            grouped[key_of(row)].append(row)
        return [grouped.get(k, []) for k in keys]
    by_key = {key_of(row): row for row in rows}
    return [by_key.get(k) for k in keys]


def registry_name(cls: type) -> str:
    """`EnrollmentsByCohortIdLoader` → `enrollments_by_cohort_id`."""
    name = cls.__name__.removesuffix("Loader")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def as_dict(row: Row[Any]) -> dict[str, Any]:
    """Plain-str keys (column labels are a str subclass some encoders refuse)."""
    return {str(k): v for k, v in row._mapping.items()}
