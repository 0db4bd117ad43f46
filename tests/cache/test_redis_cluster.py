"""The cache on a real Redis Cluster: three masters on loopback (tests/support/redis_cluster.py),
the arq queue and the cycle's lease on the session's standalone Redis
(GATEWAY_QUEUE_REDIS_URL).

Every part of the cache works there: subtrees, the single-flight locks, stored answers
and the fast path, tags and their invalidation by a webhook's refresh, a full refresh
cycle, APQ documents, event de-duplication and the requestRefresh rate limit. Every
command each node runs is recorded (MONITOR on each) and none spans two slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Iterator

import orjson
import pytest
from pydantic import ValidationError
from redis.crc import key_slot

from gateway.cache.answers import AnswerId
from gateway.documents.persisted import APQ_KEY_PREFIX
from gateway.refresh.cycle import refresh_cycle
from gateway.settings import Settings
from resolvers.caller import Caller
from tests.harness.redis_link import RedisMonitor
from tests.support.clock import MovableClock
from tests.support.cycles import prewarm, refresh_all
from tests.support.dataset import ADMIN, DANA, DREW, NOW
from tests.support.fast_path import DETAIL_OP, LIST_OP, SUMMARY_OP, get, hits
from tests.support.gateway import StatementCounter, run_worker, services_of, settings_for, signed
from tests.support.gateway_client import gateway_client
from tests.support.queries import COHORT_DETAIL
from tests.support.redis_cluster import RedisClusterServer

SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

# Commands the gateway sends the cache, and where their keys are.
FIRST_KEY = {
    "GET",
    "SET",
    "EXPIRE",
    "PEXPIRE",
    "SADD",
    "SMEMBERS",
    "SREM",
    "INCRBY",
    "HINCRBY",
    "PTTL",
    "ZADD",
    "ZCARD",
    "ZPOPMIN",
    "ZSCORE",
    "ZREM",
}
ALL_KEYS = {"DEL", "UNLINK", "EXISTS", "MGET"}
KEYLESS = {"PING", "INFO", "CLUSTER", "COMMAND", "CLIENT", "HELLO", "READONLY", "SELECT", "ECHO"}


def keys_of(args: tuple[bytes, ...]) -> tuple[bytes, ...]:
    name = args[0].decode().upper()
    if name in FIRST_KEY:
        return args[1:2]
    if name in ALL_KEYS:
        return args[1:]
    if name in ("EVALSHA", "EVAL"):
        return args[3 : 3 + int(args[2])]
    if name in KEYLESS or name == "MONITOR":
        return ()
    raise AssertionError(f"unexpected command {name}: classify its keys")


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServer]:
    with RedisClusterServer() as server:
        yield server


@pytest.fixture
def monitors(cluster: RedisClusterServer) -> Iterator[dict[int, RedisMonitor]]:
    cluster.flushall()
    with contextlib.ExitStack() as stack:
        yield {port: stack.enter_context(RedisMonitor(port, None)) for port in cluster.ports}


def cluster_settings(dataset_url: str, cluster: RedisClusterServer, queue_url: str, **more):
    return settings_for(
        dataset_url, cluster.url, redis_cluster=True, queue_redis_url=queue_url, **more
    )


def test_a_cluster_cache_needs_a_standalone_queue() -> None:
    with pytest.raises(ValidationError, match="arq's queue cannot run on a Redis Cluster"):
        Settings(redis_url="redis://127.0.0.1:7000/0", redis_cluster=True, _env_file=None)
    settings = Settings(
        redis_url="redis://127.0.0.1:7000/0",
        redis_cluster=True,
        queue_redis_url="redis://127.0.0.1:6379/0",
        _env_file=None,
    )
    assert settings.queue_url == "redis://127.0.0.1:6379/0"
    assert Settings(redis_url="redis://h:1/0", _env_file=None).queue_url == "redis://h:1/0"


@SQLITE
async def test_the_cache_works_on_a_redis_cluster(
    dataset_url: str,
    redis_url: str,
    manifest: str,
    cluster: RedisClusterServer,
    monitors: dict[int, RedisMonitor],
) -> None:
    settings = cluster_settings(dataset_url, cluster, redis_url, persisted_manifest=manifest)
    clock = MovableClock(NOW)
    async with gateway_client(settings, clock) as api:
        services = services_of(api)
        assert type(services.kv.client).__name__ == "RedisCluster"
        assert services.redis is not services.kv.client

        # Subtrees and the stored dashboards, then served by the fast path alone.
        report = await refresh_all(services)
        assert (report.cohorts, report.directors, report.incomplete_cohorts) == (4, 3, 0)
        prewarmed = await prewarm(services)
        assert (prewarmed.callers, prewarmed.stored) == (4, 7)
        before = hits()
        with StatementCounter(api) as counter:
            summary = await get(api, SUMMARY_OP, DANA)
            listing = await get(api, LIST_OP, DREW)
        assert counter.count == 0 and hits() == before + 2
        assert "errors" not in summary.json()
        assert summary.json()["data"]["me"]["summary"]["averageReadiness"] == 61.0
        edges = listing.json()["data"]["me"]["cohorts"]["edges"]
        assert [e["node"]["id"] for e in edges] == [103, 102]

        # Single flight across the cluster: a cold cohort subtree, 20 requests at once,
        # one computation (as many statements as one request alone).
        cohort_key = services.cache.keys.cohort(101)
        await services.kv.delete(cohort_key)
        with StatementCounter(api) as alone:
            await api.data(COHORT_DETAIL, {"id": 101}, user=DANA)
        await services.kv.delete(cohort_key)
        with StatementCounter(api) as together:
            answers = await asyncio.gather(
                *[api.post(COHORT_DETAIL, {"id": 101}, user=DANA) for _ in range(20)]
            )
        assert {r.status_code for r in answers} == {200}
        assert len({r.content for r in answers}) == 1
        assert alone.count > 0 and together.count == alone.count
        assert await services.kv.get_many([services.cache.keys.lock(cohort_key)]) == [None]

        # A stored cohort detail (a miss, then a hit), tagged with what it was built from.
        first = await get(api, DETAIL_OP, DANA, variables={"id": 101})
        assert first.json()["data"]["cohort"]["seats"]["total"] == 4
        detail_key = services.answers.key(
            Caller(DANA, "director"), AnswerId.of(DETAIL_OP.sha256, DETAIL_OP.name, {"id": 101})
        )
        assert (await services.kv.get_many([detail_key]))[0] is not None
        tag = services.cache.keys.tag(cohort_key)
        assert detail_key in (await services.kv.members([tag]))[tag]
        before = hits()
        again = await get(api, DETAIL_OP, DANA, variables={"id": 101})
        assert (again.content, hits()) == (first.content, before + 1)

        # A webhook naming cohort 101: its refresh (run by a worker, the job queued on the
        # standalone Redis) rewrites the subtree and drops the answers tagged with it.
        event = orjson.dumps(
            {
                "id": "evt-cluster",
                "module": "billing",
                "occurred_at": "2026-11-24T10:00:00Z",
                "cohort_ids": [101],
                "director_ids": [],
            }
        )
        response = await api.http.post("/webhooks/upstream", content=event, headers=signed(event))
        assert (response.status_code, response.json()["status"]) == (202, "accepted")
        response = await api.http.post("/webhooks/upstream", content=event, headers=signed(event))
        assert (response.status_code, response.json()["status"]) == (202, "duplicate")
        await run_worker(settings)
        assert await services.kv.get_many([detail_key]) == [None]
        # Every answer the tag names is gone. The tag may still name an answer whose store
        # lost the race with the refresh (it deletes its own value, gateway/cache/answers.py
        # `put`); the next cycle untags it.
        named = sorted((await services.kv.members([tag]))[tag])
        assert await services.kv.get_many(named) == [None] * len(named)

        # requestRefresh counts against a per-caller window (INCR on the cluster).
        mutation = "mutation { requestRefresh(cohortId: 102) { accepted } }"
        for _ in range(2):
            assert (await api.data(mutation, user=DREW))["requestRefresh"]["accepted"] is True

        # An APQ document registered, then found by its hash.
        document = "query Mine { me { id } }"
        sha256 = hashlib.sha256(document.encode()).hexdigest()
        extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha256}}
        registered = await api.http.post(
            "/graphql",
            json={"query": document, "extensions": extensions},
            headers=api.auth(ADMIN, "admin"),
        )
        assert registered.json() == {"data": {"me": {"id": ADMIN}}}
        found = await api.http.get(
            "/graphql",
            params={"extensions": json.dumps(extensions)},
            headers=api.auth(DANA),
        )
        assert found.json() == {"data": {"me": {"id": DANA}}}
        assert await services.cache_redis.get(APQ_KEY_PREFIX + sha256) == document.encode()

        # A whole refresh cycle (its lease on the standalone Redis, its writes on the
        # cluster), after which the dashboard pages are hits again.
        clock.advance(300)
        cycle, answers_report = await refresh_cycle(services)
        assert (cycle.cohorts, cycle.directors, answers_report.stored) == (4, 3, 7)
        before = hits()
        with StatementCounter(api) as counter:
            summary = await get(api, SUMMARY_OP, DANA)
        assert counter.count == 0 and hits() == before + 1
        assert summary.json()["data"]["me"]["summary"]["computedAt"] == (
            "2026-11-24T12:05:00.000000Z"
        )

    for monitor in monitors.values():
        monitor.caught_up()  # every command run so far is in its stream
    slots = cluster.slots()
    checked = 0
    nodes_used = 0
    for port, monitor in monitors.items():
        served = slots[port]
        seen = 0
        for args in [c.args for c in list(monitor.commands)]:
            found_keys = keys_of(args)
            if not found_keys:
                continue
            key_slots = {key_slot(k) for k in found_keys}
            assert len(key_slots) == 1, (port, args[:3])
            # Every key-bearing command reached the node that serves its slot.
            [slot] = key_slots
            assert any(start <= slot <= end for start, end in served), (port, args[:3])
            seen += 1
        checked += seen
        nodes_used += seen > 0
    assert nodes_used == 3 and checked > 200, (nodes_used, checked)
    print(f"\n{checked} key-bearing commands on 3 nodes, each within one slot")
