"""Database faults on the real PostgreSQL: a frozen network (bench.tcp_proxy's relay stops forwarding
without closing) is answered with 503 within the bounded waits while liveness stays fast; connections
killed with pg_terminate_backend during reads cost no 5xx (one retry on a fresh connection)."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.tcp_proxy import TcpProxy
from stevedores.testing import temporary_postgres_database


@pytest.fixture
def postgres_proxy() -> Iterator[tuple[str, TcpProxy]]:
    """(URL through a freezable relay, the relay) for a database of the test's own."""
    with temporary_postgres_database("stevedores_faults") as url:
        parsed = make_url(url)
        proxy = TcpProxy((parsed.host or "127.0.0.1", parsed.port or 5432)).start()
        try:
            yield parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), proxy
        finally:
            proxy.close()


def _get(url: str, timeout: float = 20) -> tuple[int, float, str, str]:
    """(status, seconds, Content-Type, Retry-After) of a GET on a new connection."""
    started = time.monotonic()
    request = urllib.request.Request(url, headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            status, headers = response.status, response.headers
    except urllib.error.HTTPError as exc:
        status, headers = exc.code, exc.headers
    return status, time.monotonic() - started, headers.get("Content-Type", ""), headers.get("Retry-After", "")


@pytest.mark.timeout(90)
def test_a_frozen_database_network_gives_503_within_the_bounds_and_liveness_stays_fast(
        postgres_proxy: tuple[str, TcpProxy], stevedores_gunicorn_server: Callable[..., Any]) -> None:
    url, proxy = postgres_proxy
    server = stevedores_gunicorn_server(env={
        "DATABASE_URL": url, "STEVEDORES_PLUGINS": "health,operations", "DATABASE_CONNECT_TIMEOUT": "2",
        "DATABASE_STATEMENT_TIMEOUT": "1", "DATABASE_POOL_TIMEOUT": "1", "HEALTH_DATABASE_TIMEOUT": "1.5",
    }, ready_path="/health/live")
    api = server.url + "/api/vessel-calls"
    for _ in range(4):  # both workers hold pooled connections
        assert _get(api)[0] == 200
    proxy.freeze()
    try:
        with ThreadPoolExecutor(8) as pool:
            # Fewer stuck requests than one worker's 4 threads: liveness must then never wait on the database.
            reads = [pool.submit(_get, api) for _ in range(2)]
            page = pool.submit(_get, server.url + "/")
            time.sleep(0.3)
            live = [_get(server.url + "/health/live") for _ in range(3)]
            ready = _get(server.url + "/health/ready")
            answers = [r.result() for r in reads]
            page_answer = page.result()
    finally:
        proxy.thaw()
    # Bounds: pool 1 s + pre-ping 2 s + connect 2 s, well inside the ~10 s asked for.
    assert [(status, retry) for status, _, _, retry in answers] == [(503, "5")] * 2, answers
    assert all(seconds < 10 for _, seconds, _, _ in answers), answers
    assert all(ctype.startswith("application/json") for _, _, ctype, _ in answers), answers
    assert page_answer[0] == 503 and page_answer[2].startswith("text/html") and page_answer[1] < 10, page_answer
    assert [status for status, *_ in live] == [200] * 3 and max(seconds for _, seconds, *_ in live) < 1.5, live
    assert ready[0] == 503 and ready[1] < 1.5 + 1.5, ready
    deadline = time.monotonic() + 15
    while _get(api)[0] != 200:  # thawed: served again without a restart
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.2)


@pytest.mark.timeout(90)
def test_connections_terminated_during_reads_cost_no_5xx(make_stevedores_app: Callable[..., Any],
                                                         tmp_path: Path) -> None:
    with temporary_postgres_database("stevedores_faults") as url:
        app = make_stevedores_app(plugins=["operations"], env={"DATABASE_URL": url})
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        statuses: list[int] = []
        done = threading.Event()

        def read() -> None:
            client = app.test_client()
            while not done.is_set():
                statuses.append(client.get("/api/vessel-calls").status_code)
                statuses.append(client.get("/api/summary").status_code)

        readers = [threading.Thread(target=read) for _ in range(3)]
        for reader in readers:
            reader.start()
        killed = 0
        try:
            ends = time.monotonic() + 4
            while time.monotonic() < ends:
                with admin.connect() as conn:
                    killed += conn.execute(text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar_one()
                time.sleep(0.4)  # each round kills every connection; a retry is one fresh connection later
        finally:
            done.set()
            for reader in readers:
                reader.join(30)
            admin.dispose()
            app.extensions["stevedores"].shutdown(app)
    assert killed >= 8, killed
    assert len(statuses) > 50 and set(statuses) == {200}, sorted(set(statuses))


def test_a_dropped_connection_retries_reads_once_never_writes_nor_timeouts(
        make_stevedores_app: Callable[..., Any]) -> None:
    import psycopg
    from sqlalchemy.exc import OperationalError

    from stevedores.database import NoAnswer

    app = make_stevedores_app(plugins=[])
    calls: list[str] = []
    failures = {"dropped": psycopg.OperationalError("server closed the connection unexpectedly"),
                "timeout": NoAnswer("no answer from the database within 6 s: connection closed")}

    @app.route("/fails/<kind>/<int:times>", methods=["GET", "POST"])
    def fails(kind: str, times: int) -> str:
        calls.append(kind)
        if len(calls) <= times:
            raise OperationalError("SELECT 1", None, failures[kind], connection_invalidated=True)
        return "ok"

    client = app.test_client()
    for method, kind, times, status, tries in (("GET", "dropped", 1, 200, 2), ("GET", "dropped", 2, 503, 2),
                                               ("POST", "dropped", 1, 503, 1), ("GET", "timeout", 1, 503, 1)):
        calls.clear()
        response = client.open(f"/fails/{kind}/{times}", method=method, headers={"Accept": "text/html"})
        assert (response.status_code, len(calls)) == (status, tries), (method, kind, times)
        if status == 503:
            assert response.mimetype == "text/html" and response.headers["Retry-After"] == "5"
