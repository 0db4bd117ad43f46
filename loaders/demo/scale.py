"""Sizes, vocabulary and the report of a synthetic dataset."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Table

CHUNK_ROWS = 5_000
# Rows per COPY on PostgreSQL: larger chunks, fewer round trips.
COPY_CHUNK_ROWS = 50_000

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
    # Ten times bench (about 19 million rows): capacity measurements, on PostgreSQL.
    "large": Scale(
        "large",
        admins=1,
        directors=5_000,
        programs=1_250,
        archived_programs=80,
        tracks=12_000,
        cohorts=25_000,
        learners=750_000,
        mentors=12_000,
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
