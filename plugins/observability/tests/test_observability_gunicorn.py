"""The observability plugin under real gunicorn: metrics summed over 3 workers while Redis dies,
and Sentry events sent to a small HTTP server this test runs, without credentials."""

from __future__ import annotations

import gzip
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families
from stevedores_observability.sentry import FILTERED

from stevedores.testing import free_port, http_get

TOKEN = "ops-token-for-gunicorn-tests-42"
ITEM_ROUTE = "/_probe/item/<int:item_id>"
COOKIE_VALUE = "cookie-value-must-not-leave-7f3a9c"
AUTH_VALUE = "bearer-value-must-not-leave-91b2d4"
QUERY_VALUE = "query-value-must-not-leave-3c8e"
USERNAME_VALUE = "harbour.master.0c41"
PASSWORD_VALUE = "password-must-not-leave-d27a"

PROBE_PLUGIN = '''
"""Test-only routes: an item page, a Redis round trip through the service, and failures."""
import logging

from flask import request
from stevedores import get_service, hookimpl


@hookimpl
def stevedores_startup(app):
    @app.get("/_probe/item/<int:item_id>")
    def probe_item(item_id):
        return str(item_id)

    @app.get("/_probe/redis")
    def probe_redis():
        redis = get_service(app, "redis")
        if redis is None:
            return "no redis service", 503
        return redis.call(lambda client: "redis" if client.ping() else "no pong", lambda: "fallback")

    @app.get("/_probe/boom")
    def probe_boom():
        cookie = request.cookies.get("session")  # kept in locals: Sentry captures frame variables
        authorization = request.headers.get("Authorization")
        lookup = request.args.get("lookup")
        logging.getLogger("probe").warning("looking up %s via %s", lookup, request.full_path)  # a breadcrumb
        raise RuntimeError(f"probe failure ({len(cookie or '')}, {len(authorization or '')})")

    @app.post("/_probe/login")
    def probe_login():
        import sentry_sdk

        username = request.form["username"]
        password = request.form["password"]
        sentry_sdk.set_user({"id": 7, "username": username, "email": username + "@port.example"})
        raise RuntimeError(f"login failed for {username} ({len(password)})")
'''


@pytest.fixture(scope="module")
def probe_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for PYTHONPATH holding the probe plugin and its real entry point (dist-info)."""
    site = tmp_path_factory.mktemp("probe-site")
    (site / "stevedores_obs_probe.py").write_text(PROBE_PLUGIN)
    info = site / "stevedores_obs_probe-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: stevedores-obs-probe\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[stevedores]\nobs_probe = stevedores_obs_probe\n")
    return site


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of the server's /metrics, read with the operator token."""
    status, text = http_get(base + "/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def requests_per_worker(directory: Path) -> dict[str, float]:
    """Item-route requests recorded in each worker's own counter file."""
    counts: dict[str, float] = {}
    for path in directory.glob("counter_*.db"):
        if path.stat().st_size < 8:  # a process creating its file this instant: no value in it yet
            continue
        pid = path.stem.split("_")[-1]
        for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):
            _metric, name, labels, _help = json.loads(key)
            if name == "stevedores_http_requests_total" and labels.get("route") == ITEM_ROUTE:
                counts[pid] = counts.get(pid, 0) + value
    return counts


