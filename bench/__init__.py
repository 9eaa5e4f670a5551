"""Benchmarks (not tests): `python -m bench NAME`. Results are written up in docs/benchmarks.md."""
