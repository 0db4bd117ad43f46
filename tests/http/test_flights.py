"""A missing stored answer is executed once per key at a time (gateway/http/flights.py)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.http.flights import Flights
from tests.harness.waiting import async_wait_until
from tests.support.dataset import ADMIN
from tests.support.fast_path import LIST_OP, get
from tests.support.gateway import settings_for
from tests.support.gateway_client import gateway_client

# Everything an execution of the cohort list reads, but not the users table (which every
# request reads to confirm its caller, before it may wait on another's execution).
EXECUTION_TABLES = "programs, tracks, track_directors, cohorts, enrollments"
CONCURRENT = 8


def misses(outcome: str) -> float:
    value = REGISTRY.get_sample_value("gateway_answer_misses_total", {"outcome": outcome})
    return value or 0.0


@contextlib.asynccontextmanager
async def misses_waiting_on_one(
    api: Any, locker: AsyncEngine
) -> AsyncIterator[list[asyncio.Future[Any]]]:
    """CONCURRENT misses of one answer, the first one's execution held by a lock on the
    tables it reads until all the others wait on it; yields the requests."""
    flights = api.http._transport.app.state.endpoint.flights
    async with locker.connect() as connection:
        transaction = await connection.begin()
        await connection.execute(text(f"LOCK TABLE {EXECUTION_TABLES} IN ACCESS EXCLUSIVE MODE"))
        requests = [
            asyncio.ensure_future(get(api, LIST_OP, ADMIN, "admin")) for _ in range(CONCURRENT)
        ]
        await async_wait_until(
            _true_when(lambda: flights.waiting == CONCURRENT - 1), "every other request waiting"
        )
        await async_wait_until(lambda: _lock_waits(locker), "the first one waiting on the lock")
        yield requests
        await transaction.commit()


@pytest.fixture
async def on_postgres(
    dataset_url: str, redis_url: str, manifest: str
) -> AsyncIterator[tuple[Any, AsyncEngine]]:
    """An in-process gateway on the PostgreSQL dataset, and an engine to lock its tables."""
    settings = settings_for(dataset_url, redis_url, persisted_manifest=manifest)
    locker = create_async_engine(dataset_url)
    try:
        async with gateway_client(settings) as api:
            yield api, locker
    finally:
        await locker.dispose()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_concurrent_misses_of_one_answer_execute_it_once(
    on_postgres: tuple[Any, AsyncEngine],
) -> None:
    api, locker = on_postgres
    flights = api.http._transport.app.state.endpoint.flights
    executed, shared = misses("executed"), misses("shared")
    async with misses_waiting_on_one(api, locker) as requests:
        pass
    responses = await asyncio.gather(*requests)
    assert (misses("executed"), misses("shared")) == (executed + 1, shared + CONCURRENT - 1)
    assert [r.status_code for r in responses] == [200] * CONCURRENT
    assert "errors" not in responses[0].json()
    assert len({r.content for r in responses}) == 1
    assert len({r.headers["x-request-id"] for r in responses}) == CONCURRENT
    assert len(flights) == 0


async def test_a_leaders_error_is_each_waiters_and_the_key_is_free_again() -> None:
    flights: Flights[str] = Flights()
    release = asyncio.Event()

    async def failing() -> str:
        await release.wait()
        raise ValueError("upstream broke")

    async def succeeding() -> str:
        return "answer"

    leader = asyncio.ensure_future(flights.run("k", failing))
    waiter = asyncio.ensure_future(flights.run("k", succeeding))
    await async_wait_until(_true_when(lambda: flights.waiting == 1), "the waiter waiting")
    release.set()
    for task in (leader, waiter):
        with pytest.raises(ValueError, match="upstream broke"):
            await task
    assert len(flights) == 0
    assert await flights.run("k", succeeding) == "answer"


async def test_a_cancelled_leaders_waiters_execute_for_themselves() -> None:
    flights: Flights[str] = Flights()
    never = asyncio.Event()

    async def hanging() -> str:
        await never.wait()
        return "never"

    async def succeeding() -> str:
        return "answer"

    leader = asyncio.ensure_future(flights.run("k", hanging))
    waiters = [asyncio.ensure_future(flights.run("k", succeeding)) for _ in range(3)]
    await async_wait_until(_true_when(lambda: flights.waiting == 3), "the waiters waiting")
    leader.cancel()
    assert await asyncio.gather(*waiters) == ["answer"] * 3
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert len(flights) == 0


# Backends (other than the asking one) waiting for a lock on this database.
LOCK_WAITS = (
    "SELECT pid FROM pg_locks WHERE NOT granted AND pid <> pg_backend_pid() "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def _lock_waits(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        return bool((await connection.execute(text(LOCK_WAITS))).all())


def _true_when(condition):
    async def predicate() -> bool:
        return condition()

    return predicate


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_failed_execution_is_its_waiters_error_and_the_next_request_executes(
    on_postgres: tuple[Any, AsyncEngine],
) -> None:
    api, locker = on_postgres
    flights = api.http._transport.app.state.endpoint.flights
    executed, shared = misses("executed"), misses("shared")
    async with misses_waiting_on_one(api, locker) as requests:
        # The leader's read fails: its connection is ended while it waits on the lock.
        async with locker.connect() as admin:
            ended = await admin.execute(
                text(f"SELECT pg_terminate_backend(pid) FROM ({LOCK_WAITS}) AS waits")
            )
            assert set(ended.scalars().all()) == {True}
        failed = await asyncio.gather(*requests)
    assert (misses("executed"), misses("shared")) == (executed + 1, shared + CONCURRENT - 1)
    bodies = [r.json() for r in failed]
    assert [r.status_code for r in failed] == [200] * CONCURRENT
    # The same error for every one of them, each under its own request id.
    assert all(b["errors"] for b in bodies)
    codes = {e["extensions"]["code"] for b in bodies for e in b["errors"]}
    assert codes == {"UPSTREAM_UNAVAILABLE"}
    ids = {e["extensions"]["requestId"] for b in bodies for e in b["errors"]}
    assert len(ids) == CONCURRENT
    assert len(flights) == 0
    # Not wedged, nothing stored from the failure: the next request executes.
    again = await get(api, LIST_OP, ADMIN, "admin")
    assert again.status_code == 200
    assert "errors" not in again.json()
    assert misses("executed") == executed + 2
