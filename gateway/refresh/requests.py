"""Refresh requests as arq jobs; a job id per target, so a target is never queued twice."""

from collections.abc import Sequence

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from gateway.cache.keys import (
    JOB_REFRESH_ALL,
    JOB_REFRESH_COHORT,
    JOB_REFRESH_DIRECTOR,
    QUEUE_NAME,
    cohort_job_id,
    director_job_id,
)


class QueueUnavailable(Exception):
    """The job queue (Redis) cannot be reached."""


class QueueRefresher:
    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis

    async def _enqueue(self, function: str, *args: object, job_id: str) -> bool:
        try:
            job = await self.redis.enqueue_job(
                function, *args, _job_id=job_id, _queue_name=QUEUE_NAME
            )
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(str(exc)) from exc
        return job is not None  # None: that target is already queued or running

    async def refresh_cohorts(self, cohort_ids: Sequence[int]) -> None:
        for cohort_id in cohort_ids:
            await self._enqueue(JOB_REFRESH_COHORT, cohort_id, job_id=cohort_job_id(cohort_id))

    async def refresh_director(self, user_id: int, role: str) -> None:
        await self._enqueue(
            JOB_REFRESH_DIRECTOR, user_id, role, job_id=director_job_id(user_id, role)
        )

    async def refresh_all(self) -> bool:
        return await self._enqueue(JOB_REFRESH_ALL, job_id=JOB_REFRESH_ALL)
