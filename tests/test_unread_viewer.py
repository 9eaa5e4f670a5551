"""Text the OCR left out, shown to staff (issue #15): a page a station read with cells left
out reaches the review queue with its reason and score, and the page viewer draws a box
over each cell left out — in Debian's Chromium, on a page this project did not make (bench
foreign letterpress-5, tests/fixtures/foreign/README.md) imported, processed and synced by
the real agent and ingested by the real server (tests/real_archive.py). Screenshots are kept
under var/test-artifacts/browser/unread/ (gitignored)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from harness import BIN, REPO, Broker, ServerProcess
from pgcluster import url_of
from PIL import Image
from real_archive import build as build_real_archive
from test_browser import ARGS, CHROMIUM, PASSWORD
from test_unread_text import DROPPED_CELLS, FIXTURES

from server.archive import review

pytestmark = [
    pytest.mark.browser,
    pytest.mark.mqtt,
    pytest.mark.tesseract,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed"),
]


def test_staff_see_where_the_text_left_unread_is_on_the_page(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    # The fixture as a copier saves it: with its resolution (the bench rendered it at 300 dpi).
    source = FIXTURES / "letterpress-5-table.png"
    capture = tmp_path / "bang.png"
    with Image.open(source) as image:
        size = image.size
        image.save(capture, dpi=(300, 300))
    archive = build_real_archive(tmp_path / "built", "sqlite", None, images=[capture])
    assert archive.sqlite_file is not None
    artefacts = REPO / "var" / "test-artifacts" / "browser" / "unread"
    artefacts.mkdir(parents=True, exist_ok=True)
    broker = Broker(tmp_path / "broker").start()
    server = ServerProcess(archive.store, broker.url, database_url=url_of(archive.sqlite_file))
    server.start()
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
            blocked: list[str] = []
            page.on(
                "console",
                lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
            )
            base = server.url
            page.goto(base + "/review")
            page.fill("#username", "lan")
            page.fill("#password", PASSWORD)
            page.click("form.grid button[type=submit]")
            page.goto(base + "/review")

            # The queue says why, and gives the score as the station computed it (one decimal:
            # a score of 87.5 under a cut of 88 is not shown as "88").
            row = page.locator("tr", has=page.locator("a[href^='/pages/']")).first
            assert "có chữ trên trang không được nhận dạng" in row.inner_text()
            score = row.locator("td[data-quality]")
            value = float(score.get_attribute("data-quality") or "nan")
            assert score.inner_text().split("\n")[0] == f"{value:.1f}".replace(".", ",")
            page.screenshot(path=str(artefacts / "review.png"), full_page=True)

            # The page viewer draws a box over each cell tesseract left out.
            row.locator("a[href^='/pages/']").first.click()
            page.wait_for_url("**/pages/*")
            page.wait_for_function("() => document.getElementById('scan').naturalWidth > 0")
            page.wait_for_selector("#sheet .unread")
            assert page.locator("#unread-toggle").is_visible()
            reasons = page.locator(".toolbar .reason").all_inner_texts()
            assert "có chữ trên trang không được nhận dạng" in reasons, reasons
            scan = page.locator("#scan").bounding_box()
            boxes = [b.bounding_box() for b in page.locator("#sheet .unread").all()]
            assert scan and boxes and all(boxes)
            assert len(boxes) <= review.UNREAD_BOXES_SHOWN
            for name, (x, y, w, h) in DROPPED_CELLS.items():
                # The cell's centre, from the fixture's pixels to the image on screen.
                cx = scan["x"] + (x + w / 2) / size[0] * scan["width"]
                cy = scan["y"] + (y + h / 2) / size[1] * scan["height"]
                inside = [
                    b for b in boxes
                    if b["x"] <= cx <= b["x"] + b["width"] and b["y"] <= cy <= b["y"] + b["height"]
                ]  # fmt: skip
                assert inside, (name, (cx, cy), boxes)
            # Read words are not boxed: no box is wider than a third of the page.
            assert all(b["width"] < scan["width"] / 3 for b in boxes), boxes
            page.screenshot(path=str(artefacts / "viewer.png"))

            # The boxes can be hidden to read the page under them, and shown again.
            page.click("#unread-toggle")
            assert page.locator("#unread-toggle").get_attribute("aria-pressed") == "false"
            assert page.locator("#sheet .unread").first.is_hidden()
            page.click("#unread-toggle")
            assert page.locator("#sheet .unread").first.is_visible()
            assert not blocked, blocked
            browser.close()
    finally:
        server.stop()
        broker.stop()
