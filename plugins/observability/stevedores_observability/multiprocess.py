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

One master per directory: the master holds an exclusive ``flock`` on ``<directory>/.owner``
(which holds its pid) for its whole life; a second master pointed at the same directory
refuses to start, naming METRICS_MULTIPROC_DIR, instead of deleting the first one's live
files.

When a worker exits (``stevedores_child_exit``) its files are folded into the per-type
archives under the scrape lock (``archive.py``): its live gauges go, its counters and
histograms are added to the archives, so totals never go backwards and the directory holds
files for the live processes plus one archive per type.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import glob
import logging
import os
import shutil
import tempfile
from typing import IO, MutableMapping

from . import archive
from .sink import MULTIPROC_ENV

log = logging.getLogger("stevedores.observability")

SHM = "/dev/shm"
OWNER_FILE = ".owner"

# the open owner file of each directory this process owns (holding its flock; never closed)
_owned: dict[str, IO[str]] = {}


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
        claim_directory(directory)
        _remove_at_exit(directory, os.getpid())
        log.info("Metrics shared by workers in %s (private to this master)", directory)
    environ[MULTIPROC_ENV] = directory
    return directory


def _configured_directory(configured: str) -> str | None:
    """The configured directory, created and cleaned; None (logged) when it cannot be used."""
    directory = os.path.abspath(configured)
    try:
        os.makedirs(directory, exist_ok=True)
        claim_directory(directory)  # before cleaning: another master's live files are not ours to delete
        removed = clean_directory(directory)
    except OSError as exc:
        log.error("METRICS_MULTIPROC_DIR=%s cannot be used (%s): using a private directory instead", configured, exc)
        return None
    if not os.access(directory, os.W_OK):
        log.error("METRICS_MULTIPROC_DIR=%s is not writable: using a private directory instead", configured)
        return None
    log.info("Metrics shared by workers in %s (METRICS_MULTIPROC_DIR; %d stale files removed)", directory, removed)
    return directory


class DirectoryInUse(SystemExit):
    """Another live gunicorn master owns the metrics directory: this server must not start.

    A SystemExit (not an Exception): the plugin manager records a raising plugin as failed and
    carries on, which here would let the second master delete the first one's live files.
    """


def claim_directory(directory: str) -> None:
    """Take ``directory`` for this process: an exclusive ``flock`` on its ``.owner`` file, held
    until exit (forked workers share it), the owner's pid written in it.

    Raises :class:`DirectoryInUse` naming METRICS_MULTIPROC_DIR when another process holds it.
    """
    if directory in _owned:
        return
    owner = open(os.path.join(directory, OWNER_FILE), "a+")  # noqa: SIM115 - held open for the process's life
    try:
        fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner.seek(0)
        holder = owner.read().strip() or "unknown"
        owner.close()
        message = (f"stevedores: cannot start: METRICS_MULTIPROC_DIR={directory} belongs to another running "
                   f"gunicorn master (pid {holder}); give each server its own METRICS_MULTIPROC_DIR "
                   f"(or leave it unset for a private directory)")
        log.critical("%s", message)
        raise DirectoryInUse(message) from None
    owner.seek(0)
    owner.truncate()
    owner.write(f"{os.getpid()}\n")
    owner.flush()
    _owned[directory] = owner


def clean_directory(directory: str) -> int:
    """Delete the metrics files (``*.db``, archives included) a previous run left in ``directory``
    and any half-done compaction; return how many metrics files."""
    leftovers = [os.path.join(directory, archive.JOURNAL_FILE), *glob.glob(os.path.join(directory, "*_archive.db.tmp"))]
    for leftover in leftovers:
        with contextlib.suppress(FileNotFoundError):
            os.remove(leftover)
    removed = 0
    for path in glob.glob(os.path.join(directory, "*.db")):
        try:
            os.remove(path)
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def worker_exited(pid: int, environ: MutableMapping[str, str] | None = None) -> None:
    """Fold the files of worker ``pid`` into the archives, under the scrape lock.

    Its live gauges are dropped, its counters and histograms added to the archives. When the
    directory cannot be written the error is logged and the files stay (counted as before;
    the next scrape or exit tries again).
    """
    environ = os.environ if environ is None else environ
    directory = environ.get(MULTIPROC_ENV)
    if not directory or not os.path.isdir(directory):
        return
    try:
        with archive.scrape_lock(directory):
            archive.compact(directory, [pid])
    except OSError as exc:
        log.error("Could not archive the metrics files of worker %d in %s: %s", pid, directory, exc)


def _remove_at_exit(directory: str, master_pid: int) -> None:
    def remove() -> None:
        if os.getpid() == master_pid:  # workers run atexit handlers too: only the master removes it
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)
