"""CPU time per access line, in one thread, with the dashboard's two log destinations.

The ``stevedores`` logger is configured as in a gunicorn worker (stderr and the rotating
LOG_FILE, whose lock and log files go under ``--dir``, /dev/shm by default: a tmpfs, so the
disk does not count); gunicorn's ``gunicorn.access`` logger forwards to it as in
``stevedores.gunicorn_conf``. Each logger kind writes ``--lines`` access lines for the same
request, best of ``--repeats``; this process's CPU time (``time.process_time``: every thread,
the flusher's included) is divided by the lines. A buffered run ends with a flush, inside the
timing. Run it with stderr sent to a file, as a container's runtime would take it:

    .venv/bin/python -m bench.access_log_cpu [--lines 5000] [--repeats 5] 2>/tmp/access-lines.log

``stock``: gunicorn's own ``glogging.Logger`` with the same format; ``unbuffered``: the core's
``AccessLogger`` with ACCESS_LOG_FLUSH_SECONDS=0 (each line through logging, as before the
buffer); ``buffered``: ACCESS_LOG_FLUSH_SECONDS=1 (the default).

``--gunicorn SECONDS``: instead, the gunicorn workers' CPU per request on ``/api/summary`` (psutil,
user + system of the workers; PostgreSQL's and Redis's CPU not included) under
``wrk -t2 -c10 -dSECONDSs -H 'X-Forwarded-Proto: https'``, against two bench stacks (bench/stack.py,
demo data), one with ACCESS_LOG_FLUSH_SECONDS=0 and one with 1, in the order 0, 1, 1, 0 after a
1 s warm-up each. Short on purpose (4 x SECONDS of load): run it on a quiet machine only.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class _Response:
    status, status_code, sent = "200 OK", 200, 5981
    headers = [("Content-Type", "text/html"), ("Content-Length", "5981")]


class _Request:
    headers = [("HOST", "dashboard.example"), ("USER-AGENT", "wrk")]


ENVIRON = {"REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "GET", "RAW_URI": "/api/summary", "PATH_INFO": "/api/summary",
           "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_USER_AGENT": "wrk", "HTTP_REFERER": "-"}


def main() -> int:
    """Print CPU µs per access line for each logger kind."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    parser.add_argument("--gunicorn", type=int, metavar="SECONDS", help="wrk on /api/summary instead (see above)")
    parser.add_argument("kinds", nargs="*", default=["stock", "unbuffered", "buffered"])
    args = parser.parse_args()
    if args.gunicorn:
        return under_gunicorn(args.gunicorn)
    from gunicorn.config import Config as GunicornConfig
    from gunicorn.glogging import Logger

    from stevedores import access_log
    from stevedores.logs import ACCESS_LOG_FORMAT, configure_logging, gunicorn_logconfig
    from stevedores.settings import CORE_SETTINGS, read_config

    with tempfile.TemporaryDirectory(prefix="bench-access-log-", dir=args.dir) as tmp:
        config = read_config([("core", s) for s in CORE_SETTINGS],
                             {"LOG_FILE": str(Path(tmp) / "app.log"), "SECRET_KEY": "bench-" + "k" * 40})
        configure_logging(config)
        cfg = GunicornConfig()
        for name, value in (("accesslog", "-"), ("errorlog", "-"), ("access_log_format", ACCESS_LOG_FORMAT),
                            ("logconfig_dict", gunicorn_logconfig(config))):
            cfg.set(name, value)
        took = timedelta(microseconds=2150)
        flush = getattr(access_log, "flush_access_log", lambda: None)
        for kind in args.kinds:
            if kind == "stock":
                logger: Any = Logger(cfg)
            elif kind == "unbuffered":
                logger = _access_logger(access_log, 0.0)(cfg)
            else:
                if not hasattr(access_log, "flush_access_log"):
                    print(f"{kind}: not in this tree", flush=True)
                    continue
                logger = _access_logger(access_log, 1.0)(cfg)
            for _ in range(200):  # warm up
                logger.access(_Response(), _Request(), dict(ENVIRON), took)
            flush()
            best = float("inf")
            for _ in range(args.repeats):
                started = time.process_time()
                for _ in range(args.lines):
                    logger.access(_Response(), _Request(), dict(ENVIRON), took)
                flush()
                best = min(best, time.process_time() - started)
            print(f"{kind}: {best / args.lines * 1e6:.1f} µs of CPU per line "
                  f"(best of {args.repeats} x {args.lines} lines)", flush=True)
    return 0


def under_gunicorn(seconds: int) -> int:
    """Workers' CPU µs per ``/api/summary`` request, unbuffered then buffered."""
    from contextlib import ExitStack

    from bench.bench_operations import _prepare, workers_cpu_seconds
    from bench.harness import run_wrk
    from bench.stack import start_stack

    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-access-log-") as tmp:
        servers = {}
        for flush in ("0", "1"):
            workdir = Path(tmp) / f"flush-{flush}"
            workdir.mkdir()
            bench = start_stack(stack, workdir, env={"ACCESS_LOG_FLUSH_SECONDS": flush, "GUNICORN_MAX_REQUESTS": "0"})
            _prepare(bench.database_url, workdir)
            servers[flush] = bench.server
        for server in servers.values():
            run_wrk(server.url + "/api/summary", 1, connections=10)
        for flush in ("0", "1", "1", "0"):  # ABBA: a drift of the machine's load weighs on both alike
            server = servers[flush]
            assert server.proc is not None
            cpu = workers_cpu_seconds(server.proc.pid)
            figures = run_wrk(server.url + "/api/summary", seconds, connections=10)
            used = workers_cpu_seconds(server.proc.pid) - cpu
            print(f"ACCESS_LOG_FLUSH_SECONDS={flush}: {figures['rps']:.0f} req/s, {figures['errors']:.0f} errors, "
                  f"{1e6 * used / max(1, figures['requests']):.0f} µs of worker CPU per request "
                  f"(wrk -t2 -c10 -d{seconds}s /api/summary)", flush=True)
    return 0


def _access_logger(access_log: Any, flush_seconds: float) -> type:
    """The core's AccessLogger class as gunicorn_conf makes it (older trees: no flush setting)."""
    try:
        return access_log.access_logger_class(False, flush_seconds)
    except TypeError:
        return access_log.access_logger_class(False)


if __name__ == "__main__":
    raise SystemExit(main())
