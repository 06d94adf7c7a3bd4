"""Every gunicorn worker sees a write on its next request, with Redis up and with Redis down; a write from
outside the app within a short bound, also while the change listeners are killed and after they return.

Real gunicorn (3 workers), the shared PostgreSQL (a database of the test's own) and a
redis-server of the test's own. The test holds one keep-alive connection per worker (it
finds which worker owns each connection from the workers' sockets), posts a tally through
the API, then asks every worker at once for ``/api/summary`` and ``/`` and the vessel page.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Callable

import psutil
import pytest
from sqlalchemy.engine import make_url

WORKERS = 3


def _prepare(make_stevedores_app: Callable, database_url: str) -> tuple[int, str]:
    """Schema, demo data and a clerk's token; returns (an active vessel call, the token)."""
    from stevedores_operations.accounts import create_user, issue_token
    from stevedores_operations.demo import load_demo

    app = make_stevedores_app(plugins=["operations"], env={"DATABASE_URL": database_url})
    engine = app.extensions["stevedores"].engine
    load_demo(engine)
    create_user(engine, "fresh", "fresh password 123", "clerk")
    token = issue_token(engine, "fresh", "test")
    calls = app.test_client().get("/api/vessel-calls?status=operations_active").json["vessel_calls"]
    engine.dispose()
    return calls[0]["id"], token


def _connection_per_worker(master_pid: int, port: int) -> dict[int, http.client.HTTPConnection]:
    """Keep-alive connections until every worker owns one: {worker pid: connection}.

    The workers are the master's children once gunicorn's log shows them all booted.
    """
    workers = {p.pid: p for p in psutil.Process(master_pid).children()}
    owned: dict[int, http.client.HTTPConnection] = {}
    spare = []
    deadline = time.monotonic() + 20
    while len(owned) < len(workers) and time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        _get(conn, "/health/live")
        local_port = conn.sock.getsockname()[1]
        owner = next((pid for pid, proc in workers.items()
                      if any(c.raddr and c.raddr.port == local_port for c in proc.net_connections("tcp"))), None)
        if owner is not None and owner not in owned:
            owned[owner] = conn
        else:
            spare.append(conn)
    for conn in spare:
        conn.close()
    assert len(owned) == len(workers) == WORKERS, f"connections on {sorted(owned)} of workers {sorted(workers)}"
    return owned


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


