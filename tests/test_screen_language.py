"""The technician's screen in Debian's Chromium, in the station's language, with the station
behind it stood in for (its scanner, broker and archive are tests/test_screen.py's, in
Vietnamese): every word the page writes follows the setting `language` (English showed
Vietnamese labels: the page's script wrote them), and a row the script hides stays hidden
(the fonds row, empty, showed on every station with one fonds or none: `.row`'s display
beat the `hidden` attribute)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harness import free_port
from test_browser import ARGS, CHROMIUM

from agent.outbox import outbox as ob
from agent.screen.web import Screen

pytestmark = [pytest.mark.browser]


class _Station:
    def __init__(self, outbox: ob.Outbox, language: str, fonds: list[str]) -> None:
        self.outbox = outbox
        self.language = language
        self.fonds = fonds

    def screen_state(self) -> dict[str, Any]:
        return {
            "scanner": "test:0", "scanning": False, "last_error": None, "link": True,
            "pending_pages": 0, "disk_days_left": 41.6, "disk_warn": False, "rescans": [],
            "next_ho_so": "", "fonds": self.fonds[0] if self.fonds else "",
            "fonds_choices": self.fonds, "fonds_names": {"TP": "UBND xã Tân Phú"},
            "language": self.language,
        }  # fmt: skip

    def start_scan(self) -> bool:
        return False

    def set_next_ho_so(self, code: str) -> None:
        pass

    def set_fonds(self, code: str) -> bool:
        return code in self.fonds

    def rescan_page(self, batch_id: str, page_no: int) -> bool:
        return False


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed")  # CI: fails
def test_the_screen_speaks_the_station_s_language_and_hides_the_rows_it_hides(
    tmp_path: Path,
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    outbox = ob.Outbox(tmp_path / "outbox")
    station = _Station(outbox, "en", ["TP"])
    server = Screen(station, port=free_port()).start()  # type: ignore[arg-type]
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page(viewport={"width": 800, "height": 480}, bypass_csp=True)
            page.goto(base)
            page.wait_for_selector("text=Ready — load the paper and press Scan")
            assert page.locator("html").get_attribute("lang") == "en"
            assert page.locator("#scanner").inner_text() == "Scanner: test:0"
            assert page.locator("#scan").inner_text() == "Scan"
            assert page.locator("label[for=ho-so]").inner_text() == "File code for the next batch:"
            assert "The disk holds about 41 more days" in page.locator("#disk").inner_text()
            body = page.locator("body").inner_text()
            for vietnamese in ("Quét", "Máy quét", "Lưu", "Mã hồ sơ", "Sẵn sàng", "Ổ đĩa"):
                assert vietnamese not in body, (vietnamese, body)
            # One fonds: nothing to choose, the row stays hidden.
            assert not page.locator("#fonds-row").is_visible()
            station.fonds = ["TP", "XL"]
            page.wait_for_selector("#fonds-row", state="visible")
            assert page.locator("label[for=fonds]").inner_text() == "Fonds of the next batches:"
            # Vietnamese, the default: the same page in the station's words.
            station.language, station.fonds = "vi", []
            page.wait_for_selector("text=Sẵn sàng — nạp giấy và bấm Quét")
            assert page.locator("html").get_attribute("lang") == "vi"
            assert page.locator("#scan").inner_text() == "Quét"
            assert page.locator("label[for=ho-so]").inner_text() == "Mã hồ sơ cho lô tiếp theo:"
            assert not page.locator("#fonds-row").is_visible()
            browser.close()
    finally:
        server.shutdown()
        outbox.close()
