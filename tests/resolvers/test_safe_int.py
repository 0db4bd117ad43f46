"""SafeInt (graphql-scalars' SafeInt: an integer within ±(2^53−1)) at its bounds, money and
pooled seats past 2^31−1 served exactly, and values past what a type carries answered as
a logged INTERNAL_SERVER_ERROR with the request id, never BAD_USER_INPUT."""

import logging
from typing import Any

import pytest
from graphql import GraphQLError, IntValueNode, StringValueNode
from sqlalchemy import update

from loaders import billing, mentorship, programs
from resolvers.scalars import (
    MAX_SAFE_INT,
    SafeIntOverflow,
    parse_safe_int,
    parse_safe_int_literal,
    serialize_safe_int,
)
from tests.support import dataset
from tests.support.dataset import DANA, NOW, ROWS, d, t
from tests.support.gateway import settings_for
from tests.support.gateway_client import fixed_clock, gateway_client

INT32_MAX = 2**31 - 1
PAYMENTS_KRW = 450
KRW_CENTS = 5_000_000  # 450 × 5,000,000 = 2,250,000,000: past 2^31−1
CAPACITY = 2_000_000_000  # cohorts 101 and 102 (both running, both Dana's): 4e9 pooled

PAYMENTS = """
query Payments { cohort(id: 101) { payments { currency billedCents paidCents } } }
"""
SUMMARY = "query Summary { me { summary { seats { total used available } } } }"
COHORT_SEATS = "query Seats { cohort(id: 101) { seats { total } } }"
MENTORS = "query Mentors { cohort(id: 101) { mentorship { mentors { id maxLearners } } } }"


@pytest.mark.parametrize("value", [MAX_SAFE_INT, -MAX_SAFE_INT, 0, INT32_MAX + 1])
def test_safe_int_carries_every_integer_within_its_bounds(value: int) -> None:
    assert serialize_safe_int(value) == value
    assert parse_safe_int(value) == value
    assert parse_safe_int_literal(IntValueNode(value=str(value))) == value


@pytest.mark.parametrize("value", [MAX_SAFE_INT + 1, -MAX_SAFE_INT - 1, 2**63, True, 1.0, "1"])
def test_safe_int_refuses_anything_else(value: Any) -> None:
    with pytest.raises(SafeIntOverflow):
        serialize_safe_int(value)
    with pytest.raises(GraphQLError, match="SafeInt cannot represent"):
        parse_safe_int(value)


def test_safe_int_literal_must_be_an_integer_within_bounds() -> None:
    with pytest.raises(GraphQLError, match="non-safe-integer value"):
        parse_safe_int_literal(IntValueNode(value=str(MAX_SAFE_INT + 1)))
    with pytest.raises(GraphQLError, match="non-integer value"):
        parse_safe_int_literal(StringValueNode(value="1"))


def big_rows() -> dict[Any, list[dict[str, Any]]]:
    rows = {table: list(found) for table, found in ROWS.items()}
    rows[programs.cohorts] = [
        {**c, "seat_capacity": CAPACITY} if c["id"] in (101, 102) else c
        for c in rows[programs.cohorts]
    ]
    rows[billing.payments] = rows[billing.payments] + [
        {
            "id": 10_000 + n,
            "enrollment_id": 10_000 + n,
            "cohort_id": 101,
            "learner_id": 10_000 + n,
            "amount_cents": KRW_CENTS,
            "currency": "KRW",
            "status": "paid",
            "due_date": d(10, 1),
            "paid_at": t(10, 2),
        }
        for n in range(PAYMENTS_KRW)
    ]
    return rows


@pytest.fixture(params=["sqlite", "postgres"])
async def big_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'upstream.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    await dataset.load(url, big_rows())
    return url


async def post(url: str, query: str) -> dict[str, Any]:
    settings = settings_for(url, None, cache_enabled=False)
    async with gateway_client(settings, fixed_clock(NOW)) as api:
        response = await api.post(query, user=DANA)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    body["request_id"] = response.headers["x-request-id"]
    return body


async def test_money_past_int32_is_served_exactly(big_url: str) -> None:
    body = await post(big_url, PAYMENTS)
    assert "errors" not in body
    krw = [p for p in body["data"]["cohort"]["payments"] if p["currency"] == "KRW"]
    total = PAYMENTS_KRW * KRW_CENTS
    assert total > INT32_MAX
    assert krw == [{"currency": "KRW", "billedCents": total, "paidCents": total}]


async def test_seats_pooled_past_int32_are_served_exactly(big_url: str) -> None:
    body = await post(big_url, SUMMARY)
    assert "errors" not in body
    # Cohorts 101 and 102, six seated learners between them, are Dana's running cohorts.
    assert body["data"]["me"]["summary"]["seats"] == {
        "total": 2 * CAPACITY,
        "used": 6,
        "available": 2 * CAPACITY - 6,
    }


def internal_errors(caplog: pytest.LogCaptureFixture, request_id: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "gateway.http.errors"
        and r.levelno == logging.ERROR
        and request_id in r.getMessage()
    ]


async def test_past_safe_int_is_a_logged_internal_error(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    # SQLite's INTEGER holds 64 bits: a capacity past the contract (and SafeInt).
    url = f"sqlite+aiosqlite:///{tmp_path / 'upstream.sqlite3'}"
    await dataset.load(url)
    await dataset.execute(
        url,
        update(programs.cohorts).where(programs.cohorts.c.id == 101).values(seat_capacity=2**60),
    )
    with caplog.at_level(logging.INFO):
        body = await post(url, COHORT_SEATS)
    [error] = body["errors"]
    assert error["path"] == ["cohort", "seats", "total"]
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": body["request_id"]}
    assert internal_errors(caplog, body["request_id"]) == [
        f"internal error (request {body['request_id']}) at ['cohort', 'seats', 'total']"
    ]


async def test_int_past_32_bits_on_output_is_a_logged_internal_error(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'upstream.sqlite3'}"
    await dataset.load(url)
    await dataset.execute(
        url,
        update(mentorship.mentors).where(mentorship.mentors.c.id == 1).values(max_learners=2**31),
    )
    with caplog.at_level(logging.INFO):
        body = await post(url, MENTORS)
    [error] = body["errors"]
    assert error["path"] == ["cohort", "mentorship", "mentors", 0, "maxLearners"]
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": body["request_id"]}
    assert len(internal_errors(caplog, body["request_id"])) == 1


async def test_an_int_argument_past_32_bits_is_still_bad_user_input(
    tmp_path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'upstream.sqlite3'}"
    await dataset.load(url)
    settings = settings_for(url, None, cache_enabled=False)
    async with gateway_client(settings, fixed_clock(NOW)) as api:
        response = await api.post(
            "query C($id: Int!) { cohort(id: $id) { id } }", user=DANA, variables={"id": 2**31}
        )
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
