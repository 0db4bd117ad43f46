"""Deterministic synthetic upstream data for demos, tests and benchmarks.

`seed(urls, scale=..., seed=..., today=...)` creates the tables of the six upstream
modules (spec/UPSTREAM.md) and fills them with a realistic dataset. The same
(scale, seed, today) always writes the same rows: every random draw comes from
`random.Random(seed)` or from per-cohort generators seeded by it, and every date is
derived from `today`, never from the wall clock.

Running cohorts are given an archetype (see RUNNING_ARCHETYPES) so that every alert
of spec/METRICS.md fires somewhere and healthy cohorts raise none, by construction
rather than by luck. Nothing is ever dated on `today` itself except milestone due
dates, so "past" and "future" do not depend on the time of day a test runs at.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
import time as _time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import count
from typing import TYPE_CHECKING, Any

from sqlalchemy import Date, Float, Integer, MetaData, Table, event, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tqdm import tqdm

from loaders import MODULES
from loaders import billing as bil
from loaders import mentorship as men
from loaders import missions as mis
from loaders import portfolio as por
from loaders import programs as prg
from loaders import talentscope as tal
from loaders.engines import make_engine
from loaders.types import UTCDateTime

if TYPE_CHECKING:
    from gateway.settings import Settings

__all__ = ["SCALES", "Scale", "SeedReport", "checksum", "default_urls", "seed"]

METADATA: dict[str, MetaData] = {
    "programs": prg.metadata,
    "mentorship": men.metadata,
    "talentscope": tal.metadata,
    "missions": mis.metadata,
    "portfolio": por.metadata,
    "billing": bil.metadata,
}
CHUNK_ROWS = 5_000

Row = dict[str, Any]
Rows = Iterator[tuple[Table, Row]]


@dataclass(frozen=True)
class Scale:
    """Sizes of one dataset; everything else follows from the cohort plan."""

    name: str
    admins: int
    directors: int
    programs: int
    archived_programs: int
    tracks: int
    cohorts: int
    learners: int
    mentors: int
    capacity: tuple[int, int] = (24, 50)


SCALES: dict[str, Scale] = {
    "demo": Scale(
        "demo",
        admins=1,
        directors=12,
        programs=6,
        archived_programs=1,
        tracks=20,
        cohorts=60,
        learners=2_000,
        mentors=40,
    ),
    "bench": Scale(
        "bench",
        admins=1,
        directors=500,
        programs=125,
        archived_programs=8,
        tracks=1_200,
        cohorts=2_500,
        learners=75_000,
        mentors=1_200,
    ),
}


@dataclass
class SeedReport:
    scale: str
    seed: int
    today: date
    rows_by_table: dict[str, int]
    seconds: float
    admin_id: int
    director_ids: list[int]
    checksum: str

    @property
    def total_rows(self) -> int:
        return sum(self.rows_by_table.values())


def default_urls(settings: Settings) -> dict[str, str]:
    return {module: settings.upstream_url(module) for module in MODULES}


# --- vocabulary ------------------------------------------------------------------------

FIRST_NAMES = (
    "Amara", "Ben", "Chloe", "Diego", "Elif", "Farah", "Gustav", "Hana", "Ivan", "Jonas",
    "Keiko", "Liam", "Maya", "Nikos", "Olga", "Priya", "Quinn", "Rosa", "Sami", "Tariq",
    "Uma", "Viktor", "Wen", "Ximena", "Yusuf", "Zoe", "Aisha", "Bruno", "Clara", "Dmitri",
    "Emma", "Felix", "Grace", "Hugo", "Ines", "Jamal", "Kofi", "Lena", "Mateo", "Nora",
)  # fmt: skip
LAST_NAMES = (
    "Okafor", "Schmidt", "Dubois", "Garcia", "Yilmaz", "Haddad", "Larsen", "Sato", "Petrov",
    "Weber", "Tanaka", "Murphy", "Patel", "Papadopoulos", "Ivanova", "Sharma", "Reyes",
    "Silva", "Nieminen", "Khan", "Rao", "Novak", "Chen", "Lopez", "Demir", "Martin",
    "Mensah", "Costa", "Fischer", "Kowalski", "Rossi", "Nguyen", "Hughes", "Moreau",
    "Santos", "Jensen", "Owusu", "Bauer", "Alvarez", "Byrne",
)  # fmt: skip
SUBJECTS = (
    "Data Analytics", "Software Engineering", "Cloud Engineering", "Product Management",
    "UX Design", "Cybersecurity", "Machine Learning", "DevOps", "Data Engineering",
    "Digital Marketing",
)  # fmt: skip
# Each region bills in one currency; multi-currency cohorts are made explicitly.
REGIONS = (
    ("Berlin", "EUR"), ("London", "GBP"), ("New York", "USD"), ("Lisbon", "EUR"),
    ("Remote", "USD"), ("Manchester", "GBP"), ("Paris", "EUR"), ("Austin", "USD"),
    ("Amsterdam", "EUR"), ("Edinburgh", "GBP"), ("Toronto", "USD"), ("Madrid", "EUR"),
    ("Dublin", "EUR"),
)  # fmt: skip
TRACK_KINDS = (
    "Foundations", "Full-time", "Part-time", "Evening", "Weekend Intensive", "Advanced",
    "Accelerated", "Capstone",
)  # fmt: skip
MILESTONE_TITLES = (
    "Project 1 review", "Midterm assessment", "Team project demo", "Capstone proposal",
    "Portfolio check-in", "Capstone demo",
)  # fmt: skip
MISSION_TOPICS = (
    "Data cleaning", "SQL joins", "REST API", "Unit testing", "Dashboard build",
    "Schema design", "Deployment", "Code review", "User interviews", "Final capstone",
)  # fmt: skip
COMPETENCIES = ("communication", "data-modeling", "python", "sql", "testing")
BASE_PRICE_CENTS = {"EUR": 450_000, "GBP": 390_000, "USD": 520_000}
MODE_PRICE_FACTOR = {"online": 0.8, "hybrid": 1.0, "onsite": 1.2}
SEATED = frozenset({"active", "completed"})

# Running cohorts cycle through these, so each alert has cohorts that raise only it.
RUNNING_ARCHETYPES = (
    "healthy",
    "low_seats",  # LOW_SEAT_UTILIZATION
    "mentor_critical",  # LOW_MENTOR_COVERAGE critical
    "sessions",  # LOW_SESSION_COMPLETION
    "overfilled",  # healthy, more seated than seats
    "mentor_warning",  # LOW_MENTOR_COVERAGE warning
    "readiness",  # LOW_READINESS
    "overdue",  # OVERDUE_MILESTONE
    "healthy_multi",  # healthy, billed in three currencies
    "pay_critical",  # PAYMENT_FAILURES critical (one currency > 10 % failed)
    "pay_warning",  # PAYMENT_FAILURES warning (one small failed payment)
    "mixed",  # unconstrained randomness: anything may fire
)
# Non-archived tracks cycle through these statuses: half running, some closed/planned.
STATUS_CYCLE = (
    "running", "closed", "running", "planned", "running",
    "closed", "running", "running", "closed", "planned",
)  # fmt: skip
STATUS_ORDER = {"closed": 0, "running": 1, "planned": 2}


# --- time helpers ----------------------------------------------------------------------


def _ts(day: date, minute: int = 0) -> datetime:
    return datetime.combine(day, time.min, UTC) + timedelta(minutes=minute)


def _between(rng: random.Random, lo: datetime, hi: datetime) -> datetime:
    """A whole-minute instant in [lo, hi); lo when the window is empty."""
    minutes = int((hi - lo).total_seconds() // 60)
    return lo + timedelta(minutes=rng.randrange(minutes)) if minutes > 0 else lo


def _later(rng: random.Random, at: datetime, gap: timedelta, before: datetime) -> datetime:
    """An instant ≥ `gap` after `at` and before `before` when there is room, else ≥ `at`."""
    lo = at + gap if at + gap < before else at
    return _between(rng, lo, before)


def _clamp(value: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, value))


# --- the plan: users, catalogue, cohorts and enrollments ------------------------------


@dataclass(slots=True)
class _Enrollment:
    id: int
    learner_id: int
    seat_type: str
    status: str
    enrolled_at: datetime
    completed_at: datetime | None
    ability: float  # latent 0..1 skill: drives scores, levels and review outcomes
    currency: str


@dataclass(slots=True)
class _Cohort:
    id: int
    track_id: int
    name: str
    mode: str
    status: str
    start: date
    end: date
    capacity: int
    archetype: str
    currencies: tuple[str, ...]
    seed: int
    boundary: bool = False  # carries the edge cases: readiness 100, boundary milestones
    enrollments: list[_Enrollment] = field(default_factory=list)

    def rng(self, purpose: str) -> random.Random:
        # Independent stream per (cohort, module): a module's rows do not depend on
        # how many draws another module made.
        return random.Random(f"{self.seed}:{purpose}")


@dataclass
class _World:
    today: date
    users: list[Row]
    programs: list[Row]
    tracks: list[Row]
    track_directors: list[Row]
    cohorts: list[_Cohort]
    mentors: list[Row]
    admin_ids: list[int]
    director_ids: list[int]

    @property
    def day0(self) -> datetime:
        """Midnight UTC starting `today`: every generated event is before it or a day after."""
        return _ts(self.today)


def _person(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)


def _plan(scale: Scale, rng: random.Random, today: date) -> _World:
    users: list[Row] = []
    uid = count(1)

    def add_user(role: str, domain: str) -> int:
        first, last = _person(rng)
        user_id = next(uid)
        email = f"{first}.{last}.{user_id}@{domain}".lower()
        users.append({"id": user_id, "name": f"{first} {last}", "email": email, "role": role})
        return user_id

    admin_ids = [add_user("admin", "academy.example") for _ in range(scale.admins)]
    director_ids = [add_user("director", "academy.example") for _ in range(scale.directors)]
    first_learner = len(users) + 1
    for _ in range(scale.learners):
        add_user("learner", "learners.example")

    # Programs; the archived ones are spread over the id range.
    step = scale.programs / (scale.archived_programs + 1)
    archived = {round(step * (k + 1)) for k in range(scale.archived_programs)}
    programs: list[Row] = []
    program_currency: dict[int, str] = {}
    for i in range(scale.programs):
        subject = SUBJECTS[i % len(SUBJECTS)]
        region, currency = REGIONS[i % len(REGIONS)]  # 10 × 13 distinct pairs
        lap = i // (len(SUBJECTS) * len(REGIONS))
        name = f"{subject} {region}" + (f" {lap + 1}" if lap else "")
        status = "archived" if i + 1 in archived else "active"
        programs.append({"id": i + 1, "name": name, "status": status})
        program_currency[i + 1] = currency

    # Every program gets one track, the rest are spread at random.
    track_program = [t + 1 if t < scale.programs else 0 for t in range(scale.tracks)]
    for t in range(scale.programs, scale.tracks):
        track_program[t] = rng.randrange(scale.programs) + 1
    tracks: list[Row] = []
    kinds_used: dict[int, int] = {}
    for t, program_id in enumerate(track_program):
        k = kinds_used.get(program_id, 0)
        kinds_used[program_id] = k + 1
        kind = TRACK_KINDS[k % len(TRACK_KINDS)] + (
            f" {k // len(TRACK_KINDS) + 1}" if k >= len(TRACK_KINDS) else ""
        )
        subject = SUBJECTS[(program_id - 1) % len(SUBJECTS)]
        tracks.append({"id": t + 1, "program_id": program_id, "name": f"{subject} {kind}"})

    track_directors = _assign_directors(rng, track_program, director_ids)

    # Cohorts per track, then statuses: archived programs only have closed cohorts,
    # except one lingering running cohort (an archived program with a running cohort).
    per_track = [scale.cohorts // scale.tracks] * scale.tracks
    for t in rng.sample(range(scale.tracks), scale.cohorts % scale.tracks):
        per_track[t] += 1
    cohorts: list[_Cohort] = []
    cycle = 0
    running_seen = 0
    lingering_done = False
    empty_done = False
    for t, program_id in enumerate(track_program):
        n = per_track[t]
        if program_id in archived:
            statuses = ["closed"] * n
            if not lingering_done and n:
                statuses[-1] = "running"
                lingering_done = True
        else:
            statuses = [STATUS_CYCLE[(cycle + k) % len(STATUS_CYCLE)] for k in range(n)]
            cycle += n
        statuses.sort(key=STATUS_ORDER.__getitem__)
        for status in statuses:
            start, end = _cohort_dates(rng, status, today)
            mode = rng.choices(("online", "hybrid", "onsite"), weights=(5, 3, 2))[0]
            archetype = status
            if status == "running":
                archetype = RUNNING_ARCHETYPES[running_seen % len(RUNNING_ARCHETYPES)]
                running_seen += 1
            currency = program_currency[program_id]
            currencies: tuple[str, ...] = (currency,)
            closed_multi = status == "closed" and len(cohorts) % 5 == 0
            if archetype in ("healthy_multi", "pay_critical") or closed_multi:
                currencies = (currency, *sorted(set(BASE_PRICE_CENTS) - {currency}))
            capacity = rng.randint(*scale.capacity)
            cohort_id = len(cohorts) + 1
            cohorts.append(
                _Cohort(
                    id=cohort_id,
                    track_id=t + 1,
                    name=f"{tracks[t]['name']} {start:%b %Y} #{cohort_id}",
                    mode=mode,
                    status=status,
                    start=start,
                    end=end,
                    capacity=capacity,
                    archetype=archetype,
                    currencies=currencies,
                    seed=rng.getrandbits(63),
                    boundary=archetype == "healthy" and running_seen == 1,
                )
            )
            if status == "planned" and not empty_done:
                # One planned cohort with no seats and nobody enrolled yet: every
                # rate over it has a zero denominator.
                cohorts[-1].capacity = 0
                cohorts[-1].archetype = "empty"
                empty_done = True

    _plan_enrollments(rng, cohorts, first_learner, scale.learners, today)

    mentors = []
    for m in range(1, scale.mentors + 1):
        first, last = _person(rng)
        email = f"{first}.{last}.m{m}@mentors.example".lower()
        mentors.append(
            {"id": m, "name": f"{first} {last}", "email": email, "max_learners": rng.randint(4, 12)}
        )
    return _World(
        today=today,
        users=users,
        programs=programs,
        tracks=tracks,
        track_directors=track_directors,
        cohorts=cohorts,
        mentors=mentors,
        admin_ids=admin_ids,
        director_ids=director_ids,
    )


def _assign_directors(
    rng: random.Random, track_program: list[int], director_ids: list[int]
) -> list[Row]:
    """Every track ≥ 1 director, at most 2; every director 2–8 tracks, mostly one program."""
    by_track: list[list[int]] = [[] for _ in track_program]
    by_director: dict[int, list[int]] = {d: [] for d in director_ids}

    def link(t: int, d: int) -> None:
        by_track[t].append(d)
        by_director[d].append(t)

    for t in range(len(track_program)):
        link(t, director_ids[t % len(director_ids)])
    weights = (45, 25, 12, 8, 5, 3, 2)  # tracks per director 2..8, most direct 2-3
    targets = {d: rng.choices(range(2, 9), weights=weights)[0] for d in director_ids}
    for want_of in (lambda d: 2, targets.__getitem__):
        for d in director_ids:
            while len(by_director[d]) < want_of(d):
                free = [t for t, ds in enumerate(by_track) if len(ds) < 2 and d not in ds]
                if not free:
                    break
                home = track_program[by_director[d][0]] if by_director[d] else None
                same = [t for t in free if track_program[t] == home]
                link(rng.choice(same or free), d)
    counts = [len(ts) for ts in by_director.values()]
    if min(counts) < 2 or max(counts) > 8:
        raise ValueError("scale has too few tracks for 2-8 tracks per director")
    return [
        {"track_id": t + 1, "director_id": d} for t, ds in enumerate(by_track) for d in sorted(ds)
    ]


def _cohort_dates(rng: random.Random, status: str, today: date) -> tuple[date, date]:
    days = timedelta(days=1)
    if status == "running":  # started ≥ 2 weeks ago, ends ≥ 2 weeks ahead
        return today - rng.randint(14, 150) * days, today + rng.randint(14, 150) * days
    if status == "closed":  # ended ≥ 1 week ago
        end = today - rng.randint(7, 540) * days
        return end - rng.randint(60, 200) * days, end
    start = today + rng.randint(7, 150) * days  # planned
    return start, start + rng.randint(60, 200) * days


def _enrollment_statuses(c: _Cohort, rng: random.Random) -> list[str]:
    cap = c.capacity
    if c.archetype == "empty":
        return []
    if c.status == "planned":
        seated = round(cap * rng.uniform(0.2, 0.9))
        out = ["active"] * seated + ["withdrawn"] * rng.randint(0, 1)
        return out + ["deferred"] * rng.randint(0, 2)
    if c.status == "closed":
        seated = round(cap * rng.uniform(0.6, 1.05))
        active = rng.randint(0, 1)  # never marked completed
        out = ["completed"] * (seated - active) + ["active"] * active
        return out + ["withdrawn"] * rng.randint(1, 5) + ["deferred"] * rng.randint(0, 3)
    if c.archetype == "low_seats":  # utilization < 0.60 for any capacity > 10
        seated = round(cap * rng.uniform(0.30, 0.55))
    elif c.archetype == "overfilled":
        seated = cap + rng.randint(1, 4)
    elif c.archetype == "mixed":
        seated = round(cap * rng.uniform(0.45, 1.1))
    else:
        seated = round(cap * rng.uniform(0.82, 1.0))
    completed = min(rng.randint(0, 2), seated // 4)  # early finishers
    out = ["active"] * (seated - completed) + ["completed"] * completed
    return out + ["withdrawn"] * rng.randint(0, 3) + ["deferred"] * rng.randint(0, 2)


def _plan_enrollments(
    rng: random.Random, cohorts: list[_Cohort], first_learner: int, learners: int, today: date
) -> None:
    """Fresh learners first; ~8 % re-enroll in another cohort (and all, once the pool is used)."""
    next_fresh = first_learner
    end_fresh = first_learner + learners
    earlier: list[int] = []  # distinct learners of earlier cohorts
    known: set[int] = set()
    eid = count(1)
    yesterday = today - timedelta(days=1)
    for c in cohorts:
        statuses = _enrollment_statuses(c, rng)
        rng.shuffle(statuses)
        here: list[int] = []
        for status in statuses:
            learner: int | None = None
            if earlier and (next_fresh >= end_fresh or rng.random() < 0.08):
                for _ in range(100):  # bounded: a cohort never loops on a tiny pool
                    candidate = rng.choice(earlier)
                    if candidate not in here:
                        learner = candidate
                        break
            if learner is None and next_fresh < end_fresh:
                learner = next_fresh
                next_fresh += 1
            if learner is None:
                continue  # nobody left to enroll
            here.append(learner)
            enrolled_day = min(c.start - timedelta(days=rng.randint(3, 75)), yesterday)
            enrolled_at = _ts(enrolled_day, rng.randint(420, 1380))
            completed_at = None
            if status == "completed":
                if c.status == "closed":
                    day = min(c.end + timedelta(days=rng.randint(0, 6)), yesterday)
                    completed_at = _ts(day, rng.randint(600, 1080))
                else:
                    completed_at = _between(rng, _ts(c.start + timedelta(days=7)), _ts(today))
            seat_type = rng.choices(("paid", "scholarship", "sponsored"), weights=(65, 20, 15))[0]
            currency = c.currencies[0]
            if len(c.currencies) > 1:
                currency = rng.choices(c.currencies, weights=(60, 20, 20))[0]
            c.enrollments.append(
                _Enrollment(
                    id=next(eid),
                    learner_id=learner,
                    seat_type=seat_type,
                    status=status,
                    enrolled_at=enrolled_at,
                    completed_at=completed_at,
                    ability=rng.random(),
                    currency=currency,
                )
            )
        for learner in here:
            if learner not in known:
                known.add(learner)
                earlier.append(learner)


# --- module rows -----------------------------------------------------------------------


def _rows_programs(w: _World) -> Rows:
    for table, rows in (
        (prg.users, w.users),
        (prg.programs, w.programs),
        (prg.tracks, w.tracks),
        (prg.track_directors, w.track_directors),
    ):
        for row in rows:
            yield table, row
    for c in w.cohorts:
        yield (
            prg.cohorts,
            {
                "id": c.id,
                "track_id": c.track_id,
                "name": c.name,
                "mode": c.mode,
                "status": c.status,
                "start_date": c.start,
                "end_date": c.end,
                "seat_capacity": c.capacity,
            },
        )
    for c in w.cohorts:
        for e in c.enrollments:
            yield (
                prg.enrollments,
                {
                    "id": e.id,
                    "cohort_id": c.id,
                    "learner_id": e.learner_id,
                    "seat_type": e.seat_type,
                    "status": e.status,
                    "enrolled_at": e.enrolled_at,
                    "completed_at": e.completed_at,
                },
            )
    ids = count(1)
    for c in w.cohorts:
        for title, due, completed_at in _milestones(c, w.today):
            yield (
                prg.milestones,
                {
                    "id": next(ids),
                    "cohort_id": c.id,
                    "title": title,
                    "due_date": due,
                    "completed_at": completed_at,
                },
            )


def _milestones(c: _Cohort, today: date) -> list[tuple[str, date, datetime | None]]:
    rng = c.rng("milestones")
    n = rng.randint(3, 6)
    span = (c.end - c.start).days
    # Onboarding is due a week in, so every running cohort has a past-due milestone.
    dues = [c.start + timedelta(days=7)]
    dues += [c.start + timedelta(days=round(span * (i + 1) / n)) for i in range(n)]
    titles = ["Onboarding complete", *MILESTONE_TITLES[: n - 1], "Final assessment"]
    past = [i for i, due in enumerate(dues) if due < today]
    left_open: set[int] = set()
    if c.archetype == "overdue" and past:
        left_open = {past[-1]}
        if len(past) > 1 and rng.random() < 0.5:
            left_open.add(past[-2])
    out: list[tuple[str, date, datetime | None]] = []
    for i, (title, due) in enumerate(zip(titles, dues, strict=True)):
        completed_at: datetime | None = None
        if due < today:
            forgotten = (c.archetype == "mixed" and rng.random() < 0.25) or (
                c.status == "closed" and rng.random() < 0.05
            )
            if i not in left_open and not forgotten:
                completed_at = _ts(max(due - timedelta(days=rng.randint(0, 5)), c.start), 900)
        elif c.status == "running" and rng.random() < 0.1:
            completed_at = _ts(today - timedelta(days=rng.randint(1, 5)), 840)  # done early
        out.append((title, due, completed_at))
    if c.boundary:
        # Edges of the upcoming window: due today and today+30 are in, today+31 is out.
        for k, days in enumerate((0, 30, 31)):
            out.append((f"Checkpoint {k + 1}", today + timedelta(days=days), None))
    return out


def _rows_mentorship(w: _World) -> Rows:
    for row in w.mentors:
        yield men.mentors, row
    assignment_ids = count(1)
    session_ids = count(1)
    for c in w.cohorts:
        if not c.enrollments:
            continue
        rng = c.rng("mentorship")
        assignments = _assignments(c, rng, w)
        for mentor_id, learner_id, assigned_at, ended_at in assignments:
            yield (
                men.mentor_assignments,
                {
                    "id": next(assignment_ids),
                    "cohort_id": c.id,
                    "mentor_id": mentor_id,
                    "learner_id": learner_id,
                    "assigned_at": assigned_at,
                    "ended_at": ended_at,
                },
            )
        for mentor_id, learner_id, scheduled_at, status in _sessions(c, rng, assignments, w):
            yield (
                men.mentorship_sessions,
                {
                    "id": next(session_ids),
                    "cohort_id": c.id,
                    "mentor_id": mentor_id,
                    "learner_id": learner_id,
                    "scheduled_at": scheduled_at,
                    "status": status,
                },
            )


def _covered_count(c: _Cohort, rng: random.Random, active: int) -> int:
    """How many active learners get an active assignment; exact bands per archetype."""
    if c.status == "planned":
        return round(active * 0.6)
    if c.archetype == "mentor_critical":  # coverage < 0.50
        return min(round(active * rng.uniform(0.2, 0.42)), (active + 1) // 2 - 1)
    if c.archetype == "mentor_warning":  # 0.50 ≤ coverage < 0.80
        wanted = round(active * rng.uniform(0.58, 0.74))
        return max((active + 1) // 2, min(wanted, (4 * active + 4) // 5 - 1))
    if c.archetype == "mixed":
        return round(active * rng.uniform(0.5, 1.0))
    return active - min(rng.randint(0, 2), active // 5)  # coverage ≥ 0.80


Assignment = tuple[int, int, datetime, datetime | None]


def _assignments(c: _Cohort, rng: random.Random, w: _World) -> list[Assignment]:
    day0 = w.day0
    active = [e for e in c.enrollments if e.status == "active"]
    seated = sum(e.status in SEATED for e in c.enrollments)
    # A handful of mentors per cohort from one shared pool: mentors serve many cohorts.
    k = min(len(w.mentors), max(1, math.ceil(max(seated, 1) / rng.randint(5, 8))))
    chosen = rng.sample(range(1, len(w.mentors) + 1), k)
    covered = {e.id for e in rng.sample(active, _covered_count(c, rng, len(active)))}
    last_day = min(_ts(c.end + timedelta(days=1)), day0)
    out: list[Assignment] = []
    for i, e in enumerate(c.enrollments):
        mentor = chosen[i % k]
        if c.status == "planned":
            if e.id in covered:
                assigned = _ts(w.today - timedelta(days=rng.randint(1, 14)), rng.randint(540, 1020))
                out.append((mentor, e.learner_id, assigned, None))
            continue
        assigned = _ts(c.start - timedelta(days=rng.randint(0, 3)), rng.randint(540, 1020))
        later = assigned + timedelta(days=1)
        if c.status == "closed":
            if e.status in SEATED:
                ended = e.completed_at or _ts(c.end + timedelta(days=1), 600)
                out.append((mentor, e.learner_id, assigned, ended))
            elif rng.random() < 0.5:
                out.append((mentor, e.learner_id, assigned, _between(rng, later, last_day)))
        elif e.status == "active":
            if e.id in covered and rng.random() < 0.1 and k > 1:
                # Mentor change: the first assignment ended when the second began.
                switch = _between(rng, assigned + timedelta(days=7), day0)
                out.append((chosen[(i + 1) % k], e.learner_id, assigned, switch))
                out.append((mentor, e.learner_id, switch, None))
            elif e.id in covered:
                out.append((mentor, e.learner_id, assigned, None))
            elif rng.random() < 0.4:  # mentor left, nobody took over
                out.append((mentor, e.learner_id, assigned, _between(rng, later, day0)))
        elif e.status == "completed":
            out.append((mentor, e.learner_id, assigned, e.completed_at))
        elif rng.random() < (0.6 if e.status == "withdrawn" else 0.3):
            out.append((mentor, e.learner_id, assigned, _between(rng, later, day0)))
    return out


def _completed_quota(c: _Cohort, rng: random.Random, n: int) -> int:
    """Completed among n past non-cancelled sessions; exact bands per archetype."""
    low_band = (7 * n + 9) // 10 - 1  # largest k with k/n < 0.70
    if c.status == "closed":
        return round(n * rng.uniform(0.6, 0.95))
    if c.archetype == "sessions":
        return max(0, min(round(n * rng.uniform(0.35, 0.62)), low_band))
    if c.archetype == "mixed":
        return round(n * rng.uniform(0.55, 0.95))
    return max(round(n * rng.uniform(0.82, 0.97)), low_band + 1)


def _sessions(
    c: _Cohort, rng: random.Random, assignments: list[Assignment], w: _World
) -> list[tuple[int, int, datetime, str]]:
    today = w.today
    sessions: list[list[Any]] = []
    for mentor, learner, assigned_at, ended_at in assignments:
        limit = ended_at.date() - timedelta(days=1) if ended_at else c.end
        day = max(assigned_at.date(), c.start) + timedelta(days=rng.randint(3, 10))
        step = timedelta(days=rng.randint(12, 18))
        future = 0
        while day <= limit:
            if day > today:
                future += 1
                if future > 3:  # only the next few are booked
                    break
            if day != today:  # nothing on `today`: past/future must not hinge on the hour
                sessions.append([mentor, learner, _ts(day, rng.randint(540, 1080)), None])
            day += step
    past = [s for s in sessions if s[2].date() < today]
    for s in past:
        if rng.random() < 0.08:
            s[3] = "cancelled"
    held = [s for s in past if s[3] is None]
    quota = _completed_quota(c, rng, len(held))
    order = list(range(len(held)))
    rng.shuffle(order)
    for rank, idx in enumerate(order):
        if rank < quota:
            held[idx][3] = "completed"
        else:  # a stale "scheduled" in the past is a missed session too
            held[idx][3] = "scheduled" if rng.random() < 0.15 else "no_show"
    for s in sessions:
        if s[3] is None:
            s[3] = "cancelled" if rng.random() < 0.08 else "scheduled"
    return [(m, lrn, at, status) for m, lrn, at, status in sessions]


def _readiness_target(c: _Cohort, e: _Enrollment) -> float:
    a = e.ability
    if e.status not in SEATED:
        return 20 + 50 * a
    if c.status == "closed":
        return 40 + 58 * a
    if c.archetype == "readiness":  # every latest score < 60
        return 12 + 45 * a
    if c.archetype == "mixed":
        return 35 + 60 * a
    return 62 + 37 * a  # every latest score ≥ 60


def _rows_talentscope(w: _World) -> Rows:
    readiness_ids = count(1)
    competency_ids = count(1)
    day0 = w.day0
    for c in w.cohorts:
        if c.status == "planned" or not c.enrollments:
            continue
        rng = c.rng("talentscope")
        lo = _ts(c.start + timedelta(days=7))
        hi = min(_ts(c.end + timedelta(days=1)), day0)
        window = int((hi - lo).total_seconds() // 60)
        competencies = sorted(rng.sample(COMPETENCIES, rng.randint(3, 5)))
        hundred_given = not c.boundary
        for e in c.enrollments:
            seated = e.status in SEATED
            wants_hundred = seated and not hundred_given
            if not wants_hundred and rng.random() < (0.07 if seated else 0.5):
                continue  # never scored
            target = 100.0 if wants_hundred else _readiness_target(c, e)
            hundred_given = hundred_given or wants_hundred
            k = rng.randint(2, 5) if seated else rng.randint(1, 2)
            times = [lo + timedelta(minutes=m) for m in sorted(rng.sample(range(window), k))]
            drift = rng.uniform(5, 25)
            scores = [
                round(_clamp(target - drift * (k - 1 - i) / (k - 1) + rng.gauss(0, 4), 0, 100), 1)
                for i in range(k - 1)
            ]
            scores.append(round(_clamp(target, 0, 100), 1))
            if k >= 2 and rng.random() < 0.12:
                # Two scores at the same instant: the greater id (the last) is latest.
                times[-1] = times[-2]
                if scores[-2] == scores[-1]:
                    scores[-2] = round(scores[-1] - 3 if scores[-1] >= 3 else scores[-1] + 3, 1)
            for score, at in zip(scores, times, strict=True):
                yield (
                    tal.readiness_scores,
                    {
                        "id": next(readiness_ids),
                        "cohort_id": c.id,
                        "learner_id": e.learner_id,
                        "score": score,
                        "computed_at": at,
                    },
                )
            if not seated and rng.random() >= 0.3:
                continue
            for competency in competencies:
                if rng.random() < 0.08:
                    continue
                m = rng.randint(1, 3)
                latest = int(_clamp(round(e.ability * 5 + rng.gauss(0, 0.7)), 0, 5))
                levels = [max(0, latest - rng.randint(0, 2)) for _ in range(m - 1)] + [latest]
                stamps = [lo + timedelta(minutes=x) for x in sorted(rng.sample(range(window), m))]
                if m >= 2 and rng.random() < 0.05:  # a tie here too, decided by id
                    stamps[-1] = stamps[-2]
                    if levels[-2] == latest:
                        levels[-2] = latest - 1 if latest else 1
                for level, assessed_at in zip(levels, stamps, strict=True):
                    yield (
                        tal.competency_scores,
                        {
                            "id": next(competency_ids),
                            "cohort_id": c.id,
                            "learner_id": e.learner_id,
                            "competency": competency,
                            "level": level,
                            "assessed_at": assessed_at,
                        },
                    )


def _rows_missions(w: _World) -> Rows:
    mission_ids = count(1)
    submission_ids = count(1)
    today, day0 = w.today, w.day0
    for c in w.cohorts:
        rng = c.rng("missions")
        n = rng.randint(4, 7)
        span = (c.end - c.start).days
        topics = rng.sample(MISSION_TOPICS, n)
        missions: list[tuple[int, date]] = []
        for i, topic in enumerate(topics):
            mission_id = next(mission_ids)
            due = c.start + timedelta(days=max(7, round(span * (i + 1) / n)))
            missions.append((mission_id, due))
            yield (
                mis.missions,
                {
                    "id": mission_id,
                    "cohort_id": c.id,
                    "title": f"M{i + 1}: {topic}",
                    "due_date": due,
                },
            )
        if c.status == "planned":
            continue
        for mission_id, due in missions:
            opens = max(due - timedelta(days=21), c.start)
            lo, hi = _ts(opens), min(_ts(due + timedelta(days=1)), day0)
            if opens >= today or hi <= lo:
                continue
            for e in c.enrollments:
                seated = e.status in SEATED
                if rng.random() >= (0.92 if seated else 0.3):
                    continue
                started = _between(rng, lo, hi)
                submitted: datetime | None = None
                reviewed: datetime | None = None
                status = "started"
                if rng.random() < (0.55 + 0.4 * e.ability if seated else 0.3):
                    at = started + timedelta(minutes=rng.randint(360, 14_400))
                    if at < day0:
                        submitted, status = at, "submitted"
                        review = at + timedelta(minutes=rng.randint(60, 5_760))
                        if rng.random() < 0.9 and review < day0:
                            reviewed = review
                            approved = rng.random() < 0.45 + 0.5 * e.ability
                            status = "approved" if approved else "rejected"
                yield (
                    mis.mission_submissions,
                    {
                        "id": next(submission_ids),
                        "mission_id": mission_id,
                        "learner_id": e.learner_id,
                        "status": status,
                        "started_at": started,
                        "submitted_at": submitted,
                        "reviewed_at": reviewed,
                    },
                )


def _rows_portfolio(w: _World) -> Rows:
    ids = count(1)
    for c in w.cohorts:
        if c.status == "planned" or not c.enrollments:
            continue
        rng = c.rng("portfolio")
        lo, hi = _ts(c.start), min(_ts(c.end + timedelta(days=15)), w.day0)
        weights = (15, 20, 65) if c.status == "closed" else (40, 30, 30)
        for e in c.enrollments:
            if e.status in SEATED:
                n = rng.randint(1, 3) if c.status == "closed" else rng.randint(0, 2)
                statuses = rng.choices(("draft", "submitted", "published"), weights=weights, k=n)
            else:
                statuses = ["draft"] if rng.random() < 0.3 else []
            for status in statuses:
                quality: float | None = None
                scored = {"published": 0.88, "submitted": 0.5}.get(status, 0.0)
                if rng.random() < scored:
                    quality = round(_clamp(40 + 55 * e.ability + rng.gauss(0, 5), 0, 100), 1)
                yield (
                    por.portfolio_items,
                    {
                        "id": next(ids),
                        "cohort_id": c.id,
                        "learner_id": e.learner_id,
                        "status": status,
                        "quality_score": quality,
                        "updated_at": _between(rng, lo, hi),
                    },
                )


@dataclass(slots=True)
class _Payment:
    enrollment: _Enrollment
    amount: int
    currency: str
    status: str
    due: date
    paid_at: datetime | None = None


def _rows_billing(w: _World) -> Rows:
    payment_ids = count(1)
    refund_ids = count(1)
    day0 = w.day0
    for c in w.cohorts:
        if not c.enrollments:
            continue
        rng = c.rng("billing")
        payments = _payments(c, rng, w)
        for p in payments:
            payment_id = next(payment_ids)
            yield (
                bil.payments,
                {
                    "id": payment_id,
                    "enrollment_id": p.enrollment.id,
                    "cohort_id": c.id,
                    "learner_id": p.enrollment.learner_id,
                    "amount_cents": p.amount,
                    "currency": p.currency,
                    "status": p.status,
                    "due_date": p.due,
                    "paid_at": p.paid_at,
                },
            )
            if p.status != "refunded" or p.paid_at is None:
                continue
            first_at = _later(rng, p.paid_at, timedelta(days=2), day0)
            shape = rng.random()
            if shape < 0.15:  # partial refund: half, rounded to whole units
                parts = [p.amount // 200 * 100]
            elif shape < 0.25:  # refunded in two instalments
                third = p.amount // 300 * 100
                parts = [third, p.amount - third]
            else:
                parts = [p.amount]
            for j, part in enumerate(parts):
                at = first_at if j == 0 else _later(rng, first_at, timedelta(days=1), day0)
                reason = "withdrawal" if p.enrollment.status == "withdrawn" else "goodwill"
                yield (
                    bil.refunds,
                    {
                        "id": next(refund_ids),
                        "payment_id": payment_id,
                        "amount_cents": part,
                        "refunded_at": at,
                        "reason": reason,
                    },
                )


def _payments(c: _Cohort, rng: random.Random, w: _World) -> list[_Payment]:
    today, day0 = w.today, w.day0
    factor = MODE_PRICE_FACTOR[c.mode] * rng.choice((0.9, 1.0, 1.1))
    out: list[_Payment] = []
    for e in c.enrollments:
        price = round(BASE_PRICE_CENTS[e.currency] * factor / 100) * 100
        first_due = c.start - timedelta(days=14)
        if e.seat_type == "paid" and rng.random() < 0.4:  # three instalments
            third = price // 300 * 100
            plan = [(third, first_due), (third, c.start + timedelta(days=30))]
            plan.append((price - 2 * third, c.start + timedelta(days=60)))
        elif e.seat_type in ("paid", "sponsored"):
            plan = [(price, first_due)]
        elif rng.random() < 0.3:  # scholarship deposit
            plan = [(rng.choice((2_500, 5_000, 10_000)), first_due)]
        else:
            plan = []
        for amount, due in plan:
            p = _Payment(e, amount, e.currency, "pending", due)
            if due >= today:
                if rng.random() < 0.2:
                    p.status = "paid"  # paid early
            else:
                weights = (88, 6, 3, 3)  # paid, pending (overdue), failed, refunded
                if e.status == "withdrawn":
                    weights = (30, 10, 10, 50)
                elif e.status == "deferred":
                    weights = (55, 10, 5, 30)
                p.status = rng.choices(("paid", "pending", "failed", "refunded"), weights)[0]
            if p.status in ("paid", "refunded"):
                hi = min(_ts(p.due + timedelta(days=5)), day0)
                lo = max(e.enrolled_at, _ts(p.due - timedelta(days=10)))
                if lo >= hi:  # paid early (or enrolled late): any time since enrolling
                    lo, hi = e.enrolled_at, day0
                p.paid_at = _between(rng, lo, hi)
            out.append(p)
    if c.status == "running" and c.archetype != "mixed":
        for p in out:
            if p.status == "failed":
                p.status = "pending"
        past_due = [p for p in out if p.due < today]
        if c.archetype == "pay_critical":
            _fail_until(rng, past_due, out, ratio=0.15)
        elif c.archetype == "pay_warning":
            _fail_one_small(past_due, out)
    return out


def _billed(payments: list[_Payment]) -> dict[str, int]:
    billed: dict[str, int] = {}
    for p in payments:
        billed[p.currency] = billed.get(p.currency, 0) + p.amount
    return billed


def _fail_until(
    rng: random.Random, past_due: list[_Payment], payments: list[_Payment], ratio: float
) -> None:
    """Fail past-due payments of the most-billed currency until failed/billed > `ratio`."""
    if not past_due:
        return
    billed = _billed(payments)  # the alert divides by everything billed, due or not
    currency = max(sorted({p.currency for p in past_due}), key=billed.__getitem__)
    candidates = [p for p in past_due if p.currency == currency]
    rng.shuffle(candidates)
    failed = 0
    for p in candidates:
        if failed > ratio * billed[currency]:
            break
        p.status, p.paid_at = "failed", None
        failed += p.amount


def _fail_one_small(past_due: list[_Payment], payments: list[_Payment]) -> None:
    """One failed payment, small enough to stay ≤ 10 % of its currency's billing."""
    billed = _billed(payments)
    if not past_due:
        return
    smallest = min(past_due, key=lambda p: (p.amount / billed[p.currency], p.enrollment.id))
    if smallest.amount <= 0.10 * billed[smallest.currency]:
        smallest.status, smallest.paid_at = "failed", None


