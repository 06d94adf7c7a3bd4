"""The soak of bench/soak.py in its 60-second form (`make soak` runs it for SOAK_SECONDS=600):
load, Redis killed and restored, recycles by count, by memory (inside a real 512 MB memory
cgroup where the machine allows it) and by SIGHUP; no growth, no lost metric, no 5xx."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.soak import run_soak

SECONDS = float(os.environ.get("SOAK_TEST_SECONDS", "60"))


@pytest.mark.timeout(180)  # ~75 s on a quiet machine: 60 s of soak, the stack's start and stop
def test_a_minute_of_soak_holds_every_promise(tmp_path: Path) -> None:
    result = run_soak(SECONDS, results=tmp_path / "RESULTS.md", plot=tmp_path / "soak.png", workdir=tmp_path / "soak")
    report = "\n".join(result.lines)
    assert result.passed, report
    assert "Soak" in (tmp_path / "RESULTS.md").read_text()
    assert (tmp_path / "soak.png").stat().st_size > 10_000
    if os.geteuid() == 0 and os.environ.get("CI") == "true":  # CI runs as root with a writable hierarchy
        assert "a real 512 MB memory cgroup" in report, report


def test_the_growth_rule_tells_a_leak_from_churn() -> None:
    """The soak's definition of unbounded growth on synthetic series: churn passes, a leak fails."""
    import random

    from bench.soak import GROWTH_CHECKS, growth_verdicts

    rng = random.Random(12)

    def series(leak: float) -> list[dict[str, float]]:
        """600 s of each series: churn as wide as twice its absolute tolerance, plus ``leak``
        times that tolerance over the second half."""
        rows = []
        for i in range(600):
            row: dict[str, float] = {"t": float(i)}
            for name, (absolute, _unit) in GROWTH_CHECKS.items():
                row[name] = absolute * (3 + rng.uniform(0, 2) + leak * i / 300)
            rows.append(row)
        return rows

    assert all(ok for ok, _ in growth_verdicts(series(0.0), 600))
    leaking = growth_verdicts(series(4.0), 600)
    assert not any(ok for ok, _ in leaking), leaking