def test_counts_add_up_across_three_workers_and_the_breaker_opening_shows(
        stevedores_gunicorn_server: Callable[..., Any], stevedores_redis_server: Callable[[], Any], probe_site: Path,
        tmp_path: Path) -> None:
    redis = stevedores_redis_server()
    metrics_dir = tmp_path / "metrics"
    server = stevedores_gunicorn_server(env={
        "WEB_WORKERS": "3", "REDIS_URL": redis.url, "OPS_TOKEN": TOKEN, "PYTHONPATH": str(probe_site),
        "METRICS_MULTIPROC_DIR": str(metrics_dir), "RATE_LIMITS": "100000 per minute",
        "REDIS_CONNECT_TIMEOUT_MS": "200", "REDIS_READ_TIMEOUT_MS": "200",
        "REDIS_BREAKER_FAILURE_THRESHOLD": "5", "REDIS_BREAKER_RECOVERY_TIMEOUT": "60",
    }, ready_path="/health/live")
    server.wait_for_workers(3)
    assert f"Metrics shared by workers in {metrics_dir}" in server.log()

    total = 120
    with ThreadPoolExecutor(max_workers=12) as pool:  # a new connection per request: the kernel spreads them
        statuses = list(pool.map(lambda i: http_get(f"{server.url}/_probe/item/{i}")[0], range(total)))
    assert statuses == [200] * total
    assert http_get(server.url + "/_probe/redis") == (200, "redis")

    before = scrape(server.url)
    assert before[("stevedores_http_requests_total", (("method", "GET"), ("route", ITEM_ROUTE),
                                                      ("status", "200")))] == total
    per_worker = requests_per_worker(metrics_dir)
    assert sum(per_worker.values()) == total
    assert len([pid for pid, n in per_worker.items() if n > 0]) >= 2, per_worker  # served by several workers
    assert before[("stevedores_redis_breaker_state", ())] == 0  # reported in the master, replayed by workers
    assert not list(metrics_dir.glob(f"gauge_*_{server.proc.pid}.db"))  # the master's stale gauges stay out
    assert before[("stevedores_plugin_status", (("plugin", "observability"), ("status", "active")))] == 1

    redis.kill()
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: http_get(server.url + "/_probe/redis"), range(60)))
    assert answers == [(200, "fallback")] * 60

    after = scrape(server.url)
    assert after[("stevedores_redis_breaker_state", ())] == 2  # open (livemax: the worst live worker)
    opened = after.get(("stevedores_redis_breaker_transitions_total", (("to", "open"),)), 0)
    assert opened >= 1
    assert opened <= 3  # one breaker per worker, and no probe before the 60 s recovery timeout
    fallbacks = sum(v for (name, _labels), v in after.items() if name == "stevedores_redis_fallback_total")
    assert fallbacks >= 60
    assert after[("stevedores_http_requests_total", (("method", "GET"), ("route", "/_probe/redis"),
                                                     ("status", "200")))] == 61


