"""Per-commune progress for the fleet dashboard. Read-only, plus the commune label of a device.

The commune of a scan station is, in this order: the label an admin set on the device
(``devices.commune``, ``PUT /api/v1/devices/{id}``); else the commune it was enrolled for
(``stations.commune``, ``sohoa-server device add --commune``: the place the fleet table
shows beside the station too); else the OrganId of the hồ sơ its pages were described in
(the most used one); else none ("chưa xác định"). Per commune: devices,
pages received (every travelling part committed), pages described in a văn bản, pages flagged
for review, and pages received per day over the last 30 days (numbers: the web layer draws
them as a small SVG bar chart, ``server.web.bar_chart``). No HTML here.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from server.archive import audit
from server.archive.review import REVIEW_FLAGS
from server.store.db import Database

log = logging.getLogger(__name__)

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
    enrolled = {
        r["device_id"]: r["commune"] for r in con.execute("SELECT device_id, commune FROM stations")
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
        label = (labels.get(device) or "").strip() or (enrolled.get(device) or "").strip()
        if not label and organs.get(device):
            label = organs[device].most_common(1)[0][0]
        out[device] = label
    return out


# The dashboard asks for this on every load. At the size of a province (a million pages, four
# parts each) the question is a scan of both tables (bench/progress.py: ~0.6 s of CPU per
# 100,000 pages on SQLite, 2.7 s of wall clock on PostgreSQL at load ~9). So the answer is kept
# per archive and asked again only when something it counts has moved: a page announced (max
# page id), a part committed (max committed_at, indexed) or a hồ sơ or văn bản described (max
# audit id of those actions, indexed); or the day changed. While stations deliver and archivists
# describe, things move every second: the kept answer is then shown for up to ``STALE_OK_S``
# and asked again in the background, so no page load waits on the scan. An admin's new commune
# label for a station is shown at once (the answer is asked again before the page is drawn):
# it is rare and the admin is looking for it. Only the first load of a process waits.
STALE_OK_S = 60.0
# A staff action asks the plan again at once (below), and at a million pages that is ~10 s of
# counting (bench progress on PostgreSQL) the page after the action would wait: "match this
# batch", then nothing. The plan page is not held when the last counting took this long: it
# shows the kept answer, says it is being updated and reloads itself (server.web.plan). The
# API and the thống kê exports always wait: what they give is what is counted now.
WAIT_FOR_ASKING_S = 2.0
_DESCRIBING = ("ho_so.create", "ho_so.edit", "van_ban.create", "van_ban.pages")
_LABELLING = ("device.commune", "station.code")  # an admin's label; an enrolment's commune


@dataclass
class _Kept:
    stamp: tuple[Any, ...]
    at: float
    value: Any
    took: float = 0.0  # seconds the asking took
    refreshing: bool = False
    refresh_started: float = 0.0


_KEPT: dict[tuple[str, str], _Kept] = {}  # (question, archive) -> its kept answer
_KEPT_LOCK = threading.Lock()
_ASKING: dict[tuple[str, str], threading.Event] = {}  # asked with nothing kept yet


def _kept(
    question: str,
    db: Database,
    stamp: tuple[Any, ...],
    urgent: int,
    ask: Callable[[], Any],
    wait: bool = True,
) -> tuple[Any, float]:
    """``ask()``'s answer, kept per archive: asked again when ``stamp`` moved — at once when
    its first ``urgent`` items moved (what a person just did and is looking for), otherwise
    (stations delivering) the kept answer is shown and, ``STALE_OK_S`` after it was asked,
    asked again in the background. With ``wait`` false, a caller that can say so (a page,
    not an export) is not held by an urgent asking that took ``WAIT_FOR_ASKING_S`` or more
    last time: it gets the kept answer at once, asked again in the background. Returns the
    answer and 0.0, or the kept answer and the seconds its update should still take."""
    key = (question, db.url)
    with _KEPT_LOCK:
        kept = _KEPT.get(key)
        if kept is not None and kept.stamp == stamp:
            return kept.value, 0.0
        if kept is not None and kept.stamp[:urgent] == stamp[:urgent]:
            if time.monotonic() - kept.at >= STALE_OK_S and not kept.refreshing:
                _start_refresh(key, kept, stamp, ask)
            return kept.value, 0.0
        if kept is not None and not wait and kept.took >= WAIT_FOR_ASKING_S:
            if not kept.refreshing:
                _start_refresh(key, kept, stamp, ask)
            left = kept.took - (time.monotonic() - kept.refresh_started)
            return kept.value, max(left, 1.0)
        asking = _ASKING.get(key)
        if asking is None:  # ask it here; a load meanwhile waits for this answer
            asking = _ASKING[key] = threading.Event()
            mine = True
        else:
            mine = False
    if not mine:  # asked already (the start-up warm-up, another load): the same answer
        asking.wait()
        with _KEPT_LOCK:
            kept = _KEPT.get(key)
        if kept is not None:
            return kept.value, 0.0
        return ask(), 0.0  # that asking failed: ask again here
    try:
        started = time.monotonic()
        value = ask()
        with _KEPT_LOCK:
            _KEPT[key] = _Kept(stamp, time.monotonic(), value, time.monotonic() - started)
        return value, 0.0
    finally:
        with _KEPT_LOCK:
            del _ASKING[key]
        asking.set()


def _start_refresh(
    key: tuple[str, str], kept: _Kept, stamp: tuple[Any, ...], ask: Callable[[], Any]
) -> None:
    """Ask again in the background (``_KEPT_LOCK`` held)."""
    kept.refreshing = True
    kept.refresh_started = time.monotonic()
    threading.Thread(
        target=_refresh, args=(key, stamp, ask), name=f"{key[0]}-refresh", daemon=True
    ).start()


def _refresh(key: tuple[str, str], stamp: tuple[Any, ...], ask: Callable[[], Any]) -> None:
    started = time.monotonic()
    try:
        value = ask()
    except Exception:
        log.exception("refreshing the %s progress failed", key[0])
        with _KEPT_LOCK:
            kept = _KEPT.get(key)
            if kept is not None:
                kept.refreshing = False
                kept.at = time.monotonic()  # try again after another STALE_OK_S
        return
    with _KEPT_LOCK:
        _KEPT[key] = _Kept(stamp, time.monotonic(), value, time.monotonic() - started)


# On an archive this large the first load of a server process would wait seconds for each
# answer (a scan of every page; ~1 s per 100,000 pages): both are asked at start instead, in
# the background (server.app), and a load meanwhile waits for that answer, not a second scan.
WARM_FROM_PAGES = 50_000


def warm(db: Database) -> None:
    """Ask the dashboard's and the plan's questions now, if the archive is large enough for
    the first page load to wait on them."""
    try:
        (last,) = db.read().execute("SELECT COALESCE(MAX(id), 0) FROM pages").fetchone()
        if int(last) < WARM_FROM_PAGES:
            return
        started = time.monotonic()
        communes(db)
        plan(db)
        log.info("progress asked at start: %d pages, %.1f s", last, time.monotonic() - started)
    except Exception:  # the first page load asks again
        log.exception("asking the progress at start failed")


def _last_of(actions: Sequence[str]) -> str:
    """SQL: the newest audit row of each action (one index lookup each; one MAX over several
    actions would read every row of them)."""
    return ", ".join(["(SELECT COALESCE(MAX(id), 0) FROM audit WHERE action = ?)"] * len(actions))


def _stamp(db: Database, today: dt.date) -> tuple[Any, ...]:
    """(day, last label, last description, last page, last commit): one statement of index
    lookups."""
    row = (
        db.read()
        .execute(
            f"SELECT {_last_of((*_LABELLING, *_DESCRIBING))},"  # noqa: S608 (constants)
            " (SELECT COALESCE(MAX(id), 0) FROM pages),"
            " (SELECT COALESCE(MAX(committed_at), 0) FROM parts)",
            (*_LABELLING, *_DESCRIBING),
        )
        .fetchone()
    )
    values = list(row)
    labelled = max(int(v) for v in values[: len(_LABELLING)])
    described = max(int(v) for v in values[len(_LABELLING) : -2])
    return (today, labelled, described, int(values[-2]), float(values[-1]))


def communes(db: Database, today: dt.date | None = None) -> list[CommuneProgress]:
    """Progress per commune (see the module docstring), the answer kept as said above. The
    list and its entries are shared between callers: read them, do not change them."""
    if today is not None:
        return _communes(db, today)
    today = dt.date.today()
    value: list[CommuneProgress]
    value, _ = _kept(
        "communes", db, _stamp(db, today), 2, lambda: _communes(db, today)
    )  # same day, no new label: the kept answer may stand a while
    return value


# Per page: received when every part that travels (all but the capture) is committed, on the
# (local) day of its last such commit; then counted per device, flags, described, received and
# day — a few hundred rows whatever the archive's size.
_PER_DEVICE = (
    "WITH days(i, lo, hi) AS (VALUES {days}),"
    " pp AS (SELECT p.id, p.device_id, p.flags,"
    "  SUM(CASE WHEN t.state != 'committed' AND t.name != 'capture' THEN 1 ELSE 0 END)"
    "  AS open_parts,"
    "  MAX(CASE WHEN t.name != 'capture' THEN t.committed_at END) AS received_at"
    "  FROM pages p LEFT JOIN parts t ON t.page_pk = p.id GROUP BY p.id, p.device_id, p.flags)"
    " SELECT pp.device_id, pp.flags,"
    "  CASE WHEN pp.id IN (SELECT page_pk FROM van_ban_pages) THEN 1 ELSE 0 END AS described,"
    "  CASE WHEN pp.open_parts = 0 AND pp.received_at IS NOT NULL THEN 1 ELSE 0 END AS received,"
    "  d.i AS day, COUNT(*) AS n"
    " FROM pp LEFT JOIN days d ON pp.open_parts = 0"
    "  AND pp.received_at >= d.lo AND pp.received_at < d.hi"
    " GROUP BY pp.device_id, pp.flags, described, received, d.i"
)


def _communes(db: Database, today: dt.date) -> list[CommuneProgress]:
    first = today - dt.timedelta(days=DAYS - 1)
    # Local midnights: a day is the office's day, as the chart labels it.
    bounds = [time.mktime((first + dt.timedelta(days=i)).timetuple()) for i in range(DAYS + 1)]
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
    days = ", ".join(f"({i}, {bounds[i]!r}, {bounds[i + 1]!r})" for i in range(DAYS))
    flagged: dict[str, bool] = {}
    for r in con.execute(_PER_DEVICE.format(days=days)):  # (numbers made here)
        c, n = entry(r["device_id"]), int(r["n"])
        c.pages += n
        c.pages_described += n * int(r["described"])
        is_flagged = flagged.get(r["flags"])
        if is_flagged is None:
            is_flagged = flagged[r["flags"]] = any(
                f in REVIEW_FLAGS for f in json.loads(r["flags"])
            )
        c.pages_flagged += n * int(is_flagged)
        if r["received"]:
            c.pages_received += n
            if r["day"] is not None:
                c.per_day[int(r["day"])] += n
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


# -- progress against the plan (issue 21): per fonds, commune, district, province ----------
#
# Stages, of planned hồ sơ and of their pages (pages count for a planned hồ sơ as
# server.archive.inventory.attribute says):
#   planned     the fonds' inventory lists it (pages: the inventory's page counts);
#   scanned     a page of it reached the archive's catalogue (its batch's manifest);
#   received    every travelling part of the page is stored (hồ sơ: all its pages);
#   catalogued  the page is in a văn bản (hồ sơ: it has a văn bản);
#   checked     received, and either carries no review flag or staff reviewed it;
#   handed_over the fonds was handed over (nộp lưu done) and the page is catalogued.
# Forecast: pages still to receive (planned − received, never below 0) at the mean rate of the
# last RATE_DAYS days; the trend is the least-squares slope of those days (pages/day per day).

STAGES = ("planned", "scanned", "received", "catalogued", "checked", "handed_over")
RATE_DAYS = 14
HANDED_OVER = "handed_over"


@dataclass
class Forecast:
    remaining: int  # pages planned but not received
    rate: float  # pages received per day, mean of the last RATE_DAYS days
    trend: float  # slope of those days, pages/day per day
    finish: dt.date | None  # None: nothing received lately, no forecast
    deadline: dt.date | None
    on_time: bool | None  # None: no deadline, or no forecast

    @property
    def days_late(self) -> int | None:
        if self.finish is None or self.deadline is None:
            return None
        return max(0, (self.finish - self.deadline).days)


def forecast(per_day: list[int], remaining: int, deadline: dt.date | None,
             today: dt.date) -> Forecast:  # fmt: skip
    window = per_day[-RATE_DAYS:]
    n = len(window)
    rate = sum(window) / n if n else 0.0
    trend = 0.0
    if n > 1:
        mean_x = (n - 1) / 2
        sxx = sum((x - mean_x) ** 2 for x in range(n))
        trend = sum((x - mean_x) * (y - rate) for x, y in enumerate(window)) / sxx
    finish: dt.date | None
    if remaining <= 0:
        finish = today
    elif rate > 0:
        finish = today + dt.timedelta(days=math.ceil(remaining / rate))
    else:
        finish = None
    on_time = None if finish is None or deadline is None else finish <= deadline
    return Forecast(max(0, remaining), rate, trend, finish, deadline, on_time)


@dataclass
class PlanProgress:
    """One fonds, or the sum of several (a commune, a district, the province)."""

    key: str  # fonds code, or the unit's name
    name: str
    level: str  # "fonds" | "commune" | "district" | "province"
    ho_so: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    pages: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    without_page_count: int = 0  # planned hồ sơ whose inventory line gives no page count
    per_day: list[int] = field(default_factory=lambda: [0] * DAYS)
    deadline: dt.date | None = None
    status: str = ""
    place: tuple[str, str, str] = ("", "", "")  # commune, district, province
    fonds: list[str] = field(default_factory=list)
    forecast: Forecast | None = None

    def add(self, other: PlanProgress) -> None:
        for stage in STAGES:
            self.ho_so[stage] += other.ho_so[stage]
            self.pages[stage] += other.pages[stage]
        self.without_page_count += other.without_page_count
        self.per_day = [a + b for a, b in zip(self.per_day, other.per_day, strict=True)]
        if other.deadline and (self.deadline is None or other.deadline < self.deadline):
            self.deadline = other.deadline
        self.fonds += other.fonds

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "forecast"}
        data["deadline"] = self.deadline.isoformat() if self.deadline else None
        f = self.forecast
        data["forecast"] = None if f is None else {
            "remaining": f.remaining, "rate": round(f.rate, 2), "trend": round(f.trend, 3),
            "finish": f.finish.isoformat() if f.finish else None, "on_time": f.on_time,
            "days_late": f.days_late,
        }  # fmt: skip
        return data


@dataclass
class PlanView:
    fonds: list[PlanProgress]
    communes: list[PlanProgress]
    districts: list[PlanProgress]
    province: list[PlanProgress]
    unmatched: list[dict[str, Any]]  # batches matching no planned hồ sơ
    unscanned: dict[str, list[dict[str, Any]]]  # fonds → planned hồ sơ never scanned
    today: dt.date


# The plan's answer is kept as the dashboard's is (``_kept``): asked again at once after what
# staff do (a plan imported, a batch matched, a fonds registered or edited or handed over, a hồ
# sơ or văn bản described, a page reviewed or reprocessed: their audit rows, or the newest
# review), and within ``STALE_OK_S`` in the background while stations deliver (a page
# announced, a part committed, a batch complete).
_PLANNING = ("plan.import", "plan.match", "fonds.create", "fonds.edit",
             "fonds.handover.confirm", "page.reprocess", *_DESCRIBING)  # fmt: skip


def _plan_stamp(db: Database, today: dt.date) -> tuple[Any, ...]:
    """(day, last staff action, last review, last page, last commit, last batch complete):
    one statement of index lookups."""
    row = (
        db.read()
        .execute(
            f"SELECT {_last_of(_PLANNING)},"  # noqa: S608 (constants)
            " (SELECT COALESCE(MAX(id), 0) FROM reviews),"
            " (SELECT COALESCE(MAX(id), 0) FROM pages),"
            " (SELECT COALESCE(MAX(committed_at), 0) FROM parts),"
            " (SELECT COALESCE(MAX(complete_at), 0) FROM batches)",
            _PLANNING,
        )
        .fetchone()
    )
    values = list(row)
    staff = max(int(v) for v in values[: len(_PLANNING)])
    reviewed, page, committed, complete = values[len(_PLANNING) :]
    return (today, staff, int(reviewed), int(page), float(committed), float(complete))


def plan(db: Database, today: dt.date | None = None) -> PlanView:
    """Progress against the plan (see above), per fonds and summed per place; the answer
    kept as said above (shared between callers: read it, do not change it)."""
    if today is not None:
        return _plan(db, today)
    return plan_for_page(db, wait=True)[0]


def plan_for_page(db: Database, wait: bool = False) -> tuple[PlanView, float]:
    """``plan(db)`` for the plan page: after a staff action on an archive whose plan took
    ``WAIT_FOR_ASKING_S`` or more to count, the kept answer at once and the seconds its
    update should still take (0.0: the answer is current)."""
    today = dt.date.today()
    value: PlanView
    value, updating = _kept(
        "plan", db, _plan_stamp(db, today), 3, lambda: _plan(db, today), wait=wait
    )
    return value, updating


def _plan(db: Database, today: dt.date) -> PlanView:
    from server.archive import fonds as fonds_room
    from server.archive import inventory

    first = today - dt.timedelta(days=DAYS - 1)
    since = time.mktime(first.timetuple())
    found = inventory.attribute(db)
    con = db.read()
    out: dict[str, PlanProgress] = {}
    confirmed = {
        r[0]
        for r in con.execute(
            "SELECT DISTINCT fonds_code FROM fonds_handovers WHERE confirmed_at IS NOT NULL"
        )
    }
    former: dict[tuple[int, str], set[str]] = {}  # (level, group) → names before 2025
    for f in fonds_room.list(db):
        commune, district, province = fonds_room.lineage(db, f.code)
        # Grouped by the commune and province after the reorganisation (a merged commune sums
        # its former communes' fonds with its own) and by the district before it (there is
        # none after).
        place = (commune.new or commune.old, district.old or district.new,
                 province.new or province.old)  # fmt: skip
        for level, names in enumerate((commune, district, province)):
            if names.old and names.old != place[level]:
                former.setdefault((level, place[level]), set()).add(names.old)
        status = HANDED_OVER if f.code in confirmed else f.status
        out[f.code] = PlanProgress(
            f.code, f.name, "fonds", deadline=f.deadline, status=status, place=place,
            fonds=[f.code],
        )  # fmt: skip
    code_fonds: dict[str, str] = {}
    page_count: dict[str, int | None] = {}
    for r in con.execute("SELECT fonds_code, code, so_trang FROM planned_ho_so"):
        p = out.get(r["fonds_code"])
        if p is None:  # a plan for a fonds not (or no longer) registered
            p = out[r["fonds_code"]] = PlanProgress(r["fonds_code"], r["fonds_code"], "fonds",
                                                    fonds=[r["fonds_code"]])  # fmt: skip
        p.ho_so["planned"] += 1
        p.pages["planned"] += r["so_trang"] or 0
        p.without_page_count += int(r["so_trang"] is None)
        code_fonds[r["code"]] = r["fonds_code"]
        page_count[r["code"]] = r["so_trang"]
    catalogued_ho_so = {r[0] for r in con.execute("SELECT DISTINCT ma_ho_so FROM van_ban")}
    described = {r[0] for r in con.execute("SELECT DISTINCT page_pk FROM van_ban_pages")}
    reviewed = {
        r[0] for r in con.execute("SELECT DISTINCT page_pk FROM reviews WHERE action != 'rescan'")
    }
    # Per planned hồ sơ: [pages scanned, received, checked]
    tally: dict[str, list[int]] = {}
    rows = con.execute(
        "SELECT p.id, p.flags,"
        " SUM(CASE WHEN t.state != 'committed' AND t.name != 'capture' THEN 1 ELSE 0 END)"
        " AS open_parts,"
        " MAX(CASE WHEN t.name != 'capture' THEN t.committed_at END) AS received_at"
        " FROM pages p LEFT JOIN parts t ON t.page_pk = p.id GROUP BY p.id"
    )
    for r in rows:
        code = found.of_page.get(r["id"])
        if code is None:
            continue
        fp = out[found.planned[code]]
        counts = tally.setdefault(code, [0, 0, 0])
        counts[0] += 1
        fp.pages["scanned"] += 1
        received = not r["open_parts"] and r["received_at"] is not None
        if not received:
            continue
        counts[1] += 1
        fp.pages["received"] += 1
        if r["received_at"] >= since:
            day = (dt.date.fromtimestamp(r["received_at"]) - first).days
            if 0 <= day < DAYS:
                fp.per_day[day] += 1
        handed = fp.status == HANDED_OVER
        if r["id"] in described:
            fp.pages["catalogued"] += 1
            fp.pages["handed_over"] += int(handed)
        flagged = r["flags"] != "[]" and any(f in REVIEW_FLAGS for f in json.loads(r["flags"]))
        if not flagged or r["id"] in reviewed:
            counts[2] += 1
            fp.pages["checked"] += 1
    for code, fonds_code in code_fonds.items():
        fp = out[fonds_code]
        n_scanned, n_received, n_checked = tally.get(code, [0, 0, 0])
        if n_scanned:
            fp.ho_so["scanned"] += 1
        if n_scanned and n_received == n_scanned:
            fp.ho_so["received"] += 1
        if code in catalogued_ho_so:
            fp.ho_so["catalogued"] += 1
            fp.ho_so["handed_over"] += int(fp.status == HANDED_OVER)
            if n_scanned and n_checked == n_scanned:
                fp.ho_so["checked"] += 1
    groups: list[dict[str, PlanProgress]] = [{}, {}, {}]
    for fp in out.values():
        fp.forecast = _forecast(fp, today)
        for level, (name, bucket) in enumerate(zip(fp.place, groups, strict=True)):
            if not name:
                continue
            kind = ("commune", "district", "province")[level]
            group = bucket.get(name)
            if group is None:
                was = sorted(former.get((level, name), ()))
                label = f"{name} (trước đây: {', '.join(was)})" if was else name
                group = bucket[name] = PlanProgress(name, label, kind, place=fp.place)
            group.add(fp)
    for bucket in groups:
        for group in bucket.values():
            group.forecast = _forecast(group, today)
    by_name = lambda g: g.key  # noqa: E731
    return PlanView(
        fonds=sorted(out.values(), key=lambda f: (f.place, f.key)),
        communes=sorted(groups[0].values(), key=by_name),
        districts=sorted(groups[1].values(), key=by_name),
        province=sorted(groups[2].values(), key=by_name),
        unmatched=inventory.unmatched_batches(db, found),
        unscanned=inventory.unscanned_by_fonds(db, sorted(out), found),
        today=today,
    )


def _forecast(p: PlanProgress, today: dt.date) -> Forecast:
    return forecast(p.per_day, p.pages["planned"] - p.pages["received"], p.deadline, today)
