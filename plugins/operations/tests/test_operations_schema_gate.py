"""The migration gate on the real PostgreSQL: with OPERATIONS_AUTO_MIGRATE off and the schema behind,
pages and API answer 503 (never 500), readiness is 503 with the reason, ``stevedores check`` fails naming
both revisions; once migrated, everything is served again without a restart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import create_engine, text
from stevedores_operations.migrate import VERSION_TABLE, head_revision, upgrade

STEVEDORES = str(Path(sys.executable).with_name("stevedores"))
TABLES = ("operations_tallies", "operations_api_tokens", "operations_vessel_calls", "operations_users", VERSION_TABLE)


@pytest.fixture
def unmigrated(postgres_url: str) -> Iterator[str]:
    """The module's PostgreSQL database without any operations table."""
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f"DROP TABLE IF EXISTS {table} CASCADE"))
    engine.dispose()
    yield postgres_url


def test_behind_schema_gives_503_everywhere_until_migrated(unmigrated: str,
                                                          make_stevedores_app: Callable[..., Any]) -> None:
    app = make_stevedores_app(plugins=["health", "operations"],
                              env={"DATABASE_URL": unmigrated, "OPERATIONS_AUTO_MIGRATE": "false",
                                   "HEALTH_CACHE_SECONDS": "0"})
    client = app.test_client()
    page = client.get("/")
    assert page.status_code == 503 and page.mimetype == "text/html" and page.headers["Retry-After"]
    assert "stevedores db upgrade" in page.get_data(as_text=True)
    api = client.get("/api/vessel-calls")
    assert api.status_code == 503 and api.json["error"] == "service_unavailable"
    assert f"is at empty (never migrated), this code needs {head_revision()}" in api.json["message"]
    assert client.post("/api/tallies", json={}).status_code == 503
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and ready.json["reason"] == "critical check failed: operations_schema"
    assert ready.json["checks"]["operations_schema"]["revision"] == "empty"
    assert ready.json["checks"]["operations_schema"]["head"] == head_revision()
    assert "run stevedores db upgrade" in ready.json["checks"]["operations_schema"]["problems"][0]  # public view

    upgrade(app.extensions["stevedores"].engine)  # what 'stevedores db upgrade' does
    assert client.get("/health/ready").status_code == 200
    assert client.get("/").status_code == 200
    assert client.get("/api/vessel-calls").status_code == 200


def test_a_schema_newer_than_the_code_is_served(unmigrated: str, make_stevedores_app: Callable[..., Any]) -> None:
    engine = create_engine(unmigrated)
    upgrade(engine)
    with engine.begin() as conn:  # a newer release migrated it during a rolling deploy
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999_from_the_future'"))
    engine.dispose()
    app = make_stevedores_app(plugins=["health", "operations"],
                              env={"DATABASE_URL": unmigrated, "OPERATIONS_AUTO_MIGRATE": "false"})
    client = app.test_client()
    assert client.get("/api/vessel-calls").status_code == 200
    assert client.get("/health/ready").status_code == 200


def test_stevedores_check_fails_naming_both_revisions(unmigrated: str, tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("STEVEDORES_", "FLASK_", "OPERATIONS_", "REDIS_", "SECRET_"))}
    environ.update({"DATABASE_URL": unmigrated, "LOG_FILE": "none", "STEVEDORES_PLUGINS": "health,operations",
                    "OPERATIONS_AUTO_MIGRATE": "false"})

    def check() -> subprocess.CompletedProcess:
        return subprocess.run([STEVEDORES, "check"], env=environ, cwd=tmp_path, capture_output=True, text=True,
                              timeout=60)

    behind = check()
    assert behind.returncode == 1, behind.stdout + behind.stderr
    assert "check passed" not in behind.stdout
    assert f"operations schema is at empty (never migrated), this code needs {head_revision()}" in behind.stderr
    upgrade_engine = create_engine(unmigrated)
    upgrade(upgrade_engine, "0001_initial")
    upgrade_engine.dispose()
    older = check()
    assert older.returncode == 1 and f"is at 0001_initial, this code needs {head_revision()}" in older.stderr
    environ["OPERATIONS_AUTO_MIGRATE"] = "true"
    migrated = check()
    assert migrated.returncode == 0 and "check passed" in migrated.stdout, migrated.stderr
