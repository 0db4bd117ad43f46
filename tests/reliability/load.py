"""Bounded load: closed-loop clients, or a steady open-loop rate, recording every request."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from tests.harness.waiting import CEILING_S
from tests.reliability.harness import (
    Caller,
    IsolationChecker,
    Probe,
    World,
    codes_of,
    manifest_get,
    percentile,
    post_document,
)


@dataclass(frozen=True)
class Request:
    transport: str  # manifest_get | post
    caller: Caller
    probe: Probe


@dataclass
class Outcome:
    request: Request
    started: float  # monotonic seconds
    finished: float
    status: int | None  # None: no HTTP answer (connection refused or closed)
    error: str | None = None  # exception class for transport failures
    leaks: int = 0
    problems: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)  # extensions.code of each GraphQL error

    @property
    def seconds(self) -> float:
        return self.finished - self.started


def dashboard_mix(world: World, rng: random.Random, size: int = 400) -> list[Request]:
    """What directors do: mostly persisted GETs of their own pages, some POSTs."""
    requests = []
    for _ in range(size):
        caller = rng.choice(world.callers)
        scope = sorted(world.scope(caller))
        roll = rng.random()
        if roll < 0.35:
            probe = Probe("DirectorSummary")
        elif roll < 0.6:
            probe = Probe("CohortList")
        elif scope:
            probe = Probe("CohortDetail", {"id": rng.choice(scope)})
        else:
            probe = Probe("DirectorSummary")
        transport = "post" if rng.random() < 0.1 else "manifest_get"
        requests.append(Request(transport, caller, probe))
    return requests


SENDERS = {"post": post_document, "manifest_get": manifest_get}


class Recorder:
    def __init__(self, checker: IsolationChecker | None) -> None:
        self.checker = checker
        self.outcomes: list[Outcome] = []

    async def send(self, client: httpx.AsyncClient, request: Request) -> Outcome:
        started = time.monotonic()
        try:
            response = await SENDERS[request.transport](client, request.caller, request.probe)
        except httpx.TransportError as exc:
            outcome = Outcome(request, started, time.monotonic(), None, type(exc).__name__)
        else:
            outcome = Outcome(request, started, time.monotonic(), response.status_code)
            if response.headers.get("content-type", "").startswith("application/json"):
                try:
                    outcome.codes = codes_of(response.json())
                except ValueError:
                    outcome.codes = ["<not JSON>"]
            if self.checker is not None:
                verdict = self.checker.check(
                    request.transport, request.caller, request.probe, response
                )
                outcome.leaks = len(verdict.leaks)
                outcome.problems = verdict.problems
        self.outcomes.append(outcome)
        return outcome

    # --- figures ---

    def between(self, start: float, end: float) -> list[Outcome]:
        return [o for o in self.outcomes if start <= o.finished < end]

    def summary(self, outcomes: Sequence[Outcome] | None = None) -> dict[str, object]:
        outcomes = self.outcomes if outcomes is None else outcomes
        statuses = Counter(str(o.status) if o.status is not None else o.error for o in outcomes)
        ok = [o.seconds for o in outcomes if o.status == 200]
        codes = Counter(c for o in outcomes for c in o.codes)
        return {
            "requests": len(outcomes),
            "by_status": dict(sorted(statuses.items(), key=lambda kv: str(kv[0]))),
            "http_5xx": sum(1 for o in outcomes if o.status is not None and o.status >= 500),
            "transport_errors": sum(1 for o in outcomes if o.status is None),
            "leaks": sum(o.leaks for o in outcomes),
            "answers_with_problems": sum(1 for o in outcomes if o.problems),
            "error_codes": dict(sorted(codes.items())),
            "p50_ms": _ms(percentile(ok, 0.50)),
            "p95_ms": _ms(percentile(ok, 0.95)),
            "p99_ms": _ms(percentile(ok, 0.99)),
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


async def closed_loop(
    client: httpx.AsyncClient,
    recorder: Recorder,
    plan: Sequence[Request],
    *,
    clients: int,
    stop: Callable[[], bool],
    max_requests: int,
    max_seconds: float,
    pause_after_error_s: float = 0.05,
) -> None:
    """`clients` loops, each sending its next request as soon as the last is answered,
    until `stop()` or a bound (count or time) is reached."""
    deadline = time.monotonic() + max_seconds
    sent = 0

    async def loop(offset: int) -> None:
        nonlocal sent
        index = offset
        while not stop() and sent < max_requests and time.monotonic() < deadline:
            sent += 1
            outcome = await recorder.send(client, plan[index % len(plan)])
            index += clients
            if outcome.status is None:
                await asyncio.sleep(pause_after_error_s)  # as a load balancer would retry

    await asyncio.gather(*(loop(i) for i in range(clients)))


async def steady_rate(
    client: httpx.AsyncClient,
    recorder: Recorder,
    plan: Sequence[Request],
    *,
    rate_per_s: float,
    seconds: float,
    max_in_flight: int = 64,
) -> int:
    """Open loop: one request every 1/rate seconds whatever the answers take (at most
    `max_in_flight` outstanding; beyond that a tick is skipped and counted)."""
    interval = 1.0 / rate_per_s
    start = time.monotonic()
    tasks: set[asyncio.Task[Outcome]] = set()
    skipped = 0
    total = int(seconds * rate_per_s)
    for n in range(total):
        delay = start + n * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) >= max_in_flight:
            skipped += 1
            continue
        task = asyncio.ensure_future(recorder.send(client, plan[n % len(plan)]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=CEILING_S)
    return skipped
