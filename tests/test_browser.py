"""The staff web app in a real browser: Debian's Chromium driven by Playwright against the real
server process (a real broker too, as in production). Log in, open a batch, search without
diacritics and see the highlighted hit, make a hồ sơ from the batch, add a văn bản, edit a
field, download the catalogue. Screenshots land in the test's tmp dir."""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path

import pytest
from harness import BIN, Broker, ServerProcess
from pgcluster import url_of
from test_staff import TEXT, seed

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.mqtt,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed"),
]
# docs/design.md §8: root needs --no-sandbox; the rest keeps Chromium off the closed network.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "mật khẩu thử nghiệm"


def test_staff_workflow_in_chromium(tmp_path: Path, broker: Broker, database: Path | str) -> None:
    """Once per catalogue engine: SQLite, and a real PostgreSQL server."""
    sync_api = pytest.importorskip("playwright.sync_api")
    data_dir = tmp_path / "server"
    data_dir.mkdir()
    texts = [TEXT, "Trang hai: Sổ hộ tịch năm 1998."]
    seed(data_dir, texts, [(), ("low_confidence",)], database)
    server = ServerProcess(data_dir, broker.url, database_url=url_of(database)).start()
    try:
        pw_file = tmp_path / "pw"
        pw_file.write_text(PASSWORD + "\n")
        subprocess.run(
            [str(BIN / "sohoa-server"), "user", "add", "lan", "--role", "archivist",
             "--password-file", str(pw_file)],
            env=server.env(), check=True, capture_output=True,
        )  # fmt: skip
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="vi-VN")
            page.set_default_timeout(10_000)
            base = server.url

            # Log in (any page redirects to the login form first).
            page.goto(base + "/")
            assert "/login" in page.url
            page.fill("#username", "lan")
            page.fill("#password", PASSWORD)
            page.click("form.grid button[type=submit]")
            page.wait_for_url(base + "/")
            assert page.locator("h1", has_text="Lô tài liệu đã nhận").is_visible()
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

            # Find the batch and open it.
            page.locator("table a[href^='/batches/']").first.click()
            page.wait_for_url("**/batches/*")
            assert page.get_by_text("Khai thác khoáng sản trái phép").is_visible()

            # Search without diacritics: the hit is highlighted in the original spelling.
            page.fill("input[type=search]", "khoang san")
            page.press("input[type=search]", "Enter")
            page.wait_for_url("**/search?q=khoang+san")
            marks = page.locator("ol.hits mark").all_inner_texts()
            assert marks[:2] == ["khoáng", "sản"], marks
            page.screenshot(path=str(tmp_path / "search.png"), full_page=True)
            page.locator("ol.hits a").first.click()
            page.wait_for_url("**/pages/*")
            assert page.locator("#ocr mark").first.inner_text() == "khoáng"
            page.wait_for_function("document.getElementById('scan').naturalWidth > 0")
            page.screenshot(path=str(tmp_path / "viewer.png"))

            # Make a hồ sơ from the batch, then give it a văn bản of pages 1-2.
            page.locator("a[href^='/batches/']").first.click()
            page.get_by_text("Lập hồ sơ từ lô này").click()
            page.fill("#f-organ_id", "000.00.00.H53")
            page.fill("#f-ky_hieu", "01.HT")
            page.fill("#f-tieu_de", "Hồ sơ xử lý vi phạm khai thác khoáng sản")
            page.click("#ho-so-form button[type=submit]")
            page.wait_for_url("**/ho-so/000.00.00.H53.*")
            ma = page.locator("#ma-ho-so").inner_text()
            assert ma.startswith("000.00.00.H53.") and ma.endswith(".01.HT")
            page.fill("#v-pages", "1-2")
            page.fill("#v-ten_loai", "Biên bản")
            page.fill("#v-trich_yeu", "Xử lý vi phạm khai thác khoáng sản trái phép")
            page.click("#van-ban-form button[type=submit]")
            page.wait_for_selector("table.van-ban")
            assert page.locator("table.van-ban code").inner_text() == f"{ma}.001"

            # Edit a field and save.
            page.fill("#f-ghi_chu", "Bìa hồ sơ bị rách góc")
            page.click("#ho-so-form button[type=submit]")
            page.wait_for_selector(".notice")
            assert page.input_value("#f-ghi_chu") == "Bìa hồ sơ bị rách góc"
            page.screenshot(path=str(tmp_path / "ho-so.png"), full_page=True)

            # Download the catalogue.
            page.goto(base + "/ho-so")
            with page.expect_download() as info:
                page.get_by_text("Mục lục hồ sơ nộp lưu (CSV)").click()
            path = info.value.path()
            rows = list(csv.reader(io.StringIO(Path(path).read_text(encoding="utf-8-sig"))))
            assert rows[0][1:3] == ["Mã hồ sơ", "Tiêu đề hồ sơ"]
            assert rows[1][1] == ma and "Bìa hồ sơ bị rách góc" in rows[1]
            browser.close()
    finally:
        server.stop()
