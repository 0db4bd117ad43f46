"""Isolation: no caller ever sees a cohort, or a figure, outside their scope.

On the demo seed (12 directors, 1 admin, 60 cohorts) with a real Redis and `gateway serve`:
every caller × every dashboard page (the summary, the cohort list with its default and a
100-row page, the detail of every cohort 1..60 and of 999) × every transport (POST
document, APQ GET, manifest GET, ETag revalidation, the response fast path) × cached and
cold. Each page is asked by the callers in ascending then descending order, so for every
ordered pair (A, B) B asks while A's answer is in the caches. Scopes come from SQL.
"""

from __future__ import annotations

import asyncio
import random
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from gateway.cache.answers import AnswerId
from gateway.services import Services
from resolvers.caller import Caller as ServiceCaller
from tests.harness.processes import GatewayProcess
from tests.harness.waiting import CEILING_S
from tests.reliability.harness import (
    MISSING_COHORT,
    Caller,
    IsolationChecker,
    Probe,
    World,
    apq_get,
    apq_register_get,
    assert_same_code_as_processes,
    cache_counters,
    gateway_env,
    http_client,
    manifest_file,
    manifest_get,
    post_document,
    read_world,
    refresh_all_sync,
    settings_for,
    signed,
    sqlite_url,
    write_results,
)
from tests.support.gateway import event_body
from workers.worker import make_worker

pytestmark = pytest.mark.reliability

CONCURRENCY = 8  # pages in flight at once; the callers of one page go strictly in order
GET_TRANSPORTS = ("manifest_get", "apq_get")
TRANSPORTS = (*GET_TRANSPORTS, "post")

Send = Callable[[httpx.AsyncClient, Caller, Probe], Awaitable[httpx.Response]]
SENDERS: dict[str, Send] = {"post": post_document, "apq_get": apq_get, "manifest_get": manifest_get}


def probes_of(world: World) -> list[Probe]:
    return [
        Probe("DirectorSummary"),
        Probe("CohortList"),
        Probe("CohortList", {"first": 100}),
        *[Probe("CohortDetail", {"id": cid}) for cid in sorted(world.cohorts)],
        Probe("CohortDetail", {"id": MISSING_COHORT}),
    ]


