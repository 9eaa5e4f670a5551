"""The fonds page in Debian's Chromium against the real server process, on the archive the
real pipeline built (tests/real_archive.py) with a hồ sơ of its pages: an admin makes the
fonds of a merged commune and of the new one, assigns both to the station, closes the old
one into the new; the page names the commune before and after 2025; search finds the hồ sơ
by the former district's name without diacritics; the handover is prepared (its Mục lục
downloads) and the receiving archive's confirmation recorded. SQLite only: nothing here is
engine-specific (the same functions run on PostgreSQL in test_fonds_real.py). Screenshots:
var/test-artifacts/browser/fonds/."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from harness import BIN, REPO, Broker, ServerProcess
from real_archive import RealArchive
from test_browser import ARGS, CHROMIUM, PASSWORD
from test_staff import MA, ho_so_body

from server.archive.records import HoSo, Records, VanBanIn
from server.fleet import registry
from server.store.db import Database

pytestmark = [
    pytest.mark.browser,
    pytest.mark.mqtt,
    pytest.mark.tesseract,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed"),
]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_fonds_page_in_chromium(tmp_path: Path, broker: Broker, real_archive: RealArchive) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    catalogue = tmp_path / "db" / "archive.sqlite3"
    url = real_archive.catalogue_for(catalogue, None)
    data_dir = tmp_path / "server"
    real_archive.seed_data_dir(data_dir)
    db = Database(catalogue)
    records = Records(db)
    records.save_ho_so(HoSo(**ho_so_body()), "test")  # type: ignore[arg-type]
    pages = [int(r[0]) for r in db.read().execute("SELECT id FROM pages ORDER BY id LIMIT 2")]
    doc = VanBanIn(ten_loai="Biên bản", trich_yeu="Xử lý vi phạm khai thác khoáng sản", pages=pages)
    records.add_van_ban(MA, doc, "test")
    registry.issue_code(db, "xa-nghien-loan", "Xã Nghiên Loan", "", hours=1)
    db.close()
    artefacts = REPO / "var" / "test-artifacts" / "browser" / "fonds"
    artefacts.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(data_dir, broker.url, database_url=url).start()
    try:
        pw_file = tmp_path / "pw"
        pw_file.write_text(PASSWORD + "\n")
        subprocess.run(
            [str(BIN / "sohoa-server"), "user", "add", "quan", "--role", "admin",
             "--password-file", str(pw_file)],
            env=server.env(), check=True, capture_output=True,
        )  # fmt: skip
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900}, locale="vi-VN")
            page.set_default_timeout(10_000)
            blocked: list[str] = []
            page.on(
                "console",
                lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
            )
            base = server.url
            page.goto(base + "/")
            page.fill("#username", "quan")
            page.fill("#password", PASSWORD)
            page.click("form.grid button[type=submit]")
            page.wait_for_url(base + "/")
            page.click("header a[href='/fonds']")
            page.wait_for_url(base + "/fonds")
            assert page.locator("h1", has_text="Phông lưu trữ").is_visible()

            for code, name, organ, unit in (
                ("NL", "UBND xã Nghiên Loan", "", "new:01882"),
                ("XL", "UBND xã Xuân La", "000.00.00.H53", "old:01873"),
            ):
                page.fill("#f-code", code)
                page.fill("#f-name", name)
                page.fill("#f-organ", organ)
                page.fill("#f-unit", unit)
                page.click("#fonds-new button[type=submit]")
                page.wait_for_selector(f"tr[data-fonds='{code}']")
            # A unit code that names nothing is refused with a reason, nothing made.
            page.fill("#f-code", "BAD")
            page.fill("#f-name", "Sai mã")
            page.fill("#f-unit", "old:99999")
            page.click("#fonds-new button[type=submit]")
            assert "old:99999" in page.locator("#fonds-error").inner_text()
            assert page.locator("tr[data-fonds='BAD']").count() == 0

            station = page.locator("tr[data-station='xa-nghien-loan']")
            station.locator("input[name=codes]").fill("NL XL")
            station.locator("button[type=submit]").click()
            page.wait_for_selector("tr[data-station='xa-nghien-loan'] input[value='NL XL']")

            xl = page.locator("tr[data-fonds='XL']")
            xl.locator("input[name=closed]").fill("2025-06-30")
            xl.locator("select[name=merged_into]").select_option("NL")
            xl.locator("input[name=deadline]").fill("2026-06-30")
            xl.locator(".close-form button[type=submit]").click()
            page.wait_for_selector("tr[data-fonds='XL'] .handover-form")
            xl = page.locator("tr[data-fonds='XL']")
            assert xl.locator(".commune").inner_text() == "Xã Nghiên Loan (trước đây: Xã Xuân La)"
            assert "Huyện Pác Nặm" in xl.inner_text() and "Tỉnh Bắc Kạn" in xl.inner_text()
            assert "Đã kết thúc" in xl.locator(".status").inner_text()
            page.screenshot(path=str(artefacts / "fonds-closed.png"), full_page=True)

            page.fill("input[type=search]", "pac nam")
            page.press("input[type=search]", "Enter")
            page.wait_for_url("**/search?q=pac+nam")
            assert page.locator(f"a[href='/ho-so/{MA}']").count() >= 1
            page.goto(base + "/fonds")

            xl = page.locator("tr[data-fonds='XL']")
            xl.locator("input[name=ben_nhan]").fill("Lưu trữ lịch sử tỉnh Thái Nguyên")
            xl.locator(".handover-form button[type=submit]").click()
            page.wait_for_selector("tr[data-fonds='XL'] .confirm-form")
            xl = page.locator("tr[data-fonds='XL']")
            assert "Không còn thiếu gì" in xl.locator(".handover").inner_text()
            with page.expect_download() as info:
                xl.locator("a[href$='muc-luc-ho-so-nop-luu.xlsx']").click()
            from openpyxl import load_workbook

            assert info.value.suggested_filename == "XL-muc-luc-ho-so-nop-luu.xlsx"
            ws = load_workbook(io.BytesIO(info.value.path().read_bytes())).active
            assert ws["A1"].value == "MỤC LỤC HỒ SƠ NỘP LƯU" and ws["B6"].value == MA

            xl.locator("input[name=receiver]").fill("Trần Thị B")
            xl.locator("input[name=reference]").fill("BB-12/2026/LTLS")
            xl.locator("input[name=received_on]").fill("2026-05-20")
            xl.locator(".confirm-form button[type=submit]").click()
            page.wait_for_selector("tr[data-fonds='XL'] .confirmed")
            xl = page.locator("tr[data-fonds='XL']")
            assert "Đã nộp lưu" in xl.locator(".status").inner_text()
            assert "BB-12/2026/LTLS" in xl.locator(".confirmed").inner_text()
            page.screenshot(path=str(artefacts / "fonds-handed-over.png"), full_page=True)
            assert blocked == []
            browser.close()
    finally:
        server.stop()
