"""``sohoa-server db migrate-to-postgresql`` on an archive the real pipeline and ingest built
(tests/real_archive.py, SQLite) into a real PostgreSQL: every page, part and text arrives and
is verified; search, the audit chain and the fixity check work on the copy; a target that
holds data is refused unless --replace; a copy that fails part-way commits nothing."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness import BIN
from pgcluster import PostgresCluster
from real_archive import RealArchive

from server.archive.catalog import Catalog
from server.store.db import Database

pytestmark = [pytest.mark.postgres]

PAGE_SQL = (
    "SELECT p.device_id, p.page_id, p.capture_sha256, t.text FROM pages p"
    " LEFT JOIN page_text t ON t.page_pk = p.id ORDER BY p.id"
)
PART_SQL = (
    "SELECT p.page_id, x.name, x.sha256, x.size, x.state, x.path FROM parts x"
    " JOIN pages p ON p.id = x.page_pk ORDER BY p.id, x.name"
)


def _cli(data_dir: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
    env.update(SOHOA_DATA_DIR=str(data_dir), SOHOA_DATABASE_URL=database_url)
    return subprocess.run([str(BIN / "sohoa-server"), *args], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def _rows(con: sqlite3.Connection | psycopg.Connection[tuple[object, ...]], sql: str) -> list:  # type: ignore[type-arg]
    return [tuple(r) for r in con.execute(sql).fetchall()]


@pytest.mark.tesseract
@pytest.mark.mqtt
@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_migrate_a_real_sqlite_archive_to_postgresql(
    tmp_path: Path, real_archive: RealArchive, pg_cluster: PostgresCluster
) -> None:
    data = tmp_path / "server"
    real_archive.seed_data_dir(data)
    source = real_archive.catalogue_for(data / "archive.sqlite3", None)
    path = Path(source.removeprefix("sqlite:///"))
    secret = tmp_path / "pw"
    secret.write_text("mật-khẩu-lưu-trữ-2024\n")
    assert _cli(data, source, "user", "add", "thu", "--role", "archivist",
                "--password-file", str(secret)).returncode == 0  # fmt: skip
    target = pg_cluster.create_database("mig")

    out = _cli(data, source, "db", "migrate-to-postgresql", "--to", target)
    assert out.returncode == 0, out.stderr
    assert "migrated and verified: 3 page(s)" in out.stdout
    assert pg_cluster.password not in out.stdout + out.stderr

    # Checked again here, independently of the command's own check.
    with sqlite3.connect(path) as lite, psycopg.connect(target) as pg:
        assert _rows(lite, PAGE_SQL) == _rows(pg, PAGE_SQL)
        assert len(_rows(pg, PAGE_SQL)) == 3
        assert _rows(lite, PART_SQL) == _rows(pg, PART_SQL)
        for table in ("batches", "users", "audit", "fixity_events", "devices"):
            n = f"SELECT count(*) FROM {table}"
            assert lite.execute(n).fetchone() == pg.execute(n).fetchone(), table
        # New rows get ids after the copied ones.
        before = pg.execute("SELECT max(id) FROM alerts").fetchone()
    db = Database(target)
    try:
        db.alert("after.migration", "x")
        hits = Catalog(db).search_page("khoang san").hits  # folded search, PostgreSQL side
        assert len(hits) == 1
        new = db.read().execute("SELECT max(id) FROM alerts").fetchone()[0]
        assert new > (before[0] or 0) if before else True
    finally:
        db.close()
    assert _cli(data, target, "audit", "verify").returncode == 0
    fixity = _cli(data, target, "fixity", "check", "--rate-mb", "0")
    assert fixity.returncode == 0 and " 0 damaged" in fixity.stdout, fixity.stdout + fixity.stderr

    # A target with data is refused; --replace empties it and copies again, no duplicates.
    again = _cli(data, source, "db", "migrate-to-postgresql", "--to", target)
    assert again.returncode == 2 and "--replace" in again.stderr
    replaced = _cli(data, source, "db", "migrate-to-postgresql", "--to", target, "--replace")
    assert replaced.returncode == 0, replaced.stderr
    with sqlite3.connect(path) as lite, psycopg.connect(target) as pg:
        assert _rows(lite, PAGE_SQL) == _rows(pg, PAGE_SQL)
        assert (
            pg.execute("SELECT count(*) FROM alerts WHERE kind = 'after.migration'").fetchone()[0]
            == 0
        )

    # All or nothing: a row PostgreSQL cannot hold (a NUL in a text, which SQLite keeps)
    # fails the copy; the target keeps exactly what it had.
    with sqlite3.connect(path) as lite:
        lite.execute(
            "INSERT INTO alerts(at, kind, detail) VALUES (1, 'bad', 'a' || char(0) || 'b')"
        )
    with psycopg.connect(target) as pg:
        kept = _rows(pg, PART_SQL), _rows(pg, "SELECT count(*) FROM alerts")
    failed = _cli(data, source, "db", "migrate-to-postgresql", "--to", target, "--replace")
    assert failed.returncode == 1 and "nothing committed" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    with psycopg.connect(target) as pg:
        assert (_rows(pg, PART_SQL), _rows(pg, "SELECT count(*) FROM alerts")) == kept


def test_a_copy_that_differs_is_not_committed(
    tmp_path: Path, pg_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check compares what arrived, not what was sent: one page text altered on the way
    (here by a faulty indexer) is named, and the target keeps nothing of the copy."""
    from test_ingest import BatchSrc, PageSrc

    from protocol import topics
    from server.ingest import Ingest
    from server.store import migrate
    from server.store.files import Store

    source = tmp_path / "archive.sqlite3"
    db = Database(source)
    ingest = Ingest(db, Store(tmp_path / "store"), accept_unenrolled=True)
    batch = BatchSrc(pages=[PageSrc(page_no=n, parts={"text": t.encode()})
                            for n, t in enumerate(["Biên bản họp", "Sổ hộ tịch"], 1)])  # fmt: skip
    ingest.handle(topics.up(batch.device, "manifest"), batch.manifest())
    for payload in batch.all_chunks(4096):
        ingest.handle(topics.up(batch.device, "chunk"), payload)
    db.close()
    target = Database(pg_cluster.create_database("differ"))
    real = Database.index_texts

    def faulty(self: Database, con: Any, pages: list[tuple[int, str]]) -> None:
        real(self, con, [(pk, text + " (sai)" if pk == 2 else text) for pk, text in pages])

    monkeypatch.setattr(Database, "index_texts", faulty)
    try:
        with pytest.raises(migrate.MigrationError, match=r"1 page\(s\) differ, first ids \[2\]"):
            migrate.migrate(source, target)
        assert target.read().execute("SELECT count(*) FROM pages").fetchone()[0] == 0
        monkeypatch.setattr(Database, "index_texts", real)
        assert migrate.migrate(source, target).pages == 2
    finally:
        target.close()
