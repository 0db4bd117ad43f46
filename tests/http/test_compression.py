"""gzip by Accept-Encoding: stored answers compressed once when stored, executed answers
and static files; an ETag per coding, Vary, 304s per coding, q=0 and identity honoured."""

import gzip
import json

import pytest

from gateway.cache.answers import AnswerId, decode_stored, etag_for
from gateway.http.compression import Coding, negotiate_encoding
from gateway.http.graphiql import STATIC_DIR as GRAPHIQL_DIR
from resolvers.caller import Caller
from tests.support.cycles import prewarm
from tests.support.dataset import ADMIN, DANA
from tests.support.fast_path import DETAIL_OP, SUMMARY_OP, hits, params
from tests.support.fast_path_post import bodies
from tests.support.gateway import StatementCounter, services_of, settings_for
from tests.support.gateway_client import GatewayClient, gateway_client

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

VARY = "Authorization, Accept, Accept-Encoding"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, Coding(gzip=False)),
        ("", Coding(gzip=False)),
        ("gzip", Coding(gzip=True)),
        ("gzip, deflate, br, zstd", Coding(gzip=True)),
        ("GZIP;q=0.5", Coding(gzip=True)),
        ("x-gzip", Coding(gzip=True)),
        ("*", Coding(gzip=True)),
        ("gzip;q=0", Coding(gzip=False)),
        ("gzip;q=0, *", Coding(gzip=False)),
        ("*;q=0", Coding(gzip=False, identity=False)),
        ("br", Coding(gzip=False)),
        ("identity", Coding(gzip=False)),
        ("gzip;q=0.5, identity", Coding(gzip=False)),  # identity at q=1 is preferred
        ("gzip;q=0.5, *", Coding(gzip=False)),
        ("gzip, identity;q=0", Coding(gzip=True, identity=False)),
        ("*, identity;q=0", Coding(gzip=True, identity=False)),
        ("gzip;q=bad", Coding(gzip=False)),
    ],
)
def test_accept_encoding(header: str | None, expected: Coding, backend) -> None:
    assert negotiate_encoding(header) == expected


async def fetch(api: GatewayClient, method: str, url: str, **kwargs) -> tuple[int, dict, bytes]:
    """Status, headers and the bytes on the wire (not decoded)."""
    async with api.http.stream(method, url, **kwargs) as response:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
        return response.status_code, dict(response.headers), raw


async def get_raw(api: GatewayClient, op, user: int, encoding: str, variables=None, **headers):
    return await fetch(
        api,
        "GET",
        "/graphql",
        params=params(op, variables),
        headers={**api.auth(user), "Accept-Encoding": encoding, **headers},
    )


async def test_a_stored_answer_goes_out_gzip_with_its_own_etag(fast: GatewayClient) -> None:
    await prewarm(services_of(fast))
    status, plain_headers, plain = await get_raw(fast, SUMMARY_OP, DANA, "identity")
    assert status == 200 and "content-encoding" not in plain_headers
    before = hits()
    status, headers, raw = await get_raw(fast, SUMMARY_OP, DANA, "gzip, deflate, br")
    assert (status, hits()) == (200, before + 1)
    assert headers["content-encoding"] == "gzip"
    assert headers["content-length"] == str(len(raw))
    assert gzip.decompress(raw) == plain
    assert len(raw) < len(plain) // 2
    assert plain_headers["etag"] == etag_for(plain)
    assert headers["etag"] == etag_for(plain)[:-1] + '-gz"'
    assert headers["vary"] == plain_headers["vary"] == VARY
    assert headers["cache-control"] == plain_headers["cache-control"] == "private, max-age=300"
    # A 304 per coding: each validator matches its own representation only.
    for encoding, etag, status in [
        ("gzip", headers["etag"], 304),
        ("identity", headers["etag"], 200),
        ("gzip", plain_headers["etag"], 200),
        ("identity", plain_headers["etag"], 304),
        ("gzip;q=0", headers["etag"], 200),
    ]:
        got = await get_raw(fast, SUMMARY_OP, DANA, encoding, **{"If-None-Match": etag})
        assert (encoding, etag, got[0]) == (encoding, etag, status)
        if status == 304:
            assert (got[1]["etag"], got[2]) == (etag, b"")
    # The graphql-response+json representation: its own ETag in each coding.
    gr = "application/graphql-response+json"
    _, gr_headers, _ = await get_raw(fast, SUMMARY_OP, DANA, "gzip", Accept=gr)
    assert gr_headers["etag"] == etag_for(plain)[:-1] + '-gr-gz"'


