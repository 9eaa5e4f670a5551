"""The technician's screen in a real browser: Debian's Chromium driven by Playwright against a
real `sohoa-agent run` on SANE's test scanner, with a real broker and archive server. Type the
mã hồ sơ, press "Quét" on the page, watch the thumbnails of the ten sheets appear with their
state, and the sync state in words end at "all received by the archive"; then "quét lại trang
này" on page 3 scans one sheet from the glass that takes that page's place. A page on another
site cannot press the button (a form post is refused)."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from harness import BIN, Broker, ServerProcess, agent_env, free_port, wait_port
from test_browser import ARGS, CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.mqtt,
    pytest.mark.sane,
    pytest.mark.tesseract,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed"),
]


def test_scan_from_the_screen_in_chromium(
    tmp_path: Path, broker: Broker, server: ServerProcess
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    port = free_port()
    env = agent_env(
        tmp_path / "agent",
        broker.url,
        device_id="xa-screen-01",
        SOHOA_DPI="200",
        SOHOA_SCREEN_PORT=str(port),
        # the captures travel too (as in `make demo`), so that every file of a receipted
        # page leaves the station; by default they stay until archived another way
        SOHOA_SYNC_MASTERS="true",
    )
    log = open(tmp_path / "agent.log", "wb")  # noqa: SIM115
    agent = subprocess.Popen([str(BIN / "sohoa-agent"), "run"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_port(port, 30)
        # Another site's page can only send a form, never JSON with its content type: refused.
        forged = urllib.request.Request(
            base + "/api/scan", data=b"x=1", method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(forged, timeout=10)
        assert refused.value.code == 415
        state = json.load(urllib.request.urlopen(base + "/api/state", timeout=10))
        assert state["scanning"] is False and state["pages"] == []

        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            # a 7-inch touchscreen: 800 x 480
            # bypass_csp: the page forbids eval (its CSP), which Playwright's waits use
            page = browser.new_page(
                viewport={"width": 800, "height": 480}, locale="vi-VN", bypass_csp=True
            )
            page.set_default_timeout(20_000)
            page.goto(base + "/")
            # the page's script writes the state once its first /api/state has answered
            page.wait_for_selector("text=Sẵn sàng — nạp giấy và bấm Quét")
            assert page.locator("#scanner").inner_text() == "Máy quét: test:0"
            page.fill("#ho-so", "000.00.01.H57-2026-TP01")
            page.click("#ho-so-save")
            page.wait_for_selector("text=Lô tiếp theo: 000.00.01.H57-2026-TP01")

            page.click("#scan")
            page.wait_for_selector("#pages .page img", timeout=60_000)
            page.screenshot(path=str(tmp_path / "scanning.png"))
            page.wait_for_function(
                "document.querySelectorAll('#pages .page').length === 10", timeout=120_000
            )
            title = page.locator("#batch-title").inner_text()
            assert "hồ sơ 000.00.01.H57-2026-TP01" in title and "10 trang" in title
            # every thumbnail is a real picture of its page, not a broken image
            widths = page.eval_on_selector_all(
                "#pages .page img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)"
            )
            page.wait_for_function(
                "[...document.querySelectorAll('#pages .page img')]"
                ".every(i => i.complete && i.naturalWidth > 0)",
                timeout=30_000,
            )
            # processed, sent and receipted: the words say so
            page.wait_for_selector("text=Lưu trữ tỉnh đã nhận đủ mọi trang", timeout=240_000)
            assert page.locator("text=đang xử lý").count() == 0
            assert page.locator("#scan").is_enabled()
            # each page's warnings (blank, rotated, crooked, low OCR quality) are on its card
            final = json.load(urllib.request.urlopen(base + "/api/state", timeout=10))
            expected = [len(p["warnings"]) for p in final["pages"]]
            page.wait_for_function(
                "expected => JSON.stringify([...document.querySelectorAll('#pages .page')]"
                ".map(c => c.querySelectorAll('.warn').length)) === JSON.stringify(expected)",
                arg=expected,
            )
            # The archive has every part of every page, captures too, and the station has
            # let their files go: each card says where its page is (the demo's cards showed
            # ten broken images).
            page.wait_for_function(
                "[...document.querySelectorAll('#pages .page')].every(c => c.querySelector"
                "('.sent') && !c.querySelector('img'))",
                timeout=120_000,
            )
            assert page.locator("#pages .page .sent").first.inner_text() == (
                "✓ Đã gửi lên lưu trữ tỉnh"
            )
            page.screenshot(path=str(tmp_path / "done.png"), full_page=True)

            # "quét lại trang này": page 3 again from the glass, shown in its place
            third = page.locator("#pages .page").nth(2)
            third.locator("button.rescan").click()
            page.wait_for_selector("text=Trang 3 (đã quét lại)", timeout=120_000)
            assert page.locator("#pages .page").count() == 10
            page.wait_for_function(
                "[...document.querySelectorAll('#pages .page img')]"
                ".every(i => i.complete && i.naturalWidth > 0)",
                timeout=30_000,
            )
            page.screenshot(path=str(tmp_path / "rescanned.png"), full_page=True)
            browser.close()
        assert len(widths) == 10
        batches = server.get_json("/api/v1/batches")
        assert sorted(b["page_count"] for b in batches) in ([10], [1, 10])  # re-scan may trail
    finally:
        agent.terminate()
        try:
            agent.wait(30)
        except subprocess.TimeoutExpired:
            agent.kill()
        log.close()
