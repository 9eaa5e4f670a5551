"""The staff web app in a real browser: Debian's Chromium driven by Playwright against the real
server process (a real broker too, as in production). Log in, open a batch, search without
diacritics and see the highlighted hit — in the text and on the page image, which must
decode —, make a hồ sơ from the batch, add a văn bản, edit a field, download the catalogue.
The archive is the one the real pipeline built (tests/real_archive.py). Screenshots are kept
under var/test-artifacts/browser/<engine>/ (gitignored) to look at after a run."""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path

import pytest
from harness import BIN, REPO, Broker, ServerProcess
from real_archive import RealArchive

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.mqtt,
    pytest.mark.tesseract,
    pytest.mark.slow,
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


def test_staff_workflow_in_chromium(
    request: pytest.FixtureRequest, tmp_path: Path, broker: Broker, real_archive: RealArchive
) -> None:
    """Once per catalogue engine: SQLite, and a real PostgreSQL server."""
    sync_api = pytest.importorskip("playwright.sync_api")
    cluster = request.getfixturevalue("pg_cluster") if real_archive.engine != "sqlite" else None
    url = real_archive.catalogue_for(tmp_path / "db" / "archive.sqlite3", cluster)
    data_dir = tmp_path / "server"
    real_archive.seed_data_dir(data_dir)
    artefacts = REPO / "var" / "test-artifacts" / "browser" / real_archive.engine
    artefacts.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(data_dir, broker.url, database_url=url).start()
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
            # Anything the Content-Security-Policy blocks (an inline script left behind).
            blocked: list[str] = []
            page.on(
                "console",
                lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
            )
            base = server.url

            # Log in (any page redirects to the login form first).
            page.goto(base + "/")
            assert "/login" in page.url
            page.fill("#username", "lan")
            page.fill("#password", PASSWORD)
            page.click("form.grid button[type=submit]")
            page.wait_for_url(base + "/")
            assert page.locator("h1", has_text="Lô tài liệu đã nhận").is_visible()
            page.screenshot(path=str(artefacts / "dashboard.png"), full_page=True)

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
            page.screenshot(path=str(artefacts / "search.png"), full_page=True)
            page.locator("ol.hits a").first.click()
            page.wait_for_url("**/pages/*")
            assert page.locator("#ocr mark").first.inner_text() == "khoáng"
            # The page image decodes (a PDF in <img> would not), and the search words are
            # marked on it from the archival PDF/A's text layer.
            page.wait_for_function("() => document.getElementById('scan').naturalWidth > 0")
            assert page.evaluate("document.getElementById('scan').naturalWidth") >= 800
            page.wait_for_selector("#sheet .hit")
            assert page.locator("#sheet .hit").count() == 4  # "khoáng sản" twice
            # Read right, with no text left out: no box of unread text, nothing to toggle.
            assert page.locator("#sheet .unread, #unread-toggle").count() == 0
            page.screenshot(path=str(artefacts / "viewer.png"))
            # Zoom in (1.25³ of a ~750 px fit needs more than 1,200 pixels across): the
            # viewer asks for a wider rendering.
            rect = "(() => { const r = document.getElementById('scan').getBoundingClientRect();"
            rect += " return [r.width, r.height]; })()"
            fit_w, fit_h = page.evaluate(rect)
            for _ in range(3):
                page.click("button[data-zoom='1.25']")
            # Zoomed, not squeezed: wider by 1.25³, in the same shape.
            zoom_w, zoom_h = page.evaluate(rect)
            assert abs(zoom_w / fit_w - 1.25**3) < 0.02, (fit_w, zoom_w)
            assert abs(zoom_h / zoom_w - fit_h / fit_w) < 0.01, (fit_w, fit_h, zoom_w, zoom_h)
            page.wait_for_function(
                "() => /render\\?w=(1600|2400)/.test(document.getElementById('scan').src)"
            )
            page.wait_for_function("() => document.getElementById('scan').naturalWidth >= 1600")
            page.screenshot(path=str(artefacts / "viewer-zoomed.png"))
            # The capture the station sent, beside the archival page: both decode, the
            # capture only once it is asked for.
            assert page.evaluate("document.getElementById('capture').src") == ""
            page.click("button[data-view='both']")
            page.wait_for_function(
                "() => ['scan', 'capture'].every(id => {"
                " const i = document.getElementById(id);"
                " return i.complete && i.naturalWidth >= 800 && i.offsetWidth > 0; })"
            )
            left = page.locator("#sheet").bounding_box()
            right = page.locator("#capture-sheet").bounding_box()
            assert left and right and left["x"] + left["width"] <= right["x"]  # side by side
            assert "/capture?w=" in page.evaluate("document.getElementById('capture').src")
            page.screenshot(path=str(artefacts / "viewer-capture-beside.png"))
            page.click("button[data-view='capture']")
            assert page.locator("#sheet").is_hidden() and page.locator("#capture").is_visible()

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
            # The văn bản shows its pages, rendered from their archival PDF/A.
            assert page.locator("table.van-ban img").count() == 2
            page.wait_for_function(
                "() => [...document.querySelectorAll('table.van-ban img')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )

            # Edit a field and save.
            page.fill("#f-ghi_chu", "Bìa hồ sơ bị rách góc")
            page.click("#ho-so-form button[type=submit]")
            page.wait_for_selector(".notice")
            assert page.input_value("#f-ghi_chu") == "Bìa hồ sơ bị rách góc"
            page.screenshot(path=str(artefacts / "ho-so.png"), full_page=True)

            # The review queue: the blank sheet the pipeline flagged, its thumbnail decoded.
            page.goto(base + "/review")
            page.wait_for_function(
                "() => { const i = [...document.querySelectorAll('main img')];"
                " return i.length >= 2 && i.every(x => x.complete && x.naturalWidth > 0); }"
            )
            assert page.locator("main img.capture").count() >= 1  # the capture beside it
            page.screenshot(path=str(artefacts / "review.png"), full_page=True)

            # A mistyped address: the app's own page, in Vietnamese, not FastAPI's JSON.
            missing = page.goto(base + "/tram-quet")
            assert missing is not None and missing.status == 404
            assert page.locator("main .errors").inner_text() == "Không tìm thấy."

            # Download the catalogue.
            page.goto(base + "/ho-so")
            with page.expect_download() as info:
                page.get_by_text("Mục lục hồ sơ nộp lưu (CSV)").click()
            path = info.value.path()
            rows = list(csv.reader(io.StringIO(Path(path).read_text(encoding="utf-8-sig"))))
            assert rows[0][1:3] == ["Mã hồ sơ", "Tiêu đề hồ sơ"]
            assert rows[1][1] == ma and "Bìa hồ sơ bị rách góc" in rows[1]
            assert blocked == []

            # Every staff page, as an admin, in both languages, under the strict policy: any
            # violation report (an inline style or script left in a template) fails the test.
            subprocess.run(
                [str(BIN / "sohoa-server"), "user", "add", "quan-tri", "--role", "admin",
                 "--password-file", str(pw_file)],
                env=server.env(), check=True, capture_output=True,
            )  # fmt: skip
            admin = browser.new_page(viewport={"width": 1280, "height": 900})
            admin.set_default_timeout(10_000)
            reports: list[str] = []
            admin.on(
                "console",
                lambda m: reports.append(m.text) if "Content Security Policy" in m.text else None,
            )
            admin.add_init_script(
                "document.addEventListener('securitypolicyviolation', e =>"
                " console.error('Content Security Policy violation: ' + e.violatedDirective))"
            )
            admin.goto(base + "/login")
            admin.fill("#username", "quan-tri")
            admin.fill("#password", PASSWORD)
            admin.click("form.grid button[type=submit]")
            admin.wait_for_url(base + "/")
            page_id = admin.evaluate(
                "fetch('/api/v1/batches').then(r => r.json())"
                ".then(b => fetch('/api/v1/batches/' + b[0].id)).then(r => r.json())"
                ".then(b => b.pages[0].id)"
            )
            device_id = admin.evaluate(
                "fetch('/api/v1/devices').then(r => r.json()).then(d => d[0].device_id)"
            )
            paths = ["/", "/?state=online&name=xa", f"/devices/{device_id}", "/batches/1",
                     f"/pages/{page_id}?q=khoang", "/search?q=khoang+san",
                     "/review", "/ho-so", "/ho-so/new", f"/ho-so/{ma}", "/audit", "/users",
                     "/stations", "/pages/999999", "/fonds", "/plan", "/plan/import",
                     f"/pages/{page_id}/redo"]  # fmt: skip
            for lang in ("vi", "en"):
                for path in paths:
                    sep = "&" if "?" in path else "?"
                    admin.goto(f"{base}{path}{sep}lang={lang}")
                    admin.wait_for_load_state("load")
                    # The style sheet applied (the header's colour comes from staff.css).
                    colour = admin.evaluate(
                        "getComputedStyle(document.querySelector('header')).backgroundColor"
                    )
                    assert colour == "rgb(122, 31, 31)", (path, colour)
                    # Nothing runs past a 1,280-px screen's right edge (the plan's charts did).
                    wide = admin.evaluate("document.documentElement.scrollWidth")
                    assert wide <= 1280, (path, lang, wide)
                # A value a page cannot use: the reader's words, styled, under the same policy.
                answer = admin.goto(f"{base}/?page=abc&lang={lang}")
                assert answer is not None and answer.status == 422
                words = {"vi": "không dùng được: page", "en": "cannot use: page"}[lang]
                assert words in admin.locator("main").inner_text()
                colour = admin.evaluate(
                    "getComputedStyle(document.querySelector('header')).backgroundColor"
                )
                assert colour == "rgb(122, 31, 31)", colour
            admin.goto(f"{base}/pages/{page_id}")
            admin.click("button[data-view='both']")
            admin.wait_for_function("() => document.getElementById('capture').naturalWidth > 0")
            assert reports == [], reports
            browser.close()
    finally:
        server.stop()