class Matrix:
    """Runs passes and ETag probes against one gateway, judging every answer."""

    def __init__(self, client: httpx.AsyncClient, world: World, checker: IsolationChecker) -> None:
        self.client = client
        self.world = world
        self.checker = checker
        self.requests = 0
        # (state, transport, page) → callers in the order they asked, per pass.
        self.orders: dict[tuple[str, str, str], list[list[Caller]]] = {}
        # (transport, caller, page) → the ETag of the caller's last answer.
        self.etags: dict[tuple[str, Caller, str], str | None] = {}
        self.etag_probes = 0
        self.etag_pairs = 0  # (caller, another caller's different ETag) tried
        self.etag_not_modified = 0

    async def send(self, transport: str, caller: Caller, probe: Probe) -> httpx.Response:
        self.requests += 1
        response = await SENDERS[transport](self.client, caller, probe)
        self.checker.check(transport, caller, probe, response)
        if transport in GET_TRANSPORTS:
            self.etags[(transport, caller, probe.key)] = response.headers.get("etag")
        return response

    async def run_pass(
        self, state: str, transport: str, callers: list[Caller], probes: list[Probe]
    ) -> None:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def chain(probe: Probe) -> None:
            async with gate:
                if transport == "apq_get":
                    # Registration over GET, as Apollo's link does after PersistedQueryNotFound.
                    self.requests += 1
                    registered = await apq_register_get(self.client, callers[0], probe)
                    self.checker.check("apq_register", callers[0], probe, registered)
                for caller in callers:
                    await self.send(transport, caller, probe)
                self.orders.setdefault((state, transport, probe.key), []).append(list(callers))

        await asyncio.gather(*(chain(p) for p in probes))

    async def etag_pass(self, transport: str, callers: list[Caller], probes: list[Probe]) -> None:
        """Each caller revalidates with every other caller's different ETag (never a 304)
        and with their own (a 304)."""
        gate = asyncio.Semaphore(CONCURRENCY)
        send = SENDERS[transport]

        async def one(caller: Caller, probe: Probe) -> None:
            async with gate:
                own = self.etags.get((transport, caller, probe.key))
                others = {
                    self.etags.get((transport, other, probe.key))
                    for other in callers
                    if other != caller
                } - {None, own}
                if others:
                    # Every other caller's ETag in one If-None-Match (a list, as RFC 9110
                    # allows): a 304 would mean one of them validated B's answer.
                    self.requests += 1
                    self.etag_probes += 1
                    self.etag_pairs += len(others)
                    header = ", ".join(sorted(others))  # type: ignore[arg-type]
                    response = await send(self.client, caller, probe, if_none_match=header)  # type: ignore[call-arg]
                    verdict = self.checker.check(f"etag_{transport}", caller, probe, response)
                    if response.status_code == 304:
                        leak = f"etag_{transport} {caller} {probe.key}: 304 for another's ETag"
                        self.checker.leaks.append(leak)
                        self.checker.leaks_by_transport[f"etag_{transport}"] += 1
                        verdict.leaks.append(leak)
                if own is not None:
                    self.requests += 1
                    response = await send(self.client, caller, probe, if_none_match=own)  # type: ignore[call-arg]
                    if response.status_code == 304:
                        self.etag_not_modified += 1
                    else:
                        self.checker.problems.append(
                            f"etag_{transport} {caller} {probe.key}: own ETag gave "
                            f"{response.status_code}"
                        )

        await asyncio.gather(*(one(c, p) for c in callers for p in probes))

    def pairs_covered(self) -> tuple[int, int]:
        """(ordered pairs × page × transport × state covered, expected)."""
        covered = 0
        expected = 0
        n = len(self.world.callers)
        for orders in self.orders.values():
            pairs: set[tuple[Caller, Caller]] = set()
            for order in orders:
                pairs |= {(a, b) for i, a in enumerate(order) for b in order[i + 1 :]}
            covered += len(pairs)
            expected += n * (n - 1)
        return covered, expected


async def drop_answers_of(redis_url: str, caller: Caller) -> int:
    client = aioredis.Redis.from_url(redis_url)
    try:
        pattern = f"ddg:*:response:{caller.role}:{caller.user_id}:*"
        keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
        if keys:
            await client.delete(*keys)
        return len(keys)
    finally:
        await client.aclose()


async def answer_ttl_s(services: Services, redis_url: str, caller: Caller, probe: Probe) -> float:
    """Seconds the stored answer of this page has left in the fast path."""
    assert services.answers is not None
    key = services.answers.key(
        ServiceCaller(caller.user_id, caller.role),
        AnswerId.of(probe.operation.sha256, probe.op, probe.variables),
    )
    client = aioredis.Redis.from_url(redis_url)
    try:
        return max(0.0, await client.pttl(key) / 1000)
    finally:
        await client.aclose()


