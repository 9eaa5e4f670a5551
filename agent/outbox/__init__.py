"""Outbox: the station's durable record of every batch and page until the archive receipts it.

Owns: the batch/page index (`outbox`: TinyDB behind one writer, one file per batch, counters),
durable file writes (`storage`: temp + fsync + rename + directory fsync, disk checks), and the
archive's re-scan requests as the station keeps them (`rescan`).
Must not: import any other room — capture, pipeline and uplink use it, never the reverse; never
drop a page to make room.
"""
