"""The object store's parts copied to a second S3 store (``backup_store_url``, another
site's) by ``sohoa-server backup``, and brought back by ``sohoa-server restore`` /
``sohoa-server store restore`` (docs/operations.md §8, runbook R7).

A part's object never changes once committed (a turned page is a new object beside it), so
a backup copies only what the backup store lacks: station by station, a listing of the
station's folder in the backup (the memory it takes is one commune's, not the province's),
then for each committed part on the object store whose key is not there at its size, the
object is downloaded into local staging, re-hashed against the SHA-256 the catalogue
recorded at ingest, uploaded and verified (:meth:`ObjectStore.upload`: Content-MD5, then
size, ETag and SHA-256 label), :data:`WORKERS` objects at a time. An object that does not
hash as recorded is named and never copied (the backup keeps its good copy if it has one).
Interrupted, a run leaves what it copied verified; the next goes on from the listings. The
backup key is the backup prefix followed by the part's key in the archive's bucket.

Restoring walks the same parts the other way (listing the store's folders the same way, so
a new, empty bucket costs no request per part): an object the store already holds with its
size and SHA-256 label (a HEAD, for objects the listing shows at their size) is kept, any
other is fetched from the backup, re-hashed against the catalogue and uploaded, verified;
resumable the same way. When the archive's store is a new bucket, the catalogue's locations
are first pointed at it (same keys).

Owns: what to copy and the check of every copied byte against the catalogue. Must not:
delete anything in either store, or copy bytes the catalogue's SHA-256 does not vouch for.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from server.store.db import Database
from server.store.objects import SCHEME, DamagedSource, ObjectStore, split_location, stream

_ON_OBJECTS = "state = 'committed' AND path LIKE 's3://%'"
# Objects copied at a time: each copy is a GET, a PUT and two HEADs, mostly waiting on the
# network (bench/offsite.py: one at a time ran at ~17 objects/s on the test gateway).
WORKERS = 8


@dataclass
class Copy:
    """What one backup or restore of objects did."""

    copied: int = 0
    kept: int = 0  # already there, verified when they were copied
    bytes: int = 0
    damaged: list[str] = field(default_factory=list)  # source does not hash as recorded
    missing: list[str] = field(default_factory=list)  # no source object at all
    reread: int = 0  # copies in the backup read back and hashed (a backup's check)
    replaced: list[str] = field(default_factory=list)  # … found damaged, copied again

    @property
    def whole(self) -> bool:
        return not self.damaged and not self.missing


def _parts_by_station(db: Database) -> Iterator[tuple[str, list[tuple[int, str, str, int]]]]:
    """(station, its committed parts on an object store) batch by batch, station after
    station: the backup lists one station's folder at a time (memory bounded by the
    largest commune, not the province)."""
    stations = [str(r[0]) for r in db.read().execute(
        "SELECT DISTINCT device_id FROM batches ORDER BY device_id"
    )]  # fmt: skip
    for station in stations:
        batches = [int(r[0]) for r in db.read().execute(
            "SELECT id FROM batches WHERE device_id = ? ORDER BY id", (station,)
        )]  # fmt: skip
        for batch_pk in batches:
            rows = db.read().execute(
                "SELECT x.id, x.path, x.sha256, x.size FROM parts x"
                " JOIN pages p ON p.id = x.page_pk WHERE p.batch_pk = ?"
                " AND x.state = 'committed' AND x.path LIKE ? ORDER BY x.id",
                (batch_pk, "s3://%"),
            )
            found = [(int(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]
            if found:
                yield station, found


def _fetch_checked(
    fetch: Callable[[Path], tuple[str, int]], staged: Path, sha256: str, size: int
) -> None:
    """Fetch into ``staged`` and require the catalogue's SHA-256 and size."""
    got = fetch(staged)
    if got != (sha256, size):
        raise DamagedSource(f"sha256 {got[0]} ({got[1]} bytes), recorded {sha256} ({size})")


