"""The identity matrix: the users table, not the token, says who is asking.

Against `gateway serve` (Redis, the demo seed, every dashboard page prewarmed by `gateway
refresh --all --sync`), each judged on three transports — POST, the persisted GET
(answered by the fast path when a stored answer exists) and ETag revalidation with the
real user's ETag:

- every user (the 12 directors, the admin, three learners, an id nobody has) with each
  role claim: served only when the claim is the user's role in the users table;
- token rules: `iat` required, `exp − iat` at most 24 h, malformed `sub` and `role`;
- a director demoted to learner, a director deleted, the admin demoted to director, each
  followed by the upstream's signed event naming them and the refresh it queues (a burst
  arq worker): from then on, refused on every transport (the admin: as an admin).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import jwt
import jwt.warnings
import pytest

from tests.harness.processes import GatewayProcess
from tests.reliability.harness import (
    JWT_SECRET,
    Caller,
    Probe,
    World,
    assert_same_code_as_processes,
    codes_of,
    gateway_env,
    http_client,
    manifest_file,
    persisted_params,
    refresh_all_sync,
    settings_for,
    signed,
    sqlite_url,
    write_results,
)
from tests.support.gateway import event_body
from workers.worker import make_worker

pytestmark = pytest.mark.reliability

SUMMARY = Probe("DirectorSummary")
TRANSPORTS = ("post", "fast_path_get", "etag_revalidation")
MISSING_USER = 99_999
DAY_S = 86_400


@pytest.fixture
def gateway(db_path: Path, redis_url: str, tmp_path: Path):
    env = gateway_env(sqlite_url(db_path), redis_url, manifest_file(tmp_path))
    refresh_all_sync(env, tmp_path)
    with GatewayProcess("gateway", env, tmp_path) as process:
        yield process


def token(claims: dict[str, Any]) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def claims_of(user_id: int | str, claimed: Any, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": str(user_id), "role": claimed, "iat": now, "exp": now + 3600, **changes}
    return {k: v for k, v in claims.items() if v is not None}


async def send(
    client: httpx.AsyncClient, transport: str, bearer: str, etag: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {bearer}"}
    if transport == "post":
        body = {"query": SUMMARY.operation.body, "operationName": SUMMARY.op}
        return await client.post("/graphql", json=body, headers=headers)
    if transport == "etag_revalidation" and etag is not None:
        headers["If-None-Match"] = etag
    params = persisted_params(SUMMARY.operation.sha256, SUMMARY)
    return await client.get("/graphql", params=params, headers=headers)


def verdict(response: httpx.Response, transport: str, user_id: int) -> str:
    """served, refused (401 UNAUTHENTICATED, JSON) or wrong (anything else)."""
    try:
        body = response.json() if response.content else None
    except ValueError:
        return f"wrong: {response.status_code} not JSON"
    if response.status_code == 401:
        ok = codes_of(body) == ["UNAUTHENTICATED"] and "etag" not in response.headers
        return "refused" if ok else f"wrong: 401 {body}"
    if transport == "etag_revalidation" and response.status_code == 304:
        return "served"
    if response.status_code == 200 and isinstance(body, dict) and "errors" not in body:
        return "served" if body["data"]["me"]["id"] == user_id else "wrong: another user"
    return f"wrong: {response.status_code} {str(body)[:200]}"


class Matrix:
    def __init__(self) -> None:
        self.cells: list[dict[str, Any]] = []

    async def judge(
        self,
        client: httpx.AsyncClient,
        section: str,
        case: str,
        bearer: str,
        user_id: int,
        expected: str,
        etag: str | None,
    ) -> None:
        for transport in TRANSPORTS:
            response = await send(client, transport, bearer, etag)
            got = verdict(response, transport, user_id)
            self.cells.append(
                {
                    "section": section,
                    "case": case,
                    "transport": transport,
                    "expected": expected,
                    "got": got,
                    "status": response.status_code,
                }
            )

    def wrong(self) -> list[dict[str, Any]]:
        return [c for c in self.cells if c["got"] != c["expected"]]

    def count(self, **where: str) -> int:
        return sum(all(c[k] == v for k, v in where.items()) for c in self.cells)


def learners(db_path: Path, count: int) -> list[int]:
    with sqlite3.connect(db_path) as db:
        rows = db.execute(
            "SELECT id FROM users WHERE role = 'learner' ORDER BY id LIMIT ?", (count,)
        )
        return [row[0] for row in rows]


def change(db_path: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    with sqlite3.connect(db_path) as db:
        for sql, args in statements:
            db.execute(sql, args)


async def refresh_by_event(
    client: httpx.AsyncClient, event_id: str, director: int, database_url: str, redis_url: str
) -> float:
    """The upstream's signed event naming the director, then the refresh it queued."""
    started = time.perf_counter()
    body = event_body(event_id, "programs", director_ids=[director])
    accepted = await client.post("/webhooks/upstream", content=body, headers=signed(body))
    assert accepted.status_code == 202, accepted.text
    worker = make_worker(settings_for(database_url, redis_url), burst=True, poll_delay=0.01)
    try:
        await asyncio.wait_for(worker.main(), 60)
    finally:
        await worker.close()
    return time.perf_counter() - started


