"""The real clients: `graphql-ws` (and Apollo Client's GraphQLWsLink on it) and
`graphql-sse`, in Node (tests/js/subscribe.mjs), against `gateway serve` in child
processes: one update per webhook, none for a cohort out of scope, across two replicas
on one Redis, and the refusals with their codes."""

import asyncio
import json
from pathlib import Path
from typing import Any

from gateway.cache.keys import COLD_START_JOB_ID, JOB_REFRESH_ALL, JOB_REFRESH_PENDING
from gateway.documents.dashboard import OPERATIONS_DIR
from tests.harness.processes import GatewayProcess, WorkerProcess, child_env, running
from tests.harness.waiting import wait_until
from tests.support.dataset import ADMIN, DANA, DREW, NORA
from tests.support.live_gateway import live_gateway
from tests.support.node_clients import OPERATIONS, SECRET, Clients, token, warm, webhook
from tests.support.subscriptions import DASHBOARD

ARTIFACTS = Path(__file__).parents[1] / "artifacts"


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
        # On an empty Redis the worker runs a cycle at once (a cold start). Its notice,
        # naming all of Dana's cohorts, is published after the cycle's "done" line, as its
        # job ends. B subscribes to the notices with its first subscriber: the notice must
        # be out before, or it would be that subscriber's first update.
        cold = f"{COLD_START_JOB_ID}:{JOB_REFRESH_ALL}"
        await asyncio.to_thread(wait_until, lambda: worker.job_ends(cold), "the cold start")
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
