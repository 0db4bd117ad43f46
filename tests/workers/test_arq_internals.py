"""The arq internals workers/runner.py stands on, as of the minor version pyproject.toml pins.

ResilientWorker replaces arq's main loop and close (adapted copies of them) and calls
private methods and attributes of arq's Worker. Should an arq upgrade change any of them,
these tests fail naming what changed: read that part of arq, adapt workers/runner.py,
then update the expectations here and the pin."""

import hashlib
import inspect
from importlib.metadata import version

from arq.connections import log_redis_info
from arq.cron import CronJob
from arq.utils import poll
from arq.worker import Worker

from gateway.settings import Settings
from workers.worker import make_worker

PINNED_MINOR = "0.28"

# What runner.py calls, with the parameters it calls them with: (name, kind, default).
ARG = "POSITIONAL_OR_KEYWORD"
SELF = ("self", ARG, None)
CALLED = {
    "arq.worker.Worker._poll_iteration": (Worker._poll_iteration, [SELF]),
    "arq.worker.Worker._jobs_started": (Worker._jobs_started, [SELF]),
    "arq.worker.Worker.handle_sig": (Worker.handle_sig, [SELF, ("signum", ARG, None)]),
    "arq.worker.Worker.handle_sig_wait_for_completion": (
        Worker.handle_sig_wait_for_completion,
        [SELF, ("signum", ARG, None)],
    ),
    "arq.cron.CronJob.calculate_next": (CronJob.calculate_next, [SELF, ("prev_run", ARG, None)]),
    "arq.connections.log_redis_info": (
        log_redis_info,
        [("redis", ARG, None), ("log_func", ARG, None)],
    ),
    "arq.utils.poll": (poll, [("step", ARG, 0.5)]),
}

# What runner.py reads or sets on a worker (arq sets them in Worker.__init__).
ATTRIBUTES = (
    "_pool", "_handle_signals", "functions", "ctx", "tasks", "queue_name", "cron_jobs",
    "burst", "max_burst_jobs", "poll_delay_s", "allow_pick_jobs", "on_startup", "on_shutdown",
    "timezone", "jobs_complete", "jobs_failed", "health_check_key", "_job_completion_wait",
)  # fmt: skip

# The arq methods runner.py replaces with adapted copies: sha256 of their source. A new
# digest means arq changed what ResilientWorker.main (_serve, _burst_done) or .close copy.
REPLACED = {
    "arq.worker.Worker.main": (Worker.main, "45ca1591c9717466"),
    "arq.worker.Worker.close": (Worker.close, "5bcc9cb356680829"),
}


def parameters(function: object) -> list[tuple[str, str, object]]:
    return [
        (p.name, p.kind.name, None if p.default is inspect.Parameter.empty else p.default)
        for p in inspect.signature(function).parameters.values()
    ]


def test_arq_is_the_pinned_minor_version() -> None:
    installed = version("arq")
    assert installed.startswith(PINNED_MINOR + "."), (
        f"arq {installed} installed; workers/runner.py is written against {PINNED_MINOR}.x"
    )


def test_the_arq_functions_runner_calls_keep_their_signatures() -> None:
    changed = {
        name: parameters(function)
        for name, (function, expected) in CALLED.items()
        if parameters(function) != expected
    }
    assert not changed, f"arq internals used by workers/runner.py changed: {changed}"


def test_the_arq_methods_runner_replaces_are_unchanged() -> None:
    changed = [
        name
        for name, (method, digest) in REPLACED.items()
        if hashlib.sha256(inspect.getsource(method).encode()).hexdigest()[:16] != digest
    ]
    assert not changed, (
        f"arq changed {changed}, which workers/runner.py replaces with adapted copies: "
        "compare them with ResilientWorker"
    )


async def test_a_worker_has_the_attributes_runner_uses() -> None:
    assert isinstance(Worker.__dict__["pool"], property), (
        "arq.worker.Worker.pool: no longer a property"
    )
    settings = Settings(redis_url="redis://127.0.0.1:1/0", _env_file=None)  # never connected
    worker = make_worker(settings, burst=True)
    try:
        missing = [name for name in ATTRIBUTES if not hasattr(worker, name)]
        assert not missing, f"arq.worker.Worker no longer sets {missing} (workers/runner.py)"
        assert worker.pool is worker._pool
    finally:
        await worker.pool.aclose(close_connection_pool=True)
