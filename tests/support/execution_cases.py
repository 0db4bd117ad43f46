"""Every dashboard query executed from cached subtrees over many variables, for the
differential test of execution (tests/resolvers/test_execution_differential.py).

The demo scale (seed 7, dated tests.support.dataset.TODAY) is refreshed once with a fixed clock;
then each case is executed as the endpoint executes it (the prepared schema) and its
answer serialized: `answers` maps a case's name to the sha256 of its answer's bytes.

    .venv/bin/python -m tests.support.execution_cases OUT.json

writes those digests: tests/data/execution_reference.json was written so by the code
of commit 3e16677, before list indexes and the bound on summary alerts.
"""

import asyncio
import hashlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from gateway.documents.dashboard import dashboard_operations
from gateway.documents.limits import prepared_schema
from gateway.refresh.cycle import refresh_cycle
from gateway.services import Services
from gateway.settings import Settings
from loaders import MODULES, programs
from loaders.demo import seed
from loaders.registry import Loaders
from resolvers.caller import ADMIN, DIRECTOR, Caller
from resolvers.subtrees import scope_cohort_ids
from tests.support.dataset import NOW, TODAY

ORDERS = [
    {"field": field, "direction": direction}
    for field in ("START_DATE", "SEAT_UTILIZATION", "READINESS", "NAME")
    for direction in ("ASC", "DESC")
]
PAGE_SIZES = (7, 20)


def filters(cohorts: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
    """No filter, each kind of condition, and conditions together (from the data: a
    program and a track that hold cohorts)."""
    program = cohorts[0]["program"]["id"]
    track = cohorts[-1]["track"]["id"]
    return [
        None,
        {},
        {"status": ["RUNNING"]},
        {"status": ["PLANNED", "CLOSED"]},
        {"status": []},
        {"mode": ["ONLINE", "HYBRID"]},
        {"programId": program},
        {"trackId": track},
        {"search": "a"},
        {"search": "NOV"},
        {"search": ""},
        {"status": ["RUNNING"], "mode": ["ONSITE", "ONLINE"], "search": "e"},
        {"programId": program, "status": ["RUNNING", "CLOSED"]},
    ]


class Runner:
    def __init__(self, services: Services) -> None:
        self.services = services
        preparer, self.schema = prepared_schema(services.schema, services.settings)
        self.documents = {name: op.body for name, op in dashboard_operations().items()}
        for body in self.documents.values():
            preparer.prepare(body)

    async def execute(self, caller: Caller, operation: str, variables: dict[str, Any]) -> bytes:
        context = self.services.make_context(caller, "differential", NOW)
        result = await self.schema.execute(
            self.documents[operation],
            variable_values=variables,
            context_value=context,
            operation_name=operation,
        )
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [
                {"message": e.message, "path": e.path, "extensions": e.extensions}
                for e in result.errors
            ]
        return orjson.dumps(body)


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


async def callers(services: Services) -> list[tuple[str, Caller, list[int]]]:
    """The admin and every director, with their scopes."""
    loaders = Loaders(services.upstream)
    admin = await programs.first_admin_id(services.upstream)
    assert admin is not None
    out = [("admin", Caller(admin, ADMIN), await programs.all_cohort_ids(services.upstream))]
    for user_id in await programs.director_ids(services.upstream, after=0, limit=1000):
        caller = Caller(user_id, DIRECTOR)
        out.append((f"director{user_id}", caller, await scope_cohort_ids(loaders, caller)))
    return out


async def list_answers(runner: Runner, who: str, caller: Caller) -> dict[str, str]:
    """CohortList over every order, filter and page size, each followed page by page
    through its cursors to the end; and cursors that must be refused."""
    out: dict[str, str] = {}
    first = orjson.loads(await runner.execute(caller, "CohortList", {"first": 100}))
    nodes = [e["node"] for e in first["data"]["me"]["cohorts"]["edges"]]
    for order in ORDERS:
        for n, where in enumerate(filters(nodes)):
            for size in PAGE_SIZES:
                after = None
                for page in range(100):
                    variables = {"first": size, "after": after, "filter": where, "orderBy": order}
                    raw = await runner.execute(caller, "CohortList", variables)
                    name = f"list/{who}/{order['field']}:{order['direction']}/f{n}/{size}/p{page}"
                    out[name] = _digest(raw)
                    info = orjson.loads(raw)["data"]["me"]["cohorts"]["pageInfo"]
                    if not info["hasNextPage"]:
                        break
                    after = info["endCursor"]
    other = first["data"]["me"]["cohorts"]["pageInfo"]["endCursor"]
    for name, variables in {
        "default": {},
        "other-order-cursor": {"after": other, "orderBy": ORDERS[-1]},
        "malformed-cursor": {"after": "not-a-cursor"},
        "first-0": {"first": 0},
    }.items():
        out[f"list/{who}/{name}"] = _digest(await runner.execute(caller, "CohortList", variables))
    return out


async def answers(services: Services) -> dict[str, str]:
    runner = Runner(services)
    out: dict[str, str] = {}
    everyone = await callers(services)
    every_cohort = everyone[0][2]
    for who, caller, scope in everyone:
        out[f"summary/{who}"] = _digest(await runner.execute(caller, "DirectorSummary", {}))
        for cohort_id in [*scope, max(every_cohort) + 1]:
            raw = await runner.execute(caller, "CohortDetail", {"id": cohort_id})
            out[f"detail/{who}/{cohort_id}"] = _digest(raw)
        if who == "director" + str(everyone[1][1].user_id):
            outside = sorted(set(every_cohort) - set(scope))[:3]
            for cohort_id in outside:  # out of scope: NOT_FOUND, like a missing id
                raw = await runner.execute(caller, "CohortDetail", {"id": cohort_id})
                out[f"detail/{who}/{cohort_id}"] = _digest(raw)
        out.update(await list_answers(runner, who, caller))
    return out


def settings_for(database: Path) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{database}",
        embedded_scheduler=False,
        response_cache_enabled=False,
    )


async def refreshed(database: Path) -> Services:
    """The demo scale seeded into `database`, refreshed once as of NOW."""
    await seed(
        dict.fromkeys(MODULES, f"sqlite+aiosqlite:///{database}"),
        scale="demo",
        seed=7,
        today=TODAY,
        with_checksum=False,
    )
    services = Services.build(settings_for(database), clock=lambda: NOW)
    await refresh_cycle(services)
    return services


def items(digests: dict[str, str]) -> Iterator[tuple[str, str]]:
    return iter(sorted(digests.items()))


async def _digests(tmp: Path) -> dict[str, str]:
    services = await refreshed(tmp / "demo.sqlite3")
    try:
        return await answers(services)
    finally:
        await services.close()


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        digests = asyncio.run(_digests(Path(tmp)))
    out.write_bytes(orjson.dumps(dict(items(digests)), option=orjson.OPT_INDENT_2))
    print(f"{len(digests)} answers → {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
