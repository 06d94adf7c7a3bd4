"""deploy/: the HAProxy configuration the fleet drill runs is valid, and docker-compose.yml
describes the same topology with files that exist and settings the dashboard declares."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from bench.fleet import HAPROXY_CONFIG
from stevedores.plugins import Plugins
from stevedores.runtime import declared_settings
from stevedores.testing import require_service

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _haproxy_variables() -> set[str]:
    lines = [line for line in HAPROXY_CONFIG.read_text().splitlines() if not line.lstrip().startswith("#")]
    return set(re.findall(r"\$\{(\w+)\}", "\n".join(lines)))


@pytest.mark.timeout(60)
def test_haproxy_accepts_the_shipped_configuration(tmp_path: Path) -> None:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    require_service("haproxy", Path(haproxy).exists(), "install the haproxy package")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "1", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    (tmp_path / "lb.pem").write_bytes(cert.read_bytes() + key.read_bytes())
    env = {"STEVEDORES_LB_BIND": "127.0.0.1:8443", "STEVEDORES_LB_HTTP_BIND": "127.0.0.1:8080",
           "STEVEDORES_LB_STATS_BIND": "127.0.0.1:8404", "STEVEDORES_LB_CERT": str(tmp_path / "lb.pem"),
           "STEVEDORES_APP1": "127.0.0.1:8001", "STEVEDORES_APP2": "127.0.0.1:8002"}
    assert set(env) == _haproxy_variables()
    checked = subprocess.run([haproxy, "-c", "-f", str(HAPROXY_CONFIG)], env=env, capture_output=True, text=True,
                             timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    broken = HAPROXY_CONFIG.read_text().replace("http-check expect status 200", "http-check expect sometimes 200")
    (tmp_path / "broken.cfg").write_text(broken)
    assert subprocess.run([haproxy, "-c", "-f", str(tmp_path / "broken.cfg")], env=env, capture_output=True,
                          timeout=30).returncode != 0  # the check does reject a bad file


def test_the_compose_file_runs_the_drills_topology_with_files_that_exist() -> None:
    compose = _compose()
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "app1", "app2", "haproxy"} <= set(services)
    haproxy = services["haproxy"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in haproxy["volumes"]}
    assert (DEPLOY / mounts["/usr/local/etc/haproxy/haproxy.cfg"]).resolve() == HAPROXY_CONFIG
    assert set(haproxy["environment"]) == _haproxy_variables()
    for name in ("app1", "app2", "migrate"):
        build = services[name]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    assert services["migrate"]["command"] == ["stevedores", "db", "upgrade"]
    app_env = services["app1"]["environment"]
    assert services["app2"]["environment"] == app_env
    assert app_env["FORWARDED_ALLOW_IPS"] == haproxy["networks"]["default"]["ipv4_address"]
    declared = {s.name for _p, s in declared_settings(Plugins.from_environ({}))}
    assert set(app_env) <= declared, set(app_env) - declared
    backends = {haproxy["environment"][f"STEVEDORES_APP{i}"] for i in (1, 2)}
    assert backends == {"app1:8000", "app2:8000"}
