"""REDIS_URL for Redis Sentinel: ``redis+sentinel://[[user]:password@]host:port[,host:port]/service[/db]``.

The form is the one flask-limiter and limits read (``limits.storage.RedisSentinelStorage``),
so one URL serves every consumer: a comma-separated list of sentinels, the monitored
service's name as the first path segment, an optional database number after it. As in
limits, the userinfo's username and password are sent both to the sentinels and to the
master they name.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

SCHEME = "redis+sentinel"
EXAMPLE = "redis+sentinel://:password@sentinel-1:26379,sentinel-2:26379/mymaster/0"


@dataclass(frozen=True)
class SentinelTarget:
    """Where the sentinels are and what they monitor.

    ``sentinels`` are (host, port) pairs; ``service`` is the name given to
    ``sentinel monitor``; ``db`` the database number; ``username``/``password`` the
    credentials (None when absent) for the sentinels and the master alike.
    """

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None

    def credentials(self) -> dict[str, str]:
        """``username``/``password`` keyword arguments for redis-py (only those that are set)."""
        found = {"username": self.username, "password": self.password}
        return {key: value for key, value in found.items() if value}


def is_sentinel_url(url: str | None) -> bool:
    """True for a ``redis+sentinel://`` URL (case-insensitive scheme)."""
    return bool(url) and url.split("://", 1)[0].lower() == SCHEME  # type: ignore[union-attr]


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Parse a ``redis+sentinel://`` URL; ValueError says what is wrong, never echoing the password."""
    parts = urlsplit(url)
    if parts.scheme.lower() != SCHEME:
        raise ValueError(f"expected a URL starting {SCHEME}:// (e.g. {EXAMPLE})")
    if parts.query or parts.fragment:
        raise ValueError("a sentinel URL takes no ?options or #fragment")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    sentinels = tuple(_host_port(item) for item in hostlist.split(","))
    segments = [s for s in parts.path.split("/") if s]
    if not segments:
        raise ValueError(f"the service name is missing: put it in the path (e.g. {EXAMPLE})")
    if len(segments) > 2:
        raise ValueError("the path is /service or /service/db")
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise ValueError(f"the database after the service name must be a number, not {segments[1]!r}")
        db = int(segments[1])
    return SentinelTarget(sentinels, unquote(segments[0]), db, unquote(username) or None, unquote(password) or None)


def _host_port(item: str) -> tuple[str, int]:
    host, sep, port = item.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"each sentinel is host:port (sentinels listen on 26379 by default), not {item!r}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"sentinel port must be a number from 1 to 65535, not {port!r}")
    return host.strip("[]"), int(port)
