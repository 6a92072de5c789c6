"""Benchmarks for Jobs (see `python -m benchmarks`)."""
