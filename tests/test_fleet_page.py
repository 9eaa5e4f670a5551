"""The fleet tables (the dashboard's stations, and the admin's registry page) after they were
made cheaper for a province's 1,000 stations (bench/fleet.py): each row still says what it
said — status in the reader's language, backlog, disk, the station's last error translated
when its key is known and shown as sent when not — and the registry's revoke buttons."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from protocol import signing
from server.app import create_app
from server.archive import auth
from server.config import ServerSettings
from server.store.db import Database

PASSWORD = "mật khẩu đủ dài cho đội trạm"
DEVICES = {
    "xa-0001": ("online", {"queue_pages": 7, "disk_free_bytes": 5 * 1024**3, "last_error": ""}),
    "xa-0002": ("offline", {"queue_pages": 0, "last_error": "scanner_not_found: no device"}),
    "xa-0003": ("unknown", {"last_error": "made_up_key: something odd"}),
}


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[TestClient]:
    settings = ServerSettings(data_dir=tmp_path / "server", ingest=False)
    db = Database(settings.database())
    auth.add_user(db, "boss", "admin", PASSWORD)
    now = time.time()
    with db.tx() as con:
        for device, (status, telemetry) in DEVICES.items():
            con.execute(
                "INSERT INTO devices(device_id, first_seen, last_seen, status, agent_version,"
                " telemetry) VALUES (?, ?, ?, ?, '1.2.3', ?)",
                (device, now, now, status, json.dumps(telemetry)),
            )
        for n, state in enumerate(("active", "pending", "revoked")):
            key = signing.public_key_hex(signing.new_key()) if state != "pending" else ""
            con.execute(
                "INSERT INTO stations (device_id, commune, district, state, created_at,"
                " public_key) VALUES (?, ?, 'H', ?, ?, ?)",
                (f"xa-000{n + 1}", f"Xã {n + 1}", state, now, key),
            )
    with TestClient(create_app(settings)) as client:
        page = client.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf
        form = {"username": "boss", "password": PASSWORD, "csrf": csrf.group(1)}
        assert client.post("/login", data=form).status_code == 200
        yield client
    db.close()


def _row(html: str, device: str) -> str:
    m = re.search(rf"<tr><td>{device}<div.*?</tr>", html, re.S)
    assert m, f"no fleet row for {device}"
    return m.group(0)


def test_dashboard_fleet_rows(admin: TestClient) -> None:
    html = admin.get("/").text
    one, two, three = (_row(html, d) for d in DEVICES)
    # Vietnamese numbers: decimal comma.
    assert 'class="ok">Đang hoạt động<' in one and "<td>7</td>" in one and "5,0 GB" in one
    assert 'action="/devices/xa-0001/commune"' in one  # the admin's commune form, per row
    assert 'class="bad">Mất kết nối<' in two
    assert "Không tìm thấy máy quét" in two  # a known error key, translated
    assert 'class="bad">Chưa rõ<' in three
    assert ">made_up_key: something odd<" in three  # an unknown key, as the station sent it
    english = admin.get("/?lang=en").text
    assert 'class="ok">Online<' in _row(english, "xa-0001")
    assert "Scanner not found" in _row(english, "xa-0002")


def test_registry_page_rows(admin: TestClient) -> None:
    html = admin.get("/stations").text
    rows = {d: re.search(rf"<tr><td>{d}</td>.*?</tr>", html, re.S) for d in DEVICES}
    assert all(rows.values())
    active, pending, revoked = (m.group(0) for m in rows.values() if m)
    assert "đang hoạt động" in active and "/stations/xa-0001/revoke" in active
    assert 'data-confirm="' in active  # static/confirm.js asks (no inline script: CSP)
    assert "chờ đăng ký" in pending and "/stations/xa-0002/revoke" in pending
    assert "đã thu hồi" in revoked and "revoke" not in revoked.split("</td>", 3)[-1]
