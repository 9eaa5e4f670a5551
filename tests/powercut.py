"""A disk that loses power: a FUSE layer that keeps what was written but not made durable in
a volatile state and throws it away on a simulated power cut (the semantics of LazyFS).

A SIGKILL is not a power cut (docs/design.md §2): the kernel's page cache survives a killed process.
This layer makes the difference visible. Everything written through the mount reaches a
backing directory (``live/``) at once, so running processes see an ordinary file system; what
would survive a power cut is kept beside it (``store/``) and only changes when a process asks
for durability:

- ``fsync``/``fdatasync`` of a file (or any write to a file opened ``O_SYNC``/``O_DSYNC``)
  copies that file's bytes to the store. Its name is NOT made durable by this.
- ``fsync`` of a directory records that directory's entries as they are now: names created,
  renamed in or out, or unlinked since become durable. Entries are bound to the file (the
  inode), not to its name, so a file fsynced under a temp name and renamed survives under the
  new name only once the directory is fsynced.
- Files and directories present when the layer is mounted are durable as they are.

:meth:`VolatileDisk.cut` is the power cut: the FUSE daemon is killed (SIGKILL: nothing it
held is flushed), the mount is torn down, and ``live/`` is rebuilt from the store alone,
starting at the root: a directory whose entries were never fsynced comes back empty, a file
whose name is durable but whose data never was comes back empty (the harshest of what real
file systems do), a file whose data was synced but whose name never was is gone. Then the
layer is mounted again over the rebuilt tree.

Not modelled (documented, not hidden): metadata (mode, times) is always durable; hard links
are refused (``EPERM``); writes are never torn inside one ``write`` call; the store keeps
whole files, so a file synced, then partly rewritten, comes back as it was at its last fsync,
never as a mix. Processes on the mount see its errors (``ENOTCONN``) if they outlive the
daemon: stop them first, as a power cut would.

Run as a daemon: ``python tests/powercut.py serve LIVE STORE MOUNTPOINT`` (foreground,
multi-threaded); tests use :class:`VolatileDisk`, which starts and cuts it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT_ID = 0
_BLOCK = 1024 * 1024
FUSERMOUNT = "fusermount3"


def fuse_missing() -> str | None:
    """Why a FUSE mount cannot be made here, or None when it can."""
    if not Path("/dev/fuse").exists():
        return "/dev/fuse is missing"
    if shutil.which(FUSERMOUNT) is None:
        return f"{FUSERMOUNT} is missing (apt install fuse3)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError, EnvironmentError) as exc:  # noqa: UP024 - mfusepy raises it
        return f"mfusepy cannot load libfuse: {exc} (apt install libfuse3-3; pip install mfusepy)"
    return None


# -- the durable store ----------------------------------------------------------------------


class Store:
    """What would survive a power cut: ``data/<id>`` (a file's bytes at its last fsync) and
    ``dirs/<id>.json`` (a directory's entries at its last fsync: name -> [kind, id], kind
    ``f`` file, ``d`` directory, ``l`` symlink with its target). The host does not lose
    power during a test, so the store itself needs no fsync: atomic renames suffice."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.dirs = root / "dirs"
        self.data.mkdir(parents=True, exist_ok=True)
        self.dirs.mkdir(parents=True, exist_ok=True)

    def put_data_from_fd(self, ident: int, fd: int) -> None:
        tmp = self.data / f"{ident}.tmp"
        with open(tmp, "wb") as out:
            offset = 0
            while block := os.pread(fd, _BLOCK, offset):
                out.write(block)
                offset += len(block)
        os.replace(tmp, self.data / str(ident))

    def share_data(self, ident: int, live: Path) -> None:
        """Make ``live``'s current bytes durable without copying: a hard link, broken
        (copied) before the live file is first changed (:meth:`VolatileFS._before_change`)."""
        target = self.data / str(ident)
        target.unlink(missing_ok=True)
        os.link(live, target)

    def put_dir(self, ident: int, entries: dict[str, list[Any]]) -> None:
        tmp = self.dirs / f"{ident}.tmp"
        tmp.write_text(json.dumps(entries))
        os.replace(tmp, self.dirs / f"{ident}.json")

    def dir_entries(self, ident: int) -> dict[str, list[Any]]:
        path = self.dirs / f"{ident}.json"
        if not path.exists():
            return {}
        return json.loads(path.read_text())  # type: ignore[no-any-return]


def restore(store_root: Path, live: Path) -> dict[str, int]:
    """Rebuild ``live`` from what the store says survived; the store is consumed. Returns
    counts of what came back (files, empty files, directories)."""
    store = Store(store_root)
    shutil.rmtree(live, ignore_errors=True)
    live.mkdir(parents=True)
    counts = {"files": 0, "empty_files": 0, "dirs": 0}
    placed: dict[int, Path] = {}
    seen_dirs: set[int] = set()

    def build(dir_id: int, at: Path) -> None:
        if dir_id in seen_dirs:  # an old table may name a directory twice: keep the first
            return
        seen_dirs.add(dir_id)
        for name, entry in sorted(store.dir_entries(dir_id).items()):
            kind, ident = entry[0], int(entry[1])
            path = at / name
            if kind == "d":
                path.mkdir()
                counts["dirs"] += 1
                build(ident, path)
            elif kind == "l":
                os.symlink(entry[2], path)
            else:
                data = store.data / str(ident)
                if ident in placed:  # one file under two durable names (renamed between
                    shutil.copyfile(placed[ident], path)  # two directories' fsyncs)
                elif data.exists():
                    os.rename(data, path)
                    placed[ident] = path
                else:
                    path.touch()
                    counts["empty_files"] += 1
                counts["files"] += 1

    build(ROOT_ID, live)
    shutil.rmtree(store_root, ignore_errors=True)
    return counts


# -- the FUSE daemon ------------------------------------------------------------------------


def _serve(live: Path, store_root: Path, mountpoint: Path) -> None:
    import mfusepy
    from mfusepy import FuseOSError

    class VolatileFS(mfusepy.Operations):  # type: ignore[misc]
        use_ns = True

        def __init__(self) -> None:
            self.live = live
            self.store = Store(store_root)
            self.mutex = threading.RLock()
            self.ids: dict[int, int] = {}  # live st_ino -> id (stable across renames)
            self.next_id = ROOT_ID + 1
            self.shared: set[int] = set()  # ids whose durable data is a link to the live file
            self.handles: dict[int, tuple[int, bool]] = {}  # fd -> (id, O_SYNC)
            self._adopt()

        # identities

        def _real(self, path: str) -> str:
            return str(self.live) + path

        def _id_of_ino(self, ino: int) -> int:
            ident = self.ids.get(ino)
            if ident is None:
                ident = self.next_id
                self.next_id += 1
                self.ids[ino] = ident
            return ident

        def _adopt(self) -> None:
            """Everything in ``live`` at mount time is durable as it is."""
            self.ids[os.lstat(self.live).st_ino] = ROOT_ID
            for dirpath, dirnames, filenames in os.walk(self.live):
                for name in filenames:
                    path = Path(dirpath) / name
                    st = os.lstat(path)
                    if stat.S_ISREG(st.st_mode):
                        ident = self._id_of_ino(st.st_ino)
                        self.store.share_data(ident, path)
                        self.shared.add(ident)
                for name in dirnames:
                    self._id_of_ino(os.lstat(Path(dirpath) / name).st_ino)
                self._sync_dir(dirpath)

        def _sync_dir(self, real: str) -> None:
            entries: dict[str, list[Any]] = {}
            with os.scandir(real) as it:
                for entry in it:
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        entries[entry.name] = ["d", self._id_of_ino(st.st_ino)]
                    elif stat.S_ISLNK(st.st_mode):
                        target = os.readlink(entry.path)
                        entries[entry.name] = ["l", self._id_of_ino(st.st_ino), target]
                    elif stat.S_ISREG(st.st_mode):
                        entries[entry.name] = ["f", self._id_of_ino(st.st_ino)]
            self.store.put_dir(self._id_of_ino(os.lstat(real).st_ino), entries)

        def _before_change(
            self, ident: int, real: str | None = None, fd: int | None = None
        ) -> None:
            """Copy-on-write of data that is durable by a link to the live file."""
            if ident not in self.shared:
                return
            self.shared.discard(ident)
            if fd is None:
                assert real is not None
                fd2 = os.open(real, os.O_RDONLY)
                try:
                    self.store.put_data_from_fd(ident, fd2)
                finally:
                    os.close(fd2)
            else:
                self.store.put_data_from_fd(ident, fd)

        def _persist(self, fd: int) -> None:
            ident = self.handles[fd][0]
            self.shared.discard(ident)
            self.store.put_data_from_fd(ident, fd)

        # metadata

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            try:
                st = os.fstat(fh) if fh is not None else os.lstat(self._real(path))
            except OSError as exc:
                raise FuseOSError(exc.errno) from None
            out = {
                key: getattr(st, key)
                for key in ("st_mode", "st_nlink", "st_size", "st_uid", "st_gid", "st_rdev")
            }
            if stat.S_ISREG(st.st_mode):
                out["st_nlink"] = 1  # the store's link to adopted data is not a name
            out.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
            out["st_blocks"] = st.st_blocks
            return out

        def access(self, path: str, amode: int) -> int:
            if not os.access(self._real(path), amode):
                raise FuseOSError(errno.EACCES)
            return 0

        def chmod(self, path: str, mode: int) -> int:
            os.chmod(self._real(path), mode)
            return 0

        def chown(self, path: str, uid: int, gid: int) -> int:
            os.lchown(self._real(path), uid, gid)
            return 0

        def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
            os.utime(self._real(path), ns=times, follow_symlinks=False)
            return 0

        def statfs(self, path: str) -> dict[str, int]:
            sv = os.statvfs(self._real(path))
            return {
                key: getattr(sv, key)
                for key in (
                    "f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
                    "f_files", "f_ffree", "f_favail", "f_namemax",
                )
            }  # fmt: skip

        def readlink(self, path: str) -> str:
            return os.readlink(self._real(path))

        # directories

        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", *os.listdir(self._real(path))]

        def opendir(self, path: str) -> int:
            return 0

        def releasedir(self, path: str, fh: int) -> int:
            return 0

        def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
            with self.mutex:
                self._sync_dir(self._real(path))
            return 0

        def mkdir(self, path: str, mode: int) -> int:
            with self.mutex:
                os.mkdir(self._real(path), mode)
                self._id_of_ino(os.lstat(self._real(path)).st_ino)
            return 0

        def rmdir(self, path: str) -> int:
            with self.mutex:
                ino = os.lstat(self._real(path)).st_ino
                os.rmdir(self._real(path))
                self.ids.pop(ino, None)
            return 0

        def symlink(self, target: str, source: str) -> int:
            with self.mutex:
                os.symlink(source, self._real(target))
                self._id_of_ino(os.lstat(self._real(target)).st_ino)
            return 0

        def link(self, target: str, source: str) -> int:
            raise FuseOSError(errno.EPERM)

        def unlink(self, path: str) -> int:
            with self.mutex:
                ino = os.lstat(self._real(path)).st_ino
                os.unlink(self._real(path))
                # Without hard links the last name is gone: a new file may get the inode.
                # Open handles keep their id; durable data linked to it keeps the inode.
                self.ids.pop(ino, None)
            return 0

        def rename(self, old: str, new: str) -> int:
            with self.mutex:
                try:
                    replaced: int | None = os.lstat(self._real(new)).st_ino
                except FileNotFoundError:
                    replaced = None
                moving = os.lstat(self._real(old)).st_ino
                os.rename(self._real(old), self._real(new))
                if replaced is not None and replaced != moving:
                    self.ids.pop(replaced, None)
            return 0

        # files

        def _open(self, path: str, flags: int, mode: int | None) -> int:
            real = self._real(path)
            with self.mutex:
                if mode is None:
                    fd = os.open(real, os.O_RDWR if os.access(real, os.W_OK) else os.O_RDONLY)
                else:
                    excl = flags & os.O_EXCL
                    fd = os.open(real, os.O_RDWR | os.O_CREAT | excl, mode)
                ident = self._id_of_ino(os.fstat(fd).st_ino)
                self.handles[fd] = (ident, bool(flags & (os.O_SYNC | os.O_DSYNC)))
                if flags & os.O_TRUNC:
                    self._before_change(ident, fd=fd)
                    os.ftruncate(fd, 0)
            return fd

        def open(self, path: str, flags: int) -> int:
            return self._open(path, flags, None)

        def create(self, path: str, mode: int, flags: int = 0) -> int:
            return self._open(path, flags, mode)

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            return os.pread(fh, size, offset)

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            with self.mutex:
                ident, sync = self.handles[fh]
                self._before_change(ident, fd=fh)
                n = os.pwrite(fh, data, offset)
                if sync:
                    self._persist(fh)
            return n

        def truncate(self, path: str, length: int, fh: int | None = None) -> int:
            with self.mutex:
                if fh is not None:
                    self._before_change(self.handles[fh][0], fd=fh)
                    os.ftruncate(fh, length)
                else:
                    real = self._real(path)
                    self._before_change(self._id_of_ino(os.lstat(real).st_ino), real=real)
                    os.truncate(real, length)
            return 0

        def fsync(self, path: str, datasync: int, fh: int) -> int:
            with self.mutex:
                self._persist(fh)
            return 0

        def flush(self, path: str, fh: int) -> int:
            return 0

        def release(self, path: str, fh: int) -> int:
            with self.mutex:
                self.handles.pop(fh, None)
                os.close(fh)
            return 0

    mfusepy.FUSE(VolatileFS(), str(mountpoint), foreground=True, nothreads=False, fsname="powercut")


# -- the controller the tests use -------------------------------------------------------------


@dataclass
class VolatileDisk:
    """One power-cuttable disk under ``root``: ``live/`` and ``store/`` (the daemon's),
    ``mnt/`` (where processes read and write). ``cuts`` counts power cuts; ``lost`` sums
    what :func:`restore` brought back empty."""

    root: Path
    proc: subprocess.Popen[bytes] | None = None
    cuts: int = 0
    restored: list[dict[str, int]] = field(default_factory=list)

    @property
    def mnt(self) -> Path:
        return self.root / "mnt"

    @property
    def live(self) -> Path:
        return self.root / "live"

    @property
    def store(self) -> Path:
        return self.root / "store"

    def mount(self) -> VolatileDisk:
        self.live.mkdir(parents=True, exist_ok=True)
        self.mnt.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "fuse.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "serve", str(self.live), str(self.store), str(self.mnt)],
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 30
        while not os.path.ismount(self.mnt):
            if self.proc.poll() is not None:
                raise RuntimeError(f"FUSE daemon exited: {(self.root / 'fuse.log').read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError("FUSE mount did not appear")
            time.sleep(0.02)
        return self

    def _umount(self, lazy: bool) -> None:
        args = [FUSERMOUNT, "-u", "-q", *(["-z"] if lazy else []), str(self.mnt)]
        subprocess.run(args, check=False, capture_output=True)

    def cut(self) -> dict[str, int]:
        """The power cut: kill the daemon (nothing flushed), drop the mount, rebuild ``live``
        from what was durable, mount again. Stop every process using the mount first."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None
        self._umount(lazy=True)
        counts = restore(self.store, self.live)
        self.cuts += 1
        self.restored.append(counts)
        self.mount()
        return counts

    def unmount(self) -> None:
        """A clean stop (no power cut): unmount, then the daemon exits."""
        if self.proc is None:
            return
        self._umount(lazy=False)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            self._umount(lazy=True)
        self.proc = None
        with contextlib.suppress(OSError):
            if os.path.ismount(self.mnt):
                self._umount(lazy=True)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "serve":
        _serve(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        sys.exit(f"usage: {sys.argv[0]} serve LIVE STORE MOUNTPOINT")
