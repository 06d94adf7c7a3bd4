"""The settings this plugin declares, and their parsers."""

from __future__ import annotations

from stevedores import AddressList, Float, Setting, Str


class SentryDsn:
    """A Sentry DSN, checked the way sentry-sdk reads it (``https://<key>@<host>/<project id>``)."""

    expected = "a Sentry DSN like https://<public key>@o0.ingest.sentry.io/<project id>"

    def __call__(self, raw: str) -> str:
        from sentry_sdk.utils import Dsn  # only imported when a DSN is configured

        value = raw.strip()
        try:
            Dsn(value)
        except ValueError as exc:  # sentry_sdk.utils.BadDsn, or a bad port; never echoes the key
            raise ValueError(f"expected {self.expected} ({_reason(exc)})") from None
        return value


def _reason(exc: ValueError) -> str:
    text = str(exc)
    return text if "@" not in text else "malformed"


SETTINGS = [
    Setting("METRICS_ALLOW", AddressList(), (),
            "Client addresses allowed to scrape /metrics without the operator token (IPs or CIDRs, "
            "comma-separated). Unset: loopback only in the development profile; elsewhere, with OPS_TOKEN "
            "unset too, /metrics answers 404."),
    Setting("METRICS_MULTIPROC_DIR", Str(), None,
            "Directory where gunicorn workers share their metrics files, owned by one gunicorn master "
            "(a second one refuses to start; its *.db files are deleted at start-up; dead workers' files are "
            "merged into archives). Default: a fresh directory per server under /dev/shm (or the temp dir)."),
    Setting("SENTRY_DSN", SentryDsn(), None,
            "Sentry DSN for error reporting. Unset: Sentry is not loaded at all.", secret=True),
    Setting("SENTRY_SAMPLE_RATE", Float(min=0.0, max=1.0), 1.0, "Share of errors sent to Sentry (0 to 1)."),
    Setting("SENTRY_TRACES_SAMPLE_RATE", Float(min=0.0, max=1.0), 0.0,
            "Share of requests traced for Sentry performance monitoring (0 to 1; 0: no tracing)."),
]
