"""The archive's files in a real S3 object store (Ceph's RADOS Gateway, tests/s3server.py):
the ingest uploads and verifies before it commits and receipts; what the store holds is
re-read and re-hashed; the gateway killed mid-ingest loses nothing and commits nothing twice;
a local store moves over with ``store migrate``, stopped and resumed.

The ingest is driven in process here with messages built as the agent builds them
(tests/test_ingest.py); the end-to-end test at the bottom runs the real agent, Mosquitto
and ``sohoa-server run`` against the gateway."""

from __future__ import annotations

import contextlib
import io
import logging
import random
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from harness import BIN, Broker, ServerProcess, agent_env, run_agent
from real_archive import PAGES, draw_page
from s3_quirks import QuirkyStore
from s3server import PART_BYTES, CephS3
from test_enrolment import _tls_files
from test_ingest import BatchSrc, Server, as_messages, make_batch, receipts, rejects, sha

from protocol import envelope, topics
from protocol.messages import Receipt, Reject
from server import doctor
from server.archive import fixity, repair
from server.config import ServerSettings
from server.ingest import Ingest
from server.ingest.mqtt import IngestWorker
from server.store import objects, offsite
from server.store.db import Database

pytestmark = pytest.mark.s3


@dataclass
class S3Archive:
    server: Server
    store: objects.ObjectStore
    s3: CephS3
    bucket: str

    def keys(self) -> list[str]:
        listing = self.s3.client().list_objects_v2(Bucket=self.bucket)
        return sorted(o["Key"] for o in listing.get("Contents", []))

    def locations(self) -> dict[tuple[str, str], str]:
        rows = self.server.sql(
            "SELECT pages.page_id, parts.name, parts.path FROM parts"
            " JOIN pages ON pages.id = parts.page_pk WHERE parts.state = 'committed'"
        )
        return {(r["page_id"], r["name"]): r["path"] for r in rows}


BOTH_ENGINES = pytest.mark.parametrize(
    "s3a", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


def _store(root: Path, s3: CephS3, bucket: str) -> objects.ObjectStore:
    target = objects.Target.parse(s3.url(bucket))
    creds = objects.Credentials(s3.access_key, s3.secret_key)
    return objects.ObjectStore(root / "store-staging", target, objects.make_client(target, creds))


@pytest.fixture
def s3a(request: pytest.FixtureRequest, tmp_path: Path, s3_server: CephS3) -> Iterator[S3Archive]:
    """The ingest in process on the object store; the catalogue on SQLite, or on the
    session's PostgreSQL for tests parametrized with :data:`BOTH_ENGINES`."""
    bucket = s3_server.new_bucket()
    database: Path | str = tmp_path / "db" / "archive.sqlite3"
    if getattr(request, "param", "sqlite") == "postgresql":
        database = request.getfixturevalue("pg_cluster").create_database()
    server = Server(tmp_path, database)
    store = _store(tmp_path, s3_server, bucket)
    server.store = store
    server.ingest = Ingest(server.db, store, accept_unenrolled=True)
    yield S3Archive(server, store, s3_server, bucket)
    server.db.close()


def _deliver(s3a: S3Archive, batch: BatchSrc, chunk_size: int) -> list[Any]:
    out = s3a.server.manifest(batch)
    for payload in batch.all_chunks(chunk_size):
        out += s3a.server.chunk(payload)
    return out


def _archive_at(
    tmp_path: Path, s3_server: CephS3, monkeypatch: pytest.MonkeyPatch, url: str, **more: Any
) -> tuple[Server, ServerSettings]:
    """The ingest in process on the store ``url`` names (keys in the environment, for the
    backup store too), as ``sohoa-server run`` opens it: its settings and the server."""
    for var in ("S3", "BACKUP_S3"):
        monkeypatch.setenv(f"SOHOA_{var}_ACCESS_KEY_ID", s3_server.access_key)
        monkeypatch.setenv(f"SOHOA_{var}_SECRET_ACCESS_KEY", s3_server.secret_key)
    settings = ServerSettings(
        data_dir=tmp_path, store_url=url, ingest=False, retry_after_s=5, **more
    )
    server = Server(tmp_path, tmp_path / "db" / "archive.sqlite3")
    server.ingest = Ingest(server.db, objects.store_for(settings), accept_unenrolled=True)
    return server, settings


def _sent(server: Server, batch: BatchSrc) -> list[Any]:
    """Everything of ``batch`` sent, as the agent sends it; what came back."""
    out = server.manifest(batch)
    for payload in batch.all_chunks(30_000):
        out += server.chunk(payload)
    return out


def _all_but_the_last(
    s3a: S3Archive, batch: BatchSrc, part: str, chunk_size: int
) -> tuple[list[Any], bytes]:
    """The manifest and the first page's text, then its ``part`` but for the last chunk
    (the one that completes it, so uploads it): what came back, and that last chunk."""
    page = batch.pages[0]
    out = s3a.server.manifest(batch)
    for payload in batch.chunks(page, "text", chunk_size):
        out += s3a.server.chunk(payload)
    chunks = batch.chunks(page, part, chunk_size)
    for payload in chunks[:-1]:
        out += s3a.server.chunk(payload)
    return out, chunks[-1]


def _staged_files(s3a: S3Archive) -> list[Path]:
    return [p for p in s3a.store.root.rglob("*") if p.is_file()]


@BOTH_ENGINES
def test_parts_are_uploaded_verified_committed_and_read_back_from_the_object_store(
    s3a: S3Archive, caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(19)
    # The capture is larger than part_bytes: it goes up as a multipart upload.
    batch = make_batch(2, rng, sizes={"text": 700, "thumb": 5000, "capture": 3 * PART_BYTES})
    with caplog.at_level(logging.INFO, logger="server.store.objects"):
        out = _deliver(s3a, batch, 40_000)
    assert not rejects(out)
    # The gateway's ETags are the MD5s this side computed: no upload was read back.
    assert not [r for r in caplog.records if "not the MD5" in r.getMessage()]
    committed = [s for r in receipts(out) for s in r.committed]
    assert Counter((s.page_id, s.part) for s in committed) == Counter(
        (p.page_id, name) for p in batch.pages for name in p.parts
    )
    where = s3a.locations()
    for page in batch.pages:
        for name, data in page.parts.items():
            location = where[(page.page_id, name)]
            bucket, key = objects.split_location(location) or ("", "")
            assert bucket == s3a.bucket
            assert key.startswith(f"archive/{batch.device}/{batch.batch_id}/")
            assert objects.read_bytes(location) == data  # read through the interface
            assert objects.sha256(location) == sha(data)
            assert objects.size(location) == len(data)
    big = where[(batch.pages[0].page_id, "capture")]
    head = s3a.s3.client().head_object(Bucket=s3a.bucket, Key=objects.split_location(big)[1])
    assert head["ETag"].strip('"').endswith("-3")  # really a multipart object
    assert not _staged_files(s3a), "staged copies stay after the commit"
    assert s3a.server.state(batch.batch_id).complete
    report = fixity.check_store(s3a.server.db)  # re-reads and re-hashes every object
    assert report.finished and report.checked == 6 and not report.damaged


def test_a_write_once_bucket_takes_the_archive_as_it_is(tmp_path: Path, s3_server: CephS3) -> None:
    """An archive may put its files in a bucket no one can change or delete (S3 Object Lock,
    COMPLIANCE retention: write once, read many). Every write here is a new object verified
    by its Content-MD5, so such a bucket takes the archive as it is: parts (one multipart),
    a station's re-send, the fixity check, doctor's write probe (its delete leaves a marker,
    the probe's version stays under its retention); nothing refused."""
    bucket = f"sohoa-worm-{secrets.token_hex(3)}"
    admin = s3_server.client()
    admin.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    admin.put_object_lock_configuration(
        Bucket=bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}},
        },
    )
    server = Server(tmp_path, tmp_path / "db" / "archive.sqlite3")
    store = _store(tmp_path, s3_server, bucket)
    server.ingest = Ingest(server.db, store, accept_unenrolled=True)
    s3a = S3Archive(server, store, s3_server, bucket)
    batch = make_batch(2, random.Random(35), sizes={"text": 700, "capture": 3 * PART_BYTES})
    out = _deliver(s3a, batch, 40_000)
    assert not rejects(out)
    committed = Counter((s.page_id, s.part) for r in receipts(out) for s in r.committed)
    assert committed == Counter((p.page_id, n) for p in batch.pages for n in p.parts)
    assert not rejects(_deliver(s3a, batch, 40_000))  # the station sends it all again
    report = fixity.check_store(server.db)
    assert report.finished and report.checked == 4 and not report.damaged
    assert store.check(write=True).startswith(f"s3://{bucket}/")
    for (_, _), location in s3a.locations().items():
        key = objects.split_location(location)[1]  # type: ignore[index]
        held = admin.get_object_retention(Bucket=bucket, Key=key)["Retention"]
        assert held["Mode"] == "COMPLIANCE"  # the bucket's rule, on every part
    server.db.close()


@pytest.fixture
def opaque_s3a(tmp_path: Path, s3_server: CephS3) -> Iterator[tuple[S3Archive, QuirkyStore]]:
    """The ingest in process on the gateway seen through :class:`QuirkyStore`: a store whose
    ETags are not the MD5 of the bytes (AWS with SSE-KMS, MinIO with encryption)."""
    proxy = QuirkyStore(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, "default")
    proxy.opaque_etags = True
    proxy.start()
    bucket = s3_server.new_bucket()
    target = objects.Target.parse(s3_server.url(bucket).replace(s3_server.endpoint, proxy.endpoint))
    creds = objects.Credentials(s3_server.access_key, s3_server.secret_key)
    store = objects.ObjectStore(
        tmp_path / "store-staging", target, objects.make_client(target, creds)
    )
    server = Server(tmp_path, tmp_path / "db" / "archive.sqlite3")
    server.store = store
    server.ingest = Ingest(server.db, store, accept_unenrolled=True)
    yield S3Archive(server, store, s3_server, bucket), proxy
    server.db.close()
    proxy.stop()


