"""Every loader class of every upstream module is reachable from Loaders, under the name its
class makes (`EnrollmentsByCohortIdLoader` → `enrollments_by_cohort_id`), and the
module list is the one of loaders/__init__.py."""

import importlib
import inspect

from loaders import MODULES
from loaders.base import UpstreamLoader, registry_name
from loaders.engines import Upstream
from loaders.registry import Loaders, module_metadata


def loader_classes() -> dict[str, type[UpstreamLoader]]:
    found: dict[str, type[UpstreamLoader]] = {}
    for module in MODULES:
        for _, obj in inspect.getmembers(importlib.import_module(f"loaders.{module}")):
            if (
                inspect.isclass(obj)
                and issubclass(obj, UpstreamLoader)
                and obj is not UpstreamLoader
            ):
                found[registry_name(obj)] = obj
    return found


async def test_every_loader_class_is_an_attribute_named_after_it(tmp_path) -> None:
    upstream = Upstream(dict.fromkeys(MODULES, f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"))
    try:
        loaders = Loaders(upstream)
        attributes = {
            name: type(value)
            for name, value in vars(loaders).items()
            if isinstance(value, UpstreamLoader)
        }
    finally:
        await upstream.dispose()
    assert attributes == loader_classes()
    assert len(attributes) == 13


def test_each_module_has_the_contracts_tables_and_every_loader_reads_its_own_module() -> None:
    for name, cls in loader_classes().items():
        assert cls.module in MODULES, name
        assert importlib.import_module(f"loaders.{cls.module}") is inspect.getmodule(cls), name
    # docs/upstream.md's tables, module by module.
    assert {m: sorted(module_metadata(m).tables) for m in MODULES} == {
        "programs": [
            "cohorts",
            "enrollments",
            "milestones",
            "programs",
            "track_directors",
            "tracks",
            "users",
        ],
        "mentorship": ["mentor_assignments", "mentors", "mentorship_sessions"],
        "talentscope": ["competency_scores", "readiness_scores"],
        "missions": ["mission_submissions", "missions"],
        "portfolio": ["portfolio_items"],
        "billing": ["payments", "refunds"],
    }
