"""Rate limits in memory: per client across the app, 429s, proxies, worker shares, the service."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from security_helpers import ProbePlugin, Recorder

from stevedores import ConfigError

ONE_WORKER = {"WEB_WORKERS": "1"}


def _app(make: Callable, **env: str) -> Any:
    return make(plugins=["security", "health"], env={**ONE_WORKER, **env}, extra_plugins=[("probe", ProbePlugin())])


def test_the_101st_request_in_a_minute_is_refused_across_routes(make_stevedores_app: Callable) -> None:
    app = _app(make_stevedores_app)  # default RATE_LIMITS: 1000 per hour;100 per minute
    sink = Recorder()
    app.extensions["stevedores"].telemetry.subscribe(sink)
    client = app.test_client()
    statuses = [client.get("/probe/a" if i % 2 else "/probe/b").status_code for i in range(100)]
    assert statuses == [200] * 100  # 50 + 50 on two routes: one budget for the whole app
    refused = client.get("/probe/a")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
    assert refused.get_json()["error"] == "too many requests" and "100 per 1 minute" in refused.get_json()["limit"]
    assert refused.headers["RateLimit-Limit"] == "100" and refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Policy"] == "100;w=60"
    assert client.get("/health/live").status_code == 200  # probes are never limited
    assert client.get("/static/stevedores.css").status_code == 200
    assert ("rate_limit_refusals_total", {}) in sink.counts


def test_a_spoofed_forwarded_for_is_ignored_without_trusted_proxies(make_stevedores_app: Callable) -> None:
    client = _app(make_stevedores_app, RATE_LIMITS="3 per minute").test_client()
    assert [client.get("/probe/a").status_code for _ in range(3)] == [200] * 3
    spoofed = client.get("/probe/a", headers={"X-Forwarded-For": "198.51.100.7"})
    assert spoofed.status_code == 429  # still keyed by the socket address


def test_the_forwarded_client_is_the_key_behind_one_trusted_proxy(make_stevedores_app: Callable) -> None:
    client = _app(make_stevedores_app, RATE_LIMITS="3 per minute", TRUSTED_PROXIES="1").test_client()
    first = {"X-Forwarded-For": "198.51.100.7"}
    assert [client.get("/probe/a", headers=first).status_code for _ in range(3)] == [200] * 3
    assert client.get("/probe/a", headers=first).status_code == 429
    other = client.get("/probe/a", headers={"X-Forwarded-For": "198.51.100.8"})
    assert other.status_code == 200 and other.headers["RateLimit-Remaining"] == "2"
    chained = client.get("/probe/a", headers={"X-Forwarded-For": "10.9.9.9, 198.51.100.7"})
    assert chained.status_code == 429  # only the proxy's own entry (the last) is trusted


def test_forwarded_for_counts_only_from_the_proxys_own_address(make_stevedores_app: Callable) -> None:
    """The audit: with TRUSTED_PROXIES=1 a client reaching gunicorn directly picked its own address."""
    client = _app(make_stevedores_app, RATE_LIMITS="3 per minute", TRUSTED_PROXIES="1").test_client()
    direct = {"REMOTE_ADDR": "203.0.113.9"}  # not in FORWARDED_ALLOW_IPS (default 127.0.0.1,::1)
    statuses = [client.get("/probe/a", headers={"X-Forwarded-For": f"198.51.100.{i}"}, environ_base=direct).status_code
                for i in range(4)]
    assert statuses == [200, 200, 200, 429]  # one bucket: the socket address
    # An allowed proxy's non-address is ignored (no 8 KB keys): the proxy's own bucket counts it.
    junk = client.get("/probe/a", headers={"X-Forwarded-For": "x" * 8192})
    assert junk.status_code == 200 and junk.headers["RateLimit-Remaining"] == "2"


@pytest.mark.parametrize(("limits", "instances", "allowed"),
                         [("8 per minute", "1", 8), ("8 per minute", "4", 2), ("3 per minute", "4", 1)])
def test_fallback_limits_are_divided_by_the_instance_count_not_the_workers(
        make_stevedores_app: Callable, limits: str, instances: str, allowed: int) -> None:
    client = _app(make_stevedores_app, RATE_LIMITS=limits, WEB_WORKERS="4",
                  RATE_LIMIT_INSTANCES=instances).test_client()
    responses = [client.get("/probe/a") for _ in range(allowed + 1)]
    assert [r.status_code for r in responses] == [200] * allowed + [429]
    # the limit shown is the limit enforced
    assert {r.headers["RateLimit-Limit"] for r in responses} == {str(allowed)}
    assert [r.headers["RateLimit-Remaining"] for r in responses[:allowed]] == [
        str(allowed - n) for n in range(1, allowed + 1)]


def test_the_rate_limits_service_shares_a_scope_and_counts_only_what_deduct_when_says(
        make_stevedores_app: Callable) -> None:
    client = _app(make_stevedores_app, RATE_LIMITS="none").test_client()
    tallies = [client.post("/probe/tally/1"), client.post("/probe/tally-too"), client.post("/probe/tally/2"),
               client.post("/probe/tally-too")]
    assert [r.status_code for r in tallies] == [200, 200, 200, 429]  # one "tallies" budget for both views
    assert int(tallies[-1].headers["Retry-After"]) >= 1
    assert all(client.post("/probe/login/ok").status_code == 200 for _ in range(5))  # successes are free
    assert [client.post("/probe/login/bad").status_code for _ in range(3)] == [401, 401, 429]
    assert all(client.get("/probe/a").status_code == 200 for _ in range(20))  # RATE_LIMITS=none


def test_exempt_paths_setting_covers_unmarked_probe_routes(make_stevedores_app: Callable) -> None:
    client = _app(make_stevedores_app, RATE_LIMITS="1 per minute", SECURITY_EXEMPT_PATHS="/probe/b").test_client()
    assert [client.get("/probe/b").status_code for _ in range(5)] == [200] * 5
    assert [client.get("/probe/a").status_code for _ in range(2)] == [200, 429]


def test_rate_limiter_health_check_says_memory_and_why(make_stevedores_app: Callable) -> None:
    app = _app(make_stevedores_app)
    check = {c.name: c for _p, c in app.extensions["stevedores"].health_checks}["rate_limiter"]
    result = check.func()
    assert result["status"] == "healthy" and result["storage"] == "memory"
    assert "redis_resilience plugin not installed" in result["reason"]
    assert result["scope"] == "per client across the whole app" and result["memory_limit_divisor"] == 1


@pytest.mark.parametrize("bad", ["100 per fortnight", "lots", "0 per minute"])
def test_bad_rate_limits_stop_start_up(make_stevedores_app: Callable, bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_stevedores_app(plugins=["security"], env={"RATE_LIMITS": bad})
    assert "RATE_LIMITS" in str(caught.value)


def test_a_bad_limit_from_another_plugin_fails_that_plugin_only(make_stevedores_app: Callable) -> None:
    from stevedores import get_service, hookimpl

    class Sloppy:
        @hookimpl
        def stevedores_startup(self, app: Any) -> None:
            get_service(app, "rate_limits").limit("thirty a minute")

    app = make_stevedores_app(plugins=["security"], env={**ONE_WORKER, "STEVEDORES_STRICT_PLUGINS": "0"},
                              extra_plugins=[("sloppy", Sloppy())])
    info = {p.name: p for p in app.extensions["stevedores"].plugins.listing()}
    assert info["sloppy"].status == "failed" and "'thirty a minute' is not a rate limit" in info["sloppy"].error
    assert info["security"].status == "active"


def test_exempt_paths_match_whole_segments() -> None:
    from stevedores_security.settings import under_exempt_path

    exempt = ("/health", "/ping/")
    assert under_exempt_path("/health", exempt) and under_exempt_path("/health/quick", exempt)
    assert under_exempt_path("/ping", exempt) and under_exempt_path("/ping/x", exempt)
    assert not under_exempt_path("/healthcare-admin", exempt) and not under_exempt_path("/pingback", exempt)
