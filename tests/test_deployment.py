"""The deployment paths: what can be checked without a Docker engine or a Render account."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parent.parent
GUIDE_COMMAND = ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:application"]


def _dockerfile() -> list[str]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_dockerfile_runs_the_guide_command_as_a_non_root_user() -> None:
    lines = _dockerfile()
    final_stage = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")):]
    assert final_stage[0].startswith("FROM python:3.11-slim")
    cmd = next(line for line in final_stage if line.startswith("CMD "))
    assert eval(cmd.removeprefix("CMD "), {}) == GUIDE_COMMAND  # noqa: S307 - JSON exec form
    users = [line.split()[1] for line in final_stage if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    healthcheck = next(line for line in final_stage if line.startswith("HEALTHCHECK "))
    assert "/health/live" in healthcheck and "PORT" in healthcheck
    env = " ".join(line for line in final_stage if line.startswith("ENV "))
    assert "PORT=" in env and "FLASK_ENV=production" in env
    assert not any(re.search(r"apt-get install|build-essential|gcc", line) for line in final_stage)


def test_every_file_the_dockerfile_copies_exists_and_is_not_ignored() -> None:
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for line in _dockerfile():
        if not line.startswith("COPY ") or "--from=" in line:
            continue
        sources = shlex.split(line)[1:-1]
        for source in sources:
            assert (REPO / source).exists(), f"Dockerfile copies {source}, which does not exist"
            assert source.rstrip("/") not in ignored, f"{source} is copied but .dockerignore excludes it"
    assert ".venv" in ignored and ".git" in ignored


def test_requirements_install_the_core_and_every_plugin_with_pins() -> None:
    lines = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    local = [line for line in lines if line.startswith("./")]
    plugins = sorted(f"./plugins/{p.parent.name}" for p in REPO.glob("plugins/*/pyproject.toml"))
    assert local == ["./", *plugins]
    pinned = {line.split("==")[0].lower().replace("_", "-"): line for line in lines if not line.startswith("./")}
    assert all("==" in line for line in pinned.values()), "every third-party requirement is pinned"
    for project in [REPO / "pyproject.toml", *REPO.glob("plugins/*/pyproject.toml")]:
        for dep in tomllib.loads(project.read_text())["project"]["dependencies"]:
            name = re.split(r"[\[<>=!~; ]", dep, maxsplit=1)[0].lower().replace("_", "-")
            if not name.startswith("stevedores"):
                assert name in pinned, f"{project.parent.name} needs {name}, which requirements.txt does not pin"


def test_render_blueprint_uses_the_guide_command_and_variables() -> None:
    text = (REPO / "render.yaml").read_text()
    assert "startCommand: gunicorn -c gunicorn.conf.py wsgi:application" in text
    assert "buildCommand: pip install -r requirements.txt" in text
    assert "healthCheckPath: /health/ready" in text  # traffic follows readiness (ARCHITECTURE.md, "Proxies")
    for variable in ("FLASK_ENV", "FLASK_CONFIG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "MEMORY_LIMIT_MB"):
        assert f"key: {variable}" in text
