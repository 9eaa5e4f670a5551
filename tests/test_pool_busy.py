"""A process whose PostgreSQL pool is exhausted answers 503 with Retry-After, not 500 (issue
19): JSON for the API, a Vietnamese page for staff, one log line for the burst. Real
PostgreSQL (tests/pgcluster.py), ``database_pool_size=1`` and its one connection held by a
write transaction, as a long ingest group or a stuck statement would hold it."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pgcluster import PostgresCluster

from server.app import create_app
from server.archive import auth
from server.config import ServerSettings
from server.store.db import Database

pytestmark = [pytest.mark.postgres]

PASSWORD = "mật khẩu đủ dài cho thử tải"


def test_an_exhausted_pool_answers_503_with_retry_after(
    tmp_path: Path, pg_cluster: PostgresCluster, caplog: pytest.LogCaptureFixture
) -> None:
    url = pg_cluster.create_database("busy")
    settings = ServerSettings(
        data_dir=tmp_path / "server", ingest=False, database_url=url, database_pool_size=1,
        database_pool_timeout_s=1.0,
    )  # fmt: skip
    with TestClient(create_app(settings)) as c:
        db: Database = c.app.state.db  # type: ignore[attr-defined]
        auth.add_user(db, "boss", "admin", PASSWORD)
        bearer = {"Authorization": f"Bearer {auth.create_token(db, 'boss')}"}
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text)
        assert csrf
        form = {"username": "boss", "password": PASSWORD, "csrf": csrf.group(1)}
        assert c.post("/login", data=form).status_code == 200
        assert c.get("/api/v1/batches", headers=bearer).status_code == 200

        held, release = threading.Event(), threading.Event()

        def hold_the_only_connection() -> None:
            with db.tx() as con:
                con.execute("SELECT 1")
                held.set()
                release.wait(120)

        holder = threading.Thread(target=hold_the_only_connection)
        holder.start()
        try:
            assert held.wait(30)
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="server.app"):
                api = c.get("/api/v1/batches", headers=bearer)
                page = c.get("/")
                english = c.get("/stations?lang=en")
                citizen = c.get("/p/any-token")  # a citizen's QR lookup
        finally:
            release.set()
            holder.join(60)
        assert api.status_code == 503 and api.headers["Retry-After"] == "10"
        assert api.json()["retry_after_s"] == 10 and "busy" in api.json()["detail"]
        assert page.status_code == 503 and page.headers["Retry-After"] == "10"
        assert "text/html" in page.headers["content-type"]
        assert "Hệ thống lưu trữ đang bận" in page.text
        assert english.status_code == 503 and "too busy" in english.text
        # A citizen gets the public pages' words and headers, nothing of the staff app.
        assert citizen.status_code == 503 and citizen.headers["Retry-After"] == "10"
        assert citizen.text == "Hệ thống đang bận. Vui lòng thử lại sau ít phút."
        assert "set-cookie" not in citizen.headers and "/login" not in citizen.text
        busy = [r for r in caplog.records if "database busy" in r.getMessage()]
        assert len(busy) == 1, [r.getMessage() for r in busy]  # four refusals, one line
        assert "all 1 connections busy" in busy[0].getMessage()
        # The connection is back: the same requests are answered.
        assert c.get("/api/v1/batches", headers=bearer).status_code == 200
        assert c.get("/").status_code == 200
