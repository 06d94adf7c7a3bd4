"""One reading of the container's memory against its limit."""

from __future__ import annotations

from dataclasses import dataclass

from .processes import ProcessTree
from .resources import MB, MemoryLimit, Resources


@dataclass(frozen=True)
class MemorySample:
    """Memory in use against the limit, and where each figure came from."""

    used_bytes: int
    limit_bytes: int
    usage_source: str  # "cgroup working set" or "process tree PSS"
    limit_source: str

    @property
    def percent(self) -> float:
        """Usage as a percentage of the limit."""
        return 100.0 * self.used_bytes / self.limit_bytes if self.limit_bytes else 0.0

    def describe(self) -> str:
        """``390MB of 512MB (76.2%)``, as the deployment guide logs it."""
        return f"{self.used_bytes / MB:.0f}MB of {self.limit_bytes / MB:.0f}MB ({self.percent:.1f}%)"

    def as_dict(self) -> dict[str, object]:
        """JSON-ready figures."""
        return {"used_mb": round(self.used_bytes / MB, 1), "limit_mb": round(self.limit_bytes / MB, 1),
                "memory_usage_percent": round(self.percent, 1), "usage_source": self.usage_source,
                "limit_source": self.limit_source}


class MemorySampler:
    """Reads the container working set (cgroup) or, without a cgroup limit, the process tree's PSS.

    The limit is resolved once (settings and cgroup files do not change under a
    running process; a garbage file is then logged once, not at every sample).
    """

    def __init__(self, resources: Resources, tree: ProcessTree, limit: MemoryLimit | None = None) -> None:
        self.resources = resources
        self.tree = tree
        self.limit = limit or resources.memory_limit()

    def sample(self) -> MemorySample:
        """Read the memory in use now."""
        used = self.resources.reader.working_set(self.limit) if self.limit.cgroup_dir else None
        if used is not None:
            return MemorySample(used, self.limit.bytes, "cgroup working set", self.limit.source)
        return MemorySample(self.tree.total_pss(), self.limit.bytes, "process tree PSS", self.limit.source)