def _post_tally(port: int, token: str, call_id: int, units: int, key: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"vessel_call_id": call_id, "direction": "discharged", "category": "auto", "units": units,
                       "zone": "Z1", "idempotency_key": key})
    conn.request("POST", "/api/tallies", body, {"Content-Type": "application/json",
                                                "Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    assert response.status == 201, response.read()
    conn.close()


def _seen_by_every_worker(conns: dict[int, http.client.HTTPConnection], call_id: int) -> dict[int, tuple]:
    """Per worker: (units tallied for the call in the summary, the dashboard's and the vessel page's bodies)."""
    seen = {}
    for pid, conn in conns.items():
        status, body = _get(conn, "/api/summary")
        assert status == 200, body
        call = next(c for c in json.loads(body)["calls"] if c["id"] == call_id)
        page_status, page = _get(conn, "/")
        vessel_status, vessel = _get(conn, f"/vessels/{call_id}")
        assert page_status == vessel_status == 200
        seen[pid] = (call["tallied_total"], page, vessel)
    return seen


@pytest.mark.timeout(120)
def test_a_write_shows_on_every_workers_next_request_with_and_without_redis(
        make_stevedores_app: Callable, stevedores_postgres_database: str, stevedores_redis_server: Callable,
        stevedores_gunicorn_server: Callable) -> None:
    call_id, token = _prepare(make_stevedores_app, stevedores_postgres_database)
    redis = stevedores_redis_server()
    server = stevedores_gunicorn_server(env={
        "DATABASE_URL": stevedores_postgres_database, "REDIS_URL": redis.url, "WEB_WORKERS": str(WORKERS),
        "RATE_LIMITS": "none", "GUNICORN_MAX_REQUESTS": "0", "OPERATIONS_SUMMARY_CACHE_SECONDS": "60",
        "REDIS_READ_TIMEOUT_MS": "200", "REDIS_CONNECT_TIMEOUT_MS": "200"}, ready_path="/health/live")
    assert server.proc is not None
    server.wait_for_workers(WORKERS, timeout=30)  # /health/live answers as soon as the first worker is up
    conns = _connection_per_worker(server.proc.pid, server.port)
    before = _seen_by_every_worker(conns, call_id)  # every worker has cached the summary and the pages
    assert len({units for units, _p, _v in before.values()}) == 1
    units = next(iter(before.values()))[0]

    def check(step: str, added: int, key: str) -> None:
        nonlocal units
        old = _seen_by_every_worker(conns, call_id)  # cached again on every worker
        _post_tally(server.port, token, call_id, added, key)
        units += added
        seen = _seen_by_every_worker(conns, call_id)
        assert {pid: s[0] for pid, s in seen.items()} == {pid: units for pid in conns}, step
        for pid in conns:
            assert seen[pid][1] != old[pid][1] and seen[pid][2] != old[pid][2], f"{step}: stale page on {pid}"

    check("Redis up", 3, "fresh-1")
    redis.kill()
    check("Redis down", 5, "fresh-2")
    check("Redis still down", 7, "fresh-3")
    for conn in conns.values():
        conn.close()


def _listener_pids(url: str) -> set[int]:
    """Backend pids of the workers' change listeners (changes.py) on the test's database."""
    import psycopg
    from stevedores_operations.changes import APPLICATION_NAME

    with psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
                         autocommit=True) as conn:
        return {pid for (pid,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                               "AND application_name = %s", (APPLICATION_NAME,))}


def _until(predicate: Callable[[], bool], timeout: float, failure: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, failure
        time.sleep(0.05)


def _psql(url: str, statement: str, *params: object) -> list[tuple]:
    """A statement from outside the app (another instance, psql, a script) on its own connection."""
    import psycopg

    with psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
                         autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


@pytest.mark.timeout(150)
def test_a_write_from_outside_shows_on_every_worker_also_while_the_change_listeners_are_killed(
        make_stevedores_app: Callable, stevedores_postgres_database: str, stevedores_gunicorn_server: Callable,
        capsys: pytest.CaptureFixture) -> None:
    """Without preload (the plugin is loaded by the master all the same, so the workers share the token) and
    without Redis (each worker caches in its own memory): a tally inserted by a plain connection shows on
    every worker within the signal's bound (polled; the delays are printed), and every later request serves
    it; the same after ``pg_terminate_backend`` on every listener, and again once they have reconnected."""
    from stevedores_operations.changes import VALID_SECONDS

    url = stevedores_postgres_database
    call_id, token = _prepare(make_stevedores_app, url)
    server = stevedores_gunicorn_server(env={
        "DATABASE_URL": url, "WEB_WORKERS": str(WORKERS), "RATE_LIMITS": "none", "GUNICORN_MAX_REQUESTS": "0",
        "OPERATIONS_SUMMARY_CACHE_SECONDS": "60", "PRELOAD_APP": "false"}, ready_path="/health/live")
    assert server.proc is not None
    server.wait_for_workers(WORKERS, timeout=30)
    conns = _connection_per_worker(server.proc.pid, server.port)
    _until(lambda: len(_listener_pids(url)) == WORKERS, 20, f"listeners {_listener_pids(url)}\n{server.log()}")
    units = _seen_by_every_worker(conns, call_id)[next(iter(conns))][0]

    def outside_write(step: str, added: int) -> list[float]:
        nonlocal units
        old = _seen_by_every_worker(conns, call_id)  # cached again on every worker
        _psql(url, "INSERT INTO operations_tallies (vessel_call_id, direction, category, units, shift, zone, clerk, "
                   "tallied_at, idempotency_key) VALUES (%s, 'discharged', 'auto', %s, 'x', 'Z', 'psql', now(), %s)",
              call_id, added, step)
        written, units = time.monotonic(), units + added
        delays: dict[int, float] = {}
        while len(delays) < len(conns) and time.monotonic() - written < VALID_SECONDS:
            for pid in set(conns) - set(delays):
                status, body = _get(conns[pid], "/api/summary")
                if next(c for c in json.loads(body)["calls"] if c["id"] == call_id)["tallied_total"] == units:
                    delays[pid] = time.monotonic() - written
        assert len(delays) == len(conns), f"{step}: shown on {sorted(delays)} of {sorted(conns)} within the bound"
        seen = _seen_by_every_worker(conns, call_id)  # every later request serves it, pages included
        assert {pid: s[0] for pid, s in seen.items()} == {pid: units for pid in conns}, step
        for pid in conns:
            assert seen[pid][1] != old[pid][1] and seen[pid][2] != old[pid][2], f"{step}: stale page on {pid}"
        return sorted(delays.values())

    listening = outside_write("listening", 2)
    before = _listener_pids(url)
    assert len(_psql(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ANY(%s)",
                     list(before))) == WORKERS
    killed = outside_write("listeners killed", 3)
    _until(lambda: len(_listener_pids(url) - before) == WORKERS, 20, f"listeners never came back\n{server.log()}")
    back = outside_write("listeners back", 4)
    _post_tally(server.port, token, call_id, 5, "own-write")  # this instance's own write: the very next request
    units += 5
    assert {pid: s[0] for pid, s in _seen_by_every_worker(conns, call_id).items()} == {pid: units for pid in conns}
    assert "change listener lost the database" in server.log()
    assert "Traceback" not in server.log(), server.log()
    for conn in conns.values():
        conn.close()
    with capsys.disabled():
        print(f"\nunder gunicorn, outside write -> shown on each of {WORKERS} workers (ms): "
              + "; ".join(f"{step} {', '.join(f'{d * 1000:.0f}' for d in delays)}" for step, delays in
                          (("listening", listening), ("killed", killed), ("back", back))))
