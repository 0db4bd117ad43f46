"""The gateway as a cluster on one machine (loopback only): `gateway serve` and
`gateway worker` processes sharing one Redis and one PostgreSQL.

- a cold key asked through two gateways at once is computed once (cross-process
  single-flight, counted with each gateway's /metrics), including when the owner writes
  and releases between a waiter's two reads — the test forces that interleaving;
- a refresh cycle (every 5 s here instead of 5 min) refreshes each director exactly once
  per tick although two workers run the cron (JSON logs of both workers, and every SET
  Redis ran, seen through MONITOR);
- a signed webhook received by either gateway, or by both, triggers one refresh;
- graceful shutdown: a gateway drains its in-flight request on SIGTERM; a worker
  finishes its running jobs on SIGTERM (job_completion_wait) and exits, nothing is run
  twice. Without that wait arq cancels jobs at once, and a cancel that lands in a Redis
  write is lost on Python 3.11 (CANCEL_LOST, kept as an xfail of that runtime);
- a worker killed (SIGKILL) mid-cycle is covered by the other's next cron cycle.

Every process writes JSON logs to its own file (GATEWAY_LOG_FORMAT=json); a failing
assertion prints where they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import redis
from arq.connections import ArqRedis
from sqlalchemy.engine import make_url

from gateway.auth import mint_token
from gateway.cache.keys import (
    CYCLE_LEASE_KEY,
    CYCLE_NEXT_KEY,
    CYCLE_OPEN_KEY,
    JOB_REFRESH_ALL,
    QUEUE_NAME,
    Keys,
    cache_version,
)
from gateway.settings import Settings
from resolvers.caller import Caller
from resolvers.schema import build_schema
from tests.harness.processes import (
    HOST,
    GatewayProcess,
    WorkerProcess,
    child_env,
    epoch,
    running,
)
from tests.harness.redis_link import RedisLinkProxy, RedisMonitor, resp_command
from tests.harness.servers import RedisServer
from tests.harness.waiting import CEILING_S, async_wait_until, run_sync, wait_until
from tests.support import dataset
from tests.support.dataset import ADMIN, DANA, DREW, NORA
from tests.support.gateway import signed
from tests.support.queries import COHORT_DETAIL, SUMMARY
from workers import jobs

pytestmark = pytest.mark.postgres

JWT_SECRET = "cluster-test-jwt-secret-0123456789abcdef"
WEBHOOK_SECRET = "cluster-test-webhook-secret"
TOKENS = Settings(jwt_secret=JWT_SECRET, _env_file=None)
# Two Redis databases of the session's server: one per cluster, so neither sees the
# other's queue. arq's own keys (arq:in-progress:…) are per database too.
SMALL_DB, BIG_DB, UNIT_DB = 1, 2, 3
# The 5-minute cycle, shortened: ticks at :00, :05, … (small dataset, a cycle ≈ 0.2 s),
# and every 15 s for 204 cohorts (a cycle ≈ 0.5 s on an idle box, ten times that on a
# loaded one). The interval is also the freshness limit, so a cycle must end well within
# it: otherwise the prewarm finds the cycle's own entries stale and enqueues a refresh
# per cohort it reads. The worker-loss tests hold their cycles on a lock rather than on
# their length, and two cycles must end within the 20 s of
# GATEWAY_WORKER_STOP_WAIT_S after a SIGTERM, however loaded the machine.
SMALL_INTERVAL_S, BIG_INTERVAL_S = 5, 15
CLONES = 200
BIG_COHORTS = CLONES + 4
# Long enough that a statement blocked on purpose (the drain test, the forced
# interleaving) does not time out, however slowly the test reaches its release.
QUERY_TIMEOUT_S = str(int(CEILING_S))
ARQ_IN_PROGRESS = "arq:in-progress:"  # arq.constants.in_progress_key_prefix
CRON_REFRESH_ALL = "cron:refresh_all"  # the cron job's name in workers/worker.py
SUMMARY_OWNERS = {DANA: "director", DREW: "director", NORA: "director", ADMIN: "admin"}
ME = "{ me { id name } }"

CANCEL_LOST = (
    "Python 3.11's asyncio.wait_for returns the inner result instead of raising when it is "
    "cancelled after the inner future finished; redis-py wraps every send in wait_for "
    "(socket_timeout is set in gateway/services.py make_redis), so a refresh job cancelled "
    "while writing to Redis keeps running to its end. The worker therefore lets jobs "
    "finish on SIGTERM (job_completion_wait in workers/worker.py) before arq cancels "
    "anything; Python >= 3.12 fixes the runtime."
)


@functools.cache
def keys() -> Keys:
    """The cache keys every process uses (their version comes from the schema)."""
    return Keys(cache_version(build_schema().as_str()))


def auth(user_id: int, role: str = "director") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(TOKENS, user_id, role, 600)}"}


def common_settings(redis_url: str, interval_s: int) -> dict[str, str]:
    return {
        "redis_url": redis_url,
        "refresh_interval_s": str(interval_s),
        "jwt_secret": JWT_SECRET,
        "webhook_secret": WEBHOOK_SECRET,
        "upstream_query_timeout_s": QUERY_TIMEOUT_S,
    }


@dataclass
class Cluster:
    database_url: str
    redis_server: RedisServer
    db: int
    log_dir: Path
    interval_s: int
    gateways: list[GatewayProcess] = field(default_factory=list)
    workers: list[WorkerProcess] = field(default_factory=list)
    proxy: RedisLinkProxy | None = None  # gateway-2's link to Redis

    @property
    def redis_url(self) -> str:
        return f"redis://{HOST}:{self.redis_server.port}/{self.db}"

    def redis(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.redis_server.port, db=self.db)

    def flush(self) -> None:
        with self.redis() as client:
            client.flushdb()

    def gateway(self, name: str, redis_url: str | None = None) -> GatewayProcess:
        settings = common_settings(redis_url or self.redis_url, self.interval_s)
        return GatewayProcess(name, child_env(self.database_url, **settings), self.log_dir)

    def worker(self, name: str) -> WorkerProcess:
        settings = common_settings(self.redis_url, self.interval_s)
        return WorkerProcess(name, child_env(self.database_url, **settings), self.log_dir)

    def where(self) -> str:
        return f"logs in {self.log_dir}"


def new_cluster(
    redis_server: RedisServer, database_url: str, db: int, log_dir: Path, interval_s: int
) -> Cluster:
    redis_server.start()  # an earlier test may have stopped or killed it
    cluster = Cluster(database_url, redis_server, db, log_dir, interval_s)
    cluster.flush()
    return cluster


def enqueue_refresh_all(cluster: Cluster, job_id: str, function: str = JOB_REFRESH_ALL) -> None:
    async def enqueue() -> None:
        client = ArqRedis.from_url(cluster.redis_url)
        try:
            job = await client.enqueue_job(function, _job_id=job_id, _queue_name=QUEUE_NAME)
            assert job is not None, f"{job_id} is already queued"
        finally:
            await client.aclose()

    run_sync(enqueue)


def summaries(cluster: Cluster) -> dict[int, dict[str, Any]]:
    k = keys()
    with cluster.redis() as client:
        raw = client.mget([k.summary(Caller(u, role)) for u, role in SUMMARY_OWNERS.items()])
    return {u: orjson.loads(v) for u, v in zip(SUMMARY_OWNERS, raw, strict=True) if v}


def refresh_stamp(cluster: Cluster) -> dict[str, Any] | None:
    with cluster.redis() as client:
        raw = client.get(keys().refresh_stamp())
    return orjson.loads(raw) if raw else None


def jobs_settled(cluster: Cluster, workers: list[WorkerProcess]) -> bool:
    """Nothing queued, and every job a worker started has ended: no job is left to run."""
    with cluster.redis() as client:
        if client.zcard(QUEUE_NAME):
            return False
    started = sum(len(w.messages(" → ")) for w in workers)
    # arq's lines for a started job that ended: done, failed, or cancelled / retried.
    ended = sum(len(w.messages(r" ← | ! \S+ failed, | ↻ ")) for w in workers)
    return started == ended


@contextlib.asynccontextmanager
async def table_locked(database_url: str, table: str) -> AsyncIterator[None]:
    """`LOCK TABLE` in an open transaction for the block: whatever reads the table waits
    until the block ends (every refresh cycle reads `users`, names of mentors and
    directors; every cohort subtree reads `cohorts`)."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            await connection.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await connection.close()


