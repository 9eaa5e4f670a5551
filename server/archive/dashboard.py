"""What the staff dashboard shows, read in a fixed number of queries whatever the number of
batches (the first version read every page of 50 batches, two queries a page: 900 queries
for 50 batches of 6 pages). Data only; the web layer renders it.

It must not write, and it shows only what server.archive.access lets the user read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from server.archive import access, fleet_view, progress
from server.archive.auth import Principal
from server.archive.catalog import Catalog

BATCHES = 200  # listed
PREVIEW_BATCHES = 50  # of which these show thumbnails
PREVIEWS_PER_BATCH = 6

_PREVIEWS = (
    "SELECT id, batch_pk, page_no, has_image FROM ("
    " SELECT p.id, p.batch_pk, p.page_no,"
    "  ROW_NUMBER() OVER (PARTITION BY p.batch_pk ORDER BY p.page_no) AS n,"
    "  CASE WHEN EXISTS (SELECT 1 FROM parts t WHERE t.page_pk = p.id"
    "   AND t.name IN ('archival', 'thumb') AND t.state = 'committed') THEN 1 ELSE 0 END"
    "  AS has_image"
    " FROM pages p WHERE p.batch_pk IN ("
)


@dataclass(frozen=True)
class Preview:
    id: int
    page_no: int
    image: bool  # something to show (the archival page or the station's thumbnail)


@dataclass
class Overview:
    batches: list[dict[str, Any]]
    previews: dict[int, list[Preview]]
    fleet: fleet_view.FleetPage  # the stations needing attention first, a page at a time
    communes: list[progress.CommuneProgress] = field(default_factory=list)


def previews(
    catalog: Catalog, batch_ids: list[int], per_batch: int = PREVIEWS_PER_BATCH
) -> dict[int, list[Preview]]:
    """The first ``per_batch`` pages of each batch, in one query."""
    out: dict[int, list[Preview]] = {b: [] for b in batch_ids}
    if not batch_ids:
        return out
    marks = ",".join("?" * len(batch_ids))
    rows = catalog.db.read().execute(
        _PREVIEWS + marks + ")) x WHERE n <= ? ORDER BY batch_pk, page_no",
        (*batch_ids, per_batch),
    )
    for r in rows:
        out[r["batch_pk"]].append(Preview(r["id"], r["page_no"], bool(r["has_image"])))
    return out


def overview(
    catalog: Catalog, principal: Principal, *, state: str = "", commune: str = "", name: str = "",
    page: int = 1,
) -> Overview:  # fmt: skip
    """The dashboard; ``state``, ``commune``, ``name`` and ``page`` choose the fleet table's
    rows (``fleet_view.dashboard``)."""
    db = catalog.db
    listed = catalog.batches(limit=BATCHES)
    mine = access.readable_batches(db, principal, [b["id"] for b in listed])
    batches = [b for b in listed if b["id"] in mine]
    shown = previews(catalog, [b["id"] for b in batches[:PREVIEW_BATCHES]])
    readable = access.readable_pages(db, principal, [p.id for ps in shown.values() for p in ps])
    shown = {b: [p for p in ps if p.id in readable] for b, ps in shown.items()}
    return Overview(
        batches=batches,
        previews=shown,
        fleet=fleet_view.dashboard(db, state=state, commune=commune, name=name, page=page),
        communes=progress.communes(db),
    )
