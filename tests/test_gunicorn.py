"""The repository's `gunicorn -c gunicorn.conf.py wsgi:application`, as a real process tree."""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Callable

import pytest

from stevedores.testing import GunicornServer, install_plugin_distribution

REPO = Path(__file__).resolve().parent.parent


def _root_server(env: dict[str, str], workdir: Path) -> GunicornServer:
    server = GunicornServer(env, workdir, app="wsgi:application", config=str(REPO / "gunicorn.conf.py"))
    server.env["PYTHONPATH"] = str(REPO)  # wsgi.py lives at the repository root
    return server


def test_repo_gunicorn_starts_logs_the_worker_block_and_stops_on_sigterm(
        tmp_path: Path, stevedores_environ: dict[str, str]) -> None:
    # The development profile with nothing but the test's settings: no SECRET_KEY, loopback only.
    env = {k: v for k, v in stevedores_environ.items() if k != "SECRET_KEY"}
    server = _root_server({**env, "FLASK_ENV": "development", "MEMORY_LIMIT_MB": "512", "WEB_WORKERS": "4"},
                          tmp_path).start()
    try:
        assert urllib.request.urlopen(server.url + "/", timeout=5).status == 200
        with urllib.request.urlopen(server.url + "/static/stevedores.css", timeout=5) as response:
            css_bytes = len(response.read())
        deadline = time.monotonic() + 10
        while len(re.findall(r"Booting worker with pid", server.log())) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        log = server.log()
        assert "Container Memory: 512MB" in log
        assert "Max Workers by Memory: 8" in log
        assert "Final Workers: 4" in log
        assert len(re.findall(r"Booting worker with pid", log)) == 4
        assert f"Listening at: http://127.0.0.1:{server.port}" in log
    finally:
        started = time.monotonic()
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.log()
    assert time.monotonic() - started < 10
    log = server.log()
    assert "Shutting down: Master" in log
    # One format for gunicorn's lines and the app's; each warning once; static files' real size.
    one_line = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR|CRITICAL) \[\d+\] [\w.]+: ")
    assert [line for line in log.splitlines() if not one_line.match(line)] == []
    assert log.count("SECRET_KEY is not set") == 1, log
    static = r'gunicorn\.access: 127\.0\.0\.1 .*"GET /static/stevedores\.css HTTP/1\.1" 200 (\d+) '
    assert re.search(static, log) and int(re.search(static, log).group(1)) == css_bytes > 0, log


def test_memory_decides_when_it_is_the_tighter_limit(stevedores_gunicorn_server: Callable) -> None:
    server = stevedores_gunicorn_server(env={"MEMORY_LIMIT_MB": "128", "WEB_WORKERS": "4"})
    deadline = time.monotonic() + 10
    while len(re.findall(r"Booting worker with pid", server.log())) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    log = server.log()
    assert "Final Workers: 2 (decided by memory_guard" in log
    assert len(re.findall(r"Booting worker with pid", log)) == 2


def test_bad_settings_stop_gunicorn_before_it_binds(tmp_path: Path, stevedores_environ: dict[str, str]) -> None:
    server = _root_server({**stevedores_environ, "WEB_WORKERS": "0", "MEMORY_LIMIT_MB": "abc"}, tmp_path)
    try:
        server.start(timeout=15)
    except RuntimeError as exc:
        message = str(exc)
    else:  # pragma: no cover - the assertion below reports it
        message = "started"
        server.stop()
    assert "WEB_WORKERS" in message and "MEMORY_LIMIT_MB" in message and "cannot start" in message


PROBE_PLUGIN = '''
import logging
import os
from stevedores import hookimpl

@hookimpl
def stevedores_services():
    logging.getLogger("stevedores.probe").warning("probe services built in pid %d", os.getpid())

@hookimpl
def stevedores_worker_started(app, worker):
    open(os.environ["PROBE_FILE"], "a").write(f"started {os.getpid()} {worker is not None}\\n")

@hookimpl
def stevedores_worker_exit(app, worker):
    open(os.environ["PROBE_FILE"], "a").write(f"exit {os.getpid()}\\n")
'''


@pytest.mark.parametrize("preload", ["1", "0"])
def test_lifecycle_hooks_reach_the_plugins_in_each_worker(stevedores_gunicorn_server: Callable, tmp_path: Path,
                                                          preload: str) -> None:
    """A plugin on PYTHONPATH, registered through a real entry point, records each worker's start;
    its services are built once, in the master, with or without preload_app (one runtime per process)."""
    site = install_plugin_distribution(tmp_path / "site", "lifecycle_probe", PROBE_PLUGIN)
    probe = tmp_path / "probe.txt"
    server = stevedores_gunicorn_server(env={"PYTHONPATH": str(site), "PROBE_FILE": str(probe), "WEB_WORKERS": "2",
                                             "PRELOAD_APP": preload})
    deadline = time.monotonic() + 10
    while (not probe.exists() or probe.read_text().count("started") < 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.stop() == 0
    lines = probe.read_text().splitlines()
    started = {line.split()[1] for line in lines if line.startswith("started") and line.endswith("True")}
    exited = {line.split()[1] for line in lines if line.startswith("exit")}
    assert len(started) == 2 and started == exited
    built = [line for line in server.log().splitlines() if "probe services built" in line]
    assert len(built) == 1 and built[0].endswith(f"pid {server.proc.pid}"), built
