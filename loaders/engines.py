"""One async engine per upstream module, and the single place statements are executed."""

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Executable, Row
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from loaders import MODULES
from loaders.types import InvalidInstant

log = logging.getLogger("loaders.engines")

# (module, seconds, ok) after every upstream statement.
StatementObserver = Callable[[str, float, bool], None]
# (module, column) of every read refused because a value is outside the contract.
RefusalObserver = Callable[[str, str], None]


class UpstreamUnavailable(Exception):
    """An upstream module could not answer (unreachable database or timeout)."""

    def __init__(self, module: str, reason: str = "") -> None:
        super().__init__(f"upstream module {module} is unavailable")
        self.module = module
        self.reason = reason


class UpstreamDataInvalid(Exception):
    """An upstream module holds a value outside the contract (docs/upstream.md): a
    timestamp column with text that is not a timestamp, say. Refused, never miscounted."""

    def __init__(self, module: str, column: str, detail: str) -> None:
        super().__init__(f"upstream module {module} holds data outside the contract in {column}")
        self.module = module
        self.column = column
        self.detail = detail


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """PostgreSQL: `pool_size` connections and no overflow. Statements beyond them wait for
    one (within the query timeout) rather than open connections that are closed again on
    return: each costs the server a process and a password exchange, and a refresh batch's
    statements come ten at a time (tests/loaders/test_engines.py)."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs.update(pool_size=pool_size, max_overflow=0, pool_pre_ping=True)
        kwargs["connect_args"] = {"timeout": 5}
    return create_async_engine(url, **kwargs)


class Upstream:
    """The engines of the six modules; modules with the same URL share one engine."""

    def __init__(
        self,
        urls: Mapping[str, str],
        *,
        query_timeout_s: float = 5.0,
        pool_size: int = 10,
    ) -> None:
        self.query_timeout_s = query_timeout_s
        self.observers: list[StatementObserver] = []
        self.refusal_observers: list[RefusalObserver] = []
        by_url: dict[str, AsyncEngine] = {}
        self.engines: dict[str, AsyncEngine] = {}
        for module in MODULES:
            url = urls[module]
            if url not in by_url:
                by_url[url] = make_engine(url, pool_size=pool_size)
            self.engines[module] = by_url[url]
        self._distinct = list(by_url.values())
        # Reads in flight, and whether dispose() has begun: a read still running when the
        # engines are disposed would hand its connection back to a pool nobody closes.
        self._reads = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    @property
    def reads_in_flight(self) -> int:
        return self._reads

    async def fetch(self, module: str, statement: Executable) -> Sequence[Row[Any]]:
        if self._closing:
            raise UpstreamUnavailable(module, "closed")
        engine = self.engines[module]
        started = time.perf_counter()
        ok = False
        self._reads += 1
        self._idle.clear()
        try:
            async with asyncio.timeout(self.query_timeout_s):
                async with engine.connect() as conn:
                    result = await conn.execute(statement)
                    rows = result.all()
            ok = True
            return rows
        except InvalidInstant as exc:  # a timestamp column's value, read as rows are built
            raise self.refuse(module, "a timestamp column", str(exc)) from exc
        except TimeoutError as exc:
            raise UpstreamUnavailable(module, "timeout") from exc
        except (OperationalError, InterfaceError, OSError) as exc:
            raise UpstreamUnavailable(module, type(exc).__name__) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise UpstreamUnavailable(module, "connection lost") from exc
            raise
        finally:
            self._reads -= 1
            if not self._reads:
                self._idle.set()
            elapsed = time.perf_counter() - started
            for observe in self.observers:
                observe(module, elapsed, ok)

    def refuse(self, module: str, column: str, detail: str = "") -> UpstreamDataInvalid:
        """The error to raise for a read refused because of `column`'s values: logged and
        counted here, once per refused read."""
        log.error(
            "upstream module %s: refused a read, %s is outside the contract %s",
            module,
            column,
            detail,
        )
        for observe in self.refusal_observers:
            observe(module, column)
        return UpstreamDataInvalid(module, column, detail)

    def check_instants(self, module: str, column: str, invalid: int | None) -> None:
        """Raise for a read whose statement counted `invalid` values of `column` that are
        not timestamps (invalid_instant)."""
        if invalid:
            raise self.refuse(module, column, f"({invalid} value(s) not a timestamp)")

    async def ping(self) -> dict[str, str | None]:
        """Module → None when reachable, else the reason."""
        from sqlalchemy import text

        out: dict[str, str | None] = {}
        for module in MODULES:
            try:
                await self.fetch(module, text("SELECT 1"))
                out[module] = None
            except UpstreamUnavailable as exc:
                out[module] = exc.reason or "unavailable"
        return out

    async def dispose(self) -> None:
        """Refuse new reads, let those in flight end (each within the query timeout: a
        request that failed may leave sibling reads running), then close every connection.
        """
        self._closing = True
        try:
            async with asyncio.timeout(self.query_timeout_s + 1.0):
                await self._idle.wait()
        except TimeoutError:  # cannot happen while every read keeps its own timeout
            log.warning("upstream: %d read(s) still running at dispose", self._reads)
        for engine in self._distinct:
            await engine.dispose()
