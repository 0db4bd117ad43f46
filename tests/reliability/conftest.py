"""Fixtures of the reliability suite: the demo seed, once per session, copied per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.harness import World, copy_db, read_world, seed_demo

MARKER = "reliability: reliability and security suite (off by default; `make reliability`)"


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too, so the suite runs before pyproject.toml lists the marker.
    config.addinivalue_line("markers", MARKER)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Off unless asked for by `-m reliability`: the suite takes about 15 minutes."""
    if "reliability" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="reliability suite: run with `make reliability`")
    for item in items:
        if "reliability" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pristine demo seed (`gateway seed --scale demo`); copy it before changing it."""
    return Path(seed_demo(tmp_path_factory.mktemp("demo") / "demo.sqlite3").split("///", 1)[1])


@pytest.fixture
def db_path(demo_db: Path, tmp_path: Path) -> Path:
    """A private copy of the demo seed for one test."""
    path = tmp_path / "upstream.sqlite3"
    copy_db(demo_db, path)
    return path


@pytest.fixture
def world(db_path: Path) -> World:
    return read_world(db_path)
