"""The plan of a dataset: users, catalogue, cohorts and enrollments, before any row."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import count

from loaders.demo.scale import (
    BASE_PRICE_CENTS,
    FIRST_NAMES,
    LAST_NAMES,
    REGIONS,
    RUNNING_ARCHETYPES,
    STATUS_CYCLE,
    STATUS_ORDER,
    SUBJECTS,
    TRACK_KINDS,
    Row,
    Scale,
)

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
