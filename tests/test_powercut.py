"""The power-cut layer itself (tests/powercut.py): what survives a cut is exactly what was
made durable, by the rules of fsync on files and directories. Each test first shows the
unsafe way losing data, so that the layer is known to cut, then the safe way keeping it."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from powercut import VolatileDisk, fuse_missing

from agent import storage

pytestmark = [pytest.mark.powercut]


def require_fuse() -> None:
    """Under CI a missing FUSE fails the run; elsewhere it skips with the install hint."""
    why = fuse_missing()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"power-cut tests need FUSE: {why}")
        pytest.skip(f"power-cut tests need FUSE: {why}")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[VolatileDisk]:
    require_fuse()
    d = VolatileDisk(tmp_path / "disk").mount()
    try:
        yield d
    finally:
        d.unmount()


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path: Path, data: bytes, sync: bool = False) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        if sync:
            os.fsync(fh.fileno())


def test_a_write_never_synced_is_lost_and_a_synced_one_kept(disk: VolatileDisk) -> None:
    f = disk.mnt / "f"
    write(f, b"one", sync=True)
    fsync_path(disk.mnt)
    write(f, b"two, not synced")  # O_TRUNC then write: both volatile
    assert f.read_bytes() == b"two, not synced"
    disk.cut()
    assert f.read_bytes() == b"one"
    with open(f, "r+b") as fh:  # an overwrite in place, synced this time
        fh.write(b"ONE")
        fh.flush()
        os.fsync(fh.fileno())
    disk.cut()
    assert f.read_bytes() == b"ONE"


def test_a_file_synced_but_not_its_directory_is_lost(disk: VolatileDisk) -> None:
    write(disk.mnt / "new", b"data", sync=True)
    disk.cut()
    assert not (disk.mnt / "new").exists()
    write(disk.mnt / "new", b"data", sync=True)
    fsync_path(disk.mnt)
    disk.cut()
    assert (disk.mnt / "new").read_bytes() == b"data"


def test_a_name_made_durable_without_its_data_comes_back_empty(disk: VolatileDisk) -> None:
    write(disk.mnt / "named", b"never synced")
    fsync_path(disk.mnt)
    counts = disk.cut()
    assert (disk.mnt / "named").read_bytes() == b""
    assert counts["empty_files"] == 1


def test_a_rename_without_a_directory_fsync_leaves_the_old_name(disk: VolatileDisk) -> None:
    target = disk.mnt / "state.json"
    write(target, b"old", sync=True)
    fsync_path(disk.mnt)
    tmp = disk.mnt / ".tmp-state.json"
    write(tmp, b"new", sync=True)
    os.replace(tmp, target)
    assert target.read_bytes() == b"new"
    disk.cut()
    assert target.read_bytes() == b"old"
    assert not tmp.exists()
    # The whole recipe: temp, fsync, rename, fsync the directory.
    write(tmp, b"new", sync=True)
    os.replace(tmp, target)
    fsync_path(disk.mnt)
    disk.cut()
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in disk.mnt.iterdir()) == ["state.json"]


def test_an_unlink_without_a_directory_fsync_comes_back(disk: VolatileDisk) -> None:
    write(disk.mnt / "keep", b"k", sync=True)
    fsync_path(disk.mnt)
    (disk.mnt / "keep").unlink()
    disk.cut()
    assert (disk.mnt / "keep").read_bytes() == b"k"


def test_a_new_directory_needs_its_parent_synced(disk: VolatileDisk) -> None:
    sub = disk.mnt / "a" / "b"
    sub.mkdir(parents=True)
    write(sub / "f", b"x", sync=True)
    fsync_path(sub)
    disk.cut()
    assert not (disk.mnt / "a").exists(), "a directory entry no one fsynced survived"
    sub.mkdir(parents=True)
    write(sub / "f", b"x", sync=True)
    for d in (sub, sub.parent, disk.mnt):
        fsync_path(d)
    disk.cut()
    assert (sub / "f").read_bytes() == b"x"


def test_files_present_at_mount_are_durable_and_copied_before_a_change(
    disk: VolatileDisk,
) -> None:
    write(disk.mnt / "f", b"base", sync=True)
    fsync_path(disk.mnt)
    disk.cut()  # now "f" is adopted at mount time (its durable bytes share the live file)
    with open(disk.mnt / "f", "ab") as fh:
        fh.write(b" + appended")
    assert (disk.mnt / "f").read_bytes() == b"base + appended"
    disk.cut()
    assert (disk.mnt / "f").read_bytes() == b"base"


def test_sqlite_keeps_what_it_committed_and_nothing_else(disk: VolatileDisk) -> None:
    db = disk.mnt / "db.sqlite3"
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("CREATE TABLE t (n INTEGER)")
    con.execute("BEGIN")
    con.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    con.execute("COMMIT")
    con.execute("BEGIN")
    con.execute("INSERT INTO t VALUES (-1)")  # never committed
    disk.cut()  # the connection is on the old mount: it dies with the power
    con2 = sqlite3.connect(db)
    assert con2.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con2.execute("SELECT COUNT(*), MIN(n) FROM t").fetchone() == (100, 0)
    con2.close()
    con.close()


def test_agent_storage_write_survives_a_power_cut(disk: VolatileDisk) -> None:
    """agent.storage is what every durable file on the station goes through: a file it says
    is written must survive, directories it had to create included."""
    target = disk.mnt / "batches" / "b1" / "capture" / "0001.png"
    storage.write_bytes(target, b"page one")
    storage.copy_file(target, disk.mnt / "batches" / "b2" / "capture" / "0001.png")
    disk.cut()
    assert target.read_bytes() == b"page one"
    assert (disk.mnt / "batches" / "b2" / "capture" / "0001.png").read_bytes() == b"page one"
