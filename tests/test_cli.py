"""The ``stevedores`` command, run as a real process."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest

from stevedores.testing import free_port, stop_process, wait_for_http

from .conftest import STEVEDORES, clean_environ

FOUR = {"health", "memory_guard", "redis_resilience", "security"}


def test_plugins_json_lists_the_four_plugins_loaded_through_entry_points(run_cli: Callable) -> None:
    result = run_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    listing = {p["name"]: p for p in json.loads(result.stdout)}
    assert FOUR <= set(listing)
    for name in FOUR:
        assert listing[name]["status"] == "active", listing[name]
        assert listing[name]["distribution"] == "stevedores-" + name.replace("_", "-")
        assert listing[name]["version"] and listing[name]["hooks"]


def test_a_disabled_plugin_is_listed_as_disabled(run_cli: Callable) -> None:
    result = run_cli("plugins", env={"STEVEDORES_DISABLE_PLUGINS": "security"})
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("security "))
    assert " disabled " in line
    assert run_cli("check", env={"STEVEDORES_DISABLE_PLUGINS": "security"}).returncode == 0


def test_check_names_every_bad_variable_and_exits_non_zero(run_cli: Callable) -> None:
    result = run_cli("check", env={"MEMORY_LIMIT_MB": "abc", "WEB_WORKERS": "0"})
    assert result.returncode != 0
    assert "MEMORY_LIMIT_MB" in result.stderr and "'abc'" in result.stderr
    assert "WEB_WORKERS" in result.stderr and ">= 1" in result.stderr


def test_check_names_secret_key_and_its_rule_in_production(run_cli: Callable) -> None:
    result = run_cli("check", env={"FLASK_ENV": "production", "SECRET_KEY": "short"})
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr and "at least 32 characters" in result.stderr
    assert "short" not in result.stderr.replace("SECRET_KEY", "")


def test_check_reports_an_unreachable_database(run_cli: Callable) -> None:
    result = run_cli("check", env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert result.returncode == 1
    assert "database: unreachable" in result.stderr and "nobody" not in result.stderr


def test_check_passes_on_the_embedded_defaults(run_cli: Callable) -> None:
    result = run_cli("check")
    assert result.returncode == 0, result.stderr
    assert "database: ok (sqlite, created at first start)" in result.stdout and "check passed" in result.stdout


def test_read_only_commands_write_nothing(tmp_path: Path) -> None:
    """With the embedded defaults (SQLite under instance/, a log file under logs/), in an empty directory."""
    cwd = tmp_path / "empty"
    cwd.mkdir()
    env = {k: v for k, v in clean_environ(tmp_path).items() if k not in ("DATABASE_URL", "LOG_FILE")}
    for command in (["plugins"], ["config"], ["settings"], ["workers"], ["check"]):
        result = subprocess.run([STEVEDORES, *command], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*")) == [], command


def test_config_redacts_secrets_and_says_where_values_came_from(run_cli: Callable) -> None:
    secret = "ops-token-that-must-not-leak"
    result = run_cli("config", "--json", env={"OPS_TOKEN": secret, "WEB_WORKERS": "3"})
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout + result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["OPS_TOKEN"]["value"] == "<redacted>"
    assert (rows["WEB_WORKERS"]["value"], rows["WEB_WORKERS"]["source"]) == ("3", "environment")
    assert rows["SECRET_KEY"]["source"] == "generated"
    assert rows["MEMORY_LIMIT_MB"]["plugin"] == "memory_guard"


def test_workers_shows_the_decision(run_cli: Callable) -> None:
    result = run_cli("workers", env={"MEMORY_LIMIT_MB": "512", "WEB_WORKERS": "4"})
    assert result.returncode == 0, result.stderr
    assert "Container Memory: 512MB" in result.stdout
    assert "Max Workers by Memory: 8" in result.stdout
    assert "Final Workers: 4 (decided by WEB_WORKERS" in result.stdout
    result = run_cli("workers", "--json", env={"MEMORY_LIMIT_MB": "128", "WEB_WORKERS": "4"})
    decision = json.loads(result.stdout)
    assert decision["final"] == 2 and decision["decided_by"] == "memory_guard"


@pytest.fixture
def dev_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, int]]:
    """``stevedores serve --dev`` with nothing configured; stopped with SIGTERM in the finaliser, failing or not.

    SIGTERM, not SIGINT: a shell starts background jobs with SIGINT ignored (``make test &``), and an
    ignored SIGINT is inherited, so SIGINT would leave the server running.
    """
    port = free_port()
    proc = subprocess.Popen([STEVEDORES, "serve", "--dev", "--port", str(port)], env=clean_environ(tmp_path),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        yield proc, port
    finally:
        stop_process(proc, timeout=30)


@pytest.mark.timeout(90)
def test_serve_dev_listens_on_loopback_reports_healthy_and_stops_on_sigterm(dev_server: tuple) -> None:
    proc, port = dev_server
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/health/live", 30, proc)
    with urllib.request.urlopen(url + "/health", timeout=10) as response:
        application = json.load(response)["checks"]["application"]
    assert application["status"] == "healthy", application  # nothing configured is not a warning
    assert "SECRET_KEY is ephemeral" in " ".join(application["info"])
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:  # development: loopback may scrape
        assert response.status == 200 and b"stevedores_plugin_status" in response.read()
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    assert f"127.0.0.1:{port}" in output
    assert output.count("SECRET_KEY is not set") == 1, output  # the warning once, not once per load


def test_gunicorn_binds_loopback_in_development_and_every_interface_elsewhere() -> None:
    from stevedores.runtime import Runtime
    from stevedores.server import GunicornPlan

    def bind(**env: str) -> str:
        runtime = Runtime.load({"PORT": "8123", "LOG_FILE": "none", **env}, load_entry_points=False)
        return GunicornPlan(runtime, runtime.worker_decision()).bind

    assert bind() == "127.0.0.1:8123"
    assert bind(FLASK_ENV="production", SECRET_KEY="k" * 40) == "0.0.0.0:8123"
    assert bind(FLASK_CONFIG="render", SECRET_KEY="k" * 40) == "0.0.0.0:8123"
