"""The list index under refresh: never a cohort out of the caller's scope, never a page
that disagrees with the subtrees (the demo scale, refreshed as of tests.support.dataset.NOW)."""

from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import update

from gateway.services import Services
from loaders.programs import cohorts
from resolvers.caller import Caller
from tests.support.dataset import NOW
from tests.support.execution_cases import Runner, callers, refreshed

BY_NAME = {"first": 5, "orderBy": {"field": "NAME", "direction": "ASC"}}


@pytest.fixture
async def demo(tmp_path: Path):
    services = await refreshed(tmp_path / "demo.sqlite3")
    try:
        yield services
    finally:
        await services.close()


async def page(services: Services, caller: Caller, variables: dict[str, Any]) -> dict[str, Any]:
    raw = await Runner(services).execute(caller, "CohortList", variables)
    body = orjson.loads(raw)
    assert "errors" not in body, body["errors"]
    return body["data"]["me"]["cohorts"]  # type: ignore[no-any-return]


async def without_index(services: Services, caller: Caller, variables: dict[str, Any]) -> Any:
    assert services.cache is not None
    await services.cache.drop([services.cache.keys.rows(caller)])
    return await page(services, caller, variables)


async def test_a_page_subtree_that_disagrees_is_answered_from_every_subtree(
    demo: Services,
) -> None:
    assert demo.cache is not None
    _, director, scope = (await callers(demo))[1]
    before = await page(demo, director, BY_NAME)
    first = before["edges"][0]["node"]["id"]
    key = demo.cache.keys.cohort(first)
    subtree = (await demo.cache.read([key], "cohort"))[key]
    # Written without its scope's index: the page's first cohort now sorts last.
    assert await demo.cache.write({key: {**subtree, "name": "zzz renamed"}})
    after = await page(demo, director, BY_NAME)
    assert first not in [e["node"]["id"] for e in after["edges"]]
    assert after == await without_index(demo, director, BY_NAME)


async def test_an_index_of_another_scope_is_never_read(demo: Services) -> None:
    assert demo.cache is not None
    _, director, scope = (await callers(demo))[1]
    lost = scope[0]
    key = demo.cache.keys.scope(director)
    entry = (await demo.cache.read([key], "scope"))[key]
    # The scope lost a cohort; its list index still holds it.
    assert await demo.cache.write({key: {**entry, "cohort_ids": scope[1:]}})
    listed = await page(demo, director, {"first": 100})
    assert listed["totalCount"] == len(scope) - 1
    assert lost not in [e["node"]["id"] for e in listed["edges"]]


async def test_a_cohort_refresh_rewrites_the_index_of_its_directors(demo: Services) -> None:
    assert demo.refresh is not None
    _, director, scope = (await callers(demo))[1]
    renamed = scope[-1]
    statement = update(cohorts).where(cohorts.c.id == renamed).values(name="AAA first")
    async with demo.upstream.engines["programs"].begin() as connection:
        await connection.execute(statement)
    await demo.refresh.refresh_cohort(renamed, NOW)
    listed = await page(demo, director, BY_NAME)
    assert listed["edges"][0]["node"]["id"] == renamed
    assert listed["edges"][0]["node"]["name"] == "AAA first"
    assert listed == await without_index(demo, director, BY_NAME)
