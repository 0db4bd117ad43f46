"""The counting batch functions (sessions, submissions, payments and refunds counted or
summed by the database) give exactly what counting the rows one by one gives (the
tallies of tests/resolvers/test_figures.py), on SQLite and PostgreSQL, at the edges:
a session at exactly now and a microsecond either side, review times to the microsecond
(over days, and negative), payments due today and the day before."""

from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from loaders import MODULES, billing, mentorship, missions, portfolio, talentscope
from loaders.engines import Upstream
from tests.resolvers.figure_rows import (
    level_learners,
    payment_totals,
    portfolio_rows,
    refund_totals,
    session_counts,
    submission_counts,
)
from tests.support import dataset
from tests.support.dataset import NOW, TODAY

US = timedelta(microseconds=1)
COHORTS = [101, 102, 103, 104, 999]  # 999: no such cohort


def edge_rows() -> dict[Any, list[dict[str, Any]]]:
    rows = {table: list(found) for table, found in dataset.ROWS.items()}
    for n, at in enumerate((NOW, NOW + US, NOW - US, NOW + timedelta(days=3, microseconds=7))):
        rows[mentorship.mentorship_sessions].append(
            {
                "id": 900 + n,
                "cohort_id": 101,
                "mentor_id": 1,
                "learner_id": 10,
                "scheduled_at": at,
                "status": ("scheduled", "scheduled", "completed", "no_show")[n],
            }
        )
    submitted = NOW - timedelta(days=9, hours=5)
    for n, (status, reviewed) in enumerate(
        (
            ("approved", submitted + timedelta(days=2, hours=3, microseconds=7)),
            ("rejected", submitted + timedelta(seconds=59, microseconds=999_999)),
            ("approved", submitted - timedelta(minutes=1, microseconds=1)),  # reviewed first
            ("approved", submitted + timedelta(days=2, hours=3, microseconds=7)),  # a twin
            ("submitted", None),
        )
    ):
        rows[missions.mission_submissions].append(
            {
                "id": 900 + n,
                "mission_id": 1,
                "learner_id": 10 + n,
                "status": status,
                "started_at": submitted - timedelta(days=1),
                "submitted_at": submitted,
                "reviewed_at": reviewed,
            }
        )
    for n, (status, due) in enumerate(
        (("pending", TODAY), ("pending", TODAY - timedelta(days=1)), ("failed", TODAY))
    ):
        rows[billing.payments].append(
            {
                "id": 900 + n,
                "enrollment_id": 1,
                "cohort_id": 101,
                "learner_id": 10,
                "amount_cents": 1234 + n,
                "currency": "USD",
                "status": status,
                "due_date": due,
                "paid_at": None,
            }
        )
    for n, (learner, competency, level, at) in enumerate(
        (
            (10, "sql", 2, NOW - timedelta(days=3)),
            (10, "sql", 4, NOW - timedelta(days=1)),  # the latest
            (11, "sql", 4, NOW - timedelta(days=1)),  # tie on time: greatest id wins
            (11, "sql", 1, NOW - timedelta(days=1)),
            (12, "python", 0, NOW - timedelta(days=2)),
        )
    ):
        rows[talentscope.competency_scores].append(
            {
                "id": 900 + n,
                "cohort_id": 101,
                "learner_id": learner,
                "competency": competency,
                "level": level,
                "assessed_at": at,
            }
        )
    return rows


@pytest.fixture(scope="module")
async def edge_url(backend: str, request: pytest.FixtureRequest, tmp_path_factory) -> str:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('counts') / 'upstream.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url_factory")("counts")
    await dataset.load(url, edge_rows())
    return url


def by_cohort(table: Any, cohort_of: Any) -> dict[int, list[SimpleNamespace]]:
    out: dict[int, list[SimpleNamespace]] = {c: [] for c in COHORTS}
    for row in edge_rows()[table]:
        cohort = cohort_of(row)
        if cohort in out:
            out[cohort].append(SimpleNamespace(**row))
    return out


def canonical(rows: Any, *fields: str) -> list[tuple[Any, ...]]:
    return sorted((tuple(getattr(r, f) for f in fields) for r in rows), key=repr)


@pytest.fixture
async def upstream(edge_url: str):
    found = Upstream(dict.fromkeys(MODULES, edge_url))
    yield found
    await found.dispose()


