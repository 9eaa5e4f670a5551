"""The outbox: the agent's durable record of every batch and page until the archive has it.

It is the source of truth on the edge (paho and Mosquitto keep messages in memory or drop
them; docs/research/reliability.md §2). Layout under the data directory::

    outbox.lock                  fcntl lock: exactly one process writes the outbox
    index.json                   TinyDB: one row per batch (small, rewritten on batch changes)
    batches/<batch_id>/batch.json  TinyDB: that batch's pages (rewritten on page changes)
    batches/<batch_id>/capture/0001.png ...   files, never blobs in TinyDB

Every TinyDB write goes through :class:`AtomicJSONStorage` (temp file, fsync, replace, fsync
dir): the stock JSONStorage rewrites in place and left 34 of 200 files unreadable after
SIGKILL, the atomic one 0 of 200 (docs/research/reliability.md §8.1). One file per batch keeps the
cost of a
page update independent of the backlog. Page files are written durably *before* the page is
recorded, so a recorded page always has its bytes; an unrecorded file is swept at start-up,
and a batch left 'scanning' by a power cut is closed with the pages it has.

The class is thread-safe (one RLock) and must be the only writer: other processes open it
read-only (``status``).

Each index row also holds the batch's page counters (:class:`BatchCounts`: pages, parts
acknowledged, bytes waiting...), so that ``status``, telemetry and the syncer read the index
and never every page (1.2 s at 50,000 pages). They live in another file than the pages, so
the rule is: **a row whose counters are not null matches its batch file.** Before a batch
file is written, its row is marked stale (``counts: null``) unless it already is; the
counters of the data just written are kept in memory (exact for this process) and written
to the row — making it clean again — with the next ``update_batch`` of that batch, at
``close``, or once the row has been stale for COUNTS_FLUSH_EVERY seconds. So a busy batch
costs two index writes per half minute, not two per page, and a crash anywhere leaves a
stale row, never a wrong one: another process (``status``) recounts a stale batch from its
file (only the batches being written), and the next writer repairs the rows at start-up.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB
from tinydb.storages import Storage

from agent.errors import StorageError
from agent.outbox import storage

INDEX_FILE = "index.json"
# The outbox's on-disk format. An outbox records the format it was written in (the index's
# `meta` table); one written by a newer agent (a higher format) is refused, never read half
# understood — after a rollback the technician is told to install the newer agent again.
# An outbox without a record predates the record and is format 1. Raise this (and migrate in
# _check_format) when the layout of index.json or batch.json changes.
OUTBOX_FORMAT = 1
BATCH_FILE = "batch.json"
LOCK_FILE = "outbox.lock"

# Batch states, in order of life.
SCANNING = "scanning"  # pages are still coming from the scanner
CLOSED = "closed"  # capture finished; pages wait for the pipeline
READY = "ready"  # every page processed; waiting to travel
DONE = "done"  # the server acknowledged every part that travels
QUARANTINED = "quarantined"  # failed too often; kept, shown in status, not retried
PENDING_STATES = (SCANNING, CLOSED, READY)

# The batch metadata key of the phông lưu trữ a batch was scanned for (chosen on the screen,
# by the long press, or from the cover sheet; the manifest carries it in its ``fonds`` field).
FONDS_KEY = "fonds"
COUNTS_FLUSH_EVERY = 30.0  # seconds a row's counters may stay stale while its batch changes

# Page states.
CAPTURED = "captured"
PROCESSED = "processed"
FAILED = "failed"  # processing failed; the capture is kept and travels as-is


class AtomicJSONStorage(Storage):
    """A TinyDB storage that never leaves a half-written file (see module docstring)."""

    def __init__(
        self,
        path: str,
        read_only: bool = False,
        on_write: Callable[[dict[str, dict[str, Any]]], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.on_write = on_write  # told the data once it is durably on disk

    def read(self) -> dict[str, dict[str, Any]] | None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            return None
        if not text:
            return None
        data: dict[str, dict[str, Any]] = json.loads(text)
        return data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        if self.read_only:
            raise StorageError("write_failed", f"{self.path} is open read-only")
        payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        storage.write_bytes(self.path, payload)
        if self.on_write is not None:
            self.on_write(data)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class PartFile:
    name: str
    file: str  # relative to the batch directory
    sha256: str
    size: int
    media_type: str
    acked: bool = False


@dataclass(frozen=True)
class PageRecord:
    batch_id: str
    page_id: str
    page_no: int
    state: str
    capture_file: str
    capture_sha256: str
    capture_size: int
    capture_media_type: str
    dpi: int
    width_px: int
    height_px: int
    colour: bool
    source_name: str | None
    parts: dict[str, PartFile]
    flags: tuple[str, ...]
    decisions: dict[str, Any]
    ocr_confidence: float | None
    error: str | None

    @classmethod
    def from_doc(cls, batch_id: str, doc: dict[str, Any]) -> PageRecord:
        parts = {name: PartFile(name=name, **p) for name, p in doc.get("parts", {}).items()}
        return cls(
            batch_id=batch_id,
            page_id=doc["page_id"],
            page_no=doc["page_no"],
            state=doc["state"],
            capture_file=doc["capture_file"],
            capture_sha256=doc["capture_sha256"],
            capture_size=doc["capture_size"],
            capture_media_type=doc.get("capture_media_type", "image/png"),
            dpi=doc.get("dpi", 0),
            width_px=doc.get("width_px", 0),
            height_px=doc.get("height_px", 0),
            colour=doc.get("colour", True),
            source_name=doc.get("source_name"),
            parts=parts,
            flags=tuple(doc.get("flags", ())),
            decisions=doc.get("decisions", {}),
            ocr_confidence=doc.get("ocr_confidence"),
            error=doc.get("error"),
        )


@dataclass(frozen=True)
class BatchRecord:
    batch_id: str
    state: str
    created_at: float
    source: str
    scanner: str | None
    profile: str | None
    page_count: int
    metadata: dict[str, str]
    attempts: int
    last_error: str | None
    secret: bool  # độ mật: never synced over a network

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> BatchRecord:
        return cls(
            batch_id=doc["batch_id"],
            state=doc["state"],
            created_at=doc["created_at"],
            source=doc.get("source", "scan"),
            scanner=doc.get("scanner"),
            profile=doc.get("profile"),
            page_count=doc.get("page_count", 0),
            metadata=doc.get("metadata", {}),
            attempts=doc.get("attempts", 0),
            last_error=doc.get("last_error"),
            secret=doc.get("secret", False),
        )


@dataclass(frozen=True)
class BatchCounts:
    """What a batch holds, counted from its pages (see the module docstring)."""

    pages: int = 0
    pages_captured: int = 0  # waiting for the pipeline
    pages_unsent: int = 0  # some travelling part not acknowledged (or no parts yet)
    parts_total: int = 0
    parts_acked: int = 0
    bytes_unsent: int = 0  # sizes of the parts not acknowledged
    captures_kept: int = 0  # captures whose file stays (the capture was not receipted)

    @classmethod
    def of_docs(cls, docs: Iterator[Mapping[str, Any]]) -> BatchCounts:
        pages = captured = unsent = total = acked = unsent_bytes = kept = 0
        for doc in docs:
            parts = doc.get("parts", {})
            pages += 1
            captured += doc["state"] == CAPTURED
            n_acked = sum(1 for p in parts.values() if p.get("acked"))
            total += len(parts)
            acked += n_acked
            unsent += not parts or n_acked < len(parts)
            unsent_bytes += sum(p["size"] for p in parts.values() if not p.get("acked"))
            kept += not parts.get("capture", {}).get("acked", False) and not doc.get(
                "capture_released"
            )
        return cls(pages, captured, unsent, total, acked, unsent_bytes, kept)


def _docs_of(data: Mapping[str, Any] | None) -> Iterator[Mapping[str, Any]]:
    """The page docs of a batch file's raw TinyDB data."""
    return iter(((data or {}).get("pages") or {}).values())


