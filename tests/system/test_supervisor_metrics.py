"""A serve worker that dies is marked dead for the multiprocess collector: what it held
(live gauges: connections, subscriptions, running refreshes) leaves the scrape when the
supervisor restarts it; its counters stay."""

import asyncio
import os
import signal
from pathlib import Path

import pytest

from gateway.auth import mint_token
from gateway.settings import Settings
from tests.harness.processes import GatewayProcess, child_env
from tests.harness.procfs import session_pids
from tests.harness.waiting import async_wait_until, wait_until
from tests.support.dataset import DANA
from tests.support.subscription_clients import ws_session

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
WORKERS = 2


def connections(gateway: GatewayProcess) -> float:
    return gateway.metric_sum("gateway_subscription_connections")


async def test_a_dead_worker_leaves_the_scrape(
    dataset_url: str, redis_url: str, tmp_path: Path
) -> None:
    env = child_env(dataset_url, redis_url=redis_url)
    gateway = GatewayProcess("gateway", env, tmp_path, workers=WORKERS)
    token = mint_token(Settings(), DANA, "director", 3600)
    with gateway:
        workers = [pid for pid in session_pids(gateway.pid) if pid != gateway.pid]
        assert len(workers) == WORKERS
        async with ws_session(gateway.url.replace("http", "ws", 1), token):
            await async_wait_until(
                lambda: asyncio.to_thread(lambda: connections(gateway) == 1),
                "the connection in the scrape",
            )
            statements = gateway.statements()
            assert statements > 0
            for pid in workers:  # the one holding the connection among them
                os.kill(pid, signal.SIGKILL)

            def restarted() -> bool:
                now = [p for p in session_pids(gateway.pid) if p != gateway.pid]
                started = gateway.log().count("Application startup complete")
                return len(now) == WORKERS and not set(now) & set(workers) and started == 4

            wait_until(restarted, "the supervisor to restart both workers", process=gateway)
            gateway.wait_ready()
            # The dead processes' live gauges are gone; their counters are kept.
            assert connections(gateway) == 0
            assert gateway.statements() >= statements
        assert gateway.messages(r"exited \(-9\); restarting")
