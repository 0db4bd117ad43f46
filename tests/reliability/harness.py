"""Clients and checks shared by the reliability suite: the demo seed and the scopes it
implies, the three transports, tokens and signed webhooks, /metrics counters, the
isolation checker, the JSON results.

Everything runs on loopback against real processes (tests/harness): `gateway serve`,
`gateway worker`, redis-server, the demo seed in SQLite. Every loop here is bounded in
count and in time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from gateway.auth import mint_token
from gateway.documents.dashboard import Operation, build_manifest, dashboard_operations
from gateway.documents.persisted import sha256_hex
from gateway.settings import Settings
from tests.harness.processes import GATEWAY_CLI, ROOT, ChildProcess, child_env

RESULTS_DIR = Path(os.environ.get("RELIABILITY_RESULTS_DIR") or ROOT / "tests/reliability/results")

JWT_SECRET = "reliability-jwt-secret-0123456789abcdef0123"
WEBHOOK_SECRET = "reliability-webhook-secret"
OPERATIONS: dict[str, Operation] = dashboard_operations()
MISSING_COHORT = 999

# Every `extensions.code` the gateway documents (issues 3 and 4, gateway/http/errors.py,
# resolvers/errors.py, gateway/http/endpoint.py, gateway/documents/limits.py).
DOCUMENTED_CODES = frozenset(
    {
        "BAD_REQUEST",
        "BAD_USER_INPUT",
        "BATCHING_DISABLED",
        "FORBIDDEN",
        "GRAPHQL_PARSE_FAILED",
        "GRAPHQL_VALIDATION_FAILED",
        "INTERNAL_SERVER_ERROR",
        "NOT_FOUND",
        "PERSISTED_QUERY_NOT_FOUND",
        "PERSISTED_QUERY_NOT_IN_LIST",
        "PERSISTED_QUERY_NOT_SUPPORTED",
        "QUERY_TOO_COSTLY",
        "QUERY_TOO_DEEP",
        "QUERY_TOO_LONG",
        "RATE_LIMITED",
        "REQUEST_TOO_LARGE",
        "SERVICE_UNAVAILABLE",
        "TOO_MANY_ALIASES",
        "TOO_MANY_FIELDS",
        "TOO_MANY_OPERATIONS",
        "TOO_MANY_TOKENS",
        "UNAUTHENTICATED",
        "UPSTREAM_UNAVAILABLE",
    }
)


# --- results ---------------------------------------------------------------------------


def write_results(name: str, figures: dict[str, Any]) -> Path:
    """tests/reliability/results/<name>.json (or $RELIABILITY_RESULTS_DIR)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    figures = {
        "name": name,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "make reliability",
        **figures,
    }
    path.write_text(json.dumps(figures, indent=2, sort_keys=False, default=str) + "\n")
    return path


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


# --- settings, tokens, webhooks --------------------------------------------------------


def settings_for(database_url: str, redis_url: str | None, **overrides: Any) -> Settings:
    """The Settings the gateway processes run with, for in-process refreshes and tokens."""
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        jwt_secret=JWT_SECRET,
        webhook_secret=WEBHOOK_SECRET,
        embedded_scheduler=False,
        **overrides,
    )


_TOKEN_SETTINGS = Settings(jwt_secret=JWT_SECRET)


def token(user_id: int, role: str, ttl_s: int = 3600) -> str:
    return mint_token(_TOKEN_SETTINGS, user_id, role, ttl_s)


def auth(caller: Caller) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(caller.user_id, caller.role)}"}


