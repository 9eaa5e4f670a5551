"""`make demo` (scripts/demo.py) end to end, as a new user runs it — once, then again — in a
directory of its own on free ports: the real broker, server, SANE's test scanner, tesseract.
It must end at its login link with something real to show (a search without diacritics finds
the sample decision, the station's screen answers), stop cleanly on Ctrl-C, and a second run
must add nothing twice. Nothing else ran the demo: a broken `make demo` would only have been
seen by the next person to try it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

import pytest
from harness import REPO, free_port, wait_port

pytestmark = [pytest.mark.mqtt, pytest.mark.sane, pytest.mark.tesseract, pytest.mark.slow]

DONE = "Ctrl-C stops the station, the server and the broker."


def _run_until_done(env: dict[str, str], out: IO[str], log: Path) -> subprocess.Popen[str]:
    demo = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "demo.py")], env=env, cwd=REPO,
        stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 420
    while DONE not in log.read_text(errors="replace"):
        if demo.poll() is not None:
            raise AssertionError(f"the demo ended ({demo.returncode}):\n{log.read_text()}")
        if time.monotonic() > deadline:
            demo.kill()
            raise AssertionError(f"the demo did not finish:\n{log.read_text()}")
        time.sleep(0.5)
    return demo


def _stop(demo: subprocess.Popen[str], log: Path) -> int:
    """Ctrl-C, and the demo's exit code. Its own stop is bounded: each child gets SIGTERM,
    then SIGKILL after its timeout (the station 30 s, the server and the broker 15 s, each
    10 s more to be reaped: ~90 s at worst, when a page's OCR holds the station up on loaded
    cores)."""
    demo.send_signal(signal.SIGINT)
    try:
        return demo.wait(150)
    except subprocess.TimeoutExpired:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise AssertionError(f"the demo did not stop on Ctrl-C within 150 s:\n{tail}") from None
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
        return r.status, dict(r.headers), r.read()


def test_make_demo_shows_something_real_and_a_second_run_adds_nothing(tmp_path: Path) -> None:
    http, mqtt, screen = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
    env |= {
        "SOHOA_DEMO_DIR": str(tmp_path / "demo"),
        "SOHOA_DEMO_PORT": str(http),
        "SOHOA_DEMO_MQTT_PORT": str(mqtt),
        "SOHOA_DEMO_SCREEN_PORT": str(screen),
    }
    base = f"http://127.0.0.1:{http}"
    counts: list[dict[str, Any]] = []
    for run in (1, 2):
        log = tmp_path / f"demo-{run}.log"
        with log.open("w") as out:
            demo = _run_until_done(env, out, log)
            try:
                text = log.read_text()
                link = re.search(rf"{re.escape(base)}/login/link\?code=[\w-]+", text)
                token = re.search(r"Bearer (\S+)\)", text)
                assert link and token, text
                status, _, page = _get(link.group(0))
                assert status == 200 and b"<form" in page  # names the account, logs in on a click
                # A search without diacritics finds the sample decision: its page, its văn bản.
                status, headers, body = _get(
                    f"{base}/api/v1/search?q=phe+duyet+ke+hoach", token.group(1)
                )
                hits = json.loads(body)
                assert status == 200 and int(headers["x-total-count"]) >= 1, hits
                kinds = {h["kind"] for h in hits}
                assert "page" in kinds and "van_ban" in kinds, hits  # its text; its văn bản
                page_hit = next(h for h in hits if h["kind"] == "page")
                assert "phê duyệt kế hoạch" in page_hit["snippet"].lower(), page_hit
                # The station's screen, as the technician sees it, at the address printed.
                assert f"http://127.0.0.1:{screen}/" in text
                wait_port(screen, 60)  # the station's service opens it as it starts
                status, _, html = _get(f"http://127.0.0.1:{screen}/")
                assert status == 200 and "Quét".encode() in html
                batches = json.loads(_get(f"{base}/api/v1/batches", token.group(1))[2])
                ho_so = json.loads(_get(f"{base}/api/v1/ho-so", token.group(1))[2])
                counts.append(
                    {
                        "batches": sorted((b["source"], b["page_count"]) for b in batches),
                        "ho_so": sorted(h["ma_ho_so"] for h in ho_so),
                    }
                )
            finally:
                code = _stop(demo, log)
        assert code == 0, log.read_text()
        assert "==> Stopping" in log.read_text()
    first, second = counts
    assert first["batches"] == [("import", 5), ("scan", 10)], first
    assert len(first["ho_so"]) == 3, first
    assert second == first  # the second run scanned, imported and catalogued nothing again
