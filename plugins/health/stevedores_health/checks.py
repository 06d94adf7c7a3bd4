"""The health plugin's own checks: database (critical), application and system.

They are contributed through the plugin's ``stevedores_health_checks`` hook like any
third party's, and figures never include URLs, host names or paths.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from stevedores import HealthCheck
from stevedores.settings import MIN_SECRET_KEY_LENGTH

if TYPE_CHECKING:
    from flask import Flask

    from stevedores import Runtime

#: A database round trip slower than this is reported as degraded.
SLOW_DATABASE_MS = 1000.0


def database_check(runtime: Runtime, timeout: float) -> HealthCheck:
    """Critical: one real ``SELECT 1`` through the core's engine, with the pool's figures."""

    def database() -> dict[str, Any]:
        from sqlalchemy import text

        engine = runtime.engine
        started = time.perf_counter()
        with engine.connect() as conn:
            conn.execute(text("SELECT 1")).scalar_one()
        round_trip_ms = round((time.perf_counter() - started) * 1000, 2)
        return {"status": "degraded" if round_trip_ms > SLOW_DATABASE_MS else "healthy",
                "backend": engine.url.get_backend_name(), "round_trip_ms": round_trip_ms, **pool_figures(engine)}

    return HealthCheck("database", database, critical=True, timeout=timeout, public=("pool_size",),
                       description="A round trip to the database (DATABASE_URL) through the shared pool.")


def pool_figures(engine: Any) -> dict[str, int]:
    """pool_size, checked_out, overflow (and checked_in) of a SQLAlchemy pool, when it has them."""
    pool = engine.pool
    figures: dict[str, int] = {}
    for name, method in (("pool_size", "size"), ("checked_out", "checkedout"), ("overflow", "overflow"),
                         ("checked_in", "checkedin")):
        fn = getattr(pool, method, None)
        if callable(fn):
            try:
                figures[name] = max(0, int(fn()))  # QueuePool counts overflow from -pool_size
            except Exception:  # noqa: BLE001 - a pool without the figure
                continue
    return figures


def application_check(app: Flask, runtime: Runtime) -> HealthCheck:
    """Configuration sanity: debug off in production, a real secret key, no failed plugin."""

    def application() -> dict[str, Any]:
        config = runtime.config
        production = config.is_production
        key = config.get("SECRET_KEY") or ""
        ephemeral = config.sources.get("SECRET_KEY") == "generated"
        failed = [info.name for info in runtime.plugins.listing() if info.status == "failed"]
        problems: list[str] = []
        warnings: list[str] = []
        if production and app.debug:
            problems.append("debug mode is on in production")
        if production and (len(key) < MIN_SECRET_KEY_LENGTH or ephemeral):
            problems.append("SECRET_KEY is too short for production")
        if not key:
            problems.append("SECRET_KEY is not set")
        info: list[str] = []
        if ephemeral:  # only outside production (the production profile refuses to start without a key)
            info.append("SECRET_KEY is ephemeral, generated at start-up (sessions end on restart); "
                        "set SECRET_KEY to keep them")
        if failed:
            warnings.append(f"{len(failed)} plugin(s) failed to load: {', '.join(failed)}")
        status = "error" if problems else "warning" if warnings else "healthy"
        return {"status": status, "profile": config.profile, "debug": bool(app.debug),
                "secret_key_configured": bool(key) and not ephemeral, "plugins_active": len(runtime.plugins.active()),
                "plugins_failed": failed, "problems": problems + warnings, "info": info}

    return HealthCheck("application", application, critical=False, timeout=1.0,
                       description="Configuration sanity: debug off in production, secret key, plugins loaded.")


def host_cpus() -> float:
    """CPUs this process may run on (the affinity mask): the figure without a ``resources`` service."""
    try:
        return float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return float(os.cpu_count() or 1)


def system_check(disk_path: Callable[[], str], min_free_percent: float, load_per_cpu: float,
                 available_cpus: Callable[[], float] = host_cpus) -> HealthCheck:
    """Disk free space where the dashboard writes, and the load average per available CPU
    (``available_cpus``: the ``resources`` service's quota-aware count when offered)."""

    def system() -> dict[str, Any]:
        usage = shutil.disk_usage(disk_path())
        free_percent = round(usage.free / usage.total * 100, 1) if usage.total else 0.0
        cpus = round(available_cpus(), 2)
        load1, load5, load15 = os.getloadavg()
        per_cpu = round(load1 / cpus, 2)
        notes: list[str] = []
        status = "healthy"
        if free_percent < min_free_percent:
            notes.append(f"disk free {free_percent}% is below {min_free_percent:g}%")
            status = "error" if free_percent < 1 else "warning"
        if per_cpu > load_per_cpu:
            notes.append(f"load {per_cpu} per CPU is above {load_per_cpu:g}")
            status = "warning" if status == "healthy" else status
        return {"status": status, "disk_free_percent": free_percent, "disk_free_mb": usage.free // 2**20,
                "load_1m": round(load1, 2), "load_5m": round(load5, 2), "load_15m": round(load15, 2),
                "cpus": cpus, "load_per_cpu": per_cpu, "problems": notes}

    return HealthCheck("system", system, critical=False, timeout=1.0,
                       description="Disk free space and load average per CPU available to the container.")


def writable_location(runtime: Runtime) -> Callable[[], str]:
    """Where the dashboard writes: the SQLite file's directory, else the log directory, else the cwd."""

    def location() -> str:
        from sqlalchemy.engine import make_url

        url = make_url(runtime.config["DATABASE_URL"])
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            return _existing(Path(url.database).resolve().parent)
        log_file = runtime.config.get("LOG_FILE")
        if log_file and log_file.lower() != "none":
            return _existing(Path(log_file).resolve().parent)
        return os.getcwd()

    return location


def _existing(path: Path) -> str:
    while not path.exists() and path != path.parent:
        path = path.parent
    return str(path)
