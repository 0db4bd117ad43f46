"""Subscriptions within their bound: a signed webhook for a cohort reaches a real
graphql-ws subscriber of its director, with the new computedAt, within 2 s — every time,
over ROUNDS webhooks against `gateway serve` (embedded mode). The figures go to
results/subscriptions_webhook_push.json."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from tests.reliability.harness import percentile, write_results
from tests.support import dataset
from tests.support.dataset import DANA
from tests.support.live_gateway import live_gateway
from tests.support.node_clients import SECRET, Clients, token, warm, webhook
from tests.support.subscriptions import DASHBOARD

pytestmark = pytest.mark.reliability

ROUNDS = 20
BOUND_S = 2.0


async def test_a_webhook_reaches_its_subscriber_within_2_s(tmp_path: Path, node: str) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'upstream.sqlite3'}"
    await dataset.load(db)
    delays: list[float] = []
    with live_gateway(db, webhook_secret=SECRET) as url:
        await warm(url, (DANA, "director"))
        async with Clients(node) as clients:
            await clients.start("ws", "dana", url, token(DANA), DASHBOARD)
            previous = (await clients.update("dana"))["computedAt"]
            for _ in range(ROUNDS):
                sent = await webhook(url, [101])
                update = await clients.update("dana")
                assert update["changedCohortIds"] == [101]
                assert update["computedAt"] > previous
                previous = update["computedAt"]
                delays.append(update["t"] - sent)
    figures = {
        "rounds": ROUNDS,
        "bound_s": BOUND_S,
        "p50_s": round(statistics.median(delays), 3),
        "p95_s": round(percentile(delays, 95) or 0.0, 3),
        "max_s": round(max(delays), 3),
    }
    write_results("subscriptions_webhook_push", figures)
    assert max(delays) <= BOUND_S, figures
