"""Progress against the plan (server.archive.progress.plan), hand matching, the thống kê
exports and the /plan pages, on the archive the real pipeline built (the ``staff`` fixture:
one batch of three pages, the third blank and flagged) with the demo merger's fonds and
inventories (tests/inventories.py): xã Xuân La and xã An Thắng merged into xã Nghiên Loan."""

from __future__ import annotations

import datetime as dt
import io
import math
import re
import threading
import time
from pathlib import Path

import pytest
import test_staff
from fastapi.testclient import TestClient
from httpx import Response
from inventories import FIRST_PLANNED, danh_muc, setup_demo
from openpyxl import load_workbook  # type: ignore[import-untyped]
from test_staff import Staff

from bench import progress as bench_progress
from server.app import create_app
from server.archive import fonds, fonds_handover, inventory, progress, review
from server.archive.progress import forecast
from server.config import ServerSettings
from server.store.db import Database

staff = test_staff.staff  # the fixture: a private copy of the real pipeline's archive
TODAY = dt.date(2026, 1, 10)


def test_forecast_arithmetic() -> None:
    """Rate = mean of the last 14 days; finish = today + ceil(remaining / rate)."""
    days = [0] * 16 + [10] * 14  # 30 days, the last 14 at 10 pages a day
    f = forecast(days, 1000, TODAY + dt.timedelta(days=90), TODAY)
    assert (f.rate, f.trend, f.finish) == (10.0, 0.0, TODAY + dt.timedelta(days=100))
    assert (f.on_time, f.days_late) == (False, 10)
    rising = forecast([0] * 16 + list(range(14)), 91, None, TODAY)
    assert rising.trend == pytest.approx(1.0) and rising.rate == 6.5
    assert rising.finish == TODAY + dt.timedelta(days=14) and rising.on_time is None
    assert forecast([0] * 30, 5, TODAY, TODAY).finish is None  # nothing lately: no forecast
    done = forecast([0] * 30, -3, TODAY, TODAY)
    assert (done.remaining, done.finish, done.on_time) == (0, TODAY, True)


