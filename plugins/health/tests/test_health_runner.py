"""/health's runner in one process: concurrency, timeouts, status mapping, no leaks, the snapshot."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from typing import Any, Callable

import pytest
from stevedores_health.state import get_state

from stevedores import HealthCheck, StatusPanel, hookimpl, is_infrastructure


def _checks(response: Any) -> dict[str, Any]:
    return response.get_json()["checks"]


def test_a_hanging_and_a_raising_check_fail_while_the_others_report(health_app: Callable) -> None:
    release = threading.Event()
    app = health_app(
        HealthCheck("stuck", lambda: release.wait(30) and {"status": "healthy"}, timeout=0.5),
        HealthCheck("broken", lambda: 1 / 0, timeout=0.5),
        HealthCheck("cranes", lambda: {"status": "healthy", "online": 3, "feed_pid": 42}, timeout=0.5,
                    public=("online",)),
    )
    client = app.test_client()
    try:
        started = time.monotonic()
        response = client.get("/health")
        elapsed = time.monotonic() - started
    finally:
        release.set()
    body = response.get_json()
    assert elapsed < 0.5 + 1.5, f"took {elapsed:.2f}s although every timeout is 0.5s"
    assert response.status_code == 200 and body["status"] == "degraded"  # only non-critical failures
    assert body["checks"]["stuck"]["status"] == "error"
    assert body["checks"]["stuck"]["error"] == "TimeoutError: did not finish within 0.5s"
    assert body["checks"]["broken"]["error"] == "ZeroDivisionError: division by zero"
    assert body["checks"]["cranes"] == {"status": "healthy", "response_time_ms": body["checks"]["cranes"][
        "response_time_ms"], "critical": False, "online": 3}
    assert body["checks"]["database"]["status"] == "healthy"
    assert body["summary"] == {"total_checks": 6, "passed": 4, "failed": 2, "warnings": 0}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["timestamp"])
    assert list(body) == ["status", "timestamp", "checks", "summary"]
    assert all(isinstance(c["response_time_ms"], float) for c in body["checks"].values())
    assert response.headers["Cache-Control"] == "no-store"


def test_a_critical_failure_makes_the_instance_unhealthy(health_app: Callable) -> None:
    def payments() -> dict[str, str]:
        raise ConnectionError("refused")

    client = health_app(HealthCheck("payments", payments, critical=True)).test_client()
    response = client.get("/health")
    assert response.status_code == 503 and response.get_json()["status"] == "unhealthy"
    assert client.get("/health/ready").status_code == 503
    assert client.get("/health/live").status_code == 200


def test_status_words_map_to_the_summary(health_app: Callable) -> None:
    words = ["healthy", "degraded", "warning", "error", "unhealthy"]
    checks = [HealthCheck(w, lambda w=w: {"status": w}) for w in words]
    checks += [HealthCheck("none", lambda: None), HealthCheck("bogus", lambda: {"status": "fine"})]
    body = health_app(*checks).test_client().get("/health").get_json()
    assert body["summary"] == {"total_checks": 10, "passed": 4, "failed": 4, "warnings": 2}
    assert body["status"] == "degraded"
    assert body["checks"]["none"]["error"] == "InvalidResult: returned NoneType, not a mapping"
    assert body["checks"]["bogus"]["error"].startswith("InvalidResult: status <redacted> is not one of healthy")
    assert body["checks"]["unhealthy"]["status"] == "unhealthy"  # the check's own word is kept


def test_a_hung_check_is_not_started_again_and_holds_one_thread(health_app: Callable) -> None:
    calls: list[int] = []
    release = threading.Event()

    def hung() -> dict[str, str]:
        calls.append(1)
        release.wait(30)
        return {"status": "healthy"}

    app = health_app(HealthCheck("hung", hung, timeout=0.3))
    client = app.test_client()
    try:
        first = client.get("/health").get_json()["checks"]["hung"]
        time.sleep(0.2)
        later = [client.get("/health").get_json()["checks"]["hung"] for _ in range(5)]
        threads = get_state(app).runner.pool.threads
    finally:
        release.set()
    assert first["error"].startswith("TimeoutError")
    assert all(c["status"] == "error" for c in later)
    assert "still running after" in later[-1]["error"]
    assert len(calls) == 1
    assert threads <= 2 * 4 + 1  # bounded by the pool, whatever the number of requests


def test_concurrent_requests_share_one_execution_of_each_check(health_app: Callable) -> None:
    calls: list[int] = []

    def slow() -> dict[str, str]:
        calls.append(1)
        time.sleep(1.0)
        return {"status": "healthy"}

    app = health_app(HealthCheck("slow", slow, timeout=2))
    codes: list[int] = []

    def hit() -> None:
        codes.append(app.test_client().get("/health").status_code)

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert codes == [200] * 8
    assert len(calls) <= 2, f"{len(calls)} executions for 8 concurrent requests"


def test_public_json_leaks_nothing_and_operators_see_the_detail(health_app: Callable) -> None:
    token = "ops-token-" + "z" * 24

    def leaky() -> dict[str, Any]:
        raise RuntimeError(f"could not reach redis://admin:hunter2@cache.internal:6379/0 at 10.1.2.3 "
                           f"(host=db.example.com port 6543) with {token}\nTraceback (most recent call last): ...")

    def chatty() -> dict[str, Any]:
        return {"status": "healthy", "url": "postgresql://app:pw@db.example.com/prod", "server_host": "db-7",
                "note": "replica at 10.9.8.7 /var/lib/secret/thing", "connections": 4}

    chatty_check = HealthCheck("chatty", chatty, public=("url", "server_host", "note", "connections"))
    app = health_app(HealthCheck("leaky", leaky), chatty_check, env={"OPS_TOKEN": token})
    client = app.test_client()
    for path in ("/health", "/health/quick", "/health/ready"):
        public = client.get(path).get_data(as_text=True)
        for leak in ("hunter2", "cache.internal", "10.1.2.3", "db.example.com", "6543", "redis://", token,
                     "postgresql://", "db-7", "10.9.8.7", "/var/lib", "Traceback"):
            assert leak not in public, f"{leak!r} leaked in {path}: {public}"
    for path in ("/health", "/health/quick"):
        checks = client.get(path).get_json()["checks"]
        assert checks["leaky"]["error"].startswith("RuntimeError: could not reach <redacted>")
    checks = client.get("/health").get_json()["checks"]
    assert checks["chatty"]["connections"] == 4 and "url" not in checks["chatty"]
    assert "note" in checks["chatty"] and "server_host" not in checks["chatty"]
    operator = client.get("/health", headers={"Authorization": f"Bearer {token}"}).get_json()["checks"]
    assert "cache.internal" in operator["leaky"]["error"] and "Traceback" in operator["leaky"]["error"]
    assert token not in json.dumps(operator)  # secrets are never shown, not even to operators
    assert operator["chatty"]["url"] == "postgresql://app:pw@db.example.com/prod"
    assert client.get("/status").status_code == 401 and client.get("/status.json").status_code == 401
    assert client.get("/health/quick").status_code == 200  # probes never need the token


def test_figures_are_reported_to_telemetry(health_app: Callable) -> None:
    app = health_app(HealthCheck("broken", lambda: 1 / 0))
    seen: list[tuple[str, str, float, dict]] = []

    class Sink:
        def count(self, name: str, amount: float, labels: dict) -> None:
            seen.append(("count", name, amount, labels))

        def gauge(self, name: str, value: float, labels: dict) -> None:
            seen.append(("gauge", name, value, labels))

        def observe(self, name: str, value: float, labels: dict) -> None:
            seen.append(("observe", name, value, labels))

    app.extensions["stevedores"].telemetry.subscribe(Sink())
    app.test_client().get("/health")
    gauges = {labels["check"]: value for kind, name, value, labels in seen
              if kind == "gauge" and name == "health_check_status"}
    assert gauges == {"database": 1.0, "application": 1.0, "system": 1.0, "broken": 0.0}
    durations = [v for kind, name, v, _ in seen if kind == "observe" and name == "health_check_duration_seconds"]
    assert len(durations) == 4 and all(0 <= d < 5 for d in durations)


def test_quick_answers_from_the_snapshot_and_refreshes_past_the_ttl(health_app: Callable) -> None:
    state: dict[str, Any] = {"status": "healthy"}

    def flappy() -> dict[str, str]:
        time.sleep(state["delay"])
        return {"status": state["status"]}

    state["delay"] = 0.0
    app = health_app(HealthCheck("flappy", flappy, critical=True, timeout=5), env={"HEALTH_QUICK_TTL": "1"})
    client = app.test_client()
    first = client.get("/health/quick")  # no snapshot yet: runs once, bounded by the timeouts
    assert first.status_code == 200 and first.get_json()["cached"] is True
    state["status"], state["delay"] = "unhealthy", 1.5
    again = client.get("/health/quick")
    assert again.status_code == 200, "within the TTL the snapshot is served as is"
    time.sleep(1.1)
    started = time.monotonic()
    stale = client.get("/health/quick")
    assert time.monotonic() - started < 0.75, "a stale snapshot is served at once, not after the 1.5 s refresh"
    assert stale.status_code == 200 and stale.get_json()["age_seconds"] >= 1 and int(stale.headers["Age"]) >= 1
    deadline = time.monotonic() + 10
    while client.get("/health/quick").status_code != 503 and time.monotonic() < deadline:
        time.sleep(0.05)
    fresh = client.get("/health/quick")
    assert fresh.status_code == 503 and fresh.get_json()["checks"]["flappy"]["status"] == "unhealthy"
    assert fresh.get_json()["age_seconds"] < 1


def test_the_refresher_runs_after_worker_start_and_stops_at_exit(health_app: Callable) -> None:
    app = health_app(env={"HEALTH_REFRESH_INTERVAL": "1"})
    runtime, state = app.extensions["stevedores"], get_state(app)
    assert state.snapshot.report is None and not state.snapshot.running  # nothing runs before a worker starts
    runtime.worker_started(app)
    deadline = time.monotonic() + 5
    while state.snapshot.report is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert state.snapshot.running and state.snapshot.report is not None
    first = state.snapshot.report.taken_at
    while state.snapshot.report.taken_at == first and time.monotonic() < deadline + 3:
        time.sleep(0.05)
    assert state.snapshot.report.taken_at > first, "the snapshot is refreshed periodically"
    runtime.shutdown(app)
    assert not state.snapshot.running


def test_a_forked_worker_builds_its_own_pool(health_app: Callable) -> None:
    app = health_app(HealthCheck("cranes", lambda: {"status": "healthy"}))
    client = app.test_client()
    assert client.get("/health").status_code == 200 and get_state(app).runner.pool.threads > 0
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            body = app.test_client().get("/health").get_json()
            os.write(write, f"{body['status']} {get_state(app).runner.pool.threads}".encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    status, threads = os.read(read, 64).decode().split()
    assert status == "healthy" and int(threads) >= 1


def test_probes_are_infrastructure_and_the_status_page_is_not(health_app: Callable) -> None:
    app = health_app()
    endpoints = {rule.rule: rule.endpoint for rule in app.url_map.iter_rules()}
    with app.test_request_context():
        for path in ("/health", "/health/quick", "/health/live", "/health/ready"):
            assert is_infrastructure(endpoints[path]), path
        for path in ("/status", "/status.json"):
            assert not is_infrastructure(endpoints[path]), path


def test_the_application_check_flags_debug_in_production_and_failed_plugins(make_stevedores_app: Callable) -> None:
    class Broken:
        @hookimpl
        def stevedores_startup(self) -> None:
            raise RuntimeError("no crane SDK")

    app = make_stevedores_app(plugins=["health"], extra_plugins=[("broken", Broken())], env={
        "STEVEDORES_STRICT_PLUGINS": "0", "FLASK_ENV": "production", "SECRET_KEY": "p" * 40,
        "HEALTH_LOAD_WARN_PER_CPU": "1000", "HEALTH_CACHE_SECONDS": "0", "OPS_TOKEN": "o" * 40,
        "HEALTH_DISK_MIN_FREE_PERCENT": "0"})
    client = app.test_client()
    operator = {"Authorization": "Bearer " + "o" * 40}  # the problems are for operators
    check = client.get("/health", headers=operator).get_json()["checks"]["application"]
    assert check["status"] == "warning" and check["plugins_failed"] == ["broken"]
    assert "plugins_failed" not in client.get("/health").get_json()["checks"]["application"]
    app.debug = True
    body = client.get("/health", headers=operator).get_json()
    assert body["checks"]["application"]["status"] == "error"
    assert "debug mode is on in production" in body["checks"]["application"]["problems"]
    assert body["status"] == "degraded"  # configuration problems do not take the instance out of rotation


def test_the_status_page_works_under_a_strict_csp(health_app: Callable) -> None:
    app = health_app(HealthCheck("cranes", lambda: {"status": "warning", "note": "<script>alert(1)</script>"}))
    client = app.test_client()
    response = client.get("/status")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'data-check="cranes"' in html and 'data-check="database"' in html
    assert "<script>alert(1)</script>" not in html  # escaped
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "no inline script"
    assert " style=" not in html and "<style" not in html, "no inline style"
    assert client.get("/health-assets/status.js").status_code == 200
    data = client.get("/status.json").get_json()
    assert data["health"]["checks"]["cranes"]["plugin"] == "extra"
    active = {p["name"] for p in data["plugins"] if p["status"] == "active"}
    assert data["workers"]["final"] >= 1 and active == {"health", "extra"}


def test_each_checks_own_panel_is_drawn_and_a_broken_one_is_left_out(health_app: Callable) -> None:
    def gauge(result: Any) -> StatusPanel:
        return StatusPanel("Cranes", f"{result['online']} online", detail="of 4", percent=75.0, warning_percent=50.0)

    app = health_app(HealthCheck("cranes", lambda: {"status": "warning", "online": 3}, panel=gauge),
                     HealthCheck("winches", lambda: {"status": "healthy"}, panel=lambda result: 1 / 0))
    data = app.test_client().get("/status.json").get_json()
    assert data["panels"] == [{"check": "cranes", "status": "warning", "title": "Cranes", "text": "3 online",
                               "detail": "of 4", "percent": 75.0, "warning_percent": 50.0, "critical_percent": None}]
    html = app.test_client().get("/status").get_data(as_text=True)
    assert '<section class="card" data-panel="cranes">' in html and 'low="50" ' in html and 'value="75"' in html


@pytest.mark.parametrize(("value", "shown"), [(None, ""), (True, "true"), (2.0, "2"), (2.5, "2.5"), ("a", "a"),
                                              ({"pid": 7, "ok": False}, '{"pid":7,"ok":false}'),
                                              (["x", 20.0], '["x",20]')])
def test_figures_are_shown_as_the_refresh_script_shows_them(value: Any, shown: str) -> None:
    from stevedores_health.status_page import shown as show

    assert show(value) == shown


#: What the audit found on anonymous /health: process, host and pool internals.
INTERNALS = ('"pid"', '"workers"', '"master"', '"rss_mb"', '"load_1m"', '"disk_free_mb"', '"checked_out"',
             '"backend"', '"plugins_failed"', '"limit_mb"')


def test_anonymous_health_keeps_the_guides_fields_and_nothing_internal(make_stevedores_app: Callable) -> None:
    token = "ops-token-" + "h" * 32
    client = make_stevedores_app(env={"OPS_TOKEN": token, "WEB_WORKERS": "1"}).test_client()
    for path in ("/health", "/health/ready", "/health/live"):
        text = client.get(path).get_data(as_text=True).replace(" ", "")
        assert not [leak for leak in INTERNALS if leak in text], (path, text)
    checks = client.get("/health").get_json()["checks"]
    assert {"talisman_initialized", "csp_enabled"} <= set(checks["security"])  # docs/deployment.md's commands
    assert {"circuit_breaker_state"} <= set(checks["redis"]) and "storage" in checks["rate_limiter"]
    assert "memory_usage_percent" in checks["memory"] and "pool_size" in checks["database"]
    operator = client.get("/health", headers={"Authorization": f"Bearer {token}"}).get_data(as_text=True)
    assert all(leak in operator.replace(" ", "") for leak in ('"workers"', '"load_1m"', '"checked_out"'))
    assert "pid" in client.get("/health/live", headers={"Authorization": f"Bearer {token}"}).get_json()


@pytest.mark.parametrize(("seconds", "runs"), [("5", 2), ("0", 12)])
def test_a_flood_of_health_requests_runs_the_checks_once_per_cache_period(
        health_app: Callable, seconds: str, runs: int) -> None:
    calls: list[float] = []
    client = health_app(HealthCheck("counted", lambda: calls.append(1) or {"status": "healthy"}, critical=True),
                        env={"HEALTH_CACHE_SECONDS": seconds}).test_client()
    for _ in range(6):
        assert client.get("/health").status_code == 200 and client.get("/health/ready").status_code == 200
    assert len(calls) == runs  # /health once and /health/ready once per period, or every request


def test_development_shows_everything_to_loopback_only(make_stevedores_app: Callable) -> None:
    client = make_stevedores_app(env={"FLASK_ENV": "development", "WEB_WORKERS": "1"}).test_client()
    local = client.get("/health", environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_data(as_text=True)
    assert '"workers"' in local.replace(" ", "")  # make run: the newcomer on the same machine sees every figure
    for path in ("/health", "/health/live"):  # serve --dev --host 0.0.0.0: the network sees the guide's fields only
        text = client.get(path, environ_base={"REMOTE_ADDR": "192.0.2.7"}).get_data(as_text=True).replace(" ", "")
        assert not [leak for leak in INTERNALS if leak in text], (path, text)
