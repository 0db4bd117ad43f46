"""The upstream connection pool on PostgreSQL: statements beyond the pool wait for a
connection instead of opening (and closing) new ones. Opening one costs the server a
process and a password exchange: at bench scale, churning overflow connections cost a
refresh cycle about a fifth of its machine time."""

import asyncio

import pytest
from sqlalchemy import event, text

from loaders import MODULES
from loaders.engines import Upstream

pytestmark = pytest.mark.postgres


async def test_a_burst_of_statements_shares_the_pool_without_opening_more(
    postgres_url: str,
) -> None:
    upstream = Upstream(dict.fromkeys(MODULES, postgres_url), pool_size=3)
    [engine] = upstream._distinct
    opened: list[int] = []
    event.listen(engine.sync_engine, "connect", lambda *_: opened.append(1))
    try:
        # 40 statements at once (four batches of a cycle, ten statements each).
        statements = [text(f"SELECT {n}, pg_sleep(0.02)") for n in range(40)]
        rows = await asyncio.gather(
            *(upstream.fetch(MODULES[n % 6], s) for n, s in enumerate(statements))
        )
        assert [row[0][0] for row in rows] == list(range(40))
        assert len(opened) == 3
        assert (engine.pool.size(), engine.pool.checkedout()) == (3, 0)
    finally:
        await upstream.dispose()
