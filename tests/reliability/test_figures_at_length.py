"""The figures' property (tests/resolvers/property_check.py) over many more generated
worlds than `make test` draws: 500 per database."""

import pytest

from tests.resolvers.property_check import check, postgres_off_utc

pytestmark = pytest.mark.reliability

EXAMPLES = 500


def test_figures_match_the_reference_on_sqlite_at_length(tmp_path) -> None:
    check("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'upstream.sqlite3'}", EXAMPLES)()


def test_figures_match_the_reference_on_postgresql_at_length(postgres_url: str) -> None:
    postgres_off_utc(postgres_url)
    check("postgres", postgres_url, EXAMPLES)()
