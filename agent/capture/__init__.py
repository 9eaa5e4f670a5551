"""Capture: from the scanner (or a scan-to-folder copier) to durable pages in the outbox.

Owns: the one SANE wrapper (`sane_device`, the only importer of `sane`), the scan flow of a
button press or `sohoa-agent scan` (`scan.scan_now`: disk check, profile, open the scanner,
each page written and fsynced with its sha256 before the next sheet is asked for), and the
importer of image/PDF files.
Must not: wait for OCR or the network, run pipeline stages, or talk to the broker. May import
`agent.profiles` (what a scanner needs) and `agent.outbox` (where pages go).
"""
