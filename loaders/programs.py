"""Upstream module `programs` (docs/upstream.md): its tables, batch functions and loaders."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Column,
    Date,
    Executable,
    ForeignKey,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
)

from loaders.base import UpstreamLoader
from loaders.engines import Upstream
from loaders.types import Timestamp

metadata = MetaData()
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False),
    Column("email", Text, nullable=False, unique=True),
    Column("role", String(16), nullable=False),
)
programs = Table(
    "programs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False),
    Column("status", String(16), nullable=False),
)
tracks = Table(
    "tracks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("program_id", Integer, ForeignKey("programs.id"), nullable=False, index=True),
    Column("name", Text, nullable=False),
)
track_directors = Table(
    "track_directors",
    metadata,
    Column("track_id", Integer, ForeignKey("tracks.id"), nullable=False),
    Column("director_id", Integer, ForeignKey("users.id"), nullable=False, index=True),
    PrimaryKeyConstraint("track_id", "director_id"),
)
cohorts = Table(
    "cohorts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("track_id", Integer, ForeignKey("tracks.id"), nullable=False, index=True),
    Column("name", Text, nullable=False),
    Column("mode", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date, nullable=False),
    Column("seat_capacity", Integer, nullable=False),
)
enrollments = Table(
    "enrollments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("cohort_id", Integer, ForeignKey("cohorts.id"), nullable=False, index=True),
    Column("learner_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("seat_type", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("enrolled_at", Timestamp, nullable=False),
    Column("completed_at", Timestamp, nullable=True),
    UniqueConstraint("cohort_id", "learner_id"),
)
milestones = Table(
    "milestones",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("cohort_id", Integer, ForeignKey("cohorts.id"), nullable=False, index=True),
    Column("title", Text, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("completed_at", Timestamp, nullable=True),
)


class UserByIdLoader(UpstreamLoader):
    module, key = "programs", "id"

    def statement(self, keys: Sequence[Any]) -> Executable:
        return select(users.c.id, users.c.name, users.c.email, users.c.role).where(
            users.c.id.in_(keys)
        )


class CohortByIdLoader(UpstreamLoader):
    module, key = "programs", "id"

    def statement(self, keys: Sequence[Any]) -> Executable:
        return select(cohorts).where(cohorts.c.id.in_(keys))


class CohortsByTrackIdLoader(UpstreamLoader):
    module, key, many = "programs", "track_id", True

    def statement(self, keys: Sequence[Any]) -> Executable:
        return select(cohorts).where(cohorts.c.track_id.in_(keys)).order_by(cohorts.c.id)


class TrackByIdLoader(UpstreamLoader):
    module, key = "programs", "id"

    def statement(self, keys: Sequence[Any]) -> Executable:
        return select(tracks).where(tracks.c.id.in_(keys))


class ProgramByIdLoader(UpstreamLoader):
    module, key = "programs", "id"

    def statement(self, keys: Sequence[Any]) -> Executable:
        return select(programs).where(programs.c.id.in_(keys))


class TrackIdsByDirectorIdLoader(UpstreamLoader):
    module, key, many = "programs", "director_id", True

    def statement(self, keys: Sequence[Any]) -> Executable:
        return (
            select(track_directors.c.director_id, track_directors.c.track_id)
            .where(track_directors.c.director_id.in_(keys))
            .order_by(track_directors.c.track_id)
        )


class DirectorIdsByTrackIdLoader(UpstreamLoader):
    module, key, many = "programs", "track_id", True

    def statement(self, keys: Sequence[Any]) -> Executable:
        return (
            select(track_directors.c.track_id, track_directors.c.director_id)
            .where(track_directors.c.track_id.in_(keys))
            .order_by(track_directors.c.director_id)
        )


class EnrollmentsByCohortIdLoader(UpstreamLoader):
    module, key, many = "programs", "cohort_id", True

    def statement(self, keys: Sequence[Any]) -> Executable:
        e = enrollments.c
        return select(e.cohort_id, e.learner_id, e.seat_type, e.status).where(e.cohort_id.in_(keys))


class MilestonesByCohortIdLoader(UpstreamLoader):
    module, key, many = "programs", "cohort_id", True

    def statement(self, keys: Sequence[Any]) -> Executable:
        m = milestones.c
        return select(m.id, m.cohort_id, m.title, m.due_date, m.completed_at).where(
            m.cohort_id.in_(keys)
        )


# --- Whole-table reads (not keyed, so not DataLoaders): the refresh cycle and the CLI ---

DASHBOARD_ROLES = ("director", "admin")


async def all_cohort_ids(upstream: Upstream) -> list[int]:
    rows = await upstream.fetch("programs", select(cohorts.c.id).order_by(cohorts.c.id))
    return [row.id for row in rows]


async def director_ids(
    upstream: Upstream, *, after: int = 0, limit: int | None = None
) -> list[int]:
    """Users with role director, by id, after `after`."""
    stmt = (
        select(users.c.id)
        .where(users.c.role == "director", users.c.id > after)
        .order_by(users.c.id)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [row.id for row in await upstream.fetch("programs", stmt)]


async def dashboard_users(upstream: Upstream) -> Sequence[Row[Any]]:
    """Every director and admin (id, name, email, role), by id."""
    u = users.c
    stmt = select(u.id, u.name, u.email, u.role).where(u.role.in_(DASHBOARD_ROLES)).order_by(u.id)
    return await upstream.fetch("programs", stmt)


async def first_admin_id(upstream: Upstream) -> int | None:
    stmt = select(users.c.id).where(users.c.role == "admin").order_by(users.c.id).limit(1)
    rows = await upstream.fetch("programs", stmt)
    return rows[0].id if rows else None


async def cohort_track_pairs(upstream: Upstream) -> Sequence[Row[Any]]:
    """Every cohort's (id, track_id), by id."""
    c = cohorts.c
    return await upstream.fetch("programs", select(c.id, c.track_id).order_by(c.id))


async def director_track_pairs(upstream: Upstream) -> Sequence[Row[Any]]:
    """Every (director_id, track_id) of track_directors."""
    t = track_directors.c
    return await upstream.fetch("programs", select(t.director_id, t.track_id))


async def user_role(upstream: Upstream, user_id: int) -> str | None:
    rows = await upstream.fetch("programs", select(users.c.role).where(users.c.id == user_id))
    return rows[0].role if rows else None
