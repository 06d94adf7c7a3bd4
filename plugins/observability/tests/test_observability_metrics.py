"""The observability plugin in one process: telemetry to Prometheus, request metrics, the /metrics guard,
settings errors, the multiprocess directory and the Sentry scrubber."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from flask import Flask
from prometheus_client import values
from prometheus_client.parser import text_string_to_metric_families
from stevedores_observability import multiprocess
from stevedores_observability.sentry import FILTERED, make_scrubber
from stevedores_observability.sink import PrometheusSink

from stevedores import ConfigError, hookimpl, is_infrastructure
from stevedores.redaction import REDACTED

TOKEN = "ops-token-for-tests-0123456789-abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class RoutesProbe:
    """A test-only plugin: a route with a converter, for GET and POST."""

    @hookimpl
    def stevedores_startup(self, app: Flask) -> None:
        app.add_url_rule("/_probe/item/<int:item_id>", "probe_item", lambda item_id: str(item_id),
                         methods=["GET", "POST"])


class BrokenAtStartup:
    """A test-only plugin that fails at startup (it must be listed as failed)."""

    @hookimpl
    def stevedores_startup(self) -> None:
        raise RuntimeError("broken on purpose")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from an exposition text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def scrape(app: Flask) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The app's /metrics samples, read with the operator token."""
    response = app.test_client().get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return samples(response.get_data(as_text=True))


@pytest.fixture
def make_app(make_stevedores_app: Callable[..., Any]) -> Callable[..., Flask]:
    """An app with only this plugin (plus ``extra`` test plugins) and an operator token."""
    def make(env: dict[str, str] | None = None, extra: tuple = ()) -> Flask:
        return make_stevedores_app(plugins=["observability"], env={"OPS_TOKEN": TOKEN, **(env or {})},
                                   extra_plugins=extra)

    return make


