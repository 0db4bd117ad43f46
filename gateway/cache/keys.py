"""Every Redis key and job name, in one place.

Keys carry a version derived from the schema and the subtree format (`Keys.version`, the
cache version), so a deploy that changes either never reads an entry of the old shape:
during a rolling upgrade, old and new replicas on one Redis each read and write their own
subtrees, stored answers, refresh records and rewrite notices. Persisted (APQ) documents
carry DOCUMENT_FORMAT: their text means the same to every version (each validates it
against its own schema), so they are shared until what is stored under them changes.
"""

import hashlib

from resolvers.caller import Caller

# Bump when the shape or meaning of a cached subtree or stored answer changes without a
# schema change.
# 2026-12-06.1: a stored answer carries its operation, and its gzip bytes beside the plain.
SUBTREE_FORMAT = "2026-12-06.1"
PREFIX = "ddg"
# Bump when what is stored under a persisted document's key changes (today: its text).
DOCUMENT_FORMAT = "1"
APQ_KEY_PREFIX = f"{PREFIX}:apq:{DOCUMENT_FORMAT}:"
SUBTREE_KINDS = frozenset({"cohort", "summary", "scope", "user"})


def cache_version(schema_sdl: str) -> str:
    return hashlib.sha256(f"{SUBTREE_FORMAT}\n{schema_sdl}".encode()).hexdigest()[:10]


class Keys:
    def __init__(self, version: str) -> None:
        self.version = version
        self.base = f"{PREFIX}:{version}"

    def cohort(self, cohort_id: int) -> str:
        return f"{self.base}:cohort:{cohort_id}"

    def summary(self, caller: Caller) -> str:
        return f"{self.base}:summary:{caller.scope_id}"

    def scope(self, caller: Caller) -> str:
        return f"{self.base}:scope:{caller.scope_id}"

    def rows(self, caller: Caller) -> str:
        """A scope's list index (resolvers/rows.py); not a subtree kind: no notice names it."""
        return f"{self.base}:rows:{caller.scope_id}"

    def user(self, user_id: int) -> str:
        return f"{self.base}:user:{user_id}"

    def answer(self, caller: Caller, sha256: str, variables_digest: str) -> str:
        """A stored answer: one caller's (never shared, even between admins), one document,
        one operation name and canonical variables (`variables_digest`)."""
        return f"{self.base}:response:{caller.role}:{caller.user_id}:{sha256}:{variables_digest}"

    def viewers(self, cohort_id: int) -> str:
        """The directors whose cached scope held this cohort (a set of user ids)."""
        return f"{self.base}:cohort:{cohort_id}:viewers"

    def answer_index(self, caller: Caller) -> str:
        """A caller's stored answers by last use (a sorted set of answer keys)."""
        return f"{self.base}:answers:{caller.role}:{caller.user_id}"

    def answer_owner(self, answer_key: str) -> Caller | None:
        """The caller whose answer this key names (None for any other key)."""
        prefix = f"{self.base}:response:"
        if not answer_key.startswith(prefix):
            return None
        role, user_id, _ = answer_key[len(prefix) :].split(":", 2)
        return Caller(int(user_id), role)

    @staticmethod
    def tag(subtree_key: str) -> str:
        """The set of response keys built from one subtree."""
        return f"{subtree_key}:responses"

    def lock(self, key: str) -> str:
        return f"{key}:lock"

    def refresh_stamp(self) -> str:
        """The record of the last cycle that ran to its end (complete or not)."""
        return f"{self.base}:refresh:last"

    def kind_of(self, key: str) -> tuple[str, str] | None:
        """(kind, id) of a subtree key built above: ("cohort", "101"), ("summary", "admin"),
        ("scope", "2"), ("user", "2"); None for any other key."""
        if not key.startswith(self.base):
            return None
        kind, _, ident = key[len(self.base) + 1 :].partition(":")
        if kind not in SUBTREE_KINDS or not ident or ":" in ident:
            return None
        return kind, ident

    def rewrites_channel(self) -> str:
        """The pub/sub channel of rewrite notices (gateway/live): one per cache version, so a
        process of another version never reads a notice naming keys it does not use."""
        return f"{self.base}:rewrites"

    def refresh_success(self) -> str:
        """The record of the last complete cycle."""
        return f"{self.base}:refresh:success"

    def rate(self, user_id: int, window: int) -> str:
        return f"{PREFIX}:rate:{user_id}:{window}"

    @staticmethod
    def event(event_id: str) -> str:
        return f"{PREFIX}:event:{event_id}"


def kind_of(key: str) -> str:
    """What a key holds (cohort, summary, response, rate, lock, tag…), for traces."""
    if key.endswith(":lock"):
        return "lock"
    if key.endswith(":responses"):
        return "tag"
    parts = key.split(":")
    if len(parts) > 2 and parts[0] == PREFIX and parts[1] in ("rate", "event"):
        return parts[1]
    return parts[2] if len(parts) > 2 else parts[0]


# arq job names (functions in workers/jobs.py) and their per-target job ids.
JOB_REFRESH_ALL = "refresh_all"
JOB_REFRESH_DIRECTOR = "refresh_director"
JOB_REFRESH_COHORT = "refresh_cohort"
# A change event's cohorts, drained from pending sets (gateway/refresh/pending.py).
JOB_REFRESH_PENDING = "refresh_pending"
# The cron's job: arq names its runs cron:<name>:<unix ms>.
CRON_REFRESH_ALL = "cron:refresh_all"
QUEUE_NAME = "ddg:queue"
# In the queue's Redis (gateway/refresh/lease.py): the running cycle's lease, and the one
# slot for a cycle waiting to follow it.
CYCLE_LEASE_KEY = f"{QUEUE_NAME}:cycle:lease"
CYCLE_NEXT_KEY = f"{QUEUE_NAME}:cycle:next"
# The cycle a worker asks for when it finds no completed cycle recorded (a cold cache).
COLD_START_JOB_ID = f"{JOB_REFRESH_ALL}:cold-start"
# The phase of the running cycle whose batches every worker's batch runner takes.
CYCLE_OPEN_KEY = f"{QUEUE_NAME}:cycle:open"
# Pub/sub channel: a phase was just opened (batch runners look at once, not at their poll).
CYCLE_OPENED_CHANNEL = f"{QUEUE_NAME}:cycle:opened"


class CycleKeys:
    """A cycle's state in the queue's Redis: its batches' payloads, claims, attempts and
    results, and the summary inputs of its cohorts. Gone when the cycle ends (and expire)."""

    def __init__(self, cycle_id: str) -> None:
        self.base = f"{QUEUE_NAME}:cycle:{cycle_id}"
        self.batches = f"{self.base}:batches"
        self.done = f"{self.base}:done"
        self.attempts = f"{self.base}:attempts"
        self.inputs = f"{self.base}:inputs"

    def claim(self, field: str) -> str:
        return f"{self.base}:claim:{field}"


def director_job_id(caller: Caller) -> str:
    # Per user, admins too: the job also rewrites that user's own profile entry.
    return f"{JOB_REFRESH_DIRECTOR}:{caller.role}:{caller.user_id}"


def cohort_job_id(cohort_id: int) -> str:
    return f"{JOB_REFRESH_COHORT}:{cohort_id}"
