"""Redo a page's decisions at the archive: `sohoa-server reprocess PAGE` runs the station's own
pipeline (`sohoa-agent reprocess`, a separate process: the server imports no agent code) on
the capture the station sent, on an archive the real pipeline built (tests/real_archive.py),
and keeps the new result beside the old one."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from harness import BIN
from real_archive import RealArchive

from server.archive.catalog import Catalog
from server.config import ServerSettings
from server.store.db import Database

pytestmark = [pytest.mark.tesseract, pytest.mark.mqtt, pytest.mark.slow]


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_a_page_is_redone_from_its_capture_beside_the_old_result(
    real_archive: RealArchive, tmp_path: Path
) -> None:
    url = real_archive.catalogue_for(tmp_path / "db" / "archive.sqlite3", None)
    data_dir = tmp_path / "server"
    real_archive.seed_data_dir(data_dir)
    db = Database(ServerSettings(data_dir=data_dir, ingest=False, database_url=url).database())
    first = db.read().execute("SELECT id FROM pages ORDER BY page_no").fetchone()[0]
    old = Catalog(db).part_file(first, "archival")
    assert old is not None
    old_bytes = Path(old.location).read_bytes()
    env = {
        **os.environ,
        "SOHOA_SERVER_DATA_DIR": str(data_dir),
        "SOHOA_DATA_DIR": str(data_dir),
        "SOHOA_DATABASE_URL": url,
    }
    done = subprocess.run(
        [str(BIN / "sohoa-server"), "reprocess", str(first), "--actor", "lan"],
        env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (folder,) = (data_dir / "reprocessed" / f"page-{first}").iterdir()
    result = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    capture = Catalog(db).part_file(first, "capture")
    assert capture is not None
    assert result["capture_sha256"] == capture.sha256
    text = Path(result["text"]).read_text(encoding="utf-8")
    assert "khoáng sản" in text  # the page read again, by the same code
    assert Path(result["archival"]).read_bytes()[:5] == b"%PDF-"
    assert Path(result["archival"]).parent == folder
    # the old result is untouched, and the redo is in the audit log
    assert (
        hashlib.sha256(Path(old.location).read_bytes()).digest()
        == hashlib.sha256(old_bytes).digest()
    )
    row = (
        db.read()
        .execute("SELECT actor, target FROM audit WHERE action = 'page.reprocess'")
        .fetchone()
    )
    assert (row["actor"], row["target"]) == ("lan", str(first))
    # Staff compare the two results (images and texts) and choose; recorded and audited.
    _compare_and_choose(db, data_dir, url, first, folder.name, text)

    # a page whose capture never came cannot be redone, and says why
    missing = subprocess.run(
        [str(BIN / "sohoa-server"), "reprocess", "999999"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert missing.returncode == 1 and "capture has not arrived" in missing.stderr
    db.close()


def _compare_and_choose(db: Database, data_dir: Path, url: str, page: int, stamp: str,
                        text: str) -> None:  # fmt: skip
    import io
    import re

    from fastapi.testclient import TestClient
    from PIL import Image

    from server.app import create_app
    from server.archive import auth

    password = "mật-khẩu-đủ-dài"
    auth.add_user(db, "lan", "archivist", password)
    auth.add_user(db, "xem", "viewer", password)
    settings = ServerSettings(data_dir=data_dir, ingest=False, database_url=url)

    def login(client: TestClient, name: str) -> str:
        form = client.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf
        r = client.post("/login", data={"username": name, "password": password,
                                        "csrf": csrf.group(1)})  # fmt: skip
        assert r.status_code == 200
        found = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text)
        assert found
        return found.group(1)

    with TestClient(create_app(settings)) as viewer:
        login(viewer, "xem")
        assert viewer.get(f"/pages/{page}/redo").status_code == 403  # archivists choose
    with TestClient(create_app(settings)) as c:
        csrf = login(c, "lan")
        assert f'href="/pages/{page}/redo"' in c.get(f"/pages/{page}").text
        html = c.get(f"/pages/{page}/redo").text
        assert f"/pages/{page}/redo/{stamp}/render" in html and "khoáng sản" in html
        assert f"/api/v1/pages/{page}/render?w=800" in html  # the station's, beside it
        new = c.get(f"/pages/{page}/redo/{stamp}/render?w=800")
        assert new.status_code == 200 and new.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(new.content)).width == 800
        assert c.get(f"/pages/{page}/redo/../../etc/render").status_code == 404
        assert c.get(f"/pages/{page}/redo/20990101T000000Z/render").status_code == 404
        action = f"/pages/{page}/redo/{stamp}"
        assert c.post(action, data={"choice": "new"}).status_code == 403  # no CSRF value
        assert c.post(action, data={"choice": "both", "csrf": csrf}).status_code == 404
        r = c.post(action, data={"choice": "new", "csrf": csrf}, follow_redirects=False)
        assert r.status_code == 303
        assert "Đã chọn kết quả làm lại" in c.get(f"/pages/{page}/redo").text
    row = (
        db.read()
        .execute("SELECT actor, target, detail FROM audit WHERE action = 'page.redo.choose'")
        .fetchone()
    )
    assert (row["actor"], row["target"]) == ("lan", str(page))
    assert json.loads(row["detail"])["stamp"] == stamp
    choice = db.read().execute("SELECT choice, text_sha256 FROM redo_choices").fetchone()
    assert choice["choice"] == "new"
    assert choice["text_sha256"] == hashlib.sha256(text.encode("utf-8")).hexdigest()
