"""This process's subscriptions, and the fan-out of rewrite notices to them.

Each gateway process has one hub. It knows its own connections only: which subscription
watches which scope's dashboard or which cohort. For each rewrite notice (gateway/live/
bus.py delivers them: Redis pub/sub across replicas, or this process in embedded mode):

1. the subscriptions concerned are found in memory (by scope id, cohort id, user id);
   nothing is read for anyone else, and nothing at all between notices;
2. their callers' roles are read from the users table, the authority (one statement):
   a caller whose role changed has every subscription ended (FORBIDDEN) and the
   connection closed;
3. their scopes, summaries and cohorts are read in one pipelined cache read, each key
   once however many subscriptions share it;
4. each subscription is offered its change, its scope checked first (a cohort that left
   the scope ends that cohort's subscription with NOT_FOUND). An admin's dashboard is
   pushed when the admins' summary is rewritten (a cohort's refresh queues it separately),
   naming the cohorts rewritten since.

A subscription holds at most one pending change: a consumer slower than the notices
gets the latest figures and the union of the changed cohort ids when it reads next, never
a queue. Notices that arrive while one is applied are merged into the next one.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from gateway import metrics
from gateway.cache.subtrees import SubtreeCache
from gateway.live.limits import CLOSE_TRY_AGAIN_LATER, Refused, Slots
from gateway.live.notices import Rewrites
from gateway.live.watch import CLOSE_FORBIDDEN, Connection, Pending, Watch
from loaders import programs
from loaders.engines import Upstream, UpstreamUnavailable
from resolvers.caller import ADMIN, Caller
from resolvers.context import SubtreeSource
from resolvers.errors import FORBIDDEN, SERVICE_UNAVAILABLE
from resolvers.errors import not_found as not_found_error

log = logging.getLogger("gateway.live.hub")

ROLE_BATCH_S = 0.005


class Hub:
    def __init__(
        self,
        cache: SubtreeCache,
        upstream: Upstream,
        source: Callable[[datetime], SubtreeSource],
        clock: Callable[[], datetime],
        *,
        max_connections: int,
        max_connections_per_caller: int,
    ) -> None:
        self.cache = cache
        self.keys = cache.keys
        self.upstream = upstream
        self.source = source  # a fresh cache-backed source as of an instant
        self.clock = clock
        self.slots = Slots(max_connections, max_connections_per_caller)
        # Started with the first connection (or by the application's lifespan): listens for
        # notices (gateway/live/bus.py) until stopped.
        self.listener: Callable[[Hub], Any] | None = None
        self.connections: set[Connection] = set()
        self._by_user: dict[int, set[Connection]] = {}
        self._dashboards: dict[str, set[Watch]] = {}  # scope id → dashboard watches
        self._cohorts: dict[int, set[Watch]] = {}  # cohort id → cohort watches
        self._cohorts_by_scope: dict[str, set[Watch]] = {}  # scope id → cohort watches
        self._callers: dict[str, Caller] = {}  # scope id → a caller with that scope
        self._scopes: dict[str, frozenset[int]] = {}  # scope id → its cohort ids, last read
        self._index: dict[int, set[str]] = {}  # cohort id → directors' scope ids with dashboards
        self._shared: dict[str, dict[str, Any]] = {}  # watched subtrees, by key (see _share)
        self._pending: Rewrites | None = None
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()  # set while no notice waits or is being applied
        self._settled.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._role_batch: tuple[asyncio.Future[dict[int, str]], set[int]] | None = None

    # --- connections -------------------------------------------------------------------

    @property
    def full(self) -> bool:
        return self.slots.full

    def take_slot(self) -> None:
        """Reserves one of the process's connection slots (gateway/live/limits.py), held
        until `give_slot` or the connection's `close`; a WebSocket takes one before it is
        accepted."""
        self.slots.take()

    def give_slot(self) -> None:
        self.slots.give()

    async def open(
        self,
        caller: Caller,
        transport: str,
        end: Callable[[int, str], None],
        *,
        slot_taken: bool = False,
    ) -> Connection:
        """Registers a connection of `caller` after checking the limits and the role. Both
        slots are reserved before the first await and given back if this raises; with
        `slot_taken`, the process slot is the caller's own, to give back itself."""
        user_id = caller.user_id
        self.slots.take_caller(user_id)
        if not slot_taken:
            try:
                self.slots.take()
            except Refused:
                self.slots.give_caller(user_id)
                raise
        try:
            await self._check_role(caller)
        except BaseException:  # a refusal, a fault, or the request cancelled meanwhile
            self.slots.give_caller(user_id)
            if not slot_taken:
                self.slots.give()
            raise
        self.start()
        connection = Connection(self, caller, transport, end)
        self.connections.add(connection)
        self._by_user.setdefault(user_id, set()).add(connection)
        metrics.LIVE_CONNECTIONS.labels(transport).inc()
        return connection

    def close(self, connection: Connection) -> None:
        """Gives back the connection's slots (the process's and its caller's)."""
        if connection.closed:
            return
        connection.closed = True
        self.connections.discard(connection)
        user_id = connection.caller.user_id
        self.slots.give_caller(user_id)
        self.slots.give()
        users = self._by_user.get(user_id)
        if users is not None:
            users.discard(connection)
            if not users:
                del self._by_user[user_id]
        metrics.LIVE_CONNECTIONS.labels(connection.transport).dec()

    async def _check_role(self, caller: Caller) -> None:
        """The users table is the authority on role: a token outliving a demotion is refused."""
        try:
            role = await self._role(caller.user_id)
        except UpstreamUnavailable:
            metrics.LIVE_REFUSALS.labels("unverifiable").inc()
            raise Refused(
                "Cannot verify the caller's role now; try again later.",
                SERVICE_UNAVAILABLE,
                CLOSE_TRY_AGAIN_LATER,
                503,
            ) from None
        if role != caller.role:
            metrics.LIVE_REFUSALS.labels("role").inc()
            raise Refused(
                f"User {caller.user_id} is not a {caller.role}.", FORBIDDEN, CLOSE_FORBIDDEN, 403
            )

    async def _role(self, user_id: int) -> str | None:
        """Connections opened within ROLE_BATCH_S share one statement: a storm of
        reconnections (a replica restarting) costs a few statements, not one each."""
        loop = asyncio.get_running_loop()
        batch = self._role_batch
        if batch is None:
            batch = self._role_batch = (loop.create_future(), set())
            loop.call_later(ROLE_BATCH_S, self._read_roles, batch)
        batch[1].add(user_id)
        roles: dict[int, str] = await asyncio.shield(batch[0])
        return roles.get(user_id)

    def _read_roles(self, batch: "tuple[asyncio.Future[dict[int, str]], set[int]]") -> None:
        self._role_batch = None
        done, user_ids = batch

        async def read() -> None:
            try:
                rows = await programs.UserByIdLoader(self.upstream).load_many(sorted(user_ids))
            except Exception as exc:
                done.set_exception(exc)
                done.exception()  # retrieved here; each waiter raises it itself
                return
            done.set_result({row.id: row.role for row in rows if row is not None})

        task = asyncio.ensure_future(read())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- subscriptions -----------------------------------------------------------------

    @asynccontextmanager
    async def watch(self, connection: Connection, cohort_id: int | None) -> AsyncIterator[Watch]:
        """Registered before the current figures are read, so no rewrite falls in between."""
        watch = Watch(self, connection, cohort_id)
        self._add(watch)
        try:
            await self._first(watch)
            yield watch
        finally:
            self._remove(watch)

    async def _first(self, watch: Watch) -> None:
        """The current figures, through a source of its own (its loaders and reads are
        released at once: a subscription keeps none)."""
        now = self.clock()
        source = self.source(now)
        caller = watch.connection.caller
        scope = frozenset(await source.scope(caller))
        self._set_scope(watch.scope_id, scope)
        cohort_id = watch.cohort_id
        if cohort_id is None:
            summary = self._share(self.keys.summary(caller), await source.summary(caller))
            watch.offer(Pending(summary, (), summary["computed_at"], now, 0.0, first=True))
            return
        subtree = (await source.cohorts([cohort_id])).get(cohort_id)
        if cohort_id not in scope or subtree is None:
            raise not_found_error("Cohort", cohort_id)
        subtree = self._share(self.keys.cohort(cohort_id), subtree)
        watch.offer(Pending(subtree, (), subtree["computed_at"], now, 0.0, first=True))

    def _share(self, key: str, entry: dict[str, Any]) -> dict[str, Any]:
        """One decoded copy of each watched subtree version, however many subscriptions
        hold it (a subscription keeps the last figures it sent until the next)."""
        known = self._shared.get(key)
        version = entry.get("version")
        if known is not None and version is not None and known.get("version") == version:
            return known
        self._shared[key] = entry
        return entry

    def _add(self, watch: Watch) -> None:
        scope_id = watch.scope_id
        watch.connection.watches.add(watch)
        self._callers.setdefault(scope_id, watch.connection.caller)
        if watch.cohort_id is None:
            self._dashboards.setdefault(scope_id, set()).add(watch)
            if scope_id in self._scopes and scope_id != ADMIN:
                for cohort_id in self._scopes[scope_id]:
                    self._index.setdefault(cohort_id, set()).add(scope_id)
            field = "dashboard"
        else:
            self._cohorts.setdefault(watch.cohort_id, set()).add(watch)
            self._cohorts_by_scope.setdefault(scope_id, set()).add(watch)
            field = "cohort"
        metrics.LIVE_SUBSCRIPTIONS.labels(field).inc()

    def _remove(self, watch: Watch) -> None:
        scope_id = watch.scope_id
        watch.connection.watches.discard(watch)
        if watch.cohort_id is None:
            _discard(self._dashboards, scope_id, watch)
            if scope_id not in self._dashboards:
                self._unindex(scope_id, self._scopes.get(scope_id, frozenset()))
                self._shared.pop(self.keys.summary(watch.connection.caller), None)
            field = "dashboard"
        else:
            _discard(self._cohorts, watch.cohort_id, watch)
            _discard(self._cohorts_by_scope, scope_id, watch)
            if watch.cohort_id not in self._cohorts:
                self._shared.pop(self.keys.cohort(watch.cohort_id), None)
            field = "cohort"
        if scope_id not in self._dashboards and scope_id not in self._cohorts_by_scope:
            self._scopes.pop(scope_id, None)
            self._callers.pop(scope_id, None)
        metrics.LIVE_SUBSCRIPTIONS.labels(field).dec()

    def _set_scope(self, scope_id: str, scope: frozenset[int]) -> None:
        old = self._scopes.get(scope_id, frozenset())
        self._scopes[scope_id] = scope
        if scope_id == ADMIN or scope_id not in self._dashboards:
            return  # an admin's dashboard is concerned by every cohort: not indexed
        self._unindex(scope_id, old - scope)
        for cohort_id in scope - old:
            self._index.setdefault(cohort_id, set()).add(scope_id)

    def _unindex(self, scope_id: str, cohort_ids: Iterable[int]) -> None:
        for cohort_id in cohort_ids:
            _discard(self._index, cohort_id, scope_id)

    async def read(self, watch: Watch, now: datetime) -> dict[str, Any] | None:
        """A watch's subtree read on its own (when the fan-out could not read it)."""
        source = self.source(now)
        caller = watch.connection.caller
        if watch.cohort_id is None:
            return await source.summary(caller)
        if watch.cohort_id not in set(await source.scope(caller)):
            watch.fail(not_found_error("Cohort", watch.cohort_id))
            return None
        return (await source.cohorts([watch.cohort_id])).get(watch.cohort_id)

    # --- notices -----------------------------------------------------------------------

    def notify(self, rewrites: Rewrites) -> None:
        """A notice (from the bus): applied by the fan-out task, merged with any waiting."""
        metrics.LIVE_NOTICES.inc()
        if not self.connections:
            return  # nothing here to tell
        if self._pending is None:
            self._pending = rewrites
        else:
            self._pending.merge(rewrites)
        self._settled.clear()
        self._wake.set()

    async def settled(self) -> None:
        """Until every notice received so far has been applied."""
        await self._settled.wait()

    def resync(self) -> None:
        """Notices may have been missed (the bus reconnected): re-read everything watched."""
        self.notify(Rewrites(resync=True))

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks.append(asyncio.ensure_future(self._run()))
        if self.listener is not None:
            self._tasks.append(asyncio.ensure_future(self.listener(self)))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            rewrites, self._pending = self._pending, None
            if rewrites:
                started = time.perf_counter()
                try:
                    await self.apply(rewrites)
                except Exception:
                    log.exception("could not apply a rewrite notice")
                metrics.LIVE_FANOUT_SECONDS.observe(time.perf_counter() - started)
            if self._pending is None:
                self._settled.set()

    async def apply(self, rewrites: Rewrites) -> None:
        """Offers each subscription concerned its change (see the module's docstring)."""
        now = self.clock()
        if rewrites.resync:
            everything = Rewrites(
                summaries=set(self._dashboards),
                scopes=set(self._scopes),
                users=set(self._by_user),
                published_at=rewrites.published_at,
            )
            everything.merge(rewrites)
            rewrites = everything
        dashboards = {s for s in rewrites.summaries | rewrites.scopes if s in self._dashboards}
        for cohort_id in rewrites.cohorts:
            dashboards |= self._index.get(cohort_id, set())
        if (rewrites.cohorts or rewrites.resync) and ADMIN in self._dashboards:
            dashboards.add(ADMIN)
        cohort_ids = {c for c in rewrites.cohorts if c in self._cohorts}
        if rewrites.resync:
            cohort_ids = set(self._cohorts)
        rechecked = {s for s in rewrites.scopes if s in self._cohorts_by_scope}
        scope_ids = (
            dashboards | rechecked | {w.scope_id for c in cohort_ids for w in self._cohorts[c]}
        )
        connections = {w.connection for s in dashboards for w in self._dashboards[s]}
        connections |= {w.connection for s in rechecked for w in self._cohorts_by_scope[s]}
        connections |= {w.connection for c in cohort_ids for w in self._cohorts[c]}
        for user_id in rewrites.users:
            connections |= self._by_user.get(user_id, set())
        if not connections:
            return
        # Subscriptions may end during the awaits below: their callers are kept here.
        callers = {s: self._callers[s] for s in scope_ids}
        await self._check_roles(connections)
        scopes, summaries, cohorts = await self._read(callers, dashboards, cohort_ids, now)
        # From here on, no await: each watch is offered what was just read.
        published_at = rewrites.published_at
        for scope_id in dashboards:
            scope = scopes[scope_id]
            old = self._scopes.get(scope_id, scope)
            named = {c: t for c, t in rewrites.cohorts.items() if c in scope}
            changed = set(named) | (old ^ scope)
            if rewrites.resync:
                changed = set(scope)
            summary = summaries.get(scope_id)
            stamp = max(named.values(), default=summary["computed_at"] if summary else "")
            change = Pending(summary, changed, stamp, now, published_at, rewrites.resync)
            # The admins' summary pools every cohort: a cohort's refresh queues it as a
            # refresh of its own (gateway/refresh/service.py). Their dashboards wait for it,
            # then get one update naming what was rewritten meanwhile.
            held = scope_id == ADMIN and ADMIN not in rewrites.summaries and not rewrites.resync
            for watch in list(self._dashboards.get(scope_id, ())):
                watch.offer(change, wake=not held)
        for scope_id in scope_ids:
            if scope_id in self._callers:  # still watched
                self._set_scope(scope_id, scopes[scope_id])
        for cohort_id in cohort_ids:
            subtree = cohorts.get(cohort_id)
            for watch in list(self._cohorts.get(cohort_id, ())):
                if cohort_id not in scopes[watch.scope_id]:
                    watch.fail(not_found_error("Cohort", cohort_id))
                else:
                    stamp = subtree["computed_at"] if subtree else ""
                    watch.offer(Pending(subtree, (), stamp, now, published_at))
        for scope_id in rechecked:
            for watch in list(self._cohorts_by_scope.get(scope_id, ())):
                if watch.cohort_id not in scopes[scope_id]:
                    watch.fail(not_found_error("Cohort", watch.cohort_id))

    async def _check_roles(self, connections: set[Connection]) -> None:
        """One statement for every caller concerned; a caller whose role is no longer the
        token's is revoked. When the users table cannot be read, the check waits for the
        next notice (the scope check still applies)."""
        user_ids = sorted({c.caller.user_id for c in connections if not c.closed})
        try:
            rows = await programs.UserByIdLoader(self.upstream).load_many(user_ids)
        except UpstreamUnavailable:
            log.warning("could not check the roles of %d subscribers", len(user_ids))
            return
        roles = {row.id: row.role for row in rows if row is not None}
        for connection in connections:
            caller = connection.caller
            if not connection.closed and roles.get(caller.user_id) != caller.role:
                metrics.LIVE_REFUSALS.labels("role_changed").inc()
                connection.revoke(f"User {caller.user_id} is no longer a {caller.role}.")

    async def _read(
        self,
        callers: dict[str, Caller],
        dashboards: set[str],
        cohort_ids: set[int],
        now: datetime,
    ) -> tuple[dict[str, frozenset[int]], dict[str, dict[str, Any]], dict[int, dict[str, Any]]]:
        """The scopes of `callers` (by scope id), the summaries of `dashboards`, the cohorts:
        one pipelined read. A missing scope is computed (and stored) through a cache-backed
        source, as a request would; a missing summary or cohort is left to the subscription
        to read when it takes the change."""
        keys = self.keys
        wanted = [
            *(keys.scope(caller) for caller in callers.values()),
            *(keys.summary(callers[s]) for s in dashboards),
            *(keys.cohort(c) for c in cohort_ids),
        ]
        found = await self.cache.read(wanted, "live")
        scopes: dict[str, frozenset[int]] = {}
        summaries: dict[str, dict[str, Any]] = {}
        cohorts: dict[int, dict[str, Any]] = {}
        source: SubtreeSource | None = None
        for scope_id, caller in callers.items():
            entry = found.get(keys.scope(caller))
            if entry is None:
                source = source or self.source(now)
                scopes[scope_id] = frozenset(await source.scope(caller))
            else:
                scopes[scope_id] = frozenset(entry["cohort_ids"])
        for scope_id in dashboards:
            key = keys.summary(callers[scope_id])
            if key in found:  # else the watch reads it itself
                summaries[scope_id] = self._share(key, found[key])
        for cohort_id in cohort_ids:
            key = keys.cohort(cohort_id)
            if key in found:
                cohorts[cohort_id] = self._share(key, found[key])
        return scopes, summaries, cohorts


def _discard(index: dict[Any, set[Any]], key: Any, member: Any) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(member)
        if not members:
            del index[key]
