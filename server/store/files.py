"""The archive's files. Paths are made by the server from validated ids, never from names
a device sent (docs/research/reliability.md §5.3: no path traversal).

A part is received into ``<name>.partial`` by writes at offsets, then verified by re-hashing
the whole file and renamed into place. Nothing here flushes on its own: every call that
writes or renames registers what must reach the disk in a :class:`Pending` (the file's open
descriptor, the directory whose entries changed), and :meth:`Store.flush` makes all of it
durable at once — ``fdatasync`` of every file and ``fsync`` of every directory, issued in
parallel so that the file system merges them into a few journal commits (measured here: 64
small files in ~5 ms in parallel against ~190 ms one after the other). The caller
(:mod:`server.ingest`) commits a chunk's range or a part's record, and acknowledges or
receipts it, only after that flush returned.

Every mutation of the store happens inside the ingest's database write transaction
(``BEGIN IMMEDIATE``), which all workers — threads or processes — share: two workers never
write, verify or rename the same part at the same time, and nothing is ever written to a
part once its record says committed. (Before group commit this took a flock protocol.)
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial as bind
from pathlib import Path
from typing import TypeVar

from protocol.topics import check_device_id

_EXT = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/tiff": ".tif",
    "application/pdf": ".pdf",
    "text/plain; charset=utf-8": ".txt",
    "application/json": ".json",
}
_HEX = set("0123456789abcdef")
FLUSH_THREADS = 16
HASH_BLOCK = 1024 * 1024


class StoreError(Exception):
    pass


def _hex(value: str) -> str:
    if len(value) != 32 or not set(value) <= _HEX:
        raise StoreError(f"not an id: {value!r}")
    return value


_pool_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None


def _flush_pool() -> ThreadPoolExecutor:
    """One pool per process (a pool inherited through fork has no threads)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(FLUSH_THREADS, "sohoa-flush"))
        return _pool[1]


class Pending:
    """What a group of writes must flush before anything of it is committed: open file
    descriptors (kept open from the write to the flush, so that a writeback error reaches
    them) and directories whose entries changed. Always :meth:`close` it."""

    def __init__(self) -> None:
        self.files: dict[Path, int] = {}  # by the path the data now lives at
        self.dirs: set[Path] = set()
        self.uploaded: list[Path] = []  # staged parts an object store holds now
        self._lock = threading.Lock()  # safe to fill from several threads

    def add_file(self, path: Path, fd: int) -> None:
        with self._lock:
            old = self.files.pop(path, None)
            self.files[path] = fd
        if old is not None and old != fd:
            os.close(old)

    def add_dir(self, path: Path) -> None:
        with self._lock:
            self.dirs.add(path)

    def moved(self, old: Path, new: Path) -> None:
        with self._lock:
            fd = self.files.pop(old, None)
        if fd is not None:
            self.add_file(new, fd)

    def forget(self, path: Path) -> None:
        with self._lock:
            fd = self.files.pop(path, None)
        if fd is not None:
            os.close(fd)

    def __len__(self) -> int:
        return len(self.files) + len(self.dirs)

    def close(self) -> None:
        with self._lock:
            fds = list(self.files.values())
            self.files.clear()
            self.dirs.clear()
        for fd in fds:
            os.close(fd)


T = TypeVar("T")


