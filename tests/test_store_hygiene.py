"""What a crash leaves with the object store, removed without touching what the archive
holds (issue 19): the staging sweep at ``sohoa-server run``'s start-up after a real SIGKILL
mid-ingest, and ``sohoa-server store gc`` on planted orphans and a stale multipart upload.
Real Ceph RADOS Gateway (tests/s3server.py); the crash test also real Mosquitto and the real
``sohoa-server run``."""

from __future__ import annotations

import os
import queue
import random
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from harness import BIN, Broker, ServerProcess
from paho.mqtt.enums import CallbackAPIVersion
from s3server import PART_BYTES, CephS3
from test_ingest import DEVICE, BatchSrc, Server, make_batch, query, sha, uid

from protocol import envelope, topics
from protocol.messages import BatchState, Receipt, Reject
from server.archive import audit
from server.ingest import Ingest
from server.store import hygiene, objects
from server.store.db import Database

pytestmark = pytest.mark.s3

HOUR = 3600.0


def _store(root: Path, s3: CephS3, bucket: str) -> objects.ObjectStore:
    target = objects.Target.parse(s3.url(bucket))
    creds = objects.Credentials(s3.access_key, s3.secret_key)
    return objects.ObjectStore(root / "store-staging", target, objects.make_client(target, creds))