def instant(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# --- two gateways and two workers on the hand-built dataset ---------------------------


@pytest.fixture(scope="class")
def small(redis_server, postgres_url_factory, tmp_path_factory) -> Iterator[Cluster]:
    """Two gateways on one PostgreSQL database and one Redis database; no worker yet."""
    url = postgres_url_factory("cluster")
    run_sync(lambda: dataset.load(url))
    cluster = new_cluster(
        redis_server, url, SMALL_DB, tmp_path_factory.mktemp("cluster"), SMALL_INTERVAL_S
    )
    # gateway-2 reaches Redis through a proxy: transparent, unless a test holds a command.
    with RedisLinkProxy(redis_server.port) as proxy:
        cluster.proxy = proxy
        cluster.gateways = [
            cluster.gateway("gateway-1"),
            cluster.gateway("gateway-2", redis_url=proxy.url(SMALL_DB)),
        ]
        with running(*cluster.gateways):
            yield cluster


@pytest.fixture(scope="class")
def small_workers(small: Cluster) -> Iterator[list[WorkerProcess]]:
    """Two workers joining the small cluster (its cron every SMALL_INTERVAL_S)."""
    small.workers = [small.worker("worker-1"), small.worker("worker-2")]
    with running(*small.workers):
        warmed(small)
        yield small.workers


def warmed(cluster: Cluster) -> None:
    """Workers that find the cache cold run a cycle at once: the tests start after it."""
    wait_until(lambda: refresh_stamp(cluster), "the cold-start cycle", poll_s=0.2)
    with cluster.redis() as client:
        wait_until(lambda: not client.exists(CYCLE_LEASE_KEY), "the cycle to end")


def quiet_moment(cluster: Cluster) -> None:
    """Until no cycle runs or waits, and the next cron tick is at least 4 s away: a test
    that needs its own cycles alone starts then."""

    def quiet() -> bool:
        into_period = time.time() % cluster.interval_s
        if not 2.0 <= into_period <= cluster.interval_s - 4.0:
            return False
        with cluster.redis() as client:
            return not client.exists(CYCLE_LEASE_KEY, CYCLE_NEXT_KEY)

    wait_until(quiet, "a moment without cycles", poll_s=0.1)


class TestTwoGatewaysTwoWorkers:
    async def test_cold_key_through_both_gateways_is_computed_once(self, small: Cluster) -> None:
        one, two = small.gateways
        assert small.proxy is not None
        k = keys()
        detail = {"query": COHORT_DETAIL, "variables": {"id": 101}}
        me = {"query": ME}
        headers = auth(DANA)
        cohort_key, user_key = k.cohort(101), k.user(DANA)
        failures: list[str] = []

        async def statements() -> dict[str, float]:
            return {g.name: await asyncio.to_thread(g.statements) for g in small.gateways}

        async def cohort_misses() -> dict[str, float]:
            return {
                g.name: await asyncio.to_thread(
                    g.metric_sum, "gateway_cache_requests_total", kind="cohort", result="miss"
                )
                for g in small.gateways
            }

        def forget_cohort() -> None:
            with small.redis() as client:
                client.delete(cohort_key)

        async def post(gateway: GatewayProcess, body: dict[str, Any]) -> httpx.Response:
            response = await http.post(f"{gateway.url}/graphql", json=body, headers=headers)
            assert response.status_code == 200, response.text
            assert "errors" not in response.json(), response.text
            return response

        async def alone(gateway: GatewayProcess, body: dict[str, Any], make_cold: Any) -> float:
            make_cold()
            before = await asyncio.to_thread(gateway.statements)
            await post(gateway, body)
            return await asyncio.to_thread(gateway.statements) - before

        async def at_once(
            make_cold: Any, hold: bool = False
        ) -> tuple[dict[str, float], dict[str, float]]:
            make_cold()
            counted, missed = await statements(), await cohort_misses()

            async def both_missed() -> bool:
                return all(v > missed[n] for n, v in (await cohort_misses()).items())

            # With `hold`, the cohort's computation waits on its table until both gateways
            # have looked the key up: however slow either is, both find it missing.
            async with (
                table_locked(small.database_url, "cohorts") if hold else contextlib.nullcontext()
            ):
                sent = [asyncio.ensure_future(post((one, two)[n % 2], detail)) for n in range(20)]
                if hold:
                    await async_wait_until(both_missed, "both gateways to miss the cohort")
            answers = await asyncio.gather(*sent)
            # One computation served to all: even computedAt is the same in every answer.
            datas = {orjson.dumps(a.json()["data"]) for a in answers}
            assert len(datas) == 1, datas
            spent = {n: v - counted[n] for n, v in (await statements()).items()}
            cold = {n: v - missed[n] for n, v in (await cohort_misses()).items()}
            return spent, cold

        try:
            async with httpx.AsyncClient(timeout=CEILING_S) as http:
                # 1. Bursts. One computation, on each gateway alone (this also opens their
                # pools): everything cold (user, scope and cohort subtrees), then the
                # cohort alone.
                everything = [await alone(g, detail, small.flush) for g in small.gateways]
                cohort = [await alone(g, detail, forget_cohort) for g in small.gateways]
                assert everything[0] == everything[1] > cohort[0] == cohort[1] > 0
                # The cohort subtree cold, user and scope warm: every request of both
                # gateways reaches the cohort key at once.
                rounds = [await at_once(forget_cohort, hold=True) for _ in range(3)]
                for spent, cold in rounds:
                    # Both processes found it missing; it must be computed once in all.
                    assert all(v >= 1 for v in cold.values()), (cold, small.where())
                    if sum(spent.values()) != cohort[0]:
                        failures.append(f"cohort cold: {spent} != {cohort[0]}")
                # Everything cold: user, scope and cohort each computed once in all.
                spent_all, _ = await at_once(small.flush)
                if sum(spent_all.values()) != everything[0]:
                    failures.append(f"everything cold: {spent_all} != {everything[0]}")

                # 2. The same, with the interleaving forced. gateway-1 owns the lock of the
                # user key and is held computing it (the users table is locked); gateway-2
                # waits for it, and its link to Redis is slow exactly once: its read of the
                # lock arrives after gateway-1 stored the value and released the lock.
                user_alone = await alone(one, me, small.flush)
                small.flush()
                spent_race = await self._forced_interleaving(small, post, me, user_key)
                if sum(spent_race.values()) != user_alone:
                    failures.append(f"forced interleaving: {spent_race} != {user_alone}")
        finally:
            small.flush()  # no stale entry left to enqueue refreshes later
        print(
            f"\none computation: everything cold {everything[0]:.0f} statements, cohort "
            f"subtree alone {cohort[0]:.0f}, user alone {user_alone:.0f}; at once:"
        )
        for spent, cold in rounds:
            print(f"  cohort cold: statements {spent}, cohort misses {cold}")
        print(f"  everything cold: statements {spent_all}")
        print(f"  forced interleaving (user key): statements {spent_race}")
        assert not failures, failures

    @staticmethod
    async def _forced_interleaving(
        small: Cluster, post: Any, body: dict[str, Any], key: str
    ) -> dict[str, float]:
        one, two = small.gateways
        assert small.proxy is not None
        lock_key = keys().lock(key)
        dsn = make_url(small.database_url).set(drivername="postgresql")
        client = small.redis()
        database = await asyncpg.connect(dsn.render_as_string(hide_password=False))
        try:
            before = {g.name: await asyncio.to_thread(g.statements) for g in small.gateways}
            transaction = database.transaction()
            await transaction.start()
            await database.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            first = asyncio.ensure_future(post(one, body))

            async def locked() -> bool:
                return bool(await asyncio.to_thread(client.exists, lock_key))

            await async_wait_until(locked, f"gateway-1 to lock {key}")
            small.proxy.hold_once(
                resp_command("GET", lock_key),
                until=lambda: not client.exists(lock_key) and bool(client.exists(key)),
            )
            second = asyncio.ensure_future(post(two, body))
            held = await asyncio.to_thread(small.proxy.held.wait, CEILING_S)
            assert held, "gateway-2 never waited"
            await transaction.rollback()
            answers = await asyncio.wait_for(asyncio.gather(first, second), CEILING_S)
            assert answers[0].json() == answers[1].json()
            assert await asyncio.to_thread(small.proxy.released.wait, CEILING_S)
            after = {g.name: await asyncio.to_thread(g.statements) for g in small.gateways}
            return {n: after[n] - before[n] for n in after}
        finally:
            await database.close()
            client.close()

    def test_each_director_refreshed_once_per_cycle_with_two_workers(
        self, small: Cluster, small_workers: list[WorkerProcess]
    ) -> None:
        interval = small.interval_s
        k = keys()
        summary_keys = {u: k.summary(Caller(u, role)) for u, role in SUMMARY_OWNERS.items()}
        with RedisMonitor(small.redis_server.port, small.db) as monitor:
            # Ticks after both workers poll (each has planned its next cron run by then).
            since = max(monitor.started_at, *(w.ready_at for w in small_workers))
            first = math.floor(since / interval) * interval + interval
            ticks = [first, first + interval]
            settle = 2.5  # a duplicate run would start within arq's 0.5 s poll delay

            def cycles_done() -> bool:
                done = [epoch(r) for w in small_workers for r in w.messages("^refresh cycle done$")]
                return time.time() > ticks[-1] + settle and all(
                    any(t <= d < t + interval for d in done) for t in ticks
                )

            wait_until(cycles_done, "two cron cycles", poll_s=0.2)
        with small.redis() as client:
            claimed = {
                int(key.decode().rsplit(":", 1)[1])
                for key in client.keys(f"{ARQ_IN_PROGRESS}cron:refresh_all:*")
            }

        report = []
        for tick in ticks:

            def during(t: float, tick: float = tick) -> bool:
                return tick <= t < tick + interval

            runs = [
                (w.name, r)
                for w in small_workers
                for r in w.messages("^refresh cycle done$")
                if during(epoch(r))
            ]
            starts = [
                w.name
                for w in small_workers
                for r in w.job_starts(CRON_REFRESH_ALL)
                if during(epoch(r))
            ]
            writes = {
                u: sum(1 for t in monitor.writes(key) if during(t))
                for u, key in summary_keys.items()
            }
            stamp_writes = sum(1 for t in monitor.writes(k.refresh_stamp()) if during(t))
            report.append((tick, [n for n, _ in runs], writes))
            # One cron job per tick (one arq job id), run by one of the two workers…
            assert len(starts) == 1, (tick, starts, small.where())
            assert len(runs) == 1, (tick, runs, small.where())
            assert (runs[0][1]["directors"], runs[0][1]["cohorts"]) == (3, 4)
            # arq's cron job id: cron:refresh_all:<unix ms of the run>, which is
            # the tick plus arq's default microsecond=123456.
            assert [c for c in claimed if tick * 1000 <= c < (tick + 1) * 1000], (tick, claimed)
            # …and each director's summary (and the admins') written exactly once.
            assert writes == dict.fromkeys(SUMMARY_OWNERS, 1), (tick, writes, small.where())
            assert stamp_writes == 1
        for w in small_workers:
            assert w.alive, w.tail()
            assert not w.messages("^refreshed director$"), w.name  # no per-director job ran
        print("\ntick → worker that ran it, summary SETs per user in that tick:")
        for tick, names, writes in report:
            print(f"  {datetime.fromtimestamp(tick, UTC):%H:%M:%S} {names} {writes}")

    async def test_webhook_to_either_gateway_triggers_one_refresh(
        self, small: Cluster, small_workers: list[WorkerProcess]
    ) -> None:
        one, two = small.gateways
        since = time.time()

        def event(module: str, cohorts: list[int], directors: list[int]) -> bytes:
            return orjson.dumps(
                {
                    "id": f"evt-{uuid.uuid4().hex}",
                    "module": module,
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "cohort_ids": cohorts,
                    "director_ids": directors,
                }
            )

        async def events() -> dict[tuple[str, str], float]:
            return {
                (g.name, result): await asyncio.to_thread(
                    g.metric_sum, "gateway_webhook_events_total", result=result
                )
                for g in small.gateways
                for result in ("accepted", "duplicate")
            }

        before = await events()
        dana = event("programs", [], [DANA])  # delivered to both gateways at once
        cohort = event("mentorship", [103], [])  # Drew's cohort: Drew and the admin
        nora = event("billing", [], [NORA])
        async with httpx.AsyncClient(timeout=CEILING_S) as http:
            both = await asyncio.gather(
                *[
                    http.post(
                        f"{g.url}/webhooks/upstream",
                        content=dana,
                        headers=signed(dana, WEBHOOK_SECRET),
                    )
                    for g in (one, two)
                ]
            )
            by_two = await http.post(
                f"{two.url}/webhooks/upstream",
                content=cohort,
                headers=signed(cohort, WEBHOOK_SECRET),
            )
            by_one = await http.post(
                f"{one.url}/webhooks/upstream", content=nora, headers=signed(nora, WEBHOOK_SECRET)
            )
        assert [r.status_code for r in (*both, by_two, by_one)] == [202] * 4
        assert sorted(r.json()["status"] for r in both) == ["accepted", "duplicate"]
        assert by_two.json()["status"] == by_one.json()["status"] == "accepted"

        expected = {(DANA, "director"), (DREW, "director"), (NORA, "director"), (ADMIN, "admin")}

        def refreshed() -> list[tuple[str, tuple[int, str]]]:
            """(worker, (director, role)) of each dashboard refreshed: by a director refresh,
            or re-scoped by the refresh of a cohort they may see."""
            found = []
            for w in small_workers:
                for r in w.messages("^refreshed (director|cohort)$"):
                    if epoch(r) < since:
                        continue
                    if r["message"] == "refreshed director":
                        found.append((w.name, (r["director"], r["role"])))
                    else:
                        found.extend((w.name, (d, "director")) for d in r["directors"])
            return found

        await asyncio.to_thread(
            wait_until,
            lambda: {who for _, who in refreshed()} >= expected,
            "the four refreshes",
        )
        # Any second refresh would be queued or running by now: wait until none is.
        await asyncio.to_thread(
            wait_until, lambda: jobs_settled(small, small_workers), "the queue to empty"
        )
        counts = Counter(who for _, who in refreshed())
        assert counts == dict.fromkeys(expected, 1), (counts, small.where())
        counted = {key: value - before[key] for key, value in (await events()).items()}
        assert sum(v for (_, r), v in counted.items() if r == "accepted") == 3, counted
        assert sum(v for (_, r), v in counted.items() if r == "duplicate") == 1, counted
        print("\nrefreshes:", {f"{d}/{r}": n for (d, r), n in counts.items()})
        print("by worker:", Counter(name for name, _ in refreshed()))
        print("webhook events per gateway:", counted)


# --- one gateway, several worker processes ---------------------------------------------


async def test_metrics_of_every_worker_process_in_each_scrape(
    redis_server, postgres_url_factory, tmp_path: Path
) -> None:
    """`gateway serve --workers 2`: a scrape, whichever process answers it, counts the
    requests of both (prometheus-client's multiprocess mode)."""
    url = postgres_url_factory("workers")
    await dataset.load(url)
    redis_server.start()
    gateway = GatewayProcess(
        "gateway-two-workers",
        child_env(url, **common_settings(f"redis://{HOST}:{redis_server.port}/{UNIT_DB}", 300)),
        tmp_path,
        workers=2,
    )
    requests = 40
    with running(gateway):
        for _ in range(requests):
            # A connection per request, so the two processes share the requests.
            async with httpx.AsyncClient(timeout=CEILING_S) as http:
                response = await http.post(
                    f"{gateway.url}/graphql", json={"query": ME}, headers=auth(DANA)
                )
            assert response.status_code == 200, response.text
        wait_until(lambda: len(worker_pids(gateway)) == 2 or None, "both workers")
        # A request's latency is observed once its response is sent: the last ones may be
        # counted just after their client has the answer.
        wait_until(
            lambda: gateway.metric_sum("gateway_request_seconds_count") == requests or None,
            "every request counted",
        )
        for _ in range(6):
            assert gateway.metric_sum("gateway_request_seconds_count") == requests


def worker_pids(gateway: GatewayProcess) -> list[int]:
    """Worker processes started so far, from uvicorn's "Started server process [pid]"."""
    return [
        int(record["message"].split("[")[1].rstrip("]"))
        for record in gateway.records()
        if record.get("message", "").startswith("Started server process")
    ]


async def test_supervisor_spreads_connections_restarts_workers_and_stops_on_sigterm(
    redis_server, postgres_url_factory, tmp_path: Path
) -> None:
    url = postgres_url_factory("supervisor")
    await dataset.load(url)
    redis_server.start()
    gateway = GatewayProcess(
        "gateway-supervised",
        child_env(
            url,
            access_log="true",
            **common_settings(f"redis://{HOST}:{redis_server.port}/{UNIT_DB}", 300),
        ),
        tmp_path,
        workers=2,
    )
    with running(gateway):
        wait_until(lambda: len(worker_pids(gateway)) == 2 or None, "both workers")
        first = worker_pids(gateway)

        async def requests(n: int) -> None:
            for _ in range(n):
                async with httpx.AsyncClient(timeout=CEILING_S) as http:  # a connection each
                    response = await http.post(
                        f"{gateway.url}/graphql", json={"query": ME}, headers=auth(DANA)
                    )
                assert response.status_code == 200, response.text

        await requests(40)
        # Each worker has its own SO_REUSEPORT socket: both take connections.
        served = Counter(
            r["pid"]
            for r in gateway.records()
            if r.get("logger") == "gateway.access" and r["path"] == "/graphql"
        )
        assert set(served) == set(first)
        assert sum(served.values()) == 40

        killed = first[0]
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: len(worker_pids(gateway)) == 3 or None, "a replacement worker")
        assert worker_pids(gateway)[2] not in first
        await requests(20)
        # A second gateway on the same port is refused, not given a share of connections.
        second = GatewayProcess(
            "gateway-same-port",
            child_env(url, **common_settings(f"redis://{HOST}:{redis_server.port}/{UNIT_DB}", 300)),
            tmp_path,
            workers=2,
            port=gateway.port,
        )
        second.spawn()
        assert second.wait() == 1
        assert f"cannot bind {HOST}:{gateway.port}" in second.log()
        assert gateway.stop() == 0
    messages = [r.get("message", "") for r in gateway.records()]
    assert f"worker [{killed}] exited (-9); restarting" in messages
    assert messages.count("Application shutdown complete.") == 2  # both drained
    assert messages[-1].startswith("stopped supervisor process")


