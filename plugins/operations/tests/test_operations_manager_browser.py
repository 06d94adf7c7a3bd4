"""Headless Chromium against gunicorn with every installed plugin: a manager creates a vessel call through the
form (a refused value first), edits it from the vessel page, and a clerk downloads the call's tallies as CSV."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import pytest

from stevedores.testing import require_service

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def watch(page: Any, problems: list[str], expected_status: tuple[int, ...] = ()) -> None:
    """Record console errors, page errors and HTTP errors (other than ``expected_status``) in ``problems``."""
    def console(message: Any) -> None:
        expected = any(f"status of {status} " in message.text for status in expected_status)
        if message.type in ("error", "warning") and not expected:
            problems.append(f"console {message.type}: {message.text}")

    page.on("console", console)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status} {r.url}")
            if r.status >= 400 and r.status not in expected_status else None)


def log_in(page: Any, url: str, username: str, password: str) -> None:
    page.goto(url)
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


@pytest.mark.timeout(120)
def test_a_manager_creates_and_edits_a_call_and_a_clerk_downloads_its_tallies(
        make_stevedores_app: Any, stevedores_gunicorn_server: Any, ops: Any, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    require_service("Chromium", shutil.which(CHROMIUM) is not None, f"install it at {CHROMIUM}")
    setup = make_stevedores_app(plugins=["operations"])  # same SQLite file as the server
    clerk_token = ops.add_user(setup, "clara", "clerk")
    ops.add_user(setup, "manu", "manager")
    server = stevedores_gunicorn_server(env={"WEB_WORKERS": "1"})
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
            watch(page, problems, expected_status=(422,))
            log_in(page, server.url + "/login?next=/", "manu", ops.PASSWORD)
            page.click("text=New vessel call")
            page.wait_for_url("**/vessels/new")
            page.fill("input[name=vessel_name]", "Glovis Sky")
            page.fill("input[name=shipping_line]", "Glovis")
            page.select_option("select[name=vessel_type]", "auto")
            page.select_option("select[name=operation_type]", "discharge")
            page.fill("input[name=berth]", "B2")
            page.fill("input[name=planned_start]", "2026-06-01T06:00")
            page.fill("input[name=planned_end]", "2026-06-01T04:00")  # before the start: refused
            page.fill("input[name=planned_discharge_auto]", "800")
            page.click("text=Create vessel call")
            error = page.locator("#planned_end-error")
            assert error.inner_text() == "must be after planned_start"
            assert page.input_value("input[name=vessel_name]") == "Glovis Sky"  # what was typed is kept
            assert page.input_value("input[name=planned_discharge_auto]") == "800"
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "vessel-form-refused-phone.png"), full_page=True)
            page.fill("input[name=planned_end]", "2026-06-02T04:00")
            page.click("text=Create vessel call")
            page.wait_for_selector("text=Created Glovis Sky")
            call_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
            page.click("text=Edit vessel call")
            page.screenshot(path=str(ARTIFACTS / "vessel-page-manager-phone.png"), full_page=True)
            page.fill(".edit-call input[name=berth]", "B9")
            page.click("text=Save changes")
            page.wait_for_selector("text=Saved Glovis Sky")
            assert "berth B9" in page.locator("main p.muted").first.inner_text()
            for status in ("arrived", "berthed", "operations active"):
                page.click(f"text=Mark {status}")
                page.wait_for_selector(f"#vessel-status:text('{status}')")
            for units, zone in ((12, "A1"), (3, "-1+2")):
                posted = page.request.post(server.url + "/api/tallies", headers=ops.auth(clerk_token),
                                           data={"vessel_call_id": call_id, "direction": "discharged",
                                                 "units": units, "zone": zone})
                assert posted.status == 201, posted.text()

            clerk = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, accept_downloads=True)
            watch(clerk, problems)
            log_in(clerk, server.url + f"/login?next=/vessels/{call_id}", "clara", ops.PASSWORD)
            with clerk.expect_download() as waiting:
                clerk.click("text=Download every tally (CSV)")
            download = waiting.value
            assert download.suggested_filename == f"glovis-sky-{call_id}-tallies.csv"
            saved = tmp_path / download.suggested_filename
            download.save_as(saved)
        finally:
            browser.close()
    rows = list(csv.reader(saved.open(newline="")))
    assert rows[0] == ["time", "direction", "category", "units", "zone", "shift", "clerk"]
    assert [(r[3], r[4], r[6]) for r in rows[1:]] == [("12", "A1", "clara"), ("3", "'-1+2", "clara")]
    assert problems == []
