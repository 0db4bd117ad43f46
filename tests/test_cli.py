"""The `gateway` command line: every option's default in --help."""

import subprocess
import sys


def help_of(*command: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *command, "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    return " ".join(completed.stdout.split())  # argparse wraps at the terminal's width


def test_serve_help_shows_the_defaults() -> None:
    text = help_of("serve")
    assert "--host HOST Interface to listen on. (default: 127.0.0.1)" in text
    assert "--port PORT TCP port. (default: 8000)" in text
    assert (
        "--workers WORKERS Worker processes (default: GATEWAY_WORKERS, which defaults to 1)."
        in text
    )


def test_every_command_shows_its_defaults() -> None:
    assert (
        "--scale {demo,bench,large} Dataset size: demo (60 cohorts), bench (2,500) or large"
        " (25,000, on PostgreSQL). (default: demo)"
    ) in help_of("seed")
    assert "--seed SEED Random seed (same seed, same rows). (default: 7)" in help_of("seed")
    assert "--role {director,admin} With --director-id. (default: director)" in help_of("refresh")
    assert "--ttl TTL Lifetime: 90s, 15m, 1h, 7d (default 1h)." in help_of("token")
    assert "(default: schema.graphql)" not in help_of("export-schema")  # said once, in its help
