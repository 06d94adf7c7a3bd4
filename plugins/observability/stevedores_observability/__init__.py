"""Stevedores observability plugin: Prometheus metrics and Sentry error reporting."""
