"""Re-scan requests the archive sent to this station (``Command(command="rescan")``).

They live in ``<data_dir>/rescan.json``, one entry per page (a second request for the same
page replaces the note, it does not add a line), written with
:func:`agent.outbox.storage.write_bytes`
(temp, fsync, rename, fsync dir). Why a file of its own and not a table in the outbox's
TinyDB: the service (``sohoa-agent run``) holds the outbox's process lock all day, and the
technician must be able to clear a request (``sohoa-agent rescan-done PAGE``) while it runs.
So this file has its own short ``fcntl`` lock around each read-modify-write, and readers
(``status``) need no lock at all because every write is an atomic replace.

Nothing here changes pages or batches: the technician scans the page again as a new batch,
which travels like any other; the archivist links it to the hồ sơ.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.outbox import storage

FILE = "rescan.json"
LOCK = "rescan.lock"
FORMAT = "sohoa-rescan"


@dataclass(frozen=True)
class RescanRequest:
    page_id: str
    batch_id: str
    note: str
    received_at: float  # device clock
    msg_id: str
    page_no: int | None = None  # from the outbox, when it still knows the batch
    source_name: str | None = None  # the imported file's name, for imported pages

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> RescanRequest:
        return cls(
            page_id=str(doc["page_id"]),
            batch_id=str(doc.get("batch_id", "")),
            note=str(doc.get("note", "")),
            received_at=float(doc.get("received_at", 0.0)),
            msg_id=str(doc.get("msg_id", "")),
            page_no=doc.get("page_no"),
            source_name=doc.get("source_name"),
        )


def load(data_dir: Path) -> list[RescanRequest]:
    """The pending requests, oldest first. An unreadable file is an error, not "none"."""
    try:
        text = (data_dir / FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    doc = json.loads(text)
    if doc.get("format") != FORMAT:
        raise ValueError(f"{data_dir / FILE} is not a {FORMAT} file")
    return [RescanRequest.from_doc(r) for r in doc.get("requests", [])]


@contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _save(data_dir: Path, requests: list[RescanRequest]) -> None:
    doc = {"format": FORMAT, "requests": [asdict(r) for r in requests]}
    storage.write_bytes(data_dir / FILE, json.dumps(doc, ensure_ascii=False, indent=1).encode())


def add(data_dir: Path, request: RescanRequest) -> bool:
    """Record ``request`` durably. False when this page was already asked for with the same
    note (a re-delivered command); a new note replaces the old one."""
    with _locked(data_dir):
        current = load(data_dir)
        same = [r for r in current if r.page_id == request.page_id]
        if same and same[0].note == request.note:
            return False
        kept = [r for r in current if r.page_id != request.page_id]
        _save(data_dir, [*kept, request])
    return True


def find(requests: list[RescanRequest], key: str) -> list[RescanRequest]:
    """Requests whose page id is ``key`` or starts with it (status shows 8 characters)."""
    key = key.strip().lower()
    if not key:
        return []
    return [r for r in requests if r.page_id == key or r.page_id.startswith(key)]


def remove(data_dir: Path, key: str) -> tuple[RescanRequest | None, int]:
    """Clear the request for one page (full id or an unambiguous prefix). Returns the removed
    request (None unless exactly one matched) and how many matched."""
    with _locked(data_dir):
        current = load(data_dir)
        found = find(current, key)
        if len(found) != 1:
            return None, len(found)
        _save(data_dir, [r for r in current if r.page_id != found[0].page_id])
    return found[0], 1
