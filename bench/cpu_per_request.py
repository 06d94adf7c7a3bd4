"""CPU time per request of the assembled app, in-process: a figure a busy machine barely moves.

The app as production builds it (every installed plugin, production profile behind the TLS
proxy's headers, PostgreSQL and a redis-server of its own counting the limits, the demo data)
is called as a WSGI app (after the worker start-up hooks, as in a gunicorn worker), one request
at a time, without gunicorn or sockets on the client side; this process's CPU time
(``time.process_time``) over ``--requests`` calls, best of
``--repeats``, is printed per endpoint. Round trips to PostgreSQL and Redis count as the
client-side CPU they cost (their servers' CPU does not). Throughput ratios under load are in
``bench.bench_operations``; this says where a change moved the per-request cost.

    .venv/bin/python -m bench.cpu_per_request [--requests 400] [--repeats 5]

To compare two trees, run it with the other tree's ``core`` and ``plugins/*`` first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import machine_line, write_section  # noqa: E402
from bench.stack import BEHIND_TLS_PROXY, call_wsgi, in_process_app  # noqa: E402


def main() -> int:
    """Measure and print CPU µs per request for the probes and the operations pages."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="write the figures to bench/RESULTS.md")
    args = parser.parse_args()
    from werkzeug.test import EnvironBuilder

    lines = [machine_line()]
    print(lines[0], flush=True)
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        app, page_call = in_process_app(stack, Path(tmp))

        def call(environ: dict[str, Any]) -> str:
            return call_wsgi(app, environ)

        for path in ("/health/live", "/health/quick", "/", "/api/summary", f"/vessels/{page_call}", "/login"):
            environ = EnvironBuilder(path=path, headers=BEHIND_TLS_PROXY,
                                     environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_environ()
            for _ in range(max(50, args.requests // 4)):  # warm up: pools, memos, the first rendering
                status = call(environ)
            best = float("inf")
            for _ in range(args.repeats):
                started = time.process_time()
                for _ in range(args.requests):
                    call(environ)
                best = min(best, (time.process_time() - started) / args.requests)
            line = f"{path:<16} {status:<8} {1e6 * best:>7.0f} µs CPU per request"
            print(line, flush=True)
            lines.append(line)
    if args.write:
        write_section("CPU per request (in-process)", "python -m bench.cpu_per_request --write", lines)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.exit(main())
