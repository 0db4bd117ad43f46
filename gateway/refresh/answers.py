"""The answer phase of a refresh cycle: stored answers prewarmed, and replaced rather
than dropped.

After the subtrees of a full cycle are written:
1. the dashboard's own pages opened without arguments (DirectorSummary, CohortList) are
   built for every director and admin and stored, whether or not they were asked for;
2. every other stored answer built from a rewritten subtree is rebuilt in place, for the
   same caller, document and variables, read from the request stored with it: so a
   cohort detail a director opened stays a hit across cycles. An answer is rebuilt only
   while its first request is younger than `answer_rebuild_window_s`, and only when its
   document is one of the dashboard's operations or in the persisted-query manifest;
   the others are dropped, to be executed again on their next request.
"""

import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from graphql import OperationType, get_operation_ast
from strawberry.types.graphql import OperationType as StrawberryOperationType

from gateway import metrics
from gateway.auth import AuthError, confirm_identity
from gateway.cache.answers import AnswerId, AnswerRequest, operation_label
from gateway.documents.dashboard import dashboard_operations
from gateway.documents.limits import LimitExceeded, prepared_schema
from gateway.documents.persisted import load_manifest
from gateway.refresh.service import Guard
from resolvers.caller import Caller

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger("gateway.refresh.answers")

# The pages opened without arguments; a cohort detail needs an id and is stored on first use.
PREWARM_OPERATIONS = ("DirectorSummary", "CohortList")
READ_BATCH = 500
# The cycle's guard (its lease) is confirmed before every this many answers are built.
GUARD_EVERY = 25


@dataclass
class Replaced:
    """What became of the stored answers built from what a cycle rewrote."""

    rebuilt: int = 0  # rebuilt in place, for the same caller and key
    unused: int = 0  # dropped: not asked for within the window (or evicted already)
    over_cap: int = 0  # dropped: past GATEWAY_ANSWER_REBUILD_MAX, least recently used
    over_budget: int = 0  # dropped: the cycle's share of the interval ran out
    failed: int = 0  # dropped: could not be rebuilt (an error, a lost scope, a limit)
    gone: int = 0  # expired or evicted while the cycle ran
    seconds: float = 0.0  # spent on them (bounded by the share)

    @property
    def dropped(self) -> int:
        return self.unused + self.over_cap + self.over_budget + self.failed + self.gone


@dataclass
class AnswerReport:
    callers: int
    stored: int
    seconds: float
    replaced: Replaced = field(default_factory=Replaced)

    @property
    def rebuilt(self) -> int:
        return self.replaced.rebuilt

    @property
    def dropped(self) -> int:
        return self.replaced.dropped

    def log(self) -> None:
        """The answer phase's one log line (the bench reads it from a worker's log)."""
        log.info(
            "prewarmed responses",
            extra={
                "callers": self.callers,
                "stored": self.stored,
                "rebuilt": self.rebuilt,
                "dropped": self.dropped,
                "remembered_s": round(self.replaced.seconds, 3),
                "duration_s": round(self.seconds, 3),
            },
        )


