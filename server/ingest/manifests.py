"""Manifests: a batch announced by its device — upsert the batch, its pages and their parts
(each key created on the device; same key and same sha256 is "already have", same key and
different bytes is a conflict for staff), and commit the empty parts at once.

Owns: ``batches``, ``pages`` and the announced ``parts`` rows. Must not: write a part's
bytes (``parts`` does, from chunks) or let a refused manifest leave rows behind (the caller
runs it in a SAVEPOINT and rolls it back alone).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time

from protocol import signing
from protocol.messages import Manifest, PageEntry, PartRef, PartState
from server.fleet import registry
from server.ingest import devices, limits, parts
from server.ingest.grouping import Group, Rejected, conflict
from server.store.db import Connection, Database, Row
from server.store.files import Store, StoreError

log = logging.getLogger(__name__)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def apply(
    con: Connection,
    db: Database,
    store: Store,
    group: Group,
    index: int,
    msg: Manifest,
    station_limits: limits.StationLimits,
) -> None:
    """Upsert the batch, its pages and parts; commit (and receipt) empty parts. A manifest
    outside what a station may send (server.ingest.limits: part types and sizes, pages per
    batch, bytes per day) is refused whole, with the reason the station logs."""
    device = msg.device_id
    _check_station(con, msg)
    _check_fonds(con, msg)
    devices.touch(con, device)
    refusal = limits.check_manifest(msg, station_limits)
    if refusal is not None:
        raise Rejected(refusal.reason, refusal.detail, msg.batch_id)
    batch_pk = _upsert_batch(con, msg)
    # Every page, then every part, in one batch and one read each (a round trip per
    # statement on PostgreSQL); a conflict anywhere rolls the whole manifest back.
    pages = _upsert_pages(con, msg, batch_pk)
    refusal = limits.check_daily(con, device, _new_parts(con, msg, pages), station_limits)
    if refusal is not None:
        raise Rejected(refusal.reason, refusal.detail, msg.batch_id)
    held = _upsert_parts(con, msg, pages)
    committed_now = _commit_empty_parts(con, db, store, group, msg, pages, held)
    group.touched(device, msg.batch_id, batch_pk, index, committed_now)
    log.info("device %s batch %s: manifest with %d page(s)", device, msg.batch_id, len(msg.pages))


def _check_station(con: Connection, msg: Manifest) -> None:
    """A station in the fleet registry (server/fleet/registry.py) must be active and must have
    signed the manifest with its enrolled key; a revoked one is refused outright. A device
    the registry does not know has no broker identity under dynamic security; it can only
    come through a broker that authenticates without it (the embedded anonymous broker, a
    legacy password file), and over USB it never gets this far (bundle.check_station)."""
    trust = registry.manifest_trust(con, msg.device_id)
    if trust is None:
        return
    state, public_key = trust
    if state != "active":
        raise Rejected("refused", f"station {msg.device_id} is {state}", msg.batch_id, True)
    if not signing.verify(msg, msg.signature, public_key):
        raise Rejected(
            "refused", "manifest not signed by the station's enrolled key", msg.batch_id, True
        )


def _check_fonds(con: Connection, msg: Manifest) -> None:
    """A manifest naming a fonds: the station must be assigned it (server.fleet.registry)."""
    if msg.fonds is None:
        return
    allowed = registry.station_fonds(con, msg.device_id) or ()
    if msg.fonds not in allowed:
        # Never file a batch under a fonds the admin did not give this station.
        log.warning("device %s batch %s: fonds %s refused (assigned: %s)", msg.device_id,
                    msg.batch_id, msg.fonds, ", ".join(allowed) or "none")  # fmt: skip
        raise Rejected(
            "refused",
            f"station {msg.device_id} is not assigned fonds {msg.fonds}"
            f" (assigned: {', '.join(allowed) or 'none'})",
            msg.batch_id,
            True,
        )


# mã hồ sơ = mã định danh (≤13) . năm (4 digits) . ký hiệu, as server.archive.coversheets reads it
_MA_HO_SO = re.compile(r"^(?P<organ>[0-9A-Za-z.]{1,13}?)\.\d{4}\.[^|]{1,20}$")


def _fonds_of(con: Connection, msg: Manifest) -> str | None:
    """The manifest's fonds (checked above); else the fonds of the first cover sheet's
    organisation (mã hồ sơ → organ id → fonds), when the station is assigned it; else the
    station's default (its first); else none."""
    if msg.fonds is not None:
        return msg.fonds
    allowed = registry.station_fonds(con, msg.device_id) or ()
    for page in sorted(msg.pages, key=lambda p: p.page_no):
        sheet = page.decisions.get("cover_sheet") or {}
        found = _MA_HO_SO.match(str(sheet.get("ma_ho_so") or "")) if sheet.get("found") else None
        if found:
            row = con.execute(
                "SELECT code FROM fonds WHERE organ_id = ?", (found["organ"],)
            ).fetchone()
            if row is not None and row[0] in allowed:
                return str(row[0])
            break
    return allowed[0] if allowed else None


