"""Parts: the files of a page arriving in chunks. Collect a group's chunks per part, write
them into the part's partial file, verify and place the parts they complete, and commit
them (the conditional UPDATE that is the claim, see :mod:`server.ingest`); record the ranges
of the others; forget what a failed group touched.

Owns: ``parts`` and ``chunks`` rows, the part files in the store, the page text index of a
committed text part, and a batch's completeness. Must not: publish, commit the transaction
or flush the store (the facade does, once per group), or commit a part whose sha256 it did
not recompute from the file.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from protocol import chunking
from protocol.messages import ChunkHeader, Envelope, PartState
from server.ingest.grouping import Group, GroupPart, Rejected
from server.store.db import Connection, Database, Row
from server.store.files import Pending, Store

log = logging.getLogger(__name__)

PART_SELECT = (
    "SELECT parts.id, parts.page_pk, parts.sha256, parts.size, parts.state, parts.name,"
    " parts.media_type, pages.page_no, pages.page_id, pages.batch_pk, batches.batch_id"
    " FROM parts JOIN pages ON pages.id = parts.page_pk"
    " JOIN batches ON batches.id = pages.batch_pk"
)


def select_in(
    con: Connection, sql: str, args: list[object], values: list[object], per: int = 500
) -> list[Row]:
    """``sql`` ending in ``… IN`` with ``args`` then each slice of ``values`` as the list."""
    out: list[Row] = []
    for start in range(0, len(values), per):
        some = values[start : start + per]
        marks = ", ".join("?" * len(some))
        out += con.execute(f"{sql} ({marks})", [*args, *some]).fetchall()
    return out


# -- collecting the group's chunks ------------------------------------------------------------


def check_chunk(msg: ChunkHeader, body: bytes) -> None:
    """A chunk's body against its own header (before any lock)."""
    if len(body) != msg.length:
        raise Rejected(
            "corrupt", f"chunk body {len(body)} bytes, header {msg.length}", msg.batch_id
        )
    if chunking.sha256_hex(body) != msg.chunk_sha256:
        raise Rejected("corrupt", f"chunk at {msg.offset} fails its sha256", msg.batch_id)


def prefetch(con: Connection, group: Group, messages: list[Envelope]) -> None:
    """The parts the group's chunks name, in one query per device (instead of one per
    chunk: a round trip each on PostgreSQL). Parts announced by a manifest of this very
    group are read again by :func:`collect_chunk` (:func:`_read_parts`)."""
    for msg in messages:
        if isinstance(msg, ChunkHeader):
            group.wanted_pages.setdefault(msg.device_id, set()).add(msg.page_id)
    for device in group.wanted_pages:
        _read_parts(con, group, device)


def _read_parts(con: Connection, group: Group, device: str) -> None:
    ids = sorted(group.wanted_pages.get(device, ()))
    for start in range(0, len(ids), 500):
        some = ids[start : start + 500]
        sql = (
            f"{PART_SELECT} WHERE pages.device_id = ?"  # placeholders only
            f" AND pages.page_id IN ({', '.join('?' * len(some))})"
        )
        for row in con.execute(sql, (device, *some)):
            group.known_parts[(device, row["page_id"], row["name"])] = row
    group.prefetched_at[device] = group.manifests


def _find_part(con: Connection, group: Group, msg: ChunkHeader) -> Row | None:
    device = msg.device_id
    key = (device, msg.page_id, msg.part)
    part = group.known_parts.get(key)
    if part is None and group.prefetched_at.get(device, -1) < group.manifests:
        _read_parts(con, group, device)  # announced by a manifest of this group?
        part = group.known_parts.get(key)
    if part is None:  # unknown (or not among the group's wanted pages)
        part = con.execute(
            f"{PART_SELECT} WHERE pages.device_id = ? AND pages.page_id = ? AND parts.name = ?",
            (device, msg.page_id, msg.part),
        ).fetchone()
    return part


