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

if TYPE_CHECKING:
    from .settings import Config

LOGGER_NAME = "stevedores"
FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


class OneLineFormatter(logging.Formatter):
    """UTC timestamps; a multi-line message or traceback is folded onto one line; the
    values of secret settings are replaced with ``<redacted>`` in the finished line,
    tracebacks included."""

    converter = time.gmtime

    def __init__(self, fmt: str, datefmt: str, secrets: Iterable[str] = ()) -> None:
        super().__init__(fmt, datefmt=datefmt)
        self.secrets = sorted((s for s in secrets if s), key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record).replace("\r", "").replace("\n", " | ")
        for secret in self.secrets:
            line = line.replace(secret, "<redacted>")
        return line


def configure_logging(config: Config) -> None:
    """Set up the ``stevedores`` logger once per process (again after a new config)."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in [h for h in logger.handlers if getattr(h, "_stevedores", False)]:
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(config["LOG_LEVEL"])
    formatter = OneLineFormatter(FORMAT, "%Y-%m-%dT%H:%M:%SZ", config.secret_values())
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
