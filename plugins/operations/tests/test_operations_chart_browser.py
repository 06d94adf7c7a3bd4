"""The vessel chart and the dashboard in headless Chromium at a phone's width (375 px) and a wall screen's
(2560 px): chart text at the same computed size at both, no two labels overlapping, nothing wider than the
screen. Screenshots go to test-artifacts/ for a person to look at."""

from __future__ import annotations

import re
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from stevedores_operations.domain import iso, utcnow

from stevedores.testing import require_service

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
WIDTHS = {"phone": 375, "wall": 2560}

#: Every chart label's box and computed font size, and whether any two boxes intersect.
MEASURE = """() => {
  const boxes = [...document.querySelectorAll('.chart-label')].map(e => {
    const r = e.getBoundingClientRect();
    return {text: e.textContent, left: r.left, right: r.right, top: r.top, bottom: r.bottom,
            size: getComputedStyle(e).fontSize};
  });
  const overlaps = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i], b = boxes[j];
    if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) overlaps.push([a.text, b.text]);
  }
  return {boxes, overlaps, fits: document.documentElement.scrollWidth <= window.innerWidth};
}"""

#: Dashboard cards whose content is wider than the card.
OVERFLOWING_CARDS = ("() => [...document.querySelectorAll('.call')]"
                     ".filter(c => c.scrollWidth > c.clientWidth).map(c => c.id)")


@pytest.mark.timeout(120)
def test_chart_text_keeps_its_size_and_labels_never_overlap_from_phone_to_wall_screen(
        make_stevedores_app: Any, stevedores_gunicorn_server: Any, ops: Any) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    require_service("Chromium", shutil.which(CHROMIUM) is not None, f"install it at {CHROMIUM}")
    setup = make_stevedores_app(plugins=["operations"])  # same SQLite file as the server
    clerk, manager = ops.add_user(setup, "clara", "clerk"), ops.add_user(setup, "manu", "manager")
    client = setup.test_client()
    now = utcnow()
    # Discharge and loadback ending at nearly the same total: the old end-of-line labels collided here.
    call_id = ops.make_active_call(client, manager, planned={"discharge": {"auto": 1900, "heavy": 0},
                                                              "load": {"auto": 1880, "heavy": 0}},
                                   planned_start=iso(now - timedelta(hours=12)),
                                   planned_end=iso(now - timedelta(hours=1)))
    for hours_ago, direction, units in ((9, "discharged", 600), (7, "loaded", 700), (5, "discharged", 600),
                                        (3, "loaded", 520), (0.02, "discharged", 30)):  # the last one this shift
        posted = client.post("/api/tallies", headers=ops.auth(clerk), json={
            "vessel_call_id": call_id, "direction": direction, "category": "auto", "units": units, "zone": "A1",
            "tallied_at": iso(now - timedelta(hours=hours_ago))})
        assert posted.status_code == 201, posted.json
    server = stevedores_gunicorn_server(env={"WEB_WORKERS": "1", "OPERATIONS_DASHBOARD_REFRESH_SECONDS": "2"})
    ARTIFACTS.mkdir(exist_ok=True)
    measured: dict[str, Any] = {}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for name, width in WIDTHS.items():
                page = browser.new_page(viewport={"width": width, "height": 1000})
                page.goto(server.url + f"/vessels/{call_id}")
                measured[name] = page.evaluate(MEASURE)
                page.locator(".chart-box").screenshot(path=str(ARTIFACTS / f"vessel-chart-{name}.png"))
                page.goto(server.url + "/")
                late = page.locator(f"#call-{call_id} .late").inner_text()
                page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)
                assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
                assert page.evaluate(OVERFLOWING_CARDS) == [], name
                page.close()
            # The wall screen's dashboard reloads itself, keeps its scroll position, and says how old its data is.
            page = browser.new_page(viewport={"width": 375, "height": 300})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.goto(server.url + "/")
            page.evaluate("window.scrollTo(0, 400)")
            reloaded = "() => performance.getEntriesByType('navigation')[0].type === 'reload'"
            deadline = time.monotonic() + 15
            while not page.evaluate(reloaded) and time.monotonic() < deadline:
                page.wait_for_timeout(200)
            page.wait_for_load_state()
            assert page.evaluate(reloaded)
            scrolled = page.evaluate("window.scrollY")
            age = page.locator("#data-age-words").inner_text()
        finally:
            browser.close()
    assert problems == []  # the script passed the CSP
    assert scrolled == 400
    assert re.fullmatch(r", updated \d+ s ago", age), age
    for name, found in measured.items():
        texts = [b["text"] for b in found["boxes"]]
        assert len(texts) >= 12, texts  # 5 + 5 axis labels and a legend line per direction
        assert found["overlaps"] == [], (name, found["overlaps"])
        assert found["fits"], name
    sizes = {name: {b["size"] for b in found["boxes"] if not b["text"].startswith(("discharge", "load"))}
             for name, found in measured.items()}
    assert sizes["phone"] == sizes["wall"] and len(sizes["phone"]) == 1, sizes  # the same text size at both widths
    assert any(b["text"].startswith("discharge 1,230") for b in measured["phone"]["boxes"])
    # "11 h 5 min late" or "1 d 1 h late" (how late depends on the time of day), never "665 min late"
    assert re.fullmatch(r"(\d+ d( \d{1,2} h)?|\d+ h( \d{1,2} min)?) late", late), late