async def flush(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.flushall()
    finally:
        await client.aclose()


@pytest.fixture
def gateway(db_path: Path, redis_url: str, tmp_path: Path):
    env = gateway_env(sqlite_url(db_path), redis_url, manifest_file(tmp_path))
    with GatewayProcess("gateway", env, tmp_path) as process:
        yield process


async def test_isolation_matrix(
    gateway: GatewayProcess, world: World, redis_url: str, tmp_path: Path
) -> None:
    started = time.perf_counter()
    checker = IsolationChecker(world)
    probes = probes_of(world)
    ascending = list(world.callers)
    orders = {"ascending": ascending, "descending": ascending[::-1]}
    fast_path: dict[str, float] = {}
    prewarmed = 0
    async with http_client(gateway.url) as client:
        matrix = Matrix(client, world, checker)
        for state in ("cold", "cached"):
            if state == "cached":
                await flush(redis_url)
                output = await asyncio.to_thread(refresh_all_sync, gateway.env, tmp_path)
                prewarmed = int(re.search(r"prewarmed (\d+) answers", output).group(1))  # type: ignore[union-attr]
            for transport in TRANSPORTS:
                for order_name, callers in orders.items():
                    if state == "cold":
                        await flush(redis_url)
                    before = await cache_counters(client, "")
                    await matrix.run_pass(state, transport, callers, probes)
                    delta = (await cache_counters(client, "")).minus(before)
                    fast_path[f"{state}/{transport}/{order_name}"] = delta.get("response", "hit")
                if transport in GET_TRANSPORTS:
                    before = await cache_counters(client, "")
                    await matrix.etag_pass(transport, ascending, probes)
                    delta = (await cache_counters(client, "")).minus(before)
                    fast_path[f"{state}/etag_{transport}"] = delta.get("response", "hit")
        covered, expected_pairs = matrix.pairs_covered()

    seconds = time.perf_counter() - started
    not_found_variants = {t: len(s) for t, s in checker.not_found_shapes.items()}
    write_results(
        "isolation_matrix",
        {
            "callers": len(world.callers),
            "pages_per_caller": len(probes),
            "cohorts": len(world.cohorts),
            "states": ["cold", "cached"],
            "transports": [*TRANSPORTS, *(f"etag_{t}" for t in GET_TRANSPORTS), "apq_register"],
            "requests": matrix.requests,
            "probes_judged": checker.probes,
            "probes_by_transport": dict(checker.by_transport),
            "ordered_pair_page_transport_state_cells_covered": covered,
            "ordered_pair_page_transport_state_cells_expected": expected_pairs,
            "etag_probes_with_another_callers_etag": matrix.etag_probes,
            "etag_caller_pairs_tried": matrix.etag_pairs,
            "etag_own_revalidations_304": matrix.etag_not_modified,
            "answers_prewarmed_by_refresh": prewarmed,
            "fast_path_hits_per_pass": fast_path,
            "not_found_answer_variants_per_transport": not_found_variants,
            "leaks": len(checker.leaks),
            "leaks_by_transport": dict(checker.leaks_by_transport),
            "leak_examples": checker.leaks[:20],
            "problems": len(checker.problems),
            "problem_examples": checker.problems[:20],
            "seconds": round(seconds, 1),
        },
    )
    assert checker.leaks == []
    assert checker.problems == []
    assert covered == expected_pairs
    # Out of scope answers exactly like a cohort that does not exist, on every transport.
    assert set(not_found_variants.values()) == {1}
    # The fast path served the prewarmed pages, and detail pages stored on first use.
    assert prewarmed > 0
    assert fast_path["cached/manifest_get/ascending"] >= prewarmed
    # Cold: each pass starts flushed and asks each page once, so nothing is stored yet; the
    # revalidations that follow are answered from the answers stored by the pass.
    assert fast_path["cold/etag_manifest_get"] > 0
    assert fast_path["cold/etag_apq_get"] > 0


# --- scope changes delivered by webhook ------------------------------------------------


def pick_handover(world: World) -> tuple[int, int, int]:
    """(track, from director, to director): the giver keeps another track; the taker does
    not direct the track yet."""
    directors = sorted(world.tracks_by_director)
    for giver in directors:
        tracks = sorted(world.tracks_by_director[giver])
        if len(tracks) < 2:
            continue
        for track in tracks:
            has_cohorts = any(c.track_id == track for c in world.cohorts.values())
            for taker in directors:
                if taker != giver and track not in world.tracks_by_director[taker] and has_cohorts:
                    return track, giver, taker
    raise AssertionError("no track to hand over in the demo seed")


def hand_over(db_path: Path, track: int, giver: int, taker: int) -> None:
    with sqlite3.connect(db_path) as db:
        db.execute(
            "UPDATE track_directors SET director_id = ? WHERE track_id = ? AND director_id = ?",
            (taker, track, giver),
        )


async def run_burst_worker(database_url: str, redis_url: str) -> float:
    started = time.perf_counter()
    worker = make_worker(settings_for(database_url, redis_url), burst=True, poll_delay=0.01)
    try:
        await asyncio.wait_for(worker.main(), CEILING_S)
    finally:
        await worker.close()
    return time.perf_counter() - started


async def probe_everything(
    client: httpx.AsyncClient, checker: IsolationChecker, callers: list[Caller], probes
) -> dict[tuple[str, Caller, str], httpx.Response]:
    """Every page for these callers over POST, APQ GET and manifest GET, manifest twice
    (the second is answered by the fast path)."""
    answers: dict[tuple[str, Caller, str], httpx.Response] = {}
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(caller: Caller, probe: Probe) -> None:
        async with gate:
            registered = await apq_register_get(client, caller, probe)
            checker.check("apq_register", caller, probe, registered)
            for transport in (*TRANSPORTS, "manifest_get"):
                response = await SENDERS[transport](client, caller, probe)
                checker.check(transport, caller, probe, response)
                answers[(transport, caller, probe.key)] = response

    await asyncio.gather(*(one(c, p) for c in callers for p in probes))
    return answers


async def test_scope_change_by_webhook(
    gateway: GatewayProcess, db_path: Path, world: World, redis_url: str, tmp_path: Path
) -> None:
    track, giver, taker = pick_handover(world)
    moved = sorted(c.id for c in world.cohorts.values() if c.track_id == track)
    giver_c, taker_c = Caller(giver, "director"), Caller(taker, "director")
    callers = [giver_c, taker_c]
    probes = probes_of(world)
    database_url = sqlite_url(db_path)
    figures: dict[str, object] = {"track": track, "from": giver, "to": taker, "cohorts": moved}
    await asyncio.to_thread(refresh_all_sync, gateway.env, tmp_path)
    await assert_same_code_as_processes(redis_url)  # the burst worker runs in this process
    async with http_client(gateway.url) as client:
        before_checker = IsolationChecker(world)
        before = await probe_everything(client, before_checker, callers, probes)
        assert before_checker.leaks == [] and before_checker.problems == []
        for c in moved:
            key = ("manifest_get", giver_c, f'CohortDetail{{"id":{c}}}')
            assert before[key].json()["data"]["cohort"]["id"] == c

        rounds = []
        for round_no, (frm, to) in enumerate(((giver, taker), (taker, giver)), start=1):
            hand_over(db_path, track, frm, to)
            new_world = read_world(db_path)
            assert set(moved) <= new_world.scope(Caller(to, "director"))
            assert not set(moved) & new_world.scope(Caller(frm, "director"))
            body = event_body(f"evt_scope_{round_no}", "programs", director_ids=[frm, to])
            sent = time.perf_counter()
            accepted = await client.post("/webhooks/upstream", content=body, headers=signed(body))
            assert accepted.status_code == 202, accepted.text
            assert accepted.json()["directors"] == sorted([frm, to])
            worker_s = await run_burst_worker(database_url, redis_url)
            refreshed_s = time.perf_counter() - sent

            counters_before = await cache_counters(client, "")
            checker = IsolationChecker(new_world)
            after = await probe_everything(client, checker, callers, probes)
            hits = (await cache_counters(client, "")).minus(counters_before)
            # The giver's and the taker's old ETags are no validators of the new answers.
            stale_304 = 0
            for (transport, caller, page), old in before.items():
                if transport not in GET_TRANSPORTS or "etag" not in old.headers:
                    continue
                probe = next(p for p in probes if p.key == page)
                response = await SENDERS[transport](
                    client, caller, probe, if_none_match=old.headers["etag"]
                )  # type: ignore[call-arg]
                new_etag = after[(transport, caller, page)].headers.get("etag")
                if response.status_code == 304 and new_etag != old.headers["etag"]:
                    stale_304 += 1
            lost = sum(
                after[(t, Caller(frm, "director"), f'CohortDetail{{"id":{c}}}')].json()["data"]
                is None
                for t in TRANSPORTS
                for c in moved
            )
            gained = sum(
                (
                    after[(t, Caller(to, "director"), f'CohortDetail{{"id":{c}}}')].json()["data"]
                    or {}
                )
                .get("cohort", {})
                .get("id")
                == c
                for t in TRANSPORTS
                for c in moved
            )
            rounds.append(
                {
                    "from": frm,
                    "to": to,
                    "webhook_to_refreshed_s": round(refreshed_s, 3),
                    "burst_worker_s": round(worker_s, 3),
                    "probes": checker.probes,
                    "leaks": len(checker.leaks),
                    "leak_examples": checker.leaks[:10],
                    "problems": checker.problems[:10],
                    "lost_access_confirmed": lost,
                    "gained_access_confirmed": gained,
                    "expected_each": len(moved) * len(TRANSPORTS),
                    "fast_path_hits": hits.get("response", "hit"),
                    "old_etag_304s": stale_304,
                }
            )
            assert checker.leaks == [], checker.leaks[:10]
            assert checker.problems == [], checker.problems[:10]
            assert lost == gained == len(moved) * len(TRANSPORTS)
            assert stale_304 == 0
            assert hits.get("response", "hit") > 0  # the second manifest GET: fast path
            before = after
        figures["rounds"] = rounds
    write_results("isolation_scope_change", figures)


# --- the same change racing requests in flight -----------------------------------------


RACE_ROUNDS = 12
RACE_PAGES = 24


async def test_scope_change_racing_requests_leaves_no_stale_answer(
    gateway: GatewayProcess, db_path: Path, world: World, redis_url: str, tmp_path: Path
) -> None:
    """Answers being computed while a refresh rewrites a director's scope must not outlive
    that refresh in the fast path: once the refresh is done, the old scope is gone."""
    track, giver, taker = pick_handover(world)
    giver_c = Caller(giver, "director")
    database_url = sqlite_url(db_path)
    services = Services.build(settings_for(database_url, redis_url))
    await asyncio.to_thread(refresh_all_sync, gateway.env, tmp_path)
    await assert_same_code_as_processes(redis_url)  # refresh_director runs in this process
    rng = random.Random(6)
    rounds: list[dict[str, object]] = []
    stale_total = 0
    max_stale_ttl_s = 0.0
    try:
        async with http_client(gateway.url, connections=32) as client:
            current = world
            for round_no in range(RACE_ROUNDS):
                frm, to = (giver, taker) if round_no % 2 == 0 else (taker, giver)
                hand_over(db_path, track, frm, to)
                current = read_world(db_path)
                # Distinct pages (each its own stored answer), all built from the scope.
                pages = [Probe("CohortList", {"first": n}) for n in range(1, RACE_PAGES + 1)]

                async def load(pages: list[Probe] = pages) -> None:
                    await asyncio.gather(*(manifest_get(client, giver_c, p) for p in pages))

                async def refresh() -> None:
                    await asyncio.sleep(rng.uniform(0.0, 0.03))
                    assert services.refresh is not None
                    await services.refresh.refresh_director(
                        ServiceCaller(giver, "director"), services.clock()
                    )

                await asyncio.gather(load(), refresh())
                checker = IsolationChecker(current)
                stale_pages = []
                for page in pages:
                    response = await manifest_get(client, giver_c, page)
                    verdict = checker.check("fast_path_after_refresh", giver_c, page, response)
                    if verdict.leaks or verdict.problems:
                        stale_pages.append(page)
                stale_total += len(stale_pages)
                # How much longer each stale answer would have been served.
                ttls_s = [await answer_ttl_s(services, redis_url, giver_c, p) for p in stale_pages]
                max_stale_ttl_s = max([max_stale_ttl_s, *ttls_s])
                rounds.append(
                    {
                        "round": round_no,
                        "giver_directs_track": frm != giver,
                        "stale_pages": len(stale_pages),
                        "stale_ttl_s": ttls_s,
                        "examples": (checker.leaks + checker.problems)[:3],
                    }
                )
                # The next round's pages must be computed again (not answered from the
                # fast path) for the race to be run again: drop the giver's stored answers,
                # keep the subtrees (the cached scope is the one the next round changes).
                await drop_answers_of(redis_url, giver_c)
    finally:
        await services.close()
    write_results(
        "isolation_refresh_race",
        {
            "rounds": RACE_ROUNDS,
            "pages_per_round": RACE_PAGES,
            "stale_answers_after_refresh": stale_total,
            "rounds_with_stale_answers": sum(1 for r in rounds if r["stale_pages"]),
            "longest_remaining_stale_ttl_s": max_stale_ttl_s,
            "per_round": rounds,
        },
    )
    assert stale_total == 0