@pytest.mark.tesseract
@pytest.mark.mqtt
@pytest.mark.slow
def test_progress_matching_and_exports(staff: Staff) -> None:
    s, db = staff, staff.db
    today = dt.date.today()
    setup_demo(db, today)
    api = s.client

    view = api.get("/api/v1/plan/progress", headers=s.bearer("viewer")).json()
    assert [b["id"] for b in view["unmatched_batches"]] == [1]  # no cover sheet in it
    xl = {f["key"]: f for f in view["fonds"]}["XL"]
    assert xl["ho_so"]["planned"] == 3 and xl["pages"]["planned"] == 176
    assert xl["ho_so"]["scanned"] == 0 and xl["pages"]["scanned"] == 0

    # Hand matching: archivists only, to a hồ sơ that is planned.
    body = {"batch": 1, "fonds_code": "XL", "code": FIRST_PLANNED}
    assert (
        api.post("/api/v1/plan/matches", json=body, headers=s.bearer("viewer")).status_code == 403
    )
    bad = {**body, "code": "H06.XL.2019.99"}
    r = api.post("/api/v1/plan/matches", json=bad, headers=s.bearer("archivist"))
    assert r.status_code == 422 and "not planned" in r.text
    # A batch a station scanned for another fonds is not matched to this one's plan.
    with db.tx() as con:
        con.execute("UPDATE batches SET fonds_code = 'AT' WHERE id = 1")
    r = api.post("/api/v1/plan/matches", json=body, headers=s.bearer("archivist"))
    assert r.status_code == 422 and "scanned for fonds AT, not XL" in r.text
    with db.tx() as con:
        con.execute("UPDATE batches SET fonds_code = 'XL' WHERE id = 1")
    r = api.post("/api/v1/plan/matches", json=body, headers=s.bearer("archivist"))
    assert r.status_code == 200, r.text

    plan = progress.plan(db)
    assert plan.unmatched == []
    by_key = {f.key: f for f in plan.fonds}
    xl_p = by_key["XL"]
    assert xl_p.ho_so == {"planned": 3, "scanned": 1, "received": 1, "catalogued": 0,
                          "checked": 0, "handed_over": 0}  # fmt: skip
    assert xl_p.pages["scanned"] == xl_p.pages["received"] == 3
    assert xl_p.pages["checked"] < 3  # the blank page is flagged, not yet reviewed
    assert sum(xl_p.per_day) == 3
    assert xl_p.forecast is not None
    rate = 3 / progress.RATE_DAYS
    assert xl_p.forecast.rate == pytest.approx(rate)
    assert xl_p.forecast.finish == plan.today + dt.timedelta(days=math.ceil(173 / rate))
    assert xl_p.forecast.on_time is False  # due in 60 days, ~800 to go at this pace
    assert [r["code"] for r in plan.unscanned["XL"]] == ["H06.XL.2019.02", "H06.XL.2019.03"]
    assert len(plan.unscanned["AT"]) == 2 and plan.unscanned["NL"] == []

    # Summed per place: the new commune holds its former communes' fonds; the district is
    # the one before 2025; the province the one after.
    (commune,) = plan.communes
    assert commune.key == "Xã Nghiên Loan"
    assert commune.name == "Xã Nghiên Loan (trước đây: Xã An Thắng, Xã Xuân La)"
    assert sorted(commune.fonds) == ["AT", "NL", "XL"]
    assert commune.ho_so["planned"] == 5 and commune.pages["planned"] == 176 + 110
    assert commune.deadline == today + dt.timedelta(days=60)
    assert [(d.key, sorted(d.fonds)) for d in plan.districts] == [("Huyện Pác Nặm", ["AT", "XL"])]
    assert [p.key for p in plan.province] == ["Tỉnh Thái Nguyên"]

    # Catalogue two of the pages as a văn bản of the planned hồ sơ; review the flagged page.
    r = api.put(f"/api/v1/ho-so/{FIRST_PLANNED}", headers=s.bearer("archivist"), json={
        "organ_id": "H06.XL", "nam": 2019, "ky_hieu": "01", "thoi_han_bao_quan": "Vĩnh viễn",
        "tieu_de": "Hồ sơ xử lý vi phạm khai thác khoáng sản trái phép"})  # fmt: skip
    assert r.status_code == 200, r.text
    pages = api.get("/api/v1/batches/1", headers=s.bearer("viewer")).json()["pages"]
    r = api.post(f"/api/v1/ho-so/{FIRST_PLANNED}/van-ban", headers=s.bearer("archivist"),
                 json={"ten_loai": "Biên bản", "trich_yeu": "Xử lý vi phạm",
                       "pages": [pages[0]["id"], pages[1]["id"]]})  # fmt: skip
    assert r.status_code in (200, 201), r.text
    for item in review.queue(db):
        review.decide(db, item["id"], "accept", "lan", "", "")
    xl_p = {f.key: f for f in progress.plan(db).fonds}["XL"]
    assert (xl_p.ho_so["catalogued"], xl_p.pages["catalogued"]) == (1, 2)
    assert (xl_p.ho_so["checked"], xl_p.pages["checked"]) == (1, 3)
    assert xl_p.pages["handed_over"] == 0
    # Handed over only through the recorded receipt (server.archive.fonds_handover).
    prepared = fonds_handover.prepare(db, "XL", s.data_dir / "nop-luu-xl")
    assert {f.key: f for f in progress.plan(db).fonds}["XL"].pages["handed_over"] == 0
    # Its checklist names the planned hồ sơ never scanned (what the plan says is missing).
    unscanned = [m.ma_ho_so for m in prepared.missing if "chưa được quét" in m.what]
    assert unscanned == ["H06.XL.2019.02", "H06.XL.2019.03"]
    fonds_handover.confirm(db, "XL", receiver="Nguyễn Văn B", reference="BB-01/2026")
    xl_p = {f.key: f for f in progress.plan(db).fonds}["XL"]
    assert (xl_p.ho_so["handed_over"], xl_p.pages["handed_over"]) == (1, 2)

    # Thống kê: XLSX (numbers as numbers) and PDF; bearer or the web form, never a bare GET
    # with the session cookie.
    r = api.get("/api/v1/plan/thong-ke.xlsx", headers=s.bearer("viewer"))
    assert r.status_code == 200
    ws = load_workbook(io.BytesIO(r.content)).active
    rows = {row[1]: row for row in ws.iter_rows(min_row=5, values_only=True) if row[1]}
    assert rows["XL"][2:] == ("UBND xã Xuân La", "Đã nộp lưu", 3, 1, None, 1, 176, 3, 2019, 2019,
                              "Vĩnh viễn: 2; 10 năm: 1")  # fmt: skip
    assert rows["AT"][8:12] == (110, 0, 2019, 2019)
    assert rows["Tổng cộng"][8] == 286
    r = api.get("/api/v1/plan/thong-ke.pdf", headers=s.bearer("viewer"))
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    pdfium = pytest.importorskip("pypdfium2")
    assert len(pdfium.PdfDocument(r.content)) == 1

    # The page: Vietnamese, a chart per row, the verdict against the deadline.
    s.login("archivist")
    html = api.get("/plan").text
    assert "Tiến độ số hóa theo kế hoạch" in html and 'class="forecast"' in html
    assert "Xã Nghiên Loan (trước đây: Xã An Thắng, Xã Xuân La)" in html
    assert "Trễ " in html and "Huyện Pác Nặm" in html
    assert api.get("/api/v1/plan/thong-ke.xlsx").status_code == 401  # cookie alone: refused


