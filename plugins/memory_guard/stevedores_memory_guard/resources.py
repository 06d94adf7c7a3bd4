"""Container resources: the memory limit, the CPU quota and the container's working set.

``os.cpu_count()`` and ``psutil.virtual_memory()`` see the host, not the container, so
the limits come from the process's cgroup: v2 (``memory.max``, ``memory.current``,
``memory.stat``, ``cpu.max``) or v1 (``memory.limit_in_bytes``, ``memory.usage_in_bytes``,
``memory.stat``, ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``). The cgroup is resolved
through ``/proc/self/cgroup`` and every level up to the root is read: the tightest
limit wins. ``max`` (v2) and v1's huge number mean unlimited.

Both paths are configurable (``MEMORY_CGROUP_ROOT``, ``MEMORY_PROC_CGROUP``) so that
tests point them at fake trees. A missing file is skipped quietly; a file with a value
that is not a number is logged (naming the file) and the next source is tried.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger("stevedores.memory_guard")

MB = 1024 * 1024
#: v1 reports "no limit" as a huge number (PAGE_COUNTER_MAX pages, ~2**63); anything this big is unlimited.
UNLIMITED_THRESHOLD = 1 << 60
DEFAULT_CGROUP_ROOT = "/sys/fs/cgroup"
DEFAULT_PROC_CGROUP = "/proc/self/cgroup"


@dataclass(frozen=True)
class MemoryLimit:
    """The memory limit in force, where it came from, and (for a cgroup) where usage is read."""

    bytes: int
    source: str  # "MEMORY_LIMIT_MB", "cgroup v2 <dir>", "cgroup v1 <dir>" or "host"
    cgroup_dir: Path | None = None  # the cgroup whose usage counts against the limit
    cgroup_version: int | None = None

    @property
    def mb(self) -> int:
        """The limit in whole MB."""
        return self.bytes // MB


@dataclass(frozen=True)
class CpuQuota:
    """The CPUs this process may use (quota-aware), and where the figure came from."""

    cpus: int
    source: str  # "cgroup v2 <dir>", "cgroup v1 <dir>" or "host"
    exact: float | None = None  # quota / period before rounding up


@dataclass(frozen=True)
class CgroupDir:
    """One directory of the process's cgroup path, with its hierarchy version."""

    path: Path
    version: int


