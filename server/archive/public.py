"""The citizens' lookup (issue 17): a public, unguessable address per hồ sơ, and what it shows.

A hồ sơ gets one live token (``secrets.token_urlsafe(16)``: 128 random bits, 22 URL-safe
characters) the first time its address is asked for (a label sheet, the staff API); staff can
rotate it, after which the old address answers exactly like one that never existed. What an
address shows follows the hồ sơ's chế độ sử dụng (records.CHE_DO_SU_DUNG):

- Công khai: title, dates, the creating body, and each văn bản with its type, number, date,
  issuing body, subject and page count;
- Sử dụng có điều kiện: the title and how to ask for access (the archive's reading room);
- Mật, an unknown token, a rotated-away token: one and the same "not public" answer, built
  from nothing that depends on which of the three it was (no existence leak).

Every lookup is counted per day and hồ sơ (``public_views``; the "nothing shown" answers under
'' so that counting does not tell them apart either); nothing about the client is stored.

This module returns data; the web layer (server.web.public) renders it. It must not read
cookies or sessions: the public side has no login.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from server.archive import audit
from server.archive.records import Records
from server.store.db import INTEGRITY_ERRORS, Database

PREFIX = "/p"  # the public side's path; nothing of the staff app lives under it
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")  # what token_urlsafe(16) makes
PUBLIC, CONDITIONAL = "Công khai", "Sử dụng có điều kiện"
Shown = Literal["public", "conditional", "closed"]


@dataclass(frozen=True)
class PublicDocument:
    stt: int
    ten_loai: str
    so_ky_hieu: str
    ngay: dt.date | None
    co_quan_ban_hanh: str
    trich_yeu: str
    so_trang: int


@dataclass(frozen=True)
class PublicView:
    """What one public address may show. ``closed``: nothing at all beyond "not public"."""

    shown: Shown
    ma_ho_so: str = ""
    tieu_de: str = ""
    organ_id: str = ""
    nam: int | None = None
    thoi_gian_bat_dau: dt.date | None = None
    thoi_gian_ket_thuc: dt.date | None = None
    tong_so_trang: int = 0
    documents: list[PublicDocument] = field(default_factory=list)


CLOSED = PublicView("closed")


def address(db: Database, ma: str, actor: str) -> str | None:
    """The hồ sơ's live token, made on first use; None when there is no such hồ sơ."""
    row = db.read().execute("SELECT token FROM public_links WHERE ma_ho_so = ?", (ma,))
    found = row.fetchone()
    if found is not None:
        return str(found["token"])
    with db.tx() as con:
        if con.execute("SELECT 1 FROM ho_so WHERE ma_ho_so = ?", (ma,)).fetchone() is None:
            return None
        again = con.execute("SELECT token FROM public_links WHERE ma_ho_so = ?", (ma,))
        found = again.fetchone()
        if found is not None:  # another request made it first
            return str(found["token"])
        token = secrets.token_urlsafe(16)
        con.execute(
            "INSERT INTO public_links(ma_ho_so, token, created_at, created_by) VALUES (?, ?, ?, ?)",
            (ma, token, time.time(), actor),
        )
        audit.append(con, actor, "public.address", ma, {}, "")
    return token


def rotate(db: Database, ma: str, actor: str, ip: str = "") -> str | None:
    """A new token for the hồ sơ; the old address stops working at once. None: no hồ sơ."""
    for _ in range(3):  # a clash of 128-bit tokens is not expected; retry rather than fail
        token = secrets.token_urlsafe(16)
        try:
            with db.tx() as con:
                if con.execute("SELECT 1 FROM ho_so WHERE ma_ho_so = ?", (ma,)).fetchone() is None:
                    return None
                con.execute("DELETE FROM public_links WHERE ma_ho_so = ?", (ma,))
                con.execute(
                    "INSERT INTO public_links(ma_ho_so, token, created_at, created_by)"
                    " VALUES (?, ?, ?, ?)",
                    (ma, token, time.time(), actor),
                )
                audit.append(con, actor, "public.rotate", ma, {}, ip)
            return token
        except INTEGRITY_ERRORS:
            continue
    raise RuntimeError("could not draw a fresh public token")


def url(base: str, token: str) -> str:
    """The full public address of a token (what a label's QR code holds)."""
    return f"{base.rstrip('/')}{PREFIX}/{token}"


def lookup(db: Database, records: Records, token: str) -> PublicView:
    """What the address ``token`` shows, and the view counted."""
    ma = ""
    if TOKEN_RE.fullmatch(token):
        row = db.read().execute("SELECT ma_ho_so FROM public_links WHERE token = ?", (token,))
        found = row.fetchone()
        ma = str(found["ma_ho_so"]) if found else ""
    ho_so = records.ho_so(ma) if ma else None
    if ho_so is None or ho_so.che_do_su_dung not in (PUBLIC, CONDITIONAL):
        _count(db, "")
        return CLOSED
    _count(db, ma)
    if ho_so.che_do_su_dung == CONDITIONAL:
        return PublicView("conditional", ma_ho_so=ma, tieu_de=ho_so.tieu_de, nam=ho_so.nam)
    return PublicView(
        "public",
        ma_ho_so=ma,
        tieu_de=ho_so.tieu_de,
        organ_id=ho_so.organ_id,
        nam=ho_so.nam,
        thoi_gian_bat_dau=ho_so.thoi_gian_bat_dau,
        thoi_gian_ket_thuc=ho_so.thoi_gian_ket_thuc,
        tong_so_trang=ho_so.tong_so_trang,
        documents=[
            PublicDocument(
                d.stt,
                d.ten_loai,
                "/".join(p for p in (d.so, d.ky_hieu) if p),
                d.ngay,
                d.co_quan_ban_hanh,
                d.trich_yeu,
                d.so_trang,
            )
            for d in ho_so.van_ban
        ],
    )


def _count(db: Database, ma: str) -> None:
    day = dt.datetime.now(dt.UTC).date().isoformat()
    with db.tx() as con:
        con.execute(
            "INSERT INTO public_views(day, ma_ho_so, views) VALUES (?, ?, 1)"
            " ON CONFLICT(day, ma_ho_so) DO UPDATE SET views = public_views.views + 1",
            (day, ma),
        )


def views(db: Database, ma: str) -> int:
    """All views of hồ sơ ``ma``'s public address, every day together."""
    row = db.read().execute(
        "SELECT COALESCE(SUM(views), 0) AS n FROM public_views WHERE ma_ho_so = ?", (ma,)
    )
    return int(row.fetchone()["n"])


class RateLimit:
    """At most ``per_minute`` requests per client in any sliding minute (in memory, per
    process: a brake on scraping token space and on a flood over the mobile link, not an
    account). Forgets quiet clients so that memory stays bounded."""

    def __init__(self, per_minute: int, max_clients: int = 10_000) -> None:
        self.per_minute = per_minute
        self.max_clients = max_clients
        self._seen: dict[str, list[float]] = {}
        self._lock = threading.Lock()  # routes run in a thread pool

    def allow(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            return self._allow(client, now)

    def _allow(self, client: str, now: float) -> bool:
        recent = [t for t in self._seen.get(client, ()) if now - t < 60.0]
        if len(recent) >= self.per_minute:
            self._seen[client] = recent
            return False
        recent.append(now)
        self._seen[client] = recent
        if len(self._seen) > self.max_clients:  # drop the quietest half
            quiet = sorted(self._seen, key=lambda c: self._seen[c][-1])
            for gone in quiet[: len(quiet) // 2]:
                del self._seen[gone]
        return True