def _upsert_batch(con: Connection, msg: Manifest) -> int:
    """The batch's row id; a later manifest may only raise its page count."""
    con.execute(
        "INSERT INTO batches(device_id, batch_id, created_at, received_at, page_count,"
        " source, scanner, profile, agent_version, metadata, fonds_code)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            msg.device_id,
            msg.batch_id,
            msg.created_at,
            time.time(),
            msg.page_count,
            msg.source,
            msg.scanner,
            msg.profile,
            msg.agent_version,
            json.dumps(msg.metadata, ensure_ascii=False),
            _fonds_of(con, msg),
        ),
    )
    batch = con.execute(
        "SELECT id, page_count FROM batches WHERE device_id = ? AND batch_id = ?",
        (msg.device_id, msg.batch_id),
    ).fetchone()
    if msg.page_count > batch["page_count"]:
        con.execute("UPDATE batches SET page_count = ? WHERE id = ?", (msg.page_count, batch["id"]))
    return int(batch["id"])


def _page_values(batch_pk: int, device: str, page: PageEntry) -> tuple[object, ...]:
    return (
        batch_pk,
        device,
        page.page_id,
        page.page_no,
        page.capture_sha256,
        page.capture_size,
        page.dpi,
        page.width_px,
        page.height_px,
        int(page.colour),
        json.dumps(list(page.flags)),
        page.ocr_confidence,
        json.dumps(page.decisions, ensure_ascii=False),
        page.source_name,
    )


def _upsert_pages(con: Connection, msg: Manifest, batch_pk: int) -> dict[str, Row]:
    """The manifest's page rows by page id; a page held with another capture is a conflict."""
    device = msg.device_id
    con.executemany(
        "INSERT INTO pages(batch_pk, device_id, page_id, page_no, capture_sha256,"
        " capture_size, dpi, width_px, height_px, colour, flags, ocr_confidence,"
        " decisions, source_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        [_page_values(batch_pk, device, page) for page in msg.pages],
    )
    rows = {
        r["page_id"]: r
        for r in parts.select_in(
            con,
            "SELECT id, page_id, batch_pk, capture_sha256 FROM pages"
            " WHERE device_id = ? AND page_id IN",
            [device],
            [page.page_id for page in msg.pages],
        )
    }
    for page in msg.pages:
        row = rows[page.page_id]
        if row["capture_sha256"] != page.capture_sha256 or row["batch_pk"] != batch_pk:
            raise conflict(msg.batch_id, f"page {page.page_id} capture differs")
    return rows


def _new_parts(con: Connection, msg: Manifest, pages: dict[str, Row]) -> list[PartRef]:
    """The manifest's parts the archive has no row for yet (what it adds to the day)."""
    ids = [pages[page.page_id]["id"] for page in msg.pages]
    have = {
        (r["page_pk"], r["name"])
        for r in parts.select_in(con, "SELECT page_pk, name FROM parts WHERE page_pk IN", [], ids)
    }
    return [
        p
        for page in msg.pages
        for p in page.parts
        if (pages[page.page_id]["id"], p.name) not in have
    ]


def _upsert_parts(
    con: Connection, msg: Manifest, pages: dict[str, Row]
) -> dict[tuple[int, str], Row]:
    """The parts' rows by (page row id, part name); a part held with other bytes is a
    conflict."""
    con.executemany(
        "INSERT INTO parts(page_pk, name, sha256, size, media_type)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [
            (pages[page.page_id]["id"], p.name, p.sha256, p.size, p.media_type)
            for page in msg.pages
            for p in page.parts
        ],
    )
    held = {
        (r["page_pk"], r["name"]): r
        for r in parts.select_in(
            con,
            "SELECT id, page_pk, name, sha256, size, state FROM parts WHERE page_pk IN",
            [],
            [pages[page.page_id]["id"] for page in msg.pages],
        )
    }
    for page in msg.pages:
        for part in page.parts:
            row = held[(pages[page.page_id]["id"], part.name)]
            if row["sha256"] != part.sha256 or row["size"] != part.size:
                raise conflict(msg.batch_id, f"page {page.page_id} part {part.name} differs")
    return held


def _commit_empty_parts(
    con: Connection,
    db: Database,
    store: Store,
    group: Group,
    msg: Manifest,
    pages: dict[str, Row],
    held: dict[tuple[int, str], Row],
) -> list[PartState]:
    """An empty part travels in no chunk: it is placed and committed with its manifest."""
    committed_now: list[PartState] = []
    for page in msg.pages:
        row = pages[page.page_id]
        for part in page.parts:
            if part.size != 0 or held[(row["id"], part.name)]["state"] == "committed":
                continue
            if part.sha256 != EMPTY_SHA256:
                raise Rejected("corrupt", "empty part with a non-empty sha256", msg.batch_id)
            path = store.part_path(
                msg.device_id, msg.batch_id, page.page_no, page.page_id, part.name,
                part.media_type,
            )  # fmt: skip
            if not store.place(path, EMPTY_SHA256, 0, group.pending):
                raise StoreError(f"an empty file at {path} does not verify")
            state = parts.commit_part(
                con, db, held[(row["id"], part.name)]["id"], page.page_id, part.name,
                part.sha256, path, row["id"], b"", store.location(path),
            )  # fmt: skip
            if state is not None:
                committed_now.append(state)
    return committed_now
