"""Every served figure equals an independent computation from docs/metrics.md, on upstream
rows Hypothesis draws within docs/upstream.md, written into a real SQLite and PostgreSQL
database and served through the real schema (tests/resolvers/property_check.py).

The reference (tests/resolvers/reference_figures.py) shares no code with
resolvers/figures/. GATEWAY_PROPERTY_EXAMPLES sets the examples per database (25 here;
`make reliability` runs 500 in tests/reliability/test_figures_at_length.py).
"""

import os
from collections.abc import Callable

import pytest
from hypothesis import Phase, find, settings

from loaders import billing, mentorship, missions, programs, talentscope
from tests.resolvers.generated_world import World, worlds
from tests.resolvers.property_check import check, postgres_off_utc

EXAMPLES = int(os.environ.get("GATEWAY_PROPERTY_EXAMPLES", "25"))


def test_figures_match_the_reference_on_sqlite(tmp_path) -> None:
    check("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'upstream.sqlite3'}", EXAMPLES)()


@pytest.mark.postgres
def test_figures_match_the_reference_on_postgresql(postgres_url: str) -> None:
    postgres_off_utc(postgres_url)
    check("postgres", postgres_url, EXAMPLES)()


EDGES: dict[str, Callable[[World], bool]] = {
    "ids near 2^31-1": lambda w: any(u["id"] > 2**31 - 500 for u in w.rows[programs.users]),
    "seats pooled past 2^31-1": lambda w: (
        sum(c["seat_capacity"] for c in w.rows[programs.cohorts]) > 2**31
    ),
    "zero capacity": lambda w: any(c["seat_capacity"] == 0 for c in w.rows[programs.cohorts]),
    "an admin who directs a track": lambda w: any(
        u["role"] == "admin" and u["id"] == t["director_id"]
        for u in w.rows[programs.users]
        for t in w.rows.get(programs.track_directors, [])
    ),
    "a review before its submission": lambda w: any(
        s["reviewed_at"] is not None and s["reviewed_at"] < s["submitted_at"]
        for s in w.rows.get(missions.mission_submissions, [])
    ),
    "a score on a bucket edge": lambda w: any(
        r["score"] in (20.0, 40.0, 60.0, 80.0, 100.0)
        for r in w.rows.get(talentscope.readiness_scores, [])
    ),
    "a mentor without a row": lambda w: any(
        a["mentor_id"] not in {m["id"] for m in w.rows.get(mentorship.mentors, [])}
        for a in w.rows.get(mentorship.mentor_assignments, [])
    ),
    "a session a microsecond from now": lambda w: any(
        abs(s["scheduled_at"] - w.now).total_seconds() == 1e-6
        for s in w.rows.get(mentorship.mentorship_sessions, [])
    ),
    "refunds above the payment": lambda w: any(
        sum(
            r["amount_cents"] for r in w.rows.get(billing.refunds, []) if r["payment_id"] == p["id"]
        )
        > p["amount_cents"]
        for p in w.rows.get(billing.payments, [])
    ),
}


@pytest.mark.parametrize("edge", list(EDGES))
def test_the_generator_reaches_each_edge(edge: str) -> None:
    no_shrinking = settings(max_examples=2000, database=None, phases=[Phase.generate])
    found = find(worlds("sqlite"), EDGES[edge], settings=no_shrinking)
    assert EDGES[edge](found)
