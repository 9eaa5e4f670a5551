"""sohoa edge agent: scan, clean, OCR, and store-and-forward to the archive."""

__version__ = "0.1.0"
