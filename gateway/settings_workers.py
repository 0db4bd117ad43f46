"""The settings of `gateway worker` alone (the refresh jobs and batches it runs are set in
gateway/settings.py, beside the gateway's, which runs them in embedded mode)."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings


class WorkerSettings(BaseSettings):
    worker_heartbeat_file: Path = Field(
        Path("/tmp/gateway-worker.heartbeat"),
        description=(
            "File a worker rewrites every 5 s for `gateway worker --check`; give each worker "
            "sharing a filesystem its own."
        ),
    )
    worker_heartbeat_max_age_s: float = Field(
        30.0, gt=0, description="`gateway worker --check` fails when the heartbeat is older."
    )
    worker_stop_wait_s: float = Field(
        20.0,
        ge=0,
        description="On SIGTERM a worker takes no new job or batch and finishes those it runs "
        "for at most this long, seconds; it then releases the batches left (another worker "
        "takes them at once) and exits. Keep the orchestrator's kill grace period above it.",
    )
