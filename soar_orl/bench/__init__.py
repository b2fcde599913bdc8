"""Benchmarks: each prints a table comparing two ways of doing the same work, measured in one run."""
