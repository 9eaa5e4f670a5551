"""The restore drill (runbook R7, docs/operations.md), with the commands the runbook gives:
an archive built by ingest is backed up (`sohoa-server backup`: the catalogue, then a restic
snapshot), destroyed (database dropped, data folder deleted), restored (`sohoa-server
restore` into a fresh empty database), and then the fixity check re-hashes every part
(every page present and verified), the audit chain holds, and a station that sends again
everything it had — its query, then its manifests and every chunk — is told the archive
already has every page: nothing new is stored, nothing is duplicated. Both engines; real
PostgreSQL and Debian's restic."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from harness import BIN
from real_archive import PAGES, RealArchive
from s3server import PART_BYTES, CephS3
from test_ingest import BatchSrc, PageSrc

from protocol import envelope, topics
from protocol.messages import BatchState, Query, Receipt, Reject
from server import db_cli
from server.archive import audit, fixity
from server.ingest import Ingest
from server.store import keys, objects
from server.store.db import Database
from server.store.files import Store

pytestmark = [pytest.mark.restic]

REPO = Path(__file__).resolve().parent.parent
# The runbook's commands, as written in R7 (checked below to be there, word for word); the
# backup side is section 8 and systemd/sohoa-backup.service.
RUNBOOK = (
    "sohoa-server restore",
    "sohoa-server fixity check --rate-mb 0",
    "sohoa-server audit verify",
)


def _batches() -> list[BatchSrc]:
    texts = [["Quyết định số 12/QĐ-UBND", "Trang hai"], ["Sổ hộ tịch năm 1998"]]
    return [
        BatchSrc(
            pages=[
                PageSrc(page_no=n, parts={"text": t.encode(), "archival": f"%PDF-{t}".encode()})
                for n, t in enumerate(group, 1)
            ]
        )
        for group in texts
    ]


def _send(ingest: Ingest, batch: BatchSrc) -> list[object]:
    """Everything a station holds of a batch, sent as the agent sends it; the replies."""
    out = ingest.handle(topics.up(batch.device, "manifest"), batch.manifest())
    for payload in batch.all_chunks(64 * 1024):
        out += ingest.handle(topics.up(batch.device, "chunk"), payload)
    return [envelope.decode(o.payload).message for o in out]


def _server(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "sohoa-server"), *args], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def _catalogue(db: Database) -> list[tuple[object, ...]]:
    return [
        tuple(r)
        for r in db.read().execute(
            "SELECT p.id, p.page_id, p.capture_sha256, x.name, x.sha256, x.path, x.state"
            " FROM pages p JOIN parts x ON x.page_pk = p.id ORDER BY p.id, x.name"
        )
    ]


def test_runbook_r7_names_the_commands_the_drill_runs() -> None:
    text = (REPO / "docs" / "operations.md").read_text()
    r7 = text[text.index("### R7.") : text.index("### R8.")]
    for command in RUNBOOK:
        assert command in r7, command
    backup = text[text.index("## 8. Sao lưu") : text.index("## 9.")]
    assert "sohoa-server\nbackup" in backup or "sohoa-server backup" in backup
    unit = (REPO / "systemd" / "sohoa-backup.service").read_text()
    assert "ExecStart=/opt/sohoa/.venv/bin/sohoa-server backup " in unit


@pytest.mark.slow
def test_restore_drill(tmp_path: Path, database: Path | str) -> None:
    data = tmp_path / "archive"
    data.mkdir()
    if isinstance(database, Path):  # the embedded default: the catalogue in the data folder
        database = data / "archive.sqlite3"
        url = f"sqlite:///{database}"
    else:
        url = database
    db = Database(database)
    ingest = Ingest(
        db, Store(data / "store"), signing_key=keys.load_or_create(data), accept_unenrolled=True
    )
    batches = _batches()
    for batch in batches:
        assert not [m for m in _send(ingest, batch) if isinstance(m, Reject)]
    audit.record(db, "admin", "export.bag", "000.00.00.H53.1998.01.HT", {})
    before = _catalogue(db)
    db.close()
    assert len({r[1] for r in before}) == 3 and {r[6] for r in before} == {"committed"}

    secret = tmp_path / "backup-password"
    secret.write_text("khóa-sao-lưu-ngoại-tuyến\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
    env.update(SOHOA_DATA_DIR=str(data), SOHOA_DATABASE_URL=url,
               SOHOA_BACKUP_REPOSITORY=str(tmp_path / "restic-repo"),
               SOHOA_BACKUP_PASSWORD_FILE=str(secret), SOHOA_INGEST="false")  # fmt: skip
    backup = _server(env, "backup")
    assert backup.returncode == 0, backup.stderr
    assert "snapshot " in backup.stdout and "repository checked" in backup.stdout

    # The disk dies: the database and every file of the archive are gone.
    key = (data / keys.KEY_FILE).read_bytes()
    shutil.rmtree(data)
    if isinstance(database, str):
        name = database.rsplit("/", 1)[1]
        admin = database.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as con:
            con.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            con.execute(f'CREATE DATABASE "{name}"')  # the new machine's empty createdb
    data.mkdir()
    Database(database).close()  # the new machine's service started once: empty tables

    restore = _server(env, "restore")
    assert restore.returncode == 0, restore.stderr + restore.stdout
    assert "3 page(s) in the catalogue" in restore.stdout
    again = _server(env, "restore")  # never over an archive that holds pages
    assert again.returncode == 2 and "--force" in again.stderr

    fixity = _server(env, "fixity", "check", "--rate-mb", "0")
    assert fixity.returncode == 0, fixity.stderr
    assert f"finished: {len(before)} part(s)" in fixity.stdout and " 0 damaged" in fixity.stdout
    verify = _server(env, "audit", "verify")
    assert verify.returncode == 0, verify.stderr
    assert (data / keys.KEY_FILE).read_bytes() == key  # stations keep trusting receipts

    db = Database(database)
    try:
        assert _catalogue(db) == before
        files = sorted(p for p in (data / "store").rglob("*") if p.is_file())
        ingest = Ingest(
            db, Store(data / "store"), signing_key=keys.load_or_create(data), accept_unenrolled=True
        )
        _resend_everything(ingest, batches)
        assert _catalogue(db) == before  # no page, part or file twice
        assert sorted(p for p in (data / "store").rglob("*") if p.is_file()) == files
    finally:
        db.close()


def _resend_everything(ingest: Ingest, batches: list[BatchSrc]) -> None:
    """A station that lost track sends everything again: its query first, then all of it;
    it must be told "already have" for every page, before and after."""
    for batch in batches:
        all_parts = {(pg.page_id, name) for pg in batch.pages for name in pg.parts}
        for _ in ("before re-sending", "after"):
            ask = Query(device_id=batch.device, msg_id=os.urandom(16).hex(), sent_at=1.0,
                        batch_ids=(batch.batch_id,))  # fmt: skip
            (state,) = [
                envelope.decode(o.payload).message
                for o in ingest.handle(topics.up(batch.device, "query"), envelope.encode(ask))
            ]
            # "Already have": known, complete, every part of every page committed.
            assert isinstance(state, BatchState) and state.known and state.complete
            assert {(p.page_id, p.part) for p in state.parts if p.committed} == all_parts
            assert len(state.parts) == len(all_parts)
            replies = _send(ingest, batch)  # the manifest and every chunk once more
            assert not [m for m in replies if isinstance(m, Reject)], replies
            new = {(p.page_id, p.part) for m in replies if isinstance(m, Receipt)
                   for p in m.committed}  # fmt: skip
            assert new <= all_parts  # a receipt may be repeated, never for something else


def _local_archive(tmp_path: Path) -> tuple[Path, Path, Database, Ingest]:
    """An embedded archive (SQLite in its data folder, files on local disk) and its ingest."""
    data = tmp_path / "archive"
    data.mkdir()
    database = data / "archive.sqlite3"
    db = Database(database)
    ingest = Ingest(
        db, Store(data / "store"), signing_key=keys.load_or_create(data), accept_unenrolled=True
    )
    return data, database, db, ingest


def test_check_subset_reads_every_pack_group_once_in_n_days() -> None:
    days = [db_cli.check_subset(7, now=86400.0 * d + 3600) for d in range(100, 107)]
    assert sorted(days) == [f"{n}/7" for n in range(1, 8)]
    assert db_cli.check_subset(1) == "1/1"


def test_a_damaged_backup_repository_is_found_the_night_it_breaks(tmp_path: Path) -> None:
    """The attack first: a byte of the repository's data changes on its disk (bit rot, a
    bad sector, a careless hand). The next nightly backup's check reads the packs back
    and fails: exit 74 naming the repository and the runbook, and an alert for staff;
    nothing is said to be fine."""
    data, database, db, ingest = _local_archive(tmp_path)
    for batch in _batches():
        assert not [m for m in _send(ingest, batch) if isinstance(m, Reject)]
    db.close()
    secret = tmp_path / "backup-password"
    secret.write_text("khóa-sao-lưu-ngoại-tuyến\n")
    repo = tmp_path / "restic-repo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
    env.update(SOHOA_DATA_DIR=str(data), SOHOA_DATABASE_URL=f"sqlite:///{database}",
               SOHOA_BACKUP_REPOSITORY=str(repo), SOHOA_BACKUP_PASSWORD_FILE=str(secret),
               SOHOA_INGEST="false")  # fmt: skip
    first = _server(env, "backup", "--check-days", "1")
    assert first.returncode == 0, first.stderr
    assert "pack group 1/1 read back and verified" in first.stdout

    packs = sorted((p for p in (repo / "data").rglob("*") if p.is_file()),
                   key=lambda p: p.stat().st_size)  # fmt: skip
    assert packs, "no pack in the repository"
    largest = packs[-1]
    raw = bytearray(largest.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    largest.chmod(0o600)  # restic writes packs read-only
    largest.write_bytes(bytes(raw))

    night = _server(env, "backup", "--check-days", "1")
    assert night.returncode == 74, night.stdout + night.stderr
    assert f"the backup repository {repo} is damaged" in night.stderr
    assert "runbook R7" in night.stderr
    db = Database(database)
    try:
        alerts = db.read().execute("SELECT kind, detail FROM alerts").fetchall()
    finally:
        db.close()
    assert [a[0] for a in alerts] == ["backup_damaged"]
    assert str(repo) in alerts[0][1]


def test_parts_the_check_found_damaged_come_back_from_the_snapshot(tmp_path: Path) -> None:
    """The failure first: after the night's backup, one stored file's bytes change (bit
    rot), another is deleted, and a file of a batch that came after the backup changes
    too. The fixity check names all three; ``fixity repair`` brings the first two back from
    the latest snapshot (re-hashed against ingest's sha256 before they take the damaged
    files' place), and names the third as having no good copy, leaving it as it is. The
    next check finds only that one; the audit chain holds."""
    data, database, db, ingest = _local_archive(tmp_path)
    first, later = _batches()
    assert not [m for m in _send(ingest, first) if isinstance(m, Reject)]
    secret = tmp_path / "backup-password"
    secret.write_text("khóa-sao-lưu-ngoại-tuyến\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
    env.update(SOHOA_DATA_DIR=str(data), SOHOA_DATABASE_URL=f"sqlite:///{database}",
               SOHOA_BACKUP_REPOSITORY=str(tmp_path / "restic-repo"),
               SOHOA_BACKUP_PASSWORD_FILE=str(secret), SOHOA_INGEST="false")  # fmt: skip
    backup = _server(env, "backup", "--check-days", "0")
    assert backup.returncode == 0, backup.stderr
    assert not [m for m in _send(ingest, later) if isinstance(m, Reject)]  # after the backup
    rows = (
        db.read()
        .execute(
            "SELECT x.id, x.path, x.sha256, b.batch_id FROM parts x"
            " JOIN pages p ON p.id = x.page_pk JOIN batches b ON b.id = p.batch_pk"
            " WHERE x.name = 'archival' ORDER BY x.id"
        )
        .fetchall()
    )
    db.close()
    rotted, gone = (r for r in rows if r["batch_id"] == first.batch_id)
    young = next(r for r in rows if r["batch_id"] == later.batch_id)
    good = {r["id"]: Path(r["path"]).read_bytes() for r in (rotted, gone, young)}
    for row in (rotted, young):
        raw = bytearray(good[row["id"]])
        raw[len(raw) // 2] ^= 0x20
        Path(row["path"]).write_bytes(bytes(raw))
    Path(gone["path"]).unlink()

    check = _server(env, "fixity", "check", "--rate-mb", "0")
    assert check.returncode == 1 and " 3 damaged" in check.stdout, check.stdout + check.stderr
    repaired = _server(env, "fixity", "repair")
    assert repaired.returncode == 1, repaired.stdout + repaired.stderr
    assert "2 part(s) repaired from the backups, 1 not" in repaired.stdout
    assert f"NOT REPAIRED part {young['id']}" in repaired.stderr
    assert "not in the latest snapshot" in repaired.stderr
    assert Path(rotted["path"]).read_bytes() == good[rotted["id"]]
    assert Path(gone["path"]).read_bytes() == good[gone["id"]]
    assert Path(young["path"]).read_bytes() != good[young["id"]]  # no good copy: left as is
    again = _server(env, "fixity", "check", "--rate-mb", "0")
    assert again.returncode == 1 and " 1 damaged" in again.stdout, again.stdout
    assert f"DAMAGED part {young['id']}" in again.stderr
    db = Database(database)
    try:
        assert [d["part_pk"] for d in fixity.damaged(db)] == [young["id"]]
        done = (
            db.read()
            .execute("SELECT target FROM audit WHERE action = 'fixity.repair' ORDER BY id")
            .fetchall()
        )
        assert [r[0] for r in done] == [f"part {rotted['id']}", f"part {gone['id']}"]
    finally:
        db.close()
    verify = _server(env, "audit", "verify")
    assert verify.returncode == 0, verify.stderr
    nothing = _server(env, "fixity", "repair", "--part", str(rotted["id"]))
    assert nothing.returncode == 0 and "nothing to repair" in nothing.stdout


def test_backup_needs_a_repository_and_its_password(tmp_path: Path) -> None:
    data = tmp_path / "archive"
    Database(data / "archive.sqlite3").close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
    env.update(SOHOA_DATA_DIR=str(data), SOHOA_INGEST="false")
    none = _server(env, "backup")
    assert none.returncode == 78 and "backup_repository" in none.stderr
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    right.write_text("đúng\n")
    wrong.write_text("sai\n")
    env["SOHOA_BACKUP_REPOSITORY"] = str(tmp_path / "repo")
    first = _server({**env, "SOHOA_BACKUP_PASSWORD_FILE": str(right)}, "backup")
    assert first.returncode == 0, first.stderr
    assert "initialised the restic repository" in first.stdout
    refused = _server({**env, "SOHOA_BACKUP_PASSWORD_FILE": str(wrong)}, "backup")
    assert refused.returncode == 78 and "does not open" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr


# -- the same drill on the object store ----------------------------------------------------------


def _objects(s3: CephS3, bucket: str) -> dict[str, tuple[int, str]]:
    """key -> (size, ETag) of every object in ``bucket``."""
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: (o["Size"], o["ETag"]) for p in pages for o in p.get("Contents", [])}


def _empty_bucket(s3: CephS3, bucket: str) -> None:
    client: Any = s3.client()
    for key in _objects(s3, bucket):
        client.delete_object(Bucket=bucket, Key=key)


def _real_batches(
    request: pytest.FixtureRequest, real: RealArchive, scratch: Path
) -> list[BatchSrc]:
    """The batch the real pipeline made (tests/real_archive.py: pages drawn, processed by
    the agent — cleanup, tesseract vie, PDF/A — and synced with their masters), as the
    station holds it: every part's bytes, under its page and batch ids, ready to be sent
    again as the agent sends them."""
    cluster = request.getfixturevalue("pg_cluster") if real.engine != "sqlite" else None
    url = real.catalogue_for(scratch / "archive.sqlite3", cluster)
    db = Database(scratch / "archive.sqlite3" if real.engine == "sqlite" else url)
    try:
        rows = db.read().execute(
            "SELECT b.batch_id, p.device_id, p.page_id, p.page_no, x.name, x.path FROM parts x"
            " JOIN pages p ON p.id = x.page_pk JOIN batches b ON b.id = p.batch_pk"
            " WHERE x.state = 'committed' ORDER BY b.id, p.page_no, x.name"
        )
        found: dict[tuple[str, str], dict[tuple[int, str], dict[str, bytes]]] = {}
        for r in rows:
            pages = found.setdefault((r["batch_id"], r["device_id"]), {})
            pages.setdefault((int(r["page_no"]), r["page_id"]), {})[r["name"]] = Path(
                r["path"]
            ).read_bytes()
    finally:
        db.close()
    batches = []
    for (batch_id, device), pages in found.items():
        made = [PageSrc(page_no=no, parts=parts, page_id=page_id, capture=parts["capture"])
                for (no, page_id), parts in sorted(pages.items())]  # fmt: skip
        batches.append(BatchSrc(pages=made, batch_id=batch_id, device=device))
    return batches


@pytest.mark.s3
@pytest.mark.mqtt
@pytest.mark.tesseract
@pytest.mark.slow
def test_restore_drill_on_the_object_store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    database: Path | str,
    real_archive: RealArchive,
    s3_server: CephS3,
) -> None:
    """Runbook R7 for an archive whose files are on a real RADOS Gateway: a real batch is
    ingested (the real pipeline's parts: PDF/A, OCR text, words, thumbnail, the master);
    `backup` copies every object to the backup store (another bucket: another site's in
    production) before its snapshot; the bucket and the database are lost; `restore` into a
    NEW bucket brings the catalogue and every object back, verified; fixity finds every
    page; the station's re-sends are all "already have"."""
    data = tmp_path / "archive"
    data.mkdir()
    if isinstance(database, Path):
        database = data / "archive.sqlite3"
        url = f"sqlite:///{database}"
    else:
        url = database
    bucket, offsite = s3_server.new_bucket(), s3_server.new_bucket()
    creds = objects.Credentials(s3_server.access_key, s3_server.secret_key)
    store = objects.open_store(data, s3_server.url(bucket), creds)
    db = Database(database)
    ingest = Ingest(db, store, signing_key=keys.load_or_create(data), accept_unenrolled=True)
    batches = _real_batches(request, real_archive, tmp_path / "real")
    for batch in batches:
        assert not [m for m in _send(ingest, batch) if isinstance(m, Reject)]
    before = _catalogue(db)
    db.close()
    n = len(before)
    assert {str(r[5]).split("/")[2] for r in before} == {bucket}
    assert len({r[1] for r in before}) == len(PAGES) and n >= 4 * len(PAGES)
    stored = _objects(s3_server, bucket)
    assert len(stored) == n
    big = max(len(p.capture) for b in batches for p in b.pages)
    assert big > PART_BYTES  # a master goes up as a multipart upload

    secret = tmp_path / "backup-password"
    secret.write_text("khóa-sao-lưu-ngoại-tuyến\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
    env.update(SOHOA_DATA_DIR=str(data), SOHOA_DATABASE_URL=url, SOHOA_INGEST="false",
               SOHOA_BACKUP_REPOSITORY=str(tmp_path / "restic-repo"),
               SOHOA_BACKUP_PASSWORD_FILE=str(secret), SOHOA_STORE_URL=s3_server.url(bucket),
               SOHOA_BACKUP_STORE_URL=s3_server.url(offsite, "tinh-du-phong"),
               SOHOA_BACKUP_S3_ACCESS_KEY_ID=s3_server.access_key,
               SOHOA_BACKUP_S3_SECRET_ACCESS_KEY=s3_server.secret_key,
               **s3_server.env())  # fmt: skip
    # The other site's bucket is over its quota: no snapshot, the cause said; lifted, it goes.
    s3_server.admin("quota", "set", "--quota-scope=bucket", f"--bucket={offsite}",
                    "--max-objects=0")  # fmt: skip
    s3_server.admin("quota", "enable", "--quota-scope=bucket", f"--bucket={offsite}")
    full = _server(env, "backup")
    assert full.returncode == 69, full.stderr + full.stdout
    assert "over its quota" in full.stderr and "no snapshot taken" in full.stderr
    assert "snapshot " not in full.stdout and "Traceback" not in full.stderr
    s3_server.admin("quota", "disable", "--quota-scope=bucket", f"--bucket={offsite}")
    backup = _server(env, "backup")
    assert backup.returncode == 0, backup.stderr + backup.stdout
    assert f"{n} object(s) copied" in backup.stdout and "snapshot " in backup.stdout
    copies = _objects(s3_server, offsite)
    assert sorted(copies) == sorted(f"tinh-du-phong/{k}" for k in stored)
    again = _server(env, "backup", "--check-days", "0")  # nightly: what the backup lacks
    assert again.returncode == 0, again.stderr
    assert f"0 object(s) copied (0 bytes), {n} already there" in again.stdout
    # With its check (every copy's group, with --check-days 1): each copy read back, none bad.
    checked = _server(env, "backup", "--check-days", "1")
    assert checked.returncode == 0, checked.stderr
    assert f"0 already there, 0 damaged, 0 missing; {n} copy(ies) read back, 0 bad" in (
        checked.stdout
    )

    # The site is lost: the bucket (every object, then the bucket), the database, the disk.
    key = (data / keys.KEY_FILE).read_bytes()
    _empty_bucket(s3_server, bucket)
    s3_server.client().delete_bucket(Bucket=bucket)
    shutil.rmtree(data)
    if isinstance(database, str):
        name = database.rsplit("/", 1)[1]
        admin = database.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as con:
            con.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            con.execute(f'CREATE DATABASE "{name}"')
    data.mkdir()
    Database(database).close()
    fresh = s3_server.new_bucket()  # the new site's bucket, another name
    env["SOHOA_STORE_URL"] = s3_server.url(fresh)

    restore = _server(env, "restore")
    assert restore.returncode == 0, restore.stderr + restore.stdout
    assert f"{len(PAGES)} page(s) in the catalogue" in restore.stdout
    assert f"{n} object(s) copied" in restore.stdout
    assert f"{n} part location(s) pointed at the bucket" in restore.stdout
    rerun = _server(env, "store", "restore")  # resumable: nothing left to do
    assert rerun.returncode == 0, rerun.stderr
    assert f"0 object(s) copied (0 bytes), {n} already there" in rerun.stdout

    fixity = _server(env, "fixity", "check", "--rate-mb", "0")
    assert fixity.returncode == 0, fixity.stderr
    assert f"finished: {len(before)} part(s)" in fixity.stdout and " 0 damaged" in fixity.stdout
    assert _server(env, "audit", "verify").returncode == 0
    assert (data / keys.KEY_FILE).read_bytes() == key
    assert _objects(s3_server, fresh) == stored  # the same keys, sizes and ETags

    db = Database(database)
    try:
        moved = [(*r[:5], str(r[5]).replace(f"//{bucket}/", f"//{fresh}/"), r[6]) for r in before]
        assert _catalogue(db) == moved
        store = objects.open_store(data, s3_server.url(fresh), creds)
        ingest = Ingest(db, store, signing_key=keys.load_or_create(data), accept_unenrolled=True)
        _resend_everything(ingest, batches)
        assert _catalogue(db) == moved  # no page or part twice
        assert _objects(s3_server, fresh) == stored  # no object twice, none rewritten
    finally:
        db.close()


def test_an_object_store_archive_is_not_backed_up_without_its_backup_store(
    tmp_path: Path,
) -> None:
    """With store_url, a restic snapshot alone would hold no file of the archive: refused
    (78) before anything is written; and the backup store may not be the archive's bucket."""
    data = tmp_path / "archive"
    Database(data / "archive.sqlite3").close()
    secret = tmp_path / "pw"
    secret.write_text("đúng\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
    env.update(SOHOA_DATA_DIR=str(data), SOHOA_INGEST="false",
               SOHOA_BACKUP_REPOSITORY=str(tmp_path / "repo"),
               SOHOA_BACKUP_PASSWORD_FILE=str(secret),
               SOHOA_STORE_URL="s3://kho/tinh?endpoint=http://127.0.0.1:9")  # fmt: skip
    for command in ("backup", "restore"):
        refused = _server(env, command)
        assert refused.returncode == 78, refused.stderr
        assert "backup_store_url" in refused.stderr and "Traceback" not in refused.stderr
    assert not (data / "backup").exists()  # nothing dumped
    env["SOHOA_BACKUP_STORE_URL"] = "s3://kho/du-phong?endpoint=http://127.0.0.1:9"
    same = _server(env, "backup")
    assert same.returncode == 78 and "own bucket" in same.stderr, same.stderr
