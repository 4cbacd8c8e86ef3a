"""Benchmarks: `make bench`, or `python -m bench.NAME` from the repository root."""
