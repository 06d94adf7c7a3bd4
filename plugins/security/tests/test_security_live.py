"""The assembled dashboard under real gunicorn: ab on the probes, and a real Chromium on the pages."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.error
import urllib.request
from typing import Any, Callable

from stevedores.testing import require_service

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _favicon(message: Any) -> bool:
    """The browser's own request for /favicon.ico (the dashboard has none): not a page problem."""
    return "Failed to load resource" in message.text and str(message.location.get("url", "")).endswith("/favicon.ico")


def test_ab_on_probe_routes_sees_no_failure_while_pages_are_limited(stevedores_gunicorn_server: Callable) -> None:
    ab = shutil.which("ab") or "/usr/bin/ab"
    require_service("ab (apache2-utils)", shutil.which(ab) is not None, "install apache2-utils")
    server = stevedores_gunicorn_server(env={"RATE_LIMITS": "5 per minute", "WEB_WORKERS": "2"},
                                        ready_path="/health/live")
    probes = ["/health/live"] + (["/health/quick"] if _status(server.url + "/health/quick") != 404 else [])
    for path in probes:
        # -l: a health body's length varies (timings); ab would otherwise count that as a failure
        run = subprocess.run([ab, "-q", "-l", "-n", "1000", "-c", "10", server.url + path],
                             capture_output=True, text=True, timeout=90)
        assert run.returncode == 0, run.stderr
        assert re.search(r"Complete requests:\s+1000\b", run.stdout), run.stdout
        assert re.search(r"Failed requests:\s+0\b", run.stdout), run.stdout
        assert "Non-2xx responses" not in run.stdout, run.stdout
    pages = [_status(server.url + "/") for _ in range(8)]
    assert pages == [200] * 5 + [429] * 3  # 5 per minute for the instance, whichever worker answers


def test_chromium_loads_the_pages_without_csp_violations(stevedores_gunicorn_server: Callable) -> None:
    require_service("chromium", shutil.which(CHROMIUM) is not None, "install Debian's chromium")
    from playwright.sync_api import sync_playwright

    server = stevedores_gunicorn_server(env={"WEB_WORKERS": "1"}, ready_path="/health/live")
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text} ({m.location.get('url')})")
                    if m.type in ("error", "warning") and not _favicon(m) else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.add_init_script("document.addEventListener('securitypolicyviolation', e => "
                                 "console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));")
            page.goto(server.url + "/", wait_until="load")
            page.wait_for_timeout(300)
            links = page.eval_on_selector_all("a[href^='/']", "els => els.map(e => e.getAttribute('href'))")
            visited = ["/"]
            for href in dict.fromkeys(links):
                response = page.goto(server.url + href, wait_until="load")
                page.wait_for_timeout(300)  # let the page's scripts run and report
                if response is not None and "text/html" in response.headers.get("content-type", ""):
                    visited.append(href)
            assert not problems, f"pages {visited}: {problems}"

            # The check can fail: an inline script injected without the nonce is refused and reported.
            page.goto(server.url + "/", wait_until="load")
            page.evaluate("() => { const s = document.createElement('script');"
                          " s.textContent = 'window.injected = true'; document.body.appendChild(s); }")
            page.wait_for_timeout(100)
            assert page.evaluate("() => window.injected === undefined")
            assert any("CSP violation: script-src" in p or "Content Security Policy" in p for p in problems), problems
        finally:
            browser.close()
    assert len(set(visited)) >= 2, visited  # the landing page and at least one page it links to


