"""The object store's parts copied to a second S3 store (``backup_store_url``, another
site's) by ``sohoa-server backup``, and brought back by ``sohoa-server restore`` /
``sohoa-server store restore`` (docs/operations.md §8, runbook R7).

A part's object never changes once committed (a turned page is a new object beside it), so
a backup copies only what the backup store lacks: station by station, a listing of the
station's folder in the backup (the memory it takes is one commune's, not the province's),
then for each committed part on the object store whose key is not there at its size, the object
is downloaded into local staging, re-hashed against the SHA-256 the catalogue recorded at
ingest, uploaded and verified (:meth:`ObjectStore.upload`: Content-MD5, then size, ETag and
SHA-256 label). An object that does not hash as recorded is named and never copied (the
backup keeps its good copy if it has one). Interrupted, a run leaves what it copied
verified; the next goes on from the listings. The backup key is the backup prefix followed
by the part's key in the archive's bucket.

Restoring walks the same parts the other way (listing the store's folders the same way, so
a new, empty bucket costs no request per part): an object the store already holds with its
size and SHA-256 label (a HEAD, for objects the listing shows at their size) is kept, any other is fetched from the backup, re-hashed against the
catalogue and uploaded, verified; resumable the same way. When the archive's store is a new
bucket, the catalogue's locations are first pointed at it (same keys).

Owns: what to copy and the check of every copied byte against the catalogue. Must not:
delete anything in either store, or copy bytes the catalogue's SHA-256 does not vouch for.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from server.store.db import Database
from server.store.objects import SCHEME, DamagedSource, ObjectStore, split_location, stream

log = logging.getLogger(__name__)

_ON_OBJECTS = "state = 'committed' AND path LIKE 's3://%'"


@dataclass
class Copy:
    """What one backup or restore of objects did."""

    copied: int = 0
    kept: int = 0  # already there, verified when they were copied
    bytes: int = 0
    damaged: list[str] = field(default_factory=list)  # source does not hash as recorded
    missing: list[str] = field(default_factory=list)  # no source object at all

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
                " AND x.state = 'committed' AND x.path LIKE 's3://%' ORDER BY x.id",
                (batch_pk,),
            )
            found = [(int(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]
            if found:
                yield station, found


def _each_part(db: Database) -> Iterator[tuple[int, str, str, int]]:
    for _, parts in _parts_by_station(db):
        yield from parts


def _fetch_checked(
    fetch: Callable[[Path], tuple[str, int]], staged: Path, sha256: str, size: int
) -> None:
    """Fetch into ``staged`` and require the catalogue's SHA-256 and size."""
    got = fetch(staged)
    if got != (sha256, size):
        staged.unlink(missing_ok=True)
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


def backup(db: Database, to: ObjectStore, *, say: Callable[[str], None] = print) -> Copy:
    """Copy into ``to`` every committed part's object it lacks (module docstring).
    Raises :class:`ObjectStoreError` when either store fails (run again: it goes on)."""
    report = Copy()
    there = _Listing(to)
    staged = to.root / "copying"
    try:
        for pk, location, sha256, size in _each_part(db):
            where = split_location(location)
            assert where is not None
            key = to.target.prefix + where[1]
            if there.size(key) == size:
                report.kept += 1
                continue
            if _copy(pk, location, to, key, sha256, size, staged, report, say):
                report.copied += 1
                report.bytes += size
                if report.copied % 1000 == 0:
                    say(f"{report.copied} object(s) copied ({report.bytes} bytes)")
    finally:
        staged.unlink(missing_ok=True)
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


def _copy(
    pk: int,
    location: str,
    to: ObjectStore,
    key: str,
    sha256: str,
    size: int,
    staged: Path,
    report: Copy,
    say: Callable[[str], None],
) -> bool:
    """One object into the backup, verified; False (named in ``report``) when the
    archive's object is gone or does not hash as recorded."""
    try:
        _fetch_checked(_from_location(location), staged, sha256, size)
    except FileNotFoundError:
        report.missing.append(f"part {pk}: {location}")
        say(f"NOT COPIED part {pk}: {location} is missing")
        return False
    except DamagedSource as exc:
        report.damaged.append(f"part {pk}: {location}: {exc}")
        say(f"NOT COPIED part {pk}: {location} does not hash as recorded: {exc}")
        return False
    to.upload(staged, key, sha256, size)
    return True


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
    db: Database, store: ObjectStore, source: ObjectStore, *, say: Callable[[str], None] = print
) -> Copy:
    """Bring back from ``source`` (the backup store) every committed part's object that
    ``store`` does not hold verified (module docstring). Raises :class:`ObjectStoreError`
    when either store fails (run again: it goes on)."""
    repoint(db, store, say)
    report = Copy()
    staged = store.root / "restoring"
    staged.parent.mkdir(parents=True, exist_ok=True)
    here = _Listing(store)
    try:
        for pk, location, sha256, size in _each_part(db):
            where = split_location(location)
            assert where is not None
            key = where[1]
            # Listed at its size: HEAD for its SHA-256 label (a new bucket: no HEAD at all).
            if here.size(key) == size and store.holds(key, sha256, size):
                report.kept += 1
                continue
            backup_key = source.target.prefix + key

            def fetch(dest: Path, backup_key: str = backup_key) -> tuple[str, int]:
                return source.download(backup_key, dest)

            try:
                _fetch_checked(fetch, staged, sha256, size)
            except FileNotFoundError:
                report.missing.append(f"part {pk}: {backup_key}")
                say(f"NOT RESTORED part {pk}: the backup has no {backup_key}")
                continue
            except DamagedSource as exc:
                report.damaged.append(f"part {pk}: {backup_key}: {exc}")
                say(f"NOT RESTORED part {pk}: the backup's {backup_key} does not hash: {exc}")
                continue
            store.upload(staged, key, sha256, size)
            report.copied += 1
            report.bytes += size
            if report.copied % 1000 == 0:
                say(f"{report.copied} object(s) restored ({report.bytes} bytes)")
    finally:
        staged.unlink(missing_ok=True)
    return report


def summary(report: Copy, what: str) -> str:
    return (
        f"{what}: {report.copied} object(s) copied ({report.bytes} bytes), {report.kept} already"
        f" there, {len(report.damaged)} damaged, {len(report.missing)} missing"
    )
