"""Worker sizing through the core's decision: memory cap, CPU cap, request; who decided."""

from __future__ import annotations

from pathlib import Path

from stevedores.runtime import Runtime


def decide(tmp_path: Path, **env: str):  # noqa: ANN201
    environ = {"FLASK_ENV": "testing", "STEVEDORES_PLUGINS": "memory_guard",
               "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "LOG_FILE": "none", **env}
    return Runtime.load(environ).worker_decision()


def fake_v2(tmp_path: Path, memory_max: str, cpu_max: str) -> dict[str, str]:
    root = tmp_path / "cgroup"
    (root / "app").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory\n")
    (root / "app" / "memory.max").write_text(memory_max)
    (root / "app" / "cpu.max").write_text(cpu_max)
    (tmp_path / "cgroup-file").write_text("0::/app\n")
    return {"MEMORY_CGROUP_ROOT": str(root), "MEMORY_PROC_CGROUP": str(tmp_path / "cgroup-file")}


def test_guide_figures_and_the_request_decides(tmp_path: Path) -> None:
    decision = decide(tmp_path, MEMORY_LIMIT_MB="512", WEB_WORKERS="4")
    lines = decision.lines()
    assert "Container Memory: 512MB" in lines and "Max Workers by Memory: 8" in lines
    assert decision.final == 4 and decision.decided_by == "WEB_WORKERS"


def test_memory_decides_and_says_so(tmp_path: Path) -> None:
    decision = decide(tmp_path, MEMORY_LIMIT_MB="128", WEB_CONCURRENCY="4")
    assert decision.final == 2 and decision.decided_by == "memory_guard"
    assert decision.reason.startswith("memory: 128MB (MEMORY_LIMIT_MB) / 64MB per worker")


def test_cpu_quota_decides_from_the_cgroup(tmp_path: Path) -> None:
    env = fake_v2(tmp_path, str(2048 * 1024 * 1024), "100000 100000")
    decision = decide(tmp_path, WEB_WORKERS="10", **env)
    assert decision.final == 3 and decision.decided_by == "memory_guard"
    assert decision.reason.startswith("CPU: 2 x 1 CPUs (cgroup v2")
    assert "Container Memory: 2048MB" in decision.lines() and "Max Workers by CPU: 3" in decision.lines()


def test_cgroup_memory_and_budget_without_a_request(tmp_path: Path) -> None:
    env = fake_v2(tmp_path, str(256 * 1024 * 1024), "400000 100000")
    decision = decide(tmp_path, WORKER_MEMORY_MB="128", **env)
    assert decision.final == 2 and decision.reason.startswith("memory: 256MB (cgroup v2")


def test_tiny_memory_still_gives_one_worker(tmp_path: Path) -> None:
    decision = decide(tmp_path, MEMORY_LIMIT_MB="32", WEB_WORKERS="4")
    assert decision.final == 1 and "raised from 0 to the minimum of 1" in decision.reason
