"""Shutting the upstream engines down while reads are still running.

A request refused by one module's read may leave its sibling reads running; a read still
running when its engine is disposed hands its connection back to a pool nobody closes
(on SQLite, an aiosqlite connection left open until garbage collection). Disposing waits
for every read in flight and refuses new ones; a failed batch of reads raises only once
all of them have ended.
"""

import asyncio
import sqlite3
from contextlib import closing

import pytest
from sqlalchemy import event, text

from loaders import MODULES
from loaders.engines import Upstream, UpstreamDataInvalid, UpstreamUnavailable
from resolvers.subtrees import settled
from tests.harness.waiting import CEILING_S


async def test_dispose_waits_for_reads_in_flight_and_closes_their_connections(
    tmp_path,
) -> None:
    path = tmp_path / "upstream.sqlite3"
    with closing(sqlite3.connect(path)) as db:
        db.executescript("CREATE TABLE cohorts (id INTEGER); INSERT INTO cohorts VALUES (101);")
    upstream = Upstream(dict.fromkeys(MODULES, f"sqlite+aiosqlite:///{path}"))
    [engine] = {id(e): e for e in upstream.engines.values()}.values()
    opened: list[object] = []
    closed: list[object] = []
    connected = asyncio.Event()

    def on_connect(conn: object, record: object) -> None:
        opened.append(conn)
        connected.set()

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "close", lambda conn, record: closed.append(conn))

    # Another writer holds the database: the read waits on it (SQLite's busy timeout).
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        read = asyncio.create_task(upstream.fetch("programs", text("SELECT id FROM cohorts")))
        async with asyncio.timeout(CEILING_S):
            await connected.wait()  # the read has its connection
        assert upstream.reads_in_flight == 1
        disposing = asyncio.create_task(upstream.dispose())
        await asyncio.sleep(0.2)
        assert not disposing.done()  # cannot end while the read is running

        # Once disposing has begun, a new read is refused without opening a connection.
        with pytest.raises(UpstreamUnavailable) as refused:
            await upstream.fetch("billing", text("SELECT id FROM cohorts"))
        assert refused.value.reason == "closed"
        assert len(opened) == 1
    finally:
        locker.execute("COMMIT")
        locker.close()

    async with asyncio.timeout(CEILING_S):
        rows = await read
        await disposing
    assert [tuple(r) for r in rows] == [(101,)]
    assert upstream.reads_in_flight == 0
    assert closed == opened  # the read's connection was closed, not left to the collector


async def test_a_failed_batch_of_reads_raises_once_every_sibling_has_ended() -> None:
    failed = asyncio.Event()
    release = asyncio.Event()
    ended: list[str] = []

    async def refused() -> None:
        failed.set()
        raise UpstreamDataInvalid("programs", "milestones.completed_at", "")

    async def slow() -> str:
        await release.wait()
        ended.append("slow")
        return "rows"

    batch = asyncio.create_task(settled(slow(), refused()))
    await failed.wait()
    for _ in range(10):  # asyncio.gather would have raised within a step or two
        await asyncio.sleep(0)
    assert not batch.done()
    release.set()
    with pytest.raises(UpstreamDataInvalid):
        await batch
    assert ended == ["slow"]


async def test_a_refusal_is_raised_ahead_of_an_unreachable_module() -> None:
    async def unreachable() -> None:
        raise UpstreamUnavailable("missions", "timeout")

    async def refused() -> None:
        await asyncio.sleep(0)
        raise UpstreamDataInvalid("missions", "mission_submissions.submitted_at", "")

    with pytest.raises(UpstreamDataInvalid):
        await settled(unreachable(), refused())
    with pytest.raises(UpstreamUnavailable):
        await settled(unreachable(), asyncio.sleep(0))
    assert await settled(asyncio.sleep(0, "a"), asyncio.sleep(0, "b")) == ["a", "b"]
