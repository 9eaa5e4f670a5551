"""The technician's screen: a small local web page the agent serves (loopback by default).

This room owns the page (Vietnamese first, big type, for a 7-inch touchscreen or the
workstation's browser) and its JSON: the scanner and its state, a "Quét" button beside the
physical one, thumbnails of the latest batch with each page's warnings, the mã hồ sơ typed for
the next batch, sync state in plain words, re-scan requests from the archive, disk days left.
It uses only the standard library's http.server (the agent must not import FastAPI).

It may read the outbox; it must not write it, scan, or talk to the broker itself: the daemon
hands it a `Station` (what to show, how to start a scan), so the outbox keeps one writer.
"""
