"""The demo of issue 21 in a real browser: a province where xã Xuân La and xã An Thắng were
merged into xã Nghiên Loan. Their inventories are imported — one through the staff page
(preview, then import), one with ``sohoa-server inventory import`` —, the batch the real
pipeline sent (tests/real_archive.py) is matched by hand to a planned hồ sơ, and the progress
page shows each fonds, the new commune (with its former ones), the district before 2025 and
the province after it, the forecasts against the handover deadlines and the thống kê
download. Debian's Chromium (by path) against the real server process; screenshots under
var/test-artifacts/plan/<engine>/ (gitignored)."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
from pathlib import Path

import pytest
from harness import BIN, REPO, Broker, ServerProcess
from inventories import COMMUNE_A, FIRST_PLANNED, danh_muc_b, muc_luc, setup_demo
from openpyxl import load_workbook  # type: ignore[import-untyped]
from real_archive import RealArchive
from test_browser import ARGS, CHROMIUM, PASSWORD

from server.archive.records import HoSo, Records, VanBanIn
from server.config import ServerSettings
from server.store.db import Database

pytestmark = [
    pytest.mark.browser,
    pytest.mark.mqtt,
    pytest.mark.tesseract,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed"),
]


def test_merger_demo_in_chromium(
    request: pytest.FixtureRequest, tmp_path: Path, broker: Broker, real_archive: RealArchive
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    cluster = request.getfixturevalue("pg_cluster") if real_archive.engine != "sqlite" else None
    url = real_archive.catalogue_for(tmp_path / "db" / "archive.sqlite3", cluster)
    data_dir = tmp_path / "server"
    real_archive.seed_data_dir(data_dir)
    db = Database(ServerSettings(data_dir=data_dir, database_url=url).database())
    setup_demo(db, dt.date.today(), inventories=False)
    db.close()
    artefacts = REPO / "var" / "test-artifacts" / "plan" / real_archive.engine
    artefacts.mkdir(parents=True, exist_ok=True)
    xl_file, at_file = tmp_path / "Mục lục hồ sơ Xuân La.xlsx", tmp_path / "danh-muc-an-thang.xlsx"
    xl_file.write_bytes(muc_luc("xã Xuân La", COMMUNE_A))
    at_file.write_bytes(danh_muc_b("H06.AT"))
    server = ServerProcess(data_dir, broker.url, database_url=url).start()
    try:
        pw_file = tmp_path / "pw"
        pw_file.write_text(PASSWORD + "\n")
        subprocess.run(
            [str(BIN / "sohoa-server"), "user", "add", "lan", "--role", "archivist",
             "--password-file", str(pw_file)],
            env=server.env(), check=True, capture_output=True,
        )  # fmt: skip
        out = subprocess.run(
            [str(BIN / "sohoa-server"), "inventory", "import", str(at_file), "--fonds", "AT"],
            env=server.env(), capture_output=True, text=True,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900}, locale="vi-VN")
            page.set_default_timeout(15_000)
            blocked: list[str] = []
            page.on(
                "console",
                lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
            )
            base = server.url
            page.goto(base + "/plan/import")
            page.fill("#username", "lan")
            page.fill("#password", PASSWORD)
            page.click("form.grid button[type=submit]")
            page.wait_for_url(base + "/plan/import")

            # Xuân La's Mục lục through the page: preview first (nothing stored), then import.
            page.select_option("#fonds", "XL")
            page.set_input_files("#file", str(xl_file))
            page.click("#preview-button")
            page.wait_for_selector("table.preview")
            assert page.locator("table.preview tr").count() == 4  # header + 3 hồ sơ
            assert "H06.XL.2019.03" in page.locator("table.preview").inner_text()
            page.screenshot(path=str(artefacts / "import-preview.png"), full_page=True)
            page.click("#import-button")
            page.wait_for_selector("#imported")
            assert "Đã nhập 3 hồ sơ (176 trang)" in page.locator("#imported").inner_text()

            # The progress page: the batch matches nothing yet; match it by hand.
            page.goto(base + "/plan")
            assert page.locator("table.unmatched tr").count() == 2
            assert page.locator(f"#planned-ho-so option[value='XL|{FIRST_PLANNED}']").count() == 1
            page.fill("table.unmatched input[name=planned]", f"XL|{FIRST_PLANNED}")
            page.click("form.match button[type=submit]")
            page.wait_for_url("**/plan?matched=1")
            assert page.locator("table.unmatched").count() == 0
            row = page.locator("table.plan-fonds tr[data-key='XL']")
            assert row.locator("td.ho-so").inner_text().startswith("3 / 1 / 1 / 0")
            assert "Trễ" in row.locator("td.forecast-cell").inner_text()
            commune = page.locator("table.plan-commune tr[data-key='Xã Nghiên Loan']")
            assert "trước đây: Xã An Thắng, Xã Xuân La" in commune.inner_text()
            assert page.locator("table.plan-district tr[data-key='Huyện Pác Nặm']").count() == 1
            assert page.locator("table.plan-province tr[data-key='Tỉnh Thái Nguyên']").count() == 1
            # Each row draws its forecast: the received line and the deadline.
            chart = row.locator("svg.forecast")
            assert chart.locator("polyline.received").count() == 1
            assert chart.locator("line.deadline").count() == 1
            assert chart.locator("line.projection").count() == 1
            page.screenshot(path=str(artefacts / "progress.png"), full_page=True)
            # On a laptop's screen the page does not run past its right edge (at 1,366 px it
            # did by 41 px, at 1,024 by 356: the charts are fixed drawings): the charts shrink
            # to where their words still read, and below that the table scrolls in its box.
            for width in (1366, 1280, 1024):
                page.set_viewport_size({"width": width, "height": 900})
                assert page.evaluate("document.documentElement.scrollWidth") <= width, width
                box = chart.bounding_box()
                assert box is not None and box["width"] >= 400, (width, box)
                if width >= 1280:  # the whole chart on screen
                    assert box["x"] + box["width"] <= width, (width, box)
            page.screenshot(path=str(artefacts / "progress-1024.png"), full_page=True)
            page.set_viewport_size({"width": 1400, "height": 900})

            # Catalogue the matched pages into the planned hồ sơ, then hand the closed fonds
            # over (server.archive.fonds_handover, its CLI) and record the confirmation: the
            # page counts them handed over.
            db = Database(ServerSettings(data_dir=data_dir, database_url=url).database())
            records = Records(db)
            records.save_ho_so(HoSo(organ_id="H06.XL", nam=2019, ky_hieu="01",
                                    tieu_de=COMMUNE_A[0][1], thoi_han_bao_quan="Vĩnh viễn"),
                               "lan")  # fmt: skip
            ids = [r[0] for r in db.read().execute(
                "SELECT id FROM pages WHERE batch_pk = 1 ORDER BY page_no")]  # fmt: skip
            records.add_van_ban(FIRST_PLANNED, VanBanIn(trich_yeu="Biên bản", pages=ids[:2]), "lan")
            db.close()
            for argv in (["handover", "XL", "--out", str(tmp_path / "nop-luu-xl")],
                         ["confirm", "XL", "--receiver", "Nguyễn Văn B",
                          "--reference", "BB-01/2026"]):  # fmt: skip
                out = subprocess.run([str(BIN / "sohoa-server"), "fonds", *argv],
                                     env=server.env(), capture_output=True, text=True)  # fmt: skip
                assert out.returncode == 0, out.stderr
            page.reload()
            row = page.locator("table.plan-fonds tr[data-key='XL']")
            assert "Đã nộp lưu" in row.inner_text()
            assert row.locator("td.ho-so").inner_text().replace(" ", "") == "3/1/1/1/0/1"
            page.screenshot(path=str(artefacts / "progress-handed-over.png"), full_page=True)

            # The thống kê, downloaded from the page.
            with page.expect_download() as info:
                page.click("#thong-ke-xlsx")
            ws = load_workbook(io.BytesIO(Path(info.value.path()).read_bytes())).active
            codes = [r[1] for r in ws.iter_rows(min_row=5, values_only=True)]
            assert codes == ["AT", "NL", "XL", "Tổng cộng"]
            assert blocked == []
            browser.close()
    finally:
        server.stop()
