"""The real clients: `graphql-ws` (and Apollo Client's GraphQLWsLink on it) and
`graphql-sse`, in Node (tests/js/subscribe.mjs), against `gateway serve` in child
processes: one update per webhook, none for a cohort out of scope, across two replicas
on one Redis, and the refusals with their codes."""

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.auth import mint_token
from gateway.cache.keys import JOB_REFRESH_PENDING
from gateway.documents.dashboard import OPERATIONS_DIR, dashboard_operations
from gateway.settings import Settings
from tests.dataset import ADMIN, DANA, DREW, NORA
from tests.harness.processes import GatewayProcess, WorkerProcess, child_env, running
from tests.live_gateway import live_gateway, send_change_event
from tests.node import node_binary
from tests.test_subscriptions import DASHBOARD

JS_DIR = Path(__file__).parent / "js"
ARTIFACTS = Path(__file__).parent / "artifacts"
WAIT_S = 60.0
SECRET = "js-webhook-secret"
SETTINGS = Settings(webhook_secret=SECRET)

OPERATIONS = dashboard_operations()


@pytest.fixture(scope="module")
def node() -> str:
    return node_binary()


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


def record(name: str, figures: dict[str, Any]) -> None:
    """Measured figures, kept with the screenshots (tests/artifacts, not committed)."""
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")


async def test_graphql_ws_and_graphql_sse_get_one_update_per_webhook(db: str, node: str) -> None:
    with live_gateway(db, webhook_secret=SECRET) as url:
        await warm(url, (DANA, "director"), (ADMIN, "admin"))
        async with Clients(node) as clients:
            await clients.start("ws", "dana-ws", url, token(DANA), DASHBOARD)
            await clients.start("sse", "dana-sse", url, token(DANA), DASHBOARD)
            await clients.start("ws", "admin", url, token(ADMIN, "admin"), DASHBOARD)
            first = {n: await clients.update(n) for n in ("dana-ws", "dana-sse", "admin")}
            assert {n: u["changedCohortIds"] for n, u in first.items()} == {
                "dana-ws": [],
                "dana-sse": [],
                "admin": [],
            }
            assert first["dana-ws"]["summary"] == first["dana-sse"]["summary"]
            assert first["dana-ws"]["summary"]["totalCohorts"] == 3

            await webhook(url, [103])  # Drew's cohort: the admin sees it, Dana does not
            assert (await clients.update("admin"))["changedCohortIds"] == [103]
            sent = await webhook(url, [101])
            delays = {}
            for name in ("dana-ws", "dana-sse"):
                # Dana's next update is 101's: none came for 103 before it.
                update = await clients.update(name)
                assert update["changedCohortIds"] == [101]
                assert update["computedAt"] > first[name]["computedAt"]
                delays[name] = round(update["t"] - sent, 3)
            assert (await clients.update("admin"))["changedCohortIds"] == [101]
    record("subscriptions_webhook_delay_s", delays)


async def test_a_subscriber_on_replica_b_hears_of_a_refresh_through_replica_a(
    db: str, redis_url: str, node: str, tmp_path: Path
) -> None:
    env = child_env(db, redis_url=redis_url, webhook_secret=SECRET, refresh_interval_s="3600")
    a = GatewayProcess("gateway-a", env, tmp_path)
    b = GatewayProcess("gateway-b", env, tmp_path)
    worker = WorkerProcess("worker", env, tmp_path)
    with running(a, b, worker):
        # On an empty Redis the worker runs a cycle at once (a cold start): its notice,
        # naming all of Dana's cohorts, must not fall after the subscription's first event.
        await asyncio.to_thread(worker.wait_for_message, "^refresh cycle done$")
        await warm(a.url, (DANA, "director"))
        async with Clients(node) as clients:
            await clients.start("ws", "on-b", b.url, token(DANA), DASHBOARD)
            assert (await clients.update("on-b"))["changedCohortIds"] == []
            await webhook(a.url, [101])  # A queues the refresh, a worker runs it
            update = await clients.update("on-b")
            # (A refresh cycle would name 101, 102 and 104: this is the webhook's.)
            assert update["changedCohortIds"] == [101]
    # The event's cohorts are one job of the event (gateway/refresh/pending.py).
    assert worker.messages(rf"← {JOB_REFRESH_PENDING}:evt-\d+:{JOB_REFRESH_PENDING} ●")


async def test_refusals_with_their_codes(db: str, node: str, manifest: str) -> None:
    settings = {
        "persisted_manifest": manifest,
        "persisted_only": "true",
        "subscriptions_max_connections_per_caller": "1",
    }
    sha256 = OPERATIONS["DashboardUpdates"].sha256
    persisted = {"persistedQuery": {"version": 1, "sha256Hash": sha256}}
    with live_gateway(db, **settings) as url:
        await warm(url, (DANA, "director"), (DREW, "director"), (ADMIN, "admin"))
        async with Clients(node) as clients:
            # No or a bad token.
            await clients.start("ws", "bad-ws", url, "nonsense", "", extensions=persisted)
            closed = await _closed(clients, "bad-ws")
            assert closed["code"] == 4401 and closed["reason"].startswith("Invalid token")
            await clients.start("sse", "bad-sse", url, "nonsense", "", extensions=persisted)
            error = (await clients.event("bad-sse"))["error"]
            assert error["status"] == 401
            assert error["body"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

            # A token that expires while subscribed.
            await clients.start("ws", "expiring", url, token(DREW, ttl_s=5), "",
                                extensions=persisted)  # fmt: skip
            assert (await clients.update("expiring"))["changedCohortIds"] == []
            closed = await _closed(clients, "expiring")
            assert (closed["code"], closed["reason"]) == (4401, "Token expired.")

            # Over the caller's limit (1 here).
            await clients.start("ws", "one", url, token(DANA), "", extensions=persisted)
            assert (await clients.update("one"))["changedCohortIds"] == []
            await clients.start("ws", "two", url, token(DANA), "", extensions=persisted)
            closed = await _closed(clients, "two")
            assert (closed["code"], closed["reason"]) == (
                4429,
                "Too many subscription connections for this caller; the limit is 1.",
            )

            # A document not in the manifest, in persisted-only mode.
            await clients.start("ws", "adhoc-ws", url, token(ADMIN, "admin"), DASHBOARD)
            event = await clients.event("adhoc-ws")
            assert event["kind"] == "error"
            [error] = event["error"]["errors"]
            assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_IN_LIST"
            await clients.start("sse", "adhoc-sse", url, token(DREW), DASHBOARD)
            event = await clients.event("adhoc-sse")
            assert event["kind"] == "next"
            assert event["payload"]["errors"][0]["extensions"]["code"] == (
                "PERSISTED_QUERY_NOT_IN_LIST"
            )
            assert (await clients.event("adhoc-sse"))["kind"] == "complete"

            # Apollo Client (GraphQLWsLink) sends the operation's text with __typename: the
            # manifest's very document, so it runs in persisted-only mode.
            text = (OPERATIONS_DIR / "DashboardUpdates.graphql").read_text()
            await clients.start("apollo", "apollo", url, token(NORA), text)
            update = await clients.update("apollo")
            assert update["changedCohortIds"] == []
            assert update["summary"]["totalCohorts"] == 0
            assert update["summary"]["__typename"] == "DirectorSummary"


async def _closed(clients: Clients, name: str) -> dict[str, Any]:
    """The close of `name`'s WebSocket (its `error` event, if any, comes first)."""
    while (event := await clients.event(name))["kind"] != "closed":
        assert event["kind"] in ("error", "next"), event
    return event
