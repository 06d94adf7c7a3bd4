"""Drain on SIGTERM under real gunicorn: readiness fails at once, the instance keeps serving new
connections (GETs and POSTs) for SHUTDOWN_DRAIN_SECONDS, then stops accepting and finishes in-flight work."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from stevedores.drain import DRAINING, DrainFlag, drain_seconds, install
from stevedores.settings import CORE_SETTINGS, read_config
from stevedores.testing import GunicornServer

DRAIN = 3.0

APP = '''
import time
from flask import request
from stevedores import create_app

application = create_app()

@application.get("/slow")
def slow():
    time.sleep(float(request.args["seconds"]))
    return "slow done"

@application.post("/echo")
def echo():
    return request.get_data()
'''


def _call(url: str, data: bytes | None = None, timeout: float = 10) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.timeout(60)
def test_sigterm_fails_readiness_keeps_serving_then_finishes_in_flight(
        tmp_path: Path, stevedores_environ: dict[str, str]) -> None:
    (tmp_path / "drain_app.py").write_text(APP)
    server = GunicornServer({**stevedores_environ, "STEVEDORES_PLUGINS": "health",
                             "SHUTDOWN_DRAIN_SECONDS": str(DRAIN), "PYTHONPATH": str(tmp_path)},
                            tmp_path / "gunicorn", app="drain_app:application")
    try:
        server.start("/health/live")
        assert _call(server.url + "/health/ready")[0] == 200
        slow: list[Any] = []
        # Starts during the drain and is still running when the listeners close at DRAIN.
        slow_request = threading.Thread(target=lambda: slow.append(_call(server.url + "/slow?seconds=2.5")))
        assert server.proc is not None
        sent = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        while True:
            status, body = _call(server.url + "/health/ready")
            if status == 503:
                break
            assert time.monotonic() - sent < 2, "readiness still 200 two seconds after SIGTERM"
        not_ready_after = time.monotonic() - sent
        assert json.loads(body) == {"status": "not_ready", "reason": "draining"}
        assert _call(server.url + "/health/quick")[0] == 503  # load balancers polling the quick probe see it too
        served: list[tuple[int, int]] = []
        while time.monotonic() - sent < DRAIN - 0.6:  # new connections, each its own
            served.append((_call(server.url + "/")[0], _call(server.url + "/echo", data=b"tally")[0]))
            time.sleep(0.05)
        slow_request.start()
        assert served and set(served) == {(200, 200)}, served
        while time.monotonic() - sent < DRAIN + 5:  # after the drain: no longer accepting
            try:
                _call(server.url + "/health/live", timeout=1)
            except OSError:
                break
            time.sleep(0.05)
        else:
            pytest.fail("still accepting connections long after the drain")
        code = server.proc.wait(20)
        slow_request.join(10)
    finally:
        server.stop()
    assert code == 0, server.log()
    assert slow == [(200, b"slow done")], server.log()
    assert not_ready_after < 0.5 + 0.5  # ~0.5 s asked; the other half second is for a loaded test machine
    assert "Draining for 3s" in server.log()


def test_the_drain_default_follows_the_profile() -> None:
    def config(**env: str) -> Any:
        return read_config([("core", s) for s in CORE_SETTINGS], {"SECRET_KEY": "k" * 40, **env})

    assert drain_seconds(config(FLASK_ENV="production")) == 5.0
    assert drain_seconds(config(FLASK_ENV="development")) == 0.0
    assert drain_seconds(config(FLASK_ENV="testing")) == 0.0
    assert drain_seconds(config(FLASK_ENV="production", SHUTDOWN_DRAIN_SECONDS="12.5")) == 12.5


def test_readiness_answers_503_while_draining(make_stevedores_app: Any) -> None:
    client = make_stevedores_app(plugins=["health"]).test_client()
    try:
        DRAINING.set()
        response = client.get("/health/ready")
        assert response.status_code == 503 and response.json == {"status": "not_ready", "reason": "draining"}
        quick = client.get("/health/quick")
        assert quick.status_code == 503 and quick.json["reason"] == "draining"
        assert client.get("/health/live").status_code == 200
    finally:
        DRAINING.clear()
    assert client.get("/health/ready").status_code == 200
    assert client.get("/health/quick").status_code == 200


def test_a_second_sigterm_stops_at_once_and_zero_seconds_keeps_gunicorns_behaviour() -> None:
    class Arbiter:  # the two methods install() wraps, as gunicorn's main loop calls them
        def __init__(self) -> None:
            self.managed = 0
            self.log = logging.getLogger("test.arbiter")

        def handle_term(self) -> None:
            raise StopIteration

        def manage_workers(self) -> None:
            self.managed += 1

        def wakeup(self) -> None:
            pass

    flag = DrainFlag()
    untouched = Arbiter()
    install(untouched, 0, flag)
    with pytest.raises(StopIteration):
        untouched.handle_term()
    assert not flag.is_set()

    arbiter = Arbiter()
    install(arbiter, 60, flag)
    arbiter.handle_term()  # first SIGTERM: draining, the loop goes on managing workers
    assert flag.is_set()
    arbiter.manage_workers()
    assert arbiter.managed == 1
    with pytest.raises(StopIteration):  # second SIGTERM: gunicorn's graceful stop now
        arbiter.handle_term()
