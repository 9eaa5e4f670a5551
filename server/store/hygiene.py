"""What a crash leaves behind with the object store, and the one safe way to remove it.

Two kinds of leftovers (issue 19):

- **staged files** in ``<data_dir>/store-staging`` (:func:`sweep_staging`, run by
  ``sohoa-server run`` at start-up, before the ingest starts, and every
  ``STAGING_SWEEP_EVERY_S`` after: :func:`sweep_staging_every`): a server killed between the
  catalogue's COMMIT and :meth:`ObjectStore.committed` leaves the staged copy of a part whose
  object is verified; killed mid-group, it leaves ``.partial`` files whose chunks were never
  recorded. Staging holds no part that is committed but not uploaded: ``place()`` uploads
  and verifies before the ingest may claim the part, and the claim is what commits it (the
  sweep still checks, and keeps such a file if it ever finds one);
- **objects no catalogue row names** and **incomplete multipart uploads** in the bucket
  (:func:`collect`, ``sohoa-server store gc``): a part uploaded by a group that was killed
  before its COMMIT (or whose COMMIT failed), a turned page version whose row never
  committed, an upload cut short.

Safety rests on the ingest's one writer: every upload, verification and claim happens
inside the catalogue's write transaction, so a sweep or a deletion done inside that
transaction (``db.tx()``) never races an ingest between "this object verifies" and "this
part is committed". An age (``older_than``) is required as well, so anything written
recently — by a process on another host sharing the store — is left alone.

Owns: deciding what is garbage and removing it, logging each removal. Must not: remove a
file or an object any part row names, or a staged file whose recorded chunks live in it
(the station would be told it had sent them).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.store.db import Database
from server.store.files import StoreError

if TYPE_CHECKING:
    from server.store.objects import ObjectStore

log = logging.getLogger(__name__)

# A staged file younger than this is left alone at start-up whatever the catalogue says:
# another host's ingest may share this staging directory (docs/operations.md §13).
STAGING_SAFE_AGE_S = 3600.0
# How often a running server sweeps again: a group whose COMMIT failed (a full disk, the
# database gone for a moment) leaves its staged files behind as a kill does, and a server
# runs for months between restarts.
STAGING_SWEEP_EVERY_S = 6 * 3600.0
# Objects and multipart uploads younger than this are in flight (an upload runs inside one
# ingest transaction: seconds to minutes); `store gc --older-than` changes it.
GC_GRACE_HOURS = 24.0

# <page no>-<page id>.<part><ext>[.partial], as server.store.files.Store.part_path names them.
_STAGED = re.compile(
    r"^(?P<no>\d{4,})-(?P<page>[0-9a-f]{32})\.(?P<part>archival|text|thumb|capture|words)"
    r"(?P<ext>\.[a-z]+)(?P<partial>\.partial)?$"
)
_OWNER = (
    "SELECT pa.state, pa.path, pa.media_type,"
    " (SELECT COUNT(*) FROM chunks c WHERE c.part_pk = pa.id) AS chunks"
    " FROM parts pa JOIN pages p ON p.id = pa.page_pk JOIN batches b ON b.id = p.batch_pk"
    " WHERE p.device_id = ? AND b.batch_id = ? AND p.page_id = ? AND pa.name = ?"
)


@dataclass
class Sweep:
    """What one staging sweep did."""

    removed: list[tuple[str, str]] = field(default_factory=list)  # (path in staging, why)
    kept: list[tuple[str, str]] = field(default_factory=list)  # owned, or not a part file
    young: int = 0  # younger than the safe age: not looked at
    bytes: int = 0


def sweep_staging(
    db: Database, store: ObjectStore, *, older_than_s: float = STAGING_SAFE_AGE_S,
    now: float | None = None,
) -> Sweep:  # fmt: skip
    """Remove the staged files no live upload owns, older than ``older_than_s``; log each.

    Owned (kept): the file of a part not yet committed whose recorded chunks live in it.
    Removed: the file of a committed part (its object verified before the COMMIT), of a
    part not committed with no recorded chunk (nobody counts on its bytes: the station is
    told to send them), or of no part at all. Kept as well: a committed part whose recorded
    location is this very file (never expected), and files not named like a part."""
    now = time.time() if now is None else now
    report = Sweep()
    root = store.root
    if not root.is_dir():
        return report
    with db.tx() as con:  # the ingest's one writer: no group writes staging meanwhile
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            if now - stat.st_mtime < older_than_s:
                report.young += 1
                continue
            why = _garbage(con, store, path, rel)
            if why is None or why.startswith("keep"):
                report.kept.append((rel, why or "keep: owned"))
                continue
            path.unlink(missing_ok=True)
            report.removed.append((rel, why))
            report.bytes += stat.st_size
            log.warning("store-staging: removed %s (%d bytes): %s", rel, stat.st_size, why)
    if report.removed or report.kept:
        log.info(
            "store-staging sweep: %d removed (%d bytes), %d kept, %d younger than %.0f s",
            len(report.removed), report.bytes, len(report.kept), report.young, older_than_s,
        )  # fmt: skip
    return report


def sweep_staging_every(
    db: Database, store: ObjectStore, stop: threading.Event,
    every_s: float = STAGING_SWEEP_EVERY_S,
) -> None:  # fmt: skip
    """:func:`sweep_staging` every ``every_s`` until ``stop`` is set (a thread of
    ``sohoa-server run``); a failed sweep is logged and tried again next time."""
    while not stop.wait(every_s):
        try:
            sweep_staging(db, store)
        except Exception:  # the database or the disk for a moment: next time
            log.exception("store-staging sweep failed (left as it is until the next one)")


def _garbage(con: Any, store: ObjectStore, path: Path, rel: str) -> str | None:
    """Why ``path`` may go, or "keep: …" / None when it must stay."""
    parts = rel.split("/")
    m = _STAGED.match(parts[-1]) if len(parts) == 3 else None
    if m is None:
        return "keep: not named like a staged part"
    device, batch_id = parts[0], parts[1]
    row = con.execute(_OWNER, (device, batch_id, m["page"], m["part"])).fetchone()
    final = path.with_name(path.name.removesuffix(".partial"))
    if row is not None:
        try:
            expected = store.part_path(
                device, batch_id, int(m["no"]), m["page"], m["part"], row["media_type"]
            )
        except StoreError:
            expected = None
        if expected != final:
            row = None  # another page number or type: not this part's file
    if row is None:
        return "no part in the catalogue names this file"
    if row["state"] == "committed":
        if row["path"] and not str(row["path"]).startswith("s3://"):
            return "keep: committed at this location (not in the object store)"
        return "committed: its object was verified before the commit"
    if int(row["chunks"]) > 0:
        return None  # its recorded chunks live in this file
    return f"part {row['state']} with no chunk recorded: the station sends it again"


# -- the bucket ----------------------------------------------------------------------------------


@dataclass
class Garbage:
    """What ``store gc`` found (and, unless a dry run, removed)."""

    orphans: list[tuple[str, int, float]] = field(default_factory=list)  # key, size, mtime
    uploads: list[tuple[str, str, float]] = field(default_factory=list)  # key, id, initiated
    referenced: int = 0  # objects a part row names
    young: int = 0  # unreferenced, but younger than the grace period: in flight
    deleted: int = 0
    aborted: int = 0
    bytes: int = 0
    kept_at_delete: list[str] = field(default_factory=list)  # named by a part meanwhile


def _epoch(value: Any) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(value)


def collect(
    db: Database, store: ObjectStore, *, older_than_s: float = GC_GRACE_HOURS * 3600,
    delete: bool = False, now: float | None = None, say: Callable[[str], None] = print,
) -> Garbage:  # fmt: skip
    """Objects under the store's prefix that no part row names and multipart uploads under
    it, both older than ``older_than_s``; with ``delete``, removed (each object re-checked
    against the catalogue inside its write transaction just before it goes) and aborted.
    Each is named through ``say`` and the log."""
    from botocore.exceptions import ClientError

    now = time.time() if now is None else now
    report = Garbage()
    target, client = store.target, store.client
    referenced = _referenced(db, store)
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=target.bucket, Prefix=target.prefix
    )
    for page in pages:
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key in referenced:
                report.referenced += 1
            elif now - _epoch(obj["LastModified"]) < older_than_s:
                report.young += 1
            else:
                report.orphans.append((key, int(obj["Size"]), _epoch(obj["LastModified"])))
    report.uploads = _stale_uploads(client, target.bucket, target.prefix, now - older_than_s)
    for key, size, _ in report.orphans:
        say(f"orphan object {key} ({size} bytes): no catalogue row names it")
    for key, upload_id, _ in report.uploads:
        say(f"incomplete multipart upload {key} ({upload_id[:16]}…)")
    if not delete:
        return report
    for start in range(0, len(report.orphans), 500):
        batch = report.orphans[start : start + 500]
        with db.tx() as con:  # no ingest is between "verified" and "committed" meanwhile
            named = _named(con, store, [k for k, _, _ in batch])
            for key, size, _ in batch:
                if key in named:
                    report.kept_at_delete.append(key)
                    continue
                client.delete_object(Bucket=target.bucket, Key=key)
                report.deleted += 1
                report.bytes += size
                log.warning("store gc: deleted orphan object %s (%d bytes)", key, size)
    for key, upload_id, _ in report.uploads:
        try:
            client.abort_multipart_upload(Bucket=target.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise
            continue  # completed or aborted meanwhile
        report.aborted += 1
        log.warning("store gc: aborted incomplete multipart upload %s", key)
    return report


def _referenced(db: Database, store: ObjectStore) -> set[str]:
    """The keys under the store's bucket that part rows name (any state)."""
    head = store.target.location("")
    rows = db.read().execute("SELECT path FROM parts WHERE path LIKE ?", (head + "%",))
    return {str(r[0])[len(head) :] for r in rows if str(r[0]).startswith(head)}


def _named(con: Any, store: ObjectStore, keys: list[str]) -> set[str]:
    head = store.target.location("")
    marks = ",".join("?" * len(keys))
    rows = con.execute(
        "SELECT path FROM parts WHERE path IN (" + marks + ")",  # noqa: S608 - placeholders
        [head + k for k in keys],
    )
    return {str(r[0])[len(head) :] for r in rows}


def _stale_uploads(client: Any, bucket: str, prefix: str, before: float) -> list[Any]:
    out = []
    marker: dict[str, str] = {}
    while True:
        answer = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix, **marker)
        for upload in answer.get("Uploads", []):
            if _epoch(upload["Initiated"]) < before:
                out.append((upload["Key"], upload["UploadId"], _epoch(upload["Initiated"])))
        if not answer.get("IsTruncated"):
            return out
        marker = {
            "KeyMarker": answer.get("NextKeyMarker", ""),
            "UploadIdMarker": answer.get("NextUploadIdMarker", ""),
        }