def signed(body: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Signature": f"sha256={digest}", "Content-Type": "application/json"}


def manifest_file(directory: Path) -> Path:
    path = directory / "manifest.json"
    path.write_text(json.dumps(build_manifest(OPERATIONS)))
    return path


# --- the demo seed and the scopes it implies ------------------------------------------


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def seed_demo(path: Path) -> str:
    """`gateway seed --scale demo` into a new SQLite file; returns its URL."""
    url = sqlite_url(path)
    seed = ChildProcess(
        "seed",
        [*GATEWAY_CLI, "seed", "--scale", "demo", "--database-url", url],
        child_env(),
        log_dir=path.parent,
        cwd=path.parent,
    )
    assert seed.run() == 0, seed.tail()
    return url


def copy_db(source: Path, target: Path) -> str:
    shutil.copyfile(source, target)
    return sqlite_url(target)


@dataclass(frozen=True)
class Caller:
    user_id: int
    role: str

    def __str__(self) -> str:
        return f"{self.role}:{self.user_id}"


@dataclass(frozen=True)
class CohortFacts:
    id: int
    track_id: int
    status: str
    capacity: int
    used: int
    enrolled: int


@dataclass
class World:
    """What each caller may see, computed with SQL straight from the upstream tables."""

    cohorts: dict[int, CohortFacts]
    tracks_by_director: dict[int, set[int]]
    callers: list[Caller]

    def scope(self, caller: Caller) -> frozenset[int]:
        if caller.role == "admin":
            return frozenset(self.cohorts)
        tracks = self.tracks_by_director.get(caller.user_id, set())
        return frozenset(c.id for c in self.cohorts.values() if c.track_id in tracks)

    def running(self, ids: Iterable[int]) -> list[CohortFacts]:
        return [self.cohorts[i] for i in ids if self.cohorts[i].status == "running"]


def read_world(path: Path) -> World:
    with sqlite3.connect(path) as db:
        used = dict(
            db.execute(
                "SELECT cohort_id, count(*) FROM enrollments "
                "WHERE status IN ('active', 'completed') GROUP BY cohort_id"
            ).fetchall()
        )
        enrolled = dict(
            db.execute("SELECT cohort_id, count(*) FROM enrollments GROUP BY cohort_id").fetchall()
        )
        cohorts = {
            cid: CohortFacts(cid, track, status, capacity, used.get(cid, 0), enrolled.get(cid, 0))
            for cid, track, status, capacity in db.execute(
                "SELECT id, track_id, status, seat_capacity FROM cohorts ORDER BY id"
            )
        }
        tracks: dict[int, set[int]] = {}
        for track_id, director_id in db.execute(
            "SELECT track_id, director_id FROM track_directors"
        ):
            tracks.setdefault(director_id, set()).add(track_id)
        callers = [
            Caller(uid, role)
            for uid, role in db.execute(
                "SELECT id, role FROM users WHERE role IN ('admin', 'director') ORDER BY id"
            )
        ]
    return World(cohorts, tracks, callers)


# --- processes -------------------------------------------------------------------------


def gateway_env(
    database_url: str, redis_url: str | None, manifest: Path | None = None, **extra: str
) -> dict[str, str]:
    """The environment of the suite's `gateway serve` and `gateway worker` processes."""
    settings = {
        "jwt_secret": JWT_SECRET,
        "webhook_secret": WEBHOOK_SECRET,
        "workers": "1",
        "log_level": "WARNING",
        **extra,
    }
    if redis_url:
        settings["redis_url"] = redis_url
    if manifest is not None:
        settings["persisted_manifest"] = str(manifest)
    return child_env(database_url, **settings)


def refresh_all_sync(env: dict[str, str], workdir: Path) -> str:
    """`gateway refresh --all --sync`: every subtree, then the prewarmed answers. Its
    output (the log of this run alone)."""
    refresh = ChildProcess(
        f"refresh-{time.monotonic_ns()}",
        [*GATEWAY_CLI, "refresh", "--all", "--sync"],
        env,
        log_dir=workdir,
        cwd=workdir,
    )
    code = refresh.run()
    assert code == 0, refresh.tail()
    return refresh.log()


# --- metrics ---------------------------------------------------------------------------

_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\}\s+([0-9.eE+-]+)$")


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            labels = frozenset(
                tuple(part.split("=", 1)) for part in re.findall(r'\w+="[^"]*"', match.group(2))
            )
            labels = frozenset((k, v.strip('"')) for k, v in labels)
            out[(match.group(1), labels)] = float(match.group(3))
    return out


@dataclass
class CacheCounters:
    """gateway_cache_requests_total by (kind, result)."""

    counts: dict[tuple[str, str], float]

    def get(self, kind: str, result: str) -> float:
        return self.counts.get((kind, result), 0.0)

    def minus(self, other: CacheCounters) -> CacheCounters:
        keys = set(self.counts) | set(other.counts)
        return CacheCounters({k: self.counts.get(k, 0.0) - other.counts.get(k, 0.0) for k in keys})

    def hit_rate(self, kind: str) -> float | None:
        """Hits over look-ups; `stale` counts as a hit (served from cache)."""
        hits = self.get(kind, "hit") + self.get(kind, "stale")
        total = hits + self.get(kind, "miss") + self.get(kind, "error")
        return None if total == 0 else hits / total


