"""Gunicorn configuration for profiling (bench only, never deployed): the dashboard's own
configuration (``stevedores.gunicorn_conf``) with one worker and one thread, whose WSGI app
is wrapped in cProfile (CPU time) for every request; the stats are written to $BENCH_PROFILE_OUT when
the worker exits (SIGTERM to the master); requests before the file $BENCH_PROFILE_START exists
(the warm-up) are not profiled. One thread, because cProfile profiles only the
thread that enables it.

    gunicorn -c python:bench.profile_conf stevedores.wsgi:application
"""

import cProfile
import os
import time
from typing import Any

import stevedores.gunicorn_conf as _dashboard
from stevedores.gunicorn_conf import *  # noqa: F403 - the dashboard's configuration, then the changes below

workers = 1
threads = 1
max_requests = 0
#: CPU time of this process, not wall time: waits on PostgreSQL, Redis and a loaded machine do not count.
_profile = cProfile.Profile(time.process_time)


def post_worker_init(worker: Any) -> None:
    """The dashboard's worker start-up, then every request (body included) under the profiler."""
    _dashboard.post_worker_init(worker)
    app = worker.wsgi

    start_flag = os.environ.get("BENCH_PROFILE_START", "")

    def profiled(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if start_flag and not os.path.exists(start_flag):  # still warming up: not profiled
            return list(app(environ, start_response))
        _profile.enable()
        try:
            return list(app(environ, start_response))
        finally:
            _profile.disable()

    worker.wsgi = profiled


def worker_exit(server: Any, worker: Any) -> None:
    """Write the stats, then the dashboard's worker shutdown."""
    out = os.environ.get("BENCH_PROFILE_OUT")
    if out:
        _profile.dump_stats(out)
    _dashboard.worker_exit(server, worker)
