"""Benchmarks: each runs our code and its anchor side by side and prints ratios (not part of make test)."""
