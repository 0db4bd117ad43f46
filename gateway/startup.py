"""What a process checks and says as it starts.

- The files its settings name (the persisted-query manifest, the JWT keys), read once
  before any port or job is taken: a problem is one line naming the setting, not a
  traceback from a worker process.
- One line saying what runs, where, and against what: hosts, ports and database names
  only, never a user name or a password of a URL.
"""

import logging
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from gateway.settings import Settings
from gateway.version import VERSION

log = logging.getLogger("gateway.startup")


def file_problems(settings: Settings) -> list[str]:
    """One line per file setting that cannot be used."""
    from cryptography.hazmat.primitives.serialization import (
        load_pem_private_key,
        load_pem_public_key,
    )

    from gateway.documents.persisted import ManifestError, load_manifest

    problems = []
    if settings.persisted_manifest is not None:
        try:
            load_manifest(settings.persisted_manifest)
        except ManifestError as exc:
            problems.append(f"GATEWAY_PERSISTED_MANIFEST: {exc}")
    keys = (
        ("GATEWAY_JWT_PUBLIC_KEY_FILE", settings.jwt_public_key_file, "public"),
        ("GATEWAY_JWT_PRIVATE_KEY_FILE", settings.jwt_private_key_file, "private"),
    )
    for variable, path, kind in keys:
        if path is None:
            continue
        try:
            pem = path.read_bytes()
        except OSError as exc:
            problems.append(f"{variable}: cannot read {path}: {exc.strerror or exc}")
            continue
        try:
            if kind == "public":
                load_pem_public_key(pem)
            else:
                load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            problems.append(f"{variable}: {path} is not a PEM {kind} key (unencrypted)")
    return problems


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
