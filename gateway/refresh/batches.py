"""The work of one batch of a refresh cycle, phase by phase; whoever runs it (a worker's
batch job, the cycle's own job, or this process in embedded mode).

Every batch computes as of the cycle's one instant (`CycleRun.now`), confirms its guard
before each write, and returns a small JSON-able result the cycle pools:

- cohorts: a batch of cohort subtrees, written; their summary inputs kept for phase 2;
- directors: a batch of directors' (and admins') profile, scope and summary, pooled from
  the summary inputs of phase 1 (never from the cache: what this cycle computed);
- dashboards: a batch of callers' argument-less dashboard pages, stored;
- answers: a batch of the other stored answers chosen for rebuilding, rebuilt in place.
"""

from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from redis.asyncio import Redis

from gateway.cache.keys import CycleKeys
from gateway.cache.subtrees import Subtree
from gateway.refresh.answers import AnswerBuilder
from gateway.refresh.service import Guard, RefreshService
from resolvers.caller import ADMIN, DIRECTOR, Caller
from resolvers.figures import summary_inputs
from resolvers.rows import list_row

if TYPE_CHECKING:
    from gateway.services import Services

PHASES = ("cohorts", "directors", "dashboards", "answers")
# A person of phase 2: [user_id, role, name, email, [cohort ids in scope]].
Person = list[Any]


class SummaryInputs(Protocol):
    """Where a cycle keeps its cohorts' summary inputs between phases 1 and 2."""

    async def put(self, inputs: dict[int, Subtree]) -> None: ...

    async def get(self, cohort_ids: Collection[int]) -> dict[int, Subtree]: ...

    async def every(self) -> dict[int, Subtree]: ...


@dataclass
class MemoryInputs:
    found: dict[int, Subtree] = field(default_factory=dict)

    async def put(self, inputs: dict[int, Subtree]) -> None:
        self.found.update(inputs)

    async def get(self, cohort_ids: Collection[int]) -> dict[int, Subtree]:
        return {i: self.found[i] for i in cohort_ids if i in self.found}

    async def every(self) -> dict[int, Subtree]:
        return dict(self.found)


class RedisInputs:
    """A hash of the cycle's in the queue's Redis: cohort id → summary inputs (JSON)."""

    SCAN_COUNT = 1000

    def __init__(self, redis: Redis, keys: CycleKeys) -> None:
        # redis-py's hash commands are typed sync-or-async: this client is async.
        self.redis: Any = redis
        self.key = keys.inputs

    async def put(self, inputs: dict[int, Subtree]) -> None:
        if inputs:
            await self.redis.hset(self.key, mapping={i: orjson.dumps(s) for i, s in inputs.items()})

    async def get(self, cohort_ids: Collection[int]) -> dict[int, Subtree]:
        ids = sorted(cohort_ids)
        if not ids:
            return {}
        found = await self.redis.hmget(self.key, ids)
        return {i: orjson.loads(raw) for i, raw in zip(ids, found, strict=True) if raw is not None}

    async def every(self) -> dict[int, Subtree]:
        out: dict[int, Subtree] = {}
        async for key, raw in self.redis.hscan_iter(self.key, count=self.SCAN_COUNT):
            out[int(key)] = orjson.loads(raw)
        return out


@dataclass
class CycleRun:
    """One cycle as its batches see it."""

    id: str
    now: datetime  # the cycle's instant: every entry it writes is computed as of it
    inputs: SummaryInputs
    # Tags of what the batches run here rewrote (the cycle pools the written keys of
    # every batch's result instead: batches may run in other processes).
    rewritten: set[str] = field(default_factory=set)


async def cohort_batch(
    service: RefreshService, run: CycleRun, cohort_ids: Sequence[int], guard: Guard | None
) -> dict[str, Any]:
    built = await service.live(run.now).cohorts(list(cohort_ids))
    complete = {service.keys.cohort(i): s for i, s in built.items() if "unavailable" not in s}
    await service.write(complete, run.rewritten, guard)
    # With each cohort's list row: the directors' batches write their list index too.
    await run.inputs.put({i: {**summary_inputs(s), "row": list_row(s)} for i, s in built.items()})
    return {
        "built": sorted(built),
        "incomplete": sorted(i for i, s in built.items() if "unavailable" in s),
        "written": sorted(complete),
    }


async def director_batch(
    service: RefreshService, run: CycleRun, people: Sequence[Person], guard: Guard | None
) -> dict[str, Any]:
    if any(role == ADMIN for _, role, *_ in people):
        inputs = await run.inputs.every()  # an admin's summary pools every cohort
    else:
        inputs = await run.inputs.get({i for *_, ids in people for i in ids})
    entries: dict[str, Subtree] = {}
    scopes: dict[Caller, list[int]] = {}
    summaries: list[str] = []
    for user_id, role, name, email, ids in people:
        caller = Caller(user_id, role)
        profile = {"id": user_id, "name": name, "email": email, "role": role}
        # Admins share one scope and summary (one key): the same content each time.
        mine = service.director_entries(caller, profile, ids, inputs, run.now)
        entries.update(mine)
        scopes[caller] = ids
        if service.keys.summary(caller) in mine:
            summaries.append(mine[service.keys.summary(caller)]["computed_at"])
    await service.write_directors(scopes, entries, run.rewritten, guard)
    return {
        "directors": sum(1 for _, role, *_ in people if role == DIRECTOR),
        "oldest_summary_at": min(summaries, default=None),
        "written": sorted(entries),
    }


async def dashboard_batch(
    services: "Services", run: CycleRun, callers: Sequence[list[Any]], guard: Guard | None
) -> dict[str, Any]:
    people = [Caller(user_id, role) for user_id, role in callers]
    written = await AnswerBuilder(services).dashboards_of(people, run.now, guard)
    return {"callers": len(people), "written": sorted(written)}


async def answer_batch(
    services: "Services", run: CycleRun, payload: dict[str, Any], guard: Guard | None
) -> dict[str, Any]:
    chosen = [(key, used_at) for key, used_at in payload["chosen"]]
    outcome, dropped = await AnswerBuilder(services).rebuild(chosen, payload["deadline"], guard)
    return {
        "rebuilt": outcome.rebuilt,
        "over_budget": outcome.over_budget,
        "failed": outcome.failed,
        "gone": outcome.gone,
        "dropped": sorted(dropped),
    }


Work = Callable[["Services", CycleRun, Any, Guard | None], Awaitable[dict[str, Any]]]


def _refreshing(
    batch: Callable[[RefreshService, CycleRun, Any, Guard | None], Awaitable[dict[str, Any]]],
) -> Work:
    def work(
        services: "Services", run: CycleRun, payload: Any, guard: Guard | None
    ) -> Awaitable[dict[str, Any]]:
        assert services.refresh is not None
        return batch(services.refresh, run, payload, guard)

    return work


WORK: dict[str, Work] = {
    "cohorts": _refreshing(cohort_batch),
    "directors": _refreshing(director_batch),
    "dashboards": dashboard_batch,
    "answers": answer_batch,
}
