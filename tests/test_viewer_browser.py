"""The staff page viewer in Debian's Chromium on pages this project did not draw upright:
bench foreign's letterpress-5 table (tests/fixtures/foreign/README.md), whose faint cells
tesseract leaves out, and a sheet fed sideways, which the station turns. Both are imported,
processed and synced by the real agent and ingested by the real server
(tests/real_archive.py). Screenshots are kept under var/test-artifacts/browser/viewer/
(gitignored)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import BIN, REPO, Broker, ServerProcess
from pgcluster import url_of
from PIL import Image
from real_archive import PAGES, draw_page
from real_archive import build as build_real_archive
from test_browser import ARGS, CHROMIUM, PASSWORD
from test_unread_text import DROPPED_CELLS, FIXTURES

from server.archive import review

pytestmark = [
    pytest.mark.browser,
    pytest.mark.mqtt,
    pytest.mark.tesseract,
    pytest.mark.slow,
    # a skip under CI=true fails the run (tests/no_skips.py)
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed"),
]
TABLE = FIXTURES / "letterpress-5-table.png"
ARTEFACTS = REPO / "var" / "test-artifacts" / "browser" / "viewer"


@dataclass
class Staff:
    page: Any  # playwright.sync_api.Page, logged in as an archivist
    base: str
    blocked: list[str]  # what the Content-Security-Policy refused
    data_dir: Path  # the server's (its store, its render cache)


@pytest.fixture(scope="module")
def staff(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Staff]:
    sync_api = pytest.importorskip("playwright.sync_api")
    work = tmp_path_factory.mktemp("viewer-browser")
    # The table as a copier saves it, with its resolution (the bench rendered it at 300 dpi);
    # page 1 of tests/real_archive.py fed sideways (A5 landscape: a portrait capture).
    table = work / "bang.png"
    with Image.open(TABLE) as image:
        image.save(table, dpi=(300, 300))
    upright = draw_page(PAGES[0], work / "upright.png")
    sideways = work / "nghieng.png"
    with Image.open(upright) as image:
        image.rotate(90, expand=True).save(sideways, dpi=(300, 300))
    archive = build_real_archive(work / "built", "sqlite", None, images=[table, sideways])
    assert archive.sqlite_file is not None
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    broker = Broker(work / "broker").start()
    server = ServerProcess(archive.store, broker.url, database_url=url_of(archive.sqlite_file))
    server.start()
    try:
        pw_file = work / "pw"
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
            page.goto(server.url + "/review")
            page.fill("#username", "lan")
            page.fill("#password", PASSWORD)
            page.click("form.grid button[type=submit]")
            yield Staff(page, server.url, blocked, archive.store)
            browser.close()
    finally:
        server.stop()
        broker.stop()


def _open_page(staff: Staff, page_no: int) -> dict[str, float]:
    """Open page ``page_no`` of the batch from the review queue (both pages are flagged);
    the image's box on screen once it is in."""
    page = staff.page
    page.goto(staff.base + "/review")
    row = page.locator("tr", has=page.locator(f"a:text-matches('Trang {page_no}$')")).first
    row.locator("a[href^='/pages/']").first.click()
    page.wait_for_url("**/pages/*")
    page.wait_for_function("() => document.getElementById('scan').naturalWidth > 0")
    box = page.locator("#scan").bounding_box()
    assert box is not None
    return box  # type: ignore[no-any-return]


def test_staff_see_where_the_text_left_unread_is_on_the_page(staff: Staff) -> None:
    page = staff.page
    page.goto(staff.base + "/review")
    # The queue says why, and gives the score as the station computed it (one decimal: a
    # score of 87.5 under a cut of 88 is not shown as "88").
    row = page.locator("tr", has=page.locator("a:text-matches('Trang 1$')")).first
    assert "có chữ trên trang không được nhận dạng" in row.inner_text()
    score = row.locator("td[data-quality]")
    value = float(score.get_attribute("data-quality") or "nan")
    assert score.inner_text().split("\n")[0] == f"{value:.1f}".replace(".", ",")
    page.screenshot(path=str(ARTEFACTS / "review.png"), full_page=True)

    # The page viewer names the reasons and draws a box over each cell tesseract left out.
    scan = _open_page(staff, 1)
    page.wait_for_selector("#sheet .unread")
    assert page.locator("#unread-toggle").is_visible()
    reasons = page.locator(".toolbar .reason").all_inner_texts()
    assert "có chữ trên trang không được nhận dạng" in reasons, reasons
    boxes = [b.bounding_box() for b in page.locator("#sheet .unread").all()]
    assert boxes and all(boxes) and len(boxes) <= review.UNREAD_BOXES_SHOWN
    with Image.open(TABLE) as image:
        size = image.size
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
    page.screenshot(path=str(ARTEFACTS / "unread.png"))

    # The boxes can be hidden to read the page under them, and shown again.
    page.click("#unread-toggle")
    assert page.locator("#unread-toggle").get_attribute("aria-pressed") == "false"
    assert page.locator("#sheet .unread").first.is_hidden()
    page.click("#unread-toggle")
    assert page.locator("#sheet .unread").first.is_visible()
    assert not staff.blocked, staff.blocked