def _from_location(location: str) -> Callable[[Path], tuple[str, int]]:
    def fetch(dest: Path) -> tuple[str, int]:
        digest, total = hashlib.sha256(), 0
        with dest.open("wb") as out:
            for block in stream(location):
                digest.update(block)
                out.write(block)
                total += len(block)
        return digest.hexdigest(), total

    return fetch


@dataclass(frozen=True)
class _Job:
    """One object to copy: fetched by ``fetch``, checked against the catalogue, put at
    ``key`` in ``to``; ``name`` says where it came from (for the report)."""

    pk: int
    name: str
    fetch: Callable[[Path], tuple[str, int]]
    to: ObjectStore
    key: str
    sha256: str
    size: int

    reread: bool = False  # first read back the copy at ``key``; copy only if it is bad

    def run(self) -> tuple[str, str]:
        """("copied" | "reread", "") or ("replaced", why) or ("missing" | "damaged", why);
        raises ObjectStoreError."""
        fd, name = tempfile.mkstemp(dir=self.to.root, prefix=".copy-")
        os.close(fd)
        staged = Path(name)
        bad = ""
        try:
            if self.reread:
                try:
                    got = self.to.download(self.key, staged)
                except FileNotFoundError:
                    got = ("", 0)
                if got == (self.sha256, self.size):
                    return "reread", ""
                bad = f"part {self.pk}: the copy at {self.key} did not hash as recorded"
            _fetch_checked(self.fetch, staged, self.sha256, self.size)
            # A bad copy's HEAD may look right (bit rot keeps size, ETag, label): replace.
            self.to.upload(staged, self.key, self.sha256, self.size, replace=bool(bad))
        except FileNotFoundError:
            return "missing", f"part {self.pk}: {self.name} is missing"
        except DamagedSource as exc:
            return "damaged", f"part {self.pk}: {self.name} does not hash as recorded: {exc}"
        finally:
            staged.unlink(missing_ok=True)
        return ("replaced", bad) if bad else ("copied", "")


def _run(
    pool: ThreadPoolExecutor,
    jobs: list[_Job],
    report: Copy,
    say: Callable[[str], None],
    verb: str = "copied",
) -> None:
    """Run ``jobs`` on ``pool``; every one has finished when this returns or raises (the
    first store failure, after the others ended: what they copied is verified)."""
    futures = [pool.submit(job.run) for job in jobs]
    wait(futures)
    for future in futures:
        if future.exception() is not None:
            raise future.exception()  # type: ignore[misc]
    for job, future in zip(jobs, futures, strict=True):
        outcome, why = future.result()
        if outcome == "reread":
            report.reread += 1
            continue
        if outcome == "replaced":
            report.reread += 1
            report.replaced.append(why)
            say(f"REPLACED {why}: copied again from the archive, verified")
            outcome = "copied"
        if outcome == "copied":
            report.copied += 1
            report.bytes += job.size
            if report.copied % 1000 == 0:
                say(f"{report.copied} object(s) {verb} ({report.bytes} bytes)")
            continue
        (report.missing if outcome == "missing" else report.damaged).append(why)
        say(f"NOT {verb.upper()} {why}")


def backup(
    db: Database,
    to: ObjectStore,
    *,
    say: Callable[[str], None] = print,
    workers: int = WORKERS,
    reread: tuple[int, int] | None = None,
) -> Copy:
    """Copy into ``to`` every committed part's object it lacks (module docstring), up to
    ``workers`` at a time. ``reread`` (group ``n`` of ``t``): the copies already there of
    the parts whose id is ``n - 1`` modulo ``t`` are read back and hashed, and a bad one
    is copied again from the archive (the nightly backup's check of the backup store: the
    group moves on each night, every copy in ``t`` nights). Raises
    :class:`ObjectStoreError` when either store fails (run again: it goes on)."""
    report = Copy()
    there = _Listing(to)
    with ThreadPoolExecutor(workers, "sohoa-offsite") as pool:
        for _, parts in _parts_by_station(db):  # a batch at a time
            jobs = []
            for pk, location, sha256, size in parts:
                where = split_location(location)
                assert where is not None
                key = to.target.prefix + where[1]
                fetch = _from_location(location)
                if there.size(key) == size:
                    if reread is not None and pk % reread[1] == reread[0] - 1:
                        jobs.append(_Job(pk, location, fetch, to, key, sha256, size, True))
                    else:
                        report.kept += 1
                    continue
                jobs.append(_Job(pk, location, fetch, to, key, sha256, size))
            _run(pool, jobs, report, say)
    return report