class CgroupReader:
    """Reads the limits of the current process's cgroup under ``root`` (default /sys/fs/cgroup)."""

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_CGROUP_ROOT,
                 proc_cgroup: str | os.PathLike[str] = DEFAULT_PROC_CGROUP) -> None:
        self.root = Path(root)
        self.proc_cgroup = Path(proc_cgroup)

    # --- resolving the cgroup -----------------------------------------------------------

    def _memberships(self) -> dict[str, str]:
        """``controller -> path`` from /proc/self/cgroup; the v2 entry is under ``""``."""
        try:
            text = self.proc_cgroup.read_text()
        except OSError as exc:
            log.debug("memory_guard: cannot read %s: %s", self.proc_cgroup, exc)
            return {}
        found: dict[str, str] = {}
        for line in text.splitlines():
            parts = line.strip().split(":", 2)
            if len(parts) != 3:
                continue
            _hierarchy, controllers, path = parts
            if controllers == "":
                found[""] = path
            for controller in controllers.split(","):
                if controller:
                    found[controller] = path
        return found

    def chain(self, controller: str) -> list[CgroupDir]:
        """The process's cgroup directories for ``controller``, innermost first, up to the mount root.

        cgroup v2 (unified, ``cgroup.controllers`` at the root) is preferred; v1 mounts the
        controller at ``root/<controller>`` (or a joint mount such as ``root/cpu,cpuacct``).
        When the path from /proc/self/cgroup does not exist under the mount (a container
        without a cgroup namespace sees its own cgroup as the mount root), the mount root
        alone is used.
        """
        memberships = self._memberships()
        if "" in memberships and (self.root / "cgroup.controllers").exists():
            return _walk_up(self.root, memberships[""], 2)
        v1_path = memberships.get(controller)
        if v1_path is None:
            return []
        for mount in self._v1_mounts(controller):
            return _walk_up(mount, v1_path, 1)
        return []

    def _v1_mounts(self, controller: str) -> list[Path]:
        candidates = [self.root / controller]
        try:
            candidates += sorted(p for p in self.root.iterdir() if controller in p.name.split(",") and p.is_dir())
        except OSError:
            pass
        return [c for c in candidates if c.is_dir()]

    # --- memory --------------------------------------------------------------------------

    def memory_limit(self) -> MemoryLimit | None:
        """The tightest memory limit up the cgroup tree, or None when unlimited or unknown."""
        best: MemoryLimit | None = None
        for level in self.chain("memory"):
            name = "memory.max" if level.version == 2 else "memory.limit_in_bytes"
            value = _read_limit(level.path / name)
            if value is not None and (best is None or value < best.bytes):
                best = MemoryLimit(value, f"cgroup v{level.version} {level.path}", level.path, level.version)
        return best

    def working_set(self, limit: MemoryLimit) -> int | None:
        """Memory in use in the cgroup that carries ``limit``: usage minus inactive page cache.

        ``memory.current`` (v2) or ``memory.usage_in_bytes`` (v1) minus ``inactive_file``
        (v1: ``total_inactive_file``), as the kubelet computes it. None when unreadable.
        """
        if limit.cgroup_dir is None:
            return None
        usage_file = "memory.current" if limit.cgroup_version == 2 else "memory.usage_in_bytes"
        usage = _read_number(limit.cgroup_dir / usage_file)
        if usage is None:
            return None
        stat = _read_stat(limit.cgroup_dir / "memory.stat")
        inactive = stat.get("inactive_file" if limit.cgroup_version == 2 else "total_inactive_file")
        if inactive is None:
            inactive = stat.get("inactive_file", 0)
        return max(0, usage - inactive)

    # --- CPU -----------------------------------------------------------------------------

    def cpu_quota(self) -> tuple[float, str] | None:
        """The tightest CPU quota (quota / period, in CPUs) up the tree, or None when unlimited."""
        best: tuple[float, str] | None = None
        for level in self.chain("cpu"):
            cpus = _read_cpu_max(level.path / "cpu.max") if level.version == 2 else _read_cfs(level.path)
            if cpus is not None and (best is None or cpus < best[0]):
                best = (cpus, f"cgroup v{level.version} {level.path}")
        return best


def _walk_up(mount: Path, cgroup_path: str, version: int) -> list[CgroupDir]:
    relative = cgroup_path.strip("/")
    start = mount / relative if relative else mount
    if not start.is_dir():
        log.debug("memory_guard: %s does not exist; using the mount root %s", start, mount)
        start = mount
    chain: list[CgroupDir] = []
    current = start
    while True:
        chain.append(CgroupDir(current, version))
        if current == mount or mount not in current.parents:
            break
        current = current.parent
    return chain


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("memory_guard: cannot read %s (%s); trying the next source", path, exc)
        return None


def _garbage(path: Path, raw: str, expected: str) -> None:
    log.warning("memory_guard: ignoring %s: %r is not %s; trying the next source", path, raw[:60], expected)


def _whole_number(path: Path, raw: str, minimum: int, expected: str) -> int | None:
    """``raw`` (read from ``path``) as an int of at least ``minimum``; None, logged as ``expected``, otherwise."""
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        _garbage(path, raw, expected)
        return None
    return value


def _read_number(path: Path) -> int | None:
    raw = _read_text(path)
    return None if raw is None else _whole_number(path, raw, 0, "a non-negative whole number of bytes")


def _read_limit(path: Path) -> int | None:
    """A memory limit file: None for missing, garbage, ``max`` or v1's huge "unlimited" number."""
    raw = _read_text(path)
    if raw is None or raw == "max":
        return None
    value = _whole_number(path, raw, 1, "a positive number of bytes or 'max'")
    return None if value is None or value >= UNLIMITED_THRESHOLD else value


