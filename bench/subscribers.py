"""The subscribers of the bench's subscription scenario: one process, many WebSocket
connections (graphql-transport-ws, the `websockets` library), each one subscription.

    python -m bench.subscribers PLAN.json ws://127.0.0.1:PORT/graphql

PLAN.json: {"operations": {name: sha256}, "subscribers": [{"token", "operation",
"variables"}, …]}. Subscribes by hash alone (the persisted-query manifest), at most
CONNECTING at a time. Prints `READY <unix time> <seconds to connect all>` once every
subscription has its first result, then `U <index> <unix time>` for every later result
and `E <index> <what>` for an error or a close. Runs until SIGTERM.
"""

import asyncio
import json
import signal
import sys
import time
from typing import Any

import websockets

CONNECTING = 50
PROTOCOL = "graphql-transport-ws"


async def subscriber(
    index: int, url: str, plan: dict[str, Any], spec: dict[str, Any], ready: list[int],
    gate: asyncio.Semaphore, all_ready: asyncio.Event, total: int,
) -> None:  # fmt: skip
    async with gate:
        socket = await websockets.connect(url, subprotocols=[PROTOCOL], open_timeout=120)  # type: ignore[list-item]
        await socket.send(
            json.dumps(
                {"type": "connection_init", "payload": {"Authorization": f"Bearer {spec['token']}"}}
            )
        )
        ack = json.loads(await socket.recv())
        if ack.get("type") != "connection_ack":
            print(f"E {index} init {ack}", flush=True)
            return
        sha256 = plan["operations"][spec["operation"]]
        payload = {
            "query": "",
            "operationName": spec["operation"],
            "variables": spec.get("variables") or {},
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256}},
        }
        await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        first = json.loads(await socket.recv())
        if first.get("type") != "next" or "errors" in first.get("payload", {}):
            print(f"E {index} first {str(first)[:300]}", flush=True)
            return
    ready.append(index)
    if len(ready) == total:
        all_ready.set()
    try:
        async for raw in socket:
            at = time.time()
            message = json.loads(raw)
            if message.get("type") == "next" and "errors" not in message["payload"]:
                print(f"U {index} {at:.6f}", flush=True)
            else:
                print(f"E {index} {str(message)[:300]}", flush=True)
    except websockets.ConnectionClosed as closed:
        print(f"E {index} closed {closed}", flush=True)


async def main(plan: dict[str, Any], url: str) -> None:
    specs = plan["subscribers"]
    ready: list[int] = []
    all_ready = asyncio.Event()
    gate = asyncio.Semaphore(CONNECTING)
    started = time.time()
    tasks = [
        asyncio.ensure_future(subscriber(i, url, plan, spec, ready, gate, all_ready, len(specs)))
        for i, spec in enumerate(specs)
    ]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    waiter = asyncio.ensure_future(all_ready.wait())
    await asyncio.wait({waiter, asyncio.ensure_future(stop.wait())}, return_when="FIRST_COMPLETED")
    if all_ready.is_set():
        print(f"READY {time.time():.6f} {time.time() - started:.2f}", flush=True)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    import uvloop

    with open(sys.argv[1]) as plan_file:
        uvloop.run(main(json.load(plan_file), sys.argv[2]))
