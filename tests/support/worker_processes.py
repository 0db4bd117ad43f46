"""What the system tests of worker processes share: their finished cycles, and a cycle
put on the queue as `gateway refresh --all` puts one."""

from typing import Any

from arq.connections import ArqRedis

from gateway.cache.keys import JOB_REFRESH_ALL, QUEUE_NAME
from tests.harness.processes import WorkerProcess, epoch
from tests.harness.waiting import run_sync

CYCLE_DONE = "^refresh cycle done$"


def cycles_done(workers: list[WorkerProcess]) -> list[dict[str, Any]]:
    """Every worker's cycle records, in the order they ended."""
    return sorted((r for w in workers for r in w.messages(CYCLE_DONE)), key=epoch)


def enqueue(url: str, job_id: str) -> None:
    """A full cycle on the queue at `url`, under this job id (which must be free)."""

    async def put() -> None:
        client = ArqRedis.from_url(url)
        try:
            job = await client.enqueue_job(JOB_REFRESH_ALL, _job_id=job_id, _queue_name=QUEUE_NAME)
            assert job is not None, job_id
        finally:
            await client.aclose()

    run_sync(put)