GENERATORS: dict[str, Callable[[_World], Rows]] = {
    "programs": _rows_programs,
    "mentorship": _rows_mentorship,
    "talentscope": _rows_talentscope,
    "missions": _rows_missions,
    "portfolio": _rows_portfolio,
    "billing": _rows_billing,
}


# --- writing ---------------------------------------------------------------------------


def _engines(urls: Mapping[str, str], *, fast_sqlite: bool) -> dict[str, AsyncEngine]:
    """One engine per distinct URL (modules sharing a database share its engine)."""
    by_url: dict[str, AsyncEngine] = {}
    out: dict[str, AsyncEngine] = {}
    for module in MODULES:
        url = urls[module]
        if url not in by_url:
            engine = make_engine(url)
            if fast_sqlite and engine.dialect.name == "sqlite":
                event.listen(engine.sync_engine, "connect", _sqlite_bulk_pragmas)
            by_url[url] = engine
        out[module] = by_url[url]
    return out


def _sqlite_bulk_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Seeding is a rebuildable bulk load: durability per commit buys nothing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


class _Writer:
    """Buffers rows per table; flushes every table of the module, parents first."""

    def __init__(self, conn: AsyncConnection, metadata: MetaData, bar: tqdm[Any]) -> None:
        self.conn = conn
        self.order = list(metadata.sorted_tables)
        self.buffers: dict[Table, list[Row]] = {t: [] for t in self.order}
        self.counts: dict[str, int] = {t.name: 0 for t in self.order}
        self.bar = bar

    async def add(self, table: Table, row: Row) -> None:
        buffer = self.buffers[table]
        buffer.append(row)
        if len(buffer) >= CHUNK_ROWS:
            await self.flush()

    async def flush(self) -> None:
        async with self.conn.begin():
            for table in self.order:
                rows = self.buffers[table]
                if rows:
                    await self.conn.execute(table.insert(), rows)
                    self.counts[table.name] += len(rows)
                    self.bar.update(len(rows))
                    self.buffers[table] = []


