"""Durable files on the edge: the only way the agent writes anything that must survive.

The recipe (docs/design.md §2, docs/research/reliability.md §4.1): write a temp file in the same
directory, fsync it, ``os.replace`` it over the target, fsync the directory. A failed fsync
or rename is fatal for that file (PostgreSQL "fsyncgate", docs/research/reliability.md §4.3): the
error is
raised as :class:`StorageError` and nothing is marked stored. Temp files left by a kill are
removed at start-up by :func:`clean_stray_temps`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

from agent.errors import DiskFullError, StorageError

TEMP_PREFIX = ".tmp-"
_COPY_BLOCK = 1024 * 1024


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """Create ``path`` and any missing parents durably: each new directory's entry is made
    durable by fsyncing its parent (a file fsynced into a directory whose own name was never
    synced is lost with it at a power cut; tests/test_powercut.py)."""
    if path.is_dir():
        return
    make_dirs(path.parent)
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    fsync_dir(path.parent)


def _temp_for(target: Path) -> Path:
    return target.with_name(f"{TEMP_PREFIX}{target.name}.{os.getpid()}")


def _fail(target: Path, exc: OSError) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError("disk_full", f"writing {target}: {exc}")
    return StorageError("write_failed", f"writing {target}: {exc}")


def write_bytes(target: Path, data: bytes, *, sync_dir: bool = True) -> str:
    """Write ``data`` durably to ``target``; return its sha256 (hex). With ``sync_dir=False``
    the caller fsyncs the directory once after writing many files into it."""
    tmp = _temp_for(target)
    try:
        make_dirs(target.parent)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        if sync_dir:
            fsync_dir(target.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _fail(target, exc) from exc
    return hashlib.sha256(data).hexdigest()


def copy_file(source: Path, target: Path) -> tuple[str, int]:
    """Copy ``source`` durably to ``target``, hashing the bytes as they are written.
    Returns (sha256, size)."""
    tmp = _temp_for(target)
    digest = hashlib.sha256()
    size = 0
    try:
        make_dirs(target.parent)
        with open(source, "rb") as src, open(tmp, "wb") as dst:
            while block := src.read(_COPY_BLOCK):
                digest.update(block)
                dst.write(block)
                size += len(block)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _fail(target, exc) from exc
    return digest.hexdigest(), size


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_COPY_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def clean_stray_temps(root: Path) -> int:
    """Remove temp files a killed writer left behind. Returns how many were removed."""
    removed = 0
    if not root.exists():
        return 0
    for path in root.rglob(f"{TEMP_PREFIX}*"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if path.parent.exists():
        fsync_dir(path.parent)


def disk_free(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
