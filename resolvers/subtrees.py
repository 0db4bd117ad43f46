"""Subtree builders: loader rows → cached, JSON-native subtrees. Used by resolvers and workers."""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from loaders import billing, mentorship, missions, portfolio, programs, talentscope
from loaders.engines import UpstreamUnavailable
from loaders.registry import Loaders
from resolvers import figures
from resolvers.caller import Caller
from resolvers.figures import Thresholds


async def settled(*reads: Awaitable[Any]) -> list[Any]:
    """Like asyncio.gather, but a failure is raised only once every sibling read has
    ended: a refused request leaves no read of its own running behind it (to hold a
    connection, or to outlive the engines at shutdown). Any failure that is not an
    unreachable module is raised ahead of one that is, whichever came first."""
    outcomes = await asyncio.gather(*reads, return_exceptions=True)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures:  # an unreachable module is the milder failure: report any other first
        raise next((f for f in failures if not isinstance(f, UpstreamUnavailable)), failures[0])
    return outcomes


async def scope_cohort_ids(loaders: Loaders, caller: Caller) -> list[int]:
    """Cohort ids a caller may see, ascending: every cohort for an admin, else their tracks'."""
    if caller.is_admin:
        return await programs.all_cohort_ids(loaders.upstream)
    track_rows = await loaders.track_ids_by_director_id.load(caller.user_id)
    per_track = await loaders.cohorts_by_track_id.load_many([r.track_id for r in track_rows])
    return sorted({c.id for rows in per_track for c in rows})


async def cohort_director_ids(loaders: Loaders, cohort_ids: list[int]) -> list[int]:
    """Directors whose scope holds any of these cohorts."""
    cohort_rows = [c for c in await loaders.cohort_by_id.load_many(cohort_ids) if c is not None]
    per_track = await loaders.director_ids_by_track_id.load_many(
        sorted({c.track_id for c in cohort_rows})
    )
    return sorted({r.director_id for rows in per_track for r in rows})


async def build_cohorts(
    loaders: Loaders, cohort_ids: list[int], now: datetime, thresholds: Thresholds
) -> dict[int, dict[str, Any]]:
    """Subtrees of the given cohorts that exist, all computed as of `now`.

    One statement per table for the whole batch, whatever the number of cohorts.
    """
    cohort_rows = [c for c in await loaders.cohort_by_id.load_many(cohort_ids) if c is not None]
    ids = [c.id for c in cohort_rows]
    if not ids:
        return {}
    track_rows = await loaders.track_by_id.load_many(sorted({c.track_id for c in cohort_rows}))
    tracks_by_id = {t.id: t for t in track_rows if t is not None}
    # Programs-module rows are the cohort itself: without them there is no subtree.
    # Any other module may fail alone; its sections are then left None and named in
    # "unavailable", for the caller to fill from the last cached subtree.
    # The per-cohort rows of a whole batch are known up front: loaded with load_all (the
    # same statements as load_many, without a future per key), the largest tables
    # counted or summed by the database (rows per cohort in the tens, not hundreds).
    upstream = loaders.upstream
    today = now.astimezone(UTC).date()  # docs/metrics.md: today is the UTC date of now
    program_rows, enrollments, milestones = await settled(
        loaders.program_by_id.load_many(sorted({t.program_id for t in tracks_by_id.values()})),
        loaders.enrollments_by_cohort_id.load_all(ids),
        loaders.milestones_by_cohort_id.load_all(ids),
    )
    sections = await asyncio.gather(
        _mentorship_rows(loaders, ids, now),
        loaders.latest_readiness_scores_by_cohort_id.load_all(ids),
        talentscope.level_learners_by_cohort_id(upstream, ids),
        settled(
            loaders.missions_by_cohort_id.load_all(ids),
            missions.submission_counts_by_cohort_id(upstream, ids),
        ),
        portfolio.portfolio_rows_by_cohort_id(upstream, ids),
        settled(
            billing.payment_totals_by_cohort_id(upstream, ids, today),
            billing.refund_totals_by_cohort_id(upstream, ids),
        ),
        return_exceptions=True,
    )
    for outcome in sections:
        if isinstance(outcome, BaseException) and not isinstance(outcome, UpstreamUnavailable):
            raise outcome
    mentorship_rows, readiness, competencies, mission_rows, portfolio_items, billing_rows = sections
    programs_by_id = {p.id: p for p in program_rows if p is not None}

    computed_at = figures.iso_instant(now)
    out: dict[int, dict[str, Any]] = {}
    for i, c in enumerate(cohort_rows):
        track = tracks_by_id[c.track_id]
        rows = enrollments[i]
        parts = {
            "mentorship": _at(mentorship_rows, lambda m, i=i: (m[0][i], m[1][i], m[2])),
            "readiness": _at(readiness, lambda r, i=i: r[i]),
            "competencies": _at(competencies, lambda r, i=i: r[i]),
            "mission_funnel": _at(mission_rows, lambda m, i=i: (m[0][i], m[1][i])),
            "portfolio": _at(portfolio_items, lambda p, i=i: p[i]),
            "payments": _at(billing_rows, lambda b, i=i: (b[0][i], b[1][i])),
        }
        subtree: dict[str, Any] = {
            "id": c.id,
            "name": c.name,
            "mode": c.mode,
            "status": c.status,
            "start_date": c.start_date.isoformat(),
            "end_date": c.end_date.isoformat(),
            "track": {"id": track.id, "name": track.name},
            "program": _program(programs_by_id[track.program_id]),
            "seats": figures.seats(c.seat_capacity, rows),
            "enrollment": figures.enrollment(rows),
            "milestones": figures.milestones(
                milestones[i], today, thresholds.milestone_horizon_days
            ),
            "computed_at": computed_at,
        }
        unavailable: dict[str, str] = {}
        seated = figures.seated_learners(rows)  # once per cohort, for three sections
        for name, part in parts.items():
            if isinstance(part, UpstreamUnavailable):
                unavailable[name] = part.module
                subtree[name] = None
            else:
                subtree[name] = SECTION_BUILDERS[name](rows, part, seated, today, thresholds)
        if unavailable:
            subtree["unavailable"] = unavailable
        else:
            finish_cohort(subtree, thresholds)
        out[c.id] = subtree
    return out


