"""Stevedores plugin: /health, /health/quick, probes and the operators' status page."""
