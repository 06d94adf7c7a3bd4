"""Stevedores plugin: container-aware resources, memory-aware worker sizing, memory monitor."""
