"""One subtree phase (every cohort, then every director's scope and summary) on one
database, in this process, without Redis, as of now; prints one JSON line: wall and CPU
seconds. Run with PYTHONPATH naming the source tree to measure (bench/cycles.py runs it
for this tree and for a reference commit, side by side); it uses only what both have.

    python bench/subtree_phase.py DATABASE_URL
"""

import asyncio
import json
import sys
import time
from typing import Any


async def subtree_phases(services: Any, now: Any) -> Any:
    """The cycle's subtree phases through its in-process dispatcher, and its record; in a
    reference tree from before Phases.record, its refresh_subtrees."""
    try:
        from gateway.refresh.cycle import refresh_subtrees  # type: ignore[attr-defined]
    except ImportError:
        from gateway.refresh.cycle import Phases, batch_sizes, new_cycle_id
        from gateway.refresh.dispatch import LocalDispatcher, local_run

        phases = Phases(services, LocalDispatcher(services, local_run(new_cycle_id(now), now)))
        started = time.perf_counter()
        done = await phases.subtrees(batch_sizes(services.settings), None)
        return await phases.record(now, started, done, None)
    return await refresh_subtrees(services.refresh, now)


async def main(url: str) -> dict[str, float]:
    from gateway.services import Services
    from gateway.settings import Settings

    services = Services.build(Settings(database_url=url, embedded_scheduler=False, _env_file=None))
    try:
        assert services.refresh is not None
        now = services.clock()
        cpu, wall = time.process_time(), time.perf_counter()
        report = await subtree_phases(services, now)
        return {
            "wall_s": round(time.perf_counter() - wall, 3),
            "cpu_s": round(time.process_time() - cpu, 3),
            "cohorts": report.cohorts,
            "directors": report.directors,
        }
    finally:
        await services.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1]))))
