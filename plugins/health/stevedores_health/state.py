"""Per-app state of the health plugin (kept in ``app.extensions["stevedores_health"]``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask

from .report import FAILED, CheckResult, Report
from .runner import CheckRunner, TransitionLog
from .snapshot import QuickSnapshot

if TYPE_CHECKING:
    from stevedores import Runtime

EXTENSION = "stevedores_health"


@dataclass(frozen=True)
class HealthSettings:
    """The health plugin's settings, typed (see settings.py)."""

    quick_ttl: float
    refresh_interval: float
    database_timeout: float
    disk_min_free_percent: float
    load_warn_per_cpu: float
    status_refresh: int
    cache_seconds: float = 1.0

    @classmethod
    def from_config(cls, config: Any) -> HealthSettings:
        """Read the HEALTH_* settings from the validated config."""
        return cls(config["HEALTH_QUICK_TTL"], config["HEALTH_REFRESH_INTERVAL"], config["HEALTH_DATABASE_TIMEOUT"],
                   config["HEALTH_DISK_MIN_FREE_PERCENT"], config["HEALTH_LOAD_WARN_PER_CPU"],
                   config["HEALTH_STATUS_REFRESH"], config["HEALTH_CACHE_SECONDS"])


class HealthState:
    """The runner, the /health/quick snapshot and cached figures of one app."""

    def __init__(self, app: Flask, runtime: Runtime, settings: HealthSettings) -> None:
        self.app, self.runtime, self.settings = app, runtime, settings
        self.snapshot = QuickSnapshot(self.run_all, settings.quick_ttl, settings.refresh_interval)
        self._runner: CheckRunner | None = None
        self._lock = threading.Lock()
        self._critical: Report | None = None
        self._transitions = TransitionLog()

    @property
    def runner(self) -> CheckRunner:
        """The check runner, built on first use from the checks the core collected at start-up."""
        if self._runner is None:
            with self._lock:
                if self._runner is None:
                    self._runner = CheckRunner(self.runtime.health_checks, secrets=self.runtime.config.secret_values(),
                                               on_result=self._report_result)
        return self._runner

    def run_all(self) -> Report:
        """Every check, concurrently; the result also becomes /health/quick's snapshot."""
        report = self.runner.run()
        self.snapshot.publish(report)
        return report

    def run_critical(self) -> Report:
        """Only the critical checks (readiness)."""
        return self.runner.run(critical_only=True)

    def recent_all(self) -> Report:
        """Every check's result at most HEALTH_CACHE_SECONDS old (/health): the newest report
        (any /health request's or the background refresher's), else a fresh run."""
        report = self.snapshot.report
        if report is not None and report.age() < self.settings.cache_seconds:
            return report
        return self.run_all()

    def recent_critical(self) -> Report:
        """The critical checks' result at most HEALTH_CACHE_SECONDS old (/health/ready)."""
        report = self._critical
        if report is None or report.age() >= self.settings.cache_seconds:
            report = self._critical = self.run_critical()
        return report

    def _report_result(self, result: CheckResult) -> None:
        telemetry = self.runtime.telemetry
        if telemetry.active:
            telemetry.gauge("health_check_status", 0.0 if result.outcome == FAILED else 1.0, check=result.name)
            telemetry.observe("health_check_duration_seconds", result.response_time_ms / 1000, check=result.name)
        self._transitions(result)

    def start(self) -> None:
        """In a worker after fork: start the snapshot refresher."""
        self.snapshot.start()

    def stop(self) -> None:
        """Worker exit: stop the refresher."""
        self.snapshot.stop()

    def shutdown(self) -> None:
        """App shutdown: stop the refresher and release the pool's idle threads."""
        self.snapshot.stop()
        if self._runner is not None:
            self._runner.shutdown()


def get_state(app: Flask) -> HealthState:
    """The health plugin's state of ``app``."""
    return app.extensions[EXTENSION]
