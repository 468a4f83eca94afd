"""Benchmarks: `make bench` (python -m bench). Each prints JSON and a one-line summary."""
