"""Stored answers after a refresh cycle: prewarmed, and replaced rather than dropped.

After the subtrees of a full cycle are written (`refresh_cycle`):
1. the dashboard's own pages opened without arguments (DirectorSummary, CohortList) are
   built for every director and admin and stored, whether or not they were asked for;
2. every other stored answer built from a rewritten subtree is rebuilt in place, for the
   same caller, document and variables, read from the request stored with it: so a
   cohort detail a director opened stays a hit across cycles. An answer is rebuilt only
   while its first request is younger than `answer_rebuild_window_s`, and only when its
   document is one of the dashboard's operations or in the persisted-query manifest;
   the others are dropped, to be executed again on their next request.

While the cycle runs, the answers it is about to replace keep being served (their bytes
are those of the previous cycle, with its computedAt); a webhook or on-demand refresh
still drops the answers built from what it rewrites at once.
"""

import asyncio
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from graphql import OperationType, get_operation_ast
from sqlalchemy import select
from strawberry.types.graphql import OperationType as StrawberryOperationType

from gateway.cache.kv import CacheUnavailable
from gateway.documents.limits import LimitExceeded, prepared_schema
from gateway.documents.persisted import dashboard_operations, load_manifest
from gateway.refresh.service import CycleReport
from gateway.cache.answers import AnswerRequest, StoredResponse, encode_answer, etag_for, expires_at
from gateway.services import Services
from loaders.programs import users
from resolvers.subtrees import Caller

log = logging.getLogger("gateway.refresh.cycle")

# The pages opened without arguments; a cohort detail needs an id and is stored on first use.
PREWARM_OPERATIONS = ("DirectorSummary", "CohortList")
DEFAULT_VARIABLES = b"{}"


@dataclass
class PrewarmReport:
    callers: int
    stored: int
    seconds: float
    rebuilt: int = 0  # other answers built from rewritten subtrees, rebuilt in place
    dropped: int = 0  # answers built from rewritten subtrees that could not be rebuilt


class AnswerBuilder:
    """Executes stored operations outside a request, as the endpoint does for one."""

    def __init__(self, services: Services) -> None:
        settings = services.settings
        assert services.responses is not None
        self.services = services
        self.responses = services.responses
        self.settings = settings
        self.operations = dashboard_operations()
        self.documents = {op.sha256: op.body for op in self.operations.values()}
        if settings.persisted_manifest:
            self.documents.update(load_manifest(settings.persisted_manifest))
        # Each document parsed and validated once, not once per caller.
        self.preparer, self.schema = prepared_schema(services.schema, settings)

    async def build(self, key: str, request: AnswerRequest) -> bool:
        """Executes `request` as its caller and stores the answer under `key`."""
        document = self.documents.get(request.sha256)
        if document is None:
            return False
        try:  # the endpoint's checks: limits, and queries only (these are GETs)
            prepared = self.preparer.prepare(document)
            if prepared.document is None or prepared.errors:
                return False
            operation = get_operation_ast(prepared.document, request.operation_name)
            if operation is None or operation.operation != OperationType.QUERY:
                return False
            self.preparer.check(prepared.document, operation, request.variables)
        except LimitExceeded:
            return False
        caller = request.caller
        context = self.services.make_context(caller, "prewarm", enqueue_refreshes=False)
        result = await self.schema.execute(
            document,
            variable_values=request.variables,
            context_value=context,
            operation_name=request.operation_name,
            allowed_operation_types={StrawberryOperationType.QUERY},
        )
        source: Any = context.source
        until = expires_at(result.data, self.settings.refresh_interval_s)
        if result.errors or until is None or not getattr(source, "answer_cacheable", False):
            return False
        raw = encode_answer(result.data)
        return await self.responses.put(
            key,
            StoredResponse(etag_for(raw), until, raw, request.encode()),
            source.dependencies,
            self.settings.fresh_s,
            self.services.clock(),
            source.dependency_versions,
        )

    async def dashboards(self) -> tuple[int, int, set[str]]:
        """Every director's and admin's argument-less pages: (callers, stored, keys)."""
        people = await self.services.upstream.fetch(
            "programs",
            select(users.c.id, users.c.role)
            .where(users.c.role.in_(("director", "admin")))
            .order_by(users.c.id),
        )
        now_s = self.services.clock().timestamp()
        written: set[str] = set()
        for person in people:
            caller = Caller(person.id, person.role)
            for name in PREWARM_OPERATIONS:
                operation = self.operations[name]
                key = self.responses.key(caller, operation.sha256, name, DEFAULT_VARIABLES)
                request = AnswerRequest(
                    caller.user_id, caller.role, operation.sha256, name, {}, now_s
                )
                if await self.build(key, request):
                    written.add(key)
        return len(people), len(written), written

    async def replace(self, tags: Collection[str], done: set[str]) -> tuple[int, int]:
        """Rebuilds the answers tagged with `tags` (except `done`); drops what it cannot.

        Returns (rebuilt, dropped)."""
        kv = self.services.kv
        by_tag = await kv.members(sorted(tags))
        pending = sorted(set().union(*by_tag.values()) - done)
        window_s = self.settings.answer_rebuild_window_s
        now_s = self.services.clock().timestamp()
        rebuilt, dropped = 0, set()
        for start in range(0, len(pending), 500):
            keys = pending[start : start + 500]
            for key, stored in zip(keys, await self.responses.get_stored(keys), strict=True):
                if stored is None:  # expired or dropped meanwhile: nothing to replace
                    dropped.add(key)
                    continue
                request = AnswerRequest.decode(stored.request)
                if (
                    request is not None
                    and now_s - request.requested_at <= window_s
                    # Never rebuilt under another key than its own caller's request makes.
                    and self.responses.key(
                        request.caller,
                        request.sha256,
                        request.operation_name,
                        AnswerRequest.canonical_variables(request.variables),
                    )
                    == key
                    and await self.build(key, request)
                ):
                    rebuilt += 1
                else:
                    dropped.add(key)
        if dropped:
            # Untagged before deleted: a request storing one of these keys in between keeps
            # its fresh tags (only its answer goes), so no stored answer is ever untagged.
            await kv.untag({tag: found & dropped for tag, found in by_tag.items()})
            await kv.delete(*sorted(dropped))
        return rebuilt, len(dropped)