def test_without_preload_and_after_a_worker_dies_totals_hold_and_its_gauges_go(
        stevedores_gunicorn_server: Callable[..., Any], probe_site: Path, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    server = stevedores_gunicorn_server(env={
        "WEB_WORKERS": "2", "PRELOAD_APP": "0", "OPS_TOKEN": TOKEN, "PYTHONPATH": str(probe_site),
        "METRICS_MULTIPROC_DIR": str(metrics_dir), "RATE_LIMITS": "100000 per minute",
    }, ready_path="/health/live")
    server.wait_for_workers(2)
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(lambda i: http_get(f"{server.url}/_probe/item/{i}")[0], range(40))) == {200}
    key = ("stevedores_http_requests_total", (("method", "GET"), ("route", ITEM_ROUTE), ("status", "200")))
    assert scrape(server.url)[key] == 40
    per_worker = requests_per_worker(metrics_dir)
    assert sum(per_worker.values()) == 40  # each worker wrote its own file: multiprocess mode without preload
    victim = max(per_worker, key=lambda pid: per_worker[pid])
    assert list(metrics_dir.glob(f"gauge_live*_{victim}.db")), sorted(p.name for p in metrics_dir.iterdir())

    os.kill(int(victim), signal.SIGTERM)  # a graceful worker stop: the master forks a replacement
    server.wait_for_workers(3)
    deadline = time.monotonic() + 10
    while list(metrics_dir.glob(f"*_{victim}.db")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list(metrics_dir.glob(f"gauge_live*_{victim}.db"))  # its last gauge values no longer count
    assert not (metrics_dir / f"counter_{victim}.db").exists()  # folded into the archive by child_exit
    assert (metrics_dir / "counter_archive.db").exists()
    assert scrape(server.url)[key] == 40  # the dead worker's requests still count


class SentryStub:
    """A tiny Sentry ingestion endpoint on 127.0.0.1 recording every envelope it receives."""

    def __init__(self) -> None:
        self.envelopes: list[bytes] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                stub.envelopes.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def events(self) -> list[dict[str, Any]]:
        """The error events among the envelopes received so far."""
        found = []
        for envelope in self.envelopes:
            lines = envelope.split(b"\n")
            for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                if json.loads(header).get("type") == "event":
                    found.append(json.loads(payload))
        return found


@pytest.fixture
def sentry_stub() -> Iterator[SentryStub]:
    """A running :class:`SentryStub`, shut down after the test."""
    stub = SentryStub()
    stub.thread.start()
    yield stub
    stub.httpd.shutdown()
    stub.httpd.server_close()


def test_an_unhandled_error_reaches_sentry_without_cookies_or_credentials(
        stevedores_gunicorn_server: Callable[..., Any], probe_site: Path, sentry_stub: SentryStub) -> None:
    server = stevedores_gunicorn_server(env={
        "WEB_WORKERS": "1", "PYTHONPATH": str(probe_site), "OPS_TOKEN": TOKEN,
        "SENTRY_DSN": f"http://publickey@127.0.0.1:{sentry_stub.port}/1",
    }, ready_path="/health/live")
    status, _body = http_get(server.url + f"/_probe/boom?lookup={QUERY_VALUE}&page=2",
                             {"Cookie": f"session={COOKIE_VALUE}", "Authorization": f"Bearer {AUTH_VALUE}"})
    assert status == 500
    form = f"username={USERNAME_VALUE}&password={PASSWORD_VALUE}".encode()
    try:
        urllib.request.urlopen(urllib.request.Request(server.url + "/_probe/login", data=form), timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 500
    deadline = time.monotonic() + 15
    while len(sentry_stub.events()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    events = sentry_stub.events()
    assert len(events) == 2, server.log()
    event, login = sorted(events, key=lambda e: e["request"]["url"])
    # The audit: query-string values and login usernames reached Sentry. Names stay, values go.
    assert event["request"]["query_string"] == f"lookup={FILTERED}&page={FILTERED}"
    assert login["user"] == {"id": 7}
    assert login["exception"]["values"][-1]["value"].startswith(f"login failed for {FILTERED}")
    login_frame = next(f for f in login["exception"]["values"][-1]["stacktrace"]["frames"]
                       if f.get("function") == "probe_login")
    assert "username" in login_frame["vars"] and "password" in login_frame["vars"]  # there, but filtered
    assert event["exception"]["values"][-1]["value"].startswith("probe failure")
    assert event["environment"] == "testing"
    assert event["release"].startswith("stevedores-dashboard@")
    assert event["request"]["url"].endswith("/_probe/boom")
    assert "cookies" not in event["request"] and "data" not in event["request"]
    assert {h.lower() for h in event["request"]["headers"]} & {"cookie", "authorization"} == set()
    raw = b"".join(sentry_stub.envelopes).decode()
    assert COOKIE_VALUE not in raw and AUTH_VALUE not in raw and TOKEN not in raw
    assert QUERY_VALUE not in raw and USERNAME_VALUE not in raw and PASSWORD_VALUE not in raw
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    assert any(f.get("function") == "probe_boom" and "cookie" in f.get("vars", {}) for f in frames)


def test_a_second_master_on_the_same_directory_refuses_to_start_and_the_first_keeps_counting(
        stevedores_gunicorn_server: Callable[..., Any], probe_site: Path, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    env = {"WEB_WORKERS": "1", "OPS_TOKEN": TOKEN, "PYTHONPATH": str(probe_site),
           "METRICS_MULTIPROC_DIR": str(metrics_dir), "RATE_LIMITS": "100000 per minute"}
    first = stevedores_gunicorn_server(env=env, ready_path="/health/live")
    assert http_get(first.url + "/_probe/item/1")[0] == 200
    files = sorted(p.name for p in metrics_dir.glob("*.db"))
    assert files
    with pytest.raises(RuntimeError) as refused:  # the second server exits before answering
        stevedores_gunicorn_server(env=env, ready_path="/health/live")
    message = str(refused.value)
    assert "METRICS_MULTIPROC_DIR" in message and f"pid {first.proc.pid}" in message, message
    assert set(files) <= {p.name for p in metrics_dir.glob("*.db")}  # nothing of the first one's deleted
    key = ("stevedores_http_requests_total", (("method", "GET"), ("route", ITEM_ROUTE), ("status", "200")))
    assert http_get(first.url + "/_probe/item/2")[0] == 200
    assert scrape(first.url)[key] == 2
