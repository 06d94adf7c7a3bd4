"""Rate limits without Redis under real gunicorn: one budget per instance, whichever worker
answers and however often workers are replaced (issue 12)."""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import pytest
from stevedores_security.instance_windows import DATABASE_NAME, InstanceWindows

LIMIT = 15


def _get(url: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


@pytest.mark.timeout(90)
def test_one_client_gets_the_limit_per_instance_across_three_recycling_workers(
        stevedores_gunicorn_server: Callable) -> None:
    server = stevedores_gunicorn_server(env={"RATE_LIMITS": f"{LIMIT} per minute", "WEB_WORKERS": "3",
                                             "GUNICORN_MAX_REQUESTS": "4"}, ready_path="/health/live")
    answers = [_get(server.url + "/") for _ in range(3 * LIMIT)]
    statuses = [status for status, _h in answers]
    assert statuses == [200] * LIMIT + [429] * (2 * LIMIT), statuses
    assert {h["RateLimit-Limit"] for _s, h in answers} == {str(LIMIT)}  # the limit shown is the one enforced
    assert [h["RateLimit-Remaining"] for _s, h in answers[:LIMIT]] == [str(LIMIT - n) for n in range(1, LIMIT + 1)]
    booted = set(re.findall(r"Booting worker with pid: (\d+)", server.log()))
    assert len(booted) >= 3 + 5, f"expected many recycles, saw {len(booted)} workers"


def test_instance_windows_count_across_processes_and_start_a_new_window(tmp_path: Path) -> None:
    clock = [1000.0]
    windows = InstanceWindows(tmp_path / DATABASE_NAME, clock=lambda: clock[0])
    assert windows.incr("k", 60) == (1, 1060.0)
    pid = os.fork()
    if pid == 0:  # a second worker of the same instance
        try:
            InstanceWindows(tmp_path / DATABASE_NAME, clock=lambda: 1001.0).incr("k", 60, 2)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert windows.get("k") == (3, 1060.0)
    clock[0] = 1060.0  # the window ended: a fresh one
    assert windows.get("k") == (0, 1060.0) and windows.incr("k", 60) == (1, 1120.0)
    windows.clear("k")
    assert windows.get("k") == (0, 1060.0) and len(windows) == 0
