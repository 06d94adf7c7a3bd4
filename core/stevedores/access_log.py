"""Gunicorn's access log, cheaper per line and without the probes' noise.

:class:`AccessLogger` is gunicorn's own ``glogging.Logger`` (``logger_class`` in
``stevedores.gunicorn_conf``) with two changes to ``access()``:

- A successful (status < 400) request to an infrastructure route (health probes, ``/health``,
  ``/metrics``; see :mod:`stevedores.routes`) writes no line unless ACCESS_LOG_INFRASTRUCTURE
  is on: a load balancer probing every second would otherwise fill the log with lines that say
  nothing, and write each of them twice (stderr and LOG_FILE). A failed probe is always logged.
- With the dashboard's own format (:data:`stevedores.logs.ACCESS_LOG_FORMAT`) the line is built
  from the nine fields it uses, with gunicorn's escaping (``"`` becomes ``\\"``). Gunicorn's
  generic path builds a dict of every request header, response header and environ entry for
  each line and formats it once per handler: measured on this 2-core machine, 100 µs of CPU per
  line with our two handlers, where ``/health/quick`` itself costs ~25 µs in-process and bare
  Flask under plain gunicorn (no access log) ~400 µs per request in all (bench/RESULTS.md).
  Any other ``access_log_format`` goes through gunicorn's own code.
- With that format and ACCESS_LOG_FLUSH_SECONDS > 0 (``flush_seconds``), and gunicorn's access
  logger forwarding to the ``stevedores`` handlers (:func:`stevedores.logs.gunicorn_logconfig`),
  the finished line goes to this process's write-behind buffer (:mod:`stevedores.access_buffer`)
  instead of through ``logging``: no LogRecord, lock or syscall per line; the buffer is written to
  stderr and LOG_FILE as one block a second (or per 64 KB) and on a graceful exit.
"""

from __future__ import annotations

import logging
import traceback
from datetime import timedelta
from typing import Any

from gunicorn.glogging import Logger

from .access_buffer import ACCESS_BUFFER, flush_access_log
from .logs import ACCESS_LOG_FORMAT, ToStevedoresHandlers
from .routes import INFRASTRUCTURE_ENVIRON_KEY

__all__ = ["AccessLogger", "access_logger_class", "flush_access_log"]


def _safe(value: str) -> str:
    """An atom as gunicorn's ``SafeAtoms`` writes it: double quotes escaped."""
    return value.replace('"', '\\"') if '"' in value else value


class AccessLogger(Logger):
    """``gunicorn.glogging.Logger`` with the dashboard's access-log rules (module doc).

    Class attributes, set by :func:`access_logger_class` from the settings: ``log_infrastructure``
    (ACCESS_LOG_INFRASTRUCTURE): write lines for successful infrastructure requests too;
    ``flush_seconds`` (ACCESS_LOG_FLUSH_SECONDS): buffer the lines for at most that long (0: each
    line through ``logging`` at once).
    """

    log_infrastructure = False
    flush_seconds = 0.0

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)  # sets up gunicorn's loggers (our logconfig_dict)
        # Buffered only where the lines would have gone to the stevedores handlers anyway.
        self.buffered = (self.flush_seconds > 0 and cfg.access_log_format == ACCESS_LOG_FORMAT
                         and any(isinstance(h, ToStevedoresHandlers) for h in self.access_log.handlers))
        if self.buffered:
            ACCESS_BUFFER.flush_seconds = self.flush_seconds

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        """Write the access line of one request (gunicorn calls it after each response)."""
        if not self.access_log_enabled:
            return
        if (not self.log_infrastructure and environ.get(INFRASTRUCTURE_ENVIRON_KEY)
                and (resp.status_code or 500) < 400):
            return
        if self.cfg.access_log_format != ACCESS_LOG_FORMAT:
            super().access(resp, req, environ, request_time)
            return
        try:
            if self.buffered:
                if self.access_log.isEnabledFor(logging.INFO):
                    ACCESS_BUFFER.add(self.access_line(resp, environ, request_time))
            else:
                self.access_log.info(self.access_line(resp, environ, request_time))
        except Exception:  # noqa: BLE001 - as gunicorn's own access(): a log line never fails a request
            self.error(traceback.format_exc())

    def access_line(self, resp: Any, environ: dict[str, Any], request_time: timedelta) -> str:
        """The line :data:`ACCESS_LOG_FORMAT` gives through gunicorn's atoms, built directly."""
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else str(resp.status)
        sent = getattr(resp, "sent", None)
        request_line = f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}"
        micros = request_time.seconds * 1_000_000 + request_time.microseconds
        return (f'{_safe(environ.get("REMOTE_ADDR", "-"))} - {_safe(self._get_user(environ) or "-")} '
                f'"{_safe(request_line)}" {status} {sent if sent is not None else "-"} '
                f'"{_safe(environ.get("HTTP_REFERER", "-"))}" "{_safe(environ.get("HTTP_USER_AGENT", "-"))}" '
                f'{micros}us')


def access_logger_class(log_infrastructure: bool, flush_seconds: float = 0.0) -> type[AccessLogger]:
    """The ``logger_class`` for gunicorn, with ACCESS_LOG_INFRASTRUCTURE and ACCESS_LOG_FLUSH_SECONDS applied."""
    return type("AccessLogger", (AccessLogger,), {"log_infrastructure": log_infrastructure,
                                                  "flush_seconds": flush_seconds})
