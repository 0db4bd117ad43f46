"""Every Redis key and job name, in one place.

Keys carry a version derived from the schema and the subtree format, so a deploy that
changes either never reads an entry of the old shape.
"""

import hashlib

# Bump when the shape or meaning of a cached subtree changes without a schema change.
SUBTREE_FORMAT = "2026-11-25.2"
PREFIX = "ddg"


def cache_version(schema_sdl: str) -> str:
    return hashlib.sha256(f"{SUBTREE_FORMAT}\n{schema_sdl}".encode()).hexdigest()[:10]


class Keys:
    def __init__(self, version: str) -> None:
        self.version = version
        self.base = f"{PREFIX}:{version}"

    def cohort(self, cohort_id: int) -> str:
        return f"{self.base}:cohort:{cohort_id}"

    def summary(self, user_id: int, role: str) -> str:
        # Every admin has the same scope, hence the same summary.
        return f"{self.base}:summary:admin" if role == "admin" else f"{self.base}:summary:{user_id}"

    def scope(self, user_id: int, role: str) -> str:
        return f"{self.base}:scope:admin" if role == "admin" else f"{self.base}:scope:{user_id}"

    def user(self, user_id: int) -> str:
        return f"{self.base}:user:{user_id}"

    def response(self, role: str, user_id: int, sha256: str, variables_digest: str) -> str:
        return f"{self.base}:response:{role}:{user_id}:{sha256}:{variables_digest}"

    @staticmethod
    def tag(subtree_key: str) -> str:
        """The set of response keys built from one subtree."""
        return f"{subtree_key}:responses"

    def lock(self, key: str) -> str:
        return f"{key}:lock"

    def refresh_stamp(self) -> str:
        return f"{self.base}:refresh:last"

    def rate(self, user_id: int, window: int) -> str:
        return f"{PREFIX}:rate:{user_id}:{window}"

    @staticmethod
    def event(event_id: str) -> str:
        return f"{PREFIX}:event:{event_id}"


# arq job names (functions in workers/jobs.py) and their per-target job ids.
JOB_REFRESH_ALL = "refresh_all"
JOB_REFRESH_DIRECTOR = "refresh_director"
JOB_REFRESH_COHORT = "refresh_cohort"
QUEUE_NAME = "ddg:queue"


def director_job_id(user_id: int, role: str) -> str:
    return f"{JOB_REFRESH_DIRECTOR}:{role}:{user_id}"


def cohort_job_id(cohort_id: int) -> str:
    return f"{JOB_REFRESH_COHORT}:{cohort_id}"
