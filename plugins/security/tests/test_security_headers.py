"""Security headers on every response of the assembled app, CSP validation, HTTPS in production."""

from __future__ import annotations

import re
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest
from flask import render_template_string, request
from security_helpers import ProbePlugin, assert_security_headers, nonce_of
from stevedores_security import csp

from stevedores import ConfigError

PRODUCTION = {"FLASK_ENV": "production", "SECRET_KEY": "p" * 40}


def _url_for_rule(rule: Any) -> str:
    url = rule.rule
    for arg in rule.arguments:
        converter = rule._converters[arg].__class__.__name__  # noqa: SLF001 - test helper
        url = re.sub(rf"<[^>]*{arg}>", "1" if "Integer" in converter else "x", url)
    return url


def test_every_route_and_error_response_carries_the_headers(make_stevedores_app: Callable) -> None:
    app = make_stevedores_app(env={"RATE_LIMITS": "1000 per minute", "WEB_WORKERS": "1"},
                              extra_plugins=[("probe", ProbePlugin())])
    app.config["PROPAGATE_EXCEPTIONS"] = False  # a real 500, as in production
    client = app.test_client()
    walked = []
    for rule in app.url_map.iter_rules():
        method = "GET" if "GET" in rule.methods else "OPTIONS"
        url = _url_for_rule(rule)
        response = client.open(url, method=method)
        assert response.status_code < 500 or rule.endpoint == "probe_boom", (url, response.status_code)
        assert_security_headers(response, f"{method} {url}")
        walked.append(url)
    assert "/" in walked and "/health/live" in walked and any(u.startswith("/static/") for u in walked)
    errors = {
        404: client.get("/no/such/page"),
        405: client.delete("/probe/a"),
        500: client.get("/probe/boom"),
    }
    client.post("/probe/tally/1"), client.post("/probe/tally/2"), client.post("/probe/tally/3")
    errors[429] = client.post("/probe/tally/4")
    for status, response in errors.items():
        assert response.status_code == status
        assert_security_headers(response, f"the {status} response")
    assert "Strict-Transport-Security" not in errors[404].headers  # development: no HSTS


def test_nonce_is_fresh_per_request_and_given_to_templates(make_stevedores_app: Callable) -> None:
    app = make_stevedores_app(plugins=["security"], env={"WEB_WORKERS": "1"})
    app.add_url_rule("/nonce", "nonce", lambda: render_template_string("{{ csp_nonce() }}"))
    client = app.test_client()
    first = client.get("/").headers["Content-Security-Policy"]
    second = client.get("/").headers["Content-Security-Policy"]
    assert nonce_of(first, "script-src") and nonce_of(first, "script-src") == nonce_of(first, "style-src")
    assert nonce_of(first, "script-src") != nonce_of(second, "script-src")
    assert "'unsafe-inline' https://cdn.jsdelivr.net" in first and "img-src 'self' data: https:" in first
    response = client.get("/nonce")  # the headers are written as the response starts (TalismanHeaders)
    rendered, header = response.get_data(as_text=True), response.headers["Content-Security-Policy"]
    assert rendered and rendered == nonce_of(header, "script-src")


def test_default_policy_is_valid_and_holds_the_guides_sources() -> None:
    assert csp.validate_policy(csp.DEFAULT_POLICY) == csp.DEFAULT_POLICY
    assert csp.nonce_directives(csp.DEFAULT_POLICY) == ["script-src", "style-src"]


