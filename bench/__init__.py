"""Benchmarks and fault drills (run with `make bench` / `make drills`)."""
