"""``next`` after login: same-site relative paths only, whatever the encoding (issue 14)."""

from __future__ import annotations

import pytest
from stevedores_operations.redirects import safe_next

HOSTILE = [
    "/%09/evil.example/",        # the audit's case: Location //evil.example/ once the tab is dropped
    "/\t/evil.example/",         # the same, decoded once
    "/%2509/evil.example/",      # encoded twice
    "//evil.example", "///evil.example", "/\\evil.example", "/%5Cevil.example", "/%255Cevil.example",
    "\\\\evil.example", "%2F%2Fevil.example", "/%2F/evil.example", "/%252F/evil.example",
    "https:evil.example", "https://evil.example/", "http:/evil.example", "javascript:alert(1)",
    "JaVaScRiPt:alert(1)", "data:text/html,x", "evil.example", "", " //evil.example", "\n//evil.example",
    "/\r\nSet-Cookie: x=1", "/%0d%0aSet-Cookie:%20x=1", "/%0aLocation:x", "/\x00", "/%00",
    "/\u2028//evil.example", "/\u00a0/evil.example", "/\u200b/evil.example", "/\ud800",
    "/%25252525252F", "/" + "a" * 3000, None, 42, ["/"],
]
SAFE = ["/", "/vessels/3", "/vessels/3?tab=tallies#chart", "/api/vessel-calls?status=arrived",
        "/vessels/3%20b", "/caf%C3%A9", "/café"]


@pytest.mark.parametrize("target", HOSTILE)
def test_hostile_targets_fall_back_to_the_dashboard(target: object) -> None:
    assert safe_next(target) == "/"


@pytest.mark.parametrize("target", SAFE)
def test_same_site_paths_are_kept(target: str) -> None:
    assert safe_next(target) == target


def test_the_default_is_the_callers() -> None:
    assert safe_next("//evil.example", default="/vessels/1") == "/vessels/1"


@pytest.mark.parametrize("target", ["/%09/evil.example/", "//evil.example", "/\\evil.example", "https:evil.example"])
def test_login_never_redirects_off_site(ops_app: object, tokens: dict, ops: object, target: str) -> None:
    import re

    client = ops_app.test_client()  # type: ignore[attr-defined]
    page = client.get("/login", query_string={"next": target})
    csrf = re.search(rb'name="csrf_token" value="([^"]+)"', page.data).group(1).decode()
    answer = client.post("/login", data={"username": "clara", "password": ops.PASSWORD,  # type: ignore[attr-defined]
                                         "csrf_token": csrf, "next": target})
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
