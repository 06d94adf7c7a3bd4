"""The operator guard and logging."""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path
from typing import Callable

import pytest
from flask import Flask

from stevedores import ConfigError, hookimpl, operator_only


class OpsRoutes:
    @hookimpl
    def stevedores_startup(self, app: Flask) -> None:
        @app.get("/ops/open")
        @operator_only(open_without_token=True)
        def open_view() -> str:
            return "open"

        @app.post("/ops/action")
        @operator_only(open_without_token=False)
        def action_view() -> str:
            return "done"


def test_without_a_token_routes_are_open_or_absent(make_stevedores_app: Callable) -> None:
    client = make_stevedores_app(plugins=[], extra_plugins=[("ops", OpsRoutes())]).test_client()
    assert client.get("/ops/open").text == "open"
    assert client.post("/ops/action").status_code == 404


def test_with_a_token_only_the_bearer_gets_in(make_stevedores_app: Callable) -> None:
    app = make_stevedores_app(plugins=[], extra_plugins=[("ops", OpsRoutes())], env={"OPS_TOKEN": "t0ken-xyz"})
    client = app.test_client()
    for path, method in (("/ops/open", client.get), ("/ops/action", client.post)):
        assert method(path).status_code == 401
        assert method(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert method(path, headers={"Authorization": "Bearer t0ken-xyz"}).status_code == 200
    refused = client.post("/ops/action")
    assert refused.json["error"] == "operator token required" and "Bearer" in refused.headers["WWW-Authenticate"]


TOKEN = "operator-token-" + "x" * 32
OTHER_CLIENT = {"REMOTE_ADDR": "198.51.100.20"}


@pytest.mark.parametrize("plugins", [[], ["security"]])  # in memory; through the rate_limits service
def test_wrong_tokens_are_throttled_per_client_address(make_stevedores_app: Callable, plugins: list[str]) -> None:
    """The audit: guessing OPS_TOKEN on /metrics was unthrottled."""
    app = make_stevedores_app(plugins=plugins, extra_plugins=[("ops", OpsRoutes())], env={
        "OPS_TOKEN": TOKEN, "OPS_TOKEN_FAILURES_PER_MINUTE": "3", "WEB_WORKERS": "1", "RATE_LIMITS": "none"})
    counted_by = type(app.extensions["stevedores_operator"]).__name__
    assert counted_by == ("ServiceCounter" if plugins else "FailureCounter")
    client = app.test_client()
    guesses = [client.get("/ops/open", headers={"Authorization": f"Bearer guess-{n}"}).status_code for n in range(4)]
    assert guesses == [401, 401, 401, 429]
    right = client.get("/ops/open", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 429 and right.headers["Retry-After"] == "60"  # even the right one, this minute
    # One 429 body everywhere: the rate_limits service's shape (plugins/security/README.md).
    assert right.json == {"error": "too many requests", "limit": "3 per 1 minute", "retry_after": 60,
                          "message": right.json["message"]}
    assert client.get("/ops/open", headers={"Authorization": f"Bearer {TOKEN}"},
                      environ_base=OTHER_CLIENT).status_code == 200  # another address is not affected


def test_production_refuses_a_short_token_and_a_token_over_plain_http(make_stevedores_app: Callable) -> None:
    production = {"FLASK_ENV": "production", "SECRET_KEY": "s" * 40, "WEB_WORKERS": "1"}
    with pytest.raises(ConfigError) as caught:
        make_stevedores_app(plugins=[], env={**production, "OPS_TOKEN": "a"})
    assert [p.name for p in caught.value.problems] == ["OPS_TOKEN"] and "at least 32" in str(caught.value)
    assert "'a'" not in str(caught.value)
    make_stevedores_app(plugins=[], env={"OPS_TOKEN": "a"})  # development: any token
    app = make_stevedores_app(plugins=[], extra_plugins=[("ops", OpsRoutes())], env={**production, "OPS_TOKEN": TOKEN})
    client = app.test_client()
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    plain = client.post("/ops/action", headers=bearer, base_url="http://localhost")
    assert plain.status_code == 403 and "plain HTTP" in plain.json["error"]
    assert client.post("/ops/action", headers=bearer, base_url="https://localhost").status_code == 200


def test_log_lines_are_single_and_secrets_redacted(make_stevedores_app: Callable, tmp_path: Path) -> None:
    log_file = tmp_path / "app.log"
    make_stevedores_app(plugins=[], env={"LOG_FILE": str(log_file), "OPS_TOKEN": "very-secret-token"})
    logging.getLogger("stevedores.test").error("token is very-secret-token\nsecond line")
    for handler in logging.getLogger("stevedores").handlers:
        handler.flush()
    lines = log_file.read_text().splitlines()
    assert len(lines) == 1
    assert "very-secret-token" not in lines[0] and "<redacted>" in lines[0] and "second line" in lines[0]
    assert " ERROR [" in lines[0] and "stevedores.test:" in lines[0]


def _write_lines(path: str, writer: int, count: int) -> None:
    from stevedores.logs import _file_handler

    handler = _file_handler(path, max_bytes=4096, backups=200)
    logger = logging.getLogger(f"writer{writer}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    for i in range(count):
        logger.info("writer=%d line=%d %s", writer, i, "x" * 40)
    handler.close()


def test_several_processes_rotate_one_log_file_without_losing_lines(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.log")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_lines, args=(path, w, 300)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    files = list(tmp_path.glob("shared.log*"))
    assert len(files) > 5  # it did rotate
    lines = [line for f in files for line in f.read_text().splitlines() if "writer=" in line]
    assert len(lines) == 1200 and len(set(lines)) == 1200


def test_infrastructure_routes_are_marked(make_stevedores_app: Callable) -> None:
    from stevedores import infrastructure, is_infrastructure

    class Probe:
        @hookimpl
        def stevedores_startup(self, app: Flask) -> None:
            @app.get("/probe")
            @infrastructure
            def probe() -> str:
                return str(is_infrastructure())

            @app.get("/page")
            def page() -> str:
                return str(is_infrastructure())

    client = make_stevedores_app(plugins=[], extra_plugins=[("probe", Probe())]).test_client()
    assert client.get("/probe").text == "True" and client.get("/page").text == "False"


def test_secrets_are_redacted_from_tracebacks_too(make_stevedores_app: Callable, tmp_path: Path) -> None:
    log_file = tmp_path / "trace.log"
    make_stevedores_app(plugins=[], env={"LOG_FILE": str(log_file), "OPS_TOKEN": "tok3n-in-a-traceback"})
    try:
        raise RuntimeError("connecting with tok3n-in-a-traceback failed")
    except RuntimeError:
        logging.getLogger("stevedores.test").exception("it failed")
    for handler in logging.getLogger("stevedores").handlers:
        handler.flush()
    text = log_file.read_text()
    assert "RuntimeError" in text and "tok3n-in-a-traceback" not in text and "<redacted>" in text