class OutboxNewer(StorageError):
    """The outbox was written by a newer agent (a higher OUTBOX_FORMAT): after a rollback."""


class OutboxLocked(StorageError):
    pass


class Outbox:
    """See the module docstring. Use as a context manager or call :meth:`close`."""

    def __init__(self, data_dir: Path, *, read_only: bool = False) -> None:
        self.root = data_dir
        self.batches_dir = data_dir / "batches"
        self.read_only = read_only
        self._lock = threading.RLock()
        self._lock_fd: int | None = None
        self._batch_dbs: dict[str, TinyDB] = {}
        self._written: dict[str, BatchCounts] = {}  # counts of batch data just written
        self._stale_since: dict[str, float] = {}  # rows this writer marked stale, and when
        self._live: dict[str, BatchCounts] = {}  # exact counts of those batches
        storage.make_dirs(self.batches_dir)
        if not read_only:
            self._take_process_lock()
            storage.clean_stray_temps(self.root)
        self._index = self._open_db(self.root / INDEX_FILE)
        self._check_format()
        if not read_only:
            self._recover()

    # -- life cycle -------------------------------------------------------------------------

    def _check_format(self) -> None:
        meta = self._index.table("meta")
        found = meta.get(doc_id=1)
        written = int(found["format"]) if found else 1
        if written > OUTBOX_FORMAT:
            self._index.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            raise OutboxNewer(
                "outbox_newer",
                f"{self.root} is outbox format {written}; this agent reads up to {OUTBOX_FORMAT}",
            )
        if found is None and not self.read_only:
            meta.insert({"format": OUTBOX_FORMAT})

    def _take_process_lock(self) -> None:
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            detail = f"{self.root} is in use by another process"
            raise OutboxLocked("outbox_locked", detail) from exc
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        # A flock lives as long as any copy of its descriptor. Children forked meanwhile (the
        # pipeline's process pool) inherit one; if this process is SIGKILLed, they live on idle
        # and would keep the outbox locked for good (every later run: outbox_locked). They
        # never write the outbox: drop their copy.
        os.register_at_fork(
            after_in_child=functools.partial(_drop_inherited_lock, weakref.ref(self))
        )

    def _recover(self) -> None:
        """After a power cut or SIGKILL mid-scan: a batch still 'scanning' has no scanner any
        more (we hold the process lock). Keep its pages and let them flow; drop it if empty;
        remove capture files written but never recorded (killed between file and record);
        recount the batches whose counters a crash left stale (or that predate them)."""
        for doc in self._index.all():
            if doc.get("counts") is None:
                counts = BatchCounts.of_docs(_docs_of(self._read_batch_file(doc["batch_id"])))
                self._index.update({"counts": asdict(counts)}, Query().batch_id == doc["batch_id"])
        for batch in self.batches((SCANNING,)):
            recorded = {p.capture_file for p in self.pages(batch.batch_id)}
            capture_dir = self.batch_dir(batch.batch_id) / "capture"
            for path in capture_dir.glob("*") if capture_dir.exists() else ():
                if f"capture/{path.name}" not in recorded:
                    path.unlink()
            if recorded:
                self.close_batch(batch.batch_id, error="interrupted")
            else:
                self.discard_empty_batch(batch.batch_id)

    def _open_db(self, path: Path) -> TinyDB:
        return TinyDB(str(path), storage=AtomicJSONStorage, read_only=self.read_only)

    def close(self) -> None:
        with self._lock:
            if not self.read_only:
                for batch_id in list(self._stale_since):
                    self._flush_counts(batch_id)
            for db in self._batch_dbs.values():
                db.close()
            self._batch_dbs.clear()
            self._index.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _batch_db(self, batch_id: str) -> TinyDB:
        db = self._batch_dbs.get(batch_id)
        if db is None:

            def written(data: dict[str, dict[str, Any]]) -> None:
                self._written[batch_id] = BatchCounts.of_docs(_docs_of(data))

            db = TinyDB(
                str(self.batch_dir(batch_id) / BATCH_FILE),
                storage=AtomicJSONStorage,
                read_only=self.read_only,
                on_write=written,
            )
            self._batch_dbs[batch_id] = db
        return db

    def _read_batch_file(self, batch_id: str) -> dict[str, Any] | None:
        return AtomicJSONStorage(str(self.batch_dir(batch_id) / BATCH_FILE), read_only=True).read()

    @contextlib.contextmanager
    def _changing_pages(self, batch_id: str) -> Iterator[None]:
        """Wrap every write of a batch file (see the module docstring). Call with the lock."""
        if batch_id not in self._stale_since:
            self._index.update({"counts": None}, Query().batch_id == batch_id)
            self._stale_since[batch_id] = time.monotonic()
        self._written.pop(batch_id, None)
        try:
            yield
        except BaseException:
            self._live.pop(batch_id, None)  # unknown now: recount from the file if asked
            raise
        counts = self._written.pop(batch_id, None)
        if counts is None:
            return
        self._live[batch_id] = counts
        if time.monotonic() - self._stale_since[batch_id] >= COUNTS_FLUSH_EVERY:
            self._flush_counts(batch_id)

    def _flush_counts(self, batch_id: str) -> None:
        """Make a stale row clean again with the counters of what was written last."""
        counts = self._live.get(batch_id)
        if counts is None:  # a write failed since: count what the file holds
            counts = BatchCounts.of_docs(_docs_of(self._read_batch_file(batch_id)))
        self._index.update({"counts": asdict(counts)}, Query().batch_id == batch_id)
        self._live.pop(batch_id, None)
        self._stale_since.pop(batch_id, None)

    # -- counters ---------------------------------------------------------------------------

    def counts(self, batch_id: str) -> BatchCounts:
        """The batch's counters from its index row; recounted from its file if stale."""
        with self._lock:
            doc = self._index.get(Query().batch_id == batch_id)
        if doc is None:
            raise KeyError(batch_id)
        return self._counts_of(dict(doc))

    def batches_with_counts(
        self, states: tuple[str, ...] | None = None
    ) -> list[tuple[BatchRecord, BatchCounts]]:
        """Every batch (oldest first) with its counters: one read of the index, plus a
        recount of a batch only when a crash left its counters stale."""
        with self._lock:
            docs = [dict(d) for d in self._index.all()]
        out = [(BatchRecord.from_doc(d), d) for d in docs]
        out = [x for x in out if states is None or x[0].state in states]
        out.sort(key=lambda x: x[0].created_at)
        return [(record, self._counts_of(doc)) for record, doc in out]

    def _counts_of(self, doc: dict[str, Any]) -> BatchCounts:
        stored = doc.get("counts")
        if isinstance(stored, dict):
            return BatchCounts(**stored)
        with self._lock:
            live = self._live.get(doc["batch_id"])
            if live is not None:
                return live
            return BatchCounts.of_docs(_docs_of(self._read_batch_file(doc["batch_id"])))

    def batch_dir(self, batch_id: str) -> Path:
        return self.batches_dir / batch_id

    # -- batches ----------------------------------------------------------------------------

    def new_batch(
        self,
        *,
        source: str,
        scanner: str | None = None,
        profile: str | None = None,
        metadata: dict[str, str] | None = None,
        secret: bool = False,
    ) -> BatchRecord:
        batch_id = uuid.uuid4().hex
        doc = {
            "batch_id": batch_id,
            "state": SCANNING,
            "created_at": time.time(),
            "source": source,
            "scanner": scanner,
            "profile": profile,
            "page_count": 0,
            "metadata": metadata or {},
            "attempts": 0,
            "last_error": None,
            "secret": secret,
            "counts": asdict(BatchCounts()),
        }
        with self._lock:
            self.batch_dir(batch_id).mkdir(parents=True, exist_ok=True)
            storage.fsync_dir(self.batches_dir)
            self._index.insert(doc)
        return BatchRecord.from_doc(doc)

    def batch(self, batch_id: str) -> BatchRecord:
        with self._lock:
            doc = self._index.get(Query().batch_id == batch_id)
        if doc is None:
            raise KeyError(batch_id)
        return BatchRecord.from_doc(dict(doc))

    def batches(self, states: tuple[str, ...] | None = None) -> list[BatchRecord]:
        with self._lock:
            docs = self._index.all()
        records = [BatchRecord.from_doc(dict(d)) for d in docs]
        if states is not None:
            records = [r for r in records if r.state in states]
        return sorted(records, key=lambda r: r.created_at)

    def update_batch(self, batch_id: str, **fields: Any) -> BatchRecord:
        with self._lock:
            if batch_id in self._live:  # the row is written anyway: make it clean too
                fields = {**fields, "counts": asdict(self._live.pop(batch_id))}
                self._stale_since.pop(batch_id, None)
            self._index.update(fields, Query().batch_id == batch_id)
        return self.batch(batch_id)

    def close_batch(self, batch_id: str, error: str | None = None) -> BatchRecord:
        """Capture is over (feeder empty, or stopped by ``error``): pages go to the pipeline."""
        with self._lock:
            count = len(self._batch_db(batch_id).table("pages"))
            return self.update_batch(batch_id, state=CLOSED, page_count=count, last_error=error)

    def discard_empty_batch(self, batch_id: str) -> None:
        with self._lock:
            if self.pages(batch_id):
                raise StorageError("write_failed", f"batch {batch_id} has pages; not discarded")
            db = self._batch_dbs.pop(batch_id, None)
            if db is not None:
                db.close()
            self._live.pop(batch_id, None)
            self._stale_since.pop(batch_id, None)
            self._index.remove(Query().batch_id == batch_id)
            storage.remove_tree(self.batch_dir(batch_id))

    # -- pages ------------------------------------------------------------------------------

    def add_capture(
        self,
        batch_id: str,
        data: bytes,
        *,
        extension: str,
        media_type: str,
        dpi: int,
        width_px: int,
        height_px: int,
        colour: bool,
        source_name: str | None = None,
    ) -> PageRecord:
        """Write one captured page durably, then record it. Returns only when both are on disk:
        the caller may then ask the scanner for the next page."""
        with self._lock:
            table = self._batch_db(batch_id).table("pages")
            page_no = len(table) + 1
            rel = f"capture/{page_no:04d}.{extension}"
            sha = storage.write_bytes(self.batch_dir(batch_id) / rel, data)
            doc = {
                "page_id": uuid.uuid4().hex,
                "page_no": page_no,
                "state": CAPTURED,
                "capture_file": rel,
                "capture_sha256": sha,
                "capture_size": len(data),
                "capture_media_type": media_type,
                "dpi": dpi,
                "width_px": width_px,
                "height_px": height_px,
                "colour": colour,
                "source_name": source_name,
                "parts": {},
                "flags": [],
                "decisions": {},
                "ocr_confidence": None,
                "error": None,
            }
            with self._changing_pages(batch_id):
                table.insert(doc)
        return PageRecord.from_doc(batch_id, doc)

    def pages(self, batch_id: str) -> list[PageRecord]:
        with self._lock:
            docs = self._batch_db(batch_id).table("pages").all()
        return sorted((PageRecord.from_doc(batch_id, dict(d)) for d in docs), key=_page_no)

    def page(self, batch_id: str, page_id: str) -> PageRecord:
        with self._lock:
            doc = self._batch_db(batch_id).table("pages").get(Query().page_id == page_id)
        if doc is None:
            raise KeyError(page_id)
        return PageRecord.from_doc(batch_id, dict(doc))

    def _update_page(self, batch_id: str, page_id: str, fields: dict[str, Any]) -> None:
        with self._lock, self._changing_pages(batch_id):
            self._batch_db(batch_id).table("pages").update(fields, Query().page_id == page_id)

    def record_processed(
        self,
        batch_id: str,
        page_id: str,
        *,
        parts: dict[str, Path],
        media_types: dict[str, str],
        flags: tuple[str, ...],
        decisions: dict[str, Any],
        ocr_confidence: float | None,
    ) -> PageRecord:
        """Move the pipeline's outputs into the batch durably, then mark the page processed."""
        stored: dict[str, dict[str, Any]] = {}
        page = self.page(batch_id, page_id)
        for name, src in parts.items():
            rel = f"{name}/{page.page_no:04d}{src.suffix}"
            sha, size = storage.copy_file(src, self.batch_dir(batch_id) / rel)
            stored[name] = {
                "file": rel,
                "sha256": sha,
                "size": size,
                "media_type": media_types[name],
                "acked": False,
            }
        with self._lock:
            self._update_page(
                batch_id,
                page_id,
                {
                    "state": PROCESSED,
                    "parts": stored,
                    "flags": list(flags),
                    "decisions": decisions,
                    "ocr_confidence": ocr_confidence,
                    "error": None,
                },
            )
        return self.page(batch_id, page_id)

    def record_failed(self, batch_id: str, page_id: str, error: str) -> None:
        with self._lock:
            self._update_page(batch_id, page_id, {"state": FAILED, "error": error})

    def mark_acked(self, batch_id: str, page_id: str, part: str, sha256: str) -> bool:
        """Record a server receipt for one part. Returns False (and changes nothing) when the
        receipt's sha256 is not the one we hold: a receipt we cannot verify deletes nothing."""
        with self._lock:
            page = self.page(batch_id, page_id)
            if part == "capture" and "capture" not in page.parts:
                return False
            held = page.parts.get(part)
            if held is None or held.sha256 != sha256:
                return False
            if held.acked:
                return True
            parts = _parts_doc(page)
            parts[part]["acked"] = True
            self._update_page(batch_id, page_id, {"parts": parts})
        return True

    def add_capture_part(self, batch_id: str, page_id: str) -> None:
        """Let the capture itself travel (``SOHOA_SYNC_MASTERS=true``)."""
        with self._lock:
            page = self.page(batch_id, page_id)
            if "capture" in page.parts:
                return
            parts = _parts_doc(page)
            parts["capture"] = {
                "file": page.capture_file,
                "sha256": page.capture_sha256,
                "size": page.capture_size,
                "media_type": page.capture_media_type,
                "acked": False,
            }
            self._update_page(batch_id, page_id, {"parts": parts})

    def release_acked_files(self, batch_id: str, *, capture_with_page: bool = False) -> int:
        """Delete local files whose part the server acknowledged. The capture file goes only
        when the capture part itself was acknowledged — or, with `capture_with_page` (the
        station's setting keep_captures = "until_page_receipted"), once every other part of
        its page (the archival page and its text) was: the capture then never travels (its
        part, if not yet receipted, is withdrawn) and the page is marked `capture_released`.
        Returns bytes freed."""
        freed = 0
        with self._lock:
            for page in self.pages(batch_id):
                for part in page.parts.values():
                    if not part.acked:
                        continue
                    path = self.batch_dir(batch_id) / part.file
                    if path.exists():
                        freed += path.stat().st_size
                        path.unlink()
                if capture_with_page:
                    freed += self._release_capture_with_page(batch_id, page)
        return freed

    def _release_capture_with_page(self, batch_id: str, page: PageRecord) -> int:
        others = [part for name, part in page.parts.items() if name != "capture"]
        capture = page.parts.get("capture")
        if not others or not all(part.acked for part in others) or (capture and capture.acked):
            return 0  # no archival page receipted yet (or the capture itself went: done above)
        path = self.batch_dir(batch_id) / page.capture_file
        size = path.stat().st_size if path.exists() else 0
        parts = {name: doc for name, doc in _parts_doc(page).items() if name != "capture"}
        # record first, then delete: a crash between leaves a file the record calls released,
        # deleted again next time; never a missing file the record says is kept
        self._update_page(batch_id, page.page_id, {"parts": parts, "capture_released": True})
        path.unlink(missing_ok=True)
        return size

    # -- queries for status ---------------------------------------------------------------------

    def iter_pending_pages(self) -> Iterator[PageRecord]:
        for batch in self.batches((CLOSED,)):
            for page in self.pages(batch.batch_id):
                if page.state == CAPTURED:
                    yield page


def _drop_inherited_lock(ref: weakref.ReferenceType[Outbox]) -> None:
    outbox = ref()
    if outbox is not None and outbox._lock_fd is not None:
        with contextlib.suppress(OSError):
            os.close(outbox._lock_fd)
        outbox._lock_fd = None


def _page_no(page: PageRecord) -> int:
    return page.page_no


def _parts_doc(page: PageRecord) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "file": p.file,
            "sha256": p.sha256,
            "size": p.size,
            "media_type": p.media_type,
            "acked": p.acked,
        }
        for name, p in page.parts.items()
    }