async def cache_counters(client: httpx.AsyncClient, base_url: str) -> CacheCounters:
    response = await client.get(f"{base_url}/metrics", timeout=5.0)
    response.raise_for_status()
    counts = {}
    for (name, labels), value in parse_metrics(response.text).items():
        if name == "gateway_cache_requests_total":
            d = dict(labels)
            counts[(d["kind"], d["result"])] = value
    return CacheCounters(counts)


# --- requests over each transport ------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One dashboard page as a client asks for it."""

    op: str  # operation name
    variables: dict[str, Any] | None = None

    @property
    def operation(self) -> Operation:
        return OPERATIONS[self.op]

    @property
    def key(self) -> str:
        if self.variables is None:
            return self.op
        return f"{self.op}{json.dumps(self.variables, sort_keys=True, separators=(',', ':'))}"

    @property
    def cohort_id(self) -> int | None:
        return (self.variables or {}).get("id") if self.op == "CohortDetail" else None


def apq_document(op: Operation) -> str:
    """A document registered by APQ: the same operation, not the manifest's text."""
    return "# registered through APQ\n" + op.body


def persisted_params(sha256: str, probe: Probe, document: str | None = None) -> dict[str, str]:
    params = {
        "extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": sha256}}),
        "operationName": probe.op,
    }
    if probe.variables is not None:
        params["variables"] = json.dumps(probe.variables)
    if document is not None:
        params["query"] = document
    return params


async def post_document(
    client: httpx.AsyncClient, caller: Caller, probe: Probe, base_url: str = ""
) -> httpx.Response:
    return await client.post(
        f"{base_url}/graphql",
        json={
            "query": probe.operation.body,
            "operationName": probe.op,
            "variables": probe.variables or {},
        },
        headers=auth(caller),
    )


async def manifest_get(
    client: httpx.AsyncClient,
    caller: Caller,
    probe: Probe,
    base_url: str = "",
    if_none_match: str | None = None,
) -> httpx.Response:
    headers = auth(caller)
    if if_none_match is not None:
        headers["If-None-Match"] = if_none_match
    return await client.get(
        f"{base_url}/graphql",
        params=persisted_params(probe.operation.sha256, probe),
        headers=headers,
    )


async def apq_register_get(
    client: httpx.AsyncClient, caller: Caller, probe: Probe, base_url: str = ""
) -> httpx.Response:
    document = apq_document(probe.operation)
    return await client.get(
        f"{base_url}/graphql",
        params=persisted_params(sha256_hex(document), probe, document),
        headers=auth(caller),
    )


async def apq_get(
    client: httpx.AsyncClient,
    caller: Caller,
    probe: Probe,
    base_url: str = "",
    if_none_match: str | None = None,
) -> httpx.Response:
    headers = auth(caller)
    if if_none_match is not None:
        headers["If-None-Match"] = if_none_match
    document = apq_document(probe.operation)
    return await client.get(
        f"{base_url}/graphql", params=persisted_params(sha256_hex(document), probe), headers=headers
    )


# --- the isolation check ---------------------------------------------------------------


def _decode_cursor(cursor: str) -> Any:
    import base64

    return orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


@dataclass
class Verdict:
    leaks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # wrong answers that are not leaks


