"""The typed objects that plugins hand to the core through hooks.

Plugins return these from their hook implementations; the core validates them once
at start-up and composes them. None of them is consulted through a hook on the
request path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, TypeVar, runtime_checkable

WSGIApp = Callable[..., Any]
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
F = TypeVar("F", bound=Callable[..., Any])

@dataclass(frozen=True)
class StatusPanel:
    """A card on the operators' status page, drawn by the plugin that owns a health check
    from that check's latest result (see :attr:`HealthCheck.panel`).

    ``text`` is the headline (``"open"``, ``"62.5%"``), ``detail`` a muted line under it.
    With ``percent`` (0-100) the card shows a meter, whose ``warning_percent`` and
    ``critical_percent`` mark the plugin's own thresholds. The card takes the colour of
    the check's status.
    """

    title: str
    text: str
    detail: str = ""
    percent: float | None = None
    warning_percent: float | None = None
    critical_percent: float | None = None


@dataclass(frozen=True)
class HealthCheck:
    """One named health check.

    ``func`` takes no argument and returns a mapping with at least ``status``
    (``healthy``, ``degraded``, ``warning``, ``error`` or ``unhealthy``) plus any figures
    worth showing; raising is a failure. ``critical`` failures make the instance
    unhealthy (HTTP 503); non-critical ones only degrade it. ``timeout`` is in seconds.
    ``panel``, if given, turns the check's result (as the reader of the status page sees
    it, so figures may be missing) into a :class:`StatusPanel`, or None for no card.
    ``public`` names the figures anyone may see on ``/health`` (e.g.
    ``("circuit_breaker_state",)``); every other figure is shown to operators (OPS_TOKEN)
    only, and anonymous callers get ``status``, ``response_time_ms``, ``critical`` and a
    scrubbed ``error``.
    """

    name: str
    func: Callable[[], Mapping[str, Any]]
    critical: bool = False
    timeout: float = 2.0
    description: str = ""
    panel: Callable[[Mapping[str, Any]], StatusPanel | None] | None = None
    public: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"HealthCheck name must be a non-empty string, got {self.name!r}")
        if not callable(self.func):
            raise ValueError(f"HealthCheck {self.name!r}: func must be callable")
        if not (isinstance(self.timeout, (int, float)) and self.timeout > 0):
            raise ValueError(f"HealthCheck {self.name!r}: timeout must be > 0 seconds")
        if isinstance(self.public, str) or not all(isinstance(n, str) for n in self.public):
            raise ValueError(f"HealthCheck {self.name!r}: public must be a tuple of figure names")
        object.__setattr__(self, "public", tuple(self.public))


@dataclass(frozen=True)
class Middleware:
    """Request handling a plugin contributes, composed once at start-up.

    Give any of ``wsgi`` (a function that wraps a WSGI app and returns the wrapped
    one), ``before_request`` (Flask handler; returning a response short-circuits)
    and ``after_request`` (takes and returns the response). Lower ``order`` is
    outermost: its WSGI wrapper sees the request first, its before_request runs
    first and its after_request runs last. Ties break by plugin name, then name.
    ``infrastructure=False``: the before/after_request handlers do not run for
    infrastructure routes (``@infrastructure``: probes, ``/health``, ``/metrics``); the
    core asks once per request instead of each handler asking (the WSGI wrapper still
    sees every request).
    """

    name: str
    order: int = 500
    wsgi: Callable[[WSGIApp], WSGIApp] | None = None
    before_request: Callable[[], Any] | None = None
    after_request: Callable[[Any], Any] | None = None
    infrastructure: bool = True

    def __post_init__(self) -> None:
        if not (self.wsgi or self.before_request or self.after_request):
            raise ValueError(f"Middleware {self.name!r} gives neither wsgi, before_request nor after_request")


@dataclass(frozen=True)
class WorkerProposal:
    """A plugin's upper bound on the number of gunicorn workers, with its reason.

    ``figures`` are ``label -> value`` lines logged with the decision, e.g.
    ``{"Container Memory": "512MB", "Max Workers by Memory": "8"}``.
    """

    limit: int
    reason: str
    figures: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int):
            raise ValueError(f"WorkerProposal limit must be an int, got {self.limit!r}")


@dataclass(frozen=True)
class MenuLink:
    """A link a plugin offers on the landing page (``href`` is site-relative).

    ``nav=True`` also puts it in the top navigation of every page built on the core's
    ``stevedores/base.html`` (template variable ``stevedores_nav``: ``(plugin, MenuLink)``
    pairs), so that pages of different plugins link to each other without naming each
    other's routes.
    """

    title: str
    href: str
    description: str = ""
    nav: bool = False


# --- services: what one plugin offers another through ``stevedores_services`` ------------
# A plugin offering a well-known name must implement its protocol (checked at start-up,
# see SERVICE_PROTOCOLS); a consumer asks ``get_service(app, name)`` and works without it.


@runtime_checkable
class RedisService(Protocol):
    """``redis``: Redis behind a circuit breaker (the redis_resilience plugin)."""

    @property
    def configured(self) -> bool:
        """True when REDIS_URL is set."""

    @property
    def state(self) -> str:
        """The breaker: ``closed``, ``open``, ``half-open``, or ``not-configured``."""

    def call(self, fn: Callable[[Any], T], fallback: Callable[[], T], operation: str = "call") -> T:
        """``fn(redis.Redis client)`` through the breaker, or ``fallback()`` at once when Redis cannot answer."""


class StartedCall(Protocol[T_co]):
    """A Redis call begun by :meth:`DeferredRedisService.start`."""

    @property
    def fell_back(self) -> bool:
        """True when the start already gave the fallback's value (nothing was sent)."""

    def finish(self, read: Callable[[Any], T_co]) -> T_co:
        """``read(what the start's fn returned)`` through the breaker, or the fallback's value."""


