"""A tiny hand-built upstream dataset; every figure of it is worked out in the tests.

Today is 2026-11-24 and now is 12:00 UTC. Dana (2) directs tracks 1 and 2, Drew (3)
directs tracks 2 and 3, Nora (4) directs nothing, Ada (1) is the admin.
Cohorts: 101 (track 1, running), 102 (track 2, running), 103 (track 3, closed),
104 (track 1, planned). Dana sees 101, 102, 104; Drew sees 102, 103.
"""

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import insert

from loaders import billing, mentorship, missions, portfolio, programs, talentscope
from loaders.engines import make_engine

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
TODAY = NOW.date()
ADMIN, DANA, DREW, NORA = 1, 2, 3, 4


def t(month: int, day: int, hour: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def d(month: int, day: int, year: int = 2026) -> date:
    return date(year, month, day)


def _enrollment(id: int, cohort: int, learner: int, seat: str, status: str) -> dict[str, Any]:
    return {
        "id": id,
        "cohort_id": cohort,
        "learner_id": learner,
        "seat_type": seat,
        "status": status,
        "enrolled_at": t(9, 1),
        "completed_at": t(11, 1) if status == "completed" else None,
    }


ROWS: dict[Any, list[dict[str, Any]]] = {
    programs.users: [
        {"id": 1, "name": "Ada Admin", "email": "ada@example.test", "role": "admin"},
        {"id": 2, "name": "Dana Director", "email": "dana@example.test", "role": "director"},
        {"id": 3, "name": "Drew Director", "email": "drew@example.test", "role": "director"},
        {"id": 4, "name": "Nora Director", "email": "nora@example.test", "role": "director"},
    ]
    + [
        {"id": i, "name": f"Learner {i}", "email": f"l{i}@example.test", "role": "learner"}
        for i in range(10, 20)
    ],
    programs.programs: [
        {"id": 1, "name": "Data", "status": "active"},
        {"id": 2, "name": "Legacy", "status": "archived"},
    ],
    programs.tracks: [
        {"id": 1, "program_id": 1, "name": "Analytics"},
        {"id": 2, "program_id": 1, "name": "Engineering"},
        {"id": 3, "program_id": 2, "name": "Old"},
    ],
    programs.track_directors: [
        {"track_id": 1, "director_id": 2},
        {"track_id": 2, "director_id": 2},
        {"track_id": 2, "director_id": 3},
        {"track_id": 3, "director_id": 3},
    ],
    programs.cohorts: [
        {
            "id": 101,
            "track_id": 1,
            "name": "Analytics Nov",
            "mode": "online",
            "status": "running",
            "start_date": d(10, 1),
            "end_date": d(1, 31, 2027),
            "seat_capacity": 4,
        },
        {
            "id": 102,
            "track_id": 2,
            "name": "Engineering Nov",
            "mode": "hybrid",
            "status": "running",
            "start_date": d(9, 1),
            "end_date": d(2, 28, 2027),
            "seat_capacity": 10,
        },
        {
            "id": 103,
            "track_id": 3,
            "name": "Old Spring",
            "mode": "onsite",
            "status": "closed",
            "start_date": d(1, 10),
            "end_date": d(6, 30),
            "seat_capacity": 5,
        },
        {
            "id": 104,
            "track_id": 1,
            "name": "Analytics Jan",
            "mode": "online",
            "status": "planned",
            "start_date": d(1, 15, 2027),
            "end_date": d(5, 1, 2027),
            "seat_capacity": 6,
        },
    ],
    programs.enrollments: [
        _enrollment(1, 101, 10, "paid", "active"),
        _enrollment(2, 101, 11, "scholarship", "active"),
        _enrollment(3, 101, 12, "sponsored", "completed"),
        _enrollment(4, 101, 13, "paid", "withdrawn"),
        _enrollment(5, 101, 14, "paid", "deferred"),
        _enrollment(6, 102, 10, "paid", "active"),
        _enrollment(7, 102, 15, "paid", "active"),
        _enrollment(8, 102, 16, "paid", "active"),
        _enrollment(9, 103, 17, "paid", "completed"),
        _enrollment(10, 103, 18, "scholarship", "completed"),
        _enrollment(11, 103, 19, "paid", "withdrawn"),
    ],
    programs.milestones: [
        {
            "id": 1,
            "cohort_id": 101,
            "title": "Kickoff",
            "due_date": d(10, 1),
            "completed_at": t(10, 1),
        },
        {
            "id": 2,
            "cohort_id": 101,
            "title": "Midterm",
            "due_date": d(11, 20),
            "completed_at": None,
        },
        {"id": 3, "cohort_id": 101, "title": "Demo", "due_date": d(11, 24), "completed_at": None},
        {"id": 4, "cohort_id": 101, "title": "Final", "due_date": d(12, 24), "completed_at": None},
        {"id": 5, "cohort_id": 101, "title": "Later", "due_date": d(12, 25), "completed_at": None},
        {"id": 6, "cohort_id": 101, "title": "Review", "due_date": d(11, 24), "completed_at": None},
    ],
    mentorship.mentors: [
        {"id": 1, "name": "Mia Mentor", "email": "mia@example.test", "max_learners": 5},
        {"id": 2, "name": "Max Mentor", "email": "max@example.test", "max_learners": 3},
    ],
    mentorship.mentor_assignments: [
        {
            "id": 1,
            "cohort_id": 101,
            "mentor_id": 1,
            "learner_id": 10,
            "assigned_at": t(10, 1),
            "ended_at": None,
        },
        {
            "id": 2,
            "cohort_id": 101,
            "mentor_id": 1,
            "learner_id": 11,
            "assigned_at": t(10, 1),
            "ended_at": t(10, 20),
        },
        {
            "id": 3,
            "cohort_id": 101,
            "mentor_id": 2,
            "learner_id": 11,
            "assigned_at": t(10, 20),
            "ended_at": None,
        },
        {
            "id": 4,
            "cohort_id": 101,
            "mentor_id": 2,
            "learner_id": 13,
            "assigned_at": t(10, 1),
            "ended_at": None,
        },
        {
            "id": 5,
            "cohort_id": 102,
            "mentor_id": 1,
            "learner_id": 15,
            "assigned_at": t(9, 1),
            "ended_at": None,
        },
    ],
    mentorship.mentorship_sessions: [
        {
            "id": 1,
            "cohort_id": 101,
            "mentor_id": 1,
            "learner_id": 10,
            "scheduled_at": t(11, 1),
            "status": "completed",
        },
        {
            "id": 2,
            "cohort_id": 101,
            "mentor_id": 1,
            "learner_id": 10,
            "scheduled_at": t(11, 10),
            "status": "no_show",
        },
        {
            "id": 3,
            "cohort_id": 101,
            "mentor_id": 2,
            "learner_id": 11,
            "scheduled_at": t(11, 20),
            "status": "cancelled",
        },
        {
            "id": 4,
            "cohort_id": 101,
            "mentor_id": 2,
            "learner_id": 11,
            "scheduled_at": t(11, 24, 12),
            "status": "completed",
        },
        {
            "id": 5,
            "cohort_id": 101,
            "mentor_id": 2,
            "learner_id": 11,
            "scheduled_at": t(12, 1),
            "status": "scheduled",
        },
        {
            "id": 6,
            "cohort_id": 101,
            "mentor_id": 1,
            "learner_id": 10,
            "scheduled_at": t(11, 15),
            "status": "scheduled",
        },
        {
            "id": 7,
            "cohort_id": 102,
            "mentor_id": 1,
            "learner_id": 15,
            "scheduled_at": t(11, 2),
            "status": "completed",
        },
    ],
    talentscope.readiness_scores: [
        {"id": 1, "cohort_id": 101, "learner_id": 10, "score": 50.0, "computed_at": t(11, 1)},
        {"id": 2, "cohort_id": 101, "learner_id": 10, "score": 80.0, "computed_at": t(11, 10)},
        {"id": 3, "cohort_id": 101, "learner_id": 11, "score": 65.0, "computed_at": t(11, 10, 10)},
        {"id": 4, "cohort_id": 101, "learner_id": 11, "score": 55.0, "computed_at": t(11, 10, 10)},
        {"id": 5, "cohort_id": 101, "learner_id": 12, "score": 100.0, "computed_at": t(11, 5)},
        {"id": 6, "cohort_id": 101, "learner_id": 13, "score": 10.0, "computed_at": t(11, 5)},
        {"id": 7, "cohort_id": 102, "learner_id": 10, "score": 40.0, "computed_at": t(11, 5)},
        {"id": 8, "cohort_id": 102, "learner_id": 15, "score": 30.0, "computed_at": t(11, 5)},
    ],
    talentscope.competency_scores: [
        {
            "id": 1,
            "cohort_id": 101,
            "learner_id": 10,
            "competency": "python",
            "level": 3,
            "assessed_at": t(10, 1),
        },
        {
            "id": 2,
            "cohort_id": 101,
            "learner_id": 10,
            "competency": "python",
            "level": 4,
            "assessed_at": t(11, 1),
        },
        {
            "id": 3,
            "cohort_id": 101,
            "learner_id": 10,
            "competency": "sql",
            "level": 2,
            "assessed_at": t(11, 1),
        },
        {
            "id": 4,
            "cohort_id": 101,
            "learner_id": 11,
            "competency": "python",
            "level": 4,
            "assessed_at": t(11, 1),
        },
        {
            "id": 5,
            "cohort_id": 101,
            "learner_id": 13,
            "competency": "python",
            "level": 0,
            "assessed_at": t(11, 1),
        },
    ],
    missions.missions: [
        {"id": 1, "cohort_id": 101, "title": "Intro", "due_date": d(10, 15)},
        {"id": 2, "cohort_id": 101, "title": "Capstone", "due_date": d(12, 15)},
        {"id": 3, "cohort_id": 101, "title": "Empty", "due_date": d(1, 10, 2027)},
    ],
    missions.mission_submissions: [
        {
            "id": 1,
            "mission_id": 1,
            "learner_id": 10,
            "status": "approved",
            "started_at": t(10, 1),
            "submitted_at": t(10, 10),
            "reviewed_at": t(10, 10, 10),
        },
        {
            "id": 2,
            "mission_id": 1,
            "learner_id": 11,
            "status": "rejected",
            "started_at": t(10, 1),
            "submitted_at": t(10, 11),
            "reviewed_at": t(10, 12),
        },
        {
            "id": 3,
            "mission_id": 1,
            "learner_id": 12,
            "status": "approved",
            "started_at": t(10, 1),
            "submitted_at": t(10, 12),
            "reviewed_at": t(10, 12, 2),
        },
        {
            "id": 4,
            "mission_id": 1,
            "learner_id": 13,
            "status": "submitted",
            "started_at": t(10, 1),
            "submitted_at": t(10, 13),
            "reviewed_at": None,
        },
        {
            "id": 5,
            "mission_id": 2,
            "learner_id": 10,
            "status": "started",
            "started_at": t(11, 1),
            "submitted_at": None,
            "reviewed_at": None,
        },
        {
            "id": 6,
            "mission_id": 2,
            "learner_id": 11,
            "status": "approved",
            "started_at": t(10, 20),
            "submitted_at": t(11, 1),
            "reviewed_at": t(11, 1, 6),
        },
    ],
    portfolio.portfolio_items: [
        {
            "id": 1,
            "cohort_id": 101,
            "learner_id": 10,
            "status": "published",
            "quality_score": 90.0,
            "updated_at": t(11, 1),
        },
        {
            "id": 2,
            "cohort_id": 101,
            "learner_id": 10,
            "status": "draft",
            "quality_score": None,
            "updated_at": t(11, 1),
        },
        {
            "id": 3,
            "cohort_id": 101,
            "learner_id": 11,
            "status": "published",
            "quality_score": None,
            "updated_at": t(11, 1),
        },
        {
            "id": 4,
            "cohort_id": 101,
            "learner_id": 13,
            "status": "published",
            "quality_score": 70.0,
            "updated_at": t(11, 1),
        },
        {
            "id": 5,
            "cohort_id": 101,
            "learner_id": 12,
            "status": "submitted",
            "quality_score": 60.0,
            "updated_at": t(11, 1),
        },
    ],
    billing.payments: [
        {
            "id": 1,
            "enrollment_id": 1,
            "cohort_id": 101,
            "learner_id": 10,
            "amount_cents": 10000,
            "currency": "EUR",
            "status": "paid",
            "due_date": d(10, 1),
            "paid_at": t(10, 1),
        },
        {
            "id": 2,
            "enrollment_id": 2,
            "cohort_id": 101,
            "learner_id": 11,
            "amount_cents": 5000,
            "currency": "EUR",
            "status": "pending",
            "due_date": d(11, 1),
            "paid_at": None,
        },
        {
            "id": 3,
            "enrollment_id": 3,
            "cohort_id": 101,
            "learner_id": 12,
            "amount_cents": 3000,
            "currency": "EUR",
            "status": "pending",
            "due_date": d(11, 24),
            "paid_at": None,
        },
        {
            "id": 4,
            "enrollment_id": 1,
            "cohort_id": 101,
            "learner_id": 10,
            "amount_cents": 20000,
            "currency": "USD",
            "status": "failed",
            "due_date": d(10, 15),
            "paid_at": None,
        },
        {
            "id": 5,
            "enrollment_id": 2,
            "cohort_id": 101,
            "learner_id": 11,
            "amount_cents": 15000,
            "currency": "USD",
            "status": "refunded",
            "due_date": d(10, 1),
            "paid_at": t(10, 1),
        },
        {
            "id": 6,
            "enrollment_id": 3,
            "cohort_id": 101,
            "learner_id": 12,
            "amount_cents": 2000,
            "currency": "EUR",
            "status": "failed",
            "due_date": d(11, 5),
            "paid_at": None,
        },
    ],
    billing.refunds: [
        {
            "id": 1,
            "payment_id": 5,
            "amount_cents": 10000,
            "refunded_at": t(10, 5),
            "reason": "withdrawal",
        },
        {
            "id": 2,
            "payment_id": 5,
            "amount_cents": 5000,
            "refunded_at": t(10, 6),
            "reason": "withdrawal",
        },
        {
            "id": 3,
            "payment_id": 1,
            "amount_cents": 1000,
            "refunded_at": t(10, 7),
            "reason": "goodwill",
        },
    ],
}

METADATAS = [m.metadata for m in (programs, mentorship, talentscope, missions, portfolio, billing)]


async def load(url: str, rows: dict[Any, list[dict[str, Any]]] | None = None) -> None:
    """Create every module's tables at `url` and insert `rows` (default: ROWS)."""
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            for metadata in METADATAS:
                await conn.run_sync(metadata.drop_all)
                await conn.run_sync(metadata.create_all)
            for table, table_rows in (rows or ROWS).items():
                if table_rows:
                    await conn.execute(insert(table), table_rows)
    finally:
        await engine.dispose()


async def execute(url: str, statement: Any) -> None:
    """One statement against the dataset at `url`, committed (tests that change upstream)."""
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(statement)
    finally:
        await engine.dispose()


def replicated(copies: int) -> dict[Any, list[dict[str, Any]]]:
    """ROWS plus `copies` clones of cohort 101 (ids 1001, 1002, …) with all its rows."""
    rows = {table: list(table_rows) for table, table_rows in ROWS.items()}
    mission_ids = {m["id"] for m in ROWS[missions.missions] if m["cohort_id"] == 101}
    for n in range(1, copies + 1):
        cohort_id = 1000 + n
        offset = 1000 * n
        rows[programs.cohorts].append(
            {**ROWS[programs.cohorts][0], "id": cohort_id, "name": f"Clone {n}"}
        )
        for table in ROWS:
            if table is programs.cohorts or "cohort_id" not in table.c:
                continue
            for row in ROWS[table]:
                if row["cohort_id"] == 101:
                    rows[table].append({**row, "id": row["id"] + offset, "cohort_id": cohort_id})
        for row in ROWS[missions.mission_submissions]:
            if row["mission_id"] in mission_ids:
                rows[missions.mission_submissions].append(
                    {**row, "id": row["id"] + offset, "mission_id": row["mission_id"] + offset}
                )
        payment_ids = {p["id"] for p in ROWS[billing.payments] if p["cohort_id"] == 101}
        for row in ROWS[billing.refunds]:
            if row["payment_id"] in payment_ids:
                rows[billing.refunds].append(
                    {**row, "id": row["id"] + offset, "payment_id": row["payment_id"] + offset}
                )
    return rows
