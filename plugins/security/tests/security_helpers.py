"""Shared bits of the security plugin's tests (imported by the test modules)."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, abort, jsonify

from stevedores import get_service, hookimpl

REQUIRED = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy")


class ProbePlugin:
    """A test-only plugin: routes for 500s, two ordinary routes, and a view limited through
    the ``rate_limits`` service (as the operations plugin would)."""

    @hookimpl
    def stevedores_startup(self, app: Flask) -> None:
        rate_limits = get_service(app, "rate_limits")
        limit_login = rate_limits.limit("2 per minute", scope="logins",
                                        deduct_when=lambda response: response.status_code == 401)
        limit_tallies = rate_limits.limit("3 per minute", scope="tallies")

        @app.get("/probe/boom")
        def probe_boom():  # noqa: ANN202
            raise RuntimeError("boom")

        @app.get("/probe/a")
        def probe_a():  # noqa: ANN202
            return jsonify(page="a")

        @app.get("/probe/b")
        def probe_b():  # noqa: ANN202
            return jsonify(page="b")

        @app.post("/probe/login/<outcome>")
        @limit_login
        def probe_login(outcome: str):  # noqa: ANN202
            if outcome != "ok":
                abort(401)
            return jsonify(ok=True)

        @app.post("/probe/tally/<int:n>")
        @limit_tallies
        def probe_tally(n: int):  # noqa: ANN202
            return jsonify(tally=n)

        @app.post("/probe/tally-too")
        @limit_tallies
        def probe_tally_too():  # noqa: ANN202
            return jsonify(tally="too")


def assert_security_headers(response: Any, where: str) -> None:
    """Every security header is present, with the values the issue asks for."""
    missing = [name for name in REQUIRED if name not in response.headers]
    assert not missing, f"{where}: missing {missing} (status {response.status_code})"
    policy = response.headers["Content-Security-Policy"]
    assert "object-src 'none'" in policy and "frame-ancestors 'none'" in policy, where
    assert response.headers["X-Frame-Options"] == "DENY", where
    assert response.headers["X-Content-Type-Options"] == "nosniff", where


def nonce_of(policy: str, directive: str) -> str | None:
    """The nonce a directive of ``policy`` carries."""
    for part in policy.split(";"):
        words = part.split()
        if words and words[0] == directive:
            found = re.search(r"'nonce-([^']+)'", part)
            return found.group(1) if found else None
    return None


class Recorder:
    """A telemetry sink that keeps what it is told."""

    def __init__(self) -> None:
        self.counts: list[tuple[str, dict]] = []
        self.gauges: list[tuple[str, float, dict]] = []

    def count(self, name: str, amount: float, labels: dict) -> None:
        self.counts.append((name, labels))

    def gauge(self, name: str, value: float, labels: dict) -> None:
        self.gauges.append((name, value, labels))

    def observe(self, name: str, value: float, labels: dict) -> None:
        pass