async def test_supervisor_stops_when_a_worker_cannot_start(
    redis_server, postgres_url_factory, tmp_path: Path
) -> None:
    """A setting that breaks the application fails every worker the same way: exit 1,
    not a restart loop."""
    url = postgres_url_factory("broken")
    # The CLI checks what it can before the supervisor starts (files: one line, exit 2);
    # tracing's exporter is looked up by each worker as it builds the application.
    env = child_env(
        url, tracing="true", **common_settings(f"redis://{HOST}:{redis_server.port}/{UNIT_DB}", 300)
    )
    env["OTEL_TRACES_EXPORTER"] = "no-such-exporter"
    gateway = GatewayProcess("gateway-broken", env, tmp_path, workers=2)
    gateway.spawn()
    try:
        assert gateway.wait() == 1
    finally:
        gateway.stop()
    messages = [r.get("message", "") for r in gateway.records()]
    assert any("failed to start" in m for m in messages)
    assert not any("restarting" in m for m in messages)


# --- graceful shutdown of a gateway --------------------------------------------------


async def test_gateway_drains_in_flight_request_on_sigterm(
    postgres_url_factory, tmp_path: Path
) -> None:
    url = postgres_url_factory("drain")
    await dataset.load(url)
    # Cache off: every answer reads the database, where the test holds a lock.
    gateway = GatewayProcess(
        "gateway-drain",
        child_env(
            url,
            cache_enabled="false",
            jwt_secret=JWT_SECRET,
            upstream_query_timeout_s=QUERY_TIMEOUT_S,
        ),
        tmp_path,
    )
    database = make_url(url).database
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with running(gateway):
        async with httpx.AsyncClient(timeout=CEILING_S) as http:
            warm = await http.post(
                f"{gateway.url}/graphql", json={"query": SUMMARY}, headers=auth(DANA)
            )
            assert warm.status_code == 200, warm.text
            expected = warm.json()["data"]["me"]["summary"]["averageReadiness"]

            lock = await asyncpg.connect(dsn)
            try:
                transaction = lock.transaction()
                await transaction.start()
                await lock.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
                in_flight = asyncio.create_task(
                    http.post(f"{gateway.url}/graphql", json={"query": SUMMARY}, headers=auth(DANA))
                )

                async def blocked() -> int:
                    return await lock.fetchval(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = $1 AND wait_event_type = 'Lock'",
                        database,
                    )

                waiting = await async_wait_until(
                    blocked, "the gateway's statement to block", poll_s=0.1
                )
                assert waiting, gateway.tail()

                terminated = time.monotonic()
                gateway.send_signal(signal.SIGTERM)
                # It stops accepting connections at once, while the request is in flight.

                def refuses() -> bool:
                    try:
                        with socket.create_connection((HOST, gateway.port), timeout=CEILING_S):
                            return False
                    except ConnectionRefusedError:
                        return True

                refused = await async_wait_until(
                    lambda: asyncio.to_thread(refuses), "new connections to be refused"
                )
                assert refused, gateway.tail()
                stopped_accepting_s = time.monotonic() - terminated
                await asyncio.sleep(1.0)  # a while later: still held by the lock, not cut
                assert not in_flight.done() and gateway.alive
                await transaction.rollback()  # the statement proceeds
                released = time.monotonic()
            finally:
                await lock.close()
            response = await asyncio.wait_for(in_flight, CEILING_S)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["me"]["summary"]["averageReadiness"] == expected
        code = await asyncio.to_thread(gateway.wait)
        exited_s = time.monotonic() - released
    # uvicorn (0.29+) ends a graceful shutdown by re-raising the signal it caught: the
    # status is "terminated by SIGTERM" (-15 here, 143 in a shell), not a crash.
    assert code in (0, -signal.SIGTERM), gateway.tail()
    assert gateway.messages("^Waiting for connections to close")
    assert gateway.messages("^Application shutdown complete")
    assert gateway.messages("^Finished server process")
    print(
        f"\nrefused new connections {stopped_accepting_s:.2f} s after SIGTERM; the in-flight "
        f"request answered 200 once released; exit status {code} {exited_s:.2f} s after that"
    )


