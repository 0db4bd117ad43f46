"""Bad input: 10,000 generated documents, then a corpus of hostile requests that must each
get a clear 4xx or GraphQL error and change nothing (Redis and the upstream tables)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import jwt.warnings
import pytest
import redis.asyncio as aioredis

from loaders import MODULES
from loaders.demo import checksum
from tests.harness.processes import GatewayProcess
from tests.harness.waiting import CEILING_S
from tests.reliability.fuzz import generate_parallel
from tests.reliability.harness import (
    DOCUMENTED_CODES,
    JWT_SECRET,
    OPERATIONS,
    Caller,
    World,
    apq_document,
    auth,
    codes_of,
    gateway_env,
    http_client,
    manifest_file,
    persisted_params,
    refresh_all_sync,
    signed,
    sqlite_url,
    token,
    write_results,
)
from tests.reliability.harness import Probe as Page
from tests.support.gateway import event_body

pytestmark = pytest.mark.reliability

FUZZ_POSITIVE = 6_000
FUZZ_NEGATIVE = 4_000
FUZZ_CONCURRENCY = 8
GET_EVERY = 5  # every fifth document goes over GET (when short enough for a URL)
GET_MAX_CHARS = 2_000
REPLAYED = 500


@pytest.fixture
def gateway(db_path: Path, redis_url: str, tmp_path: Path):
    env = gateway_env(sqlite_url(db_path), redis_url, manifest_file(tmp_path))
    refresh_all_sync(env, tmp_path)
    with GatewayProcess("gateway", env, tmp_path) as process:
        yield process


@dataclass
class Sent:
    mode: str
    method: str
    caller: Caller
    document: str
    status: int
    codes: list[str]
    body_is_json: bool
    leaks: list[str]
    data_null: bool


def cohort_ids_in(data: Any) -> list[int]:
    """Ids of Cohort objects in an answer: under `cohort` or `node`, and every cohortId."""
    found = []
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        parent, item = stack.pop()
        if isinstance(item, dict):
            if parent in ("cohort", "node") and isinstance(item.get("id"), int):
                found.append(item["id"])
            for key, inner in item.items():
                if key == "cohortId" and isinstance(inner, int):
                    found.append(inner)
                else:
                    stack.append((key, inner))
        elif isinstance(item, list):
            stack.extend((parent, inner) for inner in item)
    return found


async def send_document(
    client: httpx.AsyncClient, world: World, index: int, mode: str, document: str
) -> Sent:
    caller = world.callers[index % len(world.callers)]
    method = "GET" if index % GET_EVERY == 0 and len(document) <= GET_MAX_CHARS else "POST"
    if method == "GET":
        response = await client.get("/graphql", params={"query": document}, headers=auth(caller))
    else:
        response = await client.post("/graphql", json={"query": document}, headers=auth(caller))
    try:
        body = response.json()
        is_json = True
    except ValueError:
        body, is_json = None, False
    leaks = []
    if caller.role != "admin" and isinstance(body, dict):
        scope = world.scope(caller)
        leaks = [f"cohort {c}" for c in cohort_ids_in(body.get("data")) if c not in scope]
    data_null = not isinstance(body, dict) or body.get("data") is None
    return Sent(
        mode,
        method,
        caller,
        document,
        response.status_code,
        codes_of(body),
        is_json,
        leaks,
        data_null,
    )


async def test_fuzz_generated_documents(gateway: GatewayProcess, world: World) -> None:
    started = time.perf_counter()
    documents = await asyncio.to_thread(generate_parallel, FUZZ_POSITIVE, FUZZ_NEGATIVE)
    generated_s = time.perf_counter() - started
    gate = asyncio.Semaphore(FUZZ_CONCURRENCY)
    async with http_client(gateway.url, connections=FUZZ_CONCURRENCY) as client:

        async def one(index: int, mode: str, document: str) -> Sent:
            async with gate:
                return await send_document(client, world, index, mode, document)

        sent = await asyncio.gather(*(one(i, m, d) for i, (m, d) in enumerate(documents)))
        # Stable: the same request again gets the same codes (mutations aside: rate limits).
        erroring = [
            (i, s) for i, s in enumerate(sent) if s.codes and not s.document.startswith("mutation")
        ][:REPLAYED]
        again = await asyncio.gather(*(one(i, s.mode, s.document) for i, s in erroring))
    seconds = time.perf_counter() - started
    # When two sibling non-null fields fail, the failure that reaches the root first nulls
    # `data` and is the one reported (graphql-core cancels the rest): which one may differ
    # between two runs. Only that case may change codes, and both must be documented.
    differing = [
        (first, second)
        for (_, first), second in zip(erroring, again, strict=True)
        if first.codes != second.codes
    ]
    unstable = [
        (first.document[:200], first.status, first.codes, second.status, second.codes)
        for first, second in differing
        if not (
            first.status == second.status == 200
            and first.data_null
            and second.data_null
            and first.codes
            and second.codes
        )
    ]
    raced = len(differing) - len(unstable)
    statuses = Counter(s.status for s in [*sent, *again])
    codes = Counter(c for s in sent for c in s.codes)
    codes_by_mode = {
        mode: dict(Counter(c for s in sent if s.mode == mode for c in s.codes))
        for mode in ("positive", "negative")
    }
    errors_without_code = [s.document[:200] for s in sent if "None" in s.codes]
    undocumented = sorted(set(codes) - DOCUMENTED_CODES)
    every = [*sent, *again]
    server_errors = [(s.status, s.document[:300]) for s in every if s.status >= 500]
    internal = [s.document[:300] for s in every if "INTERNAL_SERVER_ERROR" in s.codes]
    not_json = [(s.status, s.document[:200]) for s in every if not s.body_is_json]
    refused_without_code = [s.document[:200] for s in every if s.status >= 400 and not s.codes]
    leaks = [(str(s.caller), s.leaks[:3], s.document[:200]) for s in sent if s.leaks]
    write_results(
        "fuzz",
        {
            "generator": "hypothesis-graphql from schema.graphql (POSITIVE and NEGATIVE modes)",
            "requests": len(sent) + len(again),
            "documents": len(documents),
            "distinct_documents": len({d for _, d in documents}),
            "by_mode": dict(Counter(s.mode for s in sent)),
            "by_method": dict(Counter(s.method for s in sent)),
            "by_status": {str(k): v for k, v in sorted(statuses.items())},
            "http_5xx": len(server_errors),
            "codes_seen": dict(sorted(codes.items())),
            "codes_by_mode": codes_by_mode,
            "undocumented_codes": undocumented,
            "errors_without_code": len(errors_without_code),
            "refusals_without_code": len(refused_without_code),
            "internal_server_errors": len(internal),
            "non_json_answers": len(not_json),
            "replayed_for_stability": len(again),
            "unstable_codes": len(unstable),
            "root_nulled_answers_reporting_another_sibling_error": raced,
            "scope_leaks": len(leaks),
            "examples": {
                "server_errors": server_errors[:5],
                "internal": internal[:5],
                "unstable": unstable[:5],
                "raced": [(f.document[:300], f.codes, s.codes) for f, s in differing][:3],
                "not_json": not_json[:5],
                "leaks": leaks[:5],
            },
            "generation_s": round(generated_s, 1),
            "seconds": round(seconds, 1),
        },
    )
    assert len(sent) + len(again) >= 10_000
    assert server_errors == []
    assert internal == []
    assert not_json == []
    assert errors_without_code == [] and refused_without_code == []
    assert undocumented == []
    assert unstable == []
    assert leaks == []
    assert set(statuses) <= {200, 400, 405, 413}


# --- a failing field that cancels a sibling ---------------------------------------------

CANCEL_ATTEMPTS = 40
# `me.cohorts(first: 5)` and `cohort(id:)` share one per-request task computing the scope;
# the invalid `first: -1` fails `me`, graphql-core cancels `me`'s other field, and with it
# that shared task, under `cohort(id:)`, which was not cancelled.
CANCELLING_SIBLING = (
    "{ cohort(id: %d) { id } "
    "me { cohorts(first: 5) { totalCount } bad: cohorts(first: -1) { totalCount } } }"
)


async def test_failing_field_never_turns_into_a_500(
    gateway: GatewayProcess, world: World, redis_url: str
) -> None:
    """A document with one invalid argument gets a GraphQL error, never a 500, whatever its
    other fields were doing when the error cut them short (scope not cached: the widest
    window)."""
    caller = next(c for c in world.callers if c.role == "director" and world.scope(c))
    query = CANCELLING_SIBLING % min(world.scope(caller))
    outcomes: Counter[str] = Counter()
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with http_client(gateway.url) as client:
            for _ in range(CANCEL_ATTEMPTS):
                await redis.flushall()
                response = await client.post(
                    "/graphql", json={"query": query}, headers=auth(caller)
                )
                try:
                    codes = codes_of(response.json())
                except ValueError:
                    codes = ["<not JSON>"]
                outcomes[f"{response.status_code} {','.join(codes)}"] += 1
    finally:
        await redis.aclose()
    write_results(
        "bad_input_cancelled_sibling",
        {"attempts": CANCEL_ATTEMPTS, "query": query, "outcomes": dict(outcomes)},
    )
    assert outcomes == {"200 BAD_USER_INPUT": CANCEL_ATTEMPTS}


# --- the corpus ------------------------------------------------------------------------


async def redis_state(redis_url: str) -> dict[str, Any]:
    """Every key with its type and value (TTLs aside)."""
    client = aioredis.Redis.from_url(redis_url)
    state: dict[str, Any] = {}
    try:
        async for key in client.scan_iter(count=1000):
            kind = (await client.type(key)).decode()
            if kind == "string":
                value: Any = await client.get(key)
            elif kind == "set":
                value = sorted(await client.smembers(key))
            elif kind == "zset":
                value = await client.zrange(key, 0, -1, withscores=True)
            elif kind == "hash":
                value = sorted((await client.hgetall(key)).items())
            elif kind == "list":
                value = await client.lrange(key, 0, -1)
            else:
                value = kind
            state[key.decode()] = (kind, value)
    finally:
        await client.aclose()
    return state


def jwt_with(claims: dict[str, Any], key: str = JWT_SECRET, algorithm: str = "HS256") -> str:
    with warnings.catch_warnings():
        # HS512 wants a 64-byte key; the point is the gateway's own (shorter) secret.
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, key, algorithm=algorithm)


def alg_none(claims: dict[str, Any]) -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


@dataclass
class Case:
    name: str
    send: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]
    status: int
    code: str | None  # extensions.code (GraphQL) or error.code (webhooks); None: not JSON


def corpus(world: World) -> list[Case]:
    director = next(c for c in world.callers if c.role == "director")
    other = next(c for c in world.callers if c.role == "director" and c != director)
    out_of_scope = min(set(world.cohorts) - world.scope(director))
    now = int(time.time())
    claims = {"sub": str(director.user_id), "role": "director", "iat": now, "exp": now + 600}
    role_list_headers = {"Authorization": f"Bearer {jwt_with({**claims, 'role': ['admin']})}"}
    missing_user = MISSING_USER
    admin_caller = next(c for c in world.callers if c.role == "admin")

    def directors_after(key: Any) -> Callable:
        cursor = base64.urlsafe_b64encode(json.dumps(["directors", key]).encode()).decode()
        query = "query D($after: String) { directors(after: $after) { nodes { id } } }"
        body = {"query": query, "variables": {"after": cursor.rstrip("=")}}
        return lambda c: c.post("/graphql", json=body, headers=auth(admin_caller))

    summary = OPERATIONS["DirectorSummary"]
    headers = auth(director)

    def post_json(body: Any, **extra: str) -> Callable[[httpx.AsyncClient], Awaitable]:
        return lambda c: c.post(
            "/graphql",
            content=json.dumps(body),
            headers={**headers, **extra, "Content-Type": "application/json"},
        )

    def post_raw(content: bytes, content_type: str | None) -> Callable:
        h = dict(headers)
        if content_type is not None:
            h["Content-Type"] = content_type
        return lambda c: c.post("/graphql", content=content, headers=h)

    def get(params: dict[str, str], h: dict[str, str] | None = None) -> Callable:
        return lambda c: c.get("/graphql", params=params, headers=headers if h is None else h)

    def bearer(value: str) -> Callable:
        return lambda c: c.post(
            "/graphql", json={"query": "{ me { id } }"}, headers={"Authorization": value}
        )

    def webhook(body: bytes, h: dict[str, str]) -> Callable:
        return lambda c: c.post("/webhooks/upstream", content=body, headers=h)

    deep_100 = "{ me " + "{ cohorts " * 99 + "{ totalCount }" + " }" * 99 + " }"
    deep_1000 = "{ " + "a { " * 1000 + "b" + " }" * 1000 + " }"
    aliases_10k = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(10_000)) + " }"
    aliases_1k = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(1_000)) + " }"
    aliases_16 = "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(16)) + " }"
    one_mb = "{ me { id } }" + " " * (1 << 20)
    good_event = event_body("evt_corpus_replayed", "missions", cohort_ids=[out_of_scope])
    mutation = f"mutation {{ requestRefresh(cohortId: {out_of_scope}) {{ accepted }} }}"
    apq_body = apq_document(summary)
    return [
        # Transport
        Case("malformed JSON", post_raw(b'{"query": "{ me { id } }"', JSON), 400, "BAD_REQUEST"),
        Case(
            "JSON array (batch)", post_json([{"query": "{ me { id } }"}]), 200, "BATCHING_DISABLED"
        ),
        Case("empty JSON array", post_json([]), 400, "BAD_REQUEST"),
        Case("JSON array of strings", post_json(["{ me { id } }"]), 400, "BAD_REQUEST"),
        Case("JSON string body", post_json("{ me { id } }"), 400, "BAD_REQUEST"),
        Case("query not a string", post_json({"query": 1}), 400, "BAD_REQUEST"),
        Case(
            "variables not an object",
            post_json({"query": "{ me { id } }", "variables": []}),
            400,
            "BAD_REQUEST",
        ),
        Case(
            "text/plain", post_raw(b'{"query": "{ me { id } }"}', "text/plain"), 415, "BAD_REQUEST"
        ),
        Case(
            "form-urlencoded",
            post_raw(b"query=%7B+me+%7B+id+%7D+%7D", "application/x-www-form-urlencoded"),
            415,
            "BAD_REQUEST",
        ),
        Case(
            "multipart",
            post_raw(b"--x\r\n\r\n--x--", "multipart/form-data; boundary=x"),
            415,
            "BAD_REQUEST",
        ),
        Case("no content type", post_raw(b'{"query": "{ me { id } }"}', None), 415, "BAD_REQUEST"),
        Case(
            "PUT",
            lambda c: c.put("/graphql", json={"query": "{ me { id } }"}, headers=headers),
            405,
            "BAD_REQUEST",
        ),
        Case(
            "GET variables not JSON",
            get({"query": "{ me { id } }", "variables": "{"}),
            400,
            "BAD_REQUEST",
        ),
        Case(
            "unknown operationName",
            post_json({"query": "query A { me { id } }", "operationName": "B"}),
            400,
            "BAD_REQUEST",
        ),
        # Size and shape
        Case("1 MB query (POST)", post_json({"query": one_mb}), 413, "REQUEST_TOO_LARGE"),
        Case("depth 100", post_json({"query": deep_100}), 200, "GRAPHQL_VALIDATION_FAILED"),
        Case("depth 1000", post_json({"query": deep_1000}), 400, "QUERY_TOO_DEEP"),
        Case("10,000 aliases (200 KB)", post_json({"query": aliases_10k}), 400, "QUERY_TOO_LONG"),
        Case("1,000 aliases (18 KB)", post_json({"query": aliases_1k}), 400, "TOO_MANY_TOKENS"),
        Case("16 aliases", post_json({"query": aliases_16}), 400, "TOO_MANY_ALIASES"),
        Case("syntax error", post_json({"query": "{ me { id }"}), 200, "GRAPHQL_PARSE_FAILED"),
        Case(
            "first: 100000",
            post_json({"query": "{ me { cohorts(first: 100000) { totalCount } } }"}),
            400,
            "QUERY_TOO_COSTLY",
        ),
        Case(
            "first: 101",
            post_json({"query": "{ me { cohorts(first: 101) { totalCount } } }"}),
            200,
            "BAD_USER_INPUT",
        ),
        Case(
            "1 MB query (GET, raw socket)",
            raw_get("/graphql?query=" + quote(one_mb), headers),
            431,  # the request line counts in GATEWAY_MAX_HEADER_BYTES
            "HEADERS_TOO_LARGE",
        ),
        Case(
            "malformed cursor",
            post_json({"query": '{ me { cohorts(after: "@@") { totalCount } } }'}),
            200,
            "BAD_USER_INPUT",
        ),
        # Persisted queries
        Case(
            "unknown persisted hash",
            get(persisted_params("0" * 64, Page("DirectorSummary"))),
            200,
            "PERSISTED_QUERY_NOT_FOUND",
        ),
        Case(
            "mismatched persisted hash",
            get(persisted_params("1" * 64, Page("DirectorSummary"), apq_body)),
            400,
            "BAD_REQUEST",
        ),
        Case(
            "persisted hash not hex",
            get({"extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": "zz"}})}),
            400,
            "BAD_REQUEST",
        ),
        Case(
            "persisted version 2",
            get(
                {
                    "extensions": json.dumps(
                        {"persistedQuery": {"version": 2, "sha256Hash": summary.sha256}}
                    )
                }
            ),
            400,
            "BAD_REQUEST",
        ),
        Case("mutation over GET", get({"query": mutation}), 405, "BAD_REQUEST"),
        # Authentication
        Case("no Authorization", bearer(""), 401, "UNAUTHENTICATED"),
        Case("Basic scheme", bearer("Basic dXNlcjpwYXNz"), 401, "UNAUTHENTICATED"),
        Case("garbage token", bearer("Bearer not.a.jwt"), 401, "UNAUTHENTICATED"),
        Case(
            "expired JWT",
            bearer(f"Bearer {token(director.user_id, 'director', ttl_s=-60)}"),
            401,
            "UNAUTHENTICATED",
        ),
        Case(
            "wrongly signed JWT",
            bearer(f"Bearer {jwt_with(claims, key='another-secret-0123456789abcdef0123')}"),
            401,
            "UNAUTHENTICATED",
        ),
        Case("alg none JWT", bearer(f"Bearer {alg_none(claims)}"), 401, "UNAUTHENTICATED"),
        Case(
            "HS512 JWT (right secret)",
            bearer(f"Bearer {jwt_with(claims, algorithm='HS512')}"),
            401,
            "UNAUTHENTICATED",
        ),
        Case(
            "JWT without exp",
            bearer(f"Bearer {jwt_with({k: v for k, v in claims.items() if k != 'exp'})}"),
            401,
            "UNAUTHENTICATED",
        ),
        Case(
            "JWT without sub",
            bearer(f"Bearer {jwt_with({k: v for k, v in claims.items() if k != 'sub'})}"),
            401,
            "UNAUTHENTICATED",
        ),
        Case(
            "JWT without role",
            bearer(f"Bearer {jwt_with({k: v for k, v in claims.items() if k != 'role'})}"),
            401,
            "UNAUTHENTICATED",
        ),
        Case(
            "JWT role learner",
            bearer(f"Bearer {jwt_with({**claims, 'role': 'learner'})}"),
            401,
            "UNAUTHENTICATED",
        ),
        Case(
            "JWT sub not a user id",
            bearer(f"Bearer {jwt_with({**claims, 'sub': 'dana'})}"),
            401,
            "UNAUTHENTICATED",
        ),
        Case(
            "JWT role a list (POST)",
            bearer(f"Bearer {jwt_with({**claims, 'role': ['admin']})}"),
            401,
            "UNAUTHENTICATED",
        ),
        Case(
            "JWT role a list (persisted GET, fast path)",
            get(persisted_params(summary.sha256, Page("DirectorSummary")), role_list_headers),
            401,
            "UNAUTHENTICATED",
        ),
        Case(
            "JWT role an object",
            bearer(f"Bearer {jwt_with({**claims, 'role': {'admin': True}})}"),
            401,
            "UNAUTHENTICATED",
        ),
        *[
            Case(
                f"JWT sub {sub!r}",
                bearer(f"Bearer {jwt_with({**claims, 'sub': sub})}"),
                401,
                "UNAUTHENTICATED",
            )
            for sub in (" 2 ", "+2", "٢", "2_0", "9" * 30, str(2**31))
        ],
        Case(
            "JWT exp 1e20",
            bearer(f"Bearer {jwt_with({**claims, 'exp': 1e20})}"),
            401,
            "UNAUTHENTICATED",
        ),
        Case(
            "JWT without iat",
            bearer(f"Bearer {jwt_with({k: v for k, v in claims.items() if k != 'iat'})}"),
            401,
            "UNAUTHENTICATED",
        ),
        Case(
            "JWT lifetime 24 h + 1 s",
            bearer(f"Bearer {jwt_with({**claims, 'exp': now + 86_401})}"),
            401,
            "UNAUTHENTICATED",
        ),
        Case(
            "JWT admin claim of a director",
            bearer(f"Bearer {jwt_with({**claims, 'role': 'admin'})}"),
            401,
            "UNAUTHENTICATED",
        ),
        Case(
            "JWT for a user who does not exist",
            bearer(f"Bearer {jwt_with({**claims, 'sub': str(missing_user)})}"),
            401,
            "UNAUTHENTICATED",
        ),
        # Scope
        Case(
            "director asks for `directors`",
            post_json({"query": "{ directors { nodes { id } } }"}),
            200,
            "FORBIDDEN",
        ),
        Case(
            "director asks for another director",
            post_json({"query": f"{{ director(id: {other.user_id}) {{ id }} }}"}),
            200,
            "NOT_FOUND",
        ),
        Case("refresh of an out-of-scope cohort", post_json({"query": mutation}), 200, "NOT_FOUND"),
        Case("directors cursor [true]", directors_after([True]), 200, "BAD_USER_INPUT"),
        Case("directors cursor [2^64]", directors_after([2**64]), 200, "BAD_USER_INPUT"),
        # Webhooks
        Case(
            "webhook without signature",
            webhook(good_event, {"Content-Type": JSON}),
            401,
            "BAD_SIGNATURE",
        ),
        Case(
            "webhook with a bad signature",
            webhook(good_event, signed(good_event, secret="not-the-secret")),
            401,
            "BAD_SIGNATURE",
        ),
        Case(
            "webhook signed over other bytes",
            webhook(good_event + b" ", signed(good_event)),
            401,
            "BAD_SIGNATURE",
        ),
        Case("webhook replayed id", webhook(good_event, signed(good_event)), 202, None),
        Case(
            "webhook unknown module",
            webhook(b := event_body("evt_corpus_module", "crm", cohort_ids=[1]), signed(b)),
            400,
            "BAD_REQUEST",
        ),
        Case(
            "webhook oversized body",
            webhook(b := b'{"id": "x", "pad": "' + b"x" * 70_000 + b'"}', signed(b)),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        Case("webhook malformed JSON", webhook(b := b'{"id": ', signed(b)), 400, "BAD_REQUEST"),
        Case(
            "webhook extra field",
            webhook(b := good_event[:-1] + b', "admin": true}', signed(b)),
            400,
            "BAD_REQUEST",
        ),
        Case(
            "webhook cohort_ids [2^70]",
            webhook(
                b := json.dumps(
                    {
                        "id": "evt_corpus_huge",
                        "module": "missions",
                        "occurred_at": "2026-11-24T10:00:00Z",
                        "cohort_ids": [2**70],
                    }
                ).encode(),
                signed(b),
            ),
            400,
            "BAD_REQUEST",
        ),
        Case(
            "webhook director_ids [true]",
            webhook(
                b := json.dumps(
                    {
                        "id": "evt_corpus_bool",
                        "module": "programs",
                        "occurred_at": "2026-11-24T10:00:00Z",
                        "director_ids": [True],
                    }
                ).encode(),
                signed(b),
            ),
            400,
            "BAD_REQUEST",
        ),
        Case(
            "webhook cohort_ids not integers",
            webhook(
                b := json.dumps(
                    {
                        "id": "evt_corpus_types",
                        "module": "missions",
                        "occurred_at": "2026-11-24T10:00:00Z",
                        "cohort_ids": ["1"],
                    }
                ).encode(),
                signed(b),
            ),
            400,
            "BAD_REQUEST",
        ),
    ]


JSON = "application/json"
MISSING_USER = 99_999


def raw_get(target: str, headers: dict[str, str]) -> Callable:
    """A GET whose URL no client library will send (httpx stops at 64 KiB)."""

    async def send(client: httpx.AsyncClient) -> httpx.Response:
        url = httpx.URL(str(client.base_url))
        reader, writer = await asyncio.open_connection(url.host, url.port)
        try:
            lines = [f"GET {target} HTTP/1.1", f"Host: {url.host}:{url.port}"]
            lines += [f"{k}: {v}" for k, v in headers.items()]
            writer.write(("\r\n".join([*lines, "Connection: close", "", ""])).encode())
            await writer.drain()
            raw = await asyncio.wait_for(reader.read(), CEILING_S)
        except ConnectionError:
            raw = b""
        finally:
            writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode(errors="replace").split("\r\n")
        status = int(status_line.split()[1]) if status_line.startswith("HTTP/") else 0
        answer_headers = [tuple(h.split(": ", 1)) for h in header_lines if ": " in h]
        return httpx.Response(status, headers=answer_headers, content=body)

    return send


async def test_hostile_corpus_changes_nothing(
    gateway: GatewayProcess, world: World, db_path: Path, redis_url: str
) -> None:
    cases = corpus(world)
    urls = dict.fromkeys(MODULES, sqlite_url(db_path))
    async with http_client(gateway.url) as client:
        # The replayed event is first delivered once, for real.
        replayed = next(c for c in cases if c.name == "webhook replayed id")
        first = await replayed.send(client)
        assert first.status_code == 202 and first.json()["status"] == "accepted"
        await asyncio.sleep(0.2)
        redis_before = await redis_state(redis_url)
        sqlite_before = await checksum(urls)
        results = []
        for case in cases:
            response = await case.send(client)
            try:
                body = response.json()
            except ValueError:
                body = None
            if case.name.startswith("webhook"):
                code = (body or {}).get("error", {}).get("code") if isinstance(body, dict) else None
                extra = {"answer": (body or {}).get("status")} if isinstance(body, dict) else {}
            else:
                codes = codes_of(body)
                code = codes[0] if codes else None
                extra = {"codes": codes}
            results.append(
                {
                    "case": case.name,
                    "status": response.status_code,
                    "code": code,
                    "expected": [case.status, case.code],
                    "ok": response.status_code == case.status and code == case.code,
                    **extra,
                }
            )
        alive = (await client.get("/healthz")).status_code == 200
        await asyncio.sleep(0.2)
        redis_after = await redis_state(redis_url)
        sqlite_after = await checksum(urls)
    changed = sorted(
        k for k in set(redis_before) | set(redis_after) if redis_before.get(k) != redis_after.get(k)
    )
    write_results(
        "bad_input_corpus",
        {
            "cases": len(cases),
            "as_expected": sum(r["ok"] for r in results),
            "results": results,
            "redis_keys_before": len(redis_before),
            "redis_keys_changed": changed,
            "sqlite_checksum_before": sqlite_before,
            "sqlite_checksum_after": sqlite_after,
            "gateway_alive": alive,
        },
    )
    assert [r for r in results if not r["ok"]] == []
    replay = next(r for r in results if r["case"] == "webhook replayed id")
    assert replay["answer"] == "duplicate"
    # Only the profile entry of the user who does not exist: looked up once and kept,
    # like any profile, so that the same token is refused again without a statement.
    assert [k.rsplit(":", 2)[1:] for k in changed] == [["user", str(MISSING_USER)]]
    assert sqlite_before == sqlite_after
    assert alive
