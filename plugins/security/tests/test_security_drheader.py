"""drheader's default rules against a production-profile dashboard under real gunicorn.

The audit's pages: the dashboard, the login page (it sets the session cookie), the
operators' status page and the JSON API. The only findings accepted are the guide's own
CSP sources (see the plugin README, "Accepted drheader findings").
"""

from __future__ import annotations

from typing import Callable

import pytest

OPS_TOKEN = "o" * 40
#: The deployment guide's CSP keeps 'unsafe-inline' for browsers that predate nonces; with the
#: nonce present, current browsers ignore it. drheader's rule cannot know that.
ACCEPTED = {("Content-Security-Policy - script-src", "unsafe-inline"),
            ("Content-Security-Policy - style-src", "unsafe-inline")}


def _unaccepted(findings: list[dict]) -> list[dict]:
    return [f for f in findings if f["severity"] == "high"
            and not any((f["rule"], avoided) in ACCEPTED for avoided in f.get("avoid", []) or [""])]


@pytest.mark.timeout(90)
def test_drheader_finds_nothing_beyond_the_guides_csp(stevedores_gunicorn_server: Callable) -> None:
    from drheader import Drheader

    server = stevedores_gunicorn_server(env={"FLASK_ENV": "production", "SECRET_KEY": "d" * 40, "OPS_TOKEN": OPS_TOKEN,
                                  "TRUSTED_PROXIES": "1", "WEB_WORKERS": "1"}, ready_path="/health/live")
    # As behind the TLS-terminating proxy (127.0.0.1 is in FORWARDED_ALLOW_IPS' default).
    sent = {"X-Forwarded-Proto": "https", "Authorization": f"Bearer {OPS_TOKEN}"}
    report = {}
    for path in ("/", "/login", "/status", "/api/summary"):
        scan = Drheader(url=server.url + path, headers=sent, method="get", allow_redirects=False)
        report[path] = _unaccepted(scan.analyze())
        assert "Strict-Transport-Security" in scan.headers, path  # the scan saw the HTTPS answer
        if path == "/login":
            assert scan.cookies, "/login sets the session cookie: its flags must be scanned"
    assert report == {path: [] for path in report}, report
