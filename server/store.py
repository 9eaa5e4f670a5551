"""The archive's files. Paths are made by the server from validated ids, never from names
a device sent (reliability.md §5.3: no path traversal).

A part is received into ``<name>.partial`` by writes at offsets (each fsynced before the
chunk is recorded), then verified by re-hashing the whole file, fsynced, renamed into place
and the directory fsynced — only then is it committed in the database and receipted.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

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


class StoreError(Exception):
    pass


def _hex(value: str) -> str:
    if len(value) != 32 or not set(value) <= _HEX:
        raise StoreError(f"not an id: {value!r}")
    return value


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def part_path(
        self, device_id: str, batch_id: str, page_no: int, page_id: str, part: str, media: str
    ) -> Path:
        check_device_id(device_id)
        if part not in ("archival", "text", "thumb", "capture", "words"):
            raise StoreError(f"unknown part {part!r}")
        name = f"{page_no:04d}-{_hex(page_id)}.{part}{_EXT.get(media, '.bin')}"
        return self.root / device_id / _hex(batch_id) / name

    @staticmethod
    def partial(final: Path) -> Path:
        return final.with_name(final.name + ".partial")

    def write_at(self, final: Path, offset: int, data: bytes, size: int) -> bool:
        """Write ``data`` at ``offset`` of the part's partial file and fdatasync it. False when
        the part was finalized meanwhile (nothing written: the bytes are already archived).

        Writers hold a shared flock, :meth:`finalize` an exclusive one while it hashes and
        renames; a writer that got its lock after the rename sees that its descriptor no
        longer is the partial file and backs off, so it can never write into an archived file.
        """
        path = self.partial(final)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = -1
            if current != os.fstat(fd).st_ino:
                return False
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            written = os.pwrite(fd, data, offset)
            if written != len(data):
                raise StoreError(f"short write to {path}")
            os.fdatasync(fd)
        finally:
            os.close(fd)
        return True

    def finalize(self, final: Path, sha256: str, size: int) -> bool:
        """Verify the partial file and move it into place. False (partial removed) when the
        bytes do not hash to ``sha256``: the device must send the part again."""
        path = self.partial(final)
        if size == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # no chunk write in flight from here on
            while block := fh.read(1024 * 1024):
                digest.update(block)
            actual_size = fh.tell()
            if digest.hexdigest() != sha256 or actual_size != size:
                path.unlink(missing_ok=True)
                return False
            os.fsync(fh.fileno())
            os.replace(path, final)  # still under the lock: late writers see the rename
        dfd = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return True

    def discard_partial(self, final: Path) -> None:
        self.partial(final).unlink(missing_ok=True)