@pytest.mark.tesseract
@pytest.mark.mqtt
@pytest.mark.slow
def test_import_page_previews_then_imports_all_or_nothing(staff: Staff) -> None:
    s, db = staff, staff.db
    fonds.create(db, "NL", "UBND xã Nghiên Loan", organ_id="H19.NL", unit_code="new:01882")
    csrf = s.login("archivist")
    good = danh_muc([
        [1, "H19.NL.2025.01", "Hồ sơ tiếp công dân", "năm 2025", "10 năm", 40, ""],
        [2, "H19.NL.2025.02", "Hồ sơ đất đai", "07/2025", "VV", "1.020", ""],
    ])  # fmt: skip
    broken = danh_muc([[1, "H19.NL.2025.01", "Hồ sơ một", "2025", "VV", "bốn mươi", ""]])

    def post(data: dict[str, str], files: dict[str, tuple[str, bytes]] | None = None) -> str:
        r = s.client.post("/plan/import", data={"csrf": csrf, "fonds": "NL", **data}, files=files)
        return r.text

    html = post({"action": "preview"}, {"file": ("hong.xlsx", broken)})
    assert "Không nhập" in html and "số trang không phải là số" in html
    assert 'id="import-button"' not in html
    html = post({"action": "preview"}, {"file": ("danh-muc.xlsx", good)})
    assert "H19.NL.2025.02" in html and 'id="import-button"' in html
    found = re.search(r'name="data" value="([^"]+)"', html)
    assert found is not None
    carried = found[1]  # the file's bytes, carried by the preview page
    assert db.read().execute("SELECT COUNT(*) FROM planned_ho_so").fetchone()[0] == 0
    html = post({"action": "import", "data": carried, "name": "danh-muc.xlsx"})
    assert "Đã nhập 2 hồ sơ (1.060 trang)" in html
    # Again: every line clashes with the plan; nothing is added.
    html = post({"action": "import", "data": carried, "name": "danh-muc.xlsx"})
    assert "đã có trong kế hoạch" in html
    assert db.read().execute("SELECT COUNT(*) FROM planned_ho_so").fetchone()[0] == 2
    # A title is text, never markup, on the preview page.
    evil = danh_muc([[1, "H19.NL.2025.09", "<script>alert(1)</script>", "2025", "VV", 1, ""]])
    html = post({"action": "preview"}, {"file": ("x.xlsx", evil)})
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)" in html
    # Without the session's CSRF value: refused.
    r = s.client.post("/plan/import", data={"csrf": "x", "fonds": "NL", "action": "preview"},
                      files={"file": ("danh-muc.xlsx", good)})  # fmt: skip
    assert r.status_code == 403
    # A viewer may look at the plan but not import into it.
    s.client.cookies.clear()
    csrf = s.login("viewer")
    r = s.client.post("/plan/import", data={"csrf": csrf, "fonds": "NL", "action": "import",
                                            "data": carried, "name": "x.xlsx"})  # fmt: skip
    assert r.status_code == 403
    assert s.client.get("/plan").status_code == 200
    assert db.read().execute("SELECT COUNT(*) FROM planned_ho_so").fetchone()[0] == 2


