"""Declared settings: every value comes from an environment variable, is typed, and
is validated before anything starts. All bad values are reported at once, by name.

Plugins declare theirs through the ``stevedores_settings`` hook; the core's own are
listed in :data:`CORE_SETTINGS`.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping
from urllib.parse import urlsplit

from .body_limit import DEFAULT_MAX_CONTENT_LENGTH
from .proxies import AddressList
from .redaction import MIN_SECRET_LENGTH, REDACTED

log = logging.getLogger("stevedores.settings")

PRODUCTION_CONFIGS = ("production", "render")
MIN_SECRET_KEY_LENGTH = 32


# --- value parsers: callables with an ``expected`` description ----------------------


class Str:
    """Any text."""

    expected = "text"

    def __call__(self, raw: str) -> str:
        return raw


class _Bounded:
    """What :class:`Int` and :class:`Float` share: parse the text, then check the optional bounds."""

    kind = "a number"

    def __init__(self, min: float | None = None, max: float | None = None) -> None:
        self.min, self.max = min, max
        bounds = [f">= {min}" if min is not None else "", f"<= {max}" if max is not None else ""]
        self.expected = " ".join([self.kind, " and ".join(b for b in bounds if b)]).strip()

    def _parse(self, raw: str, convert: Callable[[str], Any]) -> Any:
        try:
            value = convert(raw.strip())
        except ValueError:
            raise ValueError(f"expected {self.expected}") from None
        if value != value or (self.min is not None and value < self.min) or (  # value != value: NaN
            self.max is not None and value > self.max
        ):
            raise ValueError(f"expected {self.expected}")
        return value


class Int(_Bounded):
    """A whole number within optional bounds."""

    kind = "a whole number"

    def __init__(self, min: int | None = None, max: int | None = None) -> None:
        super().__init__(min, max)

    def __call__(self, raw: str) -> int:
        return self._parse(raw, int)


class Float(_Bounded):
    """A decimal number within optional bounds (NaN is refused)."""

    def __call__(self, raw: str) -> float:
        return self._parse(raw, float)


class Bool:
    """true/false, 1/0, yes/no, on/off."""

    expected = "one of 1, 0, true, false, yes, no, on, off"

    def __call__(self, raw: str) -> bool:
        word = raw.strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected {self.expected}")


class Choice:
    """One of a fixed set of words (case-insensitive)."""

    def __init__(self, *choices: str) -> None:
        self.choices = choices
        self.expected = "one of " + ", ".join(choices)

    def __call__(self, raw: str) -> str:
        word = raw.strip().lower()
        for choice in self.choices:
            if choice.lower() == word:
                return choice
        raise ValueError(f"expected {self.expected}")


class Csv:
    """A comma-separated list of names; blanks are dropped."""

    expected = "comma-separated names"

    def __call__(self, raw: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in raw.split(",") if part.strip())


def parse_rate_limits(spec: str) -> list[Any]:
    """``spec`` ('120 per minute', '5/minute; 30 per hour') as the ``limits`` library's items
    (``limits.RateLimitItem``), parsed by that library (separators ``;``, ``,`` or ``|``).

    Raises ValueError naming ``spec`` when it is not a rate limit or allows no request.
    """
    from limits import parse_many

    try:
        items = parse_many(spec)
    except ValueError:
        items = []
    if not items or any(item.amount < 1 for item in items):
        raise ValueError(f"{spec!r} is not a rate limit (e.g. '30 per minute'; each must allow at least 1)")
    return items


class RateLimit:
    """Setting parser: rate limits such as ``120 per minute`` or ``5 per minute; 30 per hour``
    (:func:`parse_rate_limits`); with ``allow_none`` the words ``none``/``off`` give ``""`` (no limit)."""

    def __init__(self, *, allow_none: bool = False) -> None:
        self.allow_none = allow_none
        self.expected = "rate limits like '120 per minute' or '5 per minute; 30 per hour'" + (
            " (or 'none')" if allow_none else "")

    def __call__(self, raw: str) -> str:
        value = raw.strip()
        if self.allow_none and value.lower() in ("none", "off"):
            return ""
        try:
            parse_rate_limits(value)
        except ValueError:
            raise ValueError(f"expected {self.expected}") from None
        return value


class Url:
    """A URL whose scheme is one of ``schemes`` and that names a host (unless file-like)."""

    def __init__(self, *schemes: str, example: str = "", needs_host: bool = True) -> None:
        self.schemes, self.needs_host = schemes, needs_host
        self.expected = "a URL starting " + " or ".join(f"{s}://" for s in schemes)
        if example:
            self.expected += f" (e.g. {example})"

    def __call__(self, raw: str) -> str:
        value = raw.strip()
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ValueError(f"expected {self.expected}") from None
        if parts.scheme.lower() not in self.schemes or (self.needs_host and not parts.hostname):
            raise ValueError(f"expected {self.expected}")
        return value


class HostName:
    """A public host name, optionally with a port (``ops.example.com``, ``ops.example.com:8443``).

    No scheme, path or credentials: it is used to build redirect URLs. Lower-cased.
    """

    expected = "a host name with an optional port, e.g. ops.example.com or ops.example.com:8443"
    _LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

    def __call__(self, raw: str) -> str:
        value = raw.strip().lower()
        host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
        labels = host.rstrip(".").split(".")
        if (not host or len(host) > 253 or not all(self._LABEL.match(label) for label in labels)
                or (port and not (port.isdigit() and 0 < int(port) < 65536))):
            raise ValueError(f"expected {self.expected}")
        return value


# --- declarations and the validated result --------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One environment variable a plugin (or the core) reads.

    ``parse`` turns the raw text into the typed value and raises ValueError with the
    expected form; ``default`` is the typed value used when the variable is unset or
    empty (None: no value). ``secret`` values are never printed or logged.
    """

    name: str
    parse: Callable[[str], Any]
    default: Any = None
    help: str = ""
    secret: bool = False

    @property
    def expected(self) -> str:
        """Human description of the accepted form, for errors and docs."""
        return getattr(self.parse, "expected", "a valid value")


