"""Hook implementations of the memory_guard plugin."""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping

from flask import Flask, jsonify

from stevedores import Float, HealthCheck, Int, Setting, StatusPanel, Str, WorkerProposal, hookimpl, operator_only
from stevedores.settings import Config, Problem
from stevedores.telemetry import Metric

from .coordination import Coordinator, remove_stale_files
from .guard import EXTENSION, MemoryGuard
from .resources import DEFAULT_CGROUP_ROOT, DEFAULT_PROC_CGROUP, Resources
from .sizing import cpu_proposal, memory_proposal

log = logging.getLogger("stevedores.memory_guard")


@hookimpl
def stevedores_settings() -> list[Setting]:
    """Memory limit and per-worker budget, the monitor's thresholds, and where the cgroup files are."""
    return [
        Setting("MEMORY_LIMIT_MB", Int(min=32), None,
                "Container memory limit in MB (overrides the detected cgroup limit; else the host's memory)."),
        Setting("WORKER_MEMORY_MB", Int(min=16), 64, "Memory budget per gunicorn worker in MB (sizes the workers)."),
        Setting("MEMORY_WARNING_PERCENT", Float(min=1, max=100), 75.0,
                "Container memory use (% of the limit) at which a warning is logged and /health is degraded."),
        Setting("MEMORY_CRITICAL_PERCENT", Float(min=1, max=100), 85.0,
                "Memory use (%) at which gc.collect() runs, then the largest worker is recycled if still above."),
        Setting("MEMORY_CHECK_INTERVAL", Float(min=0.1, max=3600), 5.0, "Seconds between memory samples."),
        Setting("MEMORY_RECYCLE_COOLDOWN", Float(min=0, max=86400), 60.0,
                "Seconds after a memory recycle during which no other worker is recycled."),
        Setting("MEMORY_CGROUP_ROOT", Str(), DEFAULT_CGROUP_ROOT, "Where the cgroup filesystem is mounted."),
        Setting("MEMORY_PROC_CGROUP", Str(), DEFAULT_PROC_CGROUP,
                "The file naming this process's cgroup (tests point both at a fake tree)."),
    ]


@hookimpl
def stevedores_check_config(config: Config) -> list[Problem]:
    """The critical threshold must lie above the warning one."""
    warning, critical = config["MEMORY_WARNING_PERCENT"], config["MEMORY_CRITICAL_PERCENT"]
    if critical > warning:
        return []
    return [Problem("MEMORY_CRITICAL_PERCENT",
                    f"{critical:g} must be above MEMORY_WARNING_PERCENT ({warning:g})")]


@hookimpl
def stevedores_services(config: Config) -> dict[str, Resources]:
    """``resources``: the container's CPU quota and memory limit (stevedores.contracts.ResourcesService)."""
    return {"resources": Resources.from_config(config)}


@hookimpl
def stevedores_worker_limits(config: Config) -> list[WorkerProposal]:
    """Two caps: limit / WORKER_MEMORY_MB workers by memory, 2 x quota-aware CPUs + 1 by CPU."""
    resources = Resources.from_config(config)
    return [memory_proposal(resources.memory_limit(), config["WORKER_MEMORY_MB"]),
            cpu_proposal(resources.cpu_quota())]


@hookimpl
def stevedores_server_starting() -> None:
    """In the gunicorn master: forget the coordination files of masters that are gone, and this pid's own."""
    remove_stale_files()
    Coordinator.for_tree(os.getpid()).reset()


@hookimpl
def stevedores_metrics() -> list[Metric]:
    """Container memory in use and its limit, and recycles by cause."""
    return [Metric("memory_used_bytes", "gauge", "Container memory in use (working set), latest reading."),
            Metric("memory_limit_bytes", "gauge", "Container memory limit.", "max"),
            Metric("worker_recycles_total", "counter", "Gunicorn worker recycles, by cause.")]


@hookimpl
def stevedores_startup(app: Flask, config: Config) -> None:
    """Resolve the limit, keep the guard in ``app.extensions``, add the operator's gc action."""
    guard = MemoryGuard(config, app.extensions["stevedores"].telemetry)
    app.extensions[EXTENSION] = guard

    @app.post("/ops/memory/gc")
    @operator_only(open_without_token=False)
    def memory_gc():  # noqa: ANN202
        """Force a garbage collection in the worker that serves this request."""
        response = jsonify(guard.collect_garbage())
        response.headers["Cache-Control"] = "no-store"
        return response


@hookimpl
def stevedores_health_checks(app: Flask) -> list[HealthCheck]:
    """Non-critical "memory" check: memory pressure alone never takes the instance out of rotation."""
    guard: MemoryGuard = app.extensions[EXTENSION]
    return [HealthCheck("memory", guard.health, critical=False, timeout=2.0, public=("memory_usage_percent",),
                        description="Container memory against its limit; degraded at the warning threshold.",
                        panel=memory_panel)]


def memory_panel(result: Mapping[str, Any]) -> StatusPanel | None:
    """The status page's card for the memory check: a meter with this plugin's thresholds."""
    percent = result.get("memory_usage_percent")
    if not isinstance(percent, (int, float)) or isinstance(percent, bool):
        return None
    used, limit = result.get("used_mb"), result.get("limit_mb")
    detail = f"{used} MB of {limit} MB" if used is not None and limit is not None else ""
    return StatusPanel("Memory", f"{percent}%", detail=detail, percent=float(percent),
                       warning_percent=result.get("warning_percent"), critical_percent=result.get("critical_percent"))


@hookimpl
def stevedores_worker_started(app: Flask, worker: Any) -> None:
    """After fork: offer this worker to the kernel's OOM killer before the master, and start
    this worker's memory monitor."""
    if worker is not None:  # a gunicorn worker (not the dev server's or a test's only process)
        prefer_worker_for_oom_kill()
    guard: MemoryGuard | None = app.extensions.get(EXTENSION)
    if guard is not None:
        guard.start(worker)


#: Added to a worker's OOM score (-1000..1000; raising one's own needs no privilege).
WORKER_OOM_SCORE_ADJ = 500


def prefer_worker_for_oom_kill(path: str = "/proc/self/oom_score_adj") -> None:
    """Make the kernel's OOM killer pick this worker rather than the gunicorn master.

    When the container's memory runs out faster than the monitor can recycle (seen in
    ``make soak`` on an overloaded 2-core machine: 449 MB to 512 MB within a second), the
    kernel kills the process with the highest OOM score, which was the preloaded master: the
    workers noticed "Parent changed" and the whole instance went down. A killed worker is
    only replaced. Source: proc(5), ``/proc/[pid]/oom_score_adj``. Never raises.
    """
    try:
        with open(path, "w") as adj:
            adj.write(str(WORKER_OOM_SCORE_ADJ))
    except OSError as exc:  # not Linux, or /proc read-only: the kernel's default choice stays
        log.debug("memory_guard: cannot set %s (%s)", path, exc)


@hookimpl
def stevedores_worker_exit(app: Flask) -> None:
    """The worker is exiting: stop its monitor."""
    guard: MemoryGuard | None = app.extensions.get(EXTENSION)
    if guard is not None:
        guard.stop()


@hookimpl
def stevedores_shutdown(app: Flask) -> None:
    """Stop the monitor if it still runs (tests, dev server)."""
    stevedores_worker_exit(app)