class AnswerBuilder:
    """Executes stored operations outside a request, as the endpoint does for one."""

    def __init__(self, services: "Services") -> None:
        settings = services.settings
        assert services.answers is not None
        self.services = services
        self.answers = services.answers
        self.settings = settings
        self.operations = dashboard_operations()
        self.documents = {op.sha256: op.body for op in self.operations.values()}
        if settings.persisted_manifest:
            self.documents.update(load_manifest(settings.persisted_manifest))
        # Each document parsed and validated once, not once per caller.
        self.preparer, self.schema = prepared_schema(services.schema, settings)

    async def build(self, key: str, request: AnswerRequest, used_at: float | None = None) -> bool:
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
            self.preparer.check(prepared, operation, request.variables)
        except LimitExceeded:
            return False
        # The answer's own instant: its lifetime is counted from when it is stored.
        now = self.services.clock()
        context = self.services.make_context(
            request.caller, "prewarm", now, enqueue_refreshes=False
        )
        try:  # never for a caller the users table no longer confirms (gateway/auth.py)
            await confirm_identity(request.caller, context.source)
        except AuthError:
            return False
        result = await self.schema.execute(
            document,
            variable_values=request.variables,
            context_value=context,
            operation_name=request.operation_name,
            allowed_operation_types={StrawberryOperationType.QUERY},
        )
        if result.errors:
            return False
        # A rebuild is not a use (used_at): the answer ages out of the window unasked.
        return await self.answers.keep(
            key,
            request,
            result.data,
            context.source,
            self.settings,
            now,
            operation=operation_label(operation),
            used_at=used_at,
        )

    def dashboard_key(self, caller: Caller, name: str) -> str:
        return self.answers.key(caller, AnswerId.of(self.operations[name].sha256, name, None))

    async def dashboards_of(
        self, callers: Sequence[Caller], now: datetime, guard: Guard | None = None
    ) -> set[str]:
        """These callers' argument-less pages, stored: the keys written."""
        now_s = now.timestamp()
        written: set[str] = set()
        for n, caller in enumerate(callers):
            if guard is not None and n % GUARD_EVERY == 0:
                await guard()
            for name in PREWARM_OPERATIONS:
                sha256 = self.operations[name].sha256
                key = self.dashboard_key(caller, name)
                request = AnswerRequest(caller.user_id, caller.role, sha256, name, {}, now_s)
                if await self.build(key, request):
                    written.add(key)
        return written

    async def select(self, tags: Collection[str], done: set[str], now: datetime) -> "Selection":
        """Which of the answers tagged with `tags` (except `done`) a cycle rebuilds: those
        asked for within the window, most recently used first, up to
        GATEWAY_ANSWER_REBUILD_MAX (each with when it was last used)."""
        settings = self.settings
        by_tag = await self.services.kv.members(sorted(tags))
        pending = sorted(set().union(*by_tag.values()) - done)
        used: dict[str, float] = {}
        for start in range(0, len(pending), READ_BATCH):
            used.update(await self.answers.last_used(pending[start : start + READ_BATCH]))
        now_s = now.timestamp()
        recent = sorted(
            (k for k, at in used.items() if now_s - at <= settings.answer_rebuild_window_s),
            key=lambda k: (-used[k], k),
        )
        chosen = recent[: settings.answer_rebuild_max]
        return Selection(
            by_tag,
            [(key, used[key]) for key in chosen],
            Replaced(unused=len(pending) - len(recent), over_cap=len(recent) - len(chosen)),
            set(pending) - set(chosen),
        )

    async def rebuild(
        self, chosen: Sequence[tuple[str, float]], deadline: float, guard: Guard | None = None
    ) -> tuple[Replaced, set[str]]:
        """Rebuilds these answers in place until `deadline` (Unix seconds, the cycle's share
        of the interval): what was rebuilt, and the keys to drop."""
        outcome = Replaced()
        dropped: set[str] = set()
        for start in range(0, len(chosen), READ_BATCH):
            part = chosen[start : start + READ_BATCH]
            keys = [key for key, _ in part]
            if time.time() > deadline:
                outcome.over_budget += len(keys)
                dropped.update(keys)
                continue
            stored_all = await self.answers.get_stored(keys)
            for n, ((key, used_at), stored) in enumerate(zip(part, stored_all, strict=True)):
                if guard is not None and n % GUARD_EVERY == 0:
                    await guard()
                if stored is None:  # expired or evicted meanwhile: nothing to replace
                    outcome.gone += 1
                    dropped.add(key)
                    continue
                if time.time() > deadline:
                    outcome.over_budget += 1
                    dropped.add(key)
                    continue
                request = AnswerRequest.decode(stored.request)
                if (
                    request is not None
                    # Never rebuilt under another key than its own caller's request makes.
                    and self.answers.key(request.caller, request.answer_id) == key
                    and await self.build(key, request, used_at=used_at)
                ):
                    outcome.rebuilt += 1
                else:
                    outcome.failed += 1
                    dropped.add(key)
        return outcome, dropped

    async def finish(
        self, selection: "Selection", outcome: Replaced, dropped: set[str], seconds: float
    ) -> Replaced:
        """Drops what was not rebuilt; counts the outcome."""
        dropped = dropped | selection.dropped
        kv = self.services.kv
        if dropped:
            # Untagged before deleted: a request storing one of these keys in between keeps
            # its fresh tags (only its answer goes), so no stored answer is ever untagged.
            await kv.untag({tag: found & dropped for tag, found in selection.by_tag.items()})
            await kv.delete(*sorted(dropped))
            await self.answers.forget(dropped)
        total = Replaced(
            rebuilt=outcome.rebuilt,
            unused=selection.outcome.unused,
            over_cap=selection.outcome.over_cap,
            over_budget=outcome.over_budget,
            failed=outcome.failed,
            gone=outcome.gone,
            seconds=seconds,
        )
        for name in ("rebuilt", "unused", "over_cap", "over_budget", "failed", "gone"):
            metrics.ANSWER_REBUILDS.labels(name).inc(getattr(total, name))
        return total


@dataclass
class Selection:
    """The answers a cycle rebuilds (`chosen`, with when each was last used), those it
    drops without rebuilding, and the tags they were found under."""

    by_tag: dict[str, set[str]]
    chosen: list[tuple[str, float]]
    outcome: Replaced
    dropped: set[str]
