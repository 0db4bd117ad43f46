"""Rewrite notices: what one unit of refresh work rewrote, published once to every gateway.

A unit is a refresh cycle, one cohort's refresh (the cohort, then the summaries of its
directors) or one director's refresh. Its subtree writes are noted while it runs and
published as one notice when it ends: so a cycle that rewrites twenty of a director's
cohorts and then their summary tells each gateway once, and every subscriber of that
director gets one update naming the twenty. A cycle's unit ends after its answer phase,
once the stored answers built from what it rewrote are replaced: a client told of a
rewrite that reads again through a persisted GET reads the new figures. A write outside
any unit (a request computing a missing subtree) is published at once.

Units nest (a cohort's refresh runs director refreshes: one notice); a task started
inside a unit that outlives it publishes its own writes at once.
"""

import contextvars
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from gateway.cache.keys import Keys

log = logging.getLogger("gateway.live.notices")

# Version of the encoded notice; a gateway ignores (and logs) notices of another version.
NOTICE_FORMAT = 1


@dataclass
class Rewrites:
    """What was rewritten: cohort ids (with the computedAt of their new subtree), the scope
    ids of rewritten summaries and scopes ("admin" or a director's user id), user ids."""

    cohorts: dict[int, str] = field(default_factory=dict)
    summaries: set[str] = field(default_factory=set)
    scopes: set[str] = field(default_factory=set)
    users: set[int] = field(default_factory=set)
    # Unix time of publication (the earliest, once merged): the start of a push's delay.
    published_at: float = 0.0
    # A unit's notice once published: later writes go out on their own.
    closed: bool = False
    # Set by a gateway after losing its subscription: re-read everything watched.
    resync: bool = False

    def __bool__(self) -> bool:
        return bool(self.cohorts or self.summaries or self.scopes or self.users or self.resync)

    def note(self, keys: Keys, entries: Mapping[str, Mapping[str, Any]]) -> None:
        """Adds the subtrees just written (`entries` by key); other keys are ignored."""
        for key, entry in entries.items():
            kind = keys.kind_of(key)
            if kind is None:
                continue
            name, ident = kind
            if name == "cohort":
                self.cohorts[int(ident)] = str(entry.get("computed_at", ""))
            elif name == "summary":
                self.summaries.add(ident)
            elif name == "scope":
                self.scopes.add(ident)
            else:
                self.users.add(int(ident))

    def merge(self, other: "Rewrites") -> None:
        for cohort_id, stamp in other.cohorts.items():
            self.cohorts[cohort_id] = max(stamp, self.cohorts.get(cohort_id, ""))
        self.summaries |= other.summaries
        self.scopes |= other.scopes
        self.users |= other.users
        self.resync = self.resync or other.resync
        stamps = [t for t in (self.published_at, other.published_at) if t]
        self.published_at = min(stamps, default=0.0)

    def encode(self) -> bytes:
        """About 6 bytes per cohort id: a bench-scale cycle (2,500 cohorts, 500 directors)
        is a notice of about 25 KB; cohorts are grouped by their computedAt."""
        by_stamp: dict[str, list[int]] = {}
        for cohort_id, stamp in sorted(self.cohorts.items()):
            by_stamp.setdefault(stamp, []).append(cohort_id)
        return orjson.dumps(
            {
                "v": NOTICE_FORMAT,
                "at": self.published_at,
                "cohorts": by_stamp,
                "summaries": sorted(self.summaries),
                "scopes": sorted(self.scopes),
                "users": sorted(self.users),
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> "Rewrites | None":
        try:
            data = orjson.loads(raw)
            if data.get("v") != NOTICE_FORMAT:
                raise ValueError(f"notice format {data.get('v')!r}")
            return cls(
                cohorts={int(c): str(s) for s, ids in data["cohorts"].items() for c in ids},
                summaries={str(s) for s in data["summaries"]},
                scopes={str(s) for s in data["scopes"]},
                users={int(u) for u in data["users"]},
                published_at=float(data["at"]),
            )
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
            log.warning("ignored a rewrite notice that could not be read: %s", exc)
            return None


class Publisher(Protocol):
    """Sends a notice to every gateway (Redis pub/sub, or this process's hub)."""

    async def publish(self, rewrites: Rewrites) -> None: ...


_unit: contextvars.ContextVar[Rewrites | None] = contextvars.ContextVar(
    "rewrite_unit", default=None
)


def current_unit() -> Rewrites | None:
    """The open unit this task writes for, if any."""
    unit = _unit.get()
    return unit if unit is not None and not unit.closed else None


@asynccontextmanager
async def unit(publisher: Publisher | None) -> AsyncIterator[Rewrites]:
    """Collects the writes made inside, and publishes them as one notice at the end (also
    when the unit fails: what was written is written). Inside another unit, joins it."""
    outer = current_unit()
    if outer is not None:
        yield outer
        return
    mine = Rewrites()
    token = _unit.set(mine)
    try:
        yield mine
    finally:
        _unit.reset(token)
        mine.closed = True
        if mine and publisher is not None:
            await publisher.publish(mine)
