"""What the settings refuse, each problem one line naming the variable (gateway/settings.py
holds the settings themselves).

- Values: database URLs (normalized to the async drivers the gateway uses), the log level.
- The profile: secrets and CORS origins that production must not run with.
- Variables: every GATEWAY_* name the gateway does not know, with the closest it does.
- `gateway serve` in production: no silent embedded mode, no public /metrics and /readyz.

No line ever echoes a value: it may be a secret or hold a password.
"""

import contextlib
import difflib
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from pydantic import SecretStr, ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

PREFIX = "GATEWAY_"


class CheckedSettings(Protocol):
    """What the checks read of gateway.settings.Settings (which imports this module)."""

    @property
    def cors_origins(self) -> list[str]: ...
    @property
    def embedded(self) -> bool: ...
    @property
    def internal_port(self) -> int | None: ...
    @property
    def internal_token(self) -> SecretStr | None: ...
    @property
    def is_production(self) -> bool: ...
    @property
    def jwt_secret(self) -> SecretStr: ...
    @property
    def redis_url(self) -> str | None: ...
    @property
    def uses_jwt_secret(self) -> bool: ...
    @property
    def webhook_secret(self) -> SecretStr: ...


MIN_SECRET_BYTES = 32
# Development defaults: fine on a laptop, refused in production.
DEV_JWT_SECRET = "dev-secret-change-me-0123456789abcdef"
DEV_WEBHOOK_SECRET = "dev-webhook-secret-change-me"
# The gateway's drivers (asyncio): what a plain scheme means, and the only ones accepted.
ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}
NOT_A_URL = "not a database URL: postgresql://user@host/db or sqlite:///path"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def settings_problems(error: ValidationError) -> list[str]:
    """One line per problem, naming the variable, never echoing a value (it may be a secret)."""
    lines = []
    for problem in error.errors():
        message = str(problem["msg"]).removeprefix("Value error, ")
        location = ".".join(str(part) for part in problem["loc"])
        variable = f"{PREFIX}{location.upper()}: " if location else ""
        lines += [f"{variable}{line}" for line in message.splitlines()]
    return lines


def database_url(url: str) -> str:
    """`url` with the gateway's async driver: postgresql:// and postgres:// become
    postgresql+asyncpg://, sqlite:// becomes sqlite+aiosqlite://. ValueError (naming the
    scheme only) for anything else."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(NOT_A_URL)
    driver = ASYNC_DRIVERS.get(scheme.lower())
    if driver is None:
        accepted = "postgresql://, postgres://, postgresql+asyncpg://, sqlite://"
        raise ValueError(f"scheme {scheme!r} is not supported: use {accepted}")
    normalized = f"{driver}://{rest}"
    try:
        make_url(normalized)
    except (ArgumentError, ValueError):
        raise ValueError(NOT_A_URL) from None
    return normalized


def log_level(level: str) -> str:
    name = level.strip().upper()
    if name not in LOG_LEVELS or not isinstance(logging.getLevelName(name), int):
        raise ValueError(f"not a log level: use one of {', '.join(LOG_LEVELS)}")
    return name


def profile_problems(settings: CheckedSettings) -> list[str]:
    """Empty secrets break every request (JWT) or let anyone sign (webhooks); production
    wants secrets of its own, at least MIN_SECRET_BYTES long (RFC 7518 §3.2 for HS256),
    and CORS origins that name pages."""
    problems = []
    production = settings.is_production
    internal = settings.internal_token
    for variable, value, default, needed in (
        ("GATEWAY_JWT_SECRET", settings.jwt_secret, DEV_JWT_SECRET, settings.uses_jwt_secret),
        ("GATEWAY_WEBHOOK_SECRET", settings.webhook_secret, DEV_WEBHOOK_SECRET, True),
        ("GATEWAY_INTERNAL_TOKEN", internal or SecretStr(""), "", internal is not None),
    ):
        secret = value.get_secret_value().encode()
        if not needed:
            continue
        if not secret:
            problems.append(f"{variable} is empty")
        elif production and secret == default.encode():
            problems.append(f"{variable} is the development value: set it in production")
        elif production and len(secret) < MIN_SECRET_BYTES:
            problems.append(
                f"{variable} has {len(secret)} bytes: at least {MIN_SECRET_BYTES} in production"
            )
    if production and "*" in settings.cors_origins:
        problems.append("GATEWAY_CORS_ORIGINS: `*` is not allowed in production; list the origins")
    if production and any(o.strip().lower() == "null" for o in settings.cors_origins):
        # Sandboxed frames, file: pages and some redirects all send `Origin: null`.
        problems.append(
            "GATEWAY_CORS_ORIGINS: `null` is not allowed in production: any page can send it"
        )
    if settings.embedded and settings.redis_url:
        problems.append(
            "GATEWAY_EMBEDDED is true and GATEWAY_REDIS_URL is set: embedded mode has no Redis; "
            "unset one"
        )
    return problems


def serve_problems(settings: CheckedSettings) -> list[str]:
    """What `gateway serve` refuses in production, beyond the settings' own checks."""
    if not settings.is_production:
        return []
    problems = []
    if not settings.redis_url and not settings.embedded:
        problems.append(
            "GATEWAY_REDIS_URL is unset: production serves from Redis (set "
            "GATEWAY_EMBEDDED=true to run embedded on purpose: a cache, a refresh cycle and a "
            "persisted-query store of this replica's own)"
        )
    if settings.internal_port is None and settings.internal_token is None:
        problems.append(
            "/metrics and /readyz would be public: set GATEWAY_INTERNAL_PORT (a port of their "
            "own) or GATEWAY_INTERNAL_TOKEN (a bearer token they require)"
        )
    return problems


def known_variables(fields: Iterable[str], file_fields: Iterable[str]) -> set[str]:
    names = {f"{PREFIX}{name.upper()}" for name in fields}
    return names | {f"{PREFIX}{name.upper()}_FILE" for name in file_fields}


def unknown_variables(names: Iterable[str], known: set[str]) -> list[str]:
    """One line per GATEWAY_* name that is not a setting, with the closest one that is."""
    lines = []
    for name in sorted({n for n in names if n.upper().startswith(PREFIX)}):
        if name.upper() in known:
            continue  # the environment is read case-insensitively
        close = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"{name} is not a setting{hint}")
    return lines


def variable_names(environ: Mapping[str, str], env_file: Any) -> list[str]:
    """The GATEWAY_* names of the environment and of the .env file, when there is one."""
    from dotenv import dotenv_values

    names = [n for n in environ if n.upper().startswith(PREFIX)]
    with contextlib.suppress(OSError):
        names += [n for n in dotenv_values(env_file) if n.upper().startswith(PREFIX)]
    return names
