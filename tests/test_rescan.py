"""A re-scan request travels from the archive's review queue to the scan station: a real
Mosquitto, the server as a process, the agent CLI as processes. The agent is offline when the
request is made; the broker keeps the command for its persistent session and the next
``sohoa-agent sync`` (with nothing to send) picks it up and shows it in ``status``."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import pytest
from harness import Broker, ServerProcess, agent_env, run_agent
from PIL import Image, ImageDraw

pytestmark = [pytest.mark.mqtt, pytest.mark.tesseract, pytest.mark.slow]


def _page(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (1240, 1754), "white")
    ImageDraw.Draw(im).text((120, 200), "UY BAN NHAN DAN XA TAN LAP", fill="black")
    im.save(path, dpi=(300, 300))
    return path


def _post(server: ServerProcess, path: str, body: dict[str, object]) -> int:
    req = urllib.request.Request(
        server.url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return int(resp.status)


def _send(server: ServerProcess, method: str, path: str, body: Mapping[str, object]) -> int:
    req = urllib.request.Request(
        server.url + path,
        data=json.dumps(body, ensure_ascii=False).encode(),
        method=method,
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return int(resp.status)


def _status(env: dict[str, str]) -> dict:  # type: ignore[type-arg]
    return json.loads(run_agent(env, "status", "--json", check=True).stdout)  # type: ignore[no-any-return]


def test_rescan_request_reaches_an_offline_agent(
    tmp_path: Path, broker: Broker, server: ServerProcess
) -> None:
    env = agent_env(tmp_path / "agent", broker.url)
    run_agent(env, "import", str(_page(tmp_path / "in" / "to-khai.png")), check=True)
    run_agent(env, "sync", "--wait", "--timeout", "120", check=True)  # session + subscription
    assert _status(env)["rescan_requests"] == []

    (batch,) = server.get_json("/api/v1/batches")
    (page,) = server.get_json(f"/api/v1/batches/{batch['id']}")["pages"]
    note = "Trang bị mờ, quét lại ở 300 dpi"
    assert _post(server, f"/api/v1/pages/{page['id']}/review", {"action": "rescan", "note": note})
    # The agent is offline: the broker takes the command for its session (PUBACK) and holds it.
    deadline = time.monotonic() + 15
    while True:
        (req,) = server.get_json("/api/v1/rescans")  # type: ignore[misc]
        if req["state"] == "acknowledged" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert req["state"] == "acknowledged", server.log_tail()

    out = run_agent(env, "sync", check=True)  # nothing to send: it still collects commands
    assert "Cần quét lại: lô" in out.stdout and note in out.stdout, out.stderr
    st = _status(env)
    (got,) = st["rescan_requests"]
    assert got["page_id"] == page["page_id"] and got["batch_id"] == batch["batch_id"]
    assert got["note"] == note and got["page_no"] == 1 and got["source_name"] == "to-khai.png"
    text = run_agent(env, "status", check=True).stdout
    assert f"Cần quét lại: lô {batch['batch_id'][:8]}, trang 1 (to-khai.png), lý do: {note}" in text

    # Recorded before it was acknowledged to the broker: nothing comes again, no duplicate.
    run_agent(env, "sync", check=True)
    assert len(_status(env)["rescan_requests"]) == 1

    # The page is in a văn bản of a hồ sơ; the technician answers the request with a copier
    # scan (import --replaces PAGE): the archive places the new page where the old one was.
    ma = "000.00.00.H53.2024.01.RS"
    ho_so = {"organ_id": "000.00.00.H53", "nam": 2024, "ky_hieu": "01.RS",
             "tieu_de": "Hồ sơ thử quét lại", "thoi_han_bao_quan": "Vĩnh viễn",
             "che_do_su_dung": "Mật"}  # fmt: skip
    assert _send(server, "PUT", f"/api/v1/ho-so/{ma}", ho_so) == 200
    doc = {"ten_loai": "Tờ khai", "trich_yeu": "Tờ khai quét lại", "pages": [page["id"]]}
    assert _send(server, "POST", f"/api/v1/ho-so/{ma}/van-ban", doc) == 201
    again = _page(tmp_path / "in2" / "to-khai-moi.png")
    assert run_agent(env, "import", str(again), "--replaces", "nope").returncode == 2
    run_agent(env, "import", str(again), "--replaces", page["page_id"][:8], check=True)
    run_agent(env, "sync", "--wait", "--timeout", "120", check=True)
    deadline = time.monotonic() + 60  # the server's sweep places complete batches
    while True:
        (van_ban,) = server.get_json(f"/api/v1/ho-so/{ma}")["van_ban"]
        if van_ban["pages"] != [page["id"]] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    (new_id,) = van_ban["pages"]
    assert new_id != page["id"], server.log_tail()
    new_page = server.get_json(f"/api/v1/pages/{new_id}")
    assert new_page["page_no"] == 1 and new_page["batch_pk"] != batch["id"]
    # The old page is kept, untouched, in its batch.
    old = server.get_json(f"/api/v1/pages/{page['id']}")
    assert old["sha256"] == page["sha256"] and old["batch_pk"] == batch["id"]
    # Provenance: which page, which request; audited. Both scans of the sheet are as closed
    # as its place (a Mật hồ sơ): the old page, out of its văn bản now, did not open up.
    con = sqlite3.connect(server.data_dir / "archive.sqlite3")
    try:
        row = con.execute(
            "SELECT r.replaces_pk, q.page_pk FROM page_replacements r"
            " JOIN rescan_requests q ON q.id = r.request_id WHERE r.page_pk = ?",
            (new_id,),
        ).fetchone()
        audited = con.execute("SELECT target FROM audit WHERE action = 'page.replaced'").fetchall()
    finally:
        con.close()
    assert row == (page["id"], page["id"]) and audited == [(str(page["id"]),)]
    # The staff pages link the two scans: the old page and its batch name the new scan, the
    # re-scan batch names the page it is for.
    _staff_pages_link_them(server, tmp_path, page["id"], new_id, new_page["batch_pk"], batch)

    from server.archive import access
    from server.archive.auth import Principal
    from server.store.db import Database

    db = Database(server.data_dir / "archive.sqlite3")
    try:
        for role in ("viewer", "archivist"):
            who = Principal(role, role)  # type: ignore[arg-type]
            assert access.readable_pages(db, who, [page["id"], new_id]) == set()
            hidden = access.page_filter(db, who)
            assert hidden is not None and not hidden.allows(new_id)
    finally:
        db.close()

    # The technician scanned it again and clears the request by the id status shows.
    done = run_agent(env, "rescan-done", page["page_id"][:8])
    assert done.returncode == 0 and "Đã xóa yêu cầu quét lại" in done.stdout, done.stderr
    assert _status(env)["rescan_requests"] == []
    assert run_agent(env, "rescan-done", page["page_id"][:8]).returncode == 2


def _staff_pages_link_them(
    server: ServerProcess,
    tmp: Path,
    old: int,
    new: int,
    new_batch: int,
    batch: dict,  # type: ignore[type-arg]
) -> None:
    import re

    import httpx

    password = "mật-khẩu-đủ-dài"
    (tmp / "pw").write_text(password + "\n", encoding="utf-8")
    server.cli("user", "add", "quan-tri", "--role", "admin", "--password-file", str(tmp / "pw"))
    with httpx.Client(base_url=server.url, follow_redirects=True, timeout=30) as c:
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text)
        assert csrf
        r = c.post("/login", data={"username": "quan-tri", "password": password,
                                   "csrf": csrf.group(1)})  # fmt: skip
        assert r.status_code == 200
        old_view = c.get(f"/pages/{old}").text
        assert 'id="replaced-by"' in old_view and f'href="/pages/{new}"' in old_view
        new_view = c.get(f"/pages/{new}").text
        assert 'id="replaces"' in new_view and f'href="/pages/{old}"' in new_view
        listing = c.get(f"/batches/{batch['id']}").text
        assert 'class="notice rescanned"' in listing and f'href="/pages/{new}"' in listing
        rescan_batch = c.get(f"/batches/{new_batch}").text
        assert 'id="rescan-of"' in rescan_batch and f"/batches/{batch['id']}#p1" in rescan_batch
