"""Client addresses and schemes behind proxies: X-Forwarded-* honoured only from the proxy's own
addresses, and only as many hops as there are proxies.

Two settings, as gunicorn names them: ``FORWARDED_ALLOW_IPS`` (gunicorn's own variable and
convention: comma-separated IPs or CIDR networks, ``*`` for any; default ``127.0.0.1,::1``
as gunicorn's) says *who* may forward; ``TRUSTED_PROXIES`` says *how many* hops of
X-Forwarded-For/-Proto count (werkzeug's ProxyFix does the arithmetic). A request whose
REMOTE_ADDR is not an allowed proxy has its X-Forwarded-* and Forwarded headers removed
before anything reads them: gunicorn binds 0.0.0.0, and a client reaching it directly must
not pick its own address (rate limits, METRICS_ALLOW) or scheme. A forwarded client address
that is not an IP address (an 8 KB "address" would become an 8 KB rate-limit key) and a
scheme other than http/https are ignored: the proxy's own values stay.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any, Callable, Iterable

from werkzeug.middleware.proxy_fix import ProxyFix

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
ANY = "*"
#: WSGI keys of the forwarding headers; removed from requests that no allowed proxy sent.
FORWARDED_KEYS = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
                  "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX")
SCHEMES = ("http", "https")


class AddressList:
    """Setting parser: comma-separated IP addresses and CIDR networks (``10.0.0.0/8, 127.0.0.1, ::1``).

    With ``allow_any``, ``*`` alone means every address (gunicorn's FORWARDED_ALLOW_IPS
    convention). Returns the normalised texts, e.g. ``("10.0.0.0/8", "127.0.0.1")``; raises
    ValueError naming the bad part.
    """

    def __init__(self, *, allow_any: bool = False) -> None:
        self.allow_any = allow_any
        self.expected = "comma-separated IP addresses or CIDR networks (e.g. 10.0.0.0/8,127.0.0.1)"
        if allow_any:
            self.expected += ", or * for any"

    def __call__(self, raw: str) -> tuple[str, ...]:
        parts = [p.strip() for p in raw.split(",") if p.strip()]
        if self.allow_any and ANY in parts:
            if len(parts) > 1:
                raise ValueError(f"* stands alone (any address); expected {self.expected}")
            return (ANY,)
        out = []
        for part in parts:
            try:
                network = ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address or network; expected {self.expected}") from None
            single = network.num_addresses == 1 and "/" not in part
            out.append(str(network.network_address) if single else str(network))
        return tuple(out)


def networks(allowed: Iterable[str]) -> tuple[IPNetwork, ...]:
    """The parsed networks of an :class:`AddressList` value (``*`` is not a network: check it first)."""
    return tuple(ipaddress.ip_network(n, strict=False) for n in allowed if n != ANY)


def parse_address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address (an IPv4-mapped IPv6 one as IPv4, a zone index dropped), or None if ``text`` is not one."""
    if not text or len(text) > 64:  # the longest IPv6 text with a zone is well under 64 characters
        return None
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_address(text: str | None) -> bool:
    """``parse_address(text) is not None``, remembered for the addresses seen lately: parsing one cost
    ~2 % of a cached JSON response's CPU in-process (cProfile), for the same few clients again and again.
    Text longer than any address (which ``parse_address`` refuses) is answered without being kept."""
    return bool(text) and len(text) <= 64 and _known_address(text)  # type: ignore[arg-type]


@lru_cache(maxsize=4096)
def _known_address(text: str) -> bool:
    return parse_address(text) is not None


def address_allowed(remote_addr: str | None, allowed: tuple[IPNetwork, ...]) -> bool:
    """True when ``remote_addr`` is an IP address lying in one of the ``allowed`` networks."""
    address = parse_address(remote_addr)
    return address is not None and any(address in network for network in allowed)


class ForwardedHeaders:
    """WSGI middleware, outermost: ProxyFix for requests from an allowed proxy, nothing forwarded otherwise.

    ``allowed``: the FORWARDED_ALLOW_IPS value (``("*",)`` for any); ``hops``: TRUSTED_PROXIES
    (0: no forwarded header is ever honoured). X-Forwarded-Host/-Port are never honoured:
    many proxies pass a client's own through untouched, and they would steer redirects.
    """

    def __init__(self, wsgi_app: Callable[..., Any], allowed: tuple[str, ...], hops: int) -> None:
        self.app = wsgi_app
        self.any_proxy = ANY in allowed
        allowed_networks = networks(allowed)
        # Proxies are few: remember the verdict per REMOTE_ADDR instead of parsing it per request.
        self.from_proxy = lru_cache(maxsize=256)(lambda addr: address_allowed(addr, allowed_networks))
        self.proxy_fix = ProxyFix(self._checked, x_for=hops, x_proto=hops, x_host=0, x_port=0) if hops else None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.proxy_fix is not None and (self.any_proxy or self.from_proxy(environ.get("REMOTE_ADDR"))):
            return self.proxy_fix(environ, start_response)
        for key in FORWARDED_KEYS:
            environ.pop(key, None)
        return self.app(environ, start_response)

    def _checked(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """After ProxyFix: a forwarded value that is not an IP address (or http/https) is ignored."""
        original = environ.get("werkzeug.proxy_fix.orig", {})
        if not _is_address(environ.get("REMOTE_ADDR")):
            environ["REMOTE_ADDR"] = original.get("REMOTE_ADDR")
        if environ.get("wsgi.url_scheme") not in SCHEMES:
            environ["wsgi.url_scheme"] = original.get("wsgi.url_scheme", "http")
        return self.app(environ, start_response)