def test_a_page_the_station_turned_is_shown_in_its_own_shape(staff: Staff) -> None:
    """The capture is portrait, the archival page the station turned is landscape: the
    viewer sized the page by the capture and stretched the image to it (sixteenth sitting)."""
    page = staff.page
    scan = _open_page(staff, 2)
    assert page.locator(".flag", has_text="đã xoay").count() == 1  # the station's turn, said
    natural = page.evaluate(
        "(() => { const i = document.getElementById('scan');"
        " return i.naturalHeight / i.naturalWidth; })()"
    )
    assert natural < 1, natural  # landscape, as turned upright
    # Laid out in that shape from the start (the station's turn is in its decisions), not
    # only once the image is in.
    first_aspect = float(page.get_attribute("#sheet", "data-aspect") or "nan")
    assert abs(first_aspect - natural) < 0.01, (first_aspect, natural)
    page.wait_for_function(
        "() => { const s = document.getElementById('sheet').getBoundingClientRect();"
        " const i = document.getElementById('scan');"
        " return Math.abs(s.height / s.width - i.naturalHeight / i.naturalWidth) < 0.01; }"
    )
    scan = page.locator("#scan").bounding_box()
    assert scan is not None
    assert abs(scan["height"] / scan["width"] - natural) < 0.01, (scan, natural)
    # Zoomed, it keeps its shape (a wider rendering is asked for and loads).
    first = page.evaluate("document.getElementById('scan').src")
    for _ in range(3):
        page.click("button[data-zoom='1.25']")
    page.wait_for_function(
        "(first) => { const i = document.getElementById('scan');"
        " return i.src !== first && i.complete && i.naturalWidth > 0; }",
        arg=first,
    )
    # (the element's own box: Playwright's is cut to the scrolled canvas)
    width, height = page.evaluate(
        "(() => { const r = document.getElementById('scan').getBoundingClientRect();"
        " return [r.width, r.height]; })()"
    )
    assert width > scan["width"] * 1.5, (width, scan)
    assert abs(height / width - natural) < 0.01, (width, height, natural)
    page.screenshot(path=str(ARTEFACTS / "turned.png"))
    assert not staff.blocked, staff.blocked


def test_a_page_image_the_store_cannot_give_says_so_and_comes_back_on_retry(staff: Staff) -> None:
    """The store does not give the page's file (here its archival PDF moved away, as a
    store that does not answer gives a 503 too): the viewer says so in Vietnamese, with a
    button that asks again, instead of a broken-image icon; once the file is back, the
    button brings the image."""
    page = staff.page
    (archival,) = (staff.data_dir / "store").rglob("0001-*.archival.*")
    aside = archival.with_name(archival.name + ".aside")
    shutil.rmtree(staff.data_dir / "render-cache", ignore_errors=True)
    archival.rename(aside)
    # The earlier tests' renderings of this page are in the browser's cache (immutable).
    page.context.new_cdp_session(page).send("Network.clearBrowserCache")
    try:
        page.goto(staff.base + "/review")
        row = page.locator("tr", has=page.locator("a:text-matches('Trang 1$')")).first
        row.locator("a[href^='/pages/']").first.click()
        page.wait_for_url("**/pages/*")
        note = page.locator("#image-error")
        note.wait_for(state="visible")
        assert "Không tải được ảnh trang" in note.inner_text()
        page.screenshot(path=str(ARTEFACTS / "image-unavailable.png"))
    finally:
        aside.rename(archival)
    page.click("#image-retry")
    page.wait_for_function("() => document.getElementById('scan').naturalWidth > 0")
    note.wait_for(state="hidden")
    assert not staff.blocked, staff.blocked
