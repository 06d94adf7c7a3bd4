"""Hundreds of worker recycles under real gunicorn (GUNICORN_MAX_REQUESTS=3): the metrics
directory stays bounded by the live workers and /metrics counts every request answered."""

from __future__ import annotations

import http.client
import os
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.timeout(240)  # ~250 recycles: 96 s at load average 22 on 2 cores; CPU-bound forks

TOKEN = "ops-token-for-recycling-tests-42"
WORKERS = 3
MAX_REQUESTS = 3
REQUESTS = 1000
CLIENTS = 8
#: Files a process writes: counter, histogram, gauge_livemax, gauge_livemostrecent.
FILES_PER_PROCESS = 4


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """Status and body of a GET on a new connection (0 when no answer came)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=20) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError:
        return 0, ""


def send(port: int, path: str, count: int) -> list[int]:
    """``count`` GETs of ``path`` on one keep-alive connection (a new one whenever the server
    closes it, as a recycling worker does); the statuses, 0 for a request that got no answer.
    http.client rather than urllib: a fraction of the client's CPU on a 2-core machine."""
    statuses, conn = [], None
    for _ in range(count):
        try:
            conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            statuses.append(0)
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()
    return statuses


def requests_counted(base: str, route: str) -> float:
    """Sum of ``stevedores_http_requests_total`` for ``route`` on a scrape."""
    status, text = get(base + "/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "stevedores_http_requests_total" and s.labels.get("route") == route)


def test_hundreds_of_recycles_keep_the_directory_bounded_and_every_request_counted(
        stevedores_gunicorn_server: Callable[..., Any], tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    server = stevedores_gunicorn_server(env={
        "WEB_WORKERS": str(WORKERS), "GUNICORN_MAX_REQUESTS": str(MAX_REQUESTS), "OPS_TOKEN": TOKEN,
        "METRICS_MULTIPROC_DIR": str(metrics_dir), "RATE_LIMITS": "10000000 per minute",
    }, ready_path="/health/live")
    before = requests_counted(server.url, "/health/live")  # the readiness probe's
    most_files, done = 0, threading.Event()

    def watch() -> None:
        nonlocal most_files
        while not done.is_set():
            most_files = max(most_files, len(list(metrics_dir.glob("*.db"))))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            statuses = [status for batch in pool.map(lambda _: send(server.port, "/health/live", REQUESTS // CLIENTS),
                                                     range(CLIENTS)) for status in batch]
    finally:
        done.set()
        watcher.join(5)
    answered = statuses.count(200)
    assert answered == REQUESTS, {s: statuses.count(s) for s in set(statuses)}

    boots = len(re.findall(r"Booting worker with pid", server.log()))
    # over a hundred recycles: a worker past GUNICORN_MAX_REQUESTS still finishes what its threads
    # have in flight, so it answers more than 3 (about 150 recycles per 1,000 requests measured)
    assert boots - WORKERS >= 100, boots
    # one set of files per live worker (a replacement is forked after its predecessor's files are
    # archived), the master's own files, and one archive per type: never one set per worker that lived
    bound = FILES_PER_PROCESS * (WORKERS + 1) + 2
    assert most_files <= bound, (most_files, bound, sorted(p.name for p in metrics_dir.iterdir()))

    # every request answered is counted, once: the scrapes' own requests are a different route
    assert requests_counted(server.url, "/health/live") - before == answered
    # no file of a dead worker stays behind (the scrape itself may have recycled a worker: its
    # files go as soon as the master has reaped it)
    deadline = time.monotonic() + 15
    while (leftovers := dead_pids_with_files(metrics_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not leftovers, sorted(p.name for p in metrics_dir.iterdir())


def dead_pids_with_files(directory: Path) -> set[int]:
    """Pids named by metrics files in ``directory`` whose process is gone."""
    dead = set()
    for pid in {p.name.rsplit("_", 1)[1][:-3] for p in directory.glob("*.db")} - {"archive"}:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            dead.add(int(pid))
    return dead