async def etag_of(client: httpx.AsyncClient, user_id: int, role: str) -> str:
    response = await send(client, "fast_path_get", token(claims_of(user_id, role)))
    assert response.status_code == 200 and "errors" not in response.json(), response.text
    return response.headers["etag"]


async def test_identity_matrix(
    gateway: GatewayProcess, world: World, db_path: Path, redis_url: str
) -> None:
    await assert_same_code_as_processes(redis_url)  # the burst worker runs in this process
    database_url = sqlite_url(db_path)
    matrix = Matrix()
    figures: dict[str, Any] = {}
    directors = [c for c in world.callers if c.role == "director"]
    admin = next(c for c in world.callers if c.role == "admin")
    async with http_client(gateway.url) as client:
        # Every user × each role claim.
        etags = {c: await etag_of(client, c.user_id, c.role) for c in world.callers}
        everyone: list[tuple[int, str | None]] = [(c.user_id, c.role) for c in world.callers]
        everyone += [(uid, "learner") for uid in learners(db_path, 3)]
        everyone += [(MISSING_USER, None)]
        for user_id, db_role in everyone:
            for claim in ("director", "admin"):
                real = etags.get(Caller(user_id, claim)) or etags[Caller(admin.user_id, "admin")]
                await matrix.judge(
                    client,
                    "role claim × users table",
                    f"user {user_id} ({db_role or 'none'}) claiming {claim}",
                    token(claims_of(user_id, claim)),
                    user_id,
                    "served" if claim == db_role else "refused",
                    real if claim != db_role else etags[Caller(user_id, claim)],
                )
        # Token rules, for one director.
        one = directors[0]
        now = int(time.time())
        rules: dict[str, tuple[dict[str, Any], str]] = {
            "lifetime exactly 24 h": ({"iat": now, "exp": now + DAY_S}, "served"),
            "no iat": ({"iat": None}, "refused"),
            "lifetime 24 h + 1 s": ({"iat": now, "exp": now + DAY_S + 1}, "refused"),
            "exp 1e20": ({"exp": 1e20}, "refused"),
            "iat an hour ahead": ({"iat": now + 3600, "exp": now + 7200}, "refused"),
            "expired": ({"iat": now - 7200, "exp": now - 3600}, "refused"),
            "role a list": ({"role": ["director"]}, "refused"),
            "role an object": ({"role": {"director": True}}, "refused"),
            **{
                f"sub {sub!r}": ({"sub": sub}, "refused")
                for sub in (
                    f" {one.user_id} ",
                    f"+{one.user_id}",
                    "٢",
                    "2_0",
                    "9" * 30,
                    "2147483648",
                )
            },
        }
        for case, (changes, expected) in rules.items():
            claims = claims_of(one.user_id, "director", **changes)
            await matrix.judge(
                client, "token rules", case, token(claims), one.user_id, expected, etags[one]
            )

        # Changes in the users table, each followed by the upstream's event for that user.
        demoted, deleted = directors[1], directors[2]
        bearer = token(claims_of(demoted.user_id, "director"))
        change(db_path, ("UPDATE users SET role = 'learner' WHERE id = ?", (demoted.user_id,)))
        await matrix.judge(
            client,
            "before the user's refresh",
            f"director {demoted.user_id} demoted to learner",
            bearer,
            demoted.user_id,
            "served",  # not known yet: the cached profile stands until refreshed or stale
            etags[demoted],
        )
        seconds = await refresh_by_event(
            client, "evt_demote", demoted.user_id, database_url, redis_url
        )
        figures["demotion_event_to_refreshed_s"] = round(seconds, 3)
        await matrix.judge(
            client,
            "after the user's refresh",
            f"director {demoted.user_id} demoted to learner",
            bearer,
            demoted.user_id,
            "refused",
            etags[demoted],
        )
        change(
            db_path,
            ("DELETE FROM track_directors WHERE director_id = ?", (deleted.user_id,)),
            ("DELETE FROM users WHERE id = ?", (deleted.user_id,)),
        )
        seconds = await refresh_by_event(
            client, "evt_delete", deleted.user_id, database_url, redis_url
        )
        figures["deletion_event_to_refreshed_s"] = round(seconds, 3)
        await matrix.judge(
            client,
            "after the user's refresh",
            f"director {deleted.user_id} deleted",
            token(claims_of(deleted.user_id, "director")),
            deleted.user_id,
            "refused",
            etags[deleted],
        )
        change(db_path, ("UPDATE users SET role = 'director' WHERE id = ?", (admin.user_id,)))
        seconds = await refresh_by_event(
            client, "evt_admin", admin.user_id, database_url, redis_url
        )
        figures["admin_demotion_event_to_refreshed_s"] = round(seconds, 3)
        await matrix.judge(
            client,
            "after the user's refresh",
            f"admin {admin.user_id} demoted to director, as admin",
            token(claims_of(admin.user_id, "admin")),
            admin.user_id,
            "refused",
            etags[admin],
        )
        as_director = await send(client, "post", token(claims_of(admin.user_id, "director")))
        own = as_director.json()["data"]["me"]["summary"]["totalCohorts"]
        tracks = world.tracks_by_director.get(admin.user_id, set())
        figures["demoted_admin_as_director_total_cohorts"] = own
        expected_own = sum(1 for c in world.cohorts.values() if c.track_id in tracks)
    wrong = matrix.wrong()
    write_results(
        "identity_matrix",
        {
            "command": ".venv/bin/pytest -m reliability tests/reliability/test_identity_matrix.py",
            "cells": len(matrix.cells),
            "by_section": {
                section: {
                    "cells": matrix.count(section=section),
                    "expected_served": matrix.count(section=section, expected="served"),
                    "expected_refused": matrix.count(section=section, expected="refused"),
                }
                for section in dict.fromkeys(c["section"] for c in matrix.cells)
            },
            "served_when_it_should_be_refused": sum(
                c["expected"] == "refused" and c["got"] == "served" for c in matrix.cells
            ),
            "refused_when_it_should_be_served": sum(
                c["expected"] == "served" and c["got"] == "refused" for c in matrix.cells
            ),
            "other_answers": sum(c["got"].startswith("wrong") for c in matrix.cells),
            "wrong_examples": wrong[:20],
            **figures,
            "cells_detail": matrix.cells,
        },
    )
    assert wrong == []
    assert own == expected_own