# --- workers losing a cycle they run ----------------------------------------------------


@pytest.fixture(scope="class")
def big(redis_server, postgres_url_factory, tmp_path_factory) -> Iterator[Cluster]:
    """Three workers (cron every BIG_INTERVAL_S) on 204 cohorts; no gateway needed."""
    url = postgres_url_factory("cluster_big")
    run_sync(lambda: dataset.load(url, dataset.replicated(CLONES)))
    cluster = new_cluster(
        redis_server, url, BIG_DB, tmp_path_factory.mktemp("cluster_big"), BIG_INTERVAL_S
    )
    cluster.workers = [cluster.worker(f"worker-{n}") for n in (3, 4, 5)]
    with running(*cluster.workers):
        warmed(cluster)
        yield cluster


def running_job(cluster: Cluster, job_id: str) -> tuple[WorkerProcess, float]:
    """The worker that started this job, and when."""

    def started() -> tuple[WorkerProcess, float] | None:
        for w in cluster.workers:
            hits = w.job_starts(f"{job_id}:{JOB_REFRESH_ALL}")
            if hits:
                return w, epoch(hits[0])
        return None

    return wait_until(started, f"a worker to start {job_id}")


class TestWorkerLoss:
    async def test_worker_sigterm_mid_cycle_finishes_its_jobs(self, big: Cluster) -> None:
        await asyncio.to_thread(quiet_moment, big)
        alive = [w for w in big.workers if w.alive]
        # The victim: a worker that ran no job yet (the warm-up cycle ran on another one),
        # so that its count of jobs completed is the two cycles of this test.
        fresh = [w for w in alive if not w.messages(r"s ← ")]
        victim = fresh[0] if fresh else alive[0]
        peers = [w for w in alive if w is not victim]
        demand, tick = "cluster-sigterm-cycle", f"{CRON_REFRESH_ALL}:sigterm-test"
        ref = f"{demand}:{JOB_REFRESH_ALL}"
        # Both cycles wait on the lock: SIGTERM lands mid-cycle, however fast the machine.
        async with table_locked(big.database_url, "users"):
            # Two cycles on the victim: one asked for (the `refresh_all` job) and one of
            # the cron kind (enqueued under the cron job's name, as arq's scheduler does).
            # The peers are paused meanwhile so the victim alone takes both.
            for w in peers:
                w.send_signal(signal.SIGSTOP)
            try:
                enqueue_refresh_all(big, demand)
                enqueue_refresh_all(big, tick, function=CRON_REFRESH_ALL)
                with big.redis() as client:
                    await asyncio.to_thread(
                        wait_until,
                        lambda: (
                            client.exists(f"{ARQ_IN_PROGRESS}{demand}", f"{ARQ_IN_PROGRESS}{tick}")
                            == 2
                        ),
                        "the victim to take both jobs",
                    )
            finally:
                for w in peers:
                    w.send_signal(signal.SIGCONT)
            started = epoch(await asyncio.to_thread(victim.wait_for_message, rf"→ {ref}\("))
            assert not victim.job_ends(ref), "the cycle ended before SIGTERM"
            terminated = time.time()
            victim.send_signal(signal.SIGTERM)
            await asyncio.to_thread(
                victim.wait_for_message, r"^shutdown on SIGTERM ◆ .* ◆ 2 to be completed$"
            )
        # Released: both cycles go on, within GATEWAY_WORKER_STOP_WAIT_S
        # (past it, arq would cancel them: what the assertions below would catch).
        code = await asyncio.to_thread(victim.wait)
        exited_s = time.time() - terminated
        assert code == 0, victim.tail()

        # The worker finishes what it runs (workers/worker.py job_completion_wait), then
        # exits: both cycles complete on the victim, nothing is cancelled or run again.
        assert victim.messages(r"wait complete ◆ 2 jobs complete"), victim.tail()
        assert not any(victim.messages(rf"{name} cancelled") for name in (ref, CRON_REFRESH_ALL))
        finished = [r for r in victim.messages("^refresh cycle done$") if epoch(r) >= terminated]
        assert len(finished) == 2, victim.tail()
        assert victim.job_ends(ref)
        await asyncio.sleep(1.0)  # had a job been released, a peer would take it within this
        assert not [r for w in peers for r in w.job_starts(ref) if "try=2" in r["message"]]
        with big.redis() as client:
            assert client.zscore(QUEUE_NAME, demand) is None  # done: off the queue
            assert client.zscore(QUEUE_NAME, tick) is None
        print(
            f"\n{victim.name} SIGTERM {terminated - started:.2f} s into the cycle: both jobs "
            f"finished, exit {code} after {exited_s:.2f} s"
        )

    async def test_worker_killed_mid_cycle_is_covered_by_the_other(self, big: Cluster) -> None:
        alive = [w for w in big.workers if w.alive]
        assert len(alive) >= 2
        job = "cluster-kill-cycle"
        ref = f"{job}:{JOB_REFRESH_ALL}"
        # The cycle waits on the lock: it cannot end before the kill, however fast it is.
        async with table_locked(big.database_url, "users"):
            enqueue_refresh_all(big, job)
            victim, started = await asyncio.to_thread(running_job, big, job)
            survivors = [w for w in alive if w is not victim]
            assert not victim.job_ends(ref), "the cycle ended before the kill"
            killed = time.time()
            victim.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(victim.wait) == -signal.SIGKILL
        assert not victim.job_ends(ref), victim.tail()  # (a cron cycle may have ended there)
        # Killed with a phase open (its batches running), or between phases (the cohorts
        # phase done, the cycle waiting on the locked users table): only an open phase is
        # left behind for a survivor to close as abandoned, after the lease (15 s).
        with big.redis() as client:
            phase_open_at_kill = bool(client.exists(CYCLE_OPEN_KEY))

        # arq would keep the killed job claimed until its in-progress key expires (job
        # timeout 600 s + 10 s); once the cycle's lease has expired (15 s), a survivor
        # notices the abandoned cycle and frees the job, which a survivor re-runs. The
        # next cron cycle, which a surviving worker runs, covers the kill too.
        with big.redis() as client:
            claimed_ms = client.pttl(f"{ARQ_IN_PROGRESS}{job}")
            assert claimed_ms > 500_000, claimed_ms
            assert client.zscore(QUEUE_NAME, job) is not None

        def covered() -> bool:
            found = summaries(big)
            stamp = refresh_stamp(big)
            return (
                len(found) == len(SUMMARY_OWNERS)
                and all(instant(s["computed_at"]) >= killed for s in found.values())
                and stamp is not None
                and instant(stamp["computed_at"]) >= killed
            )

        await asyncio.to_thread(wait_until, covered, "a cycle after the kill", poll_s=0.2)
        fresh = summaries(big)
        stamp = refresh_stamp(big)
        assert stamp is not None
        assert (stamp["cohorts"], stamp["directors"], stamp["incomplete_cohorts"]) == (
            BIG_COHORTS,
            3,
            0,
        )
        runs = [
            (w, r) for w in survivors for r in w.job_starts(CRON_REFRESH_ALL) if epoch(r) >= killed
        ]
        assert runs, big.where()
        by, cron_start = runs[0]
        done = await asyncio.to_thread(
            by.wait_for_message, "^refresh cycle done$", after=epoch(cron_start)
        )
        assert done["cohorts"] == BIG_COHORTS
        assert not victim.alive

        def noticed() -> list[Any]:
            return [r for w in survivors for r in w.messages("^refresh cycle abandoned")]

        def reruns() -> list[Any]:
            return [r for w in survivors for r in w.job_starts(ref)]

        if phase_open_at_kill:
            await asyncio.to_thread(wait_until, noticed, "the abandoned cycle noticed", poll_s=0.2)
            assert {r["job"] for r in noticed()} == {job}, noticed()
            await asyncio.to_thread(wait_until, reruns, "the freed job run again", poll_s=0.2)
            assert all("try=2" in r["message"] for r in reruns()), reruns()
        else:  # nothing open to close: the cron cycle alone covers the kill
            assert (noticed(), reruns()) == ([], [])
        ages = {u: round(instant(s["computed_at"]) - killed, 2) for u, s in fresh.items()}
        print(
            f"\n{victim.name} killed {killed - started:.2f} s into {job}; claimed for another "
            f"{claimed_ms / 1000:.0f} s; {by.name} ran the next cron cycle "
            f"{epoch(cron_start) - killed:.2f} s after the kill "
            f"(cycle {stamp['duration_s']:.2f} s); "
            f"summaries computed_at − kill (s): {ages}"
        )


