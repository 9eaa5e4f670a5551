"""The fleet as a provincial admin reads it: the stations needing attention first, counts per
state, the rest a page at a time (issue 19: 1,000 stations; a page of 1,000 table rows took
Chromium a second to lay out, docs/benchmarks.md "1,000 stations").

Owns: what counts as needing attention (the thresholds below), the order of the list, the
filters (state, commune, a name typed with or without diacritics) and the paging — for the
dashboard's fleet table (what the stations report, ``devices``, beside their registry state)
and for the admin's registry (``server.fleet.registry`` stations, handed in by the web layer).
Must not: write, or build HTML (the web layer renders).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from server.store.db import Database, fold

PER_PAGE = 50

# What needs attention, most urgent first (a row is ordered by the first state it is in).
# A commune office switches its station off at night and over a weekend: being offline is
# not a fault; silent for longer than a long weekend is.
OFFLINE_LONG_S = 72 * 3600
# The agent sends what it scans within the day on a working link; 1,000 pages waiting is
# two to three days of scanning that did not leave the commune.
BACKLOG_PAGES = 1000
# The agent refuses a new scan before its disk cannot hold it (agent.capture.scan.check_disk);
# below 2 GiB (~2,000 archival pages with their captures) that day is close.
DISK_LOW_BYTES = 2 * 1024**3

DEVICE_ATTENTION = ("error", "offline_long", "disk_low", "backlog", "pending", "revoked")
# Filters that are not faults: the station's own report.
DEVICE_OTHER = ("online", "offline")
REGISTRY_STATES = ("pending", "active", "revoked")  # registry order: pending needs a visit

T = TypeVar("T")

# What every station said (devices) beside its registry entry, and the registered stations
# that never said anything: one statement, both engines (no FULL JOIN in older SQLite).
_FLEET = (
    "SELECT d.device_id, d.status, d.last_seen, d.agent_version, d.commune, d.telemetry,"
    " s.state AS registry_state, s.commune AS registry_commune"
    " FROM devices d LEFT JOIN stations s ON s.device_id = d.device_id"
    " UNION ALL"
    " SELECT s.device_id, 'unknown', NULL, '', '', '{}', s.state, s.commune FROM stations s"
    " WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.device_id = s.device_id)"
)


@dataclass
class FleetPage:
    """One page of a fleet list and what the filters bar shows."""

    rows: list[Any]
    counts: dict[str, int]  # per state, over the whole fleet (not the filtered list)
    total: int  # the whole fleet
    matching: int  # rows the filters let through
    page: int  # 1-based, clamped to [1, pages]
    pages: int
    state: str = ""
    commune: str = ""
    name: str = ""
    attention: int = 0  # rows in at least one attention state
    states: tuple[str, ...] = field(default_factory=tuple)  # the filterable states, in order


def device_states(
    status: str, last_seen: float | None, telemetry: dict[str, Any], registry_state: str | None,
    now: float,
) -> list[str]:  # fmt: skip
    """Every state a station of the dashboard is in: its attention states in
    ``DEVICE_ATTENTION`` order, then ``online``/``offline`` as it last said."""
    out = []
    if telemetry.get("last_error"):
        out.append("error")
    if last_seen is not None and now - last_seen > OFFLINE_LONG_S:
        out.append("offline_long")
    disk = telemetry.get("disk_free_bytes")
    if isinstance(disk, int | float) and not isinstance(disk, bool) and disk < DISK_LOW_BYTES:
        out.append("disk_low")
    queue = telemetry.get("queue_pages")
    if isinstance(queue, int | float) and not isinstance(queue, bool) and queue >= BACKLOG_PAGES:
        out.append("backlog")
    if registry_state in ("pending", "revoked"):
        out.append(registry_state)
    if status in DEVICE_OTHER:
        out.append(status)
    return out


def paged(
    items: Iterable[T], states_of: Callable[[T], Sequence[str]], name_of: Callable[[T], str],
    commune_of: Callable[[T], str], order: Sequence[str], *, attention: Sequence[str],
    state: str = "", commune: str = "", name: str = "", page: int = 1, per_page: int = PER_PAGE,
) -> FleetPage:  # fmt: skip
    """Count ``items`` per state of ``order``, keep those the filters let through, order them
    (the first of ``attention`` they are in, then by name; the rest by name) and cut a page.

    ``name`` matches a part of the name or of the commune, with or without diacritics
    (``fold`` on both sides); ``commune`` is the commune exactly as stored."""
    rank = {s: i for i, s in enumerate(attention)}
    counts = dict.fromkeys(order, 0)
    needle = fold(" ".join(name.split()))
    kept: list[tuple[int, str, T]] = []
    total = flagged = 0
    for item in items:
        total += 1
        states = states_of(item)
        for s in states:
            if s in counts:
                counts[s] += 1
        if any(s in attention for s in states):
            flagged += 1
        if state and state not in states:
            continue
        if commune and commune_of(item) != commune:
            continue
        if needle and needle not in fold(name_of(item)) and needle not in fold(commune_of(item)):
            continue
        first = min((rank[s] for s in states if s in rank), default=len(rank))
        kept.append((first, name_of(item), item))
    kept.sort(key=lambda k: (k[0], k[1]))
    pages = max(1, -(-len(kept) // per_page))
    page = min(max(1, page), pages)
    window = kept[(page - 1) * per_page : page * per_page]
    return FleetPage(
        rows=[k[2] for k in window], counts=counts, total=total, matching=len(kept), page=page,
        pages=pages, state=state if state in counts else "", commune=commune, name=name,
        attention=flagged, states=tuple(order),
    )  # fmt: skip


def dashboard(
    db: Database, *, state: str = "", commune: str = "", name: str = "", page: int = 1,
    now: float | None = None,
) -> FleetPage:  # fmt: skip
    """The dashboard's fleet table: every station that reported (``devices``) or is
    registered (``stations``), with its report, registry state and the batches, pages and
    described pages of the stations on this page — two queries whatever the fleet's size."""
    now = time.time() if now is None else now
    rows: list[dict[str, Any]] = []
    for r in db.read().execute(_FLEET):
        row = {
            "device_id": r["device_id"], "status": r["status"], "last_seen": r["last_seen"],
            "agent_version": r["agent_version"], "commune": r["commune"] or "",
            "telemetry": json.loads(r["telemetry"]), "registry_state": r["registry_state"],
        }  # fmt: skip
        # The label staff gave the station on the dashboard, else the registry's commune.
        row["place"] = row["commune"] or r["registry_commune"] or ""
        row["states"] = device_states(
            row["status"], row["last_seen"], row["telemetry"], row["registry_state"], now
        )
        rows.append(row)
    found = paged(
        rows, lambda r: r["states"], lambda r: r["device_id"], lambda r: r["place"],
        DEVICE_ATTENTION + DEVICE_OTHER, attention=DEVICE_ATTENTION, state=state,
        commune=commune, name=name, page=page,
    )  # fmt: skip
    _counts(db, found.rows)
    return found


