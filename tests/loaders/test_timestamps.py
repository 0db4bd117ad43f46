"""Timestamps in every form docs/upstream.md allows, read and compared as instants.

SQLite holds them as text, written by each upstream module in its own way: a space or a
`T`, 0 to 6 fraction digits, an optional `Z` or ±HH:MM offset. The same instants in
PostgreSQL (timestamptz) give the same answers. A value that is not a timestamp is
refused: an UPSTREAM_DATA_INVALID error naming the module, a log line and a metric.
"""

import logging
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from sqlalchemy import insert, text

from loaders import MODULES, mentorship, missions, talentscope
from loaders.engines import Upstream, UpstreamDataInvalid
from loaders.types import (
    InvalidInstant,
    parse_sqlite_instant,
    sqlite_instant_text,
    sqlite_instant_us,
)
from tests.resolvers.generated_world import Form, forms
from tests.support import dataset
from tests.support.dataset import DANA, NOW
from tests.support.gateway import settings_for
from tests.support.gateway_client import fixed_clock, gateway_client

COHORT = 555  # rows of this test only
US = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-24 12:00:00", NOW),
        ("2026-11-24T12:00:00", NOW),
        ("2026-11-24 12:00:00.5", NOW + timedelta(milliseconds=500)),
        ("2026-11-24 12:00:00.500", NOW + timedelta(milliseconds=500)),  # strftime('%f')
        ("2026-11-24T12:00:00.000001Z", NOW + US),
        ("2026-11-24 12:00:00.123456", NOW + timedelta(microseconds=123_456)),
        ("2026-11-24T14:00:00+02:00", NOW),
        ("2026-11-24T06:30:00.25-05:30", NOW + timedelta(milliseconds=250)),
        ("2026-11-25T00:00:00.000000+12:00", NOW),
    ],
)
def test_every_form_the_contract_allows_is_read_as_its_instant(
    value: str, expected: datetime
) -> None:
    assert parse_sqlite_instant(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-24",
        "2026-11-24 12:00",
        "2026-11-24 12:00:00.",
        "2026-11-24 12:00:00.1234567",
        "2026-11-24 12:00:00+0200",
        "2026-11-24 12:00:00 ",
        "2026-02-30 12:00:00",
        "2026-11-24 24:00:00",
        "yesterday",
        "",
        1764000000,
    ],
)
def test_anything_else_is_not_a_timestamp(value: Any) -> None:
    with pytest.raises(InvalidInstant):
        parse_sqlite_instant(value)


# (scheduled_at as written, past at NOW): each session its own mentor, so its own count.
SESSIONS = [
    ("2026-11-24T11:59:59.999999", True),  # "T" sorts after " " as text: was not past
    ("2026-11-24 12:00:00", True),  # exactly now is past
    ("2026-11-24T12:00:00.000001Z", False),
    ("2026-11-24 12:00:00.5", False),  # 500 ms, not 5 µs
    ("2026-11-24T14:00:00+02:00", True),  # 12:00:00 UTC
    ("2026-11-24T12:00:00.000001+00:00", False),
    ("2026-11-24T06:29:59.9-05:30", True),  # 11:59:59.9 UTC
    ("2026-11-23T23:59:59.999999Z", True),  # the UTC day before
    ("2026-11-25 00:00:00", False),  # the UTC day after
]
# (submitted_at, reviewed_at): review time 3,599.5 s, and 1 µs.
SUBMISSIONS = [
    ("2026-11-20 10:00:00.500", "2026-11-20T11:00:00Z"),
    ("2026-11-20T10:00:00.999999+01:00", "2026-11-20 09:00:01"),
]
# (id, learner, score, computed_at): learner 1's latest is id 4 (same instant as id 3,
# written with an offset; greater id), though both other forms sort after it as text.
SCORES = [
    (1, 1, 10.0, "2026-11-23T23:00:00"),
    (3, 1, 50.0, "2026-11-24T01:30:00+02:00"),
    (4, 1, 90.0, "2026-11-23 23:30:00"),
    (5, 2, 70.0, "2026-11-23 23:30:00.5"),
    (6, 2, 30.0, "2026-11-23T23:30:00.05Z"),
]