@pytest.mark.tesseract
@pytest.mark.mqtt
@pytest.mark.slow
def test_inventory_api(staff: Staff) -> None:
    s, db = staff, staff.db
    fonds.create(db, "NL", "UBND xã Nghiên Loan", organ_id="H19.NL", unit_code="new:01882")
    good = danh_muc([[1, "05", "Hồ sơ hòa giải", "", "10 năm", 12, ""]])
    url = "/api/v1/fonds/NL/inventory"

    def post(role: str, data: bytes, **form: str) -> Response:
        return s.client.post(url, headers=s.bearer(role), data=form,
                             files={"file": ("muc-luc.xlsx", data)})  # fmt: skip

    assert post("viewer", good, preview="true").status_code == 403
    r = post("archivist", good, preview="true")
    assert r.status_code == 200 and r.json()["problems"][0]["en"].startswith("no year")
    r = post("archivist", good, preview="true", year="2025", columns="note=")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["imported"] is False and body["rows"][0]["code"] == "H19.NL.2025.05"
    assert "note" not in body["mapping"]
    assert s.client.get("/api/v1/fonds/NL/plan", headers=s.bearer("viewer")).json() == []
    r = post("archivist", good, year="2025")
    assert r.status_code == 200 and r.json()["imported"] is True
    r = post("archivist", good, year="2025")  # again: every line clashes, nothing added
    assert r.status_code == 422 and "already planned" in r.text
    plan = s.client.get("/api/v1/fonds/NL/plan", headers=s.bearer("viewer")).json()
    assert [p["code"] for p in plan] == ["H19.NL.2025.05"]
    assert post("archivist", good, columns="code=?").status_code == 422


# -- the plan's answer kept between loads (a scan of every page: seconds at a million) -------


def _archive(tmp_path: Path, pages: int = 200) -> Database:
    """bench/progress.py's synthetic archive: batches of 50 pages, each a planned hồ sơ whose
    cover sheet is its first page, four parts a page, 5 % flagged."""
    db = Database(tmp_path / "archive.sqlite3")
    bench_progress.build(db, pages, 2)
    return db


def _deliver_page(db: Database, batch: int) -> None:
    """A station's page arrives in ``batch`` with its parts committed."""
    now = time.time()
    with db.tx() as con:
        (pk,) = con.execute("SELECT MAX(id) + 1 FROM pages").fetchone()
        con.execute(
            "INSERT INTO pages (id, batch_pk, device_id, page_id, page_no, capture_sha256,"
            " capture_size, dpi, width_px, height_px, colour) SELECT ?, id, device_id, ?,"
            " page_count + 1, '', 1, 300, 2480, 3508, 0 FROM batches WHERE id = ?",
            (pk, f"late{pk}", batch),
        )
        for name in ("archival", "thumb", "text"):
            con.execute(
                "INSERT INTO parts (page_pk, name, sha256, size, media_type, state,"
                " committed_at) VALUES (?, ?, '', 1, 'x', 'committed', ?)",
                (pk, name, now),
            )


def _fonds(view: progress.PlanView, key: str = "F0000") -> progress.PlanProgress:
    return {f.key: f for f in view.fonds}[key]