def collect_chunk(
    con: Connection, store: Store, group: Group, index: int, msg: ChunkHeader, body: bytes
) -> None:
    """Collect a (checked) chunk for its part; written by :func:`receive`."""
    part = _find_part(con, group, msg)
    if part is None or part["batch_id"] != msg.batch_id:
        raise Rejected("unknown_part", f"page {msg.page_id} part {msg.part}", msg.batch_id)
    if part["sha256"] != msg.part_sha256 or part["size"] != msg.part_size:
        raise Rejected("conflict", f"chunk names another version of {msg.part}", msg.batch_id)
    if part["state"] == "committed":
        return  # a duplicate after the commit: the receipt already went out
    if msg.offset + msg.length > part["size"]:
        raise Rejected("bad_message", "chunk runs past the end of its part", msg.batch_id)
    held = group.parts.get(part["id"])
    if held is None:
        final = store.part_path(
            msg.device_id, msg.batch_id, part["page_no"], msg.page_id, msg.part,
            part["media_type"],
        )  # fmt: skip
        held = group.parts[part["id"]] = GroupPart(
            pk=part["id"],
            device=msg.device_id,
            batch_id=msg.batch_id,
            batch_pk=part["batch_pk"],
            page_pk=part["page_pk"],
            page_no=part["page_no"],
            page_id=msg.page_id,
            name=msg.part,
            size=part["size"],
            sha256=part["sha256"],
            final=final,
            last=index,
            msg=msg,
        )
    held.chunks.append((msg.offset, body))
    held.last, held.msg = index, msg


# -- writing, verifying and committing them ---------------------------------------------------


def receive(con: Connection, db: Database, store: Store, group: Group) -> None:
    """Write the group's chunks; place and commit the parts they complete; record the
    ranges of the others. Flushed by the caller before its COMMIT."""
    parts = list(group.parts.values())
    complete = [_covered(con, part) for part in parts]
    # The file work, in this thread: creating files in one directory serializes in the
    # kernel anyway, and I/O threads here only fought over the GIL (measured: no gain
    # with 2-4 threads, a loss with 16).
    placed = _write(store, parts, complete, group.pending)
    ranges_of: list[tuple[int, int, int]] = []
    committed: list[int] = []
    texts: list[tuple[int, str]] = []
    ready = zip(parts, complete, placed, strict=True)
    claimed = claim(
        con, [(part.pk, store.location(part.final)) for part, done, ok in ready if done and ok]
    )
    for part, done, ok in zip(parts, complete, placed, strict=True):
        if not done:
            ranges_of += [(part.pk, offset, len(body)) for offset, body in part.chunks]
        elif not ok:
            _refuse_corrupt(con, group, part)
        elif part.pk in claimed:
            text = None
            if part.name == "text":
                text = next((b for o, b in part.chunks if o == 0 and len(b) == part.size), None)
            state = committed_state(
                con, db, part.page_id, part.name, part.sha256, part.final, part.page_pk, text,
                texts,
            )  # fmt: skip
            committed.append(part.pk)
            group.touched(part.device, part.batch_id, part.batch_pk, part.last, [state])
            log.debug(
                "device %s batch %s page %d: %s committed (%d bytes)",
                part.device, part.batch_id, part.page_no, part.name, part.size,
            )  # fmt: skip
    if texts:
        db.index_texts(con, texts)
    if ranges_of:
        con.executemany(
            'INSERT INTO chunks(part_pk, "offset", length) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
            ranges_of,
        )
    if committed:  # ranges recorded by earlier groups
        con.executemany("DELETE FROM chunks WHERE part_pk = ?", [(pk,) for pk in committed])


def _covered(con: Connection, part: GroupPart) -> bool:
    """Whether the group's chunks, with the ranges earlier groups recorded, make the part."""
    ranges = [(offset, offset + len(body)) for offset, body in part.chunks]
    if not chunking.covered(ranges, part.size):  # else: no need to ask
        have = con.execute(
            'SELECT "offset", "offset" + length FROM chunks WHERE part_pk = ?', (part.pk,)
        ).fetchall()
        ranges += [(r[0], r[1]) for r in have]
    return chunking.covered(ranges, part.size)


def _write(
    store: Store, parts: list[GroupPart], complete: list[bool], pending: Pending
) -> list[bool]:
    """Write each part's chunks of this group; verify and place those they complete
    (False: it fails its sha256, and its partial file is gone)."""
    placed = []
    for part, done in zip(parts, complete, strict=True):
        store.write(part.final, part.size, part.chunks, pending)
        placed.append(done and store.place(part.final, part.sha256, part.size, pending))
    return placed


