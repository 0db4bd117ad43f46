"""The real subscription clients in Node (tests/js/subscribe.mjs), and the tokens and webhooks
they are driven with."""

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from gateway.auth import mint_token
from gateway.documents.dashboard import dashboard_operations
from gateway.settings import Settings
from tests.support.live_gateway import send_change_event

JS_DIR = Path(__file__).parents[1] / "js"
WAIT_S = 60.0
SECRET = "js-webhook-secret"
SETTINGS = Settings(webhook_secret=SECRET)
OPERATIONS = dashboard_operations()


def token(user: int, role: str = "director", ttl_s: int = 600) -> str:
    return mint_token(SETTINGS, user, role, ttl_s)


class Clients:
    """tests/js/subscribe.mjs: commands in, events out (buffered per subscription name)."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.events: dict[str, list[dict[str, Any]]] = {}

    async def __aenter__(self) -> "Clients":
        self.process = await asyncio.create_subprocess_exec(
            self.node,
            str(JS_DIR / "subscribe.mjs"),
            cwd=JS_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    async def start(self, do: str, name: str, url: str, bearer: str | None, query: str,
                    **extra: Any) -> None:  # fmt: skip
        command = {"do": do, "name": name, "url": url, "token": bearer, "query": query, **extra}
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()

    async def event(self, name: str) -> dict[str, Any]:
        """The next event of subscription `name` (bounded wait)."""
        assert self.process.stdout is not None
        async with asyncio.timeout(WAIT_S):
            while not self.events.get(name):
                line = await self.process.stdout.readline()
                if not line:
                    stderr = await self.process.stderr.read() if self.process.stderr else b""
                    raise AssertionError(f"node exited: {stderr.decode()}")
                event = json.loads(line)
                self.events.setdefault(event["name"], []).append(event)
        return self.events[name].pop(0)

    async def update(self, name: str) -> dict[str, Any]:
        """The next `dashboard` update of `name`, asserting it carries no errors."""
        event = await self.event(name)
        assert event["kind"] == "next", event
        assert "errors" not in event["payload"], event["payload"]
        return dict(event["payload"]["data"]["dashboard"], t=event["t"])


async def warm(url: str, *callers: tuple[int, str]) -> None:
    """Computes what the subscriptions will read before any subscribes (those first writes
    are announced to no one)."""
    async with httpx.AsyncClient(base_url=url, timeout=WAIT_S) as http:
        for user, role in callers:
            headers = {"Authorization": f"Bearer {token(user, role)}"}
            for name, variables in (("DirectorSummary", {}), ("CohortList", {"first": 100})):
                body = {"query": OPERATIONS[name].body, "variables": variables}
                response = await http.post("/graphql", json=body, headers=headers)
                assert "errors" not in response.json(), response.text


async def webhook(url: str, cohort_ids: list[int]) -> float:
    """Sends a signed change event; returns when it was sent (unix time)."""
    return await send_change_event(url, SECRET, cohort_ids, "missions", WAIT_S)
