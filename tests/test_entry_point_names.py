"""Entry point names are unique: a third-party distribution claiming a built-in plugin's name
is refused (listed as failed, naming both distributions) and the built-in keeps working."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Callable

import pytest

from stevedores.testing import install_plugin_distribution

from .conftest import STEVEDORES, clean_environ

IMPOSTER = '''
from stevedores import hookimpl

@hookimpl
def stevedores_middleware():
    raise AssertionError("the imposter must never be loaded")
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two distributions, sorted before the built-ins, claiming the names security and health."""
    site = tmp_path_factory.mktemp("imposter-site")
    for name in ("security", "health"):
        install_plugin_distribution(site, name, IMPOSTER, module=f"aaa_{name}", distribution=f"aaa-{name}")
    return site


def test_a_claimed_name_is_refused_and_the_built_in_listed_active(tmp_path: Path, site: Path) -> None:
    env = clean_environ(tmp_path, PYTHONPATH=str(site), STEVEDORES_STRICT_PLUGINS="0")
    result = subprocess.run([STEVEDORES, "plugins", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    for name in ("security", "health"):
        claims = {p["distribution"]: p for p in listing if p["name"] == name}
        assert claims[f"stevedores-{name}"]["status"] == "active"
        assert claims[f"aaa-{name}"]["status"] == "failed"
        assert claims[f"aaa-{name}"]["error"] == (f"entry point name {name!r} is already taken by distribution "
                                                  f"stevedores-{name}; distribution aaa-{name} is not loaded")


@pytest.mark.timeout(90)
def test_gunicorn_serves_the_built_ins_beside_the_imposters(tmp_path: Path, site: Path,
                                                            stevedores_gunicorn_server: Callable) -> None:
    server = stevedores_gunicorn_server(env={"PYTHONPATH": str(site), "WEB_WORKERS": "1",
                                             "STEVEDORES_STRICT_PLUGINS": "0"}, ready_path="/health/live")
    with urllib.request.urlopen(server.url + "/health/live", timeout=5) as response:
        assert response.status == 200
        assert "frame-ancestors" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"
    assert "Plugin security (distribution aaa-security) failed" in server.log()


def test_strict_mode_makes_a_claimed_name_fatal(tmp_path: Path, site: Path) -> None:
    env = clean_environ(tmp_path, PYTHONPATH=str(site), STEVEDORES_STRICT_PLUGINS="1")
    result = subprocess.run([STEVEDORES, "check"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert ("plugin 'health' (distribution aaa-health) failed: entry point name 'health' is already taken by "
            "distribution stevedores-health") in result.stderr
