"""docs/deployment.md: the troubleshooting commands it promises print what it says (its settings
table is checked with the README's in test_docs.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable

import pytest

from stevedores.testing import require_service

REPO = Path(__file__).resolve().parent.parent
DOC = (REPO / "docs" / "deployment.md").read_text()


def console_blocks(state: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs of the console blocks marked with ``state``."""
    pairs = []
    for block in re.findall(rf"<!-- state: {state} -->\n```console\n(.*?)```", DOC, re.S):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            pairs.append((command, output.strip()))
    return pairs


def run_commands(state: str, url: str) -> None:
    pairs = console_blocks(state)
    assert pairs, f"docs/deployment.md has no console block for state {state}"
    for command, expected in pairs:
        shown = command.replace("http://127.0.0.1:8000", url)
        result = subprocess.run(["bash", "-o", "pipefail", "-c", shown], capture_output=True, text=True, timeout=30)
        assert result.stdout.strip() == expected, f"{command!r} printed {result.stdout.strip()!r}, not {expected!r}"


@pytest.mark.timeout(90)
def test_troubleshooting_commands_print_what_the_guide_says(stevedores_gunicorn_server: Callable,
                                                            stevedores_redis_server: Callable) -> None:
    for tool in ("curl", "jq"):
        require_service(tool, shutil.which(tool) is not None, "make install-test installs it")
    redis = stevedores_redis_server()
    server = stevedores_gunicorn_server(env={"FLASK_ENV": "production", "SECRET_KEY": "d" * 40, "REDIS_URL": redis.url,
                                  "WEB_WORKERS": "1", "REDIS_BREAKER_FAILURE_THRESHOLD": "2"},
                             ready_path="/health/live")
    run_commands("healthy", server.url)
    redis.kill()
    # The redis check's pings open the breaker after the threshold, then the rate limiter moves to
    # memory; /health reuses a result for HEALTH_CACHE_SECONDS (1 s): wait for the state the guide shows.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        body = urllib.request.urlopen(server.url + "/health", timeout=10).read().replace(b" ", b"")
        if b'"circuit_breaker_state":"open"' in body and b'"storage":"memory"' in body:
            break
        time.sleep(0.2)
    run_commands("redis-down", server.url)
