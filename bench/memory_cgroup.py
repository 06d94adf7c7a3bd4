"""A real memory cgroup for a server under test, so memory_guard reads a container limit.

``MemoryCgroup.create(512)`` makes a child of this process's own memory cgroup (cgroup v2
when the unified hierarchy carries the memory controller, else v1's ``memory`` hierarchy),
named ``stevedores-soak-<pid>``, with ``memory.max`` (v2) or ``memory.limit_in_bytes`` (v1)
set. It needs root (or a delegated hierarchy); when it cannot be made, ``create`` returns
the reason instead. :meth:`MemoryCgroup.command` wraps a command so that it moves itself into
the cgroup before it runs (``python -m bench.memory_cgroup <cgroup.procs> -- cmd ...``, which
writes its own pid, then execs: the gunicorn master is inside before it forks any worker).
:meth:`MemoryCgroup.remove` removes it once its processes are gone.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class MemoryCgroup:
    """One child memory cgroup: its directory and hierarchy version."""

    path: Path
    version: int

    @classmethod
    def create(cls, limit_mb: int, name: str | None = None, root: Path = CGROUP_ROOT) -> MemoryCgroup | str:
        """A child cgroup of this process's memory cgroup limited to ``limit_mb``; or why not (a str)."""
        name = name or f"stevedores-soak-{os.getpid()}"
        located = _own_memory_cgroup(root)
        if isinstance(located, str):
            return located
        parent, version = located
        path = parent / name
        try:
            path.mkdir()
        except FileExistsError:
            pass
        except OSError as exc:
            return f"cannot create a cgroup under {parent} ({exc.strerror}; needs root or a delegated hierarchy)"
        limit_file = "memory.max" if version == 2 else "memory.limit_in_bytes"
        try:
            (path / limit_file).write_text(str(limit_mb * 2**20))
        except OSError as exc:
            _rmdir(path)
            return f"cannot write {path / limit_file} ({exc.strerror})"
        return cls(path, version)

    @property
    def procs(self) -> Path:
        """The ``cgroup.procs`` file a process writes its pid to, to enter."""
        return self.path / "cgroup.procs"

    def command(self, args: list[str]) -> list[str]:
        """``args`` run inside this cgroup (the wrapper enters, then execs ``args``)."""
        return [sys.executable, "-m", "bench.memory_cgroup", str(self.procs), "--", *args]

    def limit_bytes(self) -> int:
        """The limit as the kernel holds it."""
        name = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
        return int((self.path / name).read_text())

    def working_set_bytes(self) -> int:
        """Usage minus inactive file cache: what memory_guard calls the container's working set."""
        if self.version == 2:
            usage = int((self.path / "memory.current").read_text())
            inactive_key = "inactive_file"
        else:
            usage = int((self.path / "memory.usage_in_bytes").read_text())
            inactive_key = "total_inactive_file"
        stat = dict(line.split() for line in (self.path / "memory.stat").read_text().splitlines())
        return usage - int(stat.get(inactive_key, 0))

    def remove(self, timeout: float = 10.0) -> None:
        """Remove the cgroup once its processes have exited (waits up to ``timeout``)."""
        deadline = time.monotonic() + timeout
        while self.path.exists():
            if _rmdir(self.path) or time.monotonic() > deadline:
                return
            time.sleep(0.1)


def _own_memory_cgroup(root: Path) -> tuple[Path, int] | str:
    """(directory of this process's memory cgroup, hierarchy version) or why none is usable."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError as exc:
        return f"cannot read /proc/self/cgroup ({exc.strerror})"
    controllers = root / "cgroup.controllers"
    if controllers.exists() and "memory" in controllers.read_text().split():
        relative = next((line.split(":", 2)[2] for line in lines if line.startswith("0::")), "/")
        return root / relative.lstrip("/"), 2
    for line in lines:
        _id, names, relative = line.split(":", 2)
        if "memory" in names.split(","):
            directory = root / "memory" / relative.lstrip("/")
            if directory.is_dir():
                return directory, 1
            return root / "memory", 1  # no cgroup namespace: the mount root is our cgroup
    return "no memory controller in /proc/self/cgroup (neither cgroup v2 with memory nor v1 memory)"


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def main(argv: list[str]) -> None:
    """``python -m bench.memory_cgroup <cgroup.procs> -- cmd ...``: enter, then exec ``cmd``."""
    procs, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit("usage: python -m bench.memory_cgroup <cgroup.procs> -- command ...")
    Path(procs).write_text(str(os.getpid()))
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
