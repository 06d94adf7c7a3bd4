"""stevedores.proxies: forwarded headers only from FORWARDED_ALLOW_IPS, only IP addresses and http/https."""

from __future__ import annotations

import re
from typing import Any

import pytest
from werkzeug.test import Client

from stevedores.proxies import AddressList, ForwardedHeaders


def _echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    seen = [environ["REMOTE_ADDR"], environ["wsgi.url_scheme"], environ.get("HTTP_X_FORWARDED_FOR", "-")]
    return [" ".join(seen).encode()]


def _seen(app: ForwardedHeaders, remote: str, **headers: str) -> str:
    return Client(app).get("/", headers=headers, environ_base={"REMOTE_ADDR": remote}).get_data(as_text=True)


def test_only_an_allowed_proxys_forwarding_counts_and_only_as_an_address_or_scheme() -> None:
    app = ForwardedHeaders(_echo, AddressList(allow_any=True)("127.0.0.1, 10.0.0.0/8"), hops=1)
    sent = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}
    assert _seen(app, "203.0.113.9", **sent) == "203.0.113.9 http -"  # removed, not just ignored
    assert _seen(app, "10.1.2.3", **sent) == "198.51.100.7 https 198.51.100.7"
    assert _seen(app, "::ffff:127.0.0.1", **sent).startswith("198.51.100.7 https")
    assert _seen(app, "127.0.0.1", **{"X-Forwarded-For": "x" * 8192, "X-Forwarded-Proto": "javascript"}
                 ).startswith("127.0.0.1 http ")
    assert _seen(app, "127.0.0.1", **{"X-Forwarded-For": "2001:db8::1"}).startswith("2001:db8::1 http")
    anyone = ForwardedHeaders(_echo, ("*",), hops=1)
    assert _seen(anyone, "203.0.113.9", **sent).startswith("198.51.100.7 https")
    none = ForwardedHeaders(_echo, ("*",), hops=0)
    assert _seen(none, "127.0.0.1", **sent) == "127.0.0.1 http -"


@pytest.mark.parametrize(("raw", "error"), [("*, 10.0.0.1", "* stands alone"), ("proxy.internal", "'proxy.internal'")])
def test_forwarded_allow_ips_is_checked_like_gunicorns(raw: str, error: str) -> None:
    with pytest.raises(ValueError, match=re.escape(error)):
        AddressList(allow_any=True)(raw)
    assert AddressList(allow_any=True)(" * ") == ("*",)