@dataclass(frozen=True)
class Problem:
    """One bad setting: the variable's name and what was wrong with it."""

    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"


def as_text(value: Any) -> str:
    """A setting's value written as in the environment: ``true``/``false``, lists comma-separated,
    nothing for None (never a Python repr such as ``True`` or ``('a', 'b')``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(as_text(v) for v in value)
    return str(value)


class ConfigError(Exception):
    """Raised with every problem found, so that all are reported at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class Config(Mapping[str, Any]):
    """The validated settings: typed values, where each came from, and the profile."""

    def __init__(
        self, settings: Mapping[str, Setting], values: Mapping[str, Any], sources: Mapping[str, str],
        owners: Mapping[str, str],
    ) -> None:
        self.settings = dict(settings)
        self._values = dict(values)
        self.sources = dict(sources)
        self.owners = dict(owners)
        self.original = self  # see with_values

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def profile(self) -> str:
        """``production``, ``testing`` or ``development``."""
        return profile_of(self._values.get("FLASK_ENV"), self._values.get("FLASK_CONFIG"))

    @property
    def is_production(self) -> bool:
        """True when FLASK_ENV or FLASK_CONFIG select production."""
        return self.profile == "production"

    def secret_values(self) -> list[str]:
        """The values of secret settings (for redaction); values under MIN_SECRET_LENGTH characters are skipped."""
        return [str(self._values[n]) for n, s in self.settings.items() if s.secret and self._values.get(n)
                and len(str(self._values[n])) >= MIN_SECRET_LENGTH]

    def warn_if_secret_key_ephemeral(self) -> None:
        """Log, once, that sessions will not survive a restart (call where a server starts: the one
        place the key is used; commands that only read settings never mention it)."""
        if self.sources.get("SECRET_KEY") == "generated":
            log.warning("SECRET_KEY is not set: using an ephemeral key (sessions end on restart); "
                        "set SECRET_KEY in production")

    def display(self, name: str) -> str:
        """The value as it may be shown to a person: secrets redacted."""
        value = self._values.get(name)
        if value is None:
            return ""
        if self.settings[name].secret:
            return REDACTED
        return as_text(value)

    def with_values(self, source: str, **values: Any) -> Config:
        """A copy with ``values`` in place of the validated ones (each marked as from ``source``);
        its ``original`` is this config."""
        copy = Config(self.settings, {**self._values, **values},
                      {**self.sources, **{name: source for name in values}}, self.owners)
        copy.original = self
        return copy

    def rows(self) -> list[dict[str, str]]:
        """One row per setting for ``stevedores config``: name, value (redacted), source, plugin."""
        return [
            {"name": n, "value": self.display(n), "source": self.sources[n], "plugin": self.owners[n],
             "secret": self.settings[n].secret}
            for n in sorted(self.settings)
        ]


def profile_of(flask_env: str | None, flask_config: str | None) -> str:
    """The profile named by FLASK_ENV / FLASK_CONFIG (production wins)."""
    if flask_env == "production" or flask_config in PRODUCTION_CONFIGS:
        return "production"
    if flask_env == "testing" or flask_config == "testing":
        return "testing"
    return "development"


