"""The fleet tables (the dashboard's stations, and the admin's registry page) after they were
made cheaper for a province's 1,000 stations (bench/fleet.py): each row still says what it
said — status in the reader's language, backlog, disk, the station's last error translated
when its key is known and shown as sent when not — and the registry's revoke buttons.
Then (issue 19) the lists a provincial admin reads: the stations needing attention first with
counts per state, the rest 50 a page, filtered by state, commune or a name typed with or
without diacritics; the commune form on each station's own page."""

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
    m = re.search(rf'<tr data-device="{device}">.*?</tr>', html, re.S)
    assert m, f"no fleet row for {device}"
    return m.group(0)


def test_dashboard_fleet_rows(admin: TestClient) -> None:
    html = admin.get("/").text
    one, two, three = (_row(html, d) for d in DEVICES)
    # Vietnamese numbers: decimal comma.
    assert 'class="ok">Đang hoạt động<' in one and "<td>7</td>" in one and "5,0 GB" in one
    assert "/commune" not in html  # the commune form is on the station's own page
    assert 'href="/devices/xa-0001"' in one
    assert 'class="bad">Mất kết nối<' in two
    assert "Không tìm thấy máy quét" in two  # a known error key, translated
    assert 'class="bad">Chưa rõ<' in three
    assert ">made_up_key: something odd<" in three  # an unknown key, as the station sent it
    english = admin.get("/?lang=en").text
    assert 'class="ok">Online<' in _row(english, "xa-0001")
    assert "Scanner not found" in _row(english, "xa-0002")


def test_registry_page_rows(admin: TestClient) -> None:
    html = admin.get("/stations").text
    rows = {d: re.search(rf'<tr data-device="{d}">.*?</tr>', html, re.S) for d in DEVICES}
    assert all(rows.values())
    active, pending, revoked = (m.group(0) for m in rows.values() if m)
    assert "đang hoạt động" in active and "/stations/xa-0001/revoke" in active
    assert 'data-confirm="' in active  # static/confirm.js asks (no inline script: CSP)
    assert "chờ đăng ký" in pending and "/stations/xa-0002/revoke" in pending
    assert "đã thu hồi" in revoked and "revoke" not in revoked.split("</td>", 3)[-1]


def test_station_page_holds_the_commune_form(admin: TestClient) -> None:
    page = admin.get("/devices/xa-0001")
    assert page.status_code == 200
    assert 'action="/devices/xa-0001/commune"' in page.text and "5,0 GB" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    r = admin.post(
        "/devices/xa-0001/commune", data={"csrf": csrf.group(1), "commune": "Xã Đông Hòa"}
    )
    assert r.status_code == 200
    assert "Xã Đông Hòa" in _row(r.text, "xa-0001")  # the label shows on the list
    assert admin.get("/devices/no-such").status_code == 404


def _fleet(n: int, tmp_path: Path, database: Path | str) -> tuple[ServerSettings, Database]:
    """``n`` stations: every 7th reports an error, every 11th is offline for 4 days, every
    13th has 300 MB of disk, every 17th 5,000 pages waiting; registered in communes named
    with diacritics; every 19th registered but pending, every 23rd revoked."""
    url = database if isinstance(database, str) else f"sqlite:///{database}"
    settings = ServerSettings(data_dir=tmp_path / "server", ingest=False, database_url=url)
    db = Database(settings.database())
    auth.add_user(db, "boss", "admin", PASSWORD)
    auth.add_user(db, "lan", "viewer", PASSWORD)
    now = time.time()
    communes = ["Xã Đông Hòa", "Phường Hải Châu", "Xã Tân Lập", "Đặc khu Côn Đảo"]
    with db.tx() as con:
        for i in range(n):
            device = f"xa-{i:04d}"
            tel = {
                "queue_pages": 5000 if i % 17 == 0 else 3,
                "disk_free_bytes": 300 * 1024**2 if i % 13 == 0 else 40 * 1024**3,
                "last_error": "scanner_not_found: no device" if i % 7 == 0 else "",
            }
            seen = now - 4 * 86400 if i % 11 == 0 else now
            status = "offline" if i % 11 == 0 or i % 5 == 0 else "online"
            con.execute(
                "INSERT INTO devices(device_id, first_seen, last_seen, status, agent_version,"
                " telemetry) VALUES (?, ?, ?, ?, '1.2.3', ?)",
                (device, seen, seen, status, json.dumps(tel)),
            )
            state = "pending" if i % 19 == 0 else "revoked" if i % 23 == 0 else "active"
            con.execute(
                "INSERT INTO stations (device_id, commune, district, state, created_at)"
                " VALUES (?, ?, 'H', ?, ?)",
                (device, communes[i % 4], state, now),
            )
    return settings, db


