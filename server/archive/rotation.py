"""Real rotation (issue 17): a turn chosen in review makes a new archival version of the page.

The station's archival file is a one-page PDF/A-2b: an MRC image and an invisible OCR text
layer in one content stream (agent/pipeline/archival.py). Turning the page is done by setting
the page's ``/Rotate`` (ISO 32000-1 §7.7.3.3; a multiple of 90, allowed by PDF/A-2, which
forbids nothing about it): lossless — the image, the text layer and the PDF/A identity
(output intent, XMP) are carried over byte for byte, and the text layer turns with the image
because both are drawn in the same page space, so the words still sit on their pixels and
text extraction gives the same words. Re-encoding the capture is not needed and would lose
the station's recorded decisions.

Rules:
- the original archival part is never changed or removed; each turn writes a new file beside
  it (``<name>.archival.r<N>.pdf``, written to a temp name, fsynced, renamed, directory
  fsynced) and a new ``parts`` row (name ``archival.r<N>``, committed, with its sha256), so the
  fixity walk covers it like any part;
- ``degrees`` is the page's turn from the original (0, 90, 180, 270 clockwise), as the review
  form has always offered it; every version is made from the original, whose bytes are first
  re-verified against their ingest sha256 (:func:`server.archive.fixity.read_verified`);
  turning back to 0 makes the original current again (no new file);
- provenance is a ``page_versions`` row per turn: who, when, how many degrees, from which
  sha256 to which — and an audit line;
- :func:`current_part_pk` is the one answer to "which archival file is the page now", used by
  the catalogue (viewer, render, exports) and the AIP.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path

from server.archive import audit, fixity
from server.store import objects
from server.store.db import Connection, Database

ROTATIONS = (0, 90, 180, 270)
ORIGINAL = "archival"


class RotationError(Exception):
    pass


@dataclass(frozen=True)
class Version:
    page_pk: int
    part_pk: int
    degrees: int
    from_sha256: str
    sha256: str
    actor: str
    at: float


CURRENT_SQL = (
    "COALESCE((SELECT v.part_pk FROM page_versions v WHERE v.page_pk = {page}"
    " ORDER BY v.id DESC LIMIT 1), (SELECT o.id FROM parts o WHERE o.page_pk = {page}"
    " AND o.name = 'archival' AND o.state = 'committed'))"
)


def current_part_pk(con: Connection, page_pk: int) -> int | None:
    """The parts row of the page's archival file as it stands now: the latest turn's, else
    the station's original."""
    row = con.execute(f"SELECT {CURRENT_SQL.format(page='?')} AS id", (page_pk, page_pk))
    found = row.fetchone()
    return None if found is None or found["id"] is None else int(found["id"])


def rotated_pdf(original: bytes, degrees: int) -> bytes:
    """``original`` (a one-page PDF) with its page turned ``degrees`` clockwise from how the
    original shows it; everything else kept."""
    import pikepdf

    with pikepdf.open(io.BytesIO(original)) as pdf:
        if len(pdf.pages) != 1:
            raise RotationError(f"an archival file has one page, this one {len(pdf.pages)}")
        page = pdf.pages[0]
        base = int(page.obj.get("/Rotate", 0))
        page.obj.Rotate = (base + degrees) % 360
        out = io.BytesIO()
        pdf.save(out, fix_metadata_version=False, deterministic_id=True)
    return out.getvalue()


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _place_version(original: str, n: int, data: bytes, sha256: str) -> str:
    """Store turned version ``n`` beside ``original`` (a local path or an object location),
    durably and verified, before the row that names it is committed; its location."""
    split = objects.split_location(original)
    if split is None:
        src = Path(original)
        path = src.with_name(src.name.removesuffix(".pdf") + f".r{n}.pdf")
        _write_durably(path, data)
        return str(path)
    bucket, key = split
    location = f"{objects.SCHEME}://{bucket}/{key.removesuffix('.pdf')}.r{n}.pdf"
    objects.put_bytes(location, data, sha256)
    return location


