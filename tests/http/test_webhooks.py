"""Signed change events with odd values: each is accepted or refused whole (a 4xx with a
JSON body) before its id is recorded, never a 500 — so a refused event's retry counts."""

import random
from typing import Any

import orjson
import pytest

from gateway.cache.keys import Keys
from tests.support.clock import MovableClock
from tests.support.dataset import NOW
from tests.support.gateway import queued_jobs, services_of, settings_for, signed
from tests.support.gateway_client import gateway_client

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

GOOD = {
    "id": "evt_good",
    "module": "missions",
    "occurred_at": "2026-11-24T10:00:00Z",
    "cohort_ids": [102],
    "director_ids": [3],
}
ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31 - 1,
    2**31,
    2**63 - 1,
    2**64,  # past orjson: written by the standard library below
    2**70,
    1.5,
    1e20,
    float("inf"),
    "",
    "1",
    "٢",
    "evt\nforged line",
    "x" * 300,
    "2026-11-24T10:00:00Z",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    [],
    [1, "2"],
    [True],
    [2**70],
    [[1]],
    {"a": 1},
    list(range(10_001)),
]


def odd_events(count: int, seed: int = 12) -> list[dict[str, Any]]:
    """GOOD with one to three fields replaced by odd values, or dropped, or one added."""
    rng = random.Random(seed)
    events = []
    for n in range(count):
        event: dict[str, Any] = {**GOOD, "id": f"evt_odd_{n}"}
        for _ in range(rng.randint(1, 3)):
            field = rng.choice([*GOOD, "extra"])
            if rng.random() < 0.1:
                event.pop(field, None)
            else:
                event[field] = rng.choice(ODD_VALUES)
        events.append(event)
    return events


def encode(event: dict[str, Any]) -> bytes:
    import json

    return json.dumps(event).encode()  # allows 2**70 and Infinity, as a sender might


EXPECTED_CASES = [
    ({**GOOD, "id": "evt_big", "cohort_ids": [2**70]}, "cohort_ids.0"),
    ({**GOOD, "id": "evt_bool", "cohort_ids": [True]}, "cohort_ids.0"),
    ({**GOOD, "id": "evt_zero", "director_ids": [0]}, "director_ids.0"),
    ({**GOOD, "id": "evt_int32", "director_ids": [2**31]}, "director_ids.0"),
    ({**GOOD, "id": "evt_inf", "cohort_ids": [float("inf")]}, "cohort_ids.0"),
]


async def test_an_id_past_the_integer_columns_is_refused_before_the_event_is_recorded(
    dataset_url: str, redis_url: str
) -> None:
    async with gateway_client(settings_for(dataset_url, redis_url), MovableClock(NOW)) as api:
        services = services_of(api)
        for event, where in EXPECTED_CASES:
            body = encode(event)
            response = await api.http.post("/webhooks/upstream", content=body, headers=signed(body))
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["code"] == "BAD_REQUEST"
            assert error["message"].startswith(f"Malformed event: {where}: ")
            assert await services.kv.get(Keys.event(event["id"])) is None
            # The sender's retry, fixed, is processed (not taken for a duplicate).
            fixed = orjson.dumps({**event, "cohort_ids": [102], "director_ids": [3]})
            retried = await api.http.post(
                "/webhooks/upstream", content=fixed, headers=signed(fixed)
            )
            assert (retried.status_code, retried.json()["status"]) == (202, "accepted")
        # The director's job, and one job per accepted event for its cohorts.
        assert await queued_jobs(redis_url) == [
            "refresh_director:director:3",
            *sorted(f"refresh_pending:{event['id']}" for event, _ in EXPECTED_CASES),
        ]


async def test_odd_events_are_accepted_or_refused_whole_never_a_500(
    dataset_url: str, redis_url: str
) -> None:
    async with gateway_client(settings_for(dataset_url, redis_url), MovableClock(NOW)) as api:
        services = services_of(api)
        outcomes: dict[int, int] = {}
        accepted: set[str] = set()
        for event in odd_events(300):
            body = encode(event)
            response = await api.http.post("/webhooks/upstream", content=body, headers=signed(body))
            outcomes[response.status_code] = outcomes.get(response.status_code, 0) + 1
            assert response.status_code in (202, 400, 413), (event, response.text)
            assert response.headers["content-type"] == "application/json"
            answer = response.json()
            event_id = event.get("id")
            recorded = isinstance(event_id, str) and (
                await services.kv.get(Keys.event(event_id)) is not None
            )
            if response.status_code == 202:
                assert answer["status"] in ("accepted", "duplicate") and recorded
                accepted.add(event_id)  # type: ignore[arg-type]
            else:
                assert answer["error"]["code"] in (
                    "BAD_REQUEST",
                    "PAYLOAD_TOO_LARGE",
                    "TOO_MANY_IDS",
                )
                assert not recorded or event_id in accepted, event
        assert outcomes.get(400, 0) > 200 and outcomes.get(202, 0) > 0
