"""Drain: a replica told to stop answers /readyz 503 at once and keeps serving for
GATEWAY_DRAIN_S, so a load balancer that follows readiness moves its traffic to the other
replica before the port closes: a restart refuses no connection."""

import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from gateway.auth import mint_token
from gateway.settings import Settings
from gateway.version import VERSION
from tests.harness.processes import GatewayProcess, child_env, free_port
from tests.harness.waiting import wait_until
from tests.support.dataset import DANA

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

DRAIN_S = 3.0
PROBE_S = 0.1  # the balancer's readiness period (one failure takes a replica out)
ME = {"query": "{ me { id } }"}


@dataclass
class Balancer:
    """Round robin over the replicas whose /readyz last answered 200, one new connection
    per request (the worst case: every request connects), as a load balancer does."""

    urls: list[str]
    headers: dict[str, str]
    in_rotation: set[str] = field(default_factory=set)
    served: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    left_rotation_at: dict[str, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def probe(self) -> None:
        while not self.stop.is_set():
            for url in self.urls:
                try:
                    ready = httpx.get(f"{url}/readyz", timeout=5).status_code == 200
                except httpx.TransportError:
                    ready = False
                if ready:
                    self.in_rotation.add(url)
                elif url in self.in_rotation:
                    self.in_rotation.discard(url)
                    self.left_rotation_at[url] = time.monotonic()
            self.stop.wait(PROBE_S)

    def send(self) -> None:
        turn = 0
        while not self.stop.is_set():
            ready = sorted(self.in_rotation)
            if not ready:
                self.stop.wait(0.01)
                continue
            url = ready[turn % len(ready)]
            turn += 1
            try:
                response = httpx.post(f"{url}/graphql", json=ME, headers=self.headers, timeout=30)
                self.statuses[response.status_code] += 1
                self.served[url] += 1
            except httpx.ConnectError:
                self.refused += 1
            except httpx.TransportError as exc:
                self.errors.append(f"{url}: {type(exc).__name__}: {exc}")
            self.stop.wait(0.005)

    def __enter__(self) -> "Balancer":
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self.probe, self.send)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def restart_behind_a_balancer(
    dataset_url: str, redis_url: str, tmp_path: Path, drain_s: float
) -> tuple[Balancer, dict[str, float]]:
    """Replica `a` (two workers under the supervisor) restarted while `b` serves; figures:
    seconds from SIGTERM to leaving the rotation, to exit, and back in rotation."""
    env = child_env(dataset_url, redis_url=redis_url, drain_s=str(drain_s))
    port = free_port()
    headers = {"Authorization": f"Bearer {mint_token(Settings(), DANA, 'director', 3600)}"}
    a = GatewayProcess("a", env, tmp_path, workers=2, port=port)
    b = GatewayProcess("b", env, tmp_path, workers=1)
    with a, b, Balancer([a.url, b.url], headers) as balancer:
        wait_until(lambda: min(balancer.served[a.url], balancer.served[b.url]) >= 5, "traffic")
        signalled = time.monotonic()
        a.send_signal(signal.SIGTERM)
        wait_until(lambda: a.url not in balancer.in_rotation, "a out of the rotation")
        out_s = balancer.left_rotation_at[a.url] - signalled
        assert a.wait() == 0, a.tail()
        exited_s = time.monotonic() - signalled
        again = GatewayProcess("a-again", env, tmp_path, workers=2, port=port)
        with again:
            before = balancer.served[a.url]
            wait_until(lambda: balancer.served[a.url] >= before + 5, "a back in the rotation")
            back_s = time.monotonic() - signalled
    return balancer, {"out_s": out_s, "exited_s": exited_s, "back_s": back_s}


def test_a_restart_refuses_no_connection(dataset_url: str, redis_url: str, tmp_path: Path) -> None:
    balancer, figures = restart_behind_a_balancer(dataset_url, redis_url, tmp_path, DRAIN_S)
    print(f"drain {DRAIN_S} s: {dict(balancer.served)} {figures} refused {balancer.refused}")
    assert (balancer.refused, balancer.errors) == (0, [])
    assert set(balancer.statuses) == {200}
    # Out of the rotation long before the port closed: the drain held it open.
    assert figures["out_s"] < DRAIN_S <= figures["exited_s"]


def test_readyz_says_draining_at_once(dataset_url: str, redis_url: str, tmp_path: Path) -> None:
    env = child_env(dataset_url, redis_url=redis_url, drain_s="60")
    with GatewayProcess("gateway", env, tmp_path) as gateway:
        gateway.send_signal(signal.SIGTERM)

        def draining() -> httpx.Response | None:
            response = httpx.get(f"{gateway.url}/readyz", timeout=30)
            return response if response.status_code == 503 else None

        response = wait_until(draining, "/readyz to say draining")
        assert response.json() == {"status": "draining", "down": [], "version": VERSION}
        assert response.headers["connection"] == "close"
        # Still serving meanwhile.
        token = mint_token(Settings(), DANA, "director", 3600)
        headers = {"Authorization": f"Bearer {token}"}
        served = httpx.post(f"{gateway.url}/graphql", json=ME, headers=headers, timeout=30)
        assert served.json() == {"data": {"me": {"id": DANA}}}
        # A second signal stops it without waiting out the drain.
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait() is not None
        assert gateway.messages(r"^received SIGTERM: draining \(/readyz 503\) for 60 s")