def _at(outcome: Any, pick: Any) -> Any:
    return outcome if isinstance(outcome, UpstreamUnavailable) else pick(outcome)


def _program(row: Any) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "status": row.status}


# Section → figure of (enrollment rows, that section's rows, the seated learners, today,
# thresholds).
SECTION_BUILDERS: dict[str, Any] = {
    "mentorship": lambda e, p, seated, today, t: figures.mentorship(e, p[0], p[1], p[2]),
    "readiness": lambda e, p, seated, today, t: figures.readiness(e, p, t.ready_score, seated),
    "competencies": lambda e, p, seated, today, t: figures.competency_heatmap(e, p, seated),
    "mission_funnel": lambda e, p, seated, today, t: figures.mission_funnel(p[0], p[1]),
    "portfolio": lambda e, p, seated, today, t: figures.portfolio(e, p, seated),
    "payments": lambda e, p, seated, today, t: figures.payments(p[0], p[1]),
}


def finish_cohort(subtree: dict[str, Any], thresholds: Thresholds) -> None:
    """Alerts and flags, from the subtree's sections (after any were filled from cache)."""
    subtree["alerts"] = figures.cohort_alerts(subtree, thresholds)
    subtree["flags"] = [a["code"] for a in subtree["alerts"]]


async def _mentorship_rows(
    loaders: Loaders, ids: list[int], now: datetime
) -> tuple[Any, Any, dict[int, Any]]:
    assignments, sessions = await settled(
        loaders.active_mentor_assignments_by_cohort_id.load_all(ids),
        mentorship.session_counts_by_cohort_id(loaders.upstream, ids, now),
    )
    mentor_ids = sorted({a.mentor_id for rows in assignments for a in rows})
    mentors = await loaders.mentor_by_id.load_many(mentor_ids)
    return assignments, sessions, {m.id: m for m in mentors if m is not None}


# summary.alerts: how many an answer lists by default, and at most (all are counted).
DEFAULT_SUMMARY_ALERTS = 50
MAX_SUMMARY_ALERTS = 100


def build_summary(cohorts: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """A summary keeps the alerts an answer may list: its size does not grow with scope."""
    summary = figures.director_summary(cohorts, figures.iso_instant(now))
    del summary["alerts"][MAX_SUMMARY_ALERTS:]
    return summary


class LiveSource:
    """Computes every subtree from the upstream modules; one instance per request or job.

    All subtrees of one instance are computed as of the same instant.
    """

    def __init__(
        self, loaders: Loaders | Callable[[], Loaders], now: datetime, thresholds: Thresholds
    ) -> None:
        """`loaders`, or how to make them when first needed (a request answered from the
        cache needs none)."""
        self._loaders = loaders
        self.now = now
        self.thresholds = thresholds
        self._scopes: dict[Caller, asyncio.Task[list[int]]] = {}
        self._cohorts: dict[int, dict[str, Any]] = {}

    @property
    def loaders(self) -> Loaders:
        if not isinstance(self._loaders, Loaders):
            self._loaders = self._loaders()
        return self._loaders

    async def scope(self, caller: Caller) -> list[int]:
        # Sibling fields resolve concurrently: share one look-up per caller.
        if caller not in self._scopes:
            self._scopes[caller] = asyncio.ensure_future(scope_cohort_ids(self.loaders, caller))
        # Shielded: one sibling cancelled (a failing non-null field) must not cancel it.
        return await asyncio.shield(self._scopes[caller])

    async def cohorts(self, cohort_ids: list[int]) -> dict[int, dict[str, Any]]:
        missing = [i for i in cohort_ids if i not in self._cohorts]
        if missing:
            self._cohorts.update(
                await build_cohorts(self.loaders, missing, self.now, self.thresholds)
            )
        return {i: self._cohorts[i] for i in cohort_ids if i in self._cohorts}

    async def summary(self, caller: Caller) -> dict[str, Any]:
        cohorts = await self.cohorts(await self.scope(caller))
        return build_summary(list(cohorts.values()), self.now)

    async def list_index(self, caller: Caller) -> dict[str, Any] | None:
        return None  # computed live, every subtree of the scope is at hand anyway

    async def user(self, user_id: int) -> Any:
        return await self.loaders.user_by_id.load(user_id)

    async def identity(self, user_id: int) -> Any:
        """The caller's row, read now: the authority on who is asking."""
        return await self.loaders.user_by_id.load(user_id)

    async def director_ids(self, after: int, limit: int) -> list[int]:
        return await programs.director_ids(self.loaders.upstream, after=after, limit=limit)