# --- why a SIGTERM'd worker may still finish (and re-run) its job --------------------


class JobKeptRunning(AssertionError):
    pass


@pytest.mark.xfail(
    sys.version_info < (3, 12), strict=True, raises=JobKeptRunning, reason=CANCEL_LOST
)
async def test_a_refresh_job_cancelled_while_writing_to_redis_stops(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """What arq does to a running job on SIGTERM (task.cancel()), at the moment the job's
    write to Redis has been sent and the job is about to resume."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'upstream.sqlite3'}"
    await dataset.load(url)
    cluster = new_cluster(redis_server, url, UNIT_DB, tmp_path, SMALL_INTERVAL_S)
    settings = Settings(
        database_url=url, redis_url=cluster.redis_url, embedded_scheduler=False, _env_file=None
    )
    ctx: dict[str, Any] = {"settings": settings}
    await jobs.startup(ctx)
    try:
        job = asyncio.ensure_future(jobs.refresh_director(ctx, DANA, "director"))
        send: asyncio.Task[Any] | None = None
        deadline = time.monotonic() + CEILING_S
        while send is None or not send.done():
            assert time.monotonic() < deadline and not job.done(), "no write to Redis seen"
            await asyncio.sleep(0)
            if send is None:
                # redis-py runs each send as a task under asyncio.wait_for(socket_timeout)
                send = next(
                    (
                        t
                        for t in asyncio.all_tasks()
                        if getattr(t.get_coro(), "__name__", "") == "_send_packed_command"
                    ),
                    None,
                )
        job.cancel()  # the send is done; the job has not resumed yet
        try:
            await asyncio.wait_for(asyncio.shield(job), CEILING_S)
        except asyncio.CancelledError:
            return  # stopped, as a cancelled job should
        raise JobKeptRunning("the cancelled refresh job ran to its end")
    finally:
        if not job.done():
            job.cancel()
        await asyncio.gather(job, return_exceptions=True)
        await jobs.shutdown(ctx)
        cluster.flush()