def test_the_plan_is_kept_while_stations_deliver_and_asked_again_after_staff_act(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _archive(tmp_path)
    first = progress.plan(db)
    assert progress.plan(db) is first  # nothing moved: no scan
    scanned = _fonds(first).pages["scanned"]

    # A station delivers: the kept answer stands a while, then is asked again in the
    # background while loads still get the kept one.
    _deliver_page(db, 1)
    assert progress.plan(db) is first
    monkeypatch.setattr(progress, "STALE_OK_S", 0.0)
    assert progress.plan(db) is first
    deadline = time.monotonic() + 30
    while progress.plan(db) is first and time.monotonic() < deadline:
        time.sleep(0.05)
    fresh = progress.plan(db)
    assert _fonds(fresh).pages["scanned"] == scanned + 1

    # What staff do shows at once: a reviewed page is checked on the next load.
    monkeypatch.setattr(progress, "STALE_OK_S", 3600.0)
    assert progress.plan(db) is fresh
    flagged = next(
        r["id"]
        for r in db.read().execute("SELECT id FROM pages WHERE flags = '[\"review\"]'")
        if inventory.attribute(db).of_page.get(r["id"]) is not None
    )
    checked = _fonds(fresh).pages["checked"] + _fonds(fresh, "F0001").pages["checked"]
    assert review.decide(db, flagged, "accept", "lan")
    after = progress.plan(db)
    assert after is not fresh
    assert _fonds(after).pages["checked"] + _fonds(after, "F0001").pages["checked"] == checked + 1
    db.close()


def test_loads_with_nothing_kept_wait_for_one_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _archive(tmp_path)
    asked: list[int] = []
    scan = progress._plan

    def slow_scan(db: Database, today: dt.date) -> progress.PlanView:
        asked.append(1)
        time.sleep(0.5)  # a large archive's scan
        return scan(db, today)

    monkeypatch.setattr(progress, "_plan", slow_scan)
    got: list[progress.PlanView] = []
    loads = [threading.Thread(target=lambda: got.append(progress.plan(db))) for _ in range(3)]
    for t in loads:
        t.start()
    for t in loads:
        t.join()
    assert len(asked) == 1
    assert len(got) == 3 and got[0] is got[1] is got[2]
    db.close()


def test_a_large_archive_s_progress_is_asked_when_the_server_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _archive(tmp_path)
    key = str(db.url)
    monkeypatch.setattr(progress, "WARM_FROM_PAGES", 201)  # larger than this archive: nothing
    progress.warm(db)
    assert ("plan", key) not in progress._KEPT and ("communes", key) not in progress._KEPT
    db.close()
    monkeypatch.setattr(progress, "WARM_FROM_PAGES", 200)
    settings = ServerSettings(data_dir=tmp_path, ingest=False)
    with TestClient(create_app(settings)):  # no page loaded
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            ("plan", key) in progress._KEPT and ("communes", key) in progress._KEPT
        ):
            time.sleep(0.05)
        assert ("plan", key) in progress._KEPT and ("communes", key) in progress._KEPT


def test_after_staff_act_a_slow_plan_page_shows_the_kept_count_and_reloads(
    staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a million pages the plan takes ~10 s to count (bench progress on PostgreSQL): the
    page after "match this batch" is not held that long — it shows the count before the
    match, says so, and reloads; the API and the exports wait for the count of now."""
    s, db = staff, staff.db
    setup_demo(db, dt.date.today())
    scan = progress._plan

    def slow_scan(db: Database, today: dt.date) -> progress.PlanView:
        time.sleep(0.6)  # a large archive's counting
        return scan(db, today)

    monkeypatch.setattr(progress, "_plan", slow_scan)
    monkeypatch.setattr(progress, "WAIT_FOR_ASKING_S", 0.5)
    csrf = s.login("archivist")
    page = s.client.get("/plan").text  # nothing kept: this load waits for the count
    assert 'id="plan-updating"' not in page and 'name="batch" value="1"' in page

    r = s.client.post("/plan/match", data={"csrf": csrf, "batch": "1",
                                           "planned": f"XL|{FIRST_PLANNED}"})  # fmt: skip
    assert r.status_code == 200 and "Đã khớp lô 1" in r.text  # followed to /plan at once
    assert 'id="plan-updating"' in r.text and "đang được tính lại" in r.text
    assert re.search(r'<meta http-equiv="refresh" content="[2-9]">', r.text)
    assert 'name="batch" value="1"' in r.text  # the count before the match, said to be so

    # The API is never given a count from before the action.
    view = s.client.get("/api/v1/plan/progress", headers=s.bearer("viewer")).json()
    assert view["unmatched_batches"] == []
    deadline = time.monotonic() + 30
    while 'id="plan-updating"' in (page := s.client.get("/plan").text):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert 'name="batch" value="1"' not in page and '<meta http-equiv="refresh"' not in page

    # An archive counted in less than WAIT_FOR_ASKING_S: the page waits for the count, as
    # before (a review is a staff action too).
    monkeypatch.setattr(progress, "WAIT_FOR_ASKING_S", 60.0)
    (flagged,) = db.read().execute("SELECT id FROM pages WHERE flags != '[]'").fetchone()
    assert review.decide(db, flagged, "accept", "lan")
    assert 'id="plan-updating"' not in s.client.get("/plan").text