def _cli(tmp_path: Path, s3: CephS3, bucket: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "SOHOA_SERVER_DATA_DIR": str(tmp_path),
        "SOHOA_DATABASE_URL": f"sqlite:///{tmp_path / 'db' / 'archive.sqlite3'}",
        "SOHOA_STORE_URL": s3.url(bucket),
        "PATH": "/usr/bin:/bin",
        **s3.env(),
    }
    return subprocess.run(
        [str(BIN / "sohoa-server"), "store", *args],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _keys(client: Any, bucket: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for p in pages for o in p.get("Contents", []))


def _uploads(client: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def test_store_gc_removes_orphans_and_stale_uploads_never_a_committed_part(
    tmp_path: Path, s3_server: CephS3
) -> None:
    bucket = s3_server.new_bucket()
    server = Server(tmp_path, tmp_path / "db" / "archive.sqlite3")
    store = _store(tmp_path, s3_server, bucket)
    server.store = store
    server.ingest = Ingest(server.db, store, accept_unenrolled=True)
    rng = random.Random(191)
    batch = make_batch(2, rng, sizes={"text": 700, "thumb": 5000, "capture": 2 * PART_BYTES})
    server.manifest(batch)
    for payload in batch.all_chunks(40_000):
        server.chunk(payload)
    states = [r["state"] for r in server.sql("SELECT state FROM parts")]
    assert states == ["committed"] * sum(len(p.parts) for p in batch.pages)
    committed = {
        r["path"]: r["sha256"] for r in server.sql("SELECT path, sha256 FROM parts")
    }  # fmt: skip
    server.db.close()
    client: Any = s3_server.client()
    # What a server killed between upload and COMMIT leaves: an object no part names (as
    # the ingest would have named it), and a multipart upload cut short.
    orphan = f"archive/{DEVICE}/{batch.batch_id}/0003-{uid()}.archival.pdf"
    client.put_object(Bucket=bucket, Key=orphan, Body=b"%PDF-1.7 uploaded, never committed")
    cut = f"archive/{DEVICE}/{batch.batch_id}/0004-{uid()}.capture.png"
    upload = client.create_multipart_upload(Bucket=bucket, Key=cut)["UploadId"]
    client.upload_part(Bucket=bucket, Key=cut, UploadId=upload, PartNumber=1,
                       Body=bytes(PART_BYTES))  # fmt: skip
    outside = "elsewhere/not-the-archive.bin"  # another tenant of the bucket
    client.put_object(Bucket=bucket, Key=outside, Body=b"not ours")
    before = _keys(client, bucket)
    assert len(before) == len(committed) + 2

    # The grace period: everything here is seconds old, so the default (24 h) keeps all.
    young = _cli(tmp_path, s3_server, bucket, "gc")
    assert young.returncode == 0, young.stderr + young.stdout
    assert "0 orphan(s)" in young.stdout and "1 unnamed but younger" in young.stdout
    assert _keys(client, bucket) == before and _uploads(client, bucket) == [cut]

    # --older-than 0: every object is past its grace, committed ones included — what must
    # keep them is the catalogue.
    dry = _cli(tmp_path, s3_server, bucket, "gc", "--dry-run", "--older-than", "0")
    assert dry.returncode == 0, dry.stderr + dry.stdout
    assert f"orphan object {orphan}" in dry.stdout
    assert f"incomplete multipart upload {cut}" in dry.stdout
    assert "would delete 1, would abort 1" in dry.stdout
    assert _keys(client, bucket) == before and _uploads(client, bucket) == [cut]  # untouched

    done = _cli(tmp_path, s3_server, bucket, "gc", "--older-than", "0")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "deleted 1" in done.stdout and "aborted 1" in done.stdout
    after = _keys(client, bucket)
    assert after == sorted(set(before) - {orphan})
    assert _uploads(client, bucket) == []
    objects.register(bucket, client)
    for location, digest in committed.items():
        assert objects.sha256(location) == digest  # every committed part, intact
    db = Database(tmp_path / "db" / "archive.sqlite3")
    try:
        runs = [r for r in audit.recent(db, 50) if r["action"] == "store.gc"]
        assert len(runs) == 3
        assert runs[0]["detail"]["deleted"] == 1 and runs[0]["detail"]["keys"] == [orphan]
    finally:
        db.close()
    # No object store configured: refused in one line.
    env = {"SOHOA_SERVER_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    none = subprocess.run([str(BIN / "sohoa-server"), "store", "gc"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert none.returncode == 78 and "store_url" in none.stderr


def test_an_object_named_meanwhile_is_kept_at_deletion(tmp_path: Path, s3_server: CephS3) -> None:
    """The listing saw an orphan; before the deletion a part was committed at that key (a
    re-sent part whose object verified): the re-check inside the write transaction keeps it."""
    bucket = s3_server.new_bucket()
    db = Database(tmp_path / "db" / "archive.sqlite3")
    store = _store(tmp_path, s3_server, bucket)
    key = f"archive/{DEVICE}/{uid()}/0001-{uid()}.text.txt"
    store.client.put_object(Bucket=bucket, Key=key, Body=b"van ban")
    said: list[str] = []

    def commit_meanwhile(line: str) -> None:
        said.append(line)
        if line.startswith("orphan object"):  # between the listing and the deletion
            with db.tx() as con:
                batch = con.execute(
                    "INSERT INTO batches(device_id, batch_id, created_at, received_at,"
                    " page_count, source, agent_version) VALUES (?, ?, 0, 0, 1, 'scan', '1')"
                    " RETURNING id",
                    (DEVICE, uid()),
                ).fetchone()[0]
                page = con.execute(
                    "INSERT INTO pages(batch_pk, device_id, page_id, page_no, capture_sha256,"
                    " capture_size, dpi, width_px, height_px, colour) VALUES"
                    " (?, ?, ?, 1, '', 0, 300, 1, 1, 1) RETURNING id",
                    (batch, DEVICE, uid()),
                ).fetchone()[0]
                con.execute(
                    "INSERT INTO parts(page_pk, name, sha256, size, media_type, state, path)"
                    " VALUES (?, 'text', ?, 7, 'text/plain', 'committed', ?)",
                    (page, sha(b"van ban"), store.target.location(key)),
                )

    try:
        found = hygiene.collect(db, store, older_than_s=0, delete=True, say=commit_meanwhile)
    finally:
        db.close()
    assert [k for k, _, _ in found.orphans] == [key] and found.deleted == 0
    assert found.kept_at_delete == [key]
    assert _keys(store.client, bucket) == [key]


# -- the staging sweep after a real crash ---------------------------------------------------------


def _station(port: int, events: queue.SimpleQueue[object]) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=DEVICE, protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(100)
    subscribed = threading.Event()
    client.on_message = lambda c, u, msg: events.put(envelope.decode(bytes(msg.payload)).message)
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    client.subscribe(topics.down_filter(DEVICE), qos=1)
    assert subscribed.wait(30)
    return client


def _kept_at_restart(
    store: objects.ObjectStore, final: Path, ranges: list[tuple[int, int]], truth: bytes
) -> bool:
    """Whether a part's recorded chunks are still in its partial file, or the part is whole
    in its staged file (False: neither file is there any more)."""
    try:
        held = store.partial(final).read_bytes()
        return all(held[o : o + n] == truth[o : o + n] for o, n in ranges)
    except FileNotFoundError:
        pass
    try:
        return final.read_bytes() == truth
    except FileNotFoundError:
        return False


def _staged(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _wait(what: str, check: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return found


@pytest.mark.mqtt
@pytest.mark.slow
def test_staging_swept_at_start_after_sigkill_mid_ingest_loses_nothing(
    tmp_path: Path, s3_server: CephS3
) -> None:
    bucket = s3_server.new_bucket()
    broker = Broker(tmp_path / "broker").start()
    data = tmp_path / "server"
    server = ServerProcess(
        data, broker.url, settings={"SOHOA_STORE_URL": s3_server.url(bucket), **s3_server.env()}
    )
    staging = data / "store-staging"
    db_file = data / "archive.sqlite3"

    def sql(query: str) -> list[Any]:
        db = Database(db_file)
        try:
            return list(db.read().execute(query).fetchall())
        finally:
            db.close()

    rng = random.Random(192)
    batch: BatchSrc = make_batch(
        4, rng, sizes={"text": 700, "thumb": 30_000, "capture": 2 * PART_BYTES + 5000}
    )
    events: queue.SimpleQueue[object] = queue.SimpleQueue()
    station = None
    try:
        server.start()
        station = _station(broker.port, events)
        station.publish(topics.up(DEVICE, "manifest"), batch.manifest(), qos=1).wait_for_publish()
        _wait("the batch", lambda: sql("SELECT id FROM batches"))
        # Every part's first half, then each part's whole: some parts commit, others hold
        # recorded chunks in their .partial files when the server dies.
        halves, wholes = [], []
        for page in batch.pages:
            for name in page.parts:
                chunks = batch.chunks(page, name, 8192)
                halves += chunks[: max(1, len(chunks) // 2)]
                wholes += chunks if page.page_no <= 2 else []
        for payload in halves + wholes:
            station.publish(topics.up(DEVICE, "chunk"), payload, qos=1)

        def mid_ingest() -> bool:
            receiving = sql(
                "SELECT COUNT(DISTINCT part_pk) FROM chunks c JOIN parts p ON p.id = c.part_pk"
                " WHERE p.state != 'committed'"
            )[0][0]
            done = sql("SELECT COUNT(*) FROM parts WHERE state = 'committed'")[0][0]
            return bool(receiving >= 2 and done >= 1)

        _wait("parts committed and parts half received", mid_ingest)
        server.kill()  # SIGKILL mid-ingest
    finally:
        if station is not None:
            station.disconnect()
            station.loop_stop()
    rows = sql(
        "SELECT pa.id, p.page_id, pa.name, pa.state, pa.media_type, p.page_no,"
        " (SELECT COUNT(*) FROM chunks c WHERE c.part_pk = pa.id) AS chunks"
        " FROM parts pa JOIN pages p ON p.id = pa.page_pk"
    )
    store = objects.ObjectStore(staging, objects.Target.parse(s3_server.url(bucket)),
                                s3_server.client())  # fmt: skip
    truth = {(p.page_id, name): data for p in batch.pages for name, data in p.parts.items()}
    # A part holding recorded chunks at the kill: its staged files and the chunks' ranges.
    owned: dict[tuple[str, str], tuple[Path, list[tuple[int, int]]]] = {}
    committed_files = set()  # the staged files of parts committed at the kill
    for r in rows:
        final = store.part_path(DEVICE, batch.batch_id, r["page_no"], r["page_id"], r["name"],
                                r["media_type"])  # fmt: skip
        if r["state"] == "committed":
            committed_files |= {final, store.partial(final)}
        elif r["chunks"] and (final.exists() or store.partial(final).exists()):
            ranges = sql(f'SELECT "offset", length FROM chunks WHERE part_pk = {int(r["id"])}')
            owned[(r["page_id"], r["name"])] = (final, [(o, n) for o, n in ranges])
    assert owned, "no part held recorded chunks at the kill: the test did not test"
    owned_files = {p for final, _ in owned.values() for p in (final, store.partial(final))}
    # What a kill at other moments leaves, planted as it would be: the staged copy of a
    # committed part (killed between COMMIT and the removal), and a .partial of a page the
    # catalogue never heard of (killed before the group's COMMIT).
    committed = next(r for r in rows if r["state"] == "committed")
    leftover = store.part_path(
        DEVICE, batch.batch_id, committed["page_no"], committed["page_id"], committed["name"],
        committed["media_type"],
    )  # fmt: skip
    page = next(p for p in batch.pages if p.page_id == committed["page_id"])
    leftover.write_bytes(page.parts[committed["name"]])
    stranger = staging / DEVICE / batch.batch_id / f"0009-{uid()}.thumb.jpg.partial"
    stranger.write_bytes(b"\xff\xd8 half a thumbnail")
    fresh = staging / DEVICE / batch.batch_id / f"0010-{uid()}.thumb.jpg.partial"
    before = _staged(staging)
    old = time.time() - 2 * HOUR
    for p in staging.rglob("*"):
        if p.is_file():
            os.utime(p, (old, old))
    fresh.write_bytes(b"\xff\xd8 written a moment ago")  # younger than the safe age

    try:
        server.start()  # the sweep runs before the ingest starts
        log = server.log_tail(400)
        # The leftovers go, each named in the log, and the sweep removes nothing else but the
        # staged copies of parts committed before the kill.
        assert not leftover.exists() and not stranger.exists() and fresh.exists()
        removed = {line.split("removed ")[1].split(" (")[0] for line in log.splitlines()
                   if "store-staging: removed" in line}  # fmt: skip
        rel = {p.relative_to(staging).as_posix() for p in (leftover, stranger)}
        assert rel <= removed <= rel | {p.relative_to(staging).as_posix() for p in
                                        committed_files}, log  # fmt: skip
        assert removed <= set(before)
        # What a part held at the kill is kept. Chunks the station sent before the kill may
        # still reach the restarted server (the broker keeps its session), so a part may
        # since have taken more chunks, or been completed and committed: its recorded
        # chunks are still in its partial file byte for byte, or it is whole in its staged
        # file, or committed — never lost to the sweep.
        for key, (final, ranges) in owned.items():
            assert _kept_at_restart(store, final, ranges, truth[key]) or _wait(
                f"{key} committed", lambda key=key: sql(
                    "SELECT pa.state FROM parts pa JOIN pages p ON p.id = pa.page_pk WHERE"
                    f" p.page_id = '{key[0]}' AND pa.name = '{key[1]}'")[0][0] == "committed",
                timeout=5,
            ), f"{key}: what it held at the kill is lost"  # fmt: skip
        assert not removed & {p.relative_to(staging).as_posix() for p in owned_files}
        # The station, with no receipt for what was lost in the crash, sends it all again —
        # and, as the agent does, again later what the server asked it to retry (a loaded
        # server says "retry later" rather than queue without bound), and asks what the
        # server holds while receipts are slow: a part committed just before the kill may
        # have had its receipt lost with the server, and a duplicate of a committed part
        # is not receipted again (the agent's query, agent/uplink/sync.py).
        station = _station(broker.port, events)
        chunks_of = {(p.page_id, name): batch.chunks(p, name, 8192)
                     for p in batch.pages for name in p.parts}  # fmt: skip
        parts = set(chunks_of)
        receipted: Counter[tuple[str, str]] = Counter()

        def send(which: set[tuple[str, str]]) -> None:
            assert station is not None
            for key in sorted(which):
                for payload in chunks_of[key]:
                    station.publish(topics.up(DEVICE, "chunk"), payload, qos=1)

        send(parts)
        deadline = time.monotonic() + 300
        resend_at: float | None = None
        ask_at = time.monotonic() + 5.0
        while not parts <= set(receipted):
            assert time.monotonic() < deadline, f"receipts for {len(receipted)} of {len(parts)}"
            if resend_at is not None and time.monotonic() >= resend_at:
                send(parts - set(receipted))
                resend_at = None
            if time.monotonic() >= ask_at:
                topic, ask, _ = query([batch.batch_id])
                station.publish(topic, ask, qos=1)
                ask_at = time.monotonic() + 5.0
            try:
                ev = events.get(timeout=0.5)
            except queue.Empty:
                continue
            assert not isinstance(ev, Reject) or ev.reason == "retry_later", ev
            if isinstance(ev, Reject) and resend_at is None:
                resend_at = time.monotonic() + 2.0
            if isinstance(ev, Receipt):
                receipted.update((s.page_id, s.part) for s in ev.committed)
            if isinstance(ev, BatchState):
                receipted.update((s.page_id, s.part) for s in ev.parts if s.committed)
    finally:
        if station is not None:
            station.disconnect()
            station.loop_stop()
        server.stop()
        broker.stop()
    final_rows = sql("SELECT path, sha256, state FROM parts")
    assert len(final_rows) == len(parts) and {r["state"] for r in final_rows} == {"committed"}
    objects.register(bucket, s3_server.client())
    for row in final_rows:
        assert objects.sha256(row["path"]) == row["sha256"], row["path"]
    assert set(_staged(staging)) == {fresh.relative_to(staging).as_posix()}


def test_a_running_server_sweeps_staging_again_without_a_restart(
    tmp_path: Path, s3_server: CephS3, caplog: pytest.LogCaptureFixture
) -> None:
    """A group whose COMMIT failed leaves its staged files as a kill does; a server that runs
    for months sweeps them on its own schedule, never a young file or a live one."""
    bucket = s3_server.new_bucket()
    db = Database(tmp_path / "archive.sqlite3")
    store = _store(tmp_path, s3_server, bucket)
    folder = store.root / DEVICE / uid()
    folder.mkdir(parents=True)
    stale = folder / f"0001-{uid()}.archival.pdf.partial"  # no part names it
    stale.write_bytes(b"%PDF- half a page")
    old = time.time() - 2 * HOUR
    os.utime(stale, (old, old))
    young = folder / f"0002-{uid()}.archival.pdf.partial"  # an upload in flight
    young.write_bytes(b"%PDF- being written")
    stop = threading.Event()
    sweeper = threading.Thread(
        target=hygiene.sweep_staging_every, args=(db, store, stop, 0.05), daemon=True
    )
    sweeper.start()
    try:
        _wait("the periodic sweep", lambda: not stale.exists(), timeout=60)
        assert young.read_bytes() == b"%PDF- being written"
        # The catalogue unreadable for a moment: the sweep fails, says so, and a later one
        # does the work.
        with db.tx() as con:
            con.execute("ALTER TABLE parts RENAME TO parts_away")
        second = folder / f"0003-{uid()}.thumb.jpg.partial"
        second.write_bytes(b"\xff\xd8 half")
        os.utime(second, (old, old))
        _wait("a failed sweep", lambda: "store-staging sweep failed" in caplog.text, timeout=60)
        assert second.exists() and sweeper.is_alive()
        with db.tx() as con:
            con.execute("ALTER TABLE parts_away RENAME TO parts")
        _wait("the next sweep", lambda: not second.exists(), timeout=60)
        assert young.exists()
    finally:
        stop.set()
        sweeper.join(10)
    assert not sweeper.is_alive()
