"""The result of one health run: per-check results, the summary and the overall status.

Mapping of a check's status word to the summary (docs/plugins.md lists the words):

========================  ==========  =================================================
check status              summary     effect on the overall status
========================  ==========  =================================================
healthy                   passed      none
degraded, warning         warnings    degraded (HTTP 200)
error, unhealthy          failed      critical check: unhealthy (503); other: degraded
raised, timed out, bad    failed      as above (status ``error``)
========================  ==========  =================================================
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, Mapping

PASSED, WARNING, FAILED = "passed", "warning", "failed"
OUTCOME_OF_STATUS = {"healthy": PASSED, "degraded": WARNING, "warning": WARNING, "error": FAILED,
                     "unhealthy": FAILED}
HEALTHY, DEGRADED, UNHEALTHY = "healthy", "degraded", "unhealthy"


@dataclass(frozen=True)
class CheckResult:
    """One check's result as the health plugin reports it.

    ``figures`` are what the check returned besides ``status`` (raw: use the report's
    public rendering for anyone but operators). ``error``/``error_detail`` are the public
    and operator texts of a failure (exception, timeout, invalid result).
    """

    name: str
    plugin: str
    critical: bool
    status: str
    response_time_ms: float
    figures: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_detail: str | None = None
    description: str = ""
    public: tuple[str, ...] = ()

    @property
    def outcome(self) -> str:
        """``passed``, ``warning`` or ``failed``."""
        return OUTCOME_OF_STATUS.get(self.status, FAILED)

    def as_dict(self, *, public_figures: Mapping[str, Any] | None = None, operator: bool = False,
                documented_only: bool = False) -> dict[str, Any]:
        """JSON-ready form: status and response_time_ms first, then figures, then the error.

        Operators get the raw figures; anyone else the scrubbed ``public_figures``, and with
        ``documented_only`` only those the check declared ``public`` (anonymous /health).
        """
        out: dict[str, Any] = {"status": self.status, "response_time_ms": self.response_time_ms,
                               "critical": self.critical}
        figures = self.figures if operator or public_figures is None else public_figures
        if documented_only and not operator:
            figures = {k: v for k, v in figures.items() if k in self.public}
        for key, value in figures.items():
            out.setdefault(key, value)
        if self.error:
            out["error"] = self.error_detail if operator and self.error_detail else self.error
        return out


@dataclass
class Report:
    """One run of some checks, taken at ``timestamp`` (UTC) / ``taken_at`` (monotonic)."""

    results: list[CheckResult]
    timestamp: datetime
    taken_at: float
    public_figures: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def now(cls, results: list[CheckResult], public_figures: dict[str, Mapping[str, Any]]) -> Report:
        """A report stamped with the current time."""
        return cls(results, datetime.now(timezone.utc), time.monotonic(), public_figures)

    @cached_property
    def summary(self) -> dict[str, int]:
        """total_checks, passed, failed, warnings."""
        outcomes = [r.outcome for r in self.results]
        return {"total_checks": len(outcomes), "passed": outcomes.count(PASSED), "failed": outcomes.count(FAILED),
                "warnings": outcomes.count(WARNING)}

    @cached_property
    def status(self) -> str:
        """unhealthy if a critical check failed; degraded on any other failure or warning; else healthy."""
        if any(r.critical and r.outcome == FAILED for r in self.results):
            return UNHEALTHY
        if any(r.outcome != PASSED for r in self.results):
            return DEGRADED
        return HEALTHY

    @cached_property
    def http_status(self) -> int:
        """503 when unhealthy, 200 otherwise (a degraded instance stays in rotation)."""
        return 503 if self.status == UNHEALTHY else 200

    @cached_property
    def critical_ok(self) -> bool:
        """True when no critical check failed (readiness)."""
        return not any(r.critical and r.outcome == FAILED for r in self.results)

    def age(self) -> float:
        """Seconds since the run finished."""
        return max(0.0, time.monotonic() - self.taken_at)

    @property
    def iso_timestamp(self) -> str:
        """``2025-01-06T12:00:00Z``."""
        return self.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")

    def as_dict(self, *, operator: bool = False, documented_only: bool = False) -> dict[str, Any]:
        """The guide's shape: status, timestamp, checks, summary (see :meth:`CheckResult.as_dict`)."""
        return {
            "status": self.status,
            "timestamp": self.iso_timestamp,
            "checks": {r.name: r.as_dict(public_figures=self.public_figures.get(r.name), operator=operator,
                                         documented_only=documented_only)
                       for r in self.results},
            "summary": self.summary,
        }

    def quick_dict(self) -> dict[str, Any]:
        """The /health/quick form: the same top level, each check's status (and public error) only.

        Timings and figures stay at /health: they differ between workers and runs, while a
        load balancer needs the verdict, and a body whose length only changes when a status
        does keeps load tools' length checks (ab) meaningful.
        """
        checks: dict[str, Any] = {}
        for r in self.results:
            entry: dict[str, Any] = {"status": r.status, "critical": r.critical}
            if r.error:
                entry["error"] = r.error
            checks[r.name] = entry
        return {"status": self.status, "timestamp": self.iso_timestamp, "checks": checks, "summary": self.summary}

    @cached_property
    def quick_json(self) -> str:
        """The public /health/quick JSON, computed once per report (the fast path)."""
        return dumps(self.quick_dict())

    def quick_json_with_age(self, age: float) -> bytes:
        """:attr:`quick_json` plus ``age_seconds`` and ``cached``, without re-serialising the checks.

        The age is padded with JSON whitespace to a fixed width, so the body keeps one length
        while the statuses do not change.
        """
        return (self.quick_json[:-1] + f', "age_seconds": {age:.3f},'.ljust(30) + ' "cached": true}').encode()


def dumps(data: Any) -> str:
    """JSON text; anything not JSON-native becomes its string form."""
    return json.dumps(data, default=str, separators=(", ", ": "))
