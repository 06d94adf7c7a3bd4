"""The monitor's decisions (fake samples and clock) and the cross-process coordination (real files, real processes)."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from stevedores_memory_guard.coordination import Coordinator, remove_stale_files
from stevedores_memory_guard.monitor import MemoryMonitor, Thresholds
from stevedores_memory_guard.processes import ProcessMemory
from stevedores_memory_guard.resources import MB
from stevedores_memory_guard.sampling import MemorySample

from stevedores.testing import FakeClock

LIMIT = 512 * MB


class Samples:
    """Hands out the queued usage figures (MB), repeating the last one."""

    def __init__(self, *used_mb: float) -> None:
        self.queue = list(used_mb)

    def sample(self) -> MemorySample:
        used = self.queue.pop(0) if len(self.queue) > 1 else self.queue[0]
        return MemorySample(int(used * MB), LIMIT, "fake", "MEMORY_LIMIT_MB")


class Recorder:
    """Telemetry sink and recycle callback that remember what they got."""

    def __init__(self) -> None:
        self.gauges: dict[str, float] = {}
        self.counts: list[tuple[str, dict[str, str]]] = []
        self.recycled: list[str] = []

    def gauge(self, name: str, value: float, **labels: str) -> None:
        self.gauges[name] = value

    def count(self, name: str, amount: float = 1, **labels: str) -> None:
        self.counts.append((name, labels))


def workers(*uss_mb: tuple[int, int]) -> list[ProcessMemory]:
    return [ProcessMemory(pid, uss * MB, uss * MB, uss * MB, "worker") for pid, uss in uss_mb]


def monitor(tmp_path: Path, samples: Samples, pid: int, siblings: list[ProcessMemory], recorder: Recorder,
            clock: FakeClock, recycle: bool = True, **thresholds: float) -> MemoryMonitor:
    coordinator = Coordinator(tmp_path / "state.json", clock=clock)
    return MemoryMonitor(samples, lambda: siblings, coordinator, recorder, Thresholds(**thresholds),
                         recorder.recycled.append if recycle else None, collect=lambda: 7, pid=pid, clock=clock)


def test_below_warning_is_quiet_and_reports_figures(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    mon = monitor(tmp_path, Samples(200), 11, workers((11, 50)), recorder, FakeClock())
    with caplog.at_level(logging.INFO, "stevedores.memory_guard"):
        assert mon.check_once() == "ok"
    assert caplog.records == []
    assert recorder.gauges == {"memory_used_bytes": 200 * MB, "memory_limit_bytes": LIMIT}


def test_warning_uses_the_guide_line_once_per_repeat_across_workers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock, recorder = FakeClock(), Recorder()
    first = monitor(tmp_path, Samples(390), 11, [], recorder, clock)
    second = monitor(tmp_path, Samples(390), 12, [], recorder, clock)
    with caplog.at_level(logging.INFO, "stevedores.memory_guard"):
        assert first.check_once() == "warning" and second.check_once() == "warning"
        clock.now += 61
        assert second.check_once() == "warning"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["Memory usage high: 390MB of 512MB (76.2%)"] * 2
    assert recorder.recycled == []


def test_critical_runs_gc_and_stops_when_that_is_enough(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    mon = monitor(tmp_path, Samples(450, 400), 11, workers((11, 300)), recorder, FakeClock())
    with caplog.at_level(logging.INFO, "stevedores.memory_guard"):
        assert mon.check_once() == "warning"
    assert recorder.recycled == []
    assert any("gc.collect() in worker 11 freed 7 objects" in r.getMessage() for r in caplog.records)


def test_only_the_largest_worker_recycles_and_only_one_per_cooldown(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock, recorder = FakeClock(), Recorder()
    siblings = workers((11, 60), (12, 250), (13, 240))
    small = monitor(tmp_path, Samples(460), 11, siblings, recorder, clock, cooldown=30)
    largest = monitor(tmp_path, Samples(460), 12, siblings, recorder, clock, cooldown=30)
    with caplog.at_level(logging.INFO, "stevedores.memory_guard"):
        assert small.check_once() == "critical"
        assert recorder.recycled == []
        assert largest.check_once() == "recycling"
        assert largest.check_once() == "recycling"  # once only
    assert recorder.recycled == ["memory_critical"]
    assert recorder.counts == [("worker_recycles_total", {"cause": "memory_critical"})]
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("Recycling worker 12"))
    assert "cause: memory_critical" in line and "USS 250MB" in line and "13: 240MB" in line
    # The next largest (13) is not recycled within the cool-down, then it may be.
    siblings[:] = workers((11, 60), (13, 240), (14, 30))
    runner_up = monitor(tmp_path, Samples(460), 13, siblings, recorder, clock, cooldown=30)
    assert runner_up.check_once() == "critical" and recorder.recycled == ["memory_critical"]
    clock.now += 31
    assert runner_up.check_once() == "recycling" and len(recorder.recycled) == 2


def test_a_worker_already_stopping_neither_warns_nor_recycles(tmp_path: Path) -> None:
    recorder, stopping = Recorder(), [False]
    coordinator = Coordinator(tmp_path / "state.json")
    mon = MemoryMonitor(Samples(500), lambda: workers((11, 400)), coordinator, recorder, Thresholds(),
                        recorder.recycled.append, collect=lambda: 0, pid=11, stopping=lambda: stopping[0])
    stopping[0] = True
    assert mon.check_once() == "stopping"
    assert recorder.recycled == [] and coordinator.last("recycle") is None
    stopping[0] = False
    assert mon.check_once() == "recycling" and recorder.recycled == ["memory_critical"]


def test_without_gunicorn_it_never_recycles(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    mon = monitor(tmp_path, Samples(500), 11, workers((11, 400)), recorder, FakeClock(), recycle=False)
    with caplog.at_level(logging.WARNING, "stevedores.memory_guard"):
        assert mon.check_once() == "critical" and mon.check_once() == "critical"
    said = [r for r in caplog.records if "not a gunicorn worker" in r.getMessage()]
    assert len(said) == 1 and recorder.counts == []


def test_the_thread_samples_until_stopped(tmp_path: Path) -> None:
    recorder = Recorder()
    mon = monitor(tmp_path, Samples(100), 11, [], recorder, FakeClock(), interval=0.05)
    mon.start()
    deadline = time.monotonic() + 5
    while "memory_used_bytes" not in recorder.gauges and time.monotonic() < deadline:
        time.sleep(0.02)
    assert mon.running
    mon.stop()
    assert not mon.running and recorder.gauges["memory_used_bytes"] == 100 * MB


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="MEMORY_CRITICAL_PERCENT .* must be above MEMORY_WARNING_PERCENT"):
        Thresholds(warning_percent=90, critical_percent=80)


def test_claims_are_exclusive_across_processes(tmp_path: Path) -> None:
    """Eight processes race for one event: exactly one wins."""
    path = tmp_path / "state.json"
    script = ("import sys; from pathlib import Path; from stevedores_memory_guard.coordination import Coordinator; "
              "print(Coordinator(Path(sys.argv[1])).claim('recycle', 60))")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True)
             for _ in range(8)]
    results = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(results) == ["False"] * 7 + ["True"]
    assert Coordinator(path).last("recycle")["pid"] in [p.pid for p in procs]


def test_stale_files_of_dead_masters_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"stevedores-memory-guard-{dead.pid}.json").write_text("{}")
    alive = tmp_path / "stevedores-memory-guard-1.json"
    alive.write_text("{}")
    assert remove_stale_files(tmp_path) == 1
    assert alive.exists()
    mine = Coordinator.for_tree(1, tmp_path)
    assert mine.path == alive and mine.claim("recycle", 60) and not mine.claim("recycle", 60)
    mine.reset()
    assert not alive.exists() and mine.claim("recycle", 60)
