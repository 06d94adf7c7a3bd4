"""Coordination between the workers of one gunicorn master: who may act, and when.

Every worker runs its own monitor and sees the same container figure, so without
coordination they would all log the same warning and could all recycle at once.
A small JSON file, shared by the process tree (named after the master's pid) and
guarded by ``fcntl.flock``, records when each event last happened; :meth:`claim`
grants an event to one process at most once per interval. The clock is
``time.monotonic`` (CLOCK_MONOTONIC is system-wide on Linux, so processes agree).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import psutil

log = logging.getLogger("stevedores.memory_guard")

FILE_PREFIX = "stevedores-memory-guard-"


def default_state_dir() -> Path:
    """/dev/shm when present (memory-backed, like gunicorn's worker_tmp_dir), else the temp dir."""
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


class Coordinator:
    """Grants named events to one process of the tree at a time, at most once per interval."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.clock = clock

    @classmethod
    def for_tree(cls, tree_id: int, directory: Path | None = None) -> Coordinator:
        """The coordinator shared by every process whose master (or own) pid is ``tree_id``."""
        return cls((directory or default_state_dir()) / f"{FILE_PREFIX}{tree_id}.json")

    def claim(self, event: str, interval: float, **details: object) -> bool:
        """True (and record it) if ``event`` did not happen in the last ``interval`` seconds.

        ``details`` (e.g. the pid that acted) are stored beside the time for operators.
        A file that cannot be used is logged and the claim is granted (acting alone is
        better than never acting).
        """
        try:
            with open(self.path, "a+", encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    handle.seek(0)
                    state = _load(handle.read())
                    now = self.clock()
                    last = state.get(event, {}).get("at")
                    if isinstance(last, (int, float)) and now - last < interval:
                        return False
                    state[event] = {"at": now, "pid": os.getpid(), **details}
                    handle.seek(0)
                    handle.truncate()
                    handle.write(json.dumps(state))
                    handle.flush()
                    return True
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        except OSError as exc:
            log.warning("memory_guard: coordination file %s unusable (%s); acting without it", self.path, exc)
            return True

    def reset(self) -> None:
        """Forget every event (a new master whose pid an earlier one used starts afresh)."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("memory_guard: cannot remove coordination file %s: %s", self.path, exc)

    def last(self, event: str) -> dict[str, object] | None:
        """What was recorded for ``event`` (time, pid, details), or None."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_SH)
                entry = _load(handle.read()).get(event)
        except OSError:
            return None
        return entry if isinstance(entry, dict) else None


def _load(text: str) -> dict[str, dict[str, object]]:
    try:
        state = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def remove_stale_files(directory: Path | None = None) -> int:
    """Delete coordination files of masters that are no longer running; returns how many."""
    removed = 0
    directory = directory or default_state_dir()
    for path in directory.glob(f"{FILE_PREFIX}*.json"):
        pid = path.stem.removeprefix(FILE_PREFIX)
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
    return removed
