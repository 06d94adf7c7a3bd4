"""Resource detection over fake cgroup trees (v2, v1, nested, unlimited, missing, garbage)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from stevedores_memory_guard.resources import MB, CgroupReader, MemoryLimit, Resources

HOST = 8192 * MB


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def v2_tree(tmp_path: Path, cgroup: str = "/kubepods/pod1/app") -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu memory io\n")
    proc = tmp_path / "proc-self-cgroup"
    write(proc, f"0::{cgroup}\n")
    return root, proc


def v1_tree(tmp_path: Path, cgroup: str = "/docker/abc") -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    (root / "memory").mkdir(parents=True)
    (root / "cpu,cpuacct").mkdir(parents=True)
    proc = tmp_path / "proc-self-cgroup"
    write(proc, f"12:memory:{cgroup}\n11:cpu,cpuacct:{cgroup}\n1:name=systemd:{cgroup}\n0::/\n")
    return root, proc


def resources(root: Path, proc: Path, override: int | None = None) -> Resources:
    return Resources(CgroupReader(root, proc), override, host_memory=lambda: HOST, cpus=lambda: 8)


def test_v2_limit_usage_and_cpu_quota(tmp_path: Path) -> None:
    root, proc = v2_tree(tmp_path)
    app = root / "kubepods/pod1/app"
    write(app / "memory.max", "536870912\n")
    write(app / "memory.current", str(300 * MB))
    write(app / "memory.stat", f"anon 1000\nfile 2000\ninactive_file {40 * MB}\nactive_file 5\n")
    write(app / "cpu.max", "150000 100000\n")
    found = resources(root, proc)
    limit = found.memory_limit()
    assert (limit.mb, limit.cgroup_version, limit.cgroup_dir) == (512, 2, app)
    assert limit.source == f"cgroup v2 {app}"
    assert found.reader.working_set(limit) == 260 * MB
    quota = found.cpu_quota()
    assert (quota.cpus, quota.exact) == (2, 1.5)


def test_v1_limit_usage_and_cfs_quota(tmp_path: Path) -> None:
    root, proc = v1_tree(tmp_path)
    memory, cpu = root / "memory/docker/abc", root / "cpu,cpuacct/docker/abc"
    write(memory / "memory.limit_in_bytes", str(256 * MB))
    write(memory / "memory.usage_in_bytes", str(200 * MB))
    write(memory / "memory.stat", f"cache 1\ninactive_file 3\ntotal_inactive_file {50 * MB}\n")
    write(cpu / "cpu.cfs_quota_us", "300000")
    write(cpu / "cpu.cfs_period_us", "100000")
    found = resources(root, proc)
    limit = found.memory_limit()
    assert (limit.mb, limit.cgroup_version) == (256, 1)
    assert found.reader.working_set(limit) == 150 * MB
    assert found.cpu_quota().cpus == 3


def test_nested_takes_the_tighter_parent(tmp_path: Path) -> None:
    root, proc = v2_tree(tmp_path)
    write(root / "kubepods/pod1/app/memory.max", "max\n")
    write(root / "kubepods/pod1/memory.max", str(384 * MB))
    write(root / "kubepods/memory.max", str(1024 * MB))
    write(root / "kubepods/pod1/cpu.max", "max 100000\n")
    write(root / "kubepods/cpu.max", "50000 100000\n")
    found = resources(root, proc)
    limit = found.memory_limit()
    assert limit.mb == 384 and limit.cgroup_dir == root / "kubepods/pod1"
    assert found.cpu_quota().cpus == 1  # half a CPU rounds up to one


def test_v1_nested_parent_and_huge_number_means_unlimited(tmp_path: Path) -> None:
    root, proc = v1_tree(tmp_path)
    write(root / "memory/docker/abc/memory.limit_in_bytes", "9223372036854771712")
    write(root / "memory/docker/memory.limit_in_bytes", str(768 * MB))
    write(root / "memory/memory.limit_in_bytes", "9223372036854771712")
    assert resources(root, proc).memory_limit().mb == 768


def test_unlimited_everywhere_falls_back_to_the_host(tmp_path: Path) -> None:
    root, proc = v2_tree(tmp_path)
    write(root / "kubepods/pod1/app/memory.max", "max\n")
    write(root / "kubepods/pod1/app/cpu.max", "max 100000\n")
    found = resources(root, proc)
    assert found.memory_limit() == MemoryLimit(HOST, "host")
    assert (found.cpu_quota().cpus, found.cpu_quota().source) == (8, "host")
    v1_root, v1_proc = v1_tree(tmp_path / "v1")
    write(v1_root / "memory/docker/abc/memory.limit_in_bytes", "9223372036854771712")
    write(v1_root / "cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "-1")
    write(v1_root / "cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000")
    found = resources(v1_root, v1_proc)
    assert found.memory_limit().source == "host" and found.cpu_quota().source == "host"


def test_missing_files_and_missing_tree_fall_back_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    found = resources(tmp_path / "nowhere", tmp_path / "no-proc-file")
    with caplog.at_level(logging.WARNING, "stevedores.memory_guard"):
        assert found.memory_limit().source == "host"
        assert found.cpu_quota().source == "host"
    root, proc = v2_tree(tmp_path / "empty")  # the tree exists, the files do not
    assert resources(root, proc).memory_limit().source == "host"
    assert caplog.records == []


def test_path_missing_under_the_mount_uses_the_mount_root(tmp_path: Path) -> None:
    """Without a cgroup namespace the container sees its own cgroup mounted as the root."""
    root, proc = v2_tree(tmp_path, "/system.slice/docker-123.scope")
    write(root / "memory.max", str(512 * MB))
    assert resources(root, proc).memory_limit().cgroup_dir == root


def test_garbage_is_logged_by_file_then_the_next_source_is_used(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root, proc = v2_tree(tmp_path)
    write(root / "kubepods/pod1/app/memory.max", "lots\n")
    write(root / "kubepods/pod1/memory.max", str(640 * MB))
    write(root / "kubepods/pod1/app/cpu.max", "fast 100000\n")
    with caplog.at_level(logging.WARNING, "stevedores.memory_guard"):
        found = resources(root, proc)
        assert found.memory_limit().mb == 640  # the parent is the next source
        assert found.cpu_quota().source == "host"
    messages = [r.getMessage() for r in caplog.records]
    assert any(str(root / "kubepods/pod1/app/memory.max") in m and "'lots'" in m and "next source" in m
               for m in messages), messages
    assert any("cpu.max" in m and "'fast 100000'" in m for m in messages), messages


def test_garbage_v1_quota_and_usage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root, proc = v1_tree(tmp_path)
    write(root / "memory/docker/abc/memory.limit_in_bytes", str(256 * MB))
    write(root / "memory/docker/abc/memory.usage_in_bytes", "n/a")
    write(root / "cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "x")
    with caplog.at_level(logging.WARNING, "stevedores.memory_guard"):
        found = resources(root, proc)
        assert found.reader.working_set(found.memory_limit()) is None
        assert found.cpu_quota().source == "host"
    assert any("memory.usage_in_bytes" in r.getMessage() for r in caplog.records)
    assert any("cpu.cfs_quota_us" in r.getMessage() for r in caplog.records)


def test_memory_limit_mb_overrides_but_usage_still_comes_from_the_cgroup(tmp_path: Path) -> None:
    root, proc = v2_tree(tmp_path)
    app = root / "kubepods/pod1/app"
    write(app / "memory.max", str(1024 * MB))
    found = resources(root, proc, override=512)
    limit = found.memory_limit()
    assert (limit.mb, limit.source, limit.cgroup_dir) == (512, "MEMORY_LIMIT_MB", app)
    assert resources(tmp_path / "none", proc, override=128).memory_limit() == MemoryLimit(128 * MB, "MEMORY_LIMIT_MB")


def test_cpu_quota_is_capped_by_the_cpus_we_may_run_on(tmp_path: Path) -> None:
    root, proc = v2_tree(tmp_path)
    write(root / "kubepods/pod1/app/cpu.max", "1600000 100000\n")
    assert resources(root, proc).cpu_quota().cpus == 8
