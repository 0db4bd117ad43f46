"""Redis Cluster readiness of the cache: no command (and no transaction) the gateway
issues spans keys of two hash slots. arq's own queue commands are excluded: the queue
needs one Redis instance (docs/operations.md)."""

import hashlib
import hmac
import json

import orjson
import pytest
from redis.asyncio.client import Pipeline, Redis
from redis.crc import key_slot

from gateway.cache.keys import QUEUE_NAME
from gateway.documents.dashboard import dashboard_operations
from tests.support.clock import MovableClock
from tests.support.cycles import prewarm, refresh_all
from tests.support.dataset import DANA, DREW, NOW
from tests.support.gateway import WEBHOOK_SECRET, services_of, settings_for
from tests.support.gateway_client import gateway_client
from tests.support.queries import COHORT_DETAIL

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

# Commands the cache uses, and where their keys are.
FIRST_KEY = {
    "GET",
    "SET",
    "INCR",
    "INCRBY",
    "PSETEX",
    "SETEX",
    "EXPIRE",
    "PTTL",
    "SADD",
    "SMEMBERS",
    "SREM",
    "EXISTS",
    "ZADD",
    "ZCARD",
    "ZPOPMIN",
    "ZSCORE",
    "ZREM",
}
ALL_KEYS = {"DEL", "MGET", "UNLINK"}
# PUBLISH names a channel, not a key: Redis Cluster broadcasts it to every node.
KEYLESS = {"PING", "FLUSHALL", "MULTI", "EXEC", "INFO", "PUBLISH"}


def keys_of(args: tuple) -> list[bytes]:
    name = str(args[0]).upper()
    if name in FIRST_KEY:
        keys = [args[1]]
    elif name in ALL_KEYS:
        keys = list(args[1:])
    elif name in KEYLESS:
        keys = []
    else:
        raise AssertionError(f"unexpected command {name}: classify its keys")
    return [k.encode() if isinstance(k, str) else k for k in keys]


def is_queue_key(key: bytes) -> bool:
    return key.startswith(b"arq:") or key.startswith(QUEUE_NAME.encode())


async def test_no_command_spans_two_slots(dataset_url: str, redis_url: str, monkeypatch) -> None:
    operations: list[list[tuple]] = []  # each: the commands that must share one slot
    original_execute = Redis.execute_command
    original_pipeline = Pipeline.execute

    async def execute_command(self, *args, **options):
        if not isinstance(self, Pipeline):
            operations.append([args])
        return await original_execute(self, *args, **options)

    async def pipeline_execute(self, raise_on_error=True):
        stack = [args for args, _ in self.command_stack]
        if self.is_transaction:
            operations.append(stack)  # MULTI/EXEC: every key in one slot
        else:
            operations.extend([args] for args in stack)  # pipelined: each on its own
        return await original_pipeline(self, raise_on_error)

    monkeypatch.setattr(Redis, "execute_command", execute_command)
    monkeypatch.setattr(Pipeline, "execute", pipeline_execute)

    async with gateway_client(settings_for(dataset_url, redis_url), MovableClock(NOW)) as api:
        services = services_of(api)
        await refresh_all(services)
        await prewarm(services)
        summary = dashboard_operations()["DirectorSummary"]
        params = {
            "extensions": json.dumps(
                {"persistedQuery": {"version": 1, "sha256Hash": summary.sha256}}
            ),
            "operationName": summary.name,
        }
        for user in (DANA, DREW):
            response = await api.http.get("/graphql", params=params, headers=api.auth(user))
            assert response.status_code == 200
        await api.data(COHORT_DETAIL, {"id": 101}, user=DANA)
        mutation = "mutation { requestRefresh(cohortId: 101) { accepted } }"
        assert (await api.data(mutation, user=DANA))["requestRefresh"]["accepted"] is True
        body = orjson.dumps(
            {
                "id": "evt-slots",
                "module": "billing",
                "occurred_at": "2026-11-24T10:00:00Z",
                "cohort_ids": [102],
                "director_ids": [],
            }
        )
        digest = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        response = await api.http.post(
            "/webhooks/upstream",
            content=body,
            headers={"X-Signature": f"sha256={digest}", "Content-Type": "application/json"},
        )
        assert response.status_code == 202

    checked = 0
    for operation in operations:
        touched = [a[1] for a in operation if len(a) > 1 and isinstance(a[1], (str, bytes))]
        if any(is_queue_key(k.encode() if isinstance(k, str) else k) for k in touched):
            continue  # arq's own queue transaction
        keys = [k for args in operation for k in keys_of(args)]
        if not keys:
            continue
        slots = {key_slot(k) for k in keys}
        assert len(slots) == 1, ([a[:2] for a in operation], slots)
        checked += 1
    assert checked > 100  # the run above really exercised the cache