def _refuse_corrupt(con: Connection, group: Group, part: GroupPart) -> None:
    """A complete part that fails its sha256: its ranges go, staff are alerted, the device
    is told to send it again."""
    con.execute("DELETE FROM chunks WHERE part_pk = ?", (part.pk,))
    where = f"{part.batch_id}/{part.page_id}/{part.name}"
    group.alerts.append(("corrupt_part", where, part.device))
    detail = f"{part.name} of page {part.page_id} fails its sha256; send it again"
    group.rejected(
        part.last, part.device, "chunk", part.msg, Rejected("corrupt", detail, part.batch_id)
    )


def commit_part(
    con: Connection,
    db: Database,
    part_pk: int,
    page_id: str,
    name: str,
    sha256: str,
    final: Path,
    page_pk: int,
    text: bytes | None = None,
    location: str | None = None,
) -> PartState | None:
    """Mark a verified, placed part committed (with the group's COMMIT); its ranges are
    the caller's to delete. The conditional UPDATE is the claim: None when the part
    already was committed. ``text``: the verified bytes of a text part, if at hand;
    ``location``: where the store keeps it (default: ``final``)."""
    if part_pk not in claim(con, [(part_pk, location or str(final))]):
        return None
    return committed_state(con, db, page_id, name, sha256, final, page_pk, text)


def claim(con: Connection, parts: list[tuple[int, str]]) -> set[int]:
    """Mark parts (id, location: :meth:`Store.location`) committed unless they already
    are, in one statement per 300 parts (round trips on PostgreSQL); the ids this call claimed."""
    claimed: set[int] = set()
    now = time.time()
    for start in range(0, len(parts), 300):
        some = parts[start : start + 300]
        cases = " ".join("WHEN ? THEN ?" for _ in some)
        marks = ", ".join("?" * len(some))
        sql = (
            f"UPDATE parts SET state = 'committed', path = CASE id {cases} END,"  # noqa: S608
            f" committed_at = ?, claimed_at = NULL WHERE id IN ({marks})"  # (placeholders)
            " AND state != 'committed' RETURNING id"
        )
        args: list[object] = [v for pk, where in some for v in (pk, where)]
        rows = con.execute(sql, [*args, now, *(pk for pk, _ in some)]).fetchall()
        claimed |= {int(r[0]) for r in rows}
    return claimed


def committed_state(
    con: Connection,
    db: Database,
    page_id: str,
    name: str,
    sha256: str,
    final: Path,
    page_pk: int,
    text: bytes | None,
    texts: list[tuple[int, str]] | None = None,
) -> PartState:
    """A claimed part's receipt line; a text part's text is indexed now, or added to
    ``texts`` for the caller to index with the others (one batch)."""
    if name == "text":
        data = final.read_bytes() if text is None else text
        decoded = data.decode("utf-8", errors="replace")
        if texts is None:
            db.index_text(con, page_pk, decoded)
        else:
            texts.append((page_pk, decoded))
    return PartState(page_id=page_id, part=name, sha256=sha256, committed=True)


def forget(db: Database, store: Store, group: Group) -> None:
    """After a failed group: every part it touched that is not committed loses its files
    and ranges (the device sends it again). Never raises: the group's error matters."""
    if not group.parts:
        return
    try:
        with db.tx() as con:
            for part in group.parts.values():
                row = con.execute("SELECT state FROM parts WHERE id = ?", (part.pk,)).fetchone()
                if row is None or row["state"] == "committed":
                    continue
                con.execute("DELETE FROM chunks WHERE part_pk = ?", (part.pk,))
                store.discard(part.final)
    except Exception:
        log.exception("could not forget the parts of a failed group")


def batch_complete(con: Connection, batch_pk: int) -> bool:
    """Whether every page of the batch arrived with every part committed (stamped once)."""
    row = con.execute(
        "SELECT b.page_count, b.complete_at,"
        " (SELECT COUNT(*) FROM pages p WHERE p.batch_pk = b.id) AS pages,"
        " (SELECT COUNT(*) FROM parts t JOIN pages p ON p.id = t.page_pk"
        "   WHERE p.batch_pk = b.id AND t.state != 'committed') AS open_parts"
        " FROM batches b WHERE b.id = ?",
        (batch_pk,),
    ).fetchone()
    complete = row["pages"] >= row["page_count"] and row["open_parts"] == 0
    if complete and row["complete_at"] is None:
        con.execute("UPDATE batches SET complete_at = ? WHERE id = ?", (time.time(), batch_pk))
    return bool(complete)
