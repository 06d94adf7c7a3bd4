"""Hook implementations of the memory_guard plugin."""

from __future__ import annotations

from stevedores import Int, Setting, WorkerProposal, hookimpl
from stevedores.settings import Config


@hookimpl
def stevedores_settings() -> list[Setting]:
    """The container's memory limit override and the per-worker memory budget."""
    return [
        Setting("MEMORY_LIMIT_MB", Int(min=32), None,
                "Container memory limit in MB (overrides the detected cgroup limit)."),
        Setting("WORKER_MEMORY_MB", Int(min=16), 64, "Memory budget per gunicorn worker in MB."),
    ]


@hookimpl
def stevedores_worker_limits(config: Config) -> WorkerProposal | None:
    """At most MEMORY_LIMIT_MB / WORKER_MEMORY_MB workers."""
    limit_mb = config["MEMORY_LIMIT_MB"]
    if limit_mb is None:
        return None
    by_memory = limit_mb // config["WORKER_MEMORY_MB"]
    return WorkerProposal(by_memory, f"{limit_mb}MB / {config['WORKER_MEMORY_MB']}MB per worker",
                          {"Container Memory": f"{limit_mb}MB", "Max Workers by Memory": str(by_memory)})
