"""Per-request cost of the security plugin (headers, CSP nonce, rate limiting) by storage.

Run: .venv/bin/python bench/bench_security.py [--requests N]

Prints requests per second through Flask's test client for a tiny JSON route, for the
core alone (baseline) and with the security plugin counting in memory, in Redis (the
shared server on 127.0.0.1:6379, keys under stevedores:ratelimit:), and with Redis down
behind an open breaker. Ratios are against the baseline measured in the same run; the
machine is shared, so compare ratios, not absolute figures.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import time
from typing import Any

from flask import Flask, jsonify

from stevedores import create_app, hookimpl


class TinyRoute:
    """A plugin with one small JSON route."""

    @hookimpl
    def stevedores_startup(self, app: Flask) -> None:
        app.add_url_rule("/bench", "bench", lambda: jsonify(ok=True))


def _app(plugins: str, **env: str) -> Any:
    tmp = tempfile.mkdtemp()
    environ = {"FLASK_ENV": "testing", "DATABASE_URL": f"sqlite:///{tmp}/b.db", "LOG_FILE": "none",
               "SECRET_KEY": "b" * 40, "WEB_WORKERS": "1", "RATE_LIMITS": "1000000 per hour;1000000 per minute",
               "STEVEDORES_PLUGINS": plugins, "LOG_LEVEL": "ERROR", **env}
    return create_app(environ, extra_plugins=[("tiny", TinyRoute())])


def _rate(app: Any, n: int) -> float:
    client = app.test_client()
    for _ in range(50):
        client.get("/bench")
    started = time.perf_counter()
    for _ in range(n):
        response = client.get("/bench")
        assert response.status_code == 200, response.status_code
    return n / (time.perf_counter() - started)


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.3):
            return True
    except OSError:
        return False


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    n = parser.parse_args().requests
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    cases = [("core only (baseline)", _app("tiny")), ("security, memory", _app("security,tiny"))]
    if _redis_up():
        cases.append(("security, Redis", _app("security,redis_resilience,tiny", REDIS_URL="redis://127.0.0.1:6379/0")))
    down = _app("security,redis_resilience,tiny", REDIS_URL=f"redis://127.0.0.1:{dead_port}/0",
                REDIS_BREAKER_FAILURE_THRESHOLD="1", REDIS_BREAKER_RECOVERY_TIMEOUT="3600")
    cases.append(("security, Redis down (breaker open)", down))
    baseline = None
    print(f"{n} requests each, Flask test client, one thread")
    for name, app in cases:
        rate = _rate(app, n)
        baseline = baseline or rate
        print(f"{name:40s} {rate:8.0f} req/s  {rate / baseline:5.2f}x baseline  {1e6 / rate:7.0f} us/request")
        app.extensions["stevedores"].shutdown(app)


if __name__ == "__main__":
    main()