async def seed(
    urls: Mapping[str, str],
    *,
    scale: str = "demo",
    seed: int = 7,
    today: date | None = None,
    progress: bool = False,
    reset: bool = True,
) -> SeedReport:
    """Create the upstream tables (dropping them first when `reset`) and fill them.

    Without `reset` the tables must be empty: ids are explicit and start at 1.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    started = _time.perf_counter()
    today = today or datetime.now(UTC).date()
    world = _plan(SCALES[scale], random.Random(seed), today)
    engines = _engines(urls, fast_sqlite=True)
    rows_by_table: dict[str, int] = {}
    try:
        with tqdm(
            unit=" rows", unit_scale=True, file=sys.stderr, disable=not progress, desc="seed"
        ) as bar:
            for module in MODULES:
                metadata, engine = METADATA[module], engines[module]
                bar.set_description(f"seed {module}")
                async with engine.begin() as conn:
                    if reset:
                        await conn.run_sync(metadata.drop_all)
                    await conn.run_sync(metadata.create_all)
                async with engine.connect() as conn:
                    writer = _Writer(conn, metadata, bar)
                    for table, row in GENERATORS[module](world):
                        await writer.add(table, row)
                    await writer.flush()
                rows_by_table.update(writer.counts)
    finally:
        for engine in set(engines.values()):
            await engine.dispose()
    digest = await checksum(urls)
    return SeedReport(
        scale=scale,
        seed=seed,
        today=today,
        rows_by_table=rows_by_table,
        seconds=round(_time.perf_counter() - started, 3),
        admin_id=world.admin_ids[0],
        director_ids=sorted(world.director_ids),
        checksum=digest,
    )


# --- checksum --------------------------------------------------------------------------


def _formatter(column_type: Any) -> Callable[[Any], Any]:
    """Canonical JSON-able form of one column's values, equal on SQLite and PostgreSQL."""
    if isinstance(column_type, UTCDateTime):
        return lambda v: v.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(column_type, Date):
        return lambda v: v.isoformat()
    if isinstance(column_type, Float):
        return lambda v: repr(round(float(v), 6))
    if isinstance(column_type, Integer):
        return int
    return str


async def checksum(urls: Mapping[str, str]) -> str:
    """sha256 over every upstream table, read back in primary-key order."""
    digest = hashlib.sha256()
    engines = _engines(urls, fast_sqlite=False)
    try:
        for module in MODULES:
            for table in sorted(METADATA[module].tables.values(), key=lambda t: t.name):
                digest.update(f"# {module}.{table.name}\n".encode())
                formats = [_formatter(col.type) for col in table.columns]
                query = select(table).order_by(*table.primary_key.columns)
                async with engines[module].connect() as conn:
                    result = await conn.stream(query)
                    async for rows in result.partitions(CHUNK_ROWS):
                        lines = [
                            json.dumps(
                                [
                                    None if v is None else f(v)
                                    for f, v in zip(formats, row, strict=True)
                                ]
                            )
                            for row in rows
                        ]
                        digest.update(("\n".join(lines) + "\n").encode())
    finally:
        for engine in set(engines.values()):
            await engine.dispose()
    return digest.hexdigest()