def parallel(jobs: Sequence[Callable[[], T]]) -> list[T]:
    """Run ``jobs`` on the process's I/O threads (inline when there is one); their results
    in order. Every job has finished when this returns or raises (the first error)."""
    if len(jobs) <= 1:
        return [job() for job in jobs]
    futures = [_flush_pool().submit(job) for job in jobs]
    errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error
    return [f.result() for f in futures]


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        make_dirs(root)  # durable: a lost root would take every committed part with it

    def part_path(
        self, device_id: str, batch_id: str, page_no: int, page_id: str, part: str, media: str
    ) -> Path:
        check_device_id(device_id)
        if part not in ("archival", "text", "thumb", "capture", "words"):
            raise StoreError(f"unknown part {part!r}")
        name = f"{page_no:04d}-{_hex(page_id)}.{part}{_EXT.get(media, '.bin')}"
        return self.root / device_id / _hex(batch_id) / name

    def location(self, final: Path) -> str:
        """What the catalogue records for a part placed at ``final``: where readers find
        it (:mod:`server.store.objects` reads both kinds). Here: the absolute path."""
        return str(final)

    def committed(self, pending: Pending) -> None:
        """Called after the catalogue committed what ``pending`` flushed (the object store
        removes its staged copies; nothing to do here)."""

    @staticmethod
    def partial(final: Path) -> Path:
        return final.with_name(final.name + ".partial")

    def _ensure_dir(self, directory: Path, pending: Pending) -> None:
        """Create ``directory`` (and its parents under the root); each new entry makes its
        parent directory one to flush."""
        if directory.is_dir():
            return
        if directory == self.root or self.root not in directory.parents:
            raise StoreError(f"{directory} is outside the store")
        self._ensure_dir(directory.parent, pending)
        try:
            os.mkdir(directory, 0o750)
        except FileExistsError:
            return
        pending.add_dir(directory.parent)

    def write(
        self, final: Path, size: int, chunks: Iterable[tuple[int, bytes]], pending: Pending
    ) -> None:
        """``pwrite`` each ``(offset, data)`` into the part's partial file (created at
        ``size`` bytes if new). Not flushed: the file joins ``pending``."""
        path = self.partial(final)
        fd = pending.files.get(path)
        if fd is None:
            self._ensure_dir(path.parent, pending)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
            pending.add_file(path, fd)  # closed by pending.close(), whatever happens next
            pending.add_dir(path.parent)  # the partial may be new
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)
        for offset, data in chunks:
            if offset < 0 or offset + len(data) > size:
                raise StoreError(f"write at {offset}+{len(data)} past {size} in {path}")
            if os.pwrite(fd, data, offset) != len(data):
                raise StoreError(f"short write to {path}")

    @staticmethod
    def _hash(fd: int) -> tuple[str, int]:
        digest = hashlib.sha256()
        offset = 0
        while block := os.pread(fd, HASH_BLOCK, offset):
            digest.update(block)
            offset += len(block)
        return digest.hexdigest(), offset

    def place(self, final: Path, sha256: str, size: int, pending: Pending) -> bool:
        """Verify the part's partial file (written through :meth:`write` in this group) by
        re-hashing it and rename it to ``final``; the file and its directory join
        ``pending``. False (partial removed) when the bytes do not hash to ``sha256`` and
        size: the device must send the part again.

        A ``final`` already there for a part not committed is what a worker that died
        between its rename and its commit left: it is taken (and flushed again) when it
        hashes right, else replaced or, with no good partial, removed."""
        path = self.partial(final)
        fd = pending.files.get(path)
        if fd is None:  # not written in this group (e.g. an empty part)
            self.write(final, size, (), pending)
            fd = pending.files[path]
        if self._hash(fd) == (sha256, size):
            os.replace(path, final)
            pending.moved(path, final)
            pending.add_dir(final.parent)
            return True
        pending.forget(path)
        path.unlink(missing_ok=True)
        try:
            old = os.open(final, os.O_RDONLY)
        except FileNotFoundError:
            return False
        if self._hash(old) == (sha256, size):
            pending.add_file(final, old)
            pending.add_dir(final.parent)
            return True
        os.close(old)
        final.unlink(missing_ok=True)
        pending.add_dir(final.parent)
        return False

    def flush(self, pending: Pending) -> None:
        """Make everything in ``pending`` durable: ``fdatasync`` each file, ``fsync`` each
        directory, in parallel. Raises the first error after all calls returned."""
        jobs: list[Callable[[], None]] = [bind(os.fdatasync, fd) for fd in pending.files.values()]
        jobs += [bind(fsync_dir, d) for d in pending.dirs]
        parallel(jobs)

    def discard(self, final: Path) -> None:
        """Remove the partial file and ``final`` of a part that is NOT committed (the
        caller holds the write transaction that says so)."""
        self.partial(final).unlink(missing_ok=True)
        final.unlink(missing_ok=True)

    def discard_partial(self, final: Path) -> None:
        self.partial(final).unlink(missing_ok=True)

    # -- one-shot helpers (a write or a part flushed on its own) ------------------------------

    def write_at(self, final: Path, offset: int, data: bytes, size: int) -> bool:
        """Write ``data`` at ``offset`` of the part's partial file and flush it."""
        pending = Pending()
        try:
            self.write(final, size, ((offset, data),), pending)
            self.flush(pending)
        finally:
            pending.close()
        return True

    def finalize(self, final: Path, sha256: str, size: int) -> bool:
        """Verify the partial file, move it into place and flush. False (partial removed)
        when the bytes do not hash to ``sha256``."""
        pending = Pending()
        try:
            if not self.place(final, sha256, size, pending):
                return False
            self.flush(pending)
        finally:
            pending.close()
        return True


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents durably: each new directory's name is made
    durable by fsyncing its parent (else a power cut can drop the directory, and every
    file fsynced into it, after the catalogue committed them; tests/test_powercut.py)."""
    if path.is_dir():
        return
    make_dirs(path.parent)
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    fsync_dir(path.parent)