@runtime_checkable
class DeferredRedisService(RedisService, Protocol):
    """A ``redis`` service that can also split a call in two, so that the caller works while Redis
    answers: ``start(fn, fallback)`` runs ``fn(client)`` now (it sends a command) and
    ``.finish(read)`` reads the answer later, on the same thread. The breaker hears one outcome per
    call (writing to a socket is not an answer) and the read timeout judges the read alone."""

    def start(self, fn: Callable[[Any], Any], fallback: Callable[[], Any], operation: str = "call") -> StartedCall[Any]:
        """Begin a call (see the class doc); ``fallback()`` is used at once when Redis cannot be tried."""


@runtime_checkable
class CacheService(Protocol):
    """``cache``: a key-value cache that keeps answering (from memory) while Redis is down.

    Values are text (bytes, ints and floats are stored as text); ``ttl`` is in seconds.
    """

    def get(self, key: str) -> str | None:
        """The value, or None when absent or expired."""

    def set(self, key: str, value: str | bytes | int | float, ttl: float | None = None) -> bool:
        """Store ``value``; False when it could not be stored."""

    def delete(self, key: str) -> bool:
        """Remove ``key``; True when it existed."""

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add ``amount`` and return the new value (``ttl`` set when the key is created)."""


@runtime_checkable
class RateLimitsService(Protocol):
    """``rate_limits``: per-client limits (the security plugin). ``spec`` is a limit string
    such as ``"30 per minute"`` (the ``limits`` library's notation); a bad one raises ValueError."""

    def limit(self, spec: str, scope: str | None = None, deduct_when: Callable[[Any], bool] | None = None,
              key: Callable[[], str] | None = None) -> Callable[[F], F]:
        """A view decorator: the view (or every view sharing ``scope``) limited per client
        (or per ``key()``); ``deduct_when(response)`` counts only some responses."""

    def hit(self, spec: str, scope: str, key: str | None = None) -> bool:
        """Count one event for ``key`` (default: the client address); True while within ``spec``."""

    def allows(self, spec: str, scope: str, key: str | None = None) -> bool:
        """True when one more event for ``key`` would stay within ``spec`` (counts nothing)."""


@runtime_checkable
class ResourcesService(Protocol):
    """``resources``: what the container may use, read from its cgroup (the memory_guard plugin)."""

    def cpus(self) -> float:
        """CPUs this process may use: the cgroup CPU quota (quota / period, not rounded),
        capped by the CPUs it may run on."""

    def memory_limit_bytes(self) -> int:
        """The memory limit in force: MEMORY_LIMIT_MB, else the cgroup's, else the host's memory."""


#: Well-known service names and the protocol their provider must implement.
SERVICE_PROTOCOLS: dict[str, type] = {"redis": RedisService, "cache": CacheService,
                                      "rate_limits": RateLimitsService, "resources": ResourcesService}