async def test_a_stored_answer_is_compressed_once_when_stored_never_per_hit(
    fast: GatewayClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    compress = gzip.compress

    def counting(data, *args, **kwargs):
        calls.append(len(data))
        return compress(data, *args, **kwargs)

    monkeypatch.setattr(gzip, "compress", counting)
    variables = {"id": 101}
    _, headers, first = await get_raw(fast, DETAIL_OP, DANA, "gzip", variables)  # executed
    assert headers["content-encoding"] == "gzip"
    assert len(calls) == 1  # for the response and the store alike
    services = services_of(fast)
    key = services.answers.key(
        Caller(DANA, "director"), AnswerId.of(DETAIL_OP.sha256, DETAIL_OP.name, variables)
    )
    stored = decode_stored(await services.kv.client.get(key))
    assert stored is not None and stored.gzip == first
    assert gzip.decompress(stored.gzip) == stored.body
    assert stored.operation == "CohortDetail"
    with StatementCounter(fast) as counter:
        for encoding in ("gzip", "identity", "gzip", "identity"):
            status, _, raw = await get_raw(fast, DETAIL_OP, DANA, encoding, variables)
            assert (status, raw) == (200, first if encoding == "gzip" else stored.body)
        response = await fast.http.post(
            "/graphql",
            content=json.dumps(bodies(DETAIL_OP, variables)["apq hash"]),
            headers={
                **fast.auth(DANA),
                "Content-Type": "application/json",
                "Accept-Encoding": "gzip",
            },
        )
        assert response.headers["content-encoding"] == "gzip"
        assert response.content == stored.body
    assert (counter.count, len(calls)) == (0, 1)
    # A refresh cycle's answers are compressed as they are stored, once each.
    calls.clear()
    report = await prewarm(services)
    assert len(calls) == len([n for n in calls if n >= 1024]) <= report.stored


async def test_small_bodies_go_out_as_they_are_unless_identity_is_refused(
    fast: GatewayClient,
) -> None:
    query = {"query": "{ me { name } }"}
    for encoding, coded in [("gzip", False), ("gzip, identity;q=0", True)]:
        status, headers, raw = await fetch(
            fast,
            "POST",
            "/graphql",
            json=query,
            headers={**fast.auth(DANA), "Accept-Encoding": encoding},
        )
        body = gzip.decompress(raw) if coded else raw
        assert (status, headers.get("content-encoding"), body) == (
            200,
            "gzip" if coded else None,
            b'{"data":{"me":{"name":"Dana Director"}}}',
        )


async def test_executed_answers_are_compressed(fast: GatewayClient) -> None:
    """An executed POST (an introspection: about 70 KB) and an executed persisted GET."""
    query = {"query": "{ __schema { types { name description fields { name description } } } }"}
    auth = fast.auth(ADMIN, "admin")
    _, plain_headers, plain = await fetch(fast, "POST", "/graphql", json=query, headers=auth)
    status, headers, raw = await fetch(
        fast, "POST", "/graphql", json=query, headers={**auth, "Accept-Encoding": "gzip"}
    )
    assert (status, headers["content-encoding"]) == (200, "gzip")
    assert gzip.decompress(raw) == plain and len(plain) > 20_000
    assert "content-encoding" not in plain_headers
    assert headers["vary"] == VARY


async def test_compression_can_be_turned_off(
    dataset_url: str, redis_url: str, manifest: str, fast: GatewayClient
) -> None:
    settings = settings_for(dataset_url, redis_url, persisted_manifest=manifest, compression=False)
    async with gateway_client(settings, fast.clock) as api:
        for _ in range(2):  # executed, then stored
            status, headers, raw = await get_raw(api, SUMMARY_OP, DANA, "gzip")
            assert (status, headers.get("content-encoding")) == (200, None)
            assert headers["etag"] == etag_for(raw)


async def test_static_files_are_compressed_once_at_start(
    dataset_url: str, redis_url: str, manifest: str, fast: GatewayClient
) -> None:
    settings = settings_for(
        dataset_url, redis_url, persisted_manifest=manifest, graphiql=True, dashboard_page=True
    )
    async with gateway_client(settings, fast.clock) as api:
        for url, path in [
            ("/graphql?graphiql-asset=graphiql.min.css", GRAPHIQL_DIR / "graphiql.min.css"),
            ("/dashboard/dashboard.js", GRAPHIQL_DIR.parent / "dashboard" / "dashboard.js"),
        ]:
            _, plain_headers, plain = await fetch(api, "GET", url)
            status, headers, raw = await fetch(api, "GET", url, headers={"Accept-Encoding": "gzip"})
            assert (status, headers["content-encoding"]) == (200, "gzip")
            assert gzip.decompress(raw) == plain == path.read_bytes()
            assert headers["etag"] == plain_headers["etag"][:-1] + '-gz"'
            assert headers["vary"] == plain_headers["vary"] == "Accept-Encoding"
            not_modified = await fetch(
                api,
                "GET",
                url,
                headers={"Accept-Encoding": "gzip", "If-None-Match": headers["etag"]},
            )
            assert (not_modified[0], not_modified[2]) == (304, b"")
        _, headers, raw = await fetch(api, "GET", "/dashboard", headers={"Accept-Encoding": "gzip"})
        assert headers["content-encoding"] == "gzip"
        assert b"<html" in gzip.decompress(raw)
