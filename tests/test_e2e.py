"""One button press to the central archive, end to end, with every real part: SANE's test
scanner through python-sane, tesseract `vie`, a real Mosquitto, the server as a process."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from corpus import PageSpec, render_page, save_png
from harness import Broker, ServerProcess, agent_env, run_agent
from pgcluster import url_of

pytestmark = [pytest.mark.sane, pytest.mark.tesseract, pytest.mark.mqtt, pytest.mark.slow]


def _status(env: dict[str, str]) -> dict:  # type: ignore[type-arg]
    out = run_agent(env, "status", "--json", check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_scan_to_archive_with_byte_identical_originals(
    tmp_path: Path, broker: Broker, server: ServerProcess
) -> None:
    env = agent_env(tmp_path / "agent", broker.url, SOHOA_SYNC_MASTERS="true", SOHOA_DPI="200")

    scan = run_agent(env, "scan", check=True)
    assert "Đã lưu trang 10" in scan.stdout  # the test backend's feeder holds 10 sheets
    captures = sorted((tmp_path / "agent" / "batches").glob("*/capture/*.png"))
    assert len(captures) == 10
    originals = {p.name: p.read_bytes() for p in captures}

    sync = run_agent(env, "sync", "--wait", "--timeout", "180", check=True)
    assert "Đã gửi xong" in sync.stdout

    batches = server.get_json("/api/v1/batches")
    assert len(batches) == 1
    assert batches[0]["complete"]
    assert batches[0]["page_count"] == 10
    detail = server.get_json(f"/api/v1/batches/{batches[0]['id']}")
    assert [p["page_no"] for p in detail["pages"]] == list(range(1, 11))
    for page in detail["pages"]:
        status, body, _headers = server.get(f"/api/v1/pages/{page['id']}/original")
        assert status == 200
        assert body == originals[f"{page['page_no']:04d}.png"]
        assert hashlib.sha256(body).hexdigest() == page["capture_sha256"]
        status, image, _ = server.get(f"/api/v1/pages/{page['id']}/image")
        assert status == 200
        assert hashlib.sha256(image).hexdigest() == page["sha256"]

    # Acknowledged by the archive, so the edge let go of everything, masters included.
    assert not list((tmp_path / "agent" / "batches").glob("*/capture/*.png"))
    st = _status(env)
    assert st["pages_waiting_sync"] == 0
    assert st["batches"] == {"done": 1}


@pytest.fixture
def archive(tmp_path: Path, broker: Broker, database: Path | str) -> Iterator[ServerProcess]:
    """The server as a process on either catalogue engine (SQLite, or real PostgreSQL)."""
    s = ServerProcess(tmp_path / "server", broker.url, database_url=url_of(database)).start()
    yield s
    s.stop()


def test_imported_vietnamese_page_is_searchable_without_diacritics(
    tmp_path: Path, broker: Broker, archive: ServerProcess
) -> None:
    server = archive
    page = render_page(PageSpec(dpi=300, skew_deg=1.5, noise_sigma=3.0))
    (tmp_path / "in").mkdir()
    src = save_png(page, tmp_path / "in" / "quyet-dinh.png", dpi=300)
    env = agent_env(tmp_path / "agent", broker.url)  # masters stay on the device

    out = run_agent(env, "import", str(src), check=True)
    assert "Đã nhập 1 trang" in out.stdout
    run_agent(env, "sync", "--wait", "--timeout", "180", check=True)

    hits = server.get_json("/api/v1/search?q=phe%20duyet%20ke%20hoach")
    assert hits, "a query without diacritics finds the page"
    text_status, text, headers = server.get(f"/api/v1/pages/{hits[0]['page']}/text")
    assert text_status == 200
    assert "charset=utf-8" in headers["content-type"]
    assert "QUYẾT ĐỊNH" in text.decode()
    # Masters were not asked for: the original stays on the device and 404s at the archive.
    assert server.get(f"/api/v1/pages/{hits[0]['page']}/original")[0] == 404
    assert len(list((tmp_path / "agent" / "batches").glob("*/capture/*"))) == 1