def written_rows(backend: str) -> list[tuple[Any, dict[str, Any]]]:
    """Rows of cohort COHORT; SQLite gets the text as written, PostgreSQL the instant."""

    def at(value: str) -> Any:
        return value if backend == "sqlite" else parse_sqlite_instant(value)

    rows: list[tuple[Any, dict[str, Any]]] = []
    for n, (scheduled, _) in enumerate(SESSIONS):
        mentor = dict(id=9000 + n, name=f"M{n}", email=f"m{n}@example.test", max_learners=1)
        rows.append((mentorship.mentors, mentor))
        rows.append(
            (
                mentorship.mentorship_sessions,
                dict(
                    id=9000 + n,
                    cohort_id=COHORT,
                    mentor_id=9000 + n,
                    learner_id=1,
                    status="scheduled",
                )
                | {"scheduled_at": at(scheduled)},
            )
        )
    rows.append(
        (missions.missions, dict(id=9000, cohort_id=COHORT, title="M", due_date=NOW.date()))
    )
    for n, (submitted, reviewed) in enumerate(SUBMISSIONS):
        rows.append(
            (
                missions.mission_submissions,
                dict(id=9000 + n, mission_id=9000, learner_id=n, status="approved")
                | {
                    "started_at": at("2026-11-01 00:00:00"),
                    "submitted_at": at(submitted),
                    "reviewed_at": at(reviewed),
                },
            )
        )
    for id, learner, score, computed in SCORES:
        rows.append(
            (
                talentscope.readiness_scores,
                dict(id=9000 + id, cohort_id=COHORT, learner_id=learner, score=score)
                | {"computed_at": at(computed)},
            )
        )
        rows.append(
            (
                talentscope.competency_scores,
                dict(id=9000 + id, cohort_id=COHORT, learner_id=learner, competency="sql")
                | {"level": int(score // 20), "assessed_at": at(computed)},
            )
        )
    return rows


@pytest.fixture(params=["sqlite", "postgres"])
async def upstream(request: pytest.FixtureRequest, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'upstream.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    await dataset.load(url)  # the hand-built dataset, and cohort COHORT's rows below
    for table, row in written_rows(request.param):
        if request.param == "sqlite":  # as text, past the gateway's own writer
            columns = ", ".join(row)
            values = ", ".join(f":{c}" for c in row)
            await dataset.execute(
                url,
                text(f"INSERT INTO {table.name} ({columns}) VALUES ({values})").bindparams(**row),
            )
        else:
            await dataset.execute(url, insert(table).values(**row))
    found = Upstream(dict.fromkeys(MODULES, url))
    yield found
    await found.dispose()


async def test_sessions_are_past_or_upcoming_by_their_instant(upstream: Upstream) -> None:
    [rows] = await mentorship.session_counts_by_cohort_id(upstream, [COHORT], NOW)
    past = {r.mentor_id: bool(r.past) for r in rows}
    assert past == {9000 + n: expected for n, (_, expected) in enumerate(SESSIONS)}


async def test_review_times_read_every_fraction_and_offset(upstream: Upstream) -> None:
    [rows] = await missions.submission_counts_by_cohort_id(upstream, [COHORT])
    [row] = rows
    assert sorted(row.review_us) == [1, 3_599_500_000]


async def test_latest_scores_are_the_latest_instants(upstream: Upstream) -> None:
    loader = talentscope.LatestReadinessScoresByCohortIdLoader(upstream)
    [rows] = await loader.load_all([COHORT])
    # Learner 2: 23:30:00.5 is later than 23:30:00.05 (as instants and as text alike).
    assert sorted((r.learner_id, r.score) for r in rows) == [(1, 90.0), (2, 70.0)]
    [levels] = await talentscope.level_learners_by_cohort_id(upstream, [COHORT])
    assert sorted((r.level, sorted(r.learner_ids)) for r in levels) == [(3, [2]), (4, [1])]


# --- a value that is not a timestamp (SQLite only: timestamptz cannot hold one) ---------

COHORT_QUERY = "query Cohort { cohort(id: 101) { id name } }"
BROKEN = {
    "mentorship_sessions.scheduled_at": (
        "mentorship",
        "UPDATE mentorship_sessions SET scheduled_at = '2026-11-24 12:00' WHERE cohort_id = 101",
    ),
    "mission_submissions.submitted_at/reviewed_at": (
        "missions",
        "UPDATE mission_submissions SET reviewed_at = 'soon' WHERE reviewed_at IS NOT NULL",
    ),
    "readiness_scores.computed_at": (
        "talentscope",
        "UPDATE readiness_scores SET computed_at = '24/11/2026' WHERE cohort_id = 101",
    ),
    "competency_scores.assessed_at": (
        "talentscope",
        "UPDATE competency_scores SET assessed_at = 1764000000 WHERE cohort_id = 101",
    ),
    "a timestamp column": (
        "programs",
        "UPDATE milestones SET completed_at = 'yesterday' WHERE cohort_id = 101",
    ),
}


def refused_reads(module: str, column: str) -> float:
    labels = {"module": module, "column": column}
    return REGISTRY.get_sample_value("gateway_upstream_refused_reads_total", labels) or 0.0


@pytest.mark.parametrize("column", list(BROKEN))
async def test_a_value_that_is_not_a_timestamp_is_refused_loudly(
    column: str, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    module, statement = BROKEN[column]
    url = f"sqlite+aiosqlite:///{tmp_path / 'upstream.sqlite3'}"
    await dataset.load(url)
    await dataset.execute(url, text(statement))
    before = refused_reads(module, column)
    settings = settings_for(url, None, cache_enabled=False)
    with caplog.at_level(logging.INFO):
        async with gateway_client(settings, fixed_clock(NOW)) as api:
            response = await api.post(COHORT_QUERY, user=DANA)
            # The answer waited for the refused read's siblings: none is left running.
            assert api.services.upstream.reads_in_flight == 0
    body = response.json()
    [error] = body["errors"]
    assert error["path"] == ["cohort"]
    assert error["extensions"] == {
        "code": "UPSTREAM_DATA_INVALID",
        "module": module,
        "requestId": response.headers["x-request-id"],
    }
    assert error["message"] == (
        f"upstream module {module} holds data outside the contract in {column}"
    )
    logged = [
        r.getMessage()
        for r in caplog.records
        if r.name == "loaders.engines" and r.levelno == logging.ERROR
    ]
    assert len(logged) == 1
    assert logged[0].startswith(f"upstream module {module}: refused a read, {column} is outside")
    assert refused_reads(module, column) == before + 1


async def test_the_refusal_is_raised_by_the_read_itself(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'upstream.sqlite3'}"
    await dataset.load(url)
    await dataset.execute(url, text(BROKEN["mentorship_sessions.scheduled_at"][1]))
    upstream = Upstream(dict.fromkeys(MODULES, url))
    try:
        with pytest.raises(UpstreamDataInvalid) as raised:
            await mentorship.session_counts_by_cohort_id(upstream, [101, 102], NOW)
    finally:
        await upstream.dispose()
    assert (raised.value.module, raised.value.column) == (
        "mentorship",
        "mentorship_sessions.scheduled_at",
    )


def test_an_offset_is_applied_not_dropped() -> None:
    local = datetime(2026, 11, 24, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert parse_sqlite_instant("2026-11-24T14:00:00+02:00") == local.astimezone(UTC)


# --- the SQL reading agrees with the Python one, on any instant in any allowed form ------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@settings(max_examples=200, deadline=None, database=None)
@given(
    instant=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2999, 12, 31), timezones=st.just(UTC)
    ),
    form=forms,
)
def test_sql_reads_every_form_as_python_does(instant: datetime, form: Form) -> None:
    written = form.write(instant)
    assert parse_sqlite_instant(written) == instant
    with closing(sqlite3.connect(":memory:")) as db:
        us, key = db.execute(
            f"SELECT {sqlite_instant_us(':v')}, {sqlite_instant_text(':v')}", {"v": written}
        ).fetchone()
    assert us == (instant - EPOCH) // US
    assert key == instant.strftime("%Y-%m-%d %H:%M:%S.%f")


@pytest.mark.parametrize(
    "value",
    ["2026-13-01 10:00:00.000000", "2026-11-24 24:00:00.000000", "2026-02-30 10:00:00", "x" * 26],
)
def test_sql_reads_nothing_from_what_is_not_a_timestamp(value: str) -> None:
    with closing(sqlite3.connect(":memory:")) as db:
        found = db.execute(
            f"SELECT {sqlite_instant_us(':v')}, {sqlite_instant_text(':v')}", {"v": value}
        ).fetchone()
    assert found == (None, None)
