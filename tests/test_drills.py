"""The fault drills of bench/drills.py, shortened: each one is a test (make drills runs them longer)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.drills import DRILLS, run_drill

SECONDS = float(os.environ.get("DRILL_TEST_SECONDS", "4"))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(DRILLS))
def test_drill(name: str, tmp_path: Path) -> None:
    result = run_drill(name, seconds=SECONDS, clients=50, workdir=tmp_path)
    print(result.line())
    assert result.stats.sent > 100, result.line()
    assert result.passed, result.line()