def _read_stat(path: Path) -> dict[str, int]:
    raw = _read_text(path)
    stat: dict[str, int] = {}
    for line in (raw or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            stat[key] = int(value)
        except ValueError:
            continue
    return stat


def _read_cpu_max(path: Path) -> float | None:
    raw = _read_text(path)
    if raw is None:
        return None
    parts = raw.split()
    if parts and parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1]) if len(parts) > 1 else 100_000
    except (ValueError, IndexError):
        _garbage(path, raw, "'<quota> <period>' or 'max <period>'")
        return None
    if quota <= 0 or period <= 0:
        _garbage(path, raw, "a positive quota and period")
        return None
    return quota / period


def _read_cfs(directory: Path) -> float | None:
    quota_path = directory / "cpu.cfs_quota_us"
    raw = _read_text(quota_path)
    if raw is None:
        return None
    try:
        quota = int(raw)
    except ValueError:
        _garbage(quota_path, raw, "a whole number of microseconds or -1")
        return None
    if quota < 0:
        return None  # -1: unlimited
    period = _read_number(directory / "cpu.cfs_period_us")
    if period is None:
        return None
    if quota == 0 or period == 0:
        _garbage(quota_path, f"{quota}/{period}", "a positive quota over a positive cpu.cfs_period_us")
        return None
    return quota / period


def host_memory_bytes() -> int:
    """The host's total memory (what a process without a cgroup limit may use)."""
    import psutil

    return int(psutil.virtual_memory().total)


def host_cpus() -> int:
    """CPUs this process may run on (affinity-aware), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class Resources:
    """Resolves the effective limits: setting first, then the cgroup tree, then the host."""

    def __init__(self, reader: CgroupReader, override_mb: int | None = None,
                 host_memory: Callable[[], int] = host_memory_bytes, cpus: Callable[[], int] = host_cpus) -> None:
        self.reader = reader
        self.override_mb = override_mb
        self._host_memory = host_memory
        self._host_cpus = cpus

    @classmethod
    def from_config(cls, config: object) -> Resources:
        """Built from the plugin's settings (MEMORY_LIMIT_MB, MEMORY_CGROUP_ROOT, MEMORY_PROC_CGROUP)."""
        get = config.get  # type: ignore[attr-defined]
        reader = CgroupReader(get("MEMORY_CGROUP_ROOT") or DEFAULT_CGROUP_ROOT,
                              get("MEMORY_PROC_CGROUP") or DEFAULT_PROC_CGROUP)
        return cls(reader, get("MEMORY_LIMIT_MB"))

    def memory_limit(self) -> MemoryLimit:
        """MEMORY_LIMIT_MB when set, else the tightest cgroup limit, else the host's memory.

        With MEMORY_LIMIT_MB set, a cgroup limit (if any) still tells where the
        container's usage is read.
        """
        cgroup = self.reader.memory_limit()
        if self.override_mb is not None:
            directory = cgroup.cgroup_dir if cgroup else None
            version = cgroup.cgroup_version if cgroup else None
            return MemoryLimit(self.override_mb * MB, "MEMORY_LIMIT_MB", directory, version)
        if cgroup is not None:
            return cgroup
        return MemoryLimit(self._host_memory(), "host")

    def cpus(self) -> float:
        """The ``resources`` service's CPU figure: quota / period (not rounded), capped by the host's CPUs."""
        quota = self.cpu_quota()
        return min(float(quota.cpus), quota.exact) if quota.exact is not None else float(quota.cpus)

    def memory_limit_bytes(self) -> int:
        """The ``resources`` service's memory figure: :meth:`memory_limit` in bytes."""
        return self.memory_limit().bytes

    def cpu_quota(self) -> CpuQuota:
        """The quota-aware CPU count: ceil(quota / period), capped by the CPUs we may run on."""
        host = self._host_cpus()
        quota = self.reader.cpu_quota()
        if quota is None:
            return CpuQuota(host, "host")
        cpus, source = quota
        return CpuQuota(max(1, min(host, math.ceil(cpus - 1e-9))), source, cpus)
