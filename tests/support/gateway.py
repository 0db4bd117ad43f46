"""A gateway in the test's process: its settings and services, statement counts, a burst
worker, the queue, signed webhooks."""

import hashlib
import hmac

import orjson
import redis.asyncio as aioredis
from sqlalchemy import event

from gateway.cache.keys import QUEUE_NAME
from gateway.settings import Settings
from tests.support.dataset import DREW
from tests.support.gateway_client import GatewayClient
from workers.worker import make_worker

WEBHOOK_SECRET = "test-webhook-secret"


def settings_for(url: str, redis_url: str | None, **overrides) -> Settings:
    defaults = {
        "refresh_interval_s": 300,
        "refresh_grace_s": 0,  # stale exactly past the interval, unless a test says otherwise
        "cache_ttl_s": 900,
        "embedded_scheduler": False,
        "webhook_secret": WEBHOOK_SECRET,
    }
    return Settings(database_url=url, redis_url=redis_url, **{**defaults, **overrides})


class StatementCounter:
    def __init__(self, api: GatewayClient) -> None:
        self.engines = set(api.http._transport.app.state.services.upstream.engines.values())
        self.count = 0

    def _hook(self, *args) -> None:
        self.count += 1

    def __enter__(self) -> "StatementCounter":
        for engine in self.engines:
            event.listen(engine.sync_engine, "before_cursor_execute", self._hook)
        return self

    def __exit__(self, *exc) -> None:
        for engine in self.engines:
            event.remove(engine.sync_engine, "before_cursor_execute", self._hook)


def services_of(api: GatewayClient):
    return api.http._transport.app.state.services


async def run_worker(settings: Settings) -> None:
    worker = make_worker(settings, burst=True, poll_delay=0.01)
    try:
        await worker.main()
    finally:
        await worker.close()


async def queued_jobs(redis_url: str) -> list[str]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        return sorted(j.decode() for j in await client.zrange(QUEUE_NAME, 0, -1))
    finally:
        await client.aclose()


def signed(body: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Signature": f"sha256={digest}", "Content-Type": "application/json"}


EVENT = orjson.dumps(
    {
        "id": "evt_01",
        "module": "missions",
        "occurred_at": "2026-11-24T10:00:00Z",
        "cohort_ids": [102],
        "director_ids": [DREW],
    }
)
