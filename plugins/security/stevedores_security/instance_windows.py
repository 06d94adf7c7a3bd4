"""Fixed-window counters shared by every worker of one gunicorn master: the rate limits'
fallback storage when Redis cannot count.

Process memory (:class:`~.memory_windows.MemoryWindows`) is per worker: N workers would
allow N times a limit, and a replaced worker (recycled by count, by memory or by SIGHUP)
would start from zero, so a client whose own 429s drove the recycling got through almost
unlimited (issue 12). These counters live in an SQLite database in a directory that the
gunicorn master creates before it forks (``stevedores_server_starting``), under /dev/shm
when it exists (memory, not disk) and named after the master, so every worker of the
instance, and every replacement, counts in the same table.

Why SQLite: it is the standard library's well-kept shared store with atomic upserts
across processes. One counting statement (``INSERT .. ON CONFLICT .. RETURNING``) costs
about 20 µs on this machine in WAL mode on tmpfs (measured: WAL 19 µs, journal in memory
28 µs, truncate 51 µs per hit, 20,000 hits over 50 keys), against ~1 ms for the page
that it protects; a hand-made mmap'd table would save little and need its own locking
and eviction.

Expired windows are deleted every :data:`SWEEP_EVERY` hits; past ``max_keys`` rows the
oldest windows are dropped (a bounded file, like the process-memory counters).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger("stevedores.security")

#: Set by the gunicorn master for its workers: the per-master directory of the counters.
DIRECTORY_ENV = "STEVEDORES_RATE_LIMIT_DIR"
DATABASE_NAME = "rate-limits.sqlite"
SHM = "/dev/shm"
#: Delete expired windows once per this many hits in a process.
SWEEP_EVERY = 1000
DEFAULT_MAX_KEYS = 100_000
#: Longest wait for another worker's write (SQLite busy timeout), in milliseconds.
BUSY_TIMEOUT_MS = 200

_SCHEMA = ("CREATE TABLE IF NOT EXISTS windows (key TEXT PRIMARY KEY, count INTEGER NOT NULL, "
           "ends REAL NOT NULL) WITHOUT ROWID")
# ?1 key, ?2 amount, ?3 now, ?4 expiry (s): a new window when the stored one has ended.
_INCR = ("INSERT INTO windows (key, count, ends) VALUES (?1, ?2, ?3 + ?4) ON CONFLICT (key) DO UPDATE SET "
         "count = CASE WHEN ends <= ?3 THEN excluded.count ELSE count + excluded.count END, "
         "ends = CASE WHEN ends <= ?3 THEN excluded.ends ELSE ends END RETURNING count, ends")
_GET = "SELECT count, ends FROM windows WHERE key = ?"
_CLEAR = "DELETE FROM windows WHERE key = ?"
_SWEEP = "DELETE FROM windows WHERE ends <= ?"
_TRIM = ("DELETE FROM windows WHERE key IN (SELECT key FROM windows ORDER BY ends LIMIT "
         "(SELECT max(count(*) - ?, 0) FROM windows))")

# (master pid, directory) once this process prepared the directory for a server
_server: tuple[int, str] | None = None


def server_directory() -> str:
    """The gunicorn master's directory for the counters, exported as :data:`DIRECTORY_ENV`.

    Created once per master (a SIGHUP reload keeps it: the old workers' counts stay) under
    /dev/shm when it exists, else the temp dir, and removed when the master exits.
    """
    global _server
    if _server is not None and _server[0] == os.getpid() and os.path.isdir(_server[1]):
        directory = _server[1]
    else:
        parent = SHM if os.path.isdir(SHM) and os.access(SHM, os.W_OK) else None
        directory = tempfile.mkdtemp(prefix=f"stevedores-ratelimit-{os.getpid()}-", dir=parent)
        _server = (os.getpid(), directory)
        master = os.getpid()
        atexit.register(lambda: os.getpid() == master and shutil.rmtree(directory, ignore_errors=True))
        log.info("Rate-limit fallback counters shared by this instance's workers in %s", directory)
    os.environ[DIRECTORY_ENV] = directory
    return directory


def instance_windows_from_environment() -> InstanceWindows | None:
    """The counters of the master this worker belongs to, or None outside gunicorn
    (one process: its own memory is the instance's)."""
    directory = os.environ.get(DIRECTORY_ENV)
    if not directory or not os.path.isdir(directory):
        return None
    return InstanceWindows(Path(directory) / DATABASE_NAME)


class InstanceWindows:
    """``key -> (count, window end)`` in SQLite at ``path``; same interface as MemoryWindows.

    Thread-safe (one connection per thread, renewed after fork). Raises ``sqlite3.Error``
    or ``OSError`` when the database cannot be used: the caller counts in memory then.
    """

    def __init__(self, path: Path, max_keys: int = DEFAULT_MAX_KEYS, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.max_keys = max_keys
        self._clock = clock
        self._local = threading.local()
        self._hits = 0

    def incr(self, key: str, expiry: float, amount: int = 1) -> tuple[int, float]:
        """Add ``amount`` to the current window of ``key`` (a new one when it ended): (count, end)."""
        now = self._clock()
        conn = self._connection()
        count, ends = conn.execute(_INCR, (key, amount, now, float(expiry))).fetchone()
        self._hits += 1
        if self._hits % SWEEP_EVERY == 0:
            conn.execute(_SWEEP, (now,))
            conn.execute(_TRIM, (self.max_keys,))
        return int(count), float(ends)

    def get(self, key: str) -> tuple[int, float]:
        """(count, end) of the current window of ``key``; (0, now) when there is none."""
        now = self._clock()
        row = self._connection().execute(_GET, (key,)).fetchone()
        return (int(row[0]), float(row[1])) if row is not None and row[1] > now else (0, now)

    def clear(self, key: str) -> None:
        """Forget ``key``."""
        self._connection().execute(_CLEAR, (key,))

    def __len__(self) -> int:
        return int(self._connection().execute("SELECT count(*) FROM windows").fetchone()[0])

    def _connection(self) -> sqlite3.Connection:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            # autocommit: each statement is its own atomic transaction; WAL lets readers and the
            # writer overlap; no fsync (tmpfs, and the counts need not survive the machine).
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=BUSY_TIMEOUT_MS / 1000)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute(_SCHEMA)
            local.conn, local.pid = conn, os.getpid()
        return conn
