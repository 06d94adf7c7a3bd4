"""The per-app object that ties settings, resources, the monitor, the health check and the gc action."""

from __future__ import annotations

import gc
import logging
import os
import signal
from typing import Any, Mapping

from .coordination import Coordinator
from .monitor import MemoryMonitor, Thresholds
from .processes import ProcessTree, process_memory
from .resources import Resources
from .sampling import MemorySampler

log = logging.getLogger("stevedores.memory_guard")

EXTENSION = "memory_guard"


def thresholds_from(config: Mapping[str, Any]) -> Thresholds:
    """The monitor's thresholds from the settings (raises ValueError naming the settings at fault)."""
    return Thresholds(warning_percent=config["MEMORY_WARNING_PERCENT"],
                      critical_percent=config["MEMORY_CRITICAL_PERCENT"],
                      interval=config["MEMORY_CHECK_INTERVAL"],
                      cooldown=config["MEMORY_RECYCLE_COOLDOWN"])


def graceful_exit(cause: str) -> None:
    """Ask this gunicorn worker to stop gracefully (SIGTERM to itself): it stops accepting,
    finishes the requests in flight, exits, and the master forks a replacement."""
    os.kill(os.getpid(), signal.SIGTERM)


class MemoryGuard:
    """Memory figures and the monitor of one app in one process (``app.extensions["memory_guard"]``)."""

    def __init__(self, config: Mapping[str, Any], telemetry: Any) -> None:
        self.config = config
        self.telemetry = telemetry
        self.thresholds = thresholds_from(config)
        self.resources = Resources.from_config(config)
        self.limit = self.resources.memory_limit()
        self.tree = ProcessTree(None)
        self.monitor: MemoryMonitor | None = None

    def sampler(self) -> MemorySampler:
        """A sampler over this process's tree (the gunicorn master and workers once started)."""
        return MemorySampler(self.resources, self.tree, self.limit)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, worker: Any | None) -> None:
        """Start the monitor in this (post-fork) process; recycling only under gunicorn."""
        self.stop()
        master = getattr(worker, "ppid", None) if worker is not None else None
        self.tree = ProcessTree(master if master else None)
        coordinator = Coordinator.for_tree(master or os.getpid())
        self.monitor = MemoryMonitor(self.sampler(), self.tree.workers, coordinator, self.telemetry,
                                     self.thresholds, graceful_exit if worker is not None else None,
                                     stopping=lambda: worker is not None and not getattr(worker, "alive", True))
        self.monitor.start()
        log.info("Memory monitor started in pid %d: limit %dMB (%s), warning %g%%, critical %g%%, every %gs",
                 os.getpid(), self.limit.mb, self.limit.source, self.thresholds.warning_percent,
                 self.thresholds.critical_percent, self.thresholds.interval)

    def stop(self) -> None:
        """Stop the monitor thread, if any."""
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None

    # --- figures -------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The "memory" health check: healthy below the warning threshold, degraded at or above."""
        sample = self.sampler().sample()
        members = self.tree.members()
        return {
            "status": self.thresholds.status(sample.percent),
            **sample.as_dict(),
            "warning_percent": self.thresholds.warning_percent,
            "critical_percent": self.thresholds.critical_percent,
            "monitor": self.monitor.state if self.monitor and self.monitor.running else "not running",
            "workers": [m.as_dict() for m in members if m.role != "master"],
            "master": next((m.as_dict() for m in members if m.role == "master"), None),
        }

    def collect_garbage(self) -> dict[str, Any]:
        """Run gc.collect() in this process; memory of this process and the container before and after."""
        before_process, before = process_memory(os.getpid()), self.sampler().sample()
        collected = gc.collect()
        after_process, after = process_memory(os.getpid()), self.sampler().sample()
        log.info("Operator gc.collect() in pid %d: %d objects collected; container %s -> %s",
                 os.getpid(), collected, before.describe(), after.describe())
        return {
            "pid": os.getpid(),
            "collected_objects": collected,
            "before": {"process": before_process.as_dict() if before_process else None, **before.as_dict()},
            "after": {"process": after_process.as_dict() if after_process else None, **after.as_dict()},
        }