def test_every_documented_telemetry_name_is_exported(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    telemetry = app.extensions["stevedores"].telemetry
    telemetry.gauge("redis_breaker_state", 2)
    telemetry.count("redis_breaker_transitions_total", 1, to="open")
    telemetry.count("redis_fallback_total", 3, operation="get")
    telemetry.count("rate_limit_refusals_total")
    telemetry.gauge("rate_limit_storage", 1, storage="memory")
    telemetry.gauge("memory_used_bytes", 123456789)
    telemetry.gauge("memory_limit_bytes", 536870912)
    telemetry.count("worker_recycles_total", cause="memory")
    telemetry.gauge("health_check_status", 0, check="database")
    telemetry.observe("health_check_duration_seconds", 0.03, check="database")

    got = scrape(app)
    assert got[("stevedores_redis_breaker_state", ())] == 2
    assert got[("stevedores_redis_breaker_transitions_total", (("to", "open"),))] == 1
    assert got[("stevedores_redis_fallback_total", (("operation", "get"),))] == 3
    assert got[("stevedores_rate_limit_refusals_total", ())] == 1
    assert got[("stevedores_rate_limit_storage", (("storage", "memory"),))] == 1
    assert got[("stevedores_memory_used_bytes", ())] == 123456789
    assert got[("stevedores_memory_limit_bytes", ())] == 536870912
    assert got[("stevedores_worker_recycles_total", (("cause", "memory"),))] == 1
    assert got[("stevedores_health_check_status", (("check", "database"),))] == 0
    assert got[("stevedores_health_check_duration_seconds_count", (("check", "database"),))] == 1
    assert got[("stevedores_health_check_duration_seconds_bucket", (("check", "database"), ("le", "0.05")))] == 1
    assert got[("stevedores_health_check_duration_seconds_bucket", (("check", "database"), ("le", "0.025")))] == 0


def test_new_names_are_created_on_first_use_and_bad_reports_never_break_the_reporter(
        make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()
    telemetry = app.extensions["stevedores"].telemetry
    telemetry.count("crane_lifts_total", 2, crane="c1")
    telemetry.gauge("crane_queue_length", 7)
    telemetry.observe("crane_lift_seconds", 4.0)
    telemetry.count("crane_lifts_total", 1, crane="c1", berth="b2")  # other label set: dropped
    telemetry.gauge("crane_lifts_total", 5, crane="c1")  # other kind: dropped
    telemetry.count("bad-name!", 1)  # not a Prometheus name: dropped
    telemetry.count("crane_lifts_total", -1, crane="c1")  # a counter never goes down: dropped

    got = scrape(app)
    assert got[("stevedores_crane_lifts_total", (("crane", "c1"),))] == 2
    assert got[("stevedores_crane_queue_length", ())] == 7
    assert got[("stevedores_crane_lift_seconds_count", ())] == 1
    assert not any("bad" in name for name, _ in got)
    warnings = [r.getMessage() for r in caplog.records if r.name == "stevedores.observability"]
    assert any("crane_lifts_total has labels ['crane']" in w for w in warnings)
    assert any("crane_lifts_total is a counter" in w for w in warnings)
    assert any("bad-name!" in w for w in warnings)
    telemetry.count("crane_lifts_total", 1, crane="c1", berth="b2")  # warned once only
    assert len([r for r in caplog.records if "has labels" in r.getMessage()]) == 1


def test_requests_are_counted_by_route_pattern_method_and_status(make_app: Callable[..., Flask]) -> None:
    app = make_app(extra=[("routes_probe", RoutesProbe())])
    client = app.test_client()
    for item in (1, 2, 3):
        assert client.get(f"/_probe/item/{item}").status_code == 200
    assert client.post("/_probe/item/9").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    assert client.open("/_probe/item/1", method="BREW").status_code == 405

    got = scrape(app)
    route = "/_probe/item/<int:item_id>"
    assert got[("stevedores_http_requests_total", (("method", "GET"), ("route", route), ("status", "200")))] == 3
    assert got[("stevedores_http_requests_total", (("method", "POST"), ("route", route), ("status", "200")))] == 1
    assert got[("stevedores_http_requests_total", (("method", "GET"), ("route", "<unmatched>"),
                                                    ("status", "404")))] == 1
    assert got[("stevedores_http_requests_total", (("method", "OTHER"), ("route", "<unmatched>"),
                                                    ("status", "405")))] == 1
    assert got[("stevedores_http_request_duration_seconds_count", (("route", route),))] == 4
    assert not any("/_probe/item/1" in dict(labels).get("route", "") for _n, labels in got)
    plugin_mw = [(p, m.name, m.order) for p, m in app.extensions["stevedores"].middleware if p == "observability"]
    assert plugin_mw == [("observability", "request-metrics", 900)]


def test_plugin_status_shows_every_plugin_and_its_state(make_app: Callable[..., Flask]) -> None:
    app = make_app(env={"STEVEDORES_STRICT_PLUGINS": "0"},
                   extra=[("broken_probe", BrokenAtStartup()), ("routes_probe", RoutesProbe())])
    got = scrape(app)
    assert got[("stevedores_plugin_status", (("plugin", "broken_probe"), ("status", "failed")))] == 1
    assert got[("stevedores_plugin_status", (("plugin", "broken_probe"), ("status", "active")))] == 0
    assert got[("stevedores_plugin_status", (("plugin", "observability"), ("status", "active")))] == 1
    assert got[("stevedores_plugin_status", (("plugin", "routes_probe"), ("status", "active")))] == 1


def test_metrics_is_not_published_when_nobody_may_scrape(make_stevedores_app: Callable[..., Any]) -> None:
    app = make_stevedores_app(plugins=["observability"])
    refused = app.test_client().get("/metrics")
    assert refused.status_code == 404
    assert "OPS_TOKEN" in refused.json["hint"] and "METRICS_ALLOW" in refused.json["hint"]  # what would open it


def test_development_lets_loopback_scrape_when_nothing_is_configured(make_stevedores_app: Callable[..., Any]) -> None:
    app = make_stevedores_app(plugins=["observability"], env={"FLASK_ENV": "development"})
    client = app.test_client()
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    refused = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert refused.status_code == 403 and "METRICS_ALLOW" in refused.json["hint"]


def test_operator_token_is_required_unless_the_address_is_allowed(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    client = app.test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    assert client.get("/metrics", headers=AUTH).status_code == 200
    with app.test_request_context("/metrics"):
        assert is_infrastructure("observability_metrics")


def test_allowed_addresses_may_scrape_without_token(make_app: Callable[..., Flask]) -> None:
    app = make_app({"OPS_TOKEN": "", "METRICS_ALLOW": "10.0.0.0/8, 192.168.1.7"})
    client = app.test_client()
    assert client.get("/metrics").status_code == 403  # the test client is 127.0.0.1
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.20.30.40"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.168.1.7"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.168.1.8"}).status_code == 403
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::ffff:10.0.0.1"}).status_code == 200


def test_behind_a_trusted_proxy_the_forwarded_client_address_decides(make_app: Callable[..., Flask]) -> None:
    app = make_app({"OPS_TOKEN": "", "METRICS_ALLOW": "10.0.0.0/8", "TRUSTED_PROXIES": "1",
                    "FORWARDED_ALLOW_IPS": "127.0.0.1,10.0.0.2"})
    client = app.test_client()
    assert client.get("/metrics", headers={"X-Forwarded-For": "10.1.1.1"}).status_code == 200
    assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"},
                      environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 403


def test_the_token_is_refused_over_plain_http_in_production_and_guessing_is_throttled(
        make_stevedores_app: Callable[..., Any]) -> None:
    app = make_stevedores_app(plugins=["observability"], env={
        "FLASK_ENV": "production", "SECRET_KEY": "s" * 40, "OPS_TOKEN": TOKEN, "OPS_TOKEN_FAILURES_PER_MINUTE": "2"})
    client = app.test_client()
    plain = client.get("/metrics", headers=AUTH, base_url="http://localhost")
    assert plain.status_code == 403 and "plain HTTP" in plain.json["error"]
    assert client.get("/metrics", headers=AUTH, base_url="https://localhost").status_code == 200
    wrong = {"Authorization": "Bearer not-the-token"}
    assert [client.get("/metrics", headers=wrong).status_code for _ in range(3)] == [401, 401, 429]
    assert client.get("/metrics", headers=AUTH).status_code == 429  # this address, this minute


def test_a_client_that_is_no_allowed_proxy_cannot_forward_its_way_in(make_app: Callable[..., Flask]) -> None:
    """The audit: gunicorn binds 0.0.0.0, and TRUSTED_PROXIES=1 let anyone say X-Forwarded-For: 127.0.0.1."""
    app = make_app({"OPS_TOKEN": "", "METRICS_ALLOW": "127.0.0.1", "TRUSTED_PROXIES": "1"})
    client = app.test_client()
    spoofed = {"X-Forwarded-For": "127.0.0.1", "Forwarded": "for=127.0.0.1"}
    assert client.get("/metrics", headers=spoofed, environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403
    assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403  # proxy: honoured
    assert client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 200


def test_bad_settings_are_reported_together_by_name(make_app: Callable[..., Flask]) -> None:
    dsn_key = "supersecretkey123"
    with pytest.raises(ConfigError) as caught:
        make_app({"METRICS_ALLOW": "10.0.0.0/8,not-an-address", "SENTRY_DSN": f"ftp://{dsn_key}@sentry.example/1",
                  "SENTRY_TRACES_SAMPLE_RATE": "2"})
    names = {p.name for p in caught.value.problems}
    assert names == {"METRICS_ALLOW", "SENTRY_DSN", "SENTRY_TRACES_SAMPLE_RATE"}
    text = str(caught.value)
    assert "not-an-address" in text and "Sentry DSN" in text
    assert dsn_key not in text
    for bad in ("https://sentry.example/1", "https://key@sentry.example/not-a-project", "sentry"):
        with pytest.raises(ConfigError, match="SENTRY_DSN"):
            make_app({"SENTRY_DSN": bad})


def test_sentry_is_not_even_imported_without_a_dsn(tmp_path: Path, stevedores_environ: dict[str, str]) -> None:
    code = ("import sys; from stevedores import create_app; app = create_app(); "
            "assert app.extensions['stevedores_observability']['sentry'] is False; "
            "print(sorted(m for m in sys.modules if m.startswith('sentry_sdk')))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "STEVEDORES_"))}
    env.update(stevedores_environ, STEVEDORES_PLUGINS="observability")
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- the multiprocess directory -------------------------------------------------------


def test_configured_directory_is_created_cleaned_of_old_metrics_and_exported(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"stale")
    (directory / "gauge_livemax_123.db").write_bytes(b"stale")
    (directory / "README").write_text("not ours")
    environ: dict[str, str] = {}
    assert multiprocess.prepare_directory(str(directory), environ) == str(directory)
    assert environ == {"PROMETHEUS_MULTIPROC_DIR": str(directory)}
    assert sorted(p.name for p in directory.iterdir()) == [".owner", "README"]  # .owner: this master's pid
    assert (directory / ".owner").read_text() == f"{os.getpid()}\n"
    missing = tmp_path / "new" / "dir"
    assert multiprocess.prepare_directory(str(missing), environ) == str(missing) and missing.is_dir()


def test_default_directory_is_private_per_server(tmp_path: Path) -> None:
    environ: dict[str, str] = {}
    first = multiprocess.prepare_directory(None, environ)
    second = multiprocess.prepare_directory(None, {})
    try:
        assert first != second and os.path.isdir(first) and os.listdir(first) == [".owner"]
        assert environ["PROMETHEUS_MULTIPROC_DIR"] == first
        if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
            assert first.startswith("/dev/shm/stevedores-metrics-")
    finally:
        shutil.rmtree(first)
        shutil.rmtree(second)


def test_unusable_configured_directory_falls_back_to_a_private_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    directory = multiprocess.prepare_directory(str(blocker / "sub"), {})
    try:
        assert os.path.isdir(directory) and "stevedores-metrics-" in directory
        assert any("METRICS_MULTIPROC_DIR" in r.getMessage() for r in caplog.records)
    finally:
        shutil.rmtree(directory)


def test_a_reload_keeps_the_servers_directory_and_its_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(multiprocess, "_server", None)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # recorded, so that the test's export is undone
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    directory = tmp_path / "metrics"
    assert multiprocess.server_directory(str(directory)) == str(directory)
    (directory / "counter_77.db").write_bytes(b"a live worker's counts")
    assert multiprocess.server_directory(str(directory)) == str(directory)  # SIGHUP: configuration read again
    assert (directory / "counter_77.db").exists()
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(directory)


# --- the Sentry scrubber --------------------------------------------------------------


def test_scrubber_drops_bodies_cookies_credentials_and_secret_values() -> None:
    scrub = make_scrubber(["db-password-123456", "abc"])
    event = {
        "request": {"url": "http://x/boom?q=1", "data": {"password": "hunter2"}, "cookies": {"session": "abc"},
                    "headers": {"Authorization": "Bearer tok", "Cookie": "session=abc", "Accept": "text/html"},
                    "query_string": "q=1&next=%2Fvessels"},
        "message": "failed to connect postgresql://app:db-password-123456@db/app",
        "breadcrumbs": {"values": [{"message": "using db-password-123456 for GET /vessels?berth=B7",
                                    "data": {"url": "https://api.example/x?key=v", "http.query": "key=v"}}]},
        "user": {"id": 3, "username": "alice", "email": "a@example.org", "ip_address": "203.0.113.4"},
        "extra": {"n": 3, "short": "abc"},
    }
    out = scrub(event, None)
    assert out["request"] == {"url": f"http://x/boom?{FILTERED}", "headers": {"Accept": "text/html"},
                              "query_string": f"q={FILTERED}&next={FILTERED}"}
    assert out["message"] == f"failed to connect postgresql://app:{REDACTED}@db/app"
    crumb = out["breadcrumbs"]["values"][0]
    assert crumb["message"] == f"using {REDACTED} for GET /vessels?{FILTERED}"
    assert crumb["data"] == {"url": f"https://api.example/x?{FILTERED}", "http.query": FILTERED}
    assert out["user"] == {"id": 3}
    assert out["extra"] == {"n": 3, "short": "abc"}  # values under 4 characters are not hunted


def test_a_master_sink_moves_to_the_shared_files_without_its_startup_gauges(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)  # restored after the test
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    sink = PrometheusSink()
    sink.gauge("rate_limit_storage", 1, {"storage": "redis"})  # reported while the app is preloaded
    assert not sink.multiprocess
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # stevedores_server_starting exports it
    sink.server_starting()
    sink.count("worker_recycles_total", 1, {"cause": "signal"})
    assert sink.multiprocess
    text = sink.render().decode()
    assert 'stevedores_worker_recycles_total{cause="signal"} 1.0' in text
    assert "rate_limit_storage" not in text  # a stale start-up value would mask the workers' own
    assert (tmp_path / f"counter_{os.getpid()}.db").exists()


def test_scrapes_are_never_rate_limited_nor_redirected_with_every_plugin_installed(
        make_stevedores_app: Callable[..., Any]) -> None:
    app = make_stevedores_app(env={"FLASK_ENV": "production", "OPS_TOKEN": TOKEN, "RATE_LIMITS": "2 per minute"})
    client = app.test_client()
    assert [client.get("/metrics", headers=AUTH).status_code for _ in range(6)] == [200] * 6
    assert "stevedores_http_requests_total" in client.get("/metrics", headers=AUTH).get_data(as_text=True)


def test_answers_made_below_flask_are_counted_under_their_route(make_stevedores_app: Callable[..., Any]) -> None:
    app = make_stevedores_app(plugins=["observability", "health"], env={"OPS_TOKEN": TOKEN})
    client = app.test_client()
    for _ in range(4):  # the first through Flask, the rest answered by the health plugin's WSGI fast path
        assert client.get("/health/quick").status_code == 200
    text = client.get("/metrics", headers=AUTH).get_data(as_text=True)
    line = next(line for line in text.splitlines() if line.startswith("stevedores_http_requests_total{")
                and 'route="/health/quick"' in line)
    assert float(line.rsplit(" ", 1)[1]) == 4 and 'status="200"' in line and 'method="GET"' in line


def test_a_scrape_leaves_out_a_file_a_process_is_creating(tmp_path: Any) -> None:
    """prometheus_client opens a new process's file before it sizes it; a scrape in between must not fail."""
    import json
    import struct

    import pytest
    from prometheus_client.mmap_dict import MmapedDict
    from prometheus_client.multiprocess import MultiProcessCollector
    from stevedores_observability.backend import _HeaderedFiles

    written = MmapedDict(str(tmp_path / "counter_100.db"))
    written.write_value(json.dumps(["stevedores_x", "stevedores_x_total", {}, "help"]), 3.0, 0.0)
    written.close()
    (tmp_path / "counter_101.db").touch()  # opened, not sized yet
    with pytest.raises(struct.error):  # prometheus_client's own collector trips on it
        list(MultiProcessCollector(None, path=str(tmp_path)).collect())
    samples = [s for metric in _HeaderedFiles(str(tmp_path)).collect() for s in metric.samples]
    assert [(s.name, s.value) for s in samples] == [("stevedores_x_total", 3.0)]
