"""The operator guard and logging."""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path
from typing import Callable

from flask import Flask

from stevedores import hookimpl, operator_only


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
