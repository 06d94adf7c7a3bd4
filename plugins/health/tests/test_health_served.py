"""The whole dashboard under real gunicorn: a pip-installed third-party check, the probes under
rate limiting, and the status page in a real headless Chromium (strict CSP, refresh, phone width)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Callable

import pytest

from stevedores.testing import http_get, install_plugin_distribution, require_service

REPO = Path(__file__).resolve().parents[3]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

# The status page's sections as the server painted them, then as status.js draws the same data.
FIRST_PAINT_AND_REDRAWN = """() => {
  const ids = ["overall", "summary", "checks", "panels", "workers-card", "plugins"];
  const text = () => ids.map(id => document.getElementById(id).innerText.replace(/\\s+/g, " ").trim()).join(" | ");
  const server = text();
  window.stevedoresStatus.render(window.stevedoresStatus.initial());
  return {server: server, redrawn: text()};
}"""
PYTHON_REPR = re.compile(r"\b(True|False|None)\b|\{'|\['")

CRANES_PLUGIN = '''
from stevedores import HealthCheck, hookimpl

@hookimpl
def stevedores_health_checks():
    return [HealthCheck("cranes", lambda: {"status": "healthy", "cranes_online": 3, "feed_up": True,
                                           "berths": ["B1", "B2"], "load": 2.0, "feed_pid": 4242}, timeout=1.0,
                        description="Crane telemetry feed", public=("cranes_online", "feed_up", "berths", "load"))]
'''


@pytest.fixture(scope="module")
def cranes_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A third-party plugin distribution pip-installed into a private directory (real entry point)."""
    return install_plugin_distribution(tmp_path_factory.mktemp("cranes") / "site", "cranes", CRANES_PLUGIN,
                                       module="stevedores_cranes", distribution="stevedores-cranes",
                                       version="2.0.1")


def test_served_health_with_a_third_party_check_and_the_status_page_in_chromium(
        cranes_site: Path, stevedores_gunicorn_server: Callable) -> None:
    require_service("Chromium", CHROMIUM.exists(), "install the chromium package")
    server = stevedores_gunicorn_server(env={
        "PYTHONPATH": str(cranes_site), "WEB_WORKERS": "1", "RATE_LIMITS": "5 per minute",
        "HEALTH_STATUS_REFRESH": "1", "HEALTH_LOAD_WARN_PER_CPU": "1000", "HEALTH_DISK_MIN_FREE_PERCENT": "0",
    }, ready_path="/health/live")

    code, text = http_get(server.url + "/health")
    checks = json.loads(text)["checks"]
    assert code in (200, 503)
    assert checks["cranes"] == {"status": "healthy", "response_time_ms": checks["cranes"]["response_time_ms"],
                                "critical": False, "cranes_online": 3, "feed_up": True, "berths": ["B1", "B2"],
                                "load": 2.0}
    assert {"database", "application", "system"} <= set(checks) and checks["database"]["status"] == "healthy"

    # probes are infrastructure: never rate limited, even far past the 5-per-minute limit
    codes = [http_get(server.url + path)[0] for path in ["/health/quick"] * 30 + ["/health/live"] * 10
             + ["/health/ready"] * 5]
    assert set(codes) == {200}, codes

    code, html = http_get(server.url + "/status")
    assert code == 200 and 'data-check="cranes"' in html and "stevedores-cranes" in html

    console: list[str] = []
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning")
                    else None)
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: console.append(f"requestfailed: {r.url}"))
            page.on("response", lambda r: console.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
            response = page.goto(server.url + "/status", wait_until="domcontentloaded")
            assert response is not None and response.status == 200
            csp = response.headers.get("content-security-policy")
            first_paint = page.evaluate(FIRST_PAINT_AND_REDRAWN)
            assert first_paint["server"] == first_paint["redrawn"], "the first paint differs from a refresh"
            assert not PYTHON_REPR.search(first_paint["server"]), first_paint["server"]
            nav = page.eval_on_selector_all("header.topbar nav a", "links => links.map(a => a.textContent)")
            assert {"Dashboard", "Log in", "Status"} <= set(nav), nav
            page.wait_for_selector('#checks tr[data-check="cranes"]')
            names = page.eval_on_selector_all("#checks tr[data-check]", "rows => rows.map(r => r.dataset.check)")
            assert {"database", "application", "system", "cranes"} <= set(names)
            # wait_for_function would eval a string, which the strict CSP forbids: poll instead
            deadline = time.monotonic() + 10
            while int(page.get_attribute("#refreshed", "data-refreshes") or 0) < 2 and time.monotonic() < deadline:
                page.wait_for_timeout(100)
            assert int(page.get_attribute("#refreshed", "data-refreshes") or 0) >= 2, "the page never refreshed"
            assert "Refreshed at" in page.text_content("#refreshed")
            assert page.is_visible('#checks tr[data-check="cranes"]'), "checks are still shown after a refresh"
            assert page.is_visible('#plugins tr[data-plugin="cranes"]')
            overflow = page.evaluate("document.documentElement.scrollWidth") - 390
            assert overflow <= 1, f"the page is {overflow}px wider than a phone screen"
            artifacts = REPO / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "status.png"), full_page=True)
        finally:
            browser.close()
    assert console == [], f"console/CSP errors: {console} (CSP: {csp})"