def test_a_store_whose_etags_are_not_md5s_takes_parts_verified_by_reading_them_back(
    opaque_s3a: tuple[S3Archive, QuirkyStore], caplog: pytest.LogCaptureFixture
) -> None:
    """Such a store's ETag says nothing about the bytes: each part (one multipart, one
    multipart upload an earlier attempt left half done, small ones) and a turned page
    written here are verified by reading them back and hashing them, then committed."""
    s3a, proxy = opaque_s3a
    rng = random.Random(36)
    batch = make_batch(2, rng, sizes={"text": 700, "thumb": 5000, "capture": 3 * PART_BYTES})
    left = batch.pages[1]
    s3a.server.manifest(batch)
    key = s3a.store.key(
        s3a.store.part_path(batch.device, batch.batch_id, 2, left.page_id, "capture", "image/png")
    )
    client: Any = s3a.store.client  # through the proxy
    upload = client.create_multipart_upload(
        Bucket=s3a.bucket, Key=key, Metadata={"sha256": sha(left.parts["capture"])}
    )["UploadId"]
    client.upload_part(Bucket=s3a.bucket, Key=key, UploadId=upload, PartNumber=1,
                       Body=left.parts["capture"][:PART_BYTES])  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="server.store.objects"):
        out = _deliver(s3a, batch, 40_000)
    assert not rejects(out)
    committed = Counter((s.page_id, s.part) for r in receipts(out) for s in r.committed)
    assert committed == Counter((p.page_id, n) for p in batch.pages for n in p.parts)
    assert proxy.opaque_seen > 0
    where = s3a.locations()
    for page in batch.pages:
        for name, data in page.parts.items():
            assert objects.read_bytes(where[(page.page_id, name)]) == data
    assert not client.list_multipart_uploads(Bucket=s3a.bucket, Prefix=key).get("Uploads")
    said = [r.getMessage() for r in caplog.records if "not the MD5" in r.getMessage()]
    assert len(said) == 1, said  # told once, not once a part
    # A page turned here (server.archive.rotation) is written the same way.
    turned = s3a.store.target.location(s3a.store.target.prefix + "turned/1.png")
    data = rng.randbytes(3000)
    objects.put_bytes(turned, data, sha(data))
    assert objects.read_bytes(turned) == data
    report = fixity.check_store(s3a.server.db)
    assert report.finished and report.checked == 6 and not report.damaged


def test_a_store_that_keeps_other_bytes_and_gives_no_md5_is_caught_by_the_read_back(
    opaque_s3a: tuple[S3Archive, QuirkyStore],
) -> None:
    """The attack first: the store keeps other bytes than it was sent, without Content-MD5
    to refuse them, and its ETag cannot tell. Nothing is committed or receipted; once the
    store keeps what it is sent, the station's next send is."""
    s3a, proxy = opaque_s3a
    batch = make_batch(1, random.Random(37), sizes={"text": 700, "thumb": 5000})
    page = batch.pages[0]
    proxy.corrupt.add(f"{page.page_id}.thumb")
    out, last = _all_but_the_last(s3a, batch, "thumb", 2000)
    with pytest.raises(objects.ObjectStoreError, match="does not verify"):
        s3a.server.chunk(last)  # the part is complete: uploaded, read back, refused
    assert proxy.corrupted, "the proxy changed no body: the test tests nothing"
    assert [(s.part, s.committed) for r in receipts(out) for s in r.committed] == [("text", True)]
    assert (page.page_id, "thumb") not in s3a.locations()
    with pytest.raises(objects.ObjectStoreError, match="does not verify"):
        objects.put_bytes(
            s3a.store.target.location(f"{s3a.store.target.prefix}{page.page_id}.thumb"),
            b"x" * 100,
            sha(b"x" * 100),
        )
    proxy.corrupt.clear()
    out = []
    for payload in batch.chunks(page, "thumb", 2000):
        out += s3a.server.chunk(payload)
    assert [(s.part, s.committed) for r in receipts(out) for s in r.committed] == [("thumb", True)]
    assert objects.read_bytes(s3a.locations()[(page.page_id, "thumb")]) == page.parts["thumb"]


def test_a_part_that_fails_its_sha256_never_reaches_the_object_store(s3a: S3Archive) -> None:
    rng = random.Random(20)
    batch = make_batch(1, rng, sizes={"text": 700, "thumb": 5000})
    page = batch.pages[0]
    # The attack first: a chunk whose body hashes right on its own header but is not the
    # part the manifest announced (the part's sha256 fails once it is complete).
    forged = bytearray(page.parts["thumb"])
    forged[100] ^= 0xFF
    out = s3a.server.manifest(batch)
    for payload in batch.chunks(page, "thumb", 2000, data=bytes(forged)):
        out += s3a.server.chunk(payload)
    assert [r.reason for r in rejects(out)] == ["corrupt"]
    assert not receipts(out)
    assert s3a.keys() == [], "a part that fails its sha256 was uploaded"
    assert not s3a.locations()
    # Sent again, right: committed.
    out = []
    for payload in batch.chunks(page, "thumb", 2000):
        out += s3a.server.chunk(payload)
    assert [(s.part, s.committed) for r in receipts(out) for s in r.committed] == [("thumb", True)]


def test_an_object_planted_at_the_key_is_replaced_not_trusted(s3a: S3Archive) -> None:
    """Someone (or a broken earlier writer) left an object at the part's key with the right
    size and a sha256 label but other bytes: the ingest must not take it as already there."""
    rng = random.Random(21)
    batch = make_batch(1, rng, sizes={"text": 700, "thumb": 5000})
    page = batch.pages[0]
    real = page.parts["thumb"]
    s3a.server.manifest(batch)
    staged = s3a.store.part_path(
        batch.device, batch.batch_id, 1, page.page_id, "thumb", "image/jpeg"
    )
    key = s3a.store.key(staged)
    s3a.s3.client().put_object(
        Bucket=s3a.bucket, Key=key, Body=bytes(len(real)), Metadata={"sha256": sha(real)}
    )
    out = []
    for payload in batch.chunks(page, "thumb", 2000):
        out += s3a.server.chunk(payload)
    assert receipts(out)
    location = s3a.locations()[(page.page_id, "thumb")]
    assert objects.read_bytes(location) == real


def test_a_multipart_upload_left_half_done_is_resumed_and_verified(s3a: S3Archive) -> None:
    """An ingest stopped mid-upload left a multipart upload with part 1 right and part 2
    of other bytes: the next attempt keeps part 1, sends part 2 again, and commits only
    the complete, verified object."""
    rng = random.Random(22)
    batch = make_batch(1, rng, sizes={"text": 700, "capture": 2 * PART_BYTES + 1000})
    page = batch.pages[0]
    data = page.parts["capture"]
    s3a.server.manifest(batch)
    staged = s3a.store.part_path(
        batch.device, batch.batch_id, 1, page.page_id, "capture", "image/png"
    )
    key = s3a.store.key(staged)
    client: Any = s3a.s3.client()
    upload = client.create_multipart_upload(
        Bucket=s3a.bucket, Key=key, Metadata={"sha256": sha(data)}
    )["UploadId"]
    client.upload_part(Bucket=s3a.bucket, Key=key, UploadId=upload, PartNumber=1,
                       Body=data[:PART_BYTES])  # fmt: skip
    client.upload_part(
        Bucket=s3a.bucket, Key=key, UploadId=upload, PartNumber=2, Body=bytes(PART_BYTES)
    )  # fmt: skip  (not these bytes)
    assert s3a.keys() == []  # an unfinished upload is no object
    out = []
    for payload in batch.chunks(page, "capture", 50_000):
        out += s3a.server.chunk(payload)
    assert [s.part for r in receipts(out) for s in r.committed] == ["capture"]
    location = s3a.locations()[(page.page_id, "capture")]
    assert objects.sha256(location) == sha(data)
    assert not client.list_multipart_uploads(Bucket=s3a.bucket, Prefix=key).get("Uploads")