def _counts(db: Database, rows: list[dict[str, Any]]) -> None:
    """Batches, pages and pages described in a văn bản, for the shown rows only."""
    for row in rows:
        row.update(batches=0, pages=0, described=0)
    if not rows:
        return
    by_id = {r["device_id"]: r for r in rows}
    marks = ",".join("?" * len(by_id))
    sql = (
        "SELECT 'batches', device_id, COUNT(*) FROM batches WHERE device_id IN (" + marks + ")"  # noqa: S608 - placeholders
        " GROUP BY device_id UNION ALL"
        " SELECT 'pages', device_id, COUNT(*) FROM pages WHERE device_id IN (" + marks + ")"
        " GROUP BY device_id UNION ALL"
        " SELECT 'described', p.device_id, COUNT(DISTINCT p.id) FROM pages p"
        " JOIN van_ban_pages v ON v.page_pk = p.id WHERE p.device_id IN (" + marks + ")"
        " GROUP BY p.device_id"
    )
    for r in db.read().execute(sql, tuple(by_id) * 3):
        by_id[r[1]][r[0]] = int(r[2])


def station(db: Database, device_id: str, now: float | None = None) -> dict[str, Any] | None:
    """One station as its dashboard row says it (same keys, with its counts), plus
    ``first_seen``; None when it neither reported nor is registered."""
    now = time.time() if now is None else now
    sql = (
        "SELECT f.*, d.first_seen FROM (" + _FLEET + ") f"  # noqa: S608 - a constant
        " LEFT JOIN devices d ON d.device_id = f.device_id WHERE f.device_id = ?"
    )
    found = db.read().execute(sql, (device_id,)).fetchone()
    if found is None:
        return None
    row = {
        "device_id": found["device_id"], "status": found["status"],
        "last_seen": found["last_seen"], "first_seen": found["first_seen"],
        "agent_version": found["agent_version"], "commune": found["commune"] or "",
        "telemetry": json.loads(found["telemetry"]), "registry_state": found["registry_state"],
        "place": found["commune"] or found["registry_commune"] or "",
    }  # fmt: skip
    row["states"] = device_states(
        row["status"], row["last_seen"], row["telemetry"], row["registry_state"], now
    )
    _counts(db, [row])
    return row