@pytest.mark.parametrize(("raw", "named"), [
    ('{"default-src": "\'self\'", "upgrade-insecure-requests": true}',
     "'upgrade-insecure-requests' has the value true"),
    ('{"img-src": null}', "'img-src' has the value null"),
    ('{"img-src": 5}', "'img-src' has the value 5"),
    ('{"script-src": ["\'self\'", 3]}', "'script-src' lists 3"),
    ('{"default-src": "self"}', "'default-src': keyword self must be quoted as 'self'"),
    ('{"script-src": "\'self\' nonce-abc"}', "keyword nonce-abc must be quoted"),
    ('{"style-src": "\'slef\'"}', "unknown keyword 'slef'"),
    ('{"scirpt-src": "\'self\'"}', "unknown directive 'scirpt-src' (did you mean 'script-src'?)"),
    ('{"default-src": "\'self\'; script-src *"}', "contains ';'"),
    ('{"upgrade-insecure-requests": "yes"}', "'upgrade-insecure-requests' takes no value"),
    ('{}', "no directive"),
    ('["default-src"]', "expected a JSON object"),
    ("{'default-src': 'self'}", "does not parse"),
])
def test_malformed_csp_policy_stops_start_up_naming_the_directive(
        make_stevedores_app: Callable, raw: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_stevedores_app(plugins=["security"], env={"CSP_POLICY": raw, "RATE_LIMITS": "many"})
    message = str(caught.value)
    assert "CSP_POLICY" in message and named in message, message
    assert "RATE_LIMITS" in message  # every bad setting is reported at once


def test_csp_policy_setting_replaces_the_default(make_stevedores_app: Callable) -> None:
    policy = ('{"default-src": ["\'self\'"], "connect-src": "\'self\' wss://ops.example", '
              '"upgrade-insecure-requests": ""}')
    app = make_stevedores_app(plugins=["security"], env={"CSP_POLICY": policy, "WEB_WORKERS": "1"})
    header = app.test_client().get("/").headers["Content-Security-Policy"]
    assert header.startswith("default-src 'self' 'nonce-")  # no script-src: the nonce goes to default-src
    assert "connect-src 'self' wss://ops.example" in header and "upgrade-insecure-requests" in header
    assert "cdn.jsdelivr.net" not in header


@pytest.mark.parametrize("proxies", ["0", "1"])
def test_production_redirects_to_https_but_never_probes(make_stevedores_app: Callable, proxies: str) -> None:
    app = make_stevedores_app(plugins=["security", "health"], env={
        **PRODUCTION, "TRUSTED_PROXIES": proxies, "WEB_WORKERS": "1", "CANONICAL_HOST": "ops.example.com"})
    client = app.test_client()
    http = "http://localhost"  # Flask's test client would default to PREFERRED_URL_SCHEME (https)
    plain = client.get("/?x=1", base_url=http)
    assert plain.status_code == 301 and plain.headers["Location"] == "https://ops.example.com/?x=1"
    assert_security_headers(plain, "the redirect")
    assert client.post("/", base_url=http).status_code == 308
    probe = client.get("/health/live", base_url=http)
    assert probe.status_code == 200 and "Strict-Transport-Security" not in probe.headers
    secure = client.get("/", base_url="https://localhost")
    assert secure.status_code == 200
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    forwarded = client.get("/", base_url=http,
                           headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
    if proxies == "0":  # a client cannot claim HTTPS
        assert forwarded.status_code == 301 and "Strict-Transport-Security" not in forwarded.headers
    else:  # the trusted load balancer terminated TLS
        assert forwarded.status_code == 200 and "max-age=31536000" in forwarded.headers["Strict-Transport-Security"]


@pytest.mark.parametrize("canonical", ["", "ops.example.com:8443"])
def test_the_https_redirect_never_goes_to_the_requests_host(make_stevedores_app: Callable, canonical: str) -> None:
    """The audit: Host: evil.example gave 301 https://evil.example/."""
    app = make_stevedores_app(plugins=["security"], env={**PRODUCTION, "CANONICAL_HOST": canonical, "WEB_WORKERS": "1"})
    client = app.test_client()
    for host in ("evil.example", "evil.example:443", "ops.example.com@evil.example"):
        answer = client.get("/vessels/1?next=/x", base_url="http://localhost", headers={"Host": host})
        location = answer.headers.get("Location", "")
        assert "evil" not in location, (host, location)
        if canonical:
            assert answer.status_code == 301 and location == "https://ops.example.com:8443/vessels/1?next=/x"
        else:
            assert answer.status_code == 400 and "https://" in answer.get_data(as_text=True)
    sneaky = client.get("//evil.example/%2e%2e", base_url="http://localhost")  # a path that looks like a host
    assert urlsplit(sneaky.headers.get("Location", "")).hostname in (None, "ops.example.com")


def test_security_health_check_reports_headers_from_a_real_response(make_stevedores_app: Callable) -> None:
    app = make_stevedores_app(plugins=["security"], env={"WEB_WORKERS": "1"})
    checks = {c.name: c for _p, c in app.extensions["stevedores"].health_checks}
    result = checks["security"].func()
    assert result["status"] == "healthy" and result["talisman_initialized"] and result["csp_enabled"]
    assert result["missing_headers"] == [] and checks["security"].critical
    assert not checks["rate_limiter"].critical


def test_security_health_check_fails_when_a_header_is_really_missing(make_stevedores_app: Callable) -> None:
    class Stripper:
        @staticmethod
        def strip(app_: Any) -> Any:
            def wsgi(environ: dict, start_response: Callable) -> Any:
                def start(status: str, headers: list, exc_info: Any = None) -> Any:
                    return start_response(status, [h for h in headers if h[0] != "X-Frame-Options"], exc_info)
                return app_(environ, start)
            return wsgi

    app = make_stevedores_app(plugins=["security"], env={"WEB_WORKERS": "1"})
    app.wsgi_app = Stripper.strip(app.wsgi_app)  # a broken proxy layer in front of everything
    checks = {c.name: c for _p, c in app.extensions["stevedores"].health_checks}
    result = checks["security"].func()
    assert result["status"] == "unhealthy" and result["missing_headers"] == ["X-Frame-Options"]


def test_dynamic_responses_are_never_stored_and_static_files_stay_cacheable(make_stevedores_app: Callable) -> None:
    client = make_stevedores_app(env={"WEB_WORKERS": "1"}).test_client()
    for path in ("/", "/login", "/api/summary", "/health", "/status", "/no/such/page"):
        response = client.get(path)
        assert response.headers.get("Cache-Control") == "no-store, max-age=0", (path, response.headers)
        assert response.headers.get("Pragma") == "no-cache", path
        assert response.headers.get("X-XSS-Protection") == "0", path  # OWASP: the legacy auditor off
    static = client.get("/static/stevedores.css")
    assert static.status_code == 200 and static.headers.get("ETag")
    assert "no-store" not in static.headers["Cache-Control"] and "Pragma" not in static.headers


def test_talismans_headers_are_written_as_talisman_renders_them_with_the_requests_nonce(
        make_stevedores_app: Callable) -> None:
    app = make_stevedores_app(plugins=["security"], env={"WEB_WORKERS": "1"})
    talisman = app.extensions["stevedores_security"].talisman_headers.talisman

    @app.get("/framed")
    @talisman(frame_options="SAMEORIGIN")
    def framed() -> str:  # a view with Talisman options of its own: Talisman's own handlers
        return "framed"

    client = app.test_client()
    response = client.get("/")
    nonce = nonce_of(response.headers["Content-Security-Policy"], "script-src")
    with app.test_request_context("/.no-such-view"):
        request.csp_nonce = nonce  # type: ignore[attr-defined]
        own = talisman._set_response_headers(app.response_class())
    rendered = [(name, value) for name, value in own.headers.items() if name not in ("Content-Type", "Content-Length")]
    assert len(rendered) >= 4
    for name, value in rendered:
        assert response.headers.getlist(name) == [value], name
    framed_response = client.get("/framed")
    assert framed_response.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    assert nonce_of(framed_response.headers["Content-Security-Policy"], "script-src") not in ("", nonce)
