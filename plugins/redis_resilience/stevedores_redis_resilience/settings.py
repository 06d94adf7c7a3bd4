"""The plugin's settings, and the REDIS_URL parser that rejects what redis-py would choke on later."""

from __future__ import annotations

from urllib.parse import urlsplit

from stevedores import Float, Int, Setting, Url

from .sentinel import EXAMPLE as SENTINEL_EXAMPLE
from .sentinel import is_sentinel_url, parse_sentinel_url

EXAMPLE_URL = "redis://:password@host:6379/0"


class RedisUrl:
    """A ``redis://`` or ``rediss://`` URL with a host, a valid port, an integer database and
    query options that redis-py accepts, or a ``redis+sentinel://`` URL (see
    :mod:`.sentinel`); anything else is a start-up error naming REDIS_URL."""

    expected = f"a URL starting redis://, rediss:// or redis+sentinel:// (e.g. {EXAMPLE_URL} or {SENTINEL_EXAMPLE})"

    def __call__(self, raw: str) -> str:
        if is_sentinel_url(raw.strip()):
            try:
                parse_sentinel_url(raw.strip())
            except ValueError as exc:
                raise ValueError(f"expected {self.expected}; {exc}") from None
            return raw.strip()
        try:
            value = Url("redis", "rediss")(raw)  # scheme, host, port
        except ValueError:
            raise ValueError(f"expected {self.expected}") from None
        path = urlsplit(value).path.strip("/")
        if path and not path.isdigit():
            raise ValueError(f"expected {self.expected}; the path must be a database number, not {path!r}")
        from redis import ConnectionPool
        from redis.exceptions import RedisError

        try:
            ConnectionPool.from_url(value).make_connection()  # builds the connection object, opens nothing
        except (TypeError, ValueError, RedisError) as exc:
            raise ValueError(f"expected {self.expected}; redis-py rejects it: {_without_secrets(exc)}") from None
        return value


def _without_secrets(exc: Exception) -> str:
    """redis-py's complaint without echoing URL parts (a password could be in them)."""
    text = str(exc)
    if "unexpected keyword argument" in text:
        return "unknown query option " + text.rsplit("argument", 1)[-1].strip()
    return text if "://" not in text and "@" not in text else type(exc).__name__


SETTINGS: tuple[Setting, ...] = (
    Setting("REDIS_URL", RedisUrl(), None,
            "Redis for cache and rate limits (rediss:// verifies TLS; redis+sentinel://host:port,host:port/service "
            "follows Sentinel failovers). Unset: in-memory only.", secret=True),
    Setting("REDIS_CONNECT_TIMEOUT_MS", Int(min=10, max=60_000), 300,
            "Milliseconds to wait for a TCP connection to Redis before the call counts as failed."),
    Setting("REDIS_READ_TIMEOUT_MS", Int(min=10, max=60_000), 300,
            "Milliseconds to wait for a Redis reply; a call slower than this counts as a failure."),
    Setting("REDIS_HEALTH_CHECK_INTERVAL", Int(min=0, max=3600), 30,
            "Seconds a pooled Redis connection may idle before it is PINGed on reuse (0: never)."),
    Setting("REDIS_BREAKER_FAILURE_THRESHOLD", Int(min=1, max=1000), 5,
            "Consecutive failed Redis calls that open the circuit breaker."),
    Setting("REDIS_BREAKER_RECOVERY_TIMEOUT", Float(min=0.1, max=86_400), 60.0,
            "Seconds the breaker stays open before it lets probe calls through (half-open), "
            "and how long half-open waits for its probes' answers before it opens again."),
    Setting("REDIS_BREAKER_HALF_OPEN_PROBES", Int(min=1, max=100), 1,
            "Calls let through to Redis while half-open; everyone else gets the fallback at once."),
    Setting("REDIS_FALLBACK_MAX_ENTRIES", Int(min=1, max=10_000_000), 10_000,
            "Most keys the in-memory fallback keeps per worker (least recently used are evicted)."),
    Setting("REDIS_FALLBACK_MAX_BYTES", Int(min=1024, max=4 * 1024 ** 3), 8 * 1024 * 1024,
            "Most bytes (keys + values + 96 per entry) the in-memory fallback keeps per worker."),
)
