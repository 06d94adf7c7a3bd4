"""Real gunicorn: a worker that keeps allocating is recycled gracefully and no request fails."""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from stevedores.testing import install_plugin_distribution

HOG_PLUGIN = '''
from flask import jsonify
from stevedores import hookimpl

HELD = []
STEP = 8 * 1024 * 1024
CAP = 240 * 1024 * 1024  # never more than this per worker, even if nothing recycles it


@hookimpl
def stevedores_startup(app):
    @app.get("/test/hog")
    def hog():
        if len(HELD) * STEP < CAP:
            HELD.append(b"\\x01" * STEP)  # written, so resident
        return jsonify(held_mb=len(HELD) * 8)
'''

def test_growing_worker_is_recycled_without_failing_a_request(stevedores_gunicorn_server: Callable,
                                                              tmp_path: Path) -> None:
    site = install_plugin_distribution(tmp_path / "site", "memory_hog_probe", HOG_PLUGIN)
    server = stevedores_gunicorn_server(env={
        "PYTHONPATH": str(site), "WEB_WORKERS": "2", "MEMORY_LIMIT_MB": "256", "WORKER_MEMORY_MB": "32",
        "MEMORY_CHECK_INTERVAL": "0.2", "MEMORY_RECYCLE_COOLDOWN": "2", "GUNICORN_MAX_REQUESTS": "0",
        "RATE_LIMITS": "none",  # this test is about recycling: its client hammers one route
        "LOG_FILE": "none"})
    booted = re.compile(r"Booting worker with pid: (\d+)")
    deadline = time.monotonic() + 10
    while len(booted.findall(server.log())) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    first_workers = set(booted.findall(server.log()))
    assert len(first_workers) == 2, server.log()
    # the kernel's OOM killer takes a worker (replaced) before the master (the whole instance)
    deadline = time.monotonic() + 10  # set in post_worker_init, just after the boot line
    while server.log().count("Memory monitor started") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {Path(f"/proc/{pid}/oom_score_adj").read_text().strip() for pid in first_workers} == {"500"}
    assert Path(f"/proc/{server.proc.pid}/oom_score_adj").read_text() == Path("/proc/self/oom_score_adj").read_text()

    statuses: list[object] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(server.url + "/test/hog", timeout=30) as response:
                    statuses.append(response.status)
            except (urllib.error.URLError, OSError) as exc:  # a failed request is what we look for
                statuses.append(repr(exc))
            time.sleep(0.1)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for thread in threads:
        thread.start()
    recycled_at = None
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            log = server.log()
            if recycled_at is None and "Recycling worker" in log:
                recycled_at = time.monotonic()
            if recycled_at and time.monotonic() - recycled_at > 2 and len(booted.findall(log)) > 2:
                break  # recycled, replaced, and the replacement has served for a while
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(35)
    log = server.log()
    assert re.search(r"Memory usage high: \d+MB of 256MB \(\d+\.\d%\)", log), log
    recycle = re.search(r"Recycling worker (\d+) \(cause: memory_critical\)", log)
    assert recycle, log
    assert recycle.group(1) in first_workers
    assert f"Worker exiting (pid: {recycle.group(1)})" in log
    assert len(booted.findall(log)) > 2, "gunicorn did not replace the recycled worker"
    assert statuses and all(s == 200 for s in statuses), [s for s in statuses if s != 200]
    assert len(statuses) > 20