CORE_SETTINGS: tuple[Setting, ...] = (
    Setting("FLASK_ENV", Choice("development", "production", "testing"), "development",
            "Profile. production requires a strong SECRET_KEY and turns on HTTPS enforcement."),
    Setting("FLASK_CONFIG", Choice("development", "production", "render", "testing"), None,
            "Deployment configuration; production or render select the production profile."),
    Setting("SECRET_KEY", Str(), None,
            f"Flask secret key; at least {MIN_SECRET_KEY_LENGTH} characters in production. "
            "Development generates an ephemeral one.", secret=True),
    Setting("DATABASE_URL", Url("sqlite", "postgresql", "postgres", "postgresql+psycopg",
                                example="postgresql://user:pass@host:5432/db", needs_host=False),
            "sqlite:///instance/stevedores.sqlite3",
            "Database. SQLite file by default; PostgreSQL (psycopg 3) in production.", secret=True),
    Setting("DB_POOL_SIZE", Int(min=1, max=100), 5, "Database connections kept open per worker process."),
    Setting("DB_MAX_OVERFLOW", Int(min=0, max=100), 5, "Extra connections a worker may open under load."),
    Setting("DATABASE_CONNECT_TIMEOUT", Int(min=2, max=60), 3,
            "Seconds to open a database connection (libpq connect_timeout; libpq's minimum is 2)."),
    Setting("DATABASE_STATEMENT_TIMEOUT", Float(min=0.5, max=3600), 5.0,
            "Seconds a statement may run: PostgreSQL's statement_timeout, and the client gives up on an "
            "answer 1 s later (a frozen network); SQLite's busy timeout. Migrations are exempt."),
    Setting("DATABASE_POOL_TIMEOUT", Float(min=0.1, max=60), 2.0,
            "Seconds a request waits for a free connection of its worker's pool."),
    Setting("OPS_TOKEN", Str(), None,
            "Operators' bearer token for operator-only routes (Authorization: Bearer ...); at least "
            f"{MIN_SECRET_KEY_LENGTH} characters in production, where it is refused over plain HTTP.", secret=True),
    Setting("OPS_TOKEN_FAILURES_PER_MINUTE", Int(min=1, max=1000), 10,
            "Wrong operator tokens allowed per client address a minute; then every token from that address "
            "is refused (429) until the minute is over."),
    Setting("PORT", Int(min=1, max=65535), 8000,
            "Port gunicorn binds (on 0.0.0.0; on 127.0.0.1 in the development profile). Render and Heroku set it."),
    Setting("WEB_WORKERS", Int(min=1, max=64), None, "Requested gunicorn workers (capped by the sizing plugins)."),
    Setting("WEB_CONCURRENCY", Int(min=1, max=64), None, "Requested workers when WEB_WORKERS is unset."),
    Setting("TRUSTED_PROXIES", Int(min=0, max=5), 0,
            "Number of proxies in front of the app whose X-Forwarded-For/-Proto hops count (0: none), "
            "for requests coming from FORWARDED_ALLOW_IPS."),
    Setting("FORWARDED_ALLOW_IPS", AddressList(allow_any=True), ("127.0.0.1", "::1"),
            "Addresses of the proxies allowed to forward (gunicorn's name and convention: IPs or CIDRs, "
            "comma-separated; * for any, only where the instance is reachable through its proxy alone, "
            "as on Render). X-Forwarded-* from any other address are removed."),
    Setting("CANONICAL_HOST", HostName(), None,
            "Public host name (and port) of the dashboard. In production, plain-HTTP requests are "
            "redirected to https:// on this host; without it they get 400 (a redirect is never built "
            "from the request's Host header)."),
    Setting("MAX_CONTENT_LENGTH", Int(min=1024, max=1024**3), DEFAULT_MAX_CONTENT_LENGTH,
            "Largest request body in bytes, on every route; larger ones get 413 before they are read "
            "(declared by Content-Length, or when a chunked body passes the limit)."),
    Setting("LOG_LEVEL", Choice("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), "INFO", "Log level."),
    Setting("LOG_FILE", Str(), "logs/stevedores_dashboard.log",
            "Log file beside stderr, rotated safely across workers; 'none' for stderr only."),
    Setting("ACCESS_LOG_INFRASTRUCTURE", Bool(), False,
            "Write access-log lines for successful (status < 400) requests to infrastructure routes "
            "(health probes, /health, /metrics) too; failed ones are always logged."),
    # Measured: the access line through logging cost 13 % of worker CPU on every page (two handlers,
    # a file lock per line); buffered, a worker writes one block a second (stevedores.access_buffer).
    Setting("ACCESS_LOG_FLUSH_SECONDS", Float(min=0, max=60), 1.0,
            "Seconds an access-log line may wait in its worker's buffer before the buffer is written to stderr "
            "and LOG_FILE as one block (nginx's access_log flush=); a buffer of 64 KB, or a graceful stop, "
            "reload or recycle, writes it sooner. 1 s keeps tail -f and log shippers live to the second while "
            "a busy worker writes once a second instead of once a line; a worker killed with SIGKILL loses at "
            "most this many seconds of its access lines. 0: each line written at once, unbuffered."),
    Setting("LOG_MAX_BYTES", Int(min=1024), 10 * 1024 * 1024, "Size at which the log file rotates."),
    Setting("LOG_BACKUP_COUNT", Int(min=0, max=100), 5, "Rotated log files kept."),
    Setting("STEVEDORES_PLUGINS", Csv(), (), "Allow-list of plugin names to load (empty: all installed)."),
    Setting("STEVEDORES_DISABLE_PLUGINS", Csv(), (), "Plugin names not to load."),
    Setting("STEVEDORES_STRICT_PLUGINS", Bool(), False, "Make any plugin failure fatal at start-up."),
    Setting("PRELOAD_APP", Bool(), True, "Load the app in the gunicorn master before forking (shares memory)."),
    Setting("GUNICORN_TIMEOUT", Int(min=1), 30, "Seconds before a silent worker is killed and replaced."),
    Setting("SHUTDOWN_DRAIN_SECONDS", Float(min=0, max=300), None,
            "Seconds an instance keeps serving after SIGTERM while /health/ready answers 503 (draining), "
            "before gunicorn closes its listeners; set it >= the load balancer's health-check interval x its "
            "fall count. Unset: 5 in production, 0 in development and testing."),
    # Off by default: recycling by count cost ~2/3 of /health/quick's throughput on a 2-core machine
    # (issue 12: ~1,500 vs ~4,600 req/s); memory_guard recycles by measured memory instead.
    Setting("GUNICORN_MAX_REQUESTS", Int(min=0), 0,
            "Opt-in: requests after which a worker is recycled, with 10% jitter (0: never, the default; "
            "memory_guard recycles by memory). Each recycle forks and re-runs worker set-up."),
)


def read_config(settings: Iterable[tuple[str, Setting]], environ: Mapping[str, str]) -> Config:
    """Validate every declared setting against ``environ``.

    ``settings`` yields ``(owner, Setting)`` pairs. Raises :class:`ConfigError` listing
    every problem at once; secrets never appear in the messages.
    """
    declared: dict[str, Setting] = {}
    owners: dict[str, str] = {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems: list[Problem] = []
    for owner, setting in settings:
        declared[setting.name], owners[setting.name] = setting, owner
        raw = environ.get(setting.name, "")
        if raw.strip() == "":
            values[setting.name], sources[setting.name] = setting.default, "default"
            continue
        try:
            values[setting.name], sources[setting.name] = setting.parse(raw), "environment"
        except ValueError as exc:
            shown = REDACTED if setting.secret else repr(raw)
            problems.append(Problem(setting.name, f"{shown} is not valid: {exc}"))
    if "SECRET_KEY" in declared and "SECRET_KEY" not in {p.name for p in problems}:
        problems.extend(_check_secret_key(values, sources))
    if "OPS_TOKEN" in declared and "OPS_TOKEN" not in {p.name for p in problems}:
        problems.extend(_check_ops_token(values))
    if problems:
        raise ConfigError(problems)
    return Config(declared, values, sources, owners)


def _check_ops_token(values: dict[str, Any]) -> list[Problem]:
    """Production: an operator token, when set, is as long as a secret key must be (it opens /metrics,
    /status details and operator actions to whoever guesses it)."""
    token = (values.get("OPS_TOKEN") or "").strip()
    production = profile_of(values.get("FLASK_ENV"), values.get("FLASK_CONFIG")) == "production"
    if production and token and len(token) < MIN_SECRET_KEY_LENGTH:
        return [Problem("OPS_TOKEN", f"has {len(token)} characters; the production profile requires at least "
                                     f"{MIN_SECRET_KEY_LENGTH} (python -c 'import secrets; "
                                     "print(secrets.token_urlsafe(32))')")]
    return []


def _check_secret_key(values: dict[str, Any], sources: dict[str, str]) -> list[Problem]:
    key = values.get("SECRET_KEY")
    if profile_of(values.get("FLASK_ENV"), values.get("FLASK_CONFIG")) == "production":
        if not key or len(key) < MIN_SECRET_KEY_LENGTH:
            state = "is not set" if not key else f"has {len(key)} characters"
            return [Problem("SECRET_KEY", f"{state}; the production profile requires at least "
                                          f"{MIN_SECRET_KEY_LENGTH} characters (python -c "
                                          "'import secrets; print(secrets.token_hex(32))')")]
    elif not key:
        values["SECRET_KEY"], sources["SECRET_KEY"] = secrets.token_hex(32), "generated"
    return []
