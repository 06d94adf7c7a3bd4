"""CPU profile of the operations pages under real gunicorn (cProfile inside the worker).

Production profile, PostgreSQL and a redis-server of its own counting the limits (the bench
stack, bench/stack.py) with the demo data; for each endpoint a gunicorn of its own runs
``bench.profile_conf`` (the dashboard's configuration, one worker, one thread, every request
under cProfile), wrk loads it for ``--seconds``, and the master's SIGTERM makes the worker
write its stats. Prints, per endpoint, the CPU time per request and the functions with the
most own time (and the cumulative time of the ones that matter), and writes them to
bench/RESULTS.md under "Profile (<label>)".

    .venv/bin/python -m bench.profile_operations [--seconds 8] [--label after]

Profiler overhead inflates every figure (function calls most): compare shares within a run.
"""

from __future__ import annotations

import argparse
import io
import pstats
import shutil
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_operations import _prepare  # noqa: E402
from bench.harness import run_wrk  # noqa: E402
from bench.results import machine_line, wait_for_quiet, write_section  # noqa: E402
from bench.stack import HERE, base_env, start_stack  # noqa: E402
from stevedores.testing import GunicornServer  # noqa: E402

#: Functions whose cumulative time per request is printed, when they appear.
WATCHED = ("data_fingerprint", "get_json", "check_app_limits", "_check_request_limit", "start_app_limits",
           "settle_app_limits", "hit", "_redis_or_memory", "_force_https", "_set_response_headers", "_make_nonce",
           "render_template", "vessel_call_totals", "add_headers", "conditional", "full_dispatch_request", "wsgi_app")
TOP = 14


def profile_endpoint(env: dict[str, str], workdir: Path, path: str, seconds: int) -> list[str]:
    """Run one profiled gunicorn, load ``path``, return the report lines."""
    out = workdir / f"profile-{path.strip('/').replace('/', '-') or 'root'}.pstats"
    start = out.with_suffix(".start")
    server = GunicornServer({**env, "BENCH_PROFILE_OUT": str(out), "BENCH_PROFILE_START": str(start)},
                            workdir / "profiled", config="python:bench.profile_conf")
    server.env["PYTHONPATH"] = ":".join(p for p in (str(HERE.parent), server.env.get("PYTHONPATH", "")) if p)
    try:
        server.start("/health/live")
        run_wrk(server.url + path, 2, connections=4)  # warm up (caches, pools, the first rendering)
        start.touch()  # profile from here on
        figures = run_wrk(server.url + path, seconds, connections=4)
    finally:
        server.stop()
    stats = pstats.Stats(str(out), stream=io.StringIO())
    requests = max(1, figures["requests"])
    total = stats.total_tt  # type: ignore[attr-defined]
    lines = [f"GET {path}: {figures['requests']} requests profiled (after a warm-up), "
             f"{1e6 * total / requests:.0f} µs CPU per request under the profiler (process CPU time)"]
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = f"{Path(filename).parent.name}/{Path(filename).name}:{line}({name})" if line else name
        rows.append((tottime, cumtime, calls, short, name))
    lines.append(f"  {'own %':>6} {'own µs/req':>10} {'cum µs/req':>10}  function")
    for tottime, cumtime, _calls, short, _name in sorted(rows, reverse=True)[:TOP]:
        lines.append(f"  {100 * tottime / total:>5.1f}% {1e6 * tottime / requests:>10.1f} "
                     f"{1e6 * cumtime / requests:>10.1f}  {short}")
    watched = sorted((r for r in rows if r[4] in WATCHED and r[1] > 0.005 * total), key=lambda r: -r[1])
    if watched:
        lines.append("  cumulative (share of the request):")
        for _tottime, cumtime, _calls, short, _name in watched[:10]:
            lines.append(f"    {100 * cumtime / total:>5.1f}%  {short}")
    return lines


def main() -> int:
    """Profile /, /api/summary and a vessel page; print and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--label", default="after", help="RESULTS.md section: 'Profile (<label>)'")
    parser.add_argument("--keep", type=Path, help="directory to keep the .pstats files in (for pstats/snakeviz)")
    args = parser.parse_args()
    wait_for_quiet()
    lines = [machine_line()]
    print(lines[0], flush=True)
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        workdir = Path(tmp)
        bench = start_stack(stack, workdir, env={"GUNICORN_MAX_REQUESTS": "0"})
        _busy, page_call, _token = _prepare(bench.database_url, workdir)
        env = {**base_env(bench.database_url, bench.redis.url, workdir), "GUNICORN_MAX_REQUESTS": "0"}
        for path in ("/", "/api/summary", f"/vessels/{page_call}"):
            for line in profile_endpoint(env, workdir, path, args.seconds):
                print(line, flush=True)
                lines.append(line)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for found in workdir.glob("*.pstats"):
                shutil.copy(found, args.keep / found.name)
    write_section(f"Profile ({args.label})", f"python -m bench.profile_operations --label {args.label}", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
