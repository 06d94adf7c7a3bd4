"""The guide's manual path, whole: a fresh virtualenv, `pip install -r requirements.txt`, then
`FLASK_ENV=production FLASK_CONFIG=render gunicorn -c gunicorn.conf.py wsgi:application`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from stevedores.testing import free_port, stop_process, wait_for_http

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(400)
def test_requirements_install_and_the_guide_command_serves(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "-r", "requirements.txt"],
                             cwd=REPO, capture_output=True, text=True, timeout=360)
    assert install.returncode == 0, install.stderr[-3000:]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEVEDORES_", "PYTHONPATH", "VIRTUAL_ENV"))}
    env.update({"PATH": f"{venv / 'bin'}:{env.get('PATH', '')}", "FLASK_ENV": "production", "FLASK_CONFIG": "render",
                "SECRET_KEY": "m" * 40, "PORT": str(port), "WEB_WORKERS": "1", "LOG_FILE": "none",
                "SHUTDOWN_DRAIN_SECONDS": "0",  # tests/test_drain.py covers the drain
                "DATABASE_URL": f"sqlite:///{tmp_path / 'manual.sqlite3'}"})
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log:  # a file, not a pipe: nothing blocks on a full pipe while it stops
        proc = subprocess.Popen(["gunicorn", "-c", "gunicorn.conf.py", "wsgi:application"], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health/live", 60, proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=10) as response:
            assert json.load(response)["status"] == "alive"
        listing = subprocess.run([str(venv / "bin" / "stevedores"), "plugins", "--json"], env=env, cwd=tmp_path,
                                 capture_output=True, text=True, timeout=60)
        plugins = {p["name"]: p["status"] for p in json.loads(listing.stdout)}
        expected = {p.parent.name for p in REPO.glob("plugins/*/pyproject.toml")}
        assert {name for name, status in plugins.items() if status == "active"} == expected
    finally:
        stop_process(proc, timeout=40)  # SIGTERM; SIGKILL to the group if it does not stop
    output = log_path.read_text(errors="replace")
    assert proc.returncode == 0, output[-3000:]
    assert "Final Workers: 1" in output
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import stevedores; print(stevedores.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path).stdout
    assert where.startswith(str(venv)), where  # the installed core is used, not this checkout's sources
