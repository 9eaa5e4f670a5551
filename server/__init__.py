"""sohoa archive server: ingest, store, staff web app and API."""

__version__ = "0.1.0"  # = pyproject's version (tests/test_ops.py keeps them in step)
