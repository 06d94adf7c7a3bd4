"""/health/quick answered below Flask from the snapshot, and only when that is right."""

from __future__ import annotations

from typing import Any, Callable

from flask import Flask

from stevedores import Middleware, hookimpl


class CountsFlaskRequests:
    """A test plugin whose before_request counts the requests that reach Flask."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def stevedores_middleware(self, app: Flask) -> list[Middleware]:
        from flask import request

        return [Middleware("count", before_request=lambda: self.seen.append(request.path))]


def test_quick_is_served_from_the_snapshot_without_entering_flask(make_stevedores_app: Callable[..., Any]) -> None:
    counter = CountsFlaskRequests()
    app = make_stevedores_app(plugins=["health"], extra_plugins=[("counter", counter)],
                              env={"OPS_TOKEN": "operator-token-1"})
    client = app.test_client()
    first = client.get("/health/quick")  # no snapshot yet in this process: the Flask view runs the checks
    assert first.status_code == 200 and counter.seen == ["/health/quick"]
    fast = [client.get("/health/quick") for _ in range(3)]
    assert counter.seen == ["/health/quick"]  # answered below Flask
    for response in fast:
        body = response.get_json()
        assert response.status_code == 200 and body["cached"] is True
        assert set(body["checks"]) == set(first.json["checks"])
        assert response.headers["Cache-Control"] == "no-store" and "Age" in response.headers
        assert response.headers["Content-Length"] == str(len(response.data))
    assert client.head("/health/quick").data == b"" and counter.seen == ["/health/quick"]
    operator = client.get("/health/quick", headers={"Authorization": "Bearer operator-token-1"})
    assert operator.status_code == 200 and counter.seen == ["/health/quick", "/health/quick"]  # full details: Flask
    client.post("/health/quick")
    client.get("/health/quickly")
    assert counter.seen[2:] == ["/health/quick", "/health/quickly"]  # other methods and paths: Flask


def test_the_fast_answer_carries_the_security_headers(make_stevedores_app: Callable[..., Any]) -> None:
    app = make_stevedores_app(plugins=["health", "security"])
    client = app.test_client()
    client.get("/health/quick")
    response = client.get("/health/quick")
    for header in ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy"):
        assert header in response.headers, header
