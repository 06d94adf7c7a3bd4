"""The directory gunicorn workers share for their metrics files (prometheus multiprocess mode).

Chosen and prepared in the gunicorn master (``stevedores_server_starting``, which the core
calls as the master reads its configuration, before the app is preloaded), exported as
PROMETHEUS_MULTIPROC_DIR in the master's environment so every forked worker inherits it
(kept as is on a SIGHUP reload):

- METRICS_MULTIPROC_DIR set: that directory (created if missing); the metrics files a
  previous run left there are deleted, other files are left alone (when it cannot be
  created or written, an error names the setting and a private directory is used, so
  that the workers' figures still add up);
- unset: a fresh private directory per master, under /dev/shm when it exists (memory,
  not disk: the files are written on every request), else the system temp dir; removed
  when the master exits.

When a worker exits (``stevedores_child_exit``) its live gauges are deleted so that its
last values stop counting; its counters and histograms stay, so that totals never go
backwards.
"""

from __future__ import annotations

import atexit
import glob
import logging
import os
import shutil
import tempfile
from typing import MutableMapping

from .sink import MULTIPROC_ENV

log = logging.getLogger("stevedores.observability")

SHM = "/dev/shm"


# (master pid, directory) once this process has prepared the directory for a server
_server: tuple[int, str] | None = None


def server_directory(configured: str | None) -> str:
    """The gunicorn master's directory: prepared once, kept as is on a SIGHUP reload.

    A reload re-reads the configuration (and so calls ``stevedores_server_starting``
    again) while old workers still write their files: cleaning or replacing the
    directory then would make the totals drop.
    """
    global _server
    if _server is not None and _server[0] == os.getpid() and os.path.isdir(_server[1]):
        os.environ[MULTIPROC_ENV] = _server[1]
        log.info("Metrics shared by workers in %s (kept across the reload)", _server[1])
        return _server[1]
    directory = prepare_directory(configured)
    _server = (os.getpid(), directory)
    return directory


def prepare_directory(configured: str | None, environ: MutableMapping[str, str] | None = None) -> str:
    """Choose, create and clean the shared directory and export it in ``environ`` (default os.environ)."""
    environ = os.environ if environ is None else environ
    directory = _configured_directory(configured) if configured else None
    if directory is None:
        parent = SHM if os.path.isdir(SHM) and os.access(SHM, os.W_OK) else None
        directory = tempfile.mkdtemp(prefix="stevedores-metrics-", dir=parent)
        _remove_at_exit(directory, os.getpid())
        log.info("Metrics shared by workers in %s (private to this master)", directory)
    environ[MULTIPROC_ENV] = directory
    return directory


def _configured_directory(configured: str) -> str | None:
    """The configured directory, created and cleaned; None (logged) when it cannot be used."""
    directory = os.path.abspath(configured)
    try:
        os.makedirs(directory, exist_ok=True)
        removed = clean_directory(directory)
    except OSError as exc:
        log.error("METRICS_MULTIPROC_DIR=%s cannot be used (%s): using a private directory instead", configured, exc)
        return None
    if not os.access(directory, os.W_OK):
        log.error("METRICS_MULTIPROC_DIR=%s is not writable: using a private directory instead", configured)
        return None
    log.info("Metrics shared by workers in %s (METRICS_MULTIPROC_DIR; %d stale files removed)", directory, removed)
    return directory


def clean_directory(directory: str) -> int:
    """Delete the metrics files (``*.db``) a previous run left in ``directory``; return how many."""
    removed = 0
    for path in glob.glob(os.path.join(directory, "*.db")):
        try:
            os.remove(path)
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def worker_exited(pid: int, environ: MutableMapping[str, str] | None = None) -> None:
    """Drop the live gauges of worker ``pid`` (its counters and histograms stay)."""
    environ = os.environ if environ is None else environ
    directory = environ.get(MULTIPROC_ENV)
    if not directory or not os.path.isdir(directory):
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, directory)


def _remove_at_exit(directory: str, master_pid: int) -> None:
    def remove() -> None:
        if os.getpid() == master_pid:  # workers run atexit handlers too: only the master removes it
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)
