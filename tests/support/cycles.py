"""A refresh cycle's own phases (gateway/refresh/cycle.py), run in the test's process
through the in-process dispatcher (gateway/refresh/dispatch.py): no lease, no worker.
What a test needs from a cycle, without a second implementation of one."""

import time
from datetime import datetime

from gateway.refresh.answers import AnswerReport
from gateway.refresh.cycle import CycleReport, Phases, batch_sizes, new_cycle_id
from gateway.refresh.dispatch import LocalDispatcher, local_run
from gateway.services import Services
from loaders import programs


def in_process(services: Services) -> tuple[Phases, datetime]:
    """A cycle's phases in this process, as of the services' clock now."""
    now = services.clock()
    return Phases(services, LocalDispatcher(services, local_run(new_cycle_id(now), now))), now


async def refresh_all(services: Services) -> CycleReport:
    """The subtree phases (every cohort, then every director's scope, profile and summary)
    and the cycle's record. Stored answers are left as they are: a cycle replaces those
    built from what it rewrote in its answer phases."""
    phases, now = in_process(services)
    started = time.perf_counter()
    done = await phases.subtrees(batch_sizes(services.settings), None)
    return await phases.record(now, started, done, None)


async def prewarm(services: Services) -> AnswerReport:
    """The answer phases: every director's and admin's dashboard pages built and stored
    (as after a first full cycle), no subtree rewritten."""
    phases, now = in_process(services)
    phases.users = await programs.dashboard_users(services.upstream)
    return await phases.answers(now, None)
