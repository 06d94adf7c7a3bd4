"""Helpers shared by the core's tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Mapping

import pytest

REPO = Path(__file__).resolve().parent.parent
STEVEDORES = str(Path(sys.executable).with_name("stevedores"))


def clean_environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The process environment without any stevedores setting, plus test defaults and ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STEVEDORES_", "FLASK_", "WEB_", "MEMORY_", "REDIS_", "OPS_", "SECRET_"))}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}", "LOG_FILE": "none"})
    env.update(extra)
    return env


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``stevedores ARGS`` in a clean environment plus ``env``; returns the completed process."""

    def run(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([STEVEDORES, *args], env=clean_environ(tmp_path, **(env or {})), cwd=tmp_path,
                              capture_output=True, text=True, timeout=timeout)

    return run
