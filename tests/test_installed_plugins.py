"""Third-party plugin distributions installed with pip: a real entry point each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from stevedores.testing import pip_install_target, write_plugin_distribution

from .conftest import STEVEDORES, clean_environ

PLUGINS = {
    "good": ("stevedores-dashboard>=0.1", '''
from stevedores import HealthCheck, MenuLink, hookimpl

@hookimpl
def stevedores_menu_links():
    return [MenuLink("Crane telemetry", "/cranes")]

@hookimpl
def stevedores_health_checks():
    return [HealthCheck("cranes", lambda: {"status": "healthy"})]
'''),
    "broken": ("stevedores-dashboard", 'raise ImportError("the crane vendor SDK is missing")\n'),
    "future": ("stevedores-dashboard>=9", 'from stevedores import hookimpl\n'),
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-install three throwaway plugin distributions into a private directory."""
    root = tmp_path_factory.mktemp("plugin-src")
    sources = [write_plugin_distribution(root, name, code, module=f"stevedores_test_{name}", version="1.2.3",
                                         distribution=f"stevedores-test-{name}", requires=[requirement])
               for name, (requirement, code) in PLUGINS.items()]
    return pip_install_target(tmp_path_factory.mktemp("plugin-site"), *sources)


def _env(tmp_path: Path, site: Path, **extra: str) -> dict[str, str]:
    return clean_environ(tmp_path, PYTHONPATH=str(site), **extra)


def test_installed_plugins_are_loaded_or_failed_with_the_reason(tmp_path: Path, site: Path) -> None:
    result = subprocess.run([STEVEDORES, "plugins", "--json"], env=_env(tmp_path, site), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    listing = {p["name"]: p for p in json.loads(result.stdout)}
    assert listing["good"]["status"] == "active"
    assert listing["good"]["distribution"] == "stevedores-test-good" and listing["good"]["version"] == "1.2.3"
    assert listing["good"]["hooks"] == ["stevedores_health_checks", "stevedores_menu_links"]
    assert listing["broken"]["status"] == "failed"
    assert "ImportError: the crane vendor SDK is missing" in listing["broken"]["error"]
    assert listing["future"]["status"] == "failed"
    assert "requires stevedores-dashboard>=9" in listing["future"]["error"]


def test_the_app_serves_with_a_broken_plugin_installed(tmp_path: Path, site: Path,
                                                       stevedores_gunicorn_server: Callable) -> None:
    import os

    env = _env(tmp_path, site)
    # Only the throwaway plugins: an installed plugin may take over "/" from the core's landing page.
    server = stevedores_gunicorn_server(env={"PYTHONPATH": env["PYTHONPATH"], "WEB_WORKERS": "1",
                                  "STEVEDORES_PLUGINS": "good,broken,future", "STEVEDORES_STRICT_PLUGINS": "0"})
    import urllib.request

    body = urllib.request.urlopen(server.url + "/", timeout=5).read().decode()
    assert "Crane telemetry" in body  # the good plugin's link
    assert "broken" in body and "failed" in body
    assert "Plugin broken (distribution stevedores-test-broken) failed" in server.log()
    assert os.path.exists(server.log_path)


def test_check_warns_of_a_failed_plugin_and_passes_unless_strict(tmp_path: Path, site: Path) -> None:
    result = subprocess.run([STEVEDORES, "check"], env=_env(tmp_path, site, STEVEDORES_STRICT_PLUGINS="0"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert ("warning: plugin broken (stevedores-test-broken) failed and the dashboard runs without it: "
            "import failed: ImportError: the crane vendor SDK is missing") in result.stderr
    assert "check passed" in result.stdout


def test_strict_mode_refuses_to_start_naming_plugin_and_distribution(tmp_path: Path, site: Path) -> None:
    env = _env(tmp_path, site, STEVEDORES_STRICT_PLUGINS="1")
    result = subprocess.run([STEVEDORES, "check"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "plugin 'broken' (distribution stevedores-test-broken) failed" in result.stderr
    gunicorn = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "python:stevedores.gunicorn_conf",
                               "stevedores.wsgi:application"], env=env, capture_output=True, text=True, timeout=60,
                              cwd=tmp_path)
    assert gunicorn.returncode != 0 and "plugin 'broken'" in gunicorn.stderr
