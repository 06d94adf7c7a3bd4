"""Stevedores plugin: Talisman security headers and CSP, rate limits that survive Redis outages."""
