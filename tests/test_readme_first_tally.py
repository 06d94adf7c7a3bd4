"""The README's own commands, from a fresh database to a posted tally.

The commands are read from the README (between the ``first-tally`` markers), so this test breaks
when the README drifts from what the dashboard does. The server is started as ``make run`` starts it
(``stevedores demo-data``, then ``stevedores serve``), on a free port instead of 8000, with no terminal
at all (standard input is /dev/null, as in CI or a background job).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from stevedores.testing import free_port, require_service, stop_process, wait_for_http

from .conftest import REPO, STEVEDORES, clean_environ

BIN = str(Path(sys.executable).parent) + "/"


def readme_block(name: str) -> str:
    """The fenced shell block between ``<!-- name:start -->`` and ``<!-- name:end -->`` in README.md."""
    text = (REPO / "README.md").read_text()
    found = re.search(rf"<!-- {name}:start -->\s*```sh\n(.*?)```\s*<!-- {name}:end -->", text, re.S)
    assert found, f"README.md has no {name} block"
    return found.group(1)


def make_run_recipe() -> list[str]:
    """The commands of the Makefile's ``run`` target (``$(BIN)/`` as this virtualenv's bin directory)."""
    recipe = re.search(r"^run:.*?\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert recipe, "the Makefile has no run target"
    lines = [line.strip().lstrip("-@").split("  #")[0].strip() for line in recipe.group(1).splitlines()]
    return [line.replace("$(BIN)/", BIN) for line in lines]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[dict[str, str], int]]:
    """``make run``'s commands on a fresh SQLite database; the server is stopped with SIGTERM afterwards."""
    port = free_port()
    env = clean_environ(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.sqlite3'}", PORT=str(port),
                        WEB_WORKERS="1")
    *setup, serve = make_run_recipe()
    for command in setup:
        subprocess.run(shlex.split(command), env=env, cwd=tmp_path, check=True, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=120)
    log = (tmp_path / "serve.log").open("wb")  # a file, not a pipe nobody reads (a full pipe blocks the server)
    proc = subprocess.Popen(shlex.split(serve), env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health/live", 30, proc)
        yield env, port
    finally:
        stop_process(proc, timeout=30)
        log.close()


@pytest.mark.timeout(120)
def test_the_readmes_commands_post_a_first_tally(served: tuple[dict[str, str], int], tmp_path: Path) -> None:
    require_service("jq", shutil.which("jq") is not None, "install jq (make test does)")
    env, port = served
    script = readme_block("first-tally").replace(".venv/bin/", BIN).replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "created clerk alice" in done.stdout and "API token (shown once): sdo_" in done.stdout
    answer = json.loads(done.stdout.strip().splitlines()[-1])  # the curl post's answer
    assert answer["created"] is True, answer
    assert (answer["tally"]["clerk"], answer["tally"]["units"]) == ("alice", 12)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/vessel-calls/{answer['tally']['vessel_call_id']}"
                                "/tallies", timeout=10) as response:
        assert any(t["id"] == answer["tally"]["id"] for t in json.load(response)["tallies"])


def test_the_readme_states_the_password_rule_the_code_applies(tmp_path: Path) -> None:
    from stevedores_operations.passwords import MIN_PASSWORD_LENGTH

    assert f"Passwords need at least {MIN_PASSWORD_LENGTH} characters" in " ".join(
        (REPO / "README.md").read_text().split())
    no_terminal = subprocess.run([STEVEDORES, "users", "create", "bob", "--role", "clerk"], stdin=subprocess.DEVNULL,
                                 env=clean_environ(tmp_path), cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert no_terminal.returncode == 2 and "--password-stdin" in no_terminal.stderr  # not a bare "Aborted!"