class IsolationChecker:
    """Judges one answer against what SQL says the caller may see.

    A leak: any cohort id, or a figure pooled over cohorts, outside the caller's scope;
    an out-of-scope cohort answered otherwise than a cohort that does not exist."""

    def __init__(self, world: World, allowed_codes: frozenset[str] = frozenset()) -> None:
        self.world = world
        # GraphQL errors an answer may carry beside its data (e.g. UPSTREAM_UNAVAILABLE).
        self.allowed_codes = allowed_codes
        self.probes = 0
        self.leaks: list[str] = []
        self.problems: list[str] = []
        self.by_transport: Counter[str] = Counter()
        self.leaks_by_transport: Counter[str] = Counter()
        # transport → every distinct NOT_FOUND answer (id and location aside): one each.
        self.not_found_shapes: dict[str, set[str]] = {}

    def check(
        self, transport: str, caller: Caller, probe: Probe, response: httpx.Response
    ) -> Verdict:
        verdict = Verdict()
        where = f"{transport} {caller} {probe.key}"
        self.probes += 1
        self.by_transport[transport] += 1
        if response.status_code == 304:
            verdict.problems.append(f"{where}: unexpected 304")
        elif response.status_code != 200:
            verdict.problems.append(f"{where}: HTTP {response.status_code} {response.text[:200]}")
        else:
            try:
                body = response.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                verdict.problems.append(f"{where}: not a JSON object")
            else:
                self._judge(transport, where, caller, probe, body, response, verdict)
        verdict.leaks = [f"{where}: {leak}" for leak in verdict.leaks]
        self.leaks += verdict.leaks
        self.problems += verdict.problems
        self.leaks_by_transport[transport] += len(verdict.leaks)
        return verdict

    def _judge(
        self,
        transport: str,
        where: str,
        caller: Caller,
        probe: Probe,
        body: dict[str, Any],
        response: httpx.Response,
        verdict: Verdict,
    ) -> None:
        scope = self.world.scope(caller)
        # Anywhere in the answer: every cohortId must be in scope.
        for value in _values_of(body.get("data"), "cohortId"):
            if value not in scope:
                verdict.leaks.append(f"cohortId {value} outside scope")
        data = body.get("data")
        errors = [
            e
            for e in body.get("errors") or []
            if codes_of({"errors": [e]})[0] not in self.allowed_codes
        ]
        if probe.op == "CohortDetail":
            cid = probe.cohort_id
            assert cid is not None
            if cid in scope:
                if errors or not data or not data.get("cohort"):
                    verdict.problems.append(f"in-scope cohort not answered: {errors}")
                    return
                self._judge_cohort(data["cohort"], scope, verdict, full=True)
                if data["cohort"]["id"] != cid:
                    verdict.leaks.append(f"asked {cid}, got cohort {data['cohort']['id']}")
            else:
                shape = not_found_shape(cid, body, response)
                self.not_found_shapes.setdefault(transport, set()).add(shape)
                if shape != EXPECTED_NOT_FOUND.get(response.request.method):
                    verdict.leaks.append(f"out-of-scope cohort answered {shape}")
            return
        if errors:
            verdict.problems.append(f"errors {errors}")
        me = (data or {}).get("me")
        if not me:
            verdict.problems.append("no `me`")
            return
        if me.get("id") != caller.user_id:
            verdict.leaks.append(f"me.id {me.get('id')} for caller {caller.user_id}")
        if probe.op == "DirectorSummary":
            self._judge_summary(me["summary"], scope, verdict)
        elif probe.op == "CohortList":
            self._judge_list(me["cohorts"], scope, probe, verdict)

    def _judge_cohort(
        self, node: dict[str, Any], scope: frozenset[int], verdict: Verdict, *, full: bool
    ) -> None:
        cid = node["id"]
        if cid not in scope:
            verdict.leaks.append(f"cohort {cid} outside scope")
            return
        facts = self.world.cohorts[cid]
        if node["track"]["id"] != facts.track_id:
            verdict.leaks.append(f"cohort {cid} track {node['track']['id']} != {facts.track_id}")
        seats = node["seats"]
        if (seats["total"], seats["used"]) != (facts.capacity, facts.used):
            verdict.leaks.append(f"cohort {cid} seats {seats} != {facts}")
        if node["enrollment"]["enrolled"] != facts.enrolled:
            verdict.leaks.append(f"cohort {cid} enrolled {node['enrollment']} != {facts.enrolled}")
        if full:
            for alert in node["alerts"]:
                if alert["cohortId"] != cid:
                    verdict.leaks.append(f"cohort {cid} carries alert of {alert['cohortId']}")

    def _judge_summary(
        self, summary: dict[str, Any], scope: frozenset[int], verdict: Verdict
    ) -> None:
        running = self.world.running(scope)
        expected = {
            "totalCohorts": len(scope),
            "activeCohorts": len(running),
            "seats.total": sum(c.capacity for c in running),
            "seats.used": sum(c.used for c in running),
        }
        got = {
            "totalCohorts": summary["totalCohorts"],
            "activeCohorts": summary["activeCohorts"],
            "seats.total": summary["seats"]["total"],
            "seats.used": summary["seats"]["used"],
        }
        if got != expected:
            verdict.leaks.append(f"summary figures {got} != scope's {expected}")
        running_ids = {c.id for c in running}
        for alert in summary["alerts"]:
            if alert["cohortId"] not in running_ids:
                verdict.leaks.append(f"summary alert of cohort {alert['cohortId']}")

    def _judge_list(
        self, connection: dict[str, Any], scope: frozenset[int], probe: Probe, verdict: Verdict
    ) -> None:
        ids = [edge["node"]["id"] for edge in connection["edges"]]
        for edge in connection["edges"]:
            self._judge_cohort(edge["node"], scope, verdict, full=False)
            _, key = _decode_cursor(edge["cursor"])
            if key[-1] != edge["node"]["id"]:
                verdict.leaks.append(f"cursor names cohort {key[-1]}")
        if connection["totalCount"] != len(scope):
            verdict.leaks.append(f"totalCount {connection['totalCount']} != {len(scope)}")
        first = (probe.variables or {}).get("first", 20)
        if len(ids) != len(set(ids)):
            verdict.problems.append(f"duplicate ids {ids}")
        if len(ids) != min(first, len(scope)):
            verdict.problems.append(f"{len(ids)} edges for a scope of {len(scope)}")


