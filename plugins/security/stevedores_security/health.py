"""The "security" and "rate_limiter" health checks.

"security" sends one in-process request through the whole app (a static file, never
rate limited) and fails only when a security header is actually missing from the
answer; the result is kept for a minute (the headers cannot change while the process
runs). "rate_limiter" reports the storage in use and why; memory while Redis is
configured is "degraded" (limits still hold, per worker), never a failure.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from flask import Flask

from .counting import ResilientCounter, reason_for

SELF_TEST_TTL = 60.0


class SecurityCheck:
    """The "security" check: Talisman initialised, CSP enabled, headers really present."""

    def __init__(self, app: Flask, policy: dict[str, str], production: bool) -> None:
        self.app = app
        self.policy = policy
        self.production = production
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def required_headers(self) -> list[str]:
        """Headers every response must carry (HSTS only on HTTPS in production)."""
        names = ["Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy"]
        return names + (["Strict-Transport-Security"] if self.production else [])

    def __call__(self) -> dict[str, Any]:
        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < SELF_TEST_TTL:
                return self._cached[1]
        result = self._run()
        with self._lock:
            self._cached = (time.monotonic(), result)
        return result

    def _run(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "talisman_initialized": "csp_nonce" in self.app.jinja_env.globals,
            "csp_enabled": bool(self.policy),
            "csp_directives": len(self.policy),
            "hsts": self.production,
            "force_https": self.production,
        }
        path = self._probe_path()
        try:
            client = self.app.test_client()
            response = client.head(path, base_url="https://localhost" if self.production else "http://localhost")
            headers = response.headers
            response.close()
        except Exception as exc:  # noqa: BLE001 - report, never raise
            return {**figures, "status": "warning", "self_test": f"could not run: {type(exc).__name__}: {exc}"}
        missing = [name for name in self.required_headers() if name not in headers]
        figures.update(self_test_path=path, missing_headers=missing)
        ok = not missing and figures["talisman_initialized"] and figures["csp_enabled"]
        return {**figures, "status": "healthy" if ok else "unhealthy"}

    def _probe_path(self) -> str:
        for rule in self.app.url_map.iter_rules():
            if rule.endpoint == "static":
                return rule.rule.replace("<path:filename>", "stevedores.css")
        return "/.stevedores-security-self-test"


class RateLimiterCheck:
    """The "rate_limiter" check: storage in use (redis or memory) and why."""

    def __init__(self, counter: ResilientCounter, app_limits: str, rate_limits: Any) -> None:
        self.counter = counter
        self.app_limits = app_limits
        self.rate_limits = rate_limits

    def __call__(self) -> dict[str, Any]:
        counter = self.counter
        redis = counter.redis
        storage, reason = counter.storage_in_use, counter.reason
        if redis is not None and redis.state == "open":
            # The next counted request goes to memory without asking Redis: say so now,
            # not only after a request has been counted.
            storage, reason = "memory", reason_for("open")
        figures: dict[str, Any] = {
            "storage": storage,
            "reason": reason,
            "limits": self.app_limits or "none",
            "scope": "per client across the whole app",
            "memory_limit_divisor": counter.instances,
            "fallback_shared_by": counter.fallback_scope,
            "refusals": self.rate_limits.refusals,
        }
        if redis is not None:
            figures["redis_state"] = redis.state
        degraded = redis is not None and storage == "memory"
        return {**figures, "status": "degraded" if degraded else "healthy"}
