"""Statement counts do not grow with the number of cohorts (no N+1)."""

from collections import Counter

from sqlalchemy import event

from gateway.settings import Settings
from tests.support import dataset
from tests.support.dataset import ADMIN, NOW
from tests.support.gateway_client import fixed_clock, gateway_client
from tests.support.queries import COHORT_DETAIL

EVERY_COHORT_FIELD = COHORT_DETAIL.split("cohort(id: $id) {", 1)[1].rsplit("}", 2)[0]
ALL_COHORTS = (
    "query All { me { summary { averageReadiness alerts { code } } "
    "cohorts(first: 100) { totalCount edges { node {" + EVERY_COHORT_FIELD + "} } } } }"
)


async def statements_for(url: str, copies: int) -> tuple[Counter[str], int]:
    await dataset.load(url, dataset.replicated(copies))
    async with gateway_client(Settings(database_url=url), fixed_clock(NOW)) as api:
        engine = api_engine(api)
        counted: Counter[str] = Counter()

        def count(conn, cursor, statement, parameters, context, executemany) -> None:
            counted[statement.split()[0].upper()] += 1

        event.listen(engine.sync_engine, "before_cursor_execute", count)
        try:
            data = await api.data(ALL_COHORTS, user=ADMIN, role="admin")
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", count)
    return counted, data["me"]["cohorts"]["totalCount"]


def api_engine(api):
    engines = set(api.http._transport.app.state.services.upstream.engines.values())
    [engine] = engines  # every module on one database here
    return engine


async def test_statement_count_is_independent_of_cohort_count(tmp_path, backend, request) -> None:
    def url(name: str) -> str:
        if backend == "sqlite":
            return f"sqlite+aiosqlite:///{tmp_path / name}.sqlite3"
        return request.getfixturevalue("postgres_url_factory")(name)

    small, small_total = await statements_for(url("five"), 5 - 4)
    large, large_total = await statements_for(url("fifty"), 50 - 4)
    assert (small_total, large_total) == (5, 50)
    assert small == large
    # user, scope, cohorts, tracks, programs, 11 figure tables, mentors: one each.
    assert sum(small.values()) == 17
