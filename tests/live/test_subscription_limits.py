"""Connection limits under concurrency and the WebSocket's bounds before connection_ack,
against uvicorn in this process (tests/support/live_server.py): hundreds of connections opened at
once, over WebSocket and event streams together, admit exactly the limit."""

import asyncio
import contextlib
import json
from typing import Any

from websockets.exceptions import ConnectionClosed

from tests.harness.waiting import async_wait_until
from tests.support.clock import MovableClock
from tests.support.cycles import refresh_all
from tests.support.dataset import ADMIN, DANA, NOW
from tests.support.gateway import settings_for
from tests.support.live_server import Served, serving
from tests.support.subscription_clients import WS, sse_stream, ws_connect, ws_session

DASHBOARD = "subscription { dashboard { computedAt } }"
ACK = {"type": "connection_ack"}
CALLER_LIMIT = 8
PROCESS_LIMIT = 20
AT_ONCE = 150  # of each transport
# Every socket is connected before any init is sent: on a busy machine that takes longer
# than the default init timeout, which these tests are not about (tests/live/test_subscriptions.py).
INIT_TIMEOUT_S = 600.0


async def _init(ws: WS, token: str) -> Any:
    """What one connection_init got: the ack, or the close code and reason."""
    try:
        reply = await ws.init(token)
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code, closed.rcvd.reason
    if reply != ACK:
        return reply
    return "ack"


async def _open_all(
    live: Served, stack: contextlib.AsyncExitStack, users: list[tuple[int, str]]
) -> list[Any]:
    """One WebSocket and one event stream per entry of `users`, all at once: every socket
    connected first, then every connection_init sent and every stream opened together."""
    sockets = await asyncio.gather(
        *(stack.enter_async_context(ws_connect(live.ws_url)) for _ in users)
    )

    async def stream(user: tuple[int, str]) -> Any:
        sse = await stack.enter_async_context(
            sse_stream(live.url, {"query": DASHBOARD}, live.auth(*user))
        )
        if sse.response.status_code == 200:
            name, _ = await sse.event()
            assert name == "next"
            return "ack"
        await sse.response.aread()
        body = sse.response.json()
        return sse.response.status_code, body["errors"][0]["extensions"]["code"]

    return list(
        await asyncio.gather(
            *(_init(ws, live.token(*user)) for ws, user in zip(sockets, users, strict=True)),
            *(stream(user) for user in users),
        )
    )


async def _settled(live: Served, taken: int) -> None:
    hub = live.services.hub
    assert hub is not None

    async def given_back() -> bool:
        return hub.slots.taken == taken

    await async_wait_until(given_back, f"{taken} connection slots taken")


async def test_one_caller_at_once_over_both_transports_gets_exactly_its_limit(db: str) -> None:
    settings = settings_for(
        db,
        None,
        subscriptions_max_connections=10_000,
        subscriptions_max_connections_per_caller=CALLER_LIMIT,
        subscriptions_init_timeout_s=INIT_TIMEOUT_S,
    )
    async with serving(settings, MovableClock(NOW)) as live:
        await refresh_all(live.services)
        async with contextlib.AsyncExitStack() as stack:
            outcomes = await _open_all(live, stack, [(DANA, "director")] * AT_ONCE)
            refused_ws = (
                4429,
                f"Too many subscription connections for this caller; the limit is {CALLER_LIMIT}.",
            )
            assert outcomes.count("ack") == CALLER_LIMIT
            assert (
                outcomes.count(refused_ws) + outcomes.count((429, "TOO_MANY_CONNECTIONS"))
                == 2 * AT_ONCE - CALLER_LIMIT
            )
        # Every slot is given back once the connections are gone: the caller gets its
        # limit again.
        await _settled(live, 0)
        async with contextlib.AsyncExitStack() as stack:
            sessions = [
                await stack.enter_async_context(ws_session(live.ws_url, live.token(DANA)))
                for _ in range(CALLER_LIMIT)
            ]
            assert len(sessions) == CALLER_LIMIT
        await _settled(live, 0)


async def test_the_process_limit_holds_for_hundreds_at_once(db: str) -> None:
    settings = settings_for(
        db,
        None,
        subscriptions_max_connections=PROCESS_LIMIT,
        subscriptions_max_connections_per_caller=10_000,
        subscriptions_init_timeout_s=INIT_TIMEOUT_S,
    )
    async with serving(settings, MovableClock(NOW)) as live:
        await refresh_all(live.services)
        busy = (
            1013,
            f"This gateway holds its maximum of {PROCESS_LIMIT} subscription connections; "
            "try again later.",
        )
        async with contextlib.AsyncExitStack() as stack:
            outcomes = await _open_all(
                live, stack, [(DANA, "director"), (ADMIN, "admin")] * (AT_ONCE // 2)
            )
            assert outcomes.count("ack") == PROCESS_LIMIT
            assert (
                outcomes.count(busy) + outcomes.count((503, "TOO_MANY_CONNECTIONS"))
                == 2 * AT_ONCE - PROCESS_LIMIT
            )
            await _settled(live, PROCESS_LIMIT)
        await _settled(live, 0)
        async with ws_session(live.ws_url, live.token(DANA)):
            await _settled(live, 1)


async def _close_of(ws: WS, frame: str) -> tuple[int, str]:
    # Closed while the frame was being sent: the close frame says why.
    with contextlib.suppress(ConnectionClosed):
        await ws.socket.send(frame)
    return await ws.closed()


async def test_a_frame_over_the_body_bound_is_closed_1009_before_it_is_read(db: str) -> None:
    settings = settings_for(db, None)
    async with serving(settings, MovableClock(NOW)) as live:
        big = "x" * (15 * 1024 * 1024)
        async with ws_connect(live.ws_url) as ws:
            code, _ = await _close_of(ws, big)
            assert code == 1009
        # After connection_ack too: a subscribe message past GATEWAY_MAX_BODY_BYTES.
        async with ws_session(live.ws_url, live.token(DANA)) as ws:
            padding = "#" + "x" * settings.max_body_bytes + "\n"
            message = {"id": "1", "type": "subscribe", "payload": {"query": padding + DASHBOARD}}
            code, _ = await _close_of(ws, json.dumps(message))
            assert code == 1009
        await _settled(live, 0)


async def test_before_connection_ack_only_a_small_init_frame_is_read(db: str) -> None:
    settings = settings_for(db, None)
    limit = settings.subscriptions_max_init_bytes
    async with serving(settings, MovableClock(NOW)) as live:
        token = live.token(DANA)
        init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
        padded = dict(init, payload={**init["payload"], "pad": "x" * limit})
        async with ws_connect(live.ws_url) as ws:
            assert await _close_of(ws, json.dumps(padded)) == (1009, "Message too big")
        # The same padding once acknowledged is any message within GATEWAY_MAX_BODY_BYTES.
        async with ws_session(live.ws_url, token) as ws:
            await ws.send({"type": "ping", "payload": {"pad": "x" * limit}})
            assert await ws.receive() == {"type": "pong"}
        await _settled(live, 0)
