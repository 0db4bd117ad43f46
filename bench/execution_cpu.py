"""CPU per executed dashboard operation, in process: each operation of
gateway/documents/operations executed from cached subtrees (after full refresh cycles,
whose phases it reports: the dashboards phase executes every caller's DirectorSummary and
CohortList), as the endpoint executes it (the prepared schema: each document
parsed and validated once), and its answer serialized; no network, no server.

    .venv/bin/python -m bench.execution_cpu --database var/demo.sqlite3 [--repeat 200]
    .venv/bin/python -m bench.execution_cpu --database var/bench.sqlite3 --repeat 20

Callers: the admin and the director with the largest scope. Prints one line per
operation and caller and, with --json, writes them to a file (bench/report.py).
"""

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import orjson

from gateway.documents.dashboard import dashboard_operations
from gateway.documents.limits import prepared_schema
from gateway.refresh import batches
from gateway.refresh.cycle import last_cycle, refresh_cycle
from gateway.services import Services
from gateway.settings import Settings
from loaders import programs
from loaders.registry import Loaders
from resolvers.caller import ADMIN, DIRECTOR, Caller
from resolvers.subtrees import scope_cohort_ids

# Queries only: the subscriptions' first events are these queries' subtrees.
OPERATIONS = ("DirectorSummary", "CohortList", "CohortDetail")


async def _largest_director(services: Services) -> tuple[int, list[int]]:
    loaders = Loaders(services.upstream)
    best: tuple[int, list[int]] = (0, [])
    for user_id in await programs.director_ids(services.upstream, after=0, limit=100_000):
        row = await loaders.user_by_id.load(user_id)
        if row is None or row.role != DIRECTOR:
            continue
        ids = await scope_cohort_ids(loaders, Caller(user_id, DIRECTOR))
        if len(ids) > len(best[1]):
            best = (user_id, ids)
    return best


class _PhaseCpu:
    """This process's CPU from the start of a phase's first batch to the end of its last
    (phases run one after the other: nothing else runs in between)."""

    def __init__(self, phase: str) -> None:
        self.phase = phase
        self.first: float | None = None
        self.last = 0.0

    @property
    def cpu_s(self) -> float:
        return self.last - self.first if self.first is not None else 0.0

    def __enter__(self) -> "_PhaseCpu":
        work = self.work = batches.WORK[self.phase]

        async def timed(*args: Any) -> Any:
            if self.first is None:
                self.first = time.process_time()
            try:
                return await work(*args)
            finally:
                self.last = time.process_time()

        batches.WORK[self.phase] = timed
        return self

    def __exit__(self, *exc: object) -> None:
        batches.WORK[self.phase] = self.work


class _Run:
    """One operation as one caller, executed as the endpoint executes it."""

    def __init__(self, services: Services, schema: Any, caller: Caller, document: str,
                 variables: dict[str, Any], operation: str) -> None:  # fmt: skip
        self.services, self.schema, self.caller = services, schema, caller
        self.document, self.variables, self.operation = document, variables, operation

    async def once(self) -> bytes:
        context = self.services.make_context(self.caller, "bench", self.services.clock())
        result = await self.schema.execute(
            self.document,
            variable_values=self.variables,
            context_value=context,
            operation_name=self.operation,
        )
        assert not result.errors, result.errors
        return orjson.dumps({"data": result.data})


async def measure(database: Path, repeat: int, cycles_run: int) -> dict[str, Any]:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{database}",
        embedded_scheduler=False,
    )
    services = Services.build(settings)
    try:
        cycles = []
        for _ in range(cycles_run):  # the first from a cold cache, then over a warm one
            with _PhaseCpu("dashboards") as dashboards:
                await refresh_cycle(services)
            record = await last_cycle(services)
            assert record is not None
            cycles.append({**record["phases_s"], "dashboards_cpu": round(dashboards.cpu_s, 3)})
            print(f"refresh cycle, phases in s: {cycles[-1]}")
        preparer, schema = prepared_schema(services.schema, settings)
        documents = dashboard_operations()
        for op in documents.values():
            preparer.prepare(op.body)  # as the endpoint does before it executes
        admin = await programs.first_admin_id(services.upstream)
        assert admin is not None
        director, scope = await _largest_director(services)
        callers = {"admin": Caller(admin, ADMIN), "director": Caller(director, DIRECTOR)}
        out = []
        for operation in OPERATIONS:
            document = documents[operation].body
            variables = {"id": scope[0]} if operation == "CohortDetail" else {}
            for who, caller in callers.items():
                run = _Run(services, schema, caller, document, variables, operation)
                body = await run.once()  # fills every memo
                cpu = time.process_time()
                for _ in range(repeat):
                    await run.once()
                cpu_ms = (time.process_time() - cpu) / repeat * 1000
                row = {
                    "operation": operation,
                    "caller": who,
                    "scope": len(scope) if who == "director" else None,
                    "cpu_ms": round(cpu_ms, 3),
                    "bytes": len(body),
                    "repeat": repeat,
                }
                print(
                    f"{operation:16} {who:8} {cpu_ms:8.3f} ms CPU  {len(body):>8,} B"
                    f"  ({repeat} runs)"
                )
                out.append(row)
        return {"operations": out, "cycles_phases_s": cycles}
    finally:
        await services.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.execution_cpu")
    parser.add_argument("--database", type=Path, required=True, help="a seeded SQLite file")
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--cycles", type=int, default=2, help="refresh cycles run first")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    rows = asyncio.run(measure(args.database.resolve(), args.repeat, args.cycles))
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
