"""The figures of docs/metrics.md computed straight from upstream rows, as the page reads,
for tests/resolvers/test_figures_property.py. It shares no code with resolvers/figures/:
rows are the generated dicts (instants as aware datetimes), answers are shaped as the
GraphQL response (camelCase), and every choice is the page's, not the gateway's."""

from datetime import date, datetime, timedelta
from statistics import median
from typing import Any

from loaders import billing, mentorship, missions, portfolio, programs, talentscope

READY = 70.0
HORIZON = timedelta(days=30)
BUCKETS = [(0.0, 20.0), (20.0, 40.0), (40.0, 60.0), (60.0, 80.0), (80.0, 100.0)]


def ratio(a: float, b: float) -> float | None:
    return None if b == 0 else a / b


def average(values: list[float]) -> float | None:
    return None if not values else sum(values) / len(values)


def latest(rows: list[dict[str, Any]], at: str) -> dict[str, Any]:
    """Greatest instant, then greatest id."""
    return max(rows, key=lambda r: (r[at], r["id"]))


class Reference:
    def __init__(self, rows: dict[Any, list[dict[str, Any]]], now: datetime) -> None:
        self.rows = rows
        self.now = now
        self.today: date = now.date()  # `now` is aware UTC: its date is the UTC date

    def of(self, table: Any, **match: Any) -> list[dict[str, Any]]:
        return [r for r in self.rows.get(table, []) if all(r[k] == v for k, v in match.items())]

    # --- scope ------------------------------------------------------------------------

    def scope(self, user_id: int) -> list[int]:
        [user] = self.of(programs.users, id=user_id)
        cohorts = self.rows[programs.cohorts]
        if user["role"] == "admin":
            return sorted(c["id"] for c in cohorts)
        tracks = {r["track_id"] for r in self.of(programs.track_directors, director_id=user_id)}
        return sorted(c["id"] for c in cohorts if c["track_id"] in tracks)

    # --- one cohort -------------------------------------------------------------------

    def cohort(self, cohort_id: int) -> dict[str, Any]:
        [c] = self.of(programs.cohorts, id=cohort_id)
        enrolled = self.of(programs.enrollments, cohort_id=cohort_id)
        seated = {e["learner_id"] for e in enrolled if e["status"] in ("active", "completed")}
        active = {e["learner_id"] for e in enrolled if e["status"] == "active"}
        out: dict[str, Any] = {"id": cohort_id, "status": c["status"].upper()}
        out["seats"] = self.seats(c["seat_capacity"], enrolled)
        out["enrollment"] = self.enrollment(enrolled)
        out["mentorship"] = self.mentorship(cohort_id, active)
        out["readiness"] = self.readiness(cohort_id, seated)
        out["competencies"] = self.competencies(cohort_id, seated)
        out["missionFunnel"] = self.funnel(cohort_id)
        out["portfolio"] = self.portfolio(cohort_id, seated)
        out["payments"] = self.payments(cohort_id)
        out["milestones"] = self.milestones(cohort_id)
        out["alerts"] = self.alerts(out) if c["status"] == "running" else []
        out["flags"] = [a["code"] for a in out["alerts"]]
        return out

    def seats(self, capacity: int, enrolled: list[dict[str, Any]]) -> dict[str, Any]:
        seated = [e for e in enrolled if e["status"] in ("active", "completed")]
        kinds = {
            k: sum(1 for e in seated if e["seat_type"] == k)
            for k in ("paid", "scholarship", "sponsored")
        }
        return {
            "total": capacity,
            "used": len(seated),
            "available": max(capacity - len(seated), 0),
            **kinds,
            "utilization": ratio(len(seated), capacity),
        }

    def enrollment(self, enrolled: list[dict[str, Any]]) -> dict[str, Any]:
        count = {
            s: sum(1 for e in enrolled if e["status"] == s)
            for s in ("active", "completed", "withdrawn", "deferred")
        }
        by_type = {
            k: sum(1 for e in enrolled if e["seat_type"] == k)
            for k in ("paid", "scholarship", "sponsored")
        }
        return {
            "enrolled": len(enrolled),
            **count,
            "bySeatType": by_type,
            "completionRate": ratio(count["completed"], len(enrolled) - count["withdrawn"]),
        }

    def mentorship(self, cohort_id: int, active: set[int]) -> dict[str, Any]:
        live = [
            a
            for a in self.of(mentorship.mentor_assignments, cohort_id=cohort_id)
            if a["ended_at"] is None
        ]
        mentor_ids = sorted({a["mentor_id"] for a in live})
        covered = active & {a["learner_id"] for a in live}
        sessions = self.of(mentorship.mentorship_sessions, cohort_id=cohort_id)
        past = [s for s in sessions if s["scheduled_at"] <= self.now and s["status"] != "cancelled"]
        completed_past = [s for s in past if s["status"] == "completed"]
        mentors = []
        for m in mentor_ids:
            row = self.of(mentorship.mentors, id=m)
            mentors.append(
                {
                    "id": m,
                    "name": row[0]["name"] if row else None,
                    "maxLearners": row[0]["max_learners"] if row else None,
                    "activeLearners": len({a["learner_id"] for a in live if a["mentor_id"] == m}),
                    "completedSessions": sum(
                        1 for s in sessions if s["mentor_id"] == m and s["status"] == "completed"
                    ),
                    "noShowSessions": sum(
                        1 for s in sessions if s["mentor_id"] == m and s["status"] == "no_show"
                    ),
                }
            )
        return {
            "mentorCount": len(mentor_ids),
            "activeLearners": len(active),
            "coveredLearners": len(covered),
            "mentorCoverage": ratio(len(covered), len(active)),
            "learnersPerMentor": ratio(len(active), len(mentor_ids)),
            "pastSessions": len(past),
            "completedPastSessions": len(completed_past),
            "sessionCompletionRate": ratio(len(completed_past), len(past)),
            "upcomingSessions": sum(
                1 for s in sessions if s["status"] == "scheduled" and s["scheduled_at"] > self.now
            ),
            "mentors": mentors,
        }

    def latest_scores(self, cohort_id: int, seated: set[int]) -> list[float]:
        rows = self.of(talentscope.readiness_scores, cohort_id=cohort_id)
        return [
            latest([r for r in rows if r["learner_id"] == learner], "computed_at")["score"]
            for learner in sorted(seated)
            if any(r["learner_id"] == learner for r in rows)
        ]

    def readiness(self, cohort_id: int, seated: set[int]) -> dict[str, Any]:
        scores = self.latest_scores(cohort_id, seated)
        distribution = []
        for i, (lower, upper) in enumerate(BUCKETS):
            last = i == len(BUCKETS) - 1
            inside = [s for s in scores if lower <= s < upper or (last and s == upper)]
            distribution.append({"lower": lower, "upper": upper, "count": len(inside)})
        return {
            "average": average(scores),
            "scoredLearners": len(scores),
            "ready": sum(1 for s in scores if s >= READY),
            "distribution": distribution,
        }

    def competencies(self, cohort_id: int, seated: set[int]) -> list[dict[str, Any]]:
        rows = [
            r
            for r in self.of(talentscope.competency_scores, cohort_id=cohort_id)
            if r["learner_id"] in seated
        ]
        out = []
        for name in sorted({r["competency"] for r in rows}):
            levels = [
                latest(
                    [r for r in rows if r["competency"] == name and r["learner_id"] == learner],
                    "assessed_at",
                )["level"]
                for learner in sorted({r["learner_id"] for r in rows if r["competency"] == name})
            ]
            out.append(
                {
                    "competency": name,
                    "learners": len(levels),
                    "levels": [levels.count(level) for level in range(6)],
                    "averageLevel": sum(levels) / len(levels),
                }
            )
        return out

    def funnel_of(self, submissions: list[dict[str, Any]]) -> dict[str, Any]:
        approved = sum(1 for s in submissions if s["status"] == "approved")
        rejected = sum(1 for s in submissions if s["status"] == "rejected")
        hours = [
            (s["reviewed_at"] - s["submitted_at"]).total_seconds() / 3600
            for s in submissions
            if s["status"] in ("approved", "rejected") and s["submitted_at"] and s["reviewed_at"]
        ]
        return {
            "started": len(submissions),
            "submitted": sum(
                1 for s in submissions if s["status"] in ("submitted", "approved", "rejected")
            ),
            "approved": approved,
            "rejected": rejected,
            "approvalRate": ratio(approved, approved + rejected),
            "medianReviewHours": median(hours) if hours else None,
        }

    def funnel(self, cohort_id: int) -> dict[str, Any]:
        mission_rows = sorted(
            self.of(missions.missions, cohort_id=cohort_id), key=lambda m: m["id"]
        )
        subs = {
            m["id"]: self.of(missions.mission_submissions, mission_id=m["id"]) for m in mission_rows
        }
        out = self.funnel_of([s for found in subs.values() for s in found])
        out["missions"] = [
            {
                "missionId": m["id"],
                "title": m["title"],
                "dueDate": m["due_date"].isoformat(),
                **self.funnel_of(subs[m["id"]]),
            }
            for m in mission_rows
        ]
        return out

    def portfolio(self, cohort_id: int, seated: set[int]) -> dict[str, Any]:
        items = self.of(portfolio.portfolio_items, cohort_id=cohort_id)
        published = [i for i in items if i["status"] == "published"]
        publishers = {i["learner_id"] for i in published} & seated
        return {
            **{
                s: sum(1 for i in items if i["status"] == s)
                for s in ("draft", "submitted", "published")
            },
            "learnersWithPublished": len(publishers),
            "publishedRate": ratio(len(publishers), len(seated)),
            "averageQuality": average(
                [i["quality_score"] for i in published if i["quality_score"] is not None]
            ),
        }

    def payments(self, cohort_id: int) -> list[dict[str, Any]]:
        paid = self.of(billing.payments, cohort_id=cohort_id)
        out = []
        for currency in sorted({p["currency"] for p in paid}):
            mine = [p for p in paid if p["currency"] == currency]
            refunds = [r for p in mine for r in self.of(billing.refunds, payment_id=p["id"])]

            def cents(status: str, rows: list[dict[str, Any]] = mine) -> int:
                return sum(p["amount_cents"] for p in rows if p["status"] == status)

            billed = sum(p["amount_cents"] for p in mine)
            out.append(
                {
                    "currency": currency,
                    "billedCents": billed,
                    "paidCents": cents("paid"),
                    "pendingCents": cents("pending"),
                    "failedCents": cents("failed"),
                    "overdueCents": cents(
                        "pending", [p for p in mine if p["due_date"] < self.today]
                    ),
                    "refundedCents": sum(r["amount_cents"] for r in refunds),
                    "refundCount": len(refunds),
                    "failedCount": sum(1 for p in mine if p["status"] == "failed"),
                    "collectionRate": ratio(cents("paid"), billed),
                }
            )
        return out

    def milestones(self, cohort_id: int) -> dict[str, Any]:
        open_ = sorted(
            (
                m
                for m in self.of(programs.milestones, cohort_id=cohort_id)
                if m["completed_at"] is None
            ),
            key=lambda m: (m["due_date"], m["id"]),
        )

        def view(m: dict[str, Any]) -> dict[str, Any]:
            return {"id": m["id"], "title": m["title"], "dueDate": m["due_date"].isoformat()}

        return {
            "upcoming": [
                view(m) for m in open_ if self.today <= m["due_date"] <= self.today + HORIZON
            ],
            "overdue": [view(m) for m in open_ if m["due_date"] < self.today],
        }

    def alerts(self, c: dict[str, Any]) -> list[dict[str, Any]]:
        """The table of docs/metrics.md, in its order (value, threshold: as it says)."""
        out = []

        def fire(code: str, severity: str, value: float, threshold: float) -> None:
            out.append(
                {
                    "code": code,
                    "severity": severity,
                    "cohortId": c["id"],
                    "value": value,
                    "threshold": threshold,
                }
            )

        utilization = c["seats"]["utilization"]
        if utilization is not None and utilization < 0.60:
            fire("LOW_SEAT_UTILIZATION", "WARNING", utilization, 0.60)
        coverage = c["mentorship"]["mentorCoverage"]
        if coverage is not None and coverage < 0.80:
            critical = coverage < 0.50
            fire(
                "LOW_MENTOR_COVERAGE",
                "CRITICAL" if critical else "WARNING",
                coverage,
                0.50 if critical else 0.80,
            )
        completion = c["mentorship"]["sessionCompletionRate"]
        if completion is not None and completion < 0.70:
            fire("LOW_SESSION_COMPLETION", "WARNING", completion, 0.70)
        readiness = c["readiness"]["average"]
        if readiness is not None and readiness < 60:
            fire("LOW_READINESS", "WARNING", readiness, 60.0)
        overdue = len(c["milestones"]["overdue"])
        if overdue >= 1:
            fire("OVERDUE_MILESTONE", "WARNING", float(overdue), 1.0)
        failed = sum(p["failedCount"] for p in c["payments"])
        if failed >= 1:
            critical = any(
                p["billedCents"] and p["failedCents"] / p["billedCents"] > 0.10
                for p in c["payments"]
            )
            fire("PAYMENT_FAILURES", "CRITICAL" if critical else "WARNING", float(failed), 1.0)
        return out

    # --- a director's summary ---------------------------------------------------------

    def summary(self, user_id: int) -> dict[str, Any]:
        cohorts = [self.cohort(c) for c in self.scope(user_id)]
        running = [c for c in cohorts if c["status"] == "RUNNING"]
        closed = [c for c in cohorts if c["status"] == "CLOSED"]

        def pooled(rows: list[dict[str, Any]], section: str, name: str) -> int:
            return sum(c[section][name] for c in rows)

        scores = [s for c in running for s in self.latest_scores(c["id"], self.seated(c["id"]))]
        programs_active = set()
        for c in running:
            [row] = self.of(programs.cohorts, id=c["id"])
            [track] = self.of(programs.tracks, id=row["track_id"])
            [program] = self.of(programs.programs, id=track["program_id"])
            if program["status"] == "active":
                programs_active.add(program["id"])
        alerts = sorted(
            (a for c in running for a in c["alerts"]),
            key=lambda a: (a["severity"] != "CRITICAL", a["cohortId"], a["code"]),
        )
        codes = sorted({a["code"] for a in alerts})
        seats = {
            k: pooled(running, "seats", k)
            for k in ("total", "used", "available", "paid", "scholarship", "sponsored")
        }
        seats["utilization"] = ratio(seats["used"], seats["total"])
        return {
            "totalCohorts": len(cohorts),
            "activeCohorts": len(running),
            "activePrograms": len(programs_active),
            "seats": seats,
            "averageReadiness": average(scores),
            "completionRate": ratio(
                pooled(closed, "enrollment", "completed"),
                pooled(closed, "enrollment", "enrolled")
                - pooled(closed, "enrollment", "withdrawn"),
            ),
            "mentorCoverage": ratio(
                pooled(running, "mentorship", "coveredLearners"),
                pooled(running, "mentorship", "activeLearners"),
            ),
            "sessionCompletionRate": ratio(
                pooled(running, "mentorship", "completedPastSessions"),
                pooled(running, "mentorship", "pastSessions"),
            ),
            "alertCounts": {
                "critical": sum(1 for a in alerts if a["severity"] == "CRITICAL"),
                "warning": sum(1 for a in alerts if a["severity"] == "WARNING"),
            },
            "alertsByCode": [
                {"code": code, "count": sum(1 for a in alerts if a["code"] == code)}
                for code in codes
            ],
            "alerts": alerts,
        }

    def seated(self, cohort_id: int) -> set[int]:
        return {
            e["learner_id"]
            for e in self.of(programs.enrollments, cohort_id=cohort_id)
            if e["status"] in ("active", "completed")
        }
