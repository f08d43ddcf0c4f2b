"""The benchmark fixtures, shared by every benchmark module of this folder (one sample per size, one results
table for the whole session): see bench_fixtures.py."""

from bench_fixtures import sample, table  # noqa: F401 (pytest fixtures)
