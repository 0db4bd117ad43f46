"""A rolling upgrade: replicas of two cache versions on one Redis never read each other's
entries (a release that changes the stored format bumps SUBTREE_FORMAT, which changes the
cache version every key carries)."""

import orjson
import pytest
from redis.asyncio import Redis

from gateway.cache import keys as key_builder
from gateway.settings import Settings
from tests.support.clock import MovableClock
from tests.support.dataset import DANA, NOW
from tests.support.gateway_client import GatewayClient, gateway_client

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
ME = "{ me { id name } }"


def keys_of(api: GatewayClient) -> key_builder.Keys:
    return api.http._transport.app.state.services.cache.keys  # type: ignore[attr-defined,no-any-return]


async def test_two_cache_versions_side_by_side(
    dataset_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(database_url=dataset_url, redis_url=redis_url, embedded_scheduler=False)
    redis = Redis.from_url(redis_url)
    async with gateway_client(settings, MovableClock(NOW)) as old:
        name = (await old.data(ME, user=DANA))["me"]["name"]
        profile = keys_of(old).user(DANA)
        # An entry only the old version understands: a field renamed in the old format.
        entry = orjson.loads(await redis.get(profile))
        entry["user"]["name"] = "Old Format"
        await redis.set(profile, orjson.dumps(entry), keepttl=True)
        monkeypatch.setattr(key_builder, "SUBTREE_FORMAT", "next-release.1")
        async with gateway_client(settings, MovableClock(NOW)) as new:
            assert keys_of(new).version != keys_of(old).version
            assert await new.data(ME, user=DANA) == {"me": {"id": DANA, "name": name}}
            # Each version's entry is its own: the new one neither read nor replaced the old.
            mine = keys_of(new).user(DANA)
            assert orjson.loads(await redis.get(mine))["user"]["name"] == name
            assert orjson.loads(await redis.get(profile))["user"]["name"] == "Old Format"
            assert await old.data(ME, user=DANA) == {"me": {"id": DANA, "name": "Old Format"}}
            assert sorted([profile, mine]) == sorted(
                k.decode() for k in await redis.keys(f"ddg:*:user:{DANA}")
            )
            assert keys_of(new).rewrites_channel() != keys_of(old).rewrites_channel()
    await redis.aclose()