def rotate(db: Database, page_pk: int, degrees: int, actor: str, ip: str = "") -> Version | None:
    """Make the page's archival file the original turned by ``degrees``; None: no such page.
    Raises RotationError when the page has no archival PDF yet, FixityError when the
    original no longer matches its sha256 (nothing is made from damaged bytes)."""
    if degrees not in ROTATIONS:
        raise ValueError(f"rotation must be one of {ROTATIONS}")
    con = db.read()
    if con.execute("SELECT 1 FROM pages WHERE id = ?", (page_pk,)).fetchone() is None:
        return None
    row = con.execute(
        "SELECT id, path, sha256, media_type FROM parts"
        " WHERE page_pk = ? AND name = 'archival' AND state = 'committed'",
        (page_pk,),
    ).fetchone()
    if row is None or not row["path"]:
        raise RotationError(f"page {page_pk} has no archival file yet")
    if row["media_type"] != "application/pdf":
        raise RotationError(f"page {page_pk}'s archival file is not a PDF")
    original = fixity.read_verified(
        db, row["id"], str(row["path"]), row["sha256"], f"page {page_pk}", "rotate"
    )
    now = time.time()
    with db.tx() as con:
        count = con.execute(
            "SELECT COUNT(*) AS n FROM page_versions WHERE page_pk = ?", (page_pk,)
        ).fetchone()["n"]
        current = current_part_pk(con, page_pk)
        before = con.execute("SELECT sha256 FROM parts WHERE id = ?", (current,)).fetchone()
        if degrees == 0:
            part_pk, sha256 = int(row["id"]), str(row["sha256"])
        else:
            data = rotated_pdf(original, degrees)
            sha256 = hashlib.sha256(data).hexdigest()
            name = f"archival.r{count + 1}"
            path = _place_version(str(row["path"]), count + 1, data, sha256)
            part_pk = int(
                con.execute(
                    "INSERT INTO parts(page_pk, name, sha256, size, media_type, state, path,"
                    " committed_at) VALUES (?, ?, ?, ?, 'application/pdf', 'committed', ?, ?)"
                    " RETURNING id",
                    (page_pk, name, sha256, len(data), str(path), now),
                ).fetchone()["id"]
            )
        con.execute(
            "INSERT INTO page_versions(page_pk, part_pk, degrees, from_sha256, sha256, actor, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (page_pk, part_pk, degrees, row["sha256"], sha256, actor, now),
        )
        # A turn the viewer used to show with CSS is now in the file itself.
        con.execute("DELETE FROM page_views WHERE page_pk = ?", (page_pk,))
        con.execute(
            "INSERT INTO reviews(page_pk, action, actor, at, note) VALUES (?, 'rotate', ?, ?, ?)",
            (page_pk, actor, now, str(degrees)),
        )
        audit.append(
            con, actor, "review.rotate", str(page_pk),
            {"degrees": degrees, "from_sha256": before["sha256"] if before else None,
             "sha256": sha256, "part": part_pk},
            ip,
        )  # fmt: skip
    return Version(page_pk, part_pk, degrees, str(row["sha256"]), sha256, actor, now)


def versions(db: Database, page_pk: int) -> list[Version]:
    """The page's turns, oldest first (its provenance)."""
    return versions_of(db, [page_pk]).get(page_pk, [])


def versions_of(db: Database, page_pks: list[int]) -> dict[int, list[Version]]:
    """The turns of each of ``page_pks`` that has any, oldest first, in one query."""
    if not page_pks:
        return {}
    marks = ", ".join("?" * len(page_pks))  # placeholders only: the ids are parameters
    rows = db.read().execute(
        f"SELECT * FROM page_versions WHERE page_pk IN ({marks}) ORDER BY id",  # noqa: S608
        page_pks,
    )
    out: dict[int, list[Version]] = {}
    for version in [
        Version(
            r["page_pk"],
            r["part_pk"],
            r["degrees"],
            r["from_sha256"],
            r["sha256"],
            r["actor"],
            r["at"],
        )
        for r in rows
    ]:
        out.setdefault(version.page_pk, []).append(version)
    return out


def degrees(db: Database, page_pk: int) -> int:
    """The page's current turn from the original (0 when never turned)."""
    row = (
        db.read()
        .execute(
            "SELECT degrees FROM page_versions WHERE page_pk = ? ORDER BY id DESC LIMIT 1",
            (page_pk,),
        )
        .fetchone()
    )
    return int(row["degrees"]) if row else 0
