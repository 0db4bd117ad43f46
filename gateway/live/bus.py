"""How rewrite notices reach every gateway: Redis pub/sub, or this process.

- RedisBus: a unit's notice is one PUBLISH on the cache version's channel
  (Keys.rewrites_channel); each gateway process holds one subscribed connection and hands
  what arrives to its hub. Nothing is read or written per subscriber. A gateway whose
  subscription dropped (Redis restarted, a network cut) cannot know what it missed: when
  it is subscribed again, its hub re-reads everything its subscriptions watch (a resync).
  A notice that cannot be published (Redis down past the retries) is logged and lost;
  the subscribers then see those figures with the next notice that concerns them.
- LocalBus (embedded mode): straight to this process's hub.

Both are a `Publisher` (gateway/live/notices.py) for the subtree cache: a deployment that
moves notices elsewhere (cluster pub/sub, another broker) replaces this module only.
"""

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway import metrics
from gateway.live.notices import Rewrites

if TYPE_CHECKING:
    from gateway.live.hub import Hub

log = logging.getLogger("gateway.live.bus")

# A failed PUBLISH is retried at once (the pool may hold connections that died with a Redis
# restart: each failure discards one), then after a pause.
PUBLISH_ATTEMPTS = 6
PUBLISH_AT_ONCE = 3
PUBLISH_RETRY_S = 1.0
LISTEN_POLL_S = 5.0  # a blocked read returns this often (to notice cancellation promptly)
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 5.0


class LocalBus:
    def __init__(self, hub: "Hub") -> None:
        self.hub = hub

    async def publish(self, rewrites: Rewrites) -> None:
        rewrites.published_at = time.time()
        metrics.LIVE_PUBLISHED.inc()
        self.hub.notify(rewrites)


class RedisBus:
    def __init__(self, client: aioredis.Redis, url: str, channel: str) -> None:
        self.client = client  # the process's shared client: PUBLISH only
        self.url = url
        self.channel = channel

    async def publish(self, rewrites: Rewrites) -> None:
        rewrites.published_at = time.time()
        message = rewrites.encode()
        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                await self.client.publish(self.channel, message)
            except (RedisError, OSError) as exc:
                if attempt + 1 < PUBLISH_ATTEMPTS:
                    if attempt + 1 >= PUBLISH_AT_ONCE:
                        await asyncio.sleep(PUBLISH_RETRY_S)
                    continue
                log.error(
                    "could not publish a rewrite notice; subscribers see these figures with "
                    "their next update: %s",
                    exc,
                    extra={"cohorts": len(rewrites.cohorts), "bytes": len(message)},
                )
                return
            metrics.LIVE_PUBLISHED.inc()
            return

    async def listen(self, hub: "Hub") -> None:
        """Until cancelled: one subscribed connection of its own, reconnected with backoff.
        Every confirmation of the subscription (the first one included) resyncs the hub."""
        delay_s = RECONNECT_MIN_S
        while True:
            client = aioredis.Redis.from_url(
                self.url, socket_connect_timeout=1.0, health_check_interval=10
            )
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                while True:
                    message = await pubsub.get_message(timeout=LISTEN_POLL_S)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        delay_s = RECONNECT_MIN_S
                        hub.resync()
                    elif message["type"] == "message":
                        rewrites = Rewrites.decode(message["data"])
                        if rewrites is not None:
                            hub.notify(rewrites)
            except (RedisError, OSError) as exc:
                log.warning("rewrite notices: subscription lost (%s); retrying", exc)
            finally:
                try:
                    await pubsub.aclose()
                    await client.aclose()
                except (RedisError, OSError):
                    pass
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, RECONNECT_MAX_S)
