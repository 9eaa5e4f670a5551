"""Per-commune progress for the fleet dashboard. Read-only, plus the commune label of a device.

The commune of a scan station is, in this order: the label an admin set on the device
(``devices.commune``, ``PUT /api/v1/devices/{id}``); else the OrganId of the hồ sơ its pages
were described in (the most used one); else none ("chưa xác định"). Per commune: devices,
pages received (every travelling part committed), pages described in a văn bản, pages flagged
for review, and pages received per day over the last 30 days (numbers: the web layer draws
them as a small SVG bar chart, ``server.web.bar_chart``). No HTML here.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from server.archive import audit
from server.archive.review import REVIEW_FLAGS
from server.store.db import Database

DAYS = 30
UNASSIGNED = ""


@dataclass
class CommuneProgress:
    commune: str  # "" = not known yet
    devices: list[str] = field(default_factory=list)
    pages: int = 0  # pages announced by a manifest
    pages_received: int = 0
    pages_described: int = 0
    pages_flagged: int = 0
    per_day: list[int] = field(default_factory=lambda: [0] * DAYS)  # oldest first, today last

    def as_dict(self) -> dict[str, Any]:
        return {
            "commune": self.commune,
            "devices": self.devices,
            "pages": self.pages,
            "pages_received": self.pages_received,
            "pages_described": self.pages_described,
            "pages_flagged": self.pages_flagged,
            "per_day": self.per_day,
        }


def device_communes(db: Database) -> dict[str, str]:
    """device_id → commune (see the module docstring); "" when not known."""
    con = db.read()
    labels = {
        r["device_id"]: r["commune"] for r in con.execute("SELECT device_id, commune FROM devices")
    }
    organs: dict[str, Counter[str]] = defaultdict(Counter)
    for r in con.execute(
        "SELECT p.device_id, h.organ_id, COUNT(*) AS n FROM pages p"
        " JOIN van_ban_pages vp ON vp.page_pk = p.id JOIN van_ban v ON v.id = vp.van_ban_id"
        " JOIN ho_so h ON h.ma_ho_so = v.ma_ho_so GROUP BY p.device_id, h.organ_id"
    ):
        organs[r["device_id"]][r["organ_id"]] += int(r["n"])
    out: dict[str, str] = {}
    for device in set(labels) | set(organs):
        label = (labels.get(device) or "").strip()
        if not label and organs.get(device):
            label = organs[device].most_common(1)[0][0]
        out[device] = label
    return out


def communes(db: Database, today: dt.date | None = None) -> list[CommuneProgress]:
    today = today or dt.date.today()
    first = today - dt.timedelta(days=DAYS - 1)
    since = time.mktime(first.timetuple())
    of_device = device_communes(db)
    out: dict[str, CommuneProgress] = {}
    listed: set[str] = set()  # a province's 1,000 stations: no list scan per row

    def entry(device: str) -> CommuneProgress:
        name = of_device.get(device, UNASSIGNED)
        found = out.get(name)
        if found is None:
            found = out[name] = CommuneProgress(name)
        if device not in listed:
            listed.add(device)
            found.devices.append(device)
        return found

    con = db.read()
    for r in con.execute("SELECT device_id FROM devices ORDER BY device_id"):
        entry(r["device_id"])
    described = {r[0] for r in con.execute("SELECT DISTINCT page_pk FROM van_ban_pages")}
    # A page is received when every part that travels (all but the capture) is committed;
    # its day is that of its last such commit.
    rows = con.execute(
        "SELECT p.id, p.device_id, p.flags,"
        " SUM(CASE WHEN t.state != 'committed' AND t.name != 'capture' THEN 1 ELSE 0 END)"
        " AS open_parts,"
        " MAX(CASE WHEN t.name != 'capture' THEN t.committed_at END) AS received_at"
        " FROM pages p LEFT JOIN parts t ON t.page_pk = p.id GROUP BY p.id"
    )
    for r in rows:
        c = entry(r["device_id"])
        c.pages += 1
        if r["id"] in described:
            c.pages_described += 1
        if any(f in REVIEW_FLAGS for f in json.loads(r["flags"])):
            c.pages_flagged += 1
        if not r["open_parts"] and r["received_at"] is not None:
            c.pages_received += 1
            if r["received_at"] >= since:
                day = (dt.date.fromtimestamp(r["received_at"]) - first).days
                if 0 <= day < DAYS:
                    c.per_day[day] += 1
    for c in out.values():
        c.devices.sort()
    return sorted(out.values(), key=lambda c: (c.commune == UNASSIGNED, c.commune))


def set_commune(db: Database, device_id: str, commune: str, actor: str, ip: str = "") -> bool:
    """Label a scan station with its commune; False if no such device. Audited."""
    commune = " ".join(commune.split())[:200]
    with db.tx() as con:
        changed = con.execute(
            "UPDATE devices SET commune = ? WHERE device_id = ?", (commune, device_id)
        ).rowcount
        if changed:
            audit.append(con, actor, "device.commune", device_id, {"commune": commune}, ip)
    return bool(changed)
