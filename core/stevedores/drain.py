"""Drain on SIGTERM: readiness fails at once, the instance keeps serving for
``SHUTDOWN_DRAIN_SECONDS``, then gunicorn's normal graceful stop runs.

Why: gunicorn's master answers SIGTERM by closing its listeners at once
(``Arbiter.handle_term`` raises StopIteration, ``halt()`` calls ``stop()``, which closes
the sockets before telling the workers to finish). Connections queued in the kernel's
backlog are then reset, and a load balancer does not retry a POST it already sent: the
issue measured 3–4 lost ``POST /api/tallies`` per rolling restart. A load balancer only
stops sending once its health checks have failed ``fall`` times, ``interval`` apart, so
the instance must keep accepting for that long while telling it "not ready".

How: :func:`install` wraps the master's SIGTERM handling (gunicorn has no hook for it).
The first SIGTERM marks the instance draining in :class:`DrainFlag` (one byte of
shared memory every worker inherits) and arms a deadline; the master's loop goes on
managing workers; when the deadline passes the usual graceful stop runs (listeners
closed, workers SIGTERMed, ``graceful_timeout`` for in-flight requests). A second
SIGTERM stops at once; SIGINT/SIGQUIT keep their quick-stop meaning; workers' own
SIGTERM (from the master, or on a SIGHUP reload) is untouched.
"""

from __future__ import annotations

import mmap
import threading
import time
from typing import Any


class DrainFlag:
    """A flag shared by the gunicorn master and its workers.

    One byte of anonymous ``MAP_SHARED`` memory created when this module is imported
    (gunicorn imports it with its configuration, in the master, before any fork), so
    a worker sees the master's write at once, without a system call per read.
    """

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, 1)  # anonymous and MAP_SHARED by default on Unix

    def set(self) -> None:
        """Mark this instance draining (called in the master on SIGTERM)."""
        self._memory[0] = 1

    def clear(self) -> None:
        """Mark it serving again (tests)."""
        self._memory[0] = 0

    def is_set(self) -> bool:
        """True once the master started draining."""
        return self._memory[0] == 1


#: The flag of this gunicorn master and its workers (per process tree; never set outside gunicorn).
DRAINING = DrainFlag()


def is_draining() -> bool:
    """True when this instance is draining: readiness must answer 503 ("draining")."""
    return DRAINING.is_set()


def drain_seconds(config: Any) -> float:
    """``SHUTDOWN_DRAIN_SECONDS``, or its profile default: 5 s in production, 0 elsewhere."""
    value = config.get("SHUTDOWN_DRAIN_SECONDS")
    if value is not None:
        return float(value)
    return 5.0 if config.is_production else 0.0


def install(arbiter: Any, seconds: float, flag: DrainFlag = DRAINING) -> None:
    """Make gunicorn's ``arbiter`` drain for ``seconds`` on SIGTERM before its graceful stop.

    Wraps the arbiter's ``handle_term`` and ``manage_workers`` (called by its main loop
    after every signal or second); ``seconds <= 0`` leaves gunicorn's behaviour as is.
    """
    if seconds <= 0:
        return
    deadline: list[float] = []
    manage_workers = arbiter.manage_workers

    def handle_term() -> None:
        if deadline:  # a second SIGTERM: stop now
            raise StopIteration
        flag.set()
        deadline.append(time.monotonic() + seconds)
        arbiter.log.info("Draining for %gs (SHUTDOWN_DRAIN_SECONDS): /health/ready answers 503, still serving",
                         seconds)
        waker = threading.Timer(seconds, arbiter.wakeup)  # the main loop otherwise wakes once a second
        waker.daemon = True
        waker.start()

    def drain_then_manage_workers() -> None:
        if deadline and time.monotonic() >= deadline[0]:
            arbiter.log.info("Drain over: closing the listeners, finishing in-flight requests")
            raise StopIteration  # what gunicorn's own handle_term raises: halt() -> graceful stop()
        manage_workers()

    arbiter.handle_term = handle_term
    arbiter.manage_workers = drain_then_manage_workers
