"""The one line a process logs as it starts: what runs, where, and against what. Hosts,
ports and database names only: never a user name or a password of a URL."""

import logging
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from gateway.settings import Settings
from gateway.version import VERSION

log = logging.getLogger("gateway.startup")


def redis_address(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    database = parts.path.lstrip("/") or "0"
    return f"{parts.hostname}:{parts.port or 6379}/{database}"


def database_address(url: str) -> str:
    parts = make_url(url)
    if parts.get_backend_name() == "sqlite":
        return f"sqlite:{parts.database}"
    return f"{parts.host}:{parts.port or 5432}/{parts.database}"


def describe(settings: Settings, **ports: Any) -> dict[str, Any]:
    if not settings.redis_url:
        mode = "embedded"
    else:
        mode = "redis-cluster" if settings.redis_cluster else "redis"
    return {
        "version": VERSION,
        "env": settings.env,
        "mode": mode,
        **ports,
        "redis": redis_address(settings.redis_url),
        "queue_redis": redis_address(settings.queue_url),
        "databases": sorted({database_address(u) for u in settings.upstream_urls().values()}),
    }


def log_start(what: str, settings: Settings, **ports: Any) -> None:
    log.info("%s starting", what, extra=describe(settings, **ports))
