"""Rows of the programs, mentorship, talentscope, missions and portfolio modules."""

from __future__ import annotations

import math
import random
from datetime import date, datetime, timedelta
from itertools import count
from typing import Any

from loaders import mentorship as men
from loaders import missions as mis
from loaders import portfolio as por
from loaders import programs as prg
from loaders import talentscope as tal
from loaders.demo.plan import (
    _between,
    _clamp,
    _Cohort,
    _Enrollment,
    _ts,
    _World,
)
from loaders.demo.scale import (
    COMPETENCIES,
    MILESTONE_TITLES,
    MISSION_TOPICS,
    SEATED,
    Rows,
)

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
