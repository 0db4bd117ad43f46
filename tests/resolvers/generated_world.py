"""Upstream rows drawn by Hypothesis within what docs/upstream.md allows, and their writing
into a real database, for tests/resolvers/test_figures_property.py.

The draws lean on the edges: zero capacity and zero learners, assignments of withdrawn
or never-enrolled learners, mentors without a row (SQLite only: PostgreSQL enforces the
foreign key), readiness scores on bucket edges, competency names differing only in case
or spacing, reviews dated before their submission, six currencies with refunds above
payments, sessions to the microsecond around now and at UTC day boundaries, ids near
2^31−1, capacities whose sum passes 2^31−1, and admins listed as directors of tracks.
In SQLite each timestamp is written as text in one of the forms the contract allows
(space or T, 0 to 6 fraction digits, no zone, Z or an offset); in PostgreSQL as
timestamptz.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st
from sqlalchemy import Column, MetaData, Table, Text, insert

from loaders import billing, mentorship, missions, portfolio, programs, talentscope
from loaders.engines import make_engine
from loaders.types import UTCDateTime
from tests.support.dataset import METADATAS

MAX_ID = 2**31 - 1
MIDNIGHT = datetime(2026, 11, 24, tzinfo=UTC)
US = timedelta(microseconds=1)
# The clock, pinned at a UTC day boundary (and a microsecond either side).
NOWS = (MIDNIGHT, MIDNIGHT - US, MIDNIGHT + US)
CURRENCIES = ("CHF", "EUR", "GBP", "JPY", "KRW", "USD")
COMPETENCIES = ("SQL", "sql", "sql ", " sql", "Data viz", "data  viz", "Python")
SCORE_EDGES = (0.0, 19.999999, 20.0, 39.99, 40.0, 60.0, 69.999, 70.0, 79.9999, 80.0, 100.0)


@dataclass(frozen=True)
class Form:
    """How one SQLite writer spells an instant."""

    separator: str  # " " or "T"
    digits: int  # fraction digits, 0 to 6 (more when the microseconds need them)
    zone: str | None  # None (naive UTC), "Z", or "+HH:MM" / "-HH:MM"

    def write(self, instant: datetime) -> str:
        offset = timedelta(0)
        if self.zone not in (None, "Z"):
            sign = -1 if self.zone[0] == "-" else 1
            offset = sign * timedelta(hours=int(self.zone[1:3]), minutes=int(self.zone[4:6]))
        local = instant.astimezone(timezone(offset))
        micros = f"{local.microsecond:06d}"
        digits = max(self.digits, len(micros.rstrip("0")))
        text = local.strftime(f"%Y-%m-%d{self.separator}%H:%M:%S")
        if digits:
            text += "." + micros[:digits]
        return text + (self.zone or "")


forms = st.builds(
    Form,
    st.sampled_from((" ", "T")),
    st.integers(0, 6),
    st.sampled_from((None, "Z", "+00:00", "+02:00", "-05:30", "+14:00", "-12:00")),
)


class World:
    """Not a dataclass: Hypothesis prints a dataclass field by field, this one is large."""

    def __init__(self, now: datetime, forms: list[Form]) -> None:
        self.now = now
        self.forms = forms
        self.rows: dict[Any, list[dict[str, Any]]] = {}

    def __repr__(self) -> str:
        # Short: a failing example is told by the differences its test lists.
        counts = ", ".join(f"{t.name}: {len(r)}" for t, r in self.rows.items() if r)
        return f"World(now={self.now.isoformat()}, {counts})"

    def table(self, table: Any) -> list[dict[str, Any]]:
        return self.rows.setdefault(table, [])


def instants(now: datetime) -> st.SearchStrategy[datetime]:
    day = timedelta(days=1)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    near = [now + k * US for k in range(-2, 3)]
    edges = [midnight + d + k * US for d in (-day, timedelta(0), day) for k in (-1, 0, 1)]
    anywhere = st.integers(-40 * 86_400_000_000, 40 * 86_400_000_000).map(
        lambda us: now + timedelta(microseconds=us)
    )
    return st.one_of(st.sampled_from(near + edges), anywhere)


@st.composite
def worlds(draw: st.DrawFn, backend: str) -> World:
    now = draw(st.sampled_from(NOWS))
    today = now.date()
    world = World(now=now, forms=draw(st.lists(forms, min_size=1, max_size=12)))
    at = instants(now)
    # Ids run up from 1 or up to 2^31−1, for every table alike.
    base = draw(st.sampled_from((1, MAX_ID - 400)))
    counter = iter(range(base, base + 400))

    def new_id() -> int:
        return next(counter)

    # --- programs ---------------------------------------------------------------------
    def users(role: str, low: int, high: int) -> list[int]:
        ids = [new_id() for _ in range(draw(st.integers(low, high)))]
        for i in ids:
            world.table(programs.users).append(
                {"id": i, "name": f"{role} {i}", "email": f"u{i}@example.test", "role": role}
            )
        return ids

    directors, admins, learners = (
        users("director", 1, 3),
        users("admin", 1, 2),
        users("learner", 0, 7),
    )
    program_ids = [new_id() for _ in range(draw(st.integers(1, 2)))]
    for p in program_ids:
        status = draw(st.sampled_from(("active", "archived")))
        world.table(programs.programs).append({"id": p, "name": f"P{p}", "status": status})
    track_ids = [new_id() for _ in range(draw(st.integers(1, 3)))]
    for t in track_ids:
        program = draw(st.sampled_from(program_ids))
        world.table(programs.tracks).append({"id": t, "program_id": program, "name": f"T{t}"})
    pairs = [(t, u) for t in track_ids for u in directors + admins]
    for t, u in draw(st.lists(st.sampled_from(pairs), unique=True, max_size=len(pairs))):
        world.table(programs.track_directors).append({"track_id": t, "director_id": u})

    capacities = st.one_of(st.integers(0, 6), st.integers(MAX_ID - 3, MAX_ID))
    cohort_ids = [new_id() for _ in range(draw(st.integers(1, 4)))]
    for c in cohort_ids:
        world.table(programs.cohorts).append(
            {
                "id": c,
                "track_id": draw(st.sampled_from(track_ids)),
                "name": f"C{c}",
                "mode": draw(st.sampled_from(("online", "hybrid", "onsite"))),
                "status": draw(st.sampled_from(("planned", "running", "closed"))),
                "start_date": today - timedelta(days=30),
                "end_date": today + timedelta(days=30),
                "seat_capacity": draw(capacities),
            }
        )
        for learner in draw(st.lists(st.sampled_from(learners), unique=True)) if learners else []:
            status = draw(st.sampled_from(("active", "completed", "withdrawn", "deferred")))
            world.table(programs.enrollments).append(
                {
                    "id": new_id(),
                    "cohort_id": c,
                    "learner_id": learner,
                    "seat_type": draw(st.sampled_from(("paid", "scholarship", "sponsored"))),
                    "status": status,
                    "enrolled_at": draw(at),
                    "completed_at": draw(at) if status == "completed" else None,
                }
            )
        for _ in range(draw(st.integers(0, 3))):
            due = today + timedelta(days=draw(st.sampled_from((-31, -1, 0, 1, 29, 30, 31))))
            world.table(programs.milestones).append(
                {
                    "id": new_id(),
                    "cohort_id": c,
                    "title": "M",
                    "due_date": due,
                    "completed_at": draw(st.none() | at),
                }
            )
    people = learners + [new_id()]  # one learner id with no user row nor enrollment

    # --- mentorship -------------------------------------------------------------------
    mentor_ids = [new_id() for _ in range(draw(st.integers(0, 3)))]
    for m in mentor_ids:
        capacity = draw(st.integers(0, 9) | st.just(MAX_ID))
        world.table(mentorship.mentors).append(
            {
                "id": m,
                "name": f"Mentor {m}",
                "email": f"m{m}@example.test",
                "max_learners": capacity,
            }
        )
    assignable = mentor_ids + ([new_id()] if backend == "sqlite" else [])  # one without a row
    for c in cohort_ids:
        if not assignable:
            break
        for _ in range(draw(st.integers(0, 4))):
            world.table(mentorship.mentor_assignments).append(
                {
                    "id": new_id(),
                    "cohort_id": c,
                    "mentor_id": draw(st.sampled_from(assignable)),
                    "learner_id": draw(st.sampled_from(people)),
                    "assigned_at": draw(at),
                    "ended_at": draw(st.none() | at),
                }
            )
        for _ in range(draw(st.integers(0, 6))):
            world.table(mentorship.mentorship_sessions).append(
                {
                    "id": new_id(),
                    "cohort_id": c,
                    "mentor_id": draw(st.sampled_from(assignable)),
                    "learner_id": draw(st.sampled_from(people)),
                    "scheduled_at": draw(at),
                    "status": draw(
                        st.sampled_from(("scheduled", "completed", "cancelled", "no_show"))
                    ),
                }
            )

    # --- talentscope: few instants, so that ties happen ----------------------------------
    moments = draw(st.lists(at, min_size=1, max_size=3))
    scores = st.sampled_from(SCORE_EDGES) | st.floats(0, 100, allow_nan=False)
    for c in cohort_ids:
        for _ in range(draw(st.integers(0, 6))):
            world.table(talentscope.readiness_scores).append(
                {
                    "id": new_id(),
                    "cohort_id": c,
                    "learner_id": draw(st.sampled_from(people)),
                    "score": draw(scores),
                    "computed_at": draw(st.sampled_from(moments)),
                }
            )
        for _ in range(draw(st.integers(0, 6))):
            world.table(talentscope.competency_scores).append(
                {
                    "id": new_id(),
                    "cohort_id": c,
                    "learner_id": draw(st.sampled_from(people)),
                    "competency": draw(st.sampled_from(COMPETENCIES)),
                    "level": draw(st.integers(0, 5)),
                    "assessed_at": draw(st.sampled_from(moments)),
                }
            )

    # --- missions ---------------------------------------------------------------------
    for c in cohort_ids:
        for _ in range(draw(st.integers(0, 2))):
            mission = new_id()
            world.table(missions.missions).append(
                {"id": mission, "cohort_id": c, "title": f"Mission {mission}", "due_date": today}
            )
            for _ in range(draw(st.integers(0, 4))):
                status = draw(st.sampled_from(("started", "submitted", "approved", "rejected")))
                submitted = draw(at) if status != "started" else None
                reviewed = draw(at) if status in ("approved", "rejected") else None  # maybe first
                world.table(missions.mission_submissions).append(
                    {
                        "id": new_id(),
                        "mission_id": mission,
                        "learner_id": draw(st.sampled_from(people)),
                        "status": status,
                        "started_at": draw(at),
                        "submitted_at": submitted,
                        "reviewed_at": reviewed,
                    }
                )

    # --- portfolio --------------------------------------------------------------------
    for c in cohort_ids:
        for _ in range(draw(st.integers(0, 5))):
            world.table(portfolio.portfolio_items).append(
                {
                    "id": new_id(),
                    "cohort_id": c,
                    "learner_id": draw(st.sampled_from(people)),
                    "status": draw(st.sampled_from(("draft", "submitted", "published"))),
                    "quality_score": draw(st.none() | st.sampled_from(SCORE_EDGES)),
                    "updated_at": draw(at),
                }
            )

    # --- billing ----------------------------------------------------------------------
    amounts = st.integers(0, 10_000) | st.integers(MAX_ID - 2, MAX_ID)
    for c in cohort_ids:
        for _ in range(draw(st.integers(0, 5))):
            payment = new_id()
            status = draw(st.sampled_from(("pending", "paid", "failed", "refunded")))
            world.table(billing.payments).append(
                {
                    "id": payment,
                    "enrollment_id": new_id(),
                    "cohort_id": c,
                    "learner_id": draw(st.sampled_from(people)),
                    "amount_cents": draw(amounts),
                    "currency": draw(st.sampled_from(CURRENCIES)),
                    "status": status,
                    "due_date": today + timedelta(days=draw(st.integers(-2, 2))),
                    "paid_at": draw(at) if status in ("paid", "refunded") else None,
                }
            )
            for _ in range(draw(st.integers(0, 2))):
                world.table(billing.refunds).append(
                    {
                        "id": new_id(),
                        "payment_id": payment,
                        "amount_cents": draw(amounts),
                        "refunded_at": draw(at),
                        "reason": "r",
                    }
                )
    return world


def _as_text(table: Table) -> Table:
    """The same table with its timestamp columns as plain text (to write a given form)."""
    columns = [Column(c.name, Text if isinstance(c.type, UTCDateTime) else c.type) for c in table.c]
    return Table(table.name, MetaData(), *columns)


async def write(url: str, world: World) -> None:
    """Every module's tables at `url`, anew, holding `world`'s rows."""
    sqlite = url.startswith("sqlite")
    engine = make_engine(url)
    n = 0
    try:
        async with engine.begin() as conn:
            for metadata in METADATAS:
                await conn.run_sync(metadata.drop_all)
                await conn.run_sync(metadata.create_all)
            for table in (t for metadata in METADATAS for t in metadata.sorted_tables):
                rows = world.rows.get(table)
                if not rows:
                    continue
                if not sqlite:
                    await conn.execute(insert(table), rows)
                    continue
                written = []
                for row in rows:
                    out = {}
                    for key, value in row.items():
                        if isinstance(value, datetime):
                            value = world.forms[n % len(world.forms)].write(value)
                            n += 1
                        out[key] = value
                    written.append(out)
                await conn.execute(insert(_as_text(table)), written)
    finally:
        await engine.dispose()