def _login(client: TestClient, user: str) -> None:
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert csrf
    form = {"username": user, "password": PASSWORD, "csrf": csrf.group(1)}
    assert client.post("/login", data=form).status_code == 200


def _devices(html: str) -> list[str]:
    return re.findall(r'<tr data-device="([^"]+)">', html)


def test_a_thousand_stations_attention_first_counted_and_paged(
    tmp_path: Path, database: Path | str
) -> None:
    """On both engines (the dashboard reads the fleet in one UNION statement)."""
    settings, db = _fleet(1000, tmp_path, database)
    with TestClient(create_app(settings)) as c:
        _login(c, "boss")
        home = c.get("/").text
        first = _devices(home)
        assert len(first) == 50  # not 1,000 rows
        assert len(home) < 120_000
        # Counts per state over the whole fleet.
        counts = dict(
            re.findall(r'data-state="(\w+)"[^>]*>[^<]*<span class="count">([\d.]+)<', home)
        )
        expected = {
            "error": len(range(0, 1000, 7)),
            "offline_long": len(range(0, 1000, 11)),
            "disk_low": len(range(0, 1000, 13)),
            "backlog": len(range(0, 1000, 17)),
            "pending": len(range(0, 1000, 19)),
            "revoked": sum(1 for i in range(1000) if i % 23 == 0 and i % 19),
        }
        assert {k: int(counts[k].replace(".", "")) for k in expected} == expected
        # Those needing attention come first: error (the most urgent) on page 1.
        assert first[:3] == ["xa-0000", "xa-0007", "xa-0014"]
        troubled = {
            i for i in range(1000)
            if not (i % 7 and i % 11 and i % 13 and i % 17 and i % 19 and i % 23)
        }  # fmt: skip
        seen: list[str] = []
        for page in range(1, 21):
            seen += _devices(c.get("/", params={"page": page}).text)
        assert sorted(seen) == [f"xa-{i:04d}" for i in range(1000)]  # each once
        n = len(troubled)
        assert {int(d[3:]) for d in seen[:n]} == troubled  # attention before the rest
        assert seen[n:] == sorted(seen[n:])
        # A state filter, a commune filter, a name without diacritics.
        offline = _devices(c.get("/", params={"state": "offline_long"}).text)
        assert len(offline) == 50 and {int(d[3:]) % 11 for d in offline} == {0}
        assert offline[0] == "xa-0000" and int(offline[1][3:]) % 7 == 0  # errors first
        dong_hoa = c.get("/", params={"name": "dong hoa", "state": "disk_low"}).text
        want = [f"xa-{i:04d}" for i in range(0, 1000, 4) if i % 13 == 0]
        assert sorted(_devices(dong_hoa)) == want
        assert "dong hoa" in dong_hoa  # the search box keeps what was typed
        exact = c.get("/", params={"commune": "Đặc khu Côn Đảo", "page": 5}).text
        assert all(int(d[3:]) % 4 == 3 for d in _devices(exact)) and _devices(exact)
        assert c.get("/", params={"page": 999}).status_code == 200  # clamped to the last
        # The registry: pending first, paged, filtered the same way.
        registry_page = c.get("/stations").text
        rows = _devices(registry_page)
        assert len(rows) == 50 and rows[0] == "xa-0000"  # pending (0 % 19 == 0)
        pending = [f"xa-{i:04d}" for i in range(0, 1000, 19)]
        assert rows == pending[:50]
        revoked = _devices(c.get("/stations", params={"state": "revoked", "name": "con dao"}).text)
        assert revoked == [
            f"xa-{i:04d}" for i in range(1000) if i % 23 == 0 and i % 19 and i % 4 == 3
        ]
        # A viewer reads the same list but gets no commune form anywhere.
        _login(c, "lan")
        assert _devices(c.get("/").text) == first
        station = c.get("/devices/xa-0133")  # pending in the registry, reports an error
        assert station.status_code == 200 and "Chờ đăng ký" in station.text
        assert "Không tìm thấy máy quét" in station.text and "/commune" not in station.text
    db.close()
