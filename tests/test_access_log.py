"""Gunicorn's access log through ``stevedores.access_log.AccessLogger``: gunicorn's own line, cheaper,
and no line for a successful infrastructure request unless ACCESS_LOG_INFRASTRUCTURE asks for it."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any, Callable

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from stevedores.access_log import AccessLogger, access_logger_class
from stevedores.logs import ACCESS_LOG_FORMAT
from stevedores.routes import INFRASTRUCTURE_ENVIRON_KEY


class _Response:
    """The parts of gunicorn's ``http.wsgi.Response`` an access line reads."""

    def __init__(self, status: str, sent: int | None) -> None:
        self.status, self.sent = status, sent
        self.status_code = int(status.split()[0])
        self.headers = [("Content-Type", "text/html"), ("Content-Length", str(sent))]


class _Request:
    """The parts of gunicorn's ``http.message.Request`` an access line reads."""

    headers = [("HOST", "dashboard.example"), ("USER-AGENT", "curl/8.5")]


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _logger(kind: type[Logger]) -> tuple[Logger, _Lines]:
    """A logger of ``kind`` whose access lines are collected (every gunicorn Logger shares the
    ``gunicorn.access`` logging logger: the last one made collects)."""
    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", ACCESS_LOG_FORMAT)
    logger = kind(cfg)
    lines = _Lines()
    logger.access_log.handlers = [lines]
    logger.access_log.propagate = False
    return logger, lines


def _environ(**extra: str) -> dict[str, Any]:
    return {"REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "GET", "RAW_URI": "/vessels/3?x=%22y",
            "PATH_INFO": "/vessels/3", "QUERY_STRING": "x=%22y", "SERVER_PROTOCOL": "HTTP/1.1", **extra}


@pytest.mark.parametrize("environ", [
    _environ(),
    _environ(HTTP_USER_AGENT='curl/8.5 "quoted"', HTTP_REFERER="https://example.org/a\"b"),
    _environ(HTTP_AUTHORIZATION="Basic Y2xlcms6c2VjcmV0", RAW_URI='/a"b'),  # clerk:secret: the user atom
], ids=["plain", "quotes", "basic-auth"])
@pytest.mark.parametrize("response", [_Response("200 OK", 5981), _Response("304 Not Modified", 0),
                                      _Response("500 Internal Server Error", None)], ids=["200", "304", "500"])
def test_the_line_is_gunicorns_own(environ: dict[str, Any], response: _Response) -> None:
    took = timedelta(seconds=1, microseconds=2150)
    written = []
    for kind in (AccessLogger, Logger):
        logger, lines = _logger(kind)
        logger.access(response, _Request(), dict(environ), took)
        written.append(lines.lines)
    assert written[0] == written[1] and len(written[0]) == 1


def test_successful_infrastructure_requests_write_no_line_unless_asked() -> None:
    probe = _environ(**{"PATH_INFO": "/health/ready", "RAW_URI": "/health/ready"})
    probe[INFRASTRUCTURE_ENVIRON_KEY] = True
    written = []
    for kind in (AccessLogger, access_logger_class(True)):
        logger, lines = _logger(kind)
        logger.access(_Response("200 OK", 20), _Request(), probe, timedelta(microseconds=300))
        logger.access(_Response("503 Service Unavailable", 40), _Request(), probe, timedelta(microseconds=300))
        logger.access(_Response("200 OK", 900), _Request(), _environ(), timedelta(microseconds=300))
        written.append(lines.lines)
    quiet_lines, verbose_lines = written
    assert [line.split('"')[1] + line.split('"')[2][:4] for line in quiet_lines] == [
        "GET /health/ready HTTP/1.1 503", "GET /vessels/3?x=%22y HTTP/1.1 200"]
    assert len(verbose_lines) == 3


def test_under_gunicorn_probes_are_quiet_and_pages_are_logged(stevedores_gunicorn_server: Callable) -> None:
    server = stevedores_gunicorn_server(env={"WEB_WORKERS": "1"}, ready_path="/health/live")
    for path in ("/health/live", "/health/quick", "/health/ready", "/", "/no-such-page"):
        try:
            urllib.request.urlopen(server.url + path, timeout=5).read()
        except urllib.error.HTTPError as exc:
            assert exc.code == 404 and path == "/no-such-page"
    # Stopped first: gunicorn writes a line after it has sent the response, and each worker buffers its
    # lines (ACCESS_LOG_FLUSH_SECONDS); a graceful stop writes them all, a probe's line too were one made.
    assert server.stop() == 0
    access = [line for line in server.log().splitlines() if "gunicorn.access:" in line]
    assert [line.split('"')[1] for line in access] == ["GET / HTTP/1.1", "GET /no-such-page HTTP/1.1"], access
