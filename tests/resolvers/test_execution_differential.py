"""Execution answers byte for byte as it did before list indexes: every dashboard query
(DirectorSummary, CohortList, CohortDetail) for the admin and each director of the demo
scale, CohortList over every order, several filters and page sizes, followed through its
cursors, with refused cursors too; compared with the digests of the answers the code of
commit 3e16677 gave on the same data as of the same instant
(tests/data/execution_reference.json, written by tests/support/execution_cases.py)."""

from pathlib import Path

import orjson

from gateway.cache.source import CachedSource
from resolvers.caller import ADMIN, Caller
from tests.support.dataset import NOW
from tests.support.execution_cases import Runner, answers, callers, list_answers, refreshed

REFERENCE = Path(__file__).parents[1] / "data" / "execution_reference.json"


async def test_every_dashboard_query_answers_as_at_3e16677(tmp_path: Path) -> None:
    reference = orjson.loads(REFERENCE.read_bytes())
    services = await refreshed(tmp_path / "demo.sqlite3")
    try:
        digests = await answers(services)
        assert sorted(digests) == sorted(reference)
        assert [name for name in reference if digests[name] != reference[name]] == []

        # The same lists with no index (read from every subtree): the same answers.
        assert services.cache is not None
        everyone = await callers(services)
        keys = [services.cache.keys.rows(caller) for _, caller, _ in everyone]
        assert all(v is not None for v in await services.kv.get_many(keys))
        await services.cache.drop(keys)
        runner = Runner(services)
        for who, caller, _ in [everyone[0], everyone[1], everyone[-1]]:
            without = await list_answers(runner, who, caller)
            assert [n for n in without if without[n] != reference[n]] == []
    finally:
        await services.close()


async def test_a_page_of_the_admins_list_reads_its_page_alone(tmp_path: Path) -> None:
    services = await refreshed(tmp_path / "demo.sqlite3")
    try:
        assert services.cache is not None
        keys = services.cache.keys
        runner = Runner(services)
        admin = (await callers(services))[0][1]
        assert admin.role == ADMIN
        context_sources: list[CachedSource] = []
        make_context = services.make_context

        def recording(caller: Caller, request_id: str, now: object) -> object:
            context = make_context(caller, request_id, NOW)
            context_sources.append(context.source)  # type: ignore[arg-type]
            return context

        services.make_context = recording  # type: ignore[method-assign,assignment]
        raw = await runner.execute(admin, "CohortList", {"first": 5})
        edges = orjson.loads(raw)["data"]["me"]["cohorts"]["edges"]
        assert [e["node"]["id"] for e in edges] == [22, 55, 32, 7, 58]  # by start date
        [source] = context_sources
        assert sorted(source.dependencies) == sorted(
            [
                keys.user(admin.user_id),
                keys.scope(admin),
                keys.rows(admin),
                *(keys.cohort(e["node"]["id"]) for e in edges),
            ]
        )
    finally:
        await services.close()
