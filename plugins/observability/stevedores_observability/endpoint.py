"""``GET /metrics``: the Prometheus exposition, for operators and allowed scrapers only.

Who may scrape: a request carrying the operator token (OPS_TOKEN, ``Authorization:
Bearer ...``) or coming from an address in METRICS_ALLOW (``request.remote_addr``, the
forwarded client address only when a proxy in FORWARDED_ALLOW_IPS sent the request; see
``stevedores.proxies``). Anyone else gets 401 when an operator token exists (sending it
would help), else 403. With neither OPS_TOKEN nor METRICS_ALLOW configured the route
answers 404: the metrics are not published at all rather than published to everyone.
Every refusal names the setting that would open it. In the development profile with
METRICS_ALLOW unset, loopback addresses may scrape (the development server listens on
127.0.0.1 only). The route is ``@infrastructure``: never rate limited nor redirected to HTTPS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from flask import Flask, Response, jsonify, request

from stevedores import infrastructure, is_operator
from stevedores.operator import INSECURE, THROTTLED, operator_refusal, operator_verdict
from stevedores.proxies import address_allowed, networks

if TYPE_CHECKING:
    from stevedores.plugins import Plugins

    from .sink import PrometheusSink

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Who may scrape in the development profile when METRICS_ALLOW is unset: this machine only.
LOOPBACK = ("127.0.0.0/8", "::1")
PLUGIN_STATES = ("active", "disabled", "failed")


class PluginStatusCollector:
    """``stevedores_plugin_status{plugin, status}``: 1 for each plugin's current status, 0 for the others.

    Read from the plugin manager at scrape time (it is the same in every worker), so it
    also shows plugins that failed after this plugin's start-up.
    """

    def __init__(self, plugins: Plugins) -> None:
        self.plugins = plugins

    def collect(self) -> Iterator[Any]:
        """One gauge family with a series per plugin and status."""
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily("stevedores_plugin_status",
                                   "Plugin status: 1 for the plugin's current status (active, disabled, failed).",
                                   labels=["plugin", "status"])
        for info in self.plugins.listing():
            for state in PLUGIN_STATES:
                family.add_metric([info.name, state], 1.0 if info.status == state else 0.0)
        yield family


def register_metrics_route(app: Flask, sink: PrometheusSink, plugins: Plugins, allow: tuple[str, ...],
                           ops_token_set: bool, development: bool = False) -> None:
    """Add ``GET /metrics`` to ``app``; ``development``: loopback may scrape while ``allow`` is empty."""
    allowed = networks(allow or (LOOPBACK if development else ()))
    collectors = (PluginStatusCollector(plugins),)

    def refused(status: int, error: str, hint: str) -> Any:
        response = jsonify(error=error, hint=hint)
        response.status_code = status
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="stevedores"'
        return response

    @infrastructure
    def metrics() -> Any:
        if not allowed and not ops_token_set:
            return refused(404, "/metrics is not published: neither OPS_TOKEN nor METRICS_ALLOW is set",
                           "set OPS_TOKEN (scrape with Authorization: Bearer <OPS_TOKEN>) or METRICS_ALLOW "
                           "(the scrapers' addresses, e.g. 10.0.0.0/8) to publish it")
        if not (address_allowed(request.remote_addr, allowed) or is_operator()):
            if operator_verdict() in (THROTTLED, INSECURE):  # guessing, or the token in clear text
                return operator_refusal()
            if ops_token_set:
                return refused(401, "operator token or an allowed address required",
                               "send Authorization: Bearer <OPS_TOKEN>, or add this address to METRICS_ALLOW")
            return refused(403, f"address {request.remote_addr} may not scrape /metrics",
                           "add it to METRICS_ALLOW, or set OPS_TOKEN and send Authorization: Bearer <OPS_TOKEN>")
        response = Response(sink.render(collectors), content_type=CONTENT_TYPE)
        response.headers["Cache-Control"] = "no-store"
        return response

    app.add_url_rule("/metrics", "observability_metrics", metrics, methods=["GET"])
