"""Logging: one greppable line per event, to stderr and to a log file that rotates
safely while several gunicorn workers write it (concurrent-log-handler takes a lock
around each write and rotation; Python's RotatingFileHandler would lose lines)."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from .redaction import redact, secrets_to_redact

if TYPE_CHECKING:
    from .settings import Config

LOGGER_NAME = "stevedores"
FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
#: Gunicorn's access line without its own timestamp (the line's prefix has one): Apache's combined
#: log format otherwise, plus the request time in microseconds (gunicorn's ``%(D)s``).
ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)sus'


class OneLineFormatter(logging.Formatter):
    """UTC timestamps; a multi-line message or traceback is folded onto one line; the
    values of secret settings are replaced with ``<redacted>`` in the finished line,
    tracebacks included."""

    converter = time.gmtime

    def __init__(self, fmt: str, datefmt: str, secrets: Iterable[str] = ()) -> None:
        super().__init__(fmt, datefmt=datefmt)
        self.secrets = secrets_to_redact(secrets)

    def format(self, record: logging.LogRecord) -> str:
        """The finished line; made once per record, though both handlers (stderr, LOG_FILE) ask."""
        made = record.__dict__.get("_stevedores_line")
        if made is not None and made[0] is self:
            return made[1]
        line = redact(super().format(record).replace("\r", "").replace("\n", " | "), self.secrets)
        record._stevedores_line = (self, line)  # type: ignore[attr-defined]
        return line


def configure_logging(config: Config) -> None:
    """Set up the ``stevedores`` logger once per process (again after a new config)."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in [h for h in logger.handlers if getattr(h, "_stevedores", False)]:
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(config["LOG_LEVEL"])
    formatter = OneLineFormatter(FORMAT, DATE_FORMAT, config.secret_values())
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    log_file = config["LOG_FILE"]
    if log_file and log_file.lower() != "none":
        handlers.append(_file_handler(log_file, config["LOG_MAX_BYTES"], config["LOG_BACKUP_COUNT"]))
    for handler in handlers:
        handler._stevedores = True  # type: ignore[attr-defined]
        handler.setFormatter(formatter)
        logger.addHandler(handler)


def _file_handler(path: str, max_bytes: int, backups: int) -> logging.Handler:
    from concurrent_log_handler import ConcurrentRotatingFileHandler

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return ConcurrentRotatingFileHandler(os.path.abspath(path), maxBytes=max_bytes, backupCount=backups,
                                         use_gzip=False)


class ToStevedoresHandlers(logging.Handler):
    """Hands each record to the ``stevedores`` logger's handlers (stderr and the log file, with their
    one-line format), so another library's logger writes the same lines to the same places."""

    def emit(self, record: logging.LogRecord) -> None:
        """Pass ``record`` to every handler of the ``stevedores`` logger whose level admits it."""
        for handler in logging.getLogger(LOGGER_NAME).handlers:
            if record.levelno >= handler.level:
                handler.handle(record)


def gunicorn_logconfig(config: Config) -> dict:
    """Gunicorn's ``logconfig_dict``: its error and access lines in the app's format and destinations.

    ``configure_logging(config)`` must have run in the master first (the handlers are the ones it
    made). Gunicorn merges this over its defaults (a shallow update); the root logger keeps no handler
    of its own, as without this configuration.
    """
    forward = {"()": f"{__name__}.ToStevedoresHandlers"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": "WARNING", "handlers": []},
        "handlers": {"stevedores": forward},
        "formatters": {},
        "loggers": {
            "gunicorn.error": {"level": config["LOG_LEVEL"], "handlers": ["stevedores"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stevedores"], "propagate": False},
        },
    }