class _Listing:
    """What a store holds, listed one station's folder (``…/<station>/``) at a time; the
    folders of the previous station are forgotten when the walk moves to the next."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.station: str | None = None
        self.sizes: dict[str, int] = {}
        self.listed: set[str] = set()

    def size(self, key: str) -> int | None:
        folder, station = key.rsplit("/", 2)[0] + "/", key.rsplit("/", 3)[-3]
        if station != self.station:
            self.station = station
            self.sizes.clear()
            self.listed.clear()
        if folder not in self.listed:
            self.sizes.update(self.store.sizes(folder))
            self.listed.add(folder)
        return self.sizes.get(key)


def repoint(db: Database, store: ObjectStore, say: Callable[[str], None] = print) -> int:
    """Point the catalogue's object locations in another bucket at ``store``'s bucket (the
    same keys): a restore into a new bucket. The number of parts repointed."""
    bucket = store.target.bucket
    moved = 0
    with db.tx() as con:
        rows = con.execute(f"SELECT id, path FROM parts WHERE {_ON_OBJECTS}").fetchall()  # noqa: S608
        for r in rows:
            where = split_location(str(r["path"]))
            if where is None or where[0] == bucket:
                continue
            con.execute(
                "UPDATE parts SET path = ? WHERE id = ? AND path = ?",
                (f"{SCHEME}://{bucket}/{where[1]}", r["id"], r["path"]),
            )
            moved += 1
    if moved:
        say(f"{moved} part location(s) pointed at the bucket {bucket}")
    return moved


def restore(
    db: Database,
    store: ObjectStore,
    source: ObjectStore,
    *,
    say: Callable[[str], None] = print,
    workers: int = WORKERS,
) -> Copy:
    """Bring back from ``source`` (the backup store) every committed part's object that
    ``store`` does not hold verified (module docstring), up to ``workers`` at a time.
    Raises :class:`ObjectStoreError` when either store fails (run again: it goes on)."""
    repoint(db, store, say)
    report = Copy()
    store.root.mkdir(parents=True, exist_ok=True)
    here = _Listing(store)
    with ThreadPoolExecutor(workers, "sohoa-offsite") as pool:
        for _, parts in _parts_by_station(db):
            jobs = []
            for pk, location, sha256, size in parts:
                where = split_location(location)
                assert where is not None
                key = where[1]
                # Listed at its size: a HEAD for its SHA-256 label (a new bucket: none).
                if here.size(key) == size and store.holds(key, sha256, size):
                    report.kept += 1
                    continue
                backup_key = source.target.prefix + key

                def fetch(dest: Path, backup_key: str = backup_key) -> tuple[str, int]:
                    return source.download(backup_key, dest)

                name = f"the backup's {backup_key}"
                jobs.append(_Job(pk, name, fetch, store, key, sha256, size))
            _run(pool, jobs, report, say, "restored")
    return report


def summary(report: Copy, what: str) -> str:
    reread = (
        f"; {report.reread} copy(ies) read back, {len(report.replaced)} bad and copied again"
        if report.reread
        else ""
    )
    return (
        f"{what}: {report.copied} object(s) copied ({report.bytes} bytes), {report.kept} already"
        f" there, {len(report.damaged)} damaged, {len(report.missing)} missing{reread}"
    )
