"""The synthetic dataset of loaders.demo: determinism, pinned shape, and alert coverage.

The figures here are recomputed straight from the seeded tables (SQL aggregates plus
a little Python), independently of the resolvers, so they double as a cross-check of
docs/metrics.md. Every helper takes a URL map so a PostgreSQL fixture can reuse them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import and_, func, or_, select

from loaders import MODULES
from loaders import billing as bil
from loaders import mentorship as men
from loaders import missions as mis
from loaders import portfolio as por
from loaders import programs as prg
from loaders import talentscope as tal
from loaders.demo import SeedReport, checksum, seed
from loaders.engines import make_engine

TODAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

# rows_by_table of seed(scale="demo", seed=7, today=TODAY); re-pin only on purpose.
DEMO_ROWS = {
    "programs": 6,
    "users": 2013,
    "tracks": 20,
    "cohorts": 60,
    "track_directors": 37,
    "enrollments": 1899,
    "milestones": 341,
    "mentors": 40,
    "mentor_assignments": 1732,
    "mentorship_sessions": 12547,
    "competency_scores": 9972,
    "readiness_scores": 5184,
    "missions": 335,
    "mission_submissions": 6146,
    "portfolio_items": 2294,
    "payments": 2616,
    "refunds": 162,
}


def sqlite_urls(path: Path) -> dict[str, str]:
    url = f"sqlite+aiosqlite:///{path}"
    return {module: url for module in MODULES}


async def seed_demo(urls: Mapping[str, str], seed_value: int = 7) -> SeedReport:
    return await seed(urls, scale="demo", seed=seed_value, today=TODAY)


@pytest.fixture(scope="module")
async def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], SeedReport]:
    urls = sqlite_urls(tmp_path_factory.mktemp("seed") / "demo.sqlite3")
    return urls, await seed_demo(urls)


async def fetch(urls: Mapping[str, str], module: str, query: Any) -> list[Any]:
    engine = make_engine(urls[module])
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(query)).all())
    finally:
        await engine.dispose()


async def scalar(urls: Mapping[str, str], module: str, query: Any) -> Any:
    rows = await fetch(urls, module, query)
    return rows[0][0]


# --- determinism and shape -------------------------------------------------------------


async def test_same_seed_same_rows_other_seed_other_rows(
    tmp_path: Path, demo: tuple[dict[str, str], SeedReport]
) -> None:
    urls, first = demo
    again = await seed_demo(sqlite_urls(tmp_path / "again.sqlite3"))
    other = await seed_demo(sqlite_urls(tmp_path / "other.sqlite3"), seed_value=8)
    assert again.checksum == first.checksum
    assert again.rows_by_table == first.rows_by_table
    assert other.checksum != first.checksum
    assert await checksum(urls) == first.checksum  # read back, not remembered


async def test_demo_shape_is_pinned(demo: tuple[dict[str, str], SeedReport]) -> None:
    _, report = demo
    assert report.scale == "demo" and report.seed == 7 and report.today == TODAY
    assert report.rows_by_table == DEMO_ROWS
    assert report.admin_id == 1
    assert report.director_ids == list(range(2, 14))
    assert report.seconds < 60


async def test_users_directors_and_tracks(demo: tuple[dict[str, str], SeedReport]) -> None:
    urls, _ = demo
    roles = dict(
        await fetch(
            urls, "programs", select(prg.users.c.role, func.count()).group_by(prg.users.c.role)
        )
    )
    assert roles == {"admin": 1, "director": 12, "learner": 2000}
    assert (
        await scalar(urls, "programs", select(prg.users.c.role).where(prg.users.c.id == 1))
        == "admin"
    )
    links = await fetch(urls, "programs", select(prg.track_directors))
    per_director = Counter(link.director_id for link in links)
    per_track = Counter(link.track_id for link in links)
    assert sorted(per_director) == list(range(2, 14))
    assert all(2 <= n <= 8 for n in per_director.values())
    assert sorted(per_track) == list(range(1, 21))  # every track has a director
    assert 2 in per_track.values()
    statuses = Counter(s for (s,) in await fetch(urls, "programs", select(prg.programs.c.status)))
    assert statuses == {"active": 5, "archived": 1}


# --- row-level invariants of docs/upstream.md -------------------------------------------


async def test_row_invariants(demo: tuple[dict[str, str], SeedReport]) -> None:
    urls, _ = demo
    e, ms, p, r = prg.enrollments, mis.mission_submissions, bil.payments, bil.refunds
    violations = {
        "completed_at iff completed": (
            "programs",
            e.c.id,
            or_(
                and_(e.c.status == "completed", e.c.completed_at.is_(None)),
                and_(e.c.status != "completed", e.c.completed_at.is_not(None)),
            ),
        ),
        "score in range": (
            "talentscope",
            tal.readiness_scores.c.id,
            ~tal.readiness_scores.c.score.between(0, 100),
        ),
        "level in range": (
            "talentscope",
            tal.competency_scores.c.id,
            ~tal.competency_scores.c.level.between(0, 5),
        ),
        "submission stages": (
            "missions",
            ms.c.id,
            or_(
                and_(ms.c.status == "started", ms.c.submitted_at.is_not(None)),
                and_(ms.c.status != "started", ms.c.submitted_at.is_(None)),
                and_(ms.c.status.in_(["started", "submitted"]), ms.c.reviewed_at.is_not(None)),
                and_(ms.c.status.in_(["approved", "rejected"]), ms.c.reviewed_at.is_(None)),
                ms.c.reviewed_at <= ms.c.submitted_at,
            ),
        ),
        "paid_at iff paid or refunded": (
            "billing",
            p.c.id,
            or_(
                and_(p.c.status.in_(["paid", "refunded"]), p.c.paid_at.is_(None)),
                and_(p.c.status.in_(["pending", "failed"]), p.c.paid_at.is_not(None)),
                p.c.amount_cents < 0,
                func.length(p.c.currency) != 3,
            ),
        ),
        "refund amounts": ("billing", r.c.id, r.c.amount_cents < 0),
        "quality in range": (
            "portfolio",
            por.portfolio_items.c.id,
            ~por.portfolio_items.c.quality_score.between(0, 100),
        ),
    }
    found = {
        name: await scalar(urls, module, select(func.count(col)).where(cond))
        for name, (module, col, cond) in violations.items()
    }
    assert found == dict.fromkeys(violations, 0)

    # payments point at the enrollment of that learner in that cohort
    enrollments = {
        row.id: (row.cohort_id, row.learner_id)
        for row in await fetch(urls, "programs", select(e.c.id, e.c.cohort_id, e.c.learner_id))
    }
    payments = await fetch(
        urls, "billing", select(p.c.enrollment_id, p.c.cohort_id, p.c.learner_id)
    )
    assert all(enrollments[x.enrollment_id] == (x.cohort_id, x.learner_id) for x in payments)


async def test_realistic_shapes(demo: tuple[dict[str, str], SeedReport]) -> None:
    urls, _ = demo
    c, e = prg.cohorts, prg.enrollments

    async def distinct(module: str, column: Any) -> set[Any]:
        return {value for (value,) in await fetch(urls, module, select(column).distinct())}

    assert await distinct("programs", c.c.status) == {"planned", "running", "closed"}
    assert await distinct("programs", c.c.mode) == {"online", "hybrid", "onsite"}
    assert await distinct("programs", e.c.status) == {
        "active",
        "completed",
        "withdrawn",
        "deferred",
    }
    assert await distinct("programs", e.c.seat_type) == {"paid", "scholarship", "sponsored"}
    cohorts = await fetch(urls, "programs", select(c))
    for row in cohorts:
        if row.status == "running":
            assert row.start_date < TODAY < row.end_date
        elif row.status == "closed":
            assert row.end_date < TODAY
        else:
            assert row.start_date > TODAY
    assert sum(row.seat_capacity == 0 for row in cohorts) == 1

    seated = Counter(
        cohort_id
        for (cohort_id,) in await fetch(
            urls, "programs", select(e.c.cohort_id).where(e.c.status.in_(["active", "completed"]))
        )
    )
    over = [row.id for row in cohorts if seated[row.id] > row.seat_capacity]
    assert len(over) == 3

    rs = tal.readiness_scores
    scores = await fetch(urls, "talentscope", select(rs).order_by(rs.c.id))
    assert any(row.score == 100.0 for row in scores)
    by_key: dict[tuple[int, int, datetime], list[float]] = defaultdict(list)
    for row in scores:
        by_key[(row.cohort_id, row.learner_id, row.computed_at)].append(row.score)
    ties = [v for v in by_key.values() if len(v) > 1]
    assert len(ties) == 173 and all(v[0] != v[-1] for v in ties)
    scored = {(row.cohort_id, row.learner_id) for row in scores}
    seated_pairs = await fetch(
        urls,
        "programs",
        select(e.c.cohort_id, e.c.learner_id)
        .join(c, c.c.id == e.c.cohort_id)
        .where(e.c.status.in_(["active", "completed"]), c.c.status == "running"),
    )
    assert sum(tuple(pair) not in scored for pair in seated_pairs) == 61  # never scored

    assert await distinct("talentscope", tal.competency_scores.c.level) == set(range(6))
    assert await distinct("talentscope", tal.competency_scores.c.competency) == {
        "communication", "data-modeling", "python", "sql", "testing"
    }  # fmt: skip

    ma = men.mentor_assignments
    pairs = await fetch(urls, "mentorship", select(ma.c.mentor_id, ma.c.cohort_id).distinct())
    cohorts_per_mentor = Counter(mentor_id for mentor_id, _ in pairs)
    assert max(cohorts_per_mentor.values()) >= 2
    assert (
        await scalar(urls, "mentorship", select(func.count()).where(ma.c.ended_at.is_not(None))) > 0
    )
    sessions = men.mentorship_sessions
    assert await distinct("mentorship", sessions.c.status) == {
        "scheduled", "completed", "cancelled", "no_show"
    }  # fmt: skip
    future = await scalar(
        urls, "mentorship", select(func.count()).where(sessions.c.scheduled_at > NOW)
    )
    assert future > 0

    assert await distinct("missions", mis.mission_submissions.c.status) == {
        "started", "submitted", "approved", "rejected"
    }  # fmt: skip
    pi = por.portfolio_items
    assert await distinct("portfolio", pi.c.status) == {"draft", "submitted", "published"}
    assert (
        await scalar(
            urls,
            "portfolio",
            select(func.count()).where(pi.c.status == "published", pi.c.quality_score.is_(None)),
        )
        > 0
    )

    p, r = bil.payments, bil.refunds
    assert await distinct("billing", p.c.status) == {"pending", "paid", "failed", "refunded"}
    assert await distinct("billing", p.c.currency) == {"EUR", "GBP", "USD"}
    multi = await fetch(
        urls,
        "billing",
        select(p.c.cohort_id)
        .group_by(p.c.cohort_id)
        .having(func.count(p.c.currency.distinct()) > 1),
    )
    assert len(multi) == 7
    overdue = await scalar(
        urls, "billing", select(func.count()).where(p.c.status == "pending", p.c.due_date < TODAY)
    )
    assert overdue > 0
    refunds = await fetch(
        urls,
        "billing",
        select(p.c.status, p.c.amount_cents, func.sum(r.c.amount_cents), func.count())
        .join(r, r.c.payment_id == p.c.id)
        .group_by(p.c.id, p.c.status, p.c.amount_cents),
    )
    assert {row[0] for row in refunds} == {"refunded"}
    assert any(row[2] < row[1] for row in refunds)  # a partial refund
    assert any(row[3] == 2 for row in refunds)  # refunded in two parts

    mi = prg.milestones
    open_ = mi.c.completed_at.is_(None)
    assert (
        await scalar(urls, "programs", select(func.count()).where(open_, mi.c.due_date < TODAY)) > 0
    )
    upcoming = mi.c.due_date.between(TODAY, TODAY + timedelta(days=30))
    assert await scalar(urls, "programs", select(func.count()).where(open_, upcoming)) > 0


# --- every alert of docs/metrics.md fires on a running cohort ---------------------------


async def running_cohort_alerts(urls: Mapping[str, str]) -> dict[int, set[str]]:
    """Alerts (code:severity) per running cohort, recomputed from the tables."""
    c, e = prg.cohorts, prg.enrollments
    cohorts = await fetch(
        urls, "programs", select(c.c.id, c.c.seat_capacity).where(c.c.status == "running")
    )
    running = {row.id: row.seat_capacity for row in cohorts}
    enrollments = await fetch(
        urls,
        "programs",
        select(e.c.cohort_id, e.c.learner_id, e.c.status).where(e.c.cohort_id.in_(running)),
    )
    seated: dict[int, set[int]] = defaultdict(set)
    active: dict[int, set[int]] = defaultdict(set)
    for row in enrollments:
        if row.status in ("active", "completed"):
            seated[row.cohort_id].add(row.learner_id)
        if row.status == "active":
            active[row.cohort_id].add(row.learner_id)

    ma, ss = men.mentor_assignments, men.mentorship_sessions
    covered = set(
        await fetch(
            urls,
            "mentorship",
            select(ma.c.cohort_id, ma.c.learner_id).where(ma.c.ended_at.is_(None)),
        )
    )
    past = dict.fromkeys(running, 0)
    done = dict.fromkeys(running, 0)
    for cohort_id, status, n in await fetch(
        urls,
        "mentorship",
        select(ss.c.cohort_id, ss.c.status, func.count())
        .where(ss.c.scheduled_at <= NOW, ss.c.status != "cancelled", ss.c.cohort_id.in_(running))
        .group_by(ss.c.cohort_id, ss.c.status),
    ):
        past[cohort_id] += n
        done[cohort_id] += n if status == "completed" else 0

    rs = tal.readiness_scores
    latest: dict[tuple[int, int], float] = {}
    for row in await fetch(
        urls,
        "talentscope",
        select(rs).where(rs.c.cohort_id.in_(running)).order_by(rs.c.computed_at, rs.c.id),
    ):
        latest[(row.cohort_id, row.learner_id)] = row.score  # the last one wins

    mi = prg.milestones
    overdue = dict(
        await fetch(
            urls,
            "programs",
            select(mi.c.cohort_id, func.count())
            .where(mi.c.completed_at.is_(None), mi.c.due_date < TODAY, mi.c.cohort_id.in_(running))
            .group_by(mi.c.cohort_id),
        )
    )

    p = bil.payments
    billed: dict[int, dict[str, list[int]]] = defaultdict(dict)
    for cohort_id, currency, total, failed, n_failed in await fetch(
        urls,
        "billing",
        select(
            p.c.cohort_id,
            p.c.currency,
            func.sum(p.c.amount_cents),
            func.sum(p.c.amount_cents).filter(p.c.status == "failed"),
            func.count().filter(p.c.status == "failed"),
        )
        .where(p.c.cohort_id.in_(running))
        .group_by(p.c.cohort_id, p.c.currency),
    ):
        billed[cohort_id][currency] = [total, failed or 0, n_failed]

    alerts: dict[int, set[str]] = {}
    for cohort_id, capacity in running.items():
        flags: set[str] = set()
        if capacity and len(seated[cohort_id]) / capacity < 0.60:
            flags.add("LOW_SEAT_UTILIZATION:warning")
        if active[cohort_id]:
            coverage = len({(cohort_id, lid) for lid in active[cohort_id]} & covered) / len(
                active[cohort_id]
            )
            if coverage < 0.50:
                flags.add("LOW_MENTOR_COVERAGE:critical")
            elif coverage < 0.80:
                flags.add("LOW_MENTOR_COVERAGE:warning")
        if past[cohort_id] and done[cohort_id] / past[cohort_id] < 0.70:
            flags.add("LOW_SESSION_COMPLETION:warning")
        scores = [
            latest[(cohort_id, lid)] for lid in seated[cohort_id] if (cohort_id, lid) in latest
        ]
        if scores and sum(scores) / len(scores) < 60:
            flags.add("LOW_READINESS:warning")
        if overdue.get(cohort_id):
            flags.add("OVERDUE_MILESTONE:warning")
        per_currency = billed[cohort_id].values()
        if any(n_failed for _, _, n_failed in per_currency):
            critical = any(total and failed / total > 0.10 for total, failed, _ in per_currency)
            flags.add(f"PAYMENT_FAILURES:{'critical' if critical else 'warning'}")
        alerts[cohort_id] = flags
    return alerts


async def test_every_alert_fires_on_running_cohorts(
    demo: tuple[dict[str, str], SeedReport],
) -> None:
    urls, _ = demo
    alerts = await running_cohort_alerts(urls)
    fired = Counter(flag for flags in alerts.values() for flag in flags)
    assert fired == {
        "LOW_SEAT_UTILIZATION:warning": 4,
        "LOW_MENTOR_COVERAGE:critical": 3,
        "LOW_MENTOR_COVERAGE:warning": 3,
        "LOW_SESSION_COMPLETION:warning": 4,
        "LOW_READINESS:warning": 3,
        "OVERDUE_MILESTONE:warning": 2,
        "PAYMENT_FAILURES:critical": 2,
        "PAYMENT_FAILURES:warning": 3,
    }
    assert len(alerts) == 27
    assert sum(not flags for flags in alerts.values()) == 7  # healthy running cohorts


async def test_modules_in_separate_databases(
    tmp_path: Path, demo: tuple[dict[str, str], SeedReport]
) -> None:
    """Each module may have its own database; the rows do not depend on the layout."""
    _, report = demo
    urls = {module: f"sqlite+aiosqlite:///{tmp_path / module}.sqlite3" for module in MODULES}
    urls["billing"] = urls["programs"]  # two modules sharing one database, the rest alone
    split = await seed_demo(urls)
    assert split.checksum == report.checksum
    assert split.rows_by_table == report.rows_by_table


async def test_demo_loads_on_postgresql_with_the_same_checksum(
    demo: tuple[dict[str, str], SeedReport], postgres_url_factory
) -> None:
    _, on_sqlite = demo
    url = postgres_url_factory("seed")
    urls = {module: url for module in MODULES}
    on_postgres = await seed_demo(urls)
    assert on_postgres.rows_by_table == DEMO_ROWS
    assert on_postgres.checksum == on_sqlite.checksum
    assert await checksum(urls) == on_sqlite.checksum  # read back from PostgreSQL
