"""Instructions per request of the assembled app, in-process, counted by valgrind's callgrind.

CPU time and throughput move with whatever else the 2-core machine is doing (another core's
work slows this one's caches; a helper's test run halves a benchmark); the number of machine
instructions a request executes does not: the same build gives the same count within a fraction
of a percent, busy or quiet. That makes this the tool to tell whether a change made the
per-request path cheaper, one change at a time. Throughput ratios stay ``bench.bench_operations``'s.

The app is built as production builds it (every installed plugin, production profile behind the
TLS proxy's headers, PostgreSQL and a redis-server of its own counting the limits, the demo data,
the worker's start-up hooks run as in a gunicorn worker), then called as a WSGI app. The process
runs under ``valgrind --tool=callgrind --instr-atstart=no``; instrumentation is switched on
(``callgrind_control -i on``) only around ``--requests`` calls of each path, after a warm-up.
Redis and PostgreSQL servers' instructions are not counted (their client side is). ``/bare`` is
``bench.bare_app`` (bare Flask) for scale.

    .venv/bin/python -m bench.instructions_per_request [--requests 100] [--write] [PATH ...]

Needs valgrind (Debian's package); about 20 s per path. Paths may name ``N`` for a vessel call.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_PATHS = ("/bare", "/health/quick", "/", "/api/summary", "/vessels/N")


def child(path: str, requests: int, flag: Path) -> None:
    """Under callgrind: build the app, warm up, print READY, wait for ``flag``, run, print DONE."""
    from werkzeug.test import EnvironBuilder

    from bench.stack import BEHIND_TLS_PROXY, call_wsgi, in_process_app

    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-instr-") as tmp:
        app, page_call = in_process_app(stack, Path(tmp))
        if path == "/bare":
            from bench.bare_app import application as app
        environ = EnvironBuilder(path=path.replace("N", str(page_call)), headers=BEHIND_TLS_PROXY,
                                 environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_environ()
        status: list[str] = []

        def call() -> None:
            status.append(call_wsgi(app, environ))

        for _ in range(50):
            call()
        print(f"READY {status[-1]}", flush=True)
        while not flag.exists():
            time.sleep(0.05)
        for _ in range(requests):
            call()
        print("DONE", flush=True)
        while flag.exists():
            time.sleep(0.05)


def _wait_for(out: Path, word: str, proc: subprocess.Popen[Any], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = out.read_text() if out.exists() else ""
        if word in text:
            return text
        if proc.poll() is not None:
            raise RuntimeError(f"the measured process exited ({proc.returncode}): {text[-2000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"no {word} within {timeout:.0f} s")


def measure(path: str, requests: int, workdir: Path) -> tuple[int, str]:
    """(instructions per request, the status the path answered) for ``path``."""
    flag, out, counts = workdir / "flag", workdir / "out.txt", workdir / "callgrind.out"
    flag.unlink(missing_ok=True)
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={counts}",
               sys.executable, "-m", "bench.instructions_per_request", "--child", path,
               "--requests", str(requests), "--flag", str(flag)]
    with out.open("w") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.DEVNULL,
                                cwd=Path(__file__).resolve().parent.parent)
    try:
        ready = _wait_for(out, "READY", proc, 600)
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
        flag.touch()
        _wait_for(out, "DONE", proc, 600)
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        flag.unlink()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    total = 0
    dumps = list(workdir.glob("callgrind.out*"))
    if not dumps:
        raise RuntimeError(f"callgrind wrote no counts in {workdir}")
    for dump in dumps:  # the dump taken after the measured calls, and the (empty) one at exit
        figures = [int(line.split()[1]) for line in dump.read_text().splitlines()
                   if line.startswith(("summary:", "totals:"))]
        total += max(figures, default=0)
        dump.unlink()
    return total // requests, ready.split("READY", 1)[1].strip()


def main() -> int:
    """Measure and print instructions per request for each path."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="*", default=list(DEFAULT_PATHS))
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--write", action="store_true", help="write the figures to bench/RESULTS.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--flag", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.requests, args.flag)
        return 0
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    from bench.results import machine_line, write_section

    lines = [machine_line()]
    print(lines[0], flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-instr-") as tmp:
        for path in args.paths:
            per_request, status = measure(path, args.requests, Path(tmp))
            lines.append(f"{path:<16} {status:<8} {per_request:>11,} instructions per request")
            print(lines[-1], flush=True)
    if args.write:
        write_section("Instructions per request (in-process)", "python -m bench.instructions_per_request --write",
                      lines)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.exit(main())