def _values_of(value: Any, key: str) -> Iterable[Any]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for k, inner in item.items():
                if k == key:
                    yield inner
                else:
                    stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)


def not_found_shape(cohort_id: int, body: dict[str, Any], response: httpx.Response) -> str:
    """A NOT_FOUND answer with the id, its location and request id taken out, plus what the
    client sees of it in headers: two cohorts answer alike when their shapes are equal."""
    shape = json.loads(json.dumps(body))
    for error in shape.get("errors") or []:
        if isinstance(error, dict):
            error.pop("locations", None)
            (error.get("extensions") or {}).pop("requestId", None)
            if error.get("message") == f"Cohort {cohort_id} not found":
                error["message"] = "Cohort <id> not found"
    headers = {
        "status": response.status_code,
        "cache-control": response.headers.get("cache-control"),
        "etag": "etag" in response.headers,
        "vary": response.headers.get("vary"),
    }
    return json.dumps({"body": shape, "headers": headers}, sort_keys=True)


def _expected_not_found(method: str) -> str:
    body = {
        "data": None,
        "errors": [
            {
                "message": "Cohort <id> not found",
                "path": ["cohort"],
                "extensions": {"code": "NOT_FOUND"},
            }
        ],
    }
    persisted_get = method == "GET"
    headers = {
        "status": 200,
        "cache-control": "no-store" if persisted_get else None,
        "etag": False,
        "vary": "Authorization, Accept, Accept-Encoding" if persisted_get else None,
    }
    return json.dumps({"body": body, "headers": headers}, sort_keys=True)


EXPECTED_NOT_FOUND = {method: _expected_not_found(method) for method in ("GET", "POST")}


def codes_of(body: Any) -> list[str]:
    if isinstance(body, list):  # a refused batch: one answer per operation
        return [code for element in body for code in codes_of(element)]
    if not isinstance(body, dict):
        return []
    errors = body.get("errors") or []
    return [str((e.get("extensions") or {}).get("code")) for e in errors if isinstance(e, dict)]


def http_client(base_url: str, connections: int = 16, timeout_s: float = 30.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=timeout_s,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


async def cache_version_in_redis(redis_url: str) -> str:
    """The key version the gateway processes write (`ddg:<version>:…`), read from Redis
    after a refresh: tests address keys with it rather than recomputing it."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        async for key in client.scan_iter(match="ddg:*:refresh:last", count=10_000):
            return key.decode().split(":")[1]
    finally:
        await client.aclose()
    raise AssertionError("no refresh stamp in Redis: run a refresh first")


async def assert_same_code_as_processes(redis_url: str) -> None:
    """Tests that refresh in-process must run the same schema (hence cache keys) as the
    gateway processes: a tree edited during the run would make them miss each other."""
    from gateway.cache.keys import cache_version
    from resolvers.schema import build_schema

    mine = cache_version(build_schema().as_str())
    theirs = await cache_version_in_redis(redis_url)
    assert mine == theirs, (
        f"the product code changed during the run (cache version {mine} in the test "
        f"process, {theirs} in the gateway processes): run the suite again"
    )
