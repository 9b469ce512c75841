"""Benchmarks: speed measured side by side in one run (never in unit tests)."""