async def test_session_counts_are_the_sessions_counted(upstream: Upstream) -> None:
    fields = ("mentor_id", "status", "past", "sessions")
    raw = by_cohort(mentorship.mentorship_sessions, lambda r: r["cohort_id"])
    for now in (NOW, NOW + US, NOW - US):
        got = await mentorship.session_counts_by_cohort_id(upstream, COHORTS, now)
        expected = [canonical(session_counts(raw[c], now), *fields) for c in COHORTS]
        # Booleans come back as 0/1 from SQLite: compared as truth values.
        assert [
            canonical(
                [SimpleNamespace(**{**r._asdict(), "past": bool(r.past)}) for r in rows], *fields
            )
            for rows in got
        ] == expected
    assert sum(r.sessions for r in got[0]) == len(raw[101]) and got[4] == []


async def test_submission_counts_time_reviews_to_the_microsecond(upstream: Upstream) -> None:
    mission_cohort = {m["id"]: m["cohort_id"] for m in dataset.ROWS[missions.missions]}
    raw = by_cohort(missions.mission_submissions, lambda r: mission_cohort[r["mission_id"]])
    got = await missions.submission_counts_by_cohort_id(upstream, COHORTS)

    def shape(rows: Any) -> list[tuple[Any, ...]]:
        return sorted((r.mission_id, r.status, r.submissions, sorted(r.review_us)) for r in rows)

    assert [shape(rows) for rows in got] == [shape(submission_counts(raw[c])) for c in COHORTS]
    times = {us for r in got[0] for us in r.review_us}
    assert (2 * 86_400 + 3 * 3_600) * 1_000_000 + 7 in times
    assert -(60 * 1_000_000 + 1) in times and 59_999_999 in times


async def test_payment_and_refund_totals_are_the_rows_summed(upstream: Upstream) -> None:
    raw = by_cohort(billing.payments, lambda r: r["cohort_id"])
    got = await billing.payment_totals_by_cohort_id(upstream, COHORTS, TODAY)
    fields = ("currency", "status", "past_due", "amount_cents", "payments")
    assert [
        canonical(
            [SimpleNamespace(**{**r._asdict(), "past_due": bool(r.past_due)}) for r in rows],
            *fields,
        )
        for rows in got
    ] == [canonical(payment_totals(raw[c], TODAY), *fields) for c in COHORTS]
    payment_cohort = {p["id"]: p["cohort_id"] for p in edge_rows()[billing.payments]}
    currency = {p["id"]: p["currency"] for p in edge_rows()[billing.payments]}
    refunds = by_cohort(billing.refunds, lambda r: payment_cohort[r["payment_id"]])
    for rows in refunds.values():
        for r in rows:
            r.currency = currency[r.payment_id]
    got = await billing.refund_totals_by_cohort_id(upstream, COHORTS)
    fields = ("currency", "amount_cents", "refunds")
    assert [canonical(rows, *fields) for rows in got] == [
        canonical(refund_totals(refunds[c]), *fields) for c in COHORTS
    ]


async def test_level_learners_are_the_latest_levels_grouped(upstream: Upstream) -> None:
    raw = by_cohort(talentscope.competency_scores, lambda r: r["cohort_id"])
    got = await talentscope.level_learners_by_cohort_id(upstream, COHORTS)

    def latest(rows: list[SimpleNamespace]) -> list[SimpleNamespace]:
        best: dict[tuple[int, str], SimpleNamespace] = {}
        for r in rows:
            key = (r.learner_id, r.competency)
            if key not in best or (r.assessed_at, r.id) > (best[key].assessed_at, best[key].id):
                best[key] = r
        return list(best.values())

    def shape(rows: Any) -> list[tuple[Any, ...]]:
        return sorted((r.competency, r.level, sorted(r.learner_ids)) for r in rows)

    assert [shape(rows) for rows in got] == [shape(level_learners(latest(raw[c]))) for c in COHORTS]
    sql_levels = {(r.level, tuple(sorted(r.learner_ids))) for r in got[0] if r.competency == "sql"}
    assert (1, (11,)) in sql_levels and any(10 in ids for level, ids in sql_levels if level == 4)


async def test_portfolio_rows_are_the_items_published_and_counted(upstream: Upstream) -> None:
    raw = by_cohort(portfolio.portfolio_items, lambda r: r["cohort_id"])
    got = await portfolio.portfolio_rows_by_cohort_id(upstream, COHORTS)
    fields = ("learner_id", "status", "quality_score", "items")
    assert [canonical(rows, *fields) for rows in got] == [
        canonical(portfolio_rows(raw[c]), *fields) for c in COHORTS
    ]
    for rows, c in zip(got, COHORTS, strict=True):  # published ones in the database's order
        published = [(r.learner_id, r.quality_score) for r in rows if r.status == "published"]
        assert published == [
            (r.learner_id, r.quality_score) for r in raw[c] if r.status == "published"
        ]
