"""Pages scanned again, put back where they belong (issue 16).

When the archive asks for a page again (server.archive.rescan) the station scans that sheet
as a batch of its own whose metadata names the page it replaces (``replaces_batch``: the
batch id, ``replaces_page_no``: the page number; agent ``rescan_page``). That batch travels
and is ingested like any other. Once it is complete, :func:`place_new` (a sweep of the
running server, and ``sohoa-server import``) places it: page k of the new batch takes the
place of page ``replaces_page_no + k - 1`` of the named batch of the same station.

Placing means, in one transaction per batch:

- a ``page_replacements`` row (provenance: which page, which re-scan request it answers,
  when; the request is the newest for the old page);
- every văn bản holding the old page holds the new one at the same position (``seq``), so
  hồ sơ views and exports carry the new scan; the old page stays in its batch and store,
  untouched (nothing is deleted, nothing is overwritten);
- an audit row ``page.replaced``.

Access: a new page can never be more open than the page it replaces, nor the old page more
open than the new one's place — server.archive.access reads the rule of every scan of one
sheet together (:func:`groups`; a replacement of a replacement leads back to the first).
A batch that names a page the archive does not hold is recorded with its problem and placed
nowhere (a person looks at it).

Owns ``page_replacements``. Must not: change pages, parts or files; run from the ingest room
(ingest must not import the archive: the sweep runs in ``server.app``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from server.archive import audit
from server.store.db import Connection, Database

log = logging.getLogger(__name__)
MAX_CHAIN = 50  # re-scans of re-scans followed at most this far


@dataclass
class Placed:
    batch_pk: int
    pages: list[tuple[int, int | None]] = field(default_factory=list)  # (new, old or None)
    problems: list[str] = field(default_factory=list)


def _wanted(metadata: str) -> tuple[str, int] | None:
    try:
        meta = json.loads(metadata or "{}")
        batch, page_no = str(meta["replaces_batch"]), int(meta["replaces_page_no"])
    except (ValueError, KeyError, TypeError):
        return None
    return (batch, page_no) if batch and page_no >= 1 else None


def place_new(db: Database) -> list[Placed]:
    """Place every complete re-scan batch not placed before. Safe to run at any time, from
    several processes: a page is placed once (its ``page_replacements`` row is the claim)."""
    todo = [
        (int(r["id"]), r["device_id"], r["metadata"])
        for r in db.read().execute(
            "SELECT b.id, b.device_id, b.metadata FROM batches b"
            " WHERE b.complete_at IS NOT NULL AND b.metadata LIKE ?"
            " AND EXISTS (SELECT 1 FROM pages p WHERE p.batch_pk = b.id AND NOT EXISTS"
            " (SELECT 1 FROM page_replacements r WHERE r.page_pk = p.id)) ORDER BY b.id",
            ('%"replaces_batch"%',),
        )
    ]
    done = []
    for batch_pk, device, metadata in todo:
        wanted = _wanted(metadata)
        if wanted is None:
            continue
        with db.tx() as con:
            placed = _place(con, batch_pk, device, *wanted)
        if placed.pages:
            done.append(placed)
            log.info("re-scan batch %d placed: %s %s", batch_pk, placed.pages, placed.problems)
    return done


def _place(con: Connection, batch_pk: int, device: str, old_batch: str, first: int) -> Placed:
    placed = Placed(batch_pk)
    target = con.execute(
        "SELECT id FROM batches WHERE device_id = ? AND batch_id = ?", (device, old_batch)
    ).fetchone()
    new_pages = con.execute(
        "SELECT p.id, p.page_no FROM pages p WHERE p.batch_pk = ? AND NOT EXISTS"
        " (SELECT 1 FROM page_replacements r WHERE r.page_pk = p.id) ORDER BY p.page_no",
        (batch_pk,),
    ).fetchall()
    now = time.time()
    for new in new_pages:
        page_no = first + int(new["page_no"]) - 1
        old = (
            None
            if target is None
            else con.execute(
                "SELECT id FROM pages WHERE batch_pk = ? AND page_no = ?", (target["id"], page_no)
            ).fetchone()
        )
        if old is None:
            problem = f"batch {old_batch[:8]} of {device} has no page {page_no} here"
            con.execute(
                "INSERT INTO page_replacements(page_pk, placed_at, problem) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (new["id"], now, problem),
            )
            placed.problems.append(problem)
            placed.pages.append((int(new["id"]), None))
            continue
        old_pk = int(old["id"])
        request = con.execute(
            "SELECT max(id) FROM rescan_requests WHERE page_pk = ?", (old_pk,)
        ).fetchone()[0]
        van_ban = [
            int(r["van_ban_id"])
            for r in con.execute(
                "SELECT van_ban_id FROM van_ban_pages WHERE page_pk = ?", (old_pk,)
            ).fetchall()
        ]
        claimed = con.execute(
            "INSERT INTO page_replacements(page_pk, replaces_pk, request_id, placed_at, van_ban)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (new["id"], old_pk, request, now, json.dumps(van_ban)),
        ).rowcount
        if claimed != 1:
            continue
        con.execute("UPDATE van_ban_pages SET page_pk = ? WHERE page_pk = ?", (new["id"], old_pk))
        audit.append(
            con,
            "ingest",
            "page.replaced",
            str(old_pk),
            {"by": int(new["id"]), "request": request, "van_ban": van_ban},
        )
        placed.pages.append((int(new["id"]), old_pk))
    return placed


def groups(con: Connection, page_ids: Iterable[int]) -> dict[int, set[int]]:
    """For each page of ``page_ids`` that replaced another or was replaced: every other page
    that stands for the same sheet (the pages it replaced, back to the first scan, and those
    that replaced it). Access reads rules through this: a sheet is as closed as the most
    closed place any of its scans holds — the old page leaves its văn bản when its
    replacement takes its place, and must not become more open for it."""
    edges: list[tuple[int, int]] = []
    seen: set[int] = set()
    frontier = set(page_ids)
    for _ in range(MAX_CHAIN):
        ask = sorted(frontier - seen)
        if not ask:
            break
        seen.update(ask)
        frontier = set()
        for i in range(0, len(ask), 500):
            chunk = ask[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for r in con.execute(
                "SELECT page_pk, replaces_pk FROM page_replacements"  # noqa: S608
                f" WHERE replaces_pk IS NOT NULL AND (page_pk IN ({marks})"
                f" OR replaces_pk IN ({marks}))",
                [*chunk, *chunk],
            ):
                edge = (int(r["page_pk"]), int(r["replaces_pk"]))
                edges.append(edge)
                frontier.update(edge)
    return _components(edges, set(page_ids))


def all_groups(con: Connection) -> dict[int, set[int]]:
    """:func:`groups` of every page in a replacement (for lists: one pass)."""
    edges = [
        (int(r["page_pk"]), int(r["replaces_pk"]))
        for r in con.execute(
            "SELECT page_pk, replaces_pk FROM page_replacements WHERE replaces_pk IS NOT NULL"
        )
    ]
    return components(edges)


def components(edges: list[tuple[int, int]]) -> dict[int, set[int]]:
    """:func:`all_groups` of the replacement ``edges`` (page, the page it replaced) that a
    caller read itself (server.archive.access.page_filter, with the hồ sơ's pages)."""
    return _components(edges, None)


def _components(edges: list[tuple[int, int]], wanted: set[int] | None) -> dict[int, set[int]]:
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        parent[find(a)] = find(b)
    members: dict[int, set[int]] = {}
    for x in list(parent):
        members.setdefault(find(x), set()).add(x)
    return {x: members[find(x)] - {x} for x in parent if wanted is None or x in wanted}


def of_page(db: Database, page_pk: int) -> dict[str, Any]:
    """What the viewer says about a page: the page that replaced it (newest), and the page
    it replaced, each with its batch and number."""
    con = db.read()
    select = (
        "SELECT r.page_pk, r.replaces_pk, r.request_id, r.placed_at, p.page_no, b.batch_id,"
        " p.batch_pk FROM page_replacements r JOIN pages p ON p.id = {side}"
        " JOIN batches b ON b.id = p.batch_pk WHERE {key} = ? ORDER BY r.page_pk DESC LIMIT 1"
    )
    by = con.execute(select.format(side="r.page_pk", key="r.replaces_pk"), (page_pk,)).fetchone()
    of = con.execute(select.format(side="r.replaces_pk", key="r.page_pk"), (page_pk,)).fetchone()
    return {"replaced_by": dict(by) if by else None, "replaces": dict(of) if of else None}


def in_batch(db: Database, batch_pk: int) -> dict[int, dict[str, Any]]:
    """The batch's pages that were scanned again: old page id -> the newest replacement."""
    rows = db.read().execute(
        "SELECT r.replaces_pk, r.page_pk, r.placed_at, np.page_no, nb.batch_id"
        " FROM page_replacements r JOIN pages op ON op.id = r.replaces_pk"
        " JOIN pages np ON np.id = r.page_pk JOIN batches nb ON nb.id = np.batch_pk"
        " WHERE op.batch_pk = ? ORDER BY r.page_pk",
        (batch_pk,),
    )
    return {int(r["replaces_pk"]): dict(r) for r in rows}


def of_batch(db: Database, batch_pk: int) -> dict[str, Any] | None:
    """For a re-scan batch: the batch and page its first page replaced (None otherwise)."""
    row = (
        db.read()
        .execute(
            "SELECT r.replaces_pk, op.page_no, ob.batch_id, ob.id AS batch_pk"
            " FROM page_replacements r JOIN pages np ON np.id = r.page_pk"
            " JOIN pages op ON op.id = r.replaces_pk JOIN batches ob ON ob.id = op.batch_pk"
            " WHERE np.batch_pk = ? ORDER BY np.page_no LIMIT 1",
            (batch_pk,),
        )
        .fetchone()
    )
    return dict(row) if row else None
