"""Runbook R7 (docs/operations.md), done as written against real PostgreSQL: dump the
catalogue, copy the store, restore both into a fresh database and folder, then the checks the
runbook ends with (`sohoa-server doctor`, `sohoa-server audit verify`) pass and every page
and its file are back."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest
from harness import BIN, Broker
from pgcluster import PostgresCluster
from test_ingest import BatchSrc, PageSrc

from server.archive import audit
from server.store import keys
from server.store.db import Database

pytestmark = [pytest.mark.postgres, pytest.mark.mqtt]


def seed(data_dir: Path, texts: list[str], database: str) -> None:
    """One complete batch (text and an archival file per page) through ingest."""
    from protocol import topics
    from server.ingest import Ingest
    from server.store.files import Store

    pages = [
        PageSrc(page_no=n, parts={"text": t.encode(), "archival": f"%PDF-{t}".encode()})
        for n, t in enumerate(texts, 1)
    ]
    batch = BatchSrc(pages=pages)
    db = Database(database)
    ingest = Ingest(db, Store(data_dir / "store"), accept_unenrolled=True)
    ingest.handle(topics.up(batch.device, "manifest"), batch.manifest())
    for payload in batch.all_chunks(64 * 1024):
        ingest.handle(topics.up(batch.device, "chunk"), payload)
    db.close()


def _server(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "sohoa-server"), *args], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def _pages(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as con:
        return con.execute("SELECT id, page_id, capture_sha256 FROM pages ORDER BY id").fetchall()


def test_restore_runbook(tmp_path: Path, pg_cluster: PostgresCluster, broker: Broker) -> None:
    live, live_dir = pg_cluster.create_database("live"), tmp_path / "live"
    live_dir.mkdir()
    seed(live_dir, ["Quyết định số 12/QĐ-UBND", "Trang hai"], database=live)
    keys.load_or_create(live_dir)
    db = Database(live)
    audit.record(db, "admin", "export.bag", "000.00.00.H53.1998.01.HT", {})
    db.close()

    # Backup, in the runbook's order: the database first, then the files.
    dump = tmp_path / "sohoa.dump"
    subprocess.run([str(pg_cluster.bin / "pg_dump"), "-Fc", "-d", live, "-f", str(dump)],
                   check=True, capture_output=True)  # fmt: skip
    backup = tmp_path / "backup"
    shutil.copytree(live_dir, backup)

    # Restore onto a new machine: an empty database and data folder.
    restored, restored_dir = pg_cluster.create_database("restored"), tmp_path / "restored"
    subprocess.run(
        [str(pg_cluster.bin / "pg_restore"), "--clean", "--if-exists", "--no-owner", "-d",
         restored, str(dump)],
        check=True, capture_output=True,
    )  # fmt: skip
    shutil.copytree(backup, restored_dir)

    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
    env.update(SOHOA_DATA_DIR=str(restored_dir), SOHOA_DATABASE_URL=restored,
               SOHOA_MQTT_URL=broker.url)  # fmt: skip
    doctor = _server(env, "doctor")
    assert "[ OK ] Cơ sở dữ liệu" in doctor.stdout and "[ OK ] Kho tệp" in doctor.stdout
    assert "Khóa ký biên nhận có tại" in doctor.stdout, doctor.stdout
    verify = _server(env, "audit", "verify")
    assert verify.returncode == 0, verify.stderr
    assert _pages(restored) == _pages(live) and len(_pages(live)) == 2
    # The same receipt key: stations keep accepting receipts.
    assert (
        _server(env, "receipt-key").stdout
        == _server(
            {**env, "SOHOA_DATA_DIR": str(live_dir), "SOHOA_DATABASE_URL": live}, "receipt-key"
        ).stdout
    )

    def files(root: Path) -> list[Path]:
        return sorted(p.relative_to(root) for p in (root / "store").rglob("*"))

    assert files(restored_dir) and files(restored_dir) == files(live_dir)
