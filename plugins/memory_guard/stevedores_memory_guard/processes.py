"""Memory of the gunicorn process tree (master and workers), through psutil.

Per process: RSS (resident, counts shared pages in every process), USS (private:
what the process gives back when it exits) and PSS (shared pages split between
their users, so the PSS of a tree adds up to what the tree really uses).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

from .resources import MB


@dataclass(frozen=True)
class ProcessMemory:
    """One process's memory figures, in bytes."""

    pid: int
    rss: int
    uss: int
    pss: int
    role: str  # "master", "worker" or "process"

    def as_dict(self) -> dict[str, object]:
        """JSON-ready figures in MB."""
        return {"pid": self.pid, "role": self.role, "rss_mb": round(self.rss / MB, 1),
                "uss_mb": round(self.uss / MB, 1), "pss_mb": round(self.pss / MB, 1)}


def process_memory(pid: int, role: str = "process") -> ProcessMemory | None:
    """RSS, USS and PSS of ``pid`` (USS/PSS fall back to RSS when smaps is unreadable); None if gone."""
    try:
        proc = psutil.Process(pid)
        try:
            full = proc.memory_full_info()
            return ProcessMemory(pid, full.rss, full.uss, getattr(full, "pss", full.uss), role)
        except psutil.AccessDenied:
            rss = proc.memory_info().rss
            return ProcessMemory(pid, rss, rss, rss, role)
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return None


class ProcessTree:
    """The processes serving the app: the gunicorn master and its workers, or just this process."""

    def __init__(self, master_pid: int | None = None) -> None:
        self.master_pid = master_pid

    def members(self) -> list[ProcessMemory]:
        """Figures of the master (if any) and each of its children; this process alone without a master."""
        if self.master_pid is None:
            me = process_memory(os.getpid())
            return [me] if me else []
        found: list[ProcessMemory] = []
        master = process_memory(self.master_pid, "master")
        if master:
            found.append(master)
        try:
            children = psutil.Process(self.master_pid).children()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            children = []
        for child in children:
            figures = process_memory(child.pid, "worker")
            if figures:
                found.append(figures)
        return found

    def workers(self) -> list[ProcessMemory]:
        """Figures of the workers only (every member when there is no master)."""
        return [m for m in self.members() if m.role != "master"]

    def total_pss(self) -> int:
        """The tree's memory: the sum of PSS, which counts each shared page once."""
        return sum(m.pss for m in self.members())
