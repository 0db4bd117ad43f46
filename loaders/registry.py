"""The per-request (or per-job) set of loaders; attribute names derive from class names."""

from typing import Any

from loaders import billing, mentorship, missions, portfolio, programs, talentscope
from loaders.base import UpstreamLoader, registry_name
from loaders.engines import Upstream

LOADER_CLASSES: tuple[type[UpstreamLoader], ...] = tuple(
    obj
    for module in (programs, mentorship, talentscope, missions, portfolio, billing)
    for obj in vars(module).values()
    if isinstance(obj, type) and issubclass(obj, UpstreamLoader) and obj is not UpstreamLoader
)


class Loaders:
    """Fresh DataLoaders bound to the running event loop; never share across requests."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        for cls in LOADER_CLASSES:
            setattr(self, registry_name(cls), cls(upstream))

    def __getattr__(self, name: str) -> Any:
        # Only reached for names no loader class defines.
        raise AttributeError(f"no loader named {name!r}")
