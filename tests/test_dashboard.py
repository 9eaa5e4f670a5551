"""The dashboard reads a fixed number of queries whatever the number of batches (the audit
found two queries per page of 50 batches), on the archive the real pipeline built."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from real_archive import RealArchive

from server.archive import auth, dashboard, progress
from server.archive.catalog import Catalog
from server.store.db import Database

pytestmark = [pytest.mark.tesseract, pytest.mark.mqtt, pytest.mark.slow]


@pytest.fixture
def db(
    request: pytest.FixtureRequest, real_archive: RealArchive, tmp_path: Path
) -> Iterator[Database]:
    cluster = request.getfixturevalue("pg_cluster") if real_archive.engine != "sqlite" else None
    url = real_archive.catalogue_for(tmp_path / "db" / "archive.sqlite3", cluster)
    d = Database(url if real_archive.engine != "sqlite" else tmp_path / "db" / "archive.sqlite3")
    yield d
    d.close()


def clone_batches(db: Database, copies: int) -> None:
    """More batches in the catalogue: copies of the real one's rows (same files)."""
    con = db.read()
    batch = dict(con.execute("SELECT * FROM batches ORDER BY id LIMIT 1").fetchone())
    pages = [dict(r) for r in con.execute("SELECT * FROM pages WHERE batch_pk = ?", (batch["id"],))]
    parts = [dict(r) for r in con.execute("SELECT * FROM parts")]

    def insert(c: Any, table: str, row: dict[str, Any]) -> int:
        cols = [k for k in row if k != "id"]
        sql = (f"INSERT INTO {table}({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
               " RETURNING id")  # fmt: skip
        return int(c.execute(sql, [row[k] for k in cols]).fetchall()[0][0])

    with db.tx() as c:
        for _ in range(copies):
            b = insert(c, "batches", {**batch, "batch_id": secrets.token_hex(16)})
            for page in pages:
                p = insert(c, "pages", {**page, "batch_pk": b, "page_id": secrets.token_hex(16)})
                for part in (t for t in parts if t["page_pk"] == page["id"]):
                    insert(c, "parts", {**part, "page_pk": p})


def count_queries(db: Database) -> list[str]:
    seen: list[str] = []
    connect = db.connect

    class Counting:
        def __init__(self, con: Any) -> None:
            self.con = con

        def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Any:
            seen.append(sql)
            return self.con.execute(sql, parameters)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.con, name)

    db.connect = lambda: Counting(connect())  # type: ignore[method-assign]
    return seen


def test_the_dashboard_costs_the_same_queries_for_1_and_40_batches(db: Database) -> None:
    catalog = Catalog(db)
    admin, viewer = auth.Principal("a", "admin"), auth.Principal("v", "viewer")
    # Each load below asks for the per-commune progress afresh (the dashboard keeps the last
    # answer between loads: tests/test_staff.py); what is counted is the asking.
    progress._KEPT.clear()
    seen = count_queries(db)
    one = dashboard.overview(catalog, viewer)
    first = len(seen)
    assert [len(p) for p in one.previews.values()] == [3]
    db.connect = type(db).connect.__get__(db)  # type: ignore[method-assign]
    clone_batches(db, 39)
    progress._KEPT.clear()
    seen = count_queries(db)
    many = dashboard.overview(catalog, viewer)
    assert len(many.batches) == 40
    assert sum(len(p) for p in many.previews.values()) == 40 * 3
    assert len(seen) == first, seen[first:]
    # 12, one for the re-scanned sheets access reads together, one for whether the progress
    # kept from the last load still holds
    assert first <= 14
    # The admin's view costs no more; a load that finds the progress still holding, less.
    seen.clear()
    dashboard.overview(catalog, admin)
    assert len(seen) <= first
    seen.clear()
    dashboard.overview(catalog, viewer)
    assert len(seen) <= first - 4


def test_the_dashboard_page_costs_the_same_queries_for_1_and_40_batches(
    request: pytest.FixtureRequest, real_archive: RealArchive, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from server.app import create_app
    from server.config import ServerSettings

    cluster = request.getfixturevalue("pg_cluster") if real_archive.engine != "sqlite" else None
    url = real_archive.catalogue_for(tmp_path / "db" / "archive.sqlite3", cluster)
    real_archive.seed_data_dir(tmp_path / "server")
    settings = ServerSettings(data_dir=tmp_path / "server", ingest=False, database_url=url)
    with TestClient(create_app(settings)) as c:
        db: Database = c.app.state.db  # type: ignore[attr-defined]
        auth.add_user(db, "lan", "viewer", "mật-khẩu-đủ-dài")
        form = c.get("/login").text
        csrf = form.split('name="csrf" value="')[1].split('"')[0]
        c.post("/login", data={"username": "lan", "password": "mật-khẩu-đủ-dài", "csrf": csrf})
        seen = count_queries(db)
        assert c.get("/").status_code == 200
        one = len(seen)
        db.connect = type(db).connect.__get__(db)  # type: ignore[method-assign]
        clone_batches(db, 39)
        seen = count_queries(db)
        home = c.get("/").text
        assert home.count('href="/batches/') >= 40
        assert len(seen) == one, seen[one:]
