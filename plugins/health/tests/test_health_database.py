"""The database check against the real PostgreSQL and SQLite: up, and really unreachable."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from stevedores.testing import free_port

TOKEN = "operator-token-" + "t" * 24


def _wait_for_quick(client: Any, code: int, timeout: float = 10.0) -> Any:
    """/health/quick until it answers ``code`` (its snapshot refreshes in the background)."""
    deadline = time.monotonic() + timeout
    response = client.get("/health/quick")
    while response.status_code != code and time.monotonic() < deadline:
        time.sleep(0.05)
        response = client.get("/health/quick")
    return response


def _assert_up(client: Any, backend: str) -> dict[str, Any]:
    response = client.get("/health")
    body = response.get_json()
    assert response.status_code == 200 and body["status"] == "healthy", body
    database = body["checks"]["database"]
    # Anonymous: the guide's fields only (no backend, no pool internals beyond pool_size).
    assert set(database) == {"status", "response_time_ms", "critical", "pool_size"}, database
    assert database["status"] == "healthy" and database["critical"] is True and database["response_time_ms"] > 0
    operator = client.get("/health", headers={"Authorization": f"Bearer {TOKEN}"}).get_json()["checks"]["database"]
    assert operator["backend"] == backend and {"pool_size", "checked_out", "overflow"} <= set(operator)
    assert client.get("/health/ready").status_code == 200
    assert client.get("/health/quick").status_code == 200
    assert client.get("/health/live").status_code == 200
    return database


def _assert_down(client: Any, *, hidden: list[str]) -> dict[str, Any]:
    response = client.get("/health")
    body = response.get_json()
    assert response.status_code == 503 and body["status"] == "unhealthy", body
    database = body["checks"]["database"]
    assert database["status"] == "error" and database["error"].startswith("OperationalError")
    text = response.get_data(as_text=True)
    for secret in hidden:
        assert secret not in text, f"{secret!r} leaked: {database['error']}"
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and ready.get_json()["status"] == "not_ready"
    assert client.get("/health/live").status_code == 200, "liveness never depends on the database"
    return database


def test_postgresql_up_is_healthy(health_app: Callable, postgres_databases: Callable) -> None:
    env = {"DATABASE_URL": postgres_databases(), "DB_POOL_SIZE": "3", "OPS_TOKEN": TOKEN}
    client = health_app(env=env).test_client()
    database = _assert_up(client, "postgresql")
    assert database["pool_size"] == 3


def test_postgresql_dropped_under_a_running_app_is_unhealthy_but_alive(
        health_app: Callable, postgres_databases: Callable, drop_database: Callable) -> None:
    url = postgres_databases()
    name = url.rsplit("/", 1)[1]
    client = health_app(env={"DATABASE_URL": url, "HEALTH_QUICK_TTL": "1", "OPS_TOKEN": TOKEN}).test_client()
    _assert_up(client, "postgresql")
    drop_database(url)  # terminates the pooled connections; new ones are refused
    _assert_down(client, hidden=[name, "127.0.0.1", "5432"])
    operator = client.get("/health", headers={"Authorization": f"Bearer {TOKEN}"}).get_json()
    assert name in operator["checks"]["database"]["error"], "operators see the full error"
    quick = _wait_for_quick(client, 503)
    assert quick.status_code == 503 and quick.get_json()["status"] == "unhealthy"
    assert quick.get_json()["checks"]["database"]["status"] == "error"


def test_postgresql_on_a_closed_port_is_unhealthy_from_the_first_request(health_app: Callable) -> None:
    port = free_port()
    client = health_app(env={"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/nothing"}).test_client()
    quick = client.get("/health/quick")  # no snapshot yet: runs once
    assert quick.status_code == 503 and quick.get_json()["status"] == "unhealthy"
    _assert_down(client, hidden=["127.0.0.1", str(port), "nothing"])


def test_sqlite_up_is_healthy(health_app: Callable, tmp_path: Path) -> None:
    client = health_app(env={"DATABASE_URL": f"sqlite:///{tmp_path / 'up.sqlite3'}", "OPS_TOKEN": TOKEN}).test_client()
    _assert_up(client, "sqlite")


def test_sqlite_unopenable_is_unhealthy_but_alive(health_app: Callable, tmp_path: Path) -> None:
    blocked = tmp_path / "blocked.sqlite3"
    blocked.mkdir()  # a directory where the database file should be: sqlite cannot open it
    client = health_app(env={"DATABASE_URL": f"sqlite:///{blocked}", "HEALTH_QUICK_TTL": "1"}).test_client()
    assert client.get("/health/quick").status_code == 503
    _assert_down(client, hidden=[str(tmp_path)])
