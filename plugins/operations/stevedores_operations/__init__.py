"""Stevedores operations: vessel calls, cargo tallies and the dashboard operators open every morning."""
