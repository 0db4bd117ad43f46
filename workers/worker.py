"""arq worker settings: the refresh jobs and the cron cycle."""

from typing import Any

from arq import cron
from arq.worker import func

from gateway.cache.keys import (
    CRON_REFRESH_ALL,
    JOB_REFRESH_ALL,
    JOB_REFRESH_COHORT,
    JOB_REFRESH_DIRECTOR,
    JOB_REFRESH_PENDING,
    QUEUE_NAME,
)
from gateway.refresh.cycle import cron_fields
from gateway.services import REFRESH_COMMAND_TIMEOUT_S, make_redis
from gateway.settings import Settings
from workers import jobs
from workers.runner import ResilientWorker

# A cycle may not overlap the next one; a job that outlives this is cancelled and retried.
JOB_TIMEOUT_S = 600


def worker_settings(settings: Settings, *, burst: bool = False) -> dict[str, Any]:
    if not settings.queue_url:
        raise ValueError("the worker needs GATEWAY_REDIS_URL (embedded mode refreshes in-process)")
    return {
        "functions": [
            func(jobs.refresh_director, name=JOB_REFRESH_DIRECTOR, keep_result=0),
            func(jobs.refresh_cohort, name=JOB_REFRESH_COHORT, keep_result=0),
            func(jobs.refresh_pending, name=JOB_REFRESH_PENDING, keep_result=0),
            func(jobs.refresh_all, name=JOB_REFRESH_ALL, keep_result=0, timeout=JOB_TIMEOUT_S),
        ],
        "cron_jobs": [
            cron(
                jobs.refresh_all,
                name=CRON_REFRESH_ALL,
                timeout=JOB_TIMEOUT_S,
                run_at_startup=False,
                **cron_fields(settings.refresh_interval_s),
            )
        ],
        "on_startup": jobs.startup,
        "on_shutdown": jobs.shutdown,
        "on_connect": jobs.cold_start,
        "beside": [] if burst else [jobs.serve_batches],
        "heartbeat_file": None if burst else settings.worker_heartbeat_file,
        "queue_name": QUEUE_NAME,
        "ctx": {"settings": settings},
        "burst": burst,
        "job_timeout": JOB_TIMEOUT_S,
        "max_jobs": 4,
        "handle_signals": not burst,
        # On SIGTERM, running jobs and batches get this long to finish; then they are
        # cancelled (batches released to other workers, jobs re-run by arq).
        "job_completion_wait": settings.worker_stop_wait_s,
        "busy": jobs.batches_running,
    }


def make_worker(settings: Settings, *, burst: bool = False, **overrides: Any) -> ResilientWorker:
    configured = worker_settings(settings, burst=burst)
    # Our own client (short socket timeouts): arq's would wait forever on a dead link.
    redis = make_redis(settings.queue_url or "", REFRESH_COMMAND_TIMEOUT_S)
    return ResilientWorker(**{**configured, "redis_pool": redis, **overrides})
