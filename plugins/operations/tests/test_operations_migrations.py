"""Migrations on SQLite and the real PostgreSQL: from empty, from the previous revision (data kept), concurrently,
and the CLI commands that use them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from stevedores_operations.migrate import VERSION_TABLE, current_revision, head_revision, upgrade

STEVEDORES = str(Path(sys.executable).with_name("stevedores"))


@pytest.fixture
def empty_database(database_url: str) -> Any:
    """An engine on a database without any operations table."""
    engine = create_engine(database_url)
    with engine.begin() as conn:
        for table in ("operations_tallies", "operations_api_tokens", "operations_vessel_calls", "operations_users",
                      VERSION_TABLE):
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    yield engine
    engine.dispose()


def test_upgrade_from_empty(empty_database: Any) -> None:
    assert current_revision(empty_database) is None
    assert upgrade(empty_database) == (None, head_revision())
    names = set(inspect(empty_database).get_table_names())
    assert {"operations_users", "operations_api_tokens", "operations_vessel_calls", "operations_tallies",
            VERSION_TABLE} <= names and "alembic_version" not in names
    assert upgrade(empty_database) == (head_revision(), head_revision())  # idempotent


def test_upgrade_from_the_previous_revision_keeps_data(empty_database: Any) -> None:
    upgrade(empty_database, "0001_initial")
    columns = {c["name"] for c in inspect(empty_database).get_columns("operations_tallies")}
    assert "category" not in columns
    with empty_database.begin() as conn:
        for call_id, name, vtype in ((1, "Tor Heavylift", "heavy"), (2, "Grand Mistral", "auto")):
            conn.execute(text(
                "INSERT INTO operations_vessel_calls (id, vessel_name, shipping_line, vessel_type, operation_type, "
                "berth, planned_discharge_auto, planned_discharge_heavy, planned_start, planned_end, status, "
                "created_at) VALUES (:id, :name, 'Line', :vtype, 'discharge', 'B1', 10, 10, :t, :t, "
                "'operations_active', :t)"), {"id": call_id, "name": name, "vtype": vtype, "t": "2026-05-01 06:00:00"})
            conn.execute(text(
                "INSERT INTO operations_tallies (vessel_call_id, direction, units, shift, zone, clerk, tallied_at, "
                "idempotency_key) VALUES (:id, 'discharged', :units, '06:00-14:00', 'A1', 'old', :t, :key)"),
                {"id": call_id, "units": 3 * call_id, "t": "2026-05-01 07:00:00", "key": f"k{call_id}"})
    assert upgrade(empty_database) == ("0001_initial", "0005_change_notifications")
    with empty_database.connect() as conn:
        rows = conn.execute(text("SELECT vessel_call_id, units, category, clerk FROM operations_tallies "
                                 "ORDER BY vessel_call_id")).all()
        versions = conn.execute(text("SELECT id, version FROM operations_vessel_calls ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [(1, 3, "heavy", "old"), (2, 6, "auto", "old")]
    assert [tuple(v) for v in versions] == [(1, 0), (2, 0)]
    indexes = {i["name"] for i in inspect(empty_database).get_indexes("operations_tallies")}
    assert "ix_operations_tallies_call_time" in indexes


def test_the_app_upgrades_an_old_database_at_start_up(empty_database: Any, database_url: str,
                                                      make_stevedores_app: Any) -> None:
    upgrade(empty_database, "0001_initial")
    app = make_stevedores_app(plugins=["operations"], env={"DATABASE_URL": database_url})
    assert current_revision(app.extensions["stevedores"].engine) == head_revision()
    assert app.test_client().get("/").status_code == 200


def test_without_auto_migrate_the_app_leaves_the_schema_alone(empty_database: Any, database_url: str,
                                                             make_stevedores_app: Any) -> None:
    make_stevedores_app(plugins=["operations"], env={"DATABASE_URL": database_url, "OPERATIONS_AUTO_MIGRATE": "0"})
    assert current_revision(empty_database) is None


def test_concurrent_upgrades_migrate_once(empty_database: Any, database_url: str) -> None:
    engines = [create_engine(database_url) for _ in range(3)]
    outcomes: list[Any] = []
    barrier = threading.Barrier(len(engines))

    def run(engine: Any) -> None:
        barrier.wait()
        try:
            outcomes.append(upgrade(engine))
        except Exception as exc:  # noqa: BLE001 - asserted below
            outcomes.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for engine in engines:
        engine.dispose()
    assert sorted(outcomes, key=str) == sorted([(None, head_revision())] + [(head_revision(), head_revision())] * 2,
                                               key=str)


def cli(tmp_path: Path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("STEVEDORES_", "FLASK_", "OPERATIONS_", "REDIS_", "SECRET_"))}
    environ.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}", "LOG_FILE": "none",
                    "STEVEDORES_PLUGINS": "operations", **env})
    return subprocess.run([STEVEDORES, *args], env=environ, cwd=tmp_path, input=stdin, capture_output=True,
                          text=True, timeout=60)


def test_cli_db_upgrade_users_and_demo_data(tmp_path: Path) -> None:
    upgraded = cli(tmp_path, "db", "upgrade", OPERATIONS_AUTO_MIGRATE="0")
    assert upgraded.returncode == 0 and "empty -> 0005_change_notifications" in upgraded.stdout, upgraded.stderr
    created = cli(tmp_path, "users", "create", "Bob", "--role", "manager", "--password-stdin", "--token",
                  stdin="a long enough password\n")
    assert created.returncode == 0 and "created manager bob" in created.stdout, created.stderr
    token = created.stdout.split("API token (shown once): ")[1].strip()
    assert token.startswith("sdo_")
    short = cli(tmp_path, "users", "create", "eve", "--role", "clerk", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "password: must be at least 15 characters" in short.stderr
    demo = cli(tmp_path, "demo-data")
    assert demo.returncode == 0 and "loaded 6 vessel calls and" in demo.stdout, demo.stderr
    engine = create_engine(f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT token_hash FROM operations_api_tokens")).scalar()
        statuses = {r[0] for r in conn.execute(text("SELECT status FROM operations_vessel_calls"))}
    engine.dispose()
    assert stored != token and len(stored) == 64  # only the hash is stored
    assert {"expected", "arrived", "berthed", "operations_active", "departed"} <= statuses


@pytest.mark.timeout(120)
def test_demo_data_from_several_instances_at_once_loads_once(tmp_path: Path) -> None:
    """Three fresh instances run `stevedores demo-data` together on one empty PostgreSQL database:
    one migrates and loads, the others wait on the locks and find the work done; all exit 0."""
    from stevedores.testing import temporary_postgres_database

    with temporary_postgres_database("stevedores_demo") as url:
        environ = {k: v for k, v in os.environ.items()
                   if not k.startswith(("STEVEDORES_", "FLASK_", "OPERATIONS_", "REDIS_", "SECRET_"))}
        environ.update({"DATABASE_URL": url, "LOG_FILE": "none", "STEVEDORES_PLUGINS": "operations"})
        runs = [subprocess.Popen([STEVEDORES, "demo-data"], env=environ, cwd=tmp_path, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(3)]
        try:
            outputs = [run.communicate(timeout=90) for run in runs]
        finally:
            for run in runs:
                if run.poll() is None:
                    run.kill()
        engine = create_engine(url)
        with engine.connect() as conn:
            calls = conn.execute(text("SELECT count(*) FROM operations_vessel_calls")).scalar()
        engine.dispose()
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    assert calls == 6, outputs
    loaded = [out for out, _err in outputs if out.startswith("loaded 6 vessel calls")]
    assert len(loaded) == 1 and sum("nothing loaded" in out for out, _err in outputs) == 2, outputs