DROP_ATTEMPTS = 3
DROP_RETRY_S = 1.1  # past the Redis circuit breaker's pause (RedisKV.retry_after_s)


async def _drop_answers(services: Services, tags: Collection[str]) -> None:
    """Drops the answers tagged `tags`, retrying past the circuit breaker a failure opens."""
    if not tags:
        return
    for attempt in range(DROP_ATTEMPTS):
        try:
            await services.kv.invalidate(sorted(tags))
            return
        except CacheUnavailable:
            if attempt + 1 < DROP_ATTEMPTS:
                await asyncio.sleep(DROP_RETRY_S)
    log.error(
        "could not drop the answers built from rewritten subtrees; they expire when their "
        "inputs turn stale",
        extra={"tags": len(tags)},
    )


async def prewarm_responses(services: Services, rewritten: Collection[str] = ()) -> PrewarmReport:
    """Stores every director's dashboard pages, then replaces the answers tagged `rewritten`.

    Should anything fail, the answers tagged `rewritten` are dropped instead: an answer
    built from a subtree that was rewritten is never left in place."""
    started = time.perf_counter()
    if services.responses is None:
        return PrewarmReport(0, 0, 0.0)
    try:
        builder = AnswerBuilder(services)
        callers, stored, written = await builder.dashboards()
        rebuilt, dropped = await builder.replace(rewritten, written) if rewritten else (0, 0)
    except BaseException:
        await _drop_answers(services, rewritten)
        raise
    report = PrewarmReport(callers, stored, time.perf_counter() - started, rebuilt, dropped)
    log.info(
        "prewarmed responses",
        extra={
            "callers": report.callers,
            "stored": report.stored,
            "rebuilt": report.rebuilt,
            "dropped": report.dropped,
            "duration_s": round(report.seconds, 3),
        },
    )
    return report


async def refresh_cycle(
    services: Services, progress: Any = None
) -> tuple[CycleReport, PrewarmReport]:
    """A full refresh, then its answers: what the worker's cron, the embedded scheduler and
    `gateway refresh --all --sync` run."""
    assert services.refresh is not None
    rewritten: set[str] = set()
    try:
        report = await services.refresh.refresh_all(progress, rewritten)
    except BaseException:
        # What was rewritten before the failure must not keep its old answers.
        await _drop_answers(services, rewritten)
        raise
    return report, await prewarm_responses(services, rewritten)
