"""Stevedores plugin: circuit breaker, resilient Redis client and in-memory fallback."""
