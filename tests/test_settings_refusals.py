"""A configuration that refuses mistakes: the real `gateway` command, its exit status and
the one line it prints for each problem."""

import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from gateway.settings import Settings

SECRET = "production-jwt-secret-0123456789abcdef"
WEBHOOK = "production-webhook-secret-0123456789"
TOKEN = "internal-token-0123456789abcdef-0123456789"
PRODUCTION = {
    "GATEWAY_ENV": "production",
    "GATEWAY_JWT_SECRET": SECRET,
    "GATEWAY_WEBHOOK_SECRET": WEBHOOK,
    "GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0",
    "GATEWAY_INTERNAL_TOKEN": TOKEN,
}
MINT = ["token", "--user-id", "7", "--role", "admin", "--ttl", "1m"]


def gateway(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`gateway …` with only these settings, in a directory without a .env file."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv],
        env={"PATH": os.environ["PATH"], **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def refused(done: subprocess.CompletedProcess[str]) -> tuple[int, str, list[str]]:
    return done.returncode, done.stdout, done.stderr.splitlines()


@pytest.mark.parametrize(
    ("changes", "line"),
    [
        (
            {"GATEWAY_REDIS_URL": None, "GATEWAY_REDIS_ULR": "redis://127.0.0.1:1/0"},
            "GATEWAY_REDIS_ULR is not a setting (did you mean GATEWAY_REDIS_URL?)",
        ),
        (
            {"GATEWAY_REDIS_URL": None},
            "GATEWAY_REDIS_URL is unset: production serves from Redis (set "
            "GATEWAY_EMBEDDED=true to run embedded on purpose: a cache, a refresh cycle and a "
            "persisted-query store of this replica's own)",
        ),
        (
            {"GATEWAY_REDIS_URL": None, "GATEWAY_EMBEDDED": "true", "GATEWAY_INTERNAL_TOKEN": None},
            "/metrics and /readyz would be public: set GATEWAY_INTERNAL_PORT (a port of their "
            "own) or GATEWAY_INTERNAL_TOKEN (a bearer token they require)",
        ),
        (
            {"GATEWAY_INTERNAL_TOKEN": None},
            "/metrics and /readyz would be public: set GATEWAY_INTERNAL_PORT (a port of their "
            "own) or GATEWAY_INTERNAL_TOKEN (a bearer token they require)",
        ),
        (
            {"GATEWAY_EMBEDDED": "true"},
            "GATEWAY_EMBEDDED is true and GATEWAY_REDIS_URL is set: embedded mode has no "
            "Redis; unset one",
        ),
        (
            {"GATEWAY_LOG_LEVEL": "loud"},
            "GATEWAY_LOG_LEVEL: not a log level: use one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
        (
            {"GATEWAY_DATABASE_URL": "mysql://user:hunter2@db/upstream"},
            "GATEWAY_DATABASE_URL: scheme 'mysql' is not supported: use postgresql://, "
            "postgres://, postgresql+asyncpg://, sqlite://",
        ),
        (
            {"GATEWAY_UPSTREAM_BILLING_URL": "hunter2"},
            "GATEWAY_UPSTREAM_BILLING_URL: not a database URL: postgresql://user@host/db or "
            "sqlite:///path",
        ),
        (
            {"GATEWAY_JWT_SECRET_FILE": "/nonexistent/jwt"},
            "GATEWAY_JWT_SECRET and GATEWAY_JWT_SECRET_FILE are both set: keep one",
        ),
        (
            {"GATEWAY_JWT_SECRET": None, "GATEWAY_JWT_SECRET_FILE": "/nonexistent/jwt"},
            "GATEWAY_JWT_SECRET_FILE: cannot read /nonexistent/jwt: No such file or directory",
        ),
        (
            {"GATEWAY_WORKERS": "two"},
            "GATEWAY_WORKERS: Input should be a valid integer, unable to parse string as an "
            "integer",
        ),
    ],
)
def test_production_serve_refuses_with_one_line(
    changes: dict[str, str | None], line: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in {**PRODUCTION, **changes}.items() if v is not None}
    done = gateway(["serve", "--port", "1"], env, tmp_path)
    assert refused(done) == (2, "", [f"gateway serve: invalid setting: {line}"])
    assert "hunter2" not in done.stderr


def test_development_warns_of_unknown_variables_and_runs(tmp_path: Path) -> None:
    done = gateway(MINT, {"GATEWAY_JWT_SECRT": "x", "GATEWAY_REFRESH_INTERVAL": "60"}, tmp_path)
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        "gateway token: warning: GATEWAY_JWT_SECRT is not a setting "
        "(did you mean GATEWAY_JWT_SECRET?)",
        "gateway token: warning: GATEWAY_REFRESH_INTERVAL is not a setting "
        "(did you mean GATEWAY_REFRESH_INTERVAL_S?)",
    ]


def test_unknown_variables_of_the_env_file_are_named_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("GATEWAY_CACHE_TTL=60\n")
    done = gateway(MINT, PRODUCTION, tmp_path)
    assert refused(done) == (
        2,
        "",
        [
            "gateway token: invalid setting: GATEWAY_CACHE_TTL is not a setting "
            "(did you mean GATEWAY_CACHE_TTL_S?)"
        ],
    )


def test_secrets_are_read_from_their_files(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "jwt").write_text("a-secret-from-a-mounted-file-0123456789\n")
    (secrets / "webhook").write_text(WEBHOOK)
    (secrets / "internal").write_text(TOKEN)
    env = {
        **{k: v for k, v in PRODUCTION.items() if "SECRET" not in k and "TOKEN" not in k},
        "GATEWAY_JWT_SECRET_FILE": str(secrets / "jwt"),
        "GATEWAY_WEBHOOK_SECRET_FILE": str(secrets / "webhook"),
        "GATEWAY_INTERNAL_TOKEN_FILE": str(secrets / "internal"),
    }
    done = gateway(MINT, env, tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    key = "a-secret-from-a-mounted-file-0123456789"  # its trailing newline dropped
    claims = jwt.decode(done.stdout.strip(), key, algorithms=["HS256"])
    assert (claims["sub"], claims["role"]) == ("7", "admin")


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("postgresql://u:p@db:5432/up", "postgresql+asyncpg://u:p@db:5432/up"),
        ("postgres://u@db/up", "postgresql+asyncpg://u@db/up"),
        ("postgresql+asyncpg://u@db/up", "postgresql+asyncpg://u@db/up"),
        ("sqlite:///var/up.sqlite3", "sqlite+aiosqlite:///var/up.sqlite3"),
        ("sqlite+aiosqlite:///var/up.sqlite3", "sqlite+aiosqlite:///var/up.sqlite3"),
    ],
)
def test_database_urls_take_the_async_driver(given: str, normalized: str) -> None:
    settings = Settings(database_url=given, upstream_billing_url=given)
    assert (settings.database_url, settings.upstream_url("billing")) == (normalized, normalized)


def test_a_plain_postgres_url_seeds_and_reads(postgres_url: str, tmp_path: Path) -> None:
    plain = postgres_url.replace("postgresql+asyncpg://", "postgres://", 1)
    env = {"GATEWAY_DATABASE_URL": plain}
    seeded = gateway(["seed", "--scale", "demo", "--no-checksum"], env, tmp_path)
    assert seeded.returncode == 0, seeded.stderr
    minted = gateway(["token", "--user-id", "1", "--ttl", "1m"], env, tmp_path)
    assert (minted.returncode, minted.stderr) == (0, "")


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["worker"]])
def test_files_that_cannot_be_used_are_named_before_start(
    command: list[str], tmp_path: Path
) -> None:
    junk = tmp_path / "junk"
    junk.write_text("not a key, not JSON\n")
    env = {
        **PRODUCTION,
        "GATEWAY_JWT_PUBLIC_KEY_FILE": str(junk),
        "GATEWAY_JWT_PRIVATE_KEY_FILE": "/nonexistent/private.pem",
        "GATEWAY_PERSISTED_MANIFEST": str(junk),
    }
    done = gateway(command, env, tmp_path)
    name = f"gateway {command[0]}: invalid setting: "
    assert refused(done) == (
        2,
        "",
        [
            f"{name}GATEWAY_PERSISTED_MANIFEST: cannot read persisted-query manifest {junk}: "
            "invalid literal, expected 'null': line 1 column 1 (char 0)",
            f"{name}GATEWAY_JWT_PUBLIC_KEY_FILE: {junk} is not a PEM public key (unencrypted)",
            f"{name}GATEWAY_JWT_PRIVATE_KEY_FILE: cannot read /nonexistent/private.pem: "
            "No such file or directory",
        ],
    )