@BOTH_ENGINES
@pytest.mark.slow
def test_the_gateway_killed_mid_ingest_loses_nothing_and_commits_nothing_twice(
    s3a: S3Archive,
) -> None:
    rng = random.Random(23)
    batch = make_batch(4, rng, sizes={"text": 700, "thumb": 5000, "capture": 2 * PART_BYTES})
    payloads = batch.all_chunks(30_000)
    receipted: list[tuple[str, str]] = []
    failed = 0
    calls = 0

    def kill_during_a_multipart_upload(**_: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:  # the second capture's first part: SIGKILL, then the request goes
            s3a.s3.kill_gateway()

    events = s3a.store.client.meta.events
    events.register("before-send.s3.UploadPart", kill_during_a_multipart_upload)

    def send(topic: str, payload: bytes) -> None:
        nonlocal failed
        (result,) = s3a.server.ingest.handle_many([(topic, payload)])
        if result.error is not None:  # the worker tells the device to retry later
            failed += 1
            return
        for receipt in receipts(result.replies):
            for state in receipt.committed:
                # A receipt goes out only for an object the store holds, verified, now.
                location = s3a.locations()[(state.page_id, state.part)]
                assert objects.sha256(location) == state.sha256
                receipted.append((state.page_id, state.part))

    send(topics.up(batch.device, "manifest"), batch.manifest())
    try:
        for payload in payloads:
            send(topics.up(batch.device, "chunk"), payload)
        assert calls >= 3 and s3a.s3.procs["rgw"].poll() is not None, "the gateway never died"
        assert failed > 0, "the dead gateway refused nothing: the test did not test"
        at_kill = len(receipted)
        assert at_kill < sum(len(p.parts) for p in batch.pages)
    finally:
        events.unregister("before-send.s3.UploadPart", kill_during_a_multipart_upload)
        s3a.s3.start_gateway()
    assert client_uploads(s3a), "no multipart upload was cut short: the test did not test"
    # The device was told to retry later and sends what has no receipt again (everything,
    # as a device that lost track would: duplicates must not commit twice).
    for payload in payloads:
        send(topics.up(batch.device, "chunk"), payload)
    expected = Counter((p.page_id, name) for p in batch.pages for name in p.parts)
    assert Counter(receipted) == expected, "lost or committed twice"
    where = s3a.locations()
    for page in batch.pages:
        for name, data in page.parts.items():
            assert objects.read_bytes(where[(page.page_id, name)]) == data
    assert s3a.server.state(batch.batch_id).complete
    assert not client_uploads(s3a), "the cut multipart upload was not resumed"
    assert not _staged_files(s3a)


def client_uploads(s3a: S3Archive) -> list[Any]:
    client: Any = s3a.s3.client()
    return list(client.list_multipart_uploads(Bucket=s3a.bucket).get("Uploads", []))


def test_fixity_on_the_object_store_finds_a_changed_and_a_missing_object(
    s3a: S3Archive,
) -> None:
    rng = random.Random(24)
    batch = make_batch(2, rng, sizes={"text": 700, "thumb": 5000})
    _deliver(s3a, batch, 40_000)
    where = s3a.locations()
    thumb = where[(batch.pages[0].page_id, "thumb")]
    text = where[(batch.pages[1].page_id, "text")]
    client: Any = s3a.s3.client()
    _, thumb_key = objects.split_location(thumb) or ("", "")
    _, text_key = objects.split_location(text) or ("", "")
    good = batch.pages[0].parts["thumb"]
    rotten = bytearray(good)
    rotten[10] ^= 0x01
    # Bit rot as the store would show it: the object's bytes change, its labels do not.
    client.put_object(Bucket=s3a.bucket, Key=thumb_key, Body=bytes(rotten),
                      Metadata={"sha256": sha(good)})  # fmt: skip
    client.delete_object(Bucket=s3a.bucket, Key=text_key)
    report = fixity.check_store(s3a.server.db)
    assert report.finished and report.checked == 4
    assert sorted((c.path, c.outcome) for c in report.damaged) == sorted(
        [(thumb, "fail"), (text, "missing")]
    )
    client.put_object(Bucket=s3a.bucket, Key=thumb_key, Body=good)
    client.put_object(Bucket=s3a.bucket, Key=text_key, Body=batch.pages[1].parts["text"])
    assert not fixity.check_store(s3a.server.db).damaged


# -- store migrate ------------------------------------------------------------------------------


def _migrate(
    data_dir: Path, db_file: Path, s3: CephS3, url: str, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {
        "SOHOA_SERVER_DATA_DIR": str(data_dir),
        "SOHOA_DATABASE_URL": f"sqlite:///{db_file}",
        "PATH": "/usr/bin:/bin",
        **s3.env(),
    }
    return subprocess.run(
        [str(BIN / "sohoa-server"), "store", "migrate", "--to", url, *args],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_objects_the_check_found_damaged_come_back_from_the_backup_store(
    tmp_path: Path, s3_server: CephS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failure first: after the night's backup, an object's bytes rot on the gateway's
    disk (its size, ETag and SHA-256 label unchanged: a HEAD, and so ``store restore``,
    take it as fine), another object is deleted, and a third is damaged in the backup store
    too. The fixity check
    names the three; ``fixity repair`` puts the first two back from the backup store, each
    re-hashed before it replaces the damaged one, and names the third as having no good
    copy. The next check finds only that one."""
    bucket, spare = s3_server.new_bucket(), s3_server.new_bucket()
    server, settings = _archive_at(
        tmp_path, s3_server, monkeypatch, s3_server.url(bucket),
        backup_store_url=s3_server.url(spare, "backup"),
    )  # fmt: skip
    batch = make_batch(3, random.Random(43), sizes={"text": 700, "capture": 2 * PART_BYTES})
    out = _sent(server, batch)
    assert not rejects(out)
    assert offsite.backup(server.db, objects.backup_store_for(settings), say=str).whole
    rows = server.sql("SELECT id, name, path, sha256, size FROM parts ORDER BY id")
    rotted = next(r for r in rows if r["name"] == "text")  # one PUT: in the head object
    gone, lost = [r for r in rows if r["name"] == "capture"][1:]  # multipart objects
    client: Any = s3_server.client()

    def spoil(where: str, row: Any) -> None:
        key = objects.split_location(row["path"])[1]  # type: ignore[index]
        if where == "backup":
            key = "backup/" + key
        client.put_object(
            Bucket=spare if where == "backup" else bucket, Key=key,
            Body=secrets.token_bytes(int(row["size"])), Metadata={"sha256": row["sha256"]},
        )  # fmt: skip

    key = objects.split_location(rotted["path"])[1]  # type: ignore[index]
    etag = client.head_object(Bucket=bucket, Key=key)["ETag"]
    s3_server.rot(bucket, key)
    client.delete_object(Bucket=bucket, Key=objects.split_location(gone["path"])[1])  # type: ignore[index]
    spoil("store", lost)
    spoil("backup", lost)
    report = fixity.check_store(server.db)
    assert sorted(c.part_pk for c in report.damaged) == [rotted["id"], gone["id"], lost["id"]]
    # What store restore does not see: the rotten object's HEAD looks right, ETag and all.
    assert client.head_object(Bucket=bucket, Key=key)["ETag"] == etag
    store = objects.store_for(settings)
    assert isinstance(store, objects.ObjectStore)
    assert store.holds(key, rotted["sha256"], int(rotted["size"]))

    said: list[str] = []
    done = repair.repair(server.db, settings, say=said.append)
    assert len(done.repaired) == 2 and len(done.not_repaired) == 1, said
    assert f"part {lost['id']}" in done.not_repaired[0]
    assert "does not hash as recorded" in done.not_repaired[0]
    for row in (rotted, gone):
        assert objects.sha256(row["path"]) == row["sha256"]
    assert objects.sha256(lost["path"]) != lost["sha256"]  # left as it was
    again = fixity.check_store(server.db)
    assert [c.part_pk for c in again.damaged] == [lost["id"]]
    assert [d["part_pk"] for d in fixity.damaged(server.db)] == [lost["id"]]
    server.db.close()


def test_the_nightly_backup_rereads_a_group_of_its_copies_and_replaces_a_rotten_one(
    tmp_path: Path, s3_server: CephS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failure first: a copy in the backup store rots on that store's disk (size, ETag
    and label unchanged). A backup that only lists keeps it — the copy would fail the day
    it is needed. With ``reread`` (group n of t, by part id, another group each night), the
    copies of that night's group are read back and hashed; the rotten one is copied again
    from the archive, verified; the others of the group are only read."""
    bucket, spare = s3_server.new_bucket(), s3_server.new_bucket()
    server, settings = _archive_at(
        tmp_path, s3_server, monkeypatch, s3_server.url(bucket),
        backup_store_url=s3_server.url(spare, "backup"),
    )  # fmt: skip
    batch = make_batch(3, random.Random(44), sizes={"text": 700, "thumb": 3000})
    out = _sent(server, batch)
    assert not rejects(out)
    to = objects.backup_store_for(settings)
    assert offsite.backup(server.db, to, say=str).copied == 6
    rows = server.sql("SELECT id, path, sha256, size FROM parts ORDER BY id")
    rotten = rows[2]
    key = "backup/" + objects.split_location(rotten["path"])[1]  # type: ignore[index]
    s3_server.rot(spare, key)
    held = tmp_path / "held"

    def copy_is_good() -> bool:
        return to.download(key, held) == (rotten["sha256"], int(rotten["size"]))

    assert not copy_is_good()
    listed = offsite.backup(server.db, to, say=str)  # lists: the rotten copy is "there"
    assert (listed.kept, listed.copied, listed.reread) == (6, 0, 0) and not copy_is_good()
    other = 2 - rotten["id"] % 2  # the group (of 2) the rotten copy is not in
    night = offsite.backup(server.db, to, say=str, reread=(other, 2))
    assert night.reread == 3 and not night.replaced and not copy_is_good()
    said: list[str] = []
    night = offsite.backup(server.db, to, say=said.append, reread=(3 - other, 2))
    assert night.reread == 3 and len(night.replaced) == 1 and night.whole
    assert f"part {rotten['id']}" in night.replaced[0] and said[0].startswith("REPLACED")
    assert copy_is_good()
    server.db.close()


def test_store_migrate_stopped_and_resumed_moves_every_part_verified(
    tmp_path: Path, s3_server: CephS3
) -> None:
    # A local archive, ingested the ordinary way.
    local = Server(tmp_path, tmp_path / "db" / "archive.sqlite3")
    rng = random.Random(25)
    batch = make_batch(3, rng, sizes={"text": 700, "thumb": 5000, "capture": 2 * PART_BYTES})
    local.manifest(batch)
    for payload in batch.all_chunks(40_000):
        local.chunk(payload)
    local.assert_batch_archived(batch)
    before = {(r["id"]): r["path"] for r in local.sql("SELECT id, path FROM parts")}
    damaged_pk, damaged_path = next(iter(before.items()))
    local.db.close()
    # One local file rotted before the move: it must not be moved (nor its rot uploaded).
    Path(damaged_path).write_bytes(b"rot" + Path(damaged_path).read_bytes()[3:])
    bucket = s3_server.new_bucket()
    url = s3_server.url(bucket)
    db_file = tmp_path / "db" / "archive.sqlite3"

    first = _migrate(tmp_path, db_file, s3_server, url, "--limit", "4")
    assert first.returncode == 75, first.stderr + first.stdout  # stopped, the rest later
    assert "4/9 part(s) moved" in first.stdout
    # Stopped again, harder: the gateway dies during the second run.
    s3_server.kill_gateway()
    try:
        second = _migrate(tmp_path, db_file, s3_server, url)
    finally:
        s3_server.start_gateway()
    assert second.returncode == 69, second.stderr + second.stdout
    third = _migrate(tmp_path, db_file, s3_server, url)
    assert third.returncode == 1, third.stderr + third.stdout  # done, but one file damaged
    assert f"NOT MOVED part {damaged_pk}" in third.stdout

    db = Database(db_file)
    objects.register(bucket, s3_server.client())
    try:
        after = {r["id"]: r["path"] for r in db.read().execute("SELECT id, path FROM parts")}
        assert after[damaged_pk] == damaged_path  # still local, still flagged
        moved = {pk: where for pk, where in after.items() if pk != damaged_pk}
        assert all(where.startswith(f"s3://{bucket}/archive/") for where in moved.values())
        for pk, where in moved.items():
            assert objects.read_bytes(where) == Path(before[pk]).read_bytes()  # never deleted
        report = fixity.check_store(db)
        assert [c.part_pk for c in report.damaged] == [damaged_pk]
    finally:
        db.close()


def test_credentials_never_ride_in_the_store_url() -> None:
    with pytest.raises(ValueError, match="no credentials"):
        objects.Target.parse("s3://AKIA:secret@bucket/x?endpoint=http://127.0.0.1:1")
    target = objects.Target.parse("s3://bucket/a/b?endpoint=http://127.0.0.1:9&part_bytes=70000")
    assert (target.bucket, target.prefix, target.part_bytes) == ("bucket", "a/b/", 70000)
    assert "secret" not in repr(objects.Credentials("AKIA", "secret"))
    with pytest.raises(ValueError, match="part_bytes"):
        objects.Target.parse("s3://bucket?part_bytes=10")


# -- end to end: the real station, broker and server on the object store -------------------------


@pytest.mark.mqtt
@pytest.mark.tesseract
@pytest.mark.slow
def test_a_real_batch_ingested_into_the_object_store_is_served_by_the_staff_api(
    tmp_path: Path, s3_server: CephS3
) -> None:
    """A page drawn, ``sohoa-agent import``ed, processed (tesseract vie, PDF/A) and synced
    with its master over a real Mosquitto to ``sohoa-server run`` whose store is the
    gateway; then fetched through the staff API: the parts come from the object store."""
    with _served_from_the_gateway(tmp_path, s3_server) as (server, bucket, page, src):
        (batch,) = server.get_json("/api/v1/batches")
        assert batch["complete"]
        db = Database(tmp_path / "server" / "archive.sqlite3")
        try:
            paths = [r["path"] for r in db.read().execute("SELECT path FROM parts")]
        finally:
            db.close()
        assert paths and all(p.startswith(f"s3://{bucket}/archive/xa-test-01/") for p in paths)
        assert not [p for p in (tmp_path / "server" / "store-staging").rglob("*") if p.is_file()]
        status, original, headers = server.request("GET", f"/api/v1/pages/{page['id']}/original")
        assert status == 200 and original == src.read_bytes()  # the master, byte for byte
        assert {k.lower(): v for k, v in headers.items()}["x-sha256"] == sha(original)
        status, pdf, _ = server.request("GET", f"/api/v1/pages/{page['id']}/image")
        assert status == 200 and pdf.startswith(b"%PDF-")
        status, text, _ = server.request("GET", f"/api/v1/pages/{page['id']}/text")
        assert status == 200 and "hộ tịch" in text.decode("utf-8")
        status, jpeg, _ = server.request("GET", f"/api/v1/pages/{page['id']}/render?w=400")
        assert status == 200 and jpeg[:3] == b"\xff\xd8\xff"
        status, jpeg, _ = server.request("GET", f"/api/v1/pages/{page['id']}/capture?w=400")
        assert status == 200 and jpeg[:3] == b"\xff\xd8\xff"  # the capture, from the store
        # A turn chosen in review is a new archival object beside the original, verified.
        status, _, _ = server.request(
            "POST", f"/api/v1/pages/{page['id']}/review", {"action": "rotate", "degrees": 90}
        )
        assert status == 204
        status, turned, headers = server.request("GET", f"/api/v1/pages/{page['id']}/image")
        assert status == 200 and turned != pdf
        assert {k.lower(): v for k, v in headers.items()}["x-sha256"] == sha(turned)
        keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
        (turned_key,) = [k for k in keys if k.endswith(".r1.pdf")]
        stored = s3_server.client().get_object(Bucket=bucket, Key=turned_key)["Body"].read()
        assert stored == turned
        with pikepdf.open(io.BytesIO(turned)) as doc:
            assert int(doc.pages[0].obj.get("/Rotate", 0)) == 90
        # Served from the object store, not from a copy somewhere: gone there, gone here.
        s3_server.client().delete_object(
            Bucket=bucket,
            Key=objects.split_location(paths[0])[1],  # type: ignore[index]
        )
        missing = [server.request("GET", f"/api/v1/pages/{page['id']}/{what}")[0]
                   for what in ("original", "image", "text")]  # fmt: skip
        assert 200 in missing and any(code >= 400 for code in missing)


@contextlib.contextmanager
def _served_from_the_gateway(
    tmp_path: Path, s3_server: CephS3
) -> Iterator[tuple[ServerProcess, str, dict[str, Any], Path]]:
    """A page drawn, ``sohoa-agent import``ed, processed (tesseract vie, PDF/A) and synced
    with its master over a real Mosquitto to ``sohoa-server run`` whose store is a new
    bucket of the gateway: (the server, the bucket, the page as the API lists it, the
    drawn file)."""
    incoming = tmp_path / "in"
    incoming.mkdir()
    src = draw_page(PAGES[1], incoming / "trang-01.png")
    bucket = s3_server.new_bucket()
    broker = Broker(tmp_path / "broker").start()
    server = ServerProcess(
        tmp_path / "server",
        broker.url,
        settings={"SOHOA_STORE_URL": s3_server.url(bucket), **s3_server.env()},
    )
    try:
        server.start()
        env = agent_env(tmp_path / "agent", broker.url, SOHOA_SYNC_MASTERS="true")
        run_agent(env, "import", str(incoming), check=True)
        run_agent(env, "sync", "--wait", "--timeout", "300", check=True)
        (batch,) = server.get_json("/api/v1/batches")
        (page,) = server.get_json(f"/api/v1/batches/{batch['id']}")["pages"]
        yield server, bucket, page, src
    finally:
        server.stop()
        broker.stop()


def _read_hung(url: str, token: str) -> tuple[int, str, float]:
    """GET ``url`` (no client timeout short of the test's): status, Retry-After, seconds."""
    started = time.monotonic()
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=300) as answer:
            answer.read()
            return answer.status, answer.headers.get("Retry-After", ""), 0.0
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Retry-After", ""), time.monotonic() - started


@pytest.mark.mqtt
@pytest.mark.tesseract
@pytest.mark.slow
def test_a_gateway_that_stops_answering_holds_up_neither_the_app_nor_its_readers(
    tmp_path: Path, s3_server: CephS3
) -> None:
    """The gateway stopped (SIGSTOP: a stuck radosgw, a link that drops packets; it answers
    nothing and refuses nothing) while staff open 40 page files of a real station's batch.
    Before the read gate, those reads held every thread of the staff app: the login page
    and the batch list gave nothing for ~50 s, and each read got its 503 after 60-180 s.
    Now the app answers at once while reads still wait, every read gets its 503 while the
    gateway is still stopped, the log says it once, and reads come back by themselves when
    the gateway does."""
    gateway = s3_server.procs["rgw"]
    with _served_from_the_gateway(tmp_path, s3_server) as (server, bucket, page, _):
        (batch,) = server.get_json("/api/v1/batches")
        files = [f"/api/v1/pages/{page['id']}/{what}"
                 for what in ("original", "text", "capture?w=200", "render?w=500")]  # fmt: skip
        assert [server.get(f)[0] for f in files[:2]] == [200, 200]  # the gateway answers

        gateway.send_signal(signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(40) as pool:
                reads = [pool.submit(_read_hung, server.url + f, server.token)
                         for f in files * 10]  # fmt: skip
                time.sleep(2)  # every read has asked by now
                # The app answers (the harness's client gives up after 10 s) while reads wait.
                assert server.get("/login", auth=False)[0] == 200
                assert server.get_json("/api/v1/batches")[0]["id"] == batch["id"]
                assert not all(r.done() for r in reads), "no read waited: the gateway answered"
                answered = [r.result(timeout=120) for r in reads]  # before the gate: 180 s
                assert gateway.poll() is None  # still there, still stopped
        finally:
            gateway.send_signal(signal.SIGCONT)
        assert {status for status, _, _ in answered} == {503}
        assert {retry for _, retry, _ in answered} == {str(objects.RETRY_AFTER_S)}
        log = server.log_path.read_text(encoding="utf-8")
        assert log.count(f"object store {bucket} does not answer reads") == 1
        assert "Connection pool is full" not in log
        assert "Traceback" not in log
        # Back by itself once its readers' silence is over: no restart.
        deadline = time.monotonic() + 60
        while (status := server.get(files[0])[0]) != 200 and time.monotonic() < deadline:
            time.sleep(1)
        assert status == 200
        assert [server.get(f)[0] for f in files] == [200] * 4
        log = server.log_path.read_text(encoding="utf-8")
        assert log.count(f"object store {bucket} answers reads again") == 1


def test_doctor_names_a_gateway_whose_reads_wait_on_nagle(
    tmp_path: Path, s3_server: CephS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A RADOS Gateway without ``tcp_nodelay=1`` answers every GET ~40 ms late (measured:
    48 ms against 2 ms); doctor says so and what to set. Tried first on such a gateway."""
    bucket = s3_server.new_bucket()
    settings = ServerSettings(data_dir=tmp_path, store_url=s3_server.url(bucket))
    monkeypatch.setenv("SOHOA_S3_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("SOHOA_S3_SECRET_ACCESS_KEY", s3_server.secret_key)
    conf = s3_server.conf.read_text()
    assert " tcp_nodelay=1" in conf
    try:
        s3_server.conf.write_text(conf.replace(" tcp_nodelay=1", ""))
        s3_server.kill_gateway()
        s3_server.start_gateway()
        slow = doctor.check_object_store(settings)
        assert slow.level == "warn", slow.en
        assert "tcp_nodelay=1" in slow.en and "tcp_nodelay=1" in slow.vi
        assert objects.read_delay(settings) > objects.READ_DELAY_WARN_S
    finally:
        s3_server.conf.write_text(conf)
        s3_server.kill_gateway()
        s3_server.start_gateway()
    finding = doctor.check_object_store(settings)
    assert finding.level == "ok", finding.en
    # The probe object is gone again.
    listed = s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    assert listed == []


def test_doctor_says_whether_the_object_store_answers(
    tmp_path: Path, s3_server: CephS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_server.new_bucket()
    settings = ServerSettings(data_dir=tmp_path, store_url=s3_server.url(bucket))
    monkeypatch.setenv("SOHOA_S3_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("SOHOA_S3_SECRET_ACCESS_KEY", "not-the-secret")  # the attack first
    assert doctor.check_object_store(settings).level == "fail"
    monkeypatch.setenv("SOHOA_S3_SECRET_ACCESS_KEY", s3_server.secret_key)
    finding = doctor.check_object_store(settings)
    assert finding.level == "ok", finding.en
    assert s3_server.secret_key not in finding.en + finding.vi
    gone = ServerSettings(data_dir=tmp_path, store_url=s3_server.url("sohoa-no-such-bucket"))
    assert doctor.check_object_store(gone).level == "fail"
    # The backup store (another site's): checked too, with its own keys, its cause named.
    monkeypatch.setenv("SOHOA_BACKUP_S3_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("SOHOA_BACKUP_S3_SECRET_ACCESS_KEY", s3_server.secret_key)
    offsite_bucket = s3_server.new_bucket()
    with_backup = ServerSettings(
        data_dir=tmp_path, store_url=s3_server.url(bucket),
        backup_store_url=s3_server.url(offsite_bucket, "du-phong"),
    )  # fmt: skip
    names = [f.check for f in doctor.run(with_backup)]
    assert "backup_store" in names
    assert doctor.check_backup_store(with_backup).level == "ok"
    no_backup = with_backup.model_copy(
        update={"backup_store_url": s3_server.url("sohoa-no-backup-bucket")}
    )
    lost = doctor.check_backup_store(no_backup)
    assert lost.level == "fail" and objects.CAUSES["no_bucket"][1] in lost.en
    monkeypatch.setenv("SOHOA_BACKUP_S3_SECRET_ACCESS_KEY", "not-the-secret")
    wrong = doctor.check_backup_store(with_backup)
    assert wrong.level == "fail" and "SignatureDoesNotMatch" in wrong.en
    assert "backup-s3-secret-access-key" in wrong.vi and s3_server.secret_key not in wrong.en


@pytest.mark.mqtt
@pytest.mark.tesseract
@pytest.mark.slow
@pytest.mark.parametrize("failure", ["gateway killed", "bucket over quota"])
def test_the_gateway_killed_while_a_station_syncs_loses_nothing(
    failure: str, tmp_path: Path, s3_server: CephS3
) -> None:
    """The real station and server: page 1 archived; the gateway SIGKILLed (or the bucket
    capped by a quota, as an operator does with radosgw-admin); page 2 synced meanwhile (the
    server tells the station to retry later, no receipt goes out); the gateway restarted (the
    quota lifted): the station's re-sends complete by themselves, every part once, verified."""
    incoming = tmp_path / "in"
    incoming.mkdir()
    bucket = s3_server.new_bucket()
    broker = Broker(tmp_path / "broker").start()
    server = ServerProcess(
        tmp_path / "server",
        broker.url,
        settings={
            "SOHOA_STORE_URL": s3_server.url(bucket),
            "SOHOA_RETRY_AFTER_S": "2",
            **s3_server.env(),
        },
    )
    db_file = tmp_path / "server" / "archive.sqlite3"

    def sql(query: str) -> list[Any]:
        db = Database(db_file)
        try:
            return list(db.read().execute(query).fetchall())
        finally:
            db.close()

    env = agent_env(tmp_path / "agent", broker.url, SOHOA_SYNC_MASTERS="true")
    sync: subprocess.Popen[str] | None = None
    try:
        server.start()
        draw_page(PAGES[1], incoming / "trang-01.png")
        run_agent(env, "import", str(incoming), check=True)
        run_agent(env, "sync", "--wait", "--timeout", "300", check=True)
        first = sql("SELECT id FROM parts WHERE state = 'committed'")
        assert first
        if failure == "gateway killed":
            s3_server.kill_gateway()
        else:
            s3_server.admin("quota", "set", "--quota-scope=bucket", f"--bucket={bucket}",
                            "--max-objects=0")  # fmt: skip
            s3_server.admin("quota", "enable", "--quota-scope=bucket", f"--bucket={bucket}")
        (incoming / "trang-01.png").unlink()
        draw_page(PAGES[0], incoming / "trang-02.png")
        run_agent(env, "import", str(incoming), check=True)
        sync = subprocess.Popen(
            [str(BIN / "sohoa-agent"), "sync", "--wait", "--timeout", "600"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while not sql("SELECT id FROM alerts WHERE kind = 'archive_cannot_store'"):
            assert time.monotonic() < deadline, "the dead store was never noticed"
            assert sync.poll() is None, "the station finished syncing while the store was dead"
            time.sleep(0.5)
        # Nothing of page 2 was committed while the store was dead.
        assert len(sql("SELECT id FROM parts WHERE state = 'committed'")) == len(first)
        if failure == "gateway killed":
            s3_server.start_gateway()
        else:
            (alert,) = sql("SELECT detail FROM alerts WHERE kind = 'archive_cannot_store'")
            assert objects.CAUSES["quota"][1] in alert["detail"]
            s3_server.admin("quota", "disable", "--quota-scope=bucket", f"--bucket={bucket}")
        out, _ = sync.communicate(timeout=600)
        assert sync.returncode == 0, out
    finally:
        if sync is not None and sync.poll() is None:
            sync.kill()
            sync.wait()
        server.stop()
        broker.stop()
    rows = sql("SELECT path, sha256, state FROM parts")
    assert len(rows) > len(first) and all(r["state"] == "committed" for r in rows)
    assert len({r["path"] for r in rows}) == len(rows)  # one object per part
    objects.register(bucket, s3_server.client())
    for row in rows:
        assert objects.sha256(row["path"]) == row["sha256"], row["path"]
    assert len(s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]) == len(rows)


# -- failures an operator meets: quota, keys changed, bucket gone --------------------------------


class StationLink:
    """Stands in for paho's client in IngestWorker: what the worker publishes (decoded)
    and acknowledges, as the station would receive it."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.acked = 0

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.sent.append(envelope.decode(payload).message)

    def ack(self, mid: int, qos: int) -> None:
        self.acked += 1


def _through_worker(worker: IngestWorker, link: StationLink, batch: BatchSrc) -> list[Any]:
    """The station sends everything it holds of ``batch``; the worker handles it in groups
    as it does on the broker's deliveries; what the station hears back."""
    start = len(link.sent)
    messages = as_messages(batch, [batch.manifest(), *batch.all_chunks(30_000)])
    for mid, (topic, payload) in enumerate(messages, start=1):
        worker._on_message(link, None, _Delivered(topic, payload, mid))  # type: ignore[arg-type]
    while group := worker._take():
        worker._process(group)
    return link.sent[start:]


def _stored_again(server: Server, worker: IngestWorker, link: StationLink, batch: BatchSrc) -> None:
    """The station's next send of ``batch`` is stored whole, and staff were told the archive
    stores again after it could not."""
    heard = _through_worker(worker, link, batch)
    committed = Counter((s.page_id, s.part) for m in heard if isinstance(m, Receipt)
                        for s in m.committed)  # fmt: skip
    assert committed == Counter((p.page_id, n) for p in batch.pages for n in p.parts)
    assert [a["kind"] for a in server.alerts()] == ["archive_cannot_store", "archive_stores_again"]


@dataclass
class _Delivered:
    topic: str
    payload: bytes
    mid: int
    qos: int = 1


def _break(
    cause: str,
    s3: CephS3,
    uid: str,
    bucket: str,
    access: str,
    secret: str,
    clock: pytest.MonkeyPatch,
) -> None:
    if cause == "clock":  # the server's clock 20 minutes fast (a power cut, no time sync)
        import botocore.auth

        now = botocore.auth.get_current_datetime
        clock.setattr(botocore.auth, "get_current_datetime", lambda: now() + timedelta(minutes=20))
    elif cause == "quota":  # as an operator caps a bucket: it holds what it holds, no more
        s3.admin("quota", "set", "--quota-scope=bucket", f"--bucket={bucket}", "--max-objects=0")
        s3.admin("quota", "enable", "--quota-scope=bucket", f"--bucket={bucket}")
    elif cause == "keys":  # the gateway's admin rotated the secret under the server
        s3.admin("key", "create", f"--uid={uid}", "--key-type=s3", f"--access-key={access}",
                 "--secret-key=" + "0" * 40)  # fmt: skip
    else:  # the bucket is gone
        s3.client(access, secret).delete_bucket(Bucket=bucket)


def _fix(
    cause: str,
    s3: CephS3,
    bucket: str,
    credentials: Path,
    access: str,
    secret: str,
    clock: pytest.MonkeyPatch,
) -> None:
    if cause == "clock":  # time synchronisation turned on
        clock.undo()
    elif cause == "quota":
        s3.admin("quota", "disable", "--quota-scope=bucket", f"--bucket={bucket}")
    elif cause == "keys":  # the new keys put where the server reads them; no restart
        (credentials / "s3-secret-access-key").write_text("0" * 40 + "\n")
    else:
        s3.client(access, secret).create_bucket(Bucket=bucket)


@pytest.mark.parametrize("cause", ["quota", "keys", "no_bucket", "clock"])
def test_the_store_refusing_is_met_once_and_ingest_resumes_by_itself(
    cause: str,
    tmp_path: Path,
    s3_server: CephS3,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    """The bucket over its quota (403 QuotaExceeded), the keys changed under the server
    (SignatureDoesNotMatch), the bucket missing (NoSuchBucket), the server's clock 20 minutes
    off the gateway's (RequestTimeTooSkewed), on the real gateway: nothing
    is receipted, the station is told to retry later, staff get one alert and the log one
    line naming the cause (Vietnamese and English), doctor says what is wrong; once the
    cause is fixed the station's next re-send is stored, with no restart."""
    uid, access, secret = s3_server.new_user()
    bucket = f"sohoa-fail-{uid}"
    s3_server.client(access, secret).create_bucket(Bucket=bucket)
    credentials = tmp_path / "credentials"  # as /etc/sohoa/credentials, read by name
    credentials.mkdir()
    (credentials / "s3-access-key-id").write_text(access + "\n")
    (credentials / "s3-secret-access-key").write_text(secret + "\n")
    monkeypatch.delenv("SOHOA_S3_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("SOHOA_S3_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    settings = ServerSettings(
        data_dir=tmp_path, store_url=s3_server.url(bucket), ingest=False, retry_after_s=5
    )
    server = Server(tmp_path, tmp_path / "db" / "archive.sqlite3")
    store = objects.store_for(settings)
    server.ingest = Ingest(server.db, store, accept_unenrolled=True)
    worker = IngestWorker(settings, server.ingest)
    link = StationLink()
    worker._client = link  # type: ignore[assignment]  (as tests/test_ingest.py's worker test)
    batch = make_batch(3, random.Random(30), sizes={"text": 700, "capture": 2 * PART_BYTES})
    clock = pytest.MonkeyPatch()  # the server's clock, apart from the test's other patches
    request.addfinalizer(clock.undo)
    _break(cause, s3_server, uid, bucket, access, secret, clock)
    code = {
        "quota": "QuotaExceeded",
        "keys": "SignatureDoesNotMatch",
        "clock": "RequestTimeTooSkewed",
    }.get(cause, "NoSuchBucket")

    caplog.set_level("INFO")
    for _ in (1, 2):  # the station sends, waits as told, sends everything again
        heard = _through_worker(worker, link, batch)
        assert not [m for m in heard if isinstance(m, Receipt)], "receipted on a refusing store"
        told = [m for m in heard if isinstance(m, Reject)]
        assert told and {m.reason for m in told} == {"retry_later"}
        assert all(m.retry_after == 5 for m in told)
        assert not server.sql("SELECT id FROM parts WHERE state = 'committed'")
    assert link.acked > 0
    # One alert for staff, naming the cause in both languages; one log line, not one a page.
    (alert,) = server.alerts()
    assert alert["kind"] == "archive_cannot_store"
    assert (
        objects.CAUSES[cause][0] in alert["detail"] and objects.CAUSES[cause][1] in alert["detail"]
    )
    loud = [
        r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("server")
    ]
    assert len(loud) == 1, [r.getMessage()[:200] for r in loud]
    assert f"({code})" in loud[0].getMessage() and "Traceback" not in caplog.text
    assert worker.trouble is not None and objects.CAUSES[cause][1] in worker.trouble
    # The administrator asks: doctor says what is wrong, in Vietnamese and English.
    finding = doctor.check_object_store(settings)
    assert finding.level == "fail"
    assert objects.CAUSES[cause][0] in finding.vi and objects.CAUSES[cause][1] in finding.en
    assert secret not in finding.en + finding.vi

    _fix(cause, s3_server, bucket, credentials, access, secret, clock)
    assert doctor.check_object_store(settings).level == "ok"
    heard = _through_worker(worker, link, batch)  # the station's next re-send, by itself
    committed = Counter((s.page_id, s.part) for m in heard if isinstance(m, Receipt)
                        for s in m.committed)  # fmt: skip
    assert committed == Counter((p.page_id, n) for p in batch.pages for n in p.parts)
    assert [a["kind"] for a in server.alerts()] == ["archive_cannot_store", "archive_stores_again"]
    assert worker.trouble is None
    for page in batch.pages:
        for name, data in page.parts.items():
            row = server.part_row(page, name)
            assert objects.sha256(row["path"]) == sha(data)
    server.db.close()


def test_parts_below_the_stores_minimum_are_named_and_the_capture_stored_once_fixed(
    s3a: S3Archive,
) -> None:
    """part_bytes= set below what the store takes for a multipart part (AWS and a default
    Ceph: 5 MiB; the test gateway: 64 KiB): the gateway refuses the upload at its end
    (EntityTooSmall). The cause names part_bytes; nothing is committed; with part_bytes
    raised (and a restart), the station's next send of the capture is stored."""
    import dataclasses

    small = dataclasses.replace(s3a.store.target, part_bytes=PART_BYTES // 4)
    s3a.store.target = small
    batch = make_batch(1, random.Random(41), sizes={"text": 700, "capture": 2 * PART_BYTES})
    page = batch.pages[0]
    out, last = _all_but_the_last(s3a, batch, "capture", 30_000)
    with pytest.raises(objects.ObjectStoreError) as refused:
        s3a.server.chunk(last)
    assert refused.value.cause == "part_size", refused.value
    assert "part_bytes" in refused.value.en and "part_bytes" in refused.value.vi
    assert (page.page_id, "capture") not in s3a.locations()
    s3a.store.target = dataclasses.replace(small, part_bytes=PART_BYTES)
    out = []
    for payload in batch.chunks(page, "capture", 30_000):
        out += s3a.server.chunk(payload)
    assert [s.part for r in receipts(out) for s in r.committed] == ["capture"]
    location = s3a.locations()[(page.page_id, "capture")]
    assert objects.sha256(location) == sha(page.parts["capture"])


@pytest.fixture
def quirky(s3_server: CephS3) -> Iterator[QuirkyStore]:
    proxy = QuirkyStore(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, "default")
    yield proxy.start()
    proxy.stop()


def test_a_store_that_refuses_the_checksum_header_takes_the_archive_without_it(
    tmp_path: Path,
    s3_server: CephS3,
    quirky: QuirkyStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Backblaze B2 and OVH refuse ``x-amz-checksum-sha256`` (400 InvalidArgument) where
    Ceph ignores it. The first PUT refused so is sent again without it, and the bucket's
    later PUTs go without it: every part committed, verified, one warning."""
    quirky.refuses_checksum_header = True
    url = quirky.url_for(s3_server.url(s3_server.new_bucket()))
    server, settings = _archive_at(tmp_path, s3_server, monkeypatch, url)
    batch = make_batch(3, random.Random(38), sizes={"text": 700, "capture": 2 * PART_BYTES})
    with caplog.at_level(logging.WARNING, logger="server.store.objects"):
        out = _sent(server, batch)
    assert not rejects(out)
    committed = Counter((s.page_id, s.part) for r in receipts(out) for s in r.committed)
    assert committed == Counter((p.page_id, n) for p in batch.pages for n in p.parts)
    assert len(quirky.refused) == 1 and "InvalidArgument" in quirky.refused[0]
    said = [r.getMessage() for r in caplog.records if "x-amz-checksum-sha256" in r.getMessage()]
    assert len(said) == 1 and "Unsupported header" in said[0]
    for page in batch.pages:
        for name, data in page.parts.items():
            assert objects.sha256(server.part_row(page, name)["path"]) == sha(data)
    assert doctor.check_object_store(settings).level == "ok"
    server.db.close()


def test_a_full_store_is_named_and_ingest_resumes_by_itself_once_it_has_room(
    tmp_path: Path,
    s3_server: CephS3,
    quirky: QuirkyStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A store out of space (MinIO: 507 XMinioStorageFull on every write; reads answer) is
    not "cannot be reached": staff, the log and doctor hear that it is full; nothing is
    receipted; once it has room, the station's next send is stored, with no restart."""
    url = quirky.url_for(s3_server.url(s3_server.new_bucket()))
    server, settings = _archive_at(tmp_path, s3_server, monkeypatch, url)
    worker = IngestWorker(settings, server.ingest)
    link = StationLink()
    worker._client = link  # type: ignore[assignment]
    batch = make_batch(2, random.Random(42), sizes={"text": 700, "capture": 2 * PART_BYTES})
    quirky.full = True
    caplog.set_level("INFO")
    heard = _through_worker(worker, link, batch)
    assert quirky.refused, "nothing was refused: the test tests nothing"
    assert not [m for m in heard if isinstance(m, Receipt)]
    assert {m.reason for m in heard if isinstance(m, Reject)} == {"retry_later"}
    (alert,) = server.alerts()
    assert objects.CAUSES["full"][0] in alert["detail"]
    assert objects.CAUSES["full"][1] in alert["detail"]
    loud = [
        r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("server")
    ]
    assert len(loud) == 1 and "XMinioStorageFull" in loud[0].getMessage()
    finding = doctor.check_object_store(settings)
    assert finding.level == "fail" and objects.CAUSES["full"][1] in finding.en

    quirky.full = False  # disks added
    assert doctor.check_object_store(settings).level == "ok"
    _stored_again(server, worker, link, batch)
    server.db.close()


def test_a_store_in_another_region_that_names_it_as_aws_does_is_followed(
    tmp_path: Path, s3_server: CephS3, quirky: QuirkyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS refuses a request signed for another region and names the right one in a
    ``<Region>`` element: the S3 client signs again for it (botocore's region redirect),
    and the archive is stored with no change to store_url."""
    quirky.region, quirky.region_element = "vn-north-1", True
    url = quirky.url_for(s3_server.url(s3_server.new_bucket()))
    server, settings = _archive_at(tmp_path, s3_server, monkeypatch, url)
    batch = make_batch(2, random.Random(40), sizes={"text": 700, "capture": 2 * PART_BYTES})
    out = server.manifest(batch)
    for payload in batch.all_chunks(30_000):
        out += server.chunk(payload)
    assert quirky.refused, "nothing was refused: the test tests nothing"
    committed = Counter((s.page_id, s.part) for r in receipts(out) for s in r.committed)
    assert committed == Counter((p.page_id, n) for p in batch.pages for n in p.parts)
    assert doctor.check_object_store(settings).level == "ok"
    server.db.close()


def test_a_store_in_another_region_is_named_and_taken_once_store_url_says_it(
    tmp_path: Path,
    s3_server: CephS3,
    quirky: QuirkyStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """MinIO with a region set, Garage and others refuse a request signed for another
    region (AuthorizationHeaderMalformed) and name the right one only in the message: an
    operator who left ``region=`` out of store_url hears which region, from doctor, the log
    and the staff alert; nothing is receipted. With the region in store_url (and a
    restart), the station's next send is stored."""
    quirky.region = "vn-north-1"
    url = quirky.url_for(s3_server.url(s3_server.new_bucket()))
    assert "region=default" in url
    server, settings = _archive_at(tmp_path, s3_server, monkeypatch, url)
    finding = doctor.check_object_store(settings)
    assert finding.level == "fail"
    assert objects.CAUSES["region"][0] in finding.vi and objects.CAUSES["region"][1] in finding.en
    assert "expecting 'vn-north-1'" in finding.en
    worker = IngestWorker(settings, server.ingest)
    link = StationLink()
    worker._client = link  # type: ignore[assignment]
    batch = make_batch(2, random.Random(39), sizes={"text": 700, "capture": 2 * PART_BYTES})
    caplog.set_level("INFO")
    heard = _through_worker(worker, link, batch)
    assert not [m for m in heard if isinstance(m, Receipt)]
    assert {m.reason for m in heard if isinstance(m, Reject)} == {"retry_later"}
    (alert,) = server.alerts()
    assert objects.CAUSES["region"][1] in alert["detail"]
    loud = [
        r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("server")
    ]
    assert len(loud) == 1 and "vn-north-1" in loud[0].getMessage()
    assert not server.sql("SELECT id FROM parts WHERE state = 'committed'")

    settings = ServerSettings(
        data_dir=tmp_path,
        store_url=url.replace("region=default", "region=vn-north-1"),
        ingest=False,
        retry_after_s=5,
    )  # the operator's fix, and a restart: a new store and worker
    assert doctor.check_object_store(settings).level == "ok"
    server.ingest = Ingest(server.db, objects.store_for(settings), accept_unenrolled=True)
    worker = IngestWorker(settings, server.ingest)
    worker._client = link  # type: ignore[assignment]
    heard = _through_worker(worker, link, batch)
    committed = Counter((s.page_id, s.part) for m in heard if isinstance(m, Receipt)
                        for s in m.committed)  # fmt: skip
    assert committed == Counter((p.page_id, n) for p in batch.pages for n in p.parts)
    server.db.close()


def test_a_gateway_that_stops_answering_costs_the_ingest_one_wait_not_one_a_message(
    tmp_path: Path, s3_server: CephS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway stopped (SIGSTOP) while a station sends a batch. Before, every upload
    waited its timeout three times, then again for each message of the group handled one
    by one: over 5 minutes of the ingest thread (which handles every station's status too)
    for 3 pages. Now the first upload's wait makes the bucket silent: the rest of the batch,
    and a second send, are told retry_later without a request to the gateway; one alert,
    one log line; when the gateway answers again the station's next send is stored."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    bucket = s3_server.new_bucket()
    url = s3_server.url(bucket) + "&timeout=2"  # each try waits 2 s, not 60
    settings = ServerSettings(data_dir=tmp_path, store_url=url, ingest=False, retry_after_s=5)
    server = Server(tmp_path, tmp_path / "db" / "archive.sqlite3")
    store = objects.store_for(settings)
    assert isinstance(store, objects.ObjectStore)
    server.ingest = Ingest(server.db, store, accept_unenrolled=True)
    worker = IngestWorker(settings, server.ingest)
    link = StationLink()
    worker._client = link  # type: ignore[assignment]  (as the refusal test's worker)
    asked: list[str] = []
    store.client.meta.events.register("before-send.s3", lambda **kw: asked.append("s3"))
    batch = make_batch(3, random.Random(33), sizes={"text": 700, "capture": 2 * PART_BYTES})
    gateway = s3_server.procs["rgw"]

    gateway.send_signal(signal.SIGSTOP)
    try:
        heard = _through_worker(worker, link, batch)
        assert not [m for m in heard if isinstance(m, Receipt)]
        assert {m.reason for m in heard if isinstance(m, Reject)} == {"retry_later"}
        # One upload's tries (3), not one upload's per message of the batch.
        assert 1 <= len(asked) <= 3, len(asked)
        before = len(asked)
        heard = _through_worker(worker, link, batch)  # the station sends again, too soon
        assert {m.reason for m in heard if isinstance(m, Reject)} == {"retry_later"}
        assert len(asked) == before, "a silent gateway was asked again by the ingest"
        assert worker.trouble is not None and objects.CAUSES["unreachable"][1] in worker.trouble
        assert [a["kind"] for a in server.alerts()] == ["archive_cannot_store"]
    finally:
        gateway.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 60  # the store is asked every PROBE_EVERY_S
    while (bucket, "write") in objects._silent_since and time.monotonic() < deadline:
        time.sleep(0.5)
    assert (bucket, "write") not in objects._silent_since
    _stored_again(server, worker, link, batch)
    server.db.close()


def test_an_https_gateway_is_trusted_through_its_ca_and_only_so(
    tmp_path: Path, s3_server: CephS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A province's gateway behind TLS with its own CA. The attack first: a server that
    does not know the CA sends nothing (not even the keys' signature) and says why —
    the certificate, not "cannot be reached" — to the station (retry_later), the alert and
    doctor. With the CA added as a Debian administrator adds one (update-ca-certificates:
    the system's bundle, which botocore ignores by default), or named by ``ca=``, parts are
    stored over HTTPS and read back verified."""
    ca, certificate, key = _tls_files(tmp_path / "tls")
    endpoint = s3_server.start_tls_gateway(certificate, key)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    bucket = s3_server.new_bucket()
    url = f"s3://{bucket}/archive?endpoint={endpoint}&region=default&part_bytes={PART_BYTES}"
    batch = make_batch(2, random.Random(34), sizes={"text": 700, "capture": 2 * PART_BYTES})

    def through(folder: str, store_url: str) -> tuple[Server, IngestWorker, list[Any]]:
        settings = ServerSettings(
            data_dir=tmp_path / folder, store_url=store_url, ingest=False, retry_after_s=5
        )
        server = Server(tmp_path / folder, tmp_path / folder / "archive.sqlite3")
        server.ingest = Ingest(server.db, objects.store_for(settings), accept_unenrolled=True)
        worker = IngestWorker(settings, server.ingest)
        link = StationLink()
        worker._client = link  # type: ignore[assignment]
        return server, worker, _through_worker(worker, link, batch)

    # The CA unknown (the system's bundle as Debian ships it).
    server, worker, heard = through("untrusted", url)
    assert not [m for m in heard if isinstance(m, Receipt)]
    assert {m.reason for m in heard if isinstance(m, Reject)} == {"retry_later"}
    assert worker.trouble is not None and objects.CAUSES["tls"][1] in worker.trouble
    (alert,) = server.alerts()
    assert objects.CAUSES["tls"][0] in alert["detail"]
    finding = doctor.check_object_store(
        ServerSettings(data_dir=tmp_path / "untrusted", store_url=url, ingest=False)
    )
    assert finding.level == "fail" and objects.CAUSES["tls"][1] in finding.en
    assert "Contents" not in s3_server.client().list_objects_v2(Bucket=bucket)
    server.db.close()

    # The CA added to the system's bundle, as update-ca-certificates does.
    bundle = tmp_path / "ca-certificates.crt"
    bundle.write_bytes(Path(objects.SYSTEM_CAS).read_bytes() + ca.read_bytes())
    monkeypatch.setattr(objects, "SYSTEM_CAS", str(bundle))
    server, worker, heard = through("system", url)
    committed = {(s.page_id, s.part) for m in heard if isinstance(m, Receipt) for s in m.committed}
    assert committed == {(p.page_id, n) for p in batch.pages for n in p.parts}
    server.db.close()
    monkeypatch.undo()  # the system's bundle as shipped again

    # The CA named in the store URL; a CA file that is not there is named as such.
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    server, worker, heard = through("named", f"{url}&ca={ca}")
    committed = {(s.page_id, s.part) for m in heard if isinstance(m, Receipt) for s in m.committed}
    assert committed == {(p.page_id, n) for p in batch.pages for n in p.parts}
    for page in batch.pages:  # read back through the HTTPS gateway, re-hashed here
        for part, data in page.parts.items():
            location = server.part_row(page, part)["path"]
            assert location.startswith(f"s3://{bucket}/archive/")
            assert objects.sha256(location) == sha(data)
    server.db.close()
    with pytest.raises(objects.ObjectStoreError) as missing:
        objects.store_for(
            ServerSettings(
                data_dir=tmp_path / "named",
                store_url=f"{url}&ca={tmp_path}/no-such-ca.pem",
                ingest=False,
            )
        )
    assert missing.value.cause == "tls" and "no-such-ca.pem" in str(missing.value)


def test_uploads_that_get_no_answer_silence_uploads_only(
    s3a: S3Archive, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A full Ceph cluster blocks every write and still serves every read. Here the
    gateway's writes are made to time out (botocore's own ReadTimeoutError, raised for each
    PUT and multipart part before it is sent: the gateway stays real for everything else):
    uploads fall silent and the station is told retry_later, while staff go on reading the
    pages already stored; once writes are answered again (the probe is a small write), the
    re-send is stored."""
    from botocore.exceptions import ReadTimeoutError

    monkeypatch.setattr(objects, "PROBE_EVERY_S", 0.5)
    first = make_batch(1, random.Random(36), sizes={"text": 700})
    assert receipts(_deliver(s3a, first, 40_000))
    stored = s3a.locations()[(first.pages[0].page_id, "text")]

    def full(**kwargs: Any) -> None:
        raise ReadTimeoutError(endpoint_url="(a full cluster)")

    writes = s3a.store.client.meta.events
    for op in ("PutObject", "UploadPart", "CreateMultipartUpload"):
        writes.register(f"before-send.s3.{op}", full)
    batch = make_batch(2, random.Random(37), sizes={"text": 700, "capture": 2 * PART_BYTES})
    settings = ServerSettings(data_dir=tmp_path, ingest=False, retry_after_s=5)
    worker = IngestWorker(settings, s3a.server.ingest)
    link = StationLink()
    worker._client = link  # type: ignore[assignment]  (as the refusal test's worker)
    try:
        heard = _through_worker(worker, link, batch)
        assert not [m for m in heard if isinstance(m, Receipt)]
        assert {m.reason for m in heard if isinstance(m, Reject)} == {"retry_later"}
        assert (s3a.bucket, "write") in objects._silent_since
        assert (s3a.bucket, "read") not in objects._silent_since
        assert objects.read_bytes(stored) == first.pages[0].parts["text"]  # staff still read
        time.sleep(2)  # probes that meet the full cluster keep the silence
        assert (s3a.bucket, "write") in objects._silent_since
    finally:
        for op in ("PutObject", "UploadPart", "CreateMultipartUpload"):
            writes.unregister(f"before-send.s3.{op}", full)
    deadline = time.monotonic() + 30
    while (s3a.bucket, "write") in objects._silent_since and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (s3a.bucket, "write") not in objects._silent_since
    heard = _through_worker(worker, link, batch)
    committed = Counter((x.page_id, x.part) for m in heard if isinstance(m, Receipt)
                        for x in m.committed)  # fmt: skip
    assert committed == Counter((p.page_id, n) for p in batch.pages for n in p.parts)


# -- the objects backed up to a second store and brought back (server.store.offsite) ------------


@pytest.mark.slow
def test_backup_and_restore_of_objects_stopped_by_a_dead_gateway_go_on_verified(
    s3a: S3Archive, tmp_path: Path
) -> None:
    """The copy to the backup store is cut by the gateway's death, then run again: it goes
    on, copies nothing twice, and an object that rotted in the archive's bucket is named,
    not copied. The restore into an emptied bucket, cut the same way, goes on the same."""
    batch = make_batch(3, random.Random(31), sizes={"text": 700, "capture": 2 * PART_BYTES})
    _deliver(s3a, batch, 40_000)
    other = make_batch(1, random.Random(32), sizes={"text": 700})  # another commune's
    other.device = "xa-khac-02"
    s3a.server.manifest(other)
    for payload in other.all_chunks(40_000):
        s3a.server.chunk(payload, other.device)
    where = s3a.locations()
    assert len(where) == 7
    offsite_bucket = s3a.s3.new_bucket()
    target = objects.Target.parse(s3a.s3.url(offsite_bucket, "du-phong"))
    creds = objects.Credentials(s3a.s3.access_key, s3a.s3.secret_key)
    backup = objects.ObjectStore(
        tmp_path / "backup-staging", target, objects.make_client(target, creds), reader=False
    )
    # Bit rot in the archive's bucket (its label says the right sha256): never copied.
    rotten = where[(batch.pages[2].page_id, "text")]
    _, rotten_key = objects.split_location(rotten) or ("", "")
    good = batch.pages[2].parts["text"]
    client: Any = s3a.s3.client()
    client.put_object(Bucket=s3a.bucket, Key=rotten_key, Body=b"X" + good[1:],
                      Metadata={"sha256": sha(good)})  # fmt: skip
    puts = 0

    def kill_at_the_third_put(**_: object) -> None:
        nonlocal puts
        puts += 1
        if puts == 3:
            s3a.s3.kill_gateway()

    events = backup.client.meta.events
    events.register("before-send.s3.PutObject", kill_at_the_third_put)
    events.register("before-send.s3.UploadPart", kill_at_the_third_put)
    try:
        with pytest.raises(objects.ObjectStoreError):
            offsite.backup(s3a.server.db, backup, say=lambda line: None)
    finally:
        events.unregister("before-send.s3.PutObject", kill_at_the_third_put)
        events.unregister("before-send.s3.UploadPart", kill_at_the_third_put)
        s3a.s3.start_gateway()
    first = len(_offsite_keys(s3a.s3, offsite_bucket))
    assert 0 < first < 6, "the cut did not fall mid-copy: the test did not test"
    done = offsite.backup(s3a.server.db, backup, say=lambda line: None)
    assert (done.kept, done.copied) == (first, 6 - first)
    assert len(done.damaged) == 1 and rotten in done.damaged[0] and not done.missing
    copies = _offsite_keys(s3a.s3, offsite_bucket)
    assert f"du-phong/{rotten_key}" not in copies and len(copies) == 6
    assert f"du-phong/archive/xa-khac-02/{other.batch_id}/" in "".join(copies)
    for page in batch.pages:
        for name, data in page.parts.items():
            key = objects.split_location(where[(page.page_id, name)])[1]  # type: ignore[index]
            if key != rotten_key:
                stored = client.get_object(Bucket=offsite_bucket, Key=f"du-phong/{key}")
                assert stored["Body"].read() == data

    # The archive's bucket emptied; the restore is cut, then goes on.
    for key in s3a.keys():  # noqa: SIM118 (a method of S3Archive, not a dict)
        client.delete_object(Bucket=s3a.bucket, Key=key)
    puts = 0
    events = s3a.store.client.meta.events
    events.register("before-send.s3.PutObject", kill_at_the_third_put)
    events.register("before-send.s3.UploadPart", kill_at_the_third_put)
    try:
        with pytest.raises(objects.ObjectStoreError):
            offsite.restore(s3a.server.db, s3a.store, backup, say=lambda line: None)
    finally:
        events.unregister("before-send.s3.PutObject", kill_at_the_third_put)
        events.unregister("before-send.s3.UploadPart", kill_at_the_third_put)
        s3a.s3.start_gateway()
    back = offsite.restore(s3a.server.db, s3a.store, backup, say=lambda line: None)
    assert back.kept + back.copied == 6 and 0 < back.kept < 6
    (gone,) = back.missing
    assert gone.startswith(f"part {_pk(s3a, rotten)}: ") and f"du-phong/{rotten_key}" in gone
    report = fixity.check_store(s3a.server.db)
    assert [c.path for c in report.damaged] == [rotten] and report.checked == 7


def _offsite_keys(s3: CephS3, bucket: str) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def _pk(s3a: S3Archive, location: str) -> int:
    (row,) = s3a.server.sql("SELECT id FROM parts WHERE path = ?", location)
    return int(row["id"])


def test_readers_take_the_keys_changed_under_them_without_a_restart(
    tmp_path: Path, s3_server: CephS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A web process (no ingest) reads parts with the keys it started with; the gateway's
    admin rotates the secret: reads are refused until the new keys are put in the
    credentials directory, then they work again in the same process."""
    uid, access, secret = s3_server.new_user()
    bucket = f"sohoa-read-{uid}"
    client: Any = s3_server.client(access, secret)
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="archive/xa/b/0001-p.text.txt", Body=b"trang mot")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "s3-access-key-id").write_text(access + "\n")
    (credentials / "s3-secret-access-key").write_text(secret + "\n")
    monkeypatch.delenv("SOHOA_S3_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("SOHOA_S3_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    objects.connect(ServerSettings(data_dir=tmp_path, store_url=s3_server.url(bucket)))
    location = f"s3://{bucket}/archive/xa/b/0001-p.text.txt"
    assert objects.read_bytes(location) == b"trang mot"
    s3_server.admin("key", "create", f"--uid={uid}", "--key-type=s3", f"--access-key={access}",
                    "--secret-key=" + "1" * 40)  # fmt: skip
    with pytest.raises(objects.ObjectStoreError) as refused:
        objects.read_bytes(location)
    assert refused.value.cause == "keys"
    with pytest.raises(objects.ObjectStoreError):
        objects.size(location)
    (credentials / "s3-secret-access-key").write_text("1" * 40 + "\n")
    assert objects.size(location) == 9
    assert objects.read_bytes(location) == b"trang mot"
