"""A real headless Chromium against gunicorn with every installed plugin: log in, post a tally through the page,
see the progress change, no console or CSP error, and nothing wider than a phone screen."""

from __future__ import annotations

import re
import shutil
from importlib.metadata import entry_points
from typing import Any

import pytest

from stevedores.testing import require_service

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_a_clerk_posts_a_tally_from_a_phone(make_stevedores_app: Any, stevedores_gunicorn_server: Any,
                                            ops: Any) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    require_service("Chromium", shutil.which(CHROMIUM) is not None, f"install it at {CHROMIUM}")
    setup = make_stevedores_app(plugins=["operations"])  # same SQLite file as the server
    ops.add_user(setup, "clara", "clerk")
    manager = ops.add_user(setup, "manu", "manager")
    call_id = ops.make_active_call(setup.test_client(), manager)
    server = stevedores_gunicorn_server(env={"WEB_WORKERS": "2"})
    problems: list[str] = []
    pages: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in (
                "error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("response", lambda r: problems.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
            response = page.goto(server.url + f"/login?next=/vessels/{call_id}")
            headers = response.headers
            page.fill("input[name=username]", "clara")
            page.fill("input[name=password]", ops.PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"**/vessels/{call_id}")
            line = page.locator('tr[data-line="discharge-auto"] td.tallied')
            assert line.inner_text() == "0 / 100"
            page.select_option("select[name=direction]", "discharged")
            page.select_option("select[name=category]", "auto")
            page.fill("input[name=units]", "7")
            page.fill("input[name=zone]", "A1")
            page.click("text=Record tally")
            page.wait_for_selector("text=Tallied 7 auto discharged in zone A1")
            assert line.inner_text() == "7 / 100"
            pages.append(page.content())
            assert page.locator(".chart svg polyline").count() >= 1
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            page.goto(server.url + "/")
            assert page.locator(f"#call-{call_id} .percent").inner_text() == "4%"  # 7 of 160
            pages.append(page.content())
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        finally:
            browser.close()
    assert problems == []
    installed = {ep.name for ep in entry_points(group="stevedores")}
    assert "content-security-policy" in headers or "security" not in installed  # the security plugin's CSP applied
    for html in pages:  # nothing a strict CSP (script-src 'self' + nonce, no inline style) would block
        # Scripts only as same-origin files, no inline script or style.
        assert re.findall(r"<script[^>]*>", html) in ([], ['<script src="/operations/static/dashboard.js" defer="">'])
        assert "</script>" not in html.replace('dashboard.js" defer=""></script>', "")
        assert " style=" not in html and "<style" not in html
