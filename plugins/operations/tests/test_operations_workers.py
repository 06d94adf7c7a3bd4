"""Every gunicorn worker sees a write on its next request, with Redis up and with Redis down.

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
