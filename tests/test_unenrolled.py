"""A device the fleet registry does not know is refused by the ingest, whatever the broker.

Under dynamic security such a device cannot connect; through the anonymous test broker, a
legacy password file or a mis-made identity it could, and its manifests and chunks were
stored (issue #14). Each test plays the stranger first, then checks the invariant: nothing
of the stranger's stored, everything of the enrolled station's stored, one log line."""

from __future__ import annotations

import logging
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from harness import Broker, ServerProcess, enrol_offline, pinned_archive_key
from paho.mqtt.enums import CallbackAPIVersion
from test_ingest import BatchSrc, make_batch

from protocol import envelope, signing, topics
from protocol.messages import Manifest, Reject, Status
from server.fleet import registry
from server.ingest import Ingest
from server.store.db import Database
from server.store.files import Store

STRANGER = "xa-stranger"
KNOWN = "xa-known"


def _signed_manifest(batch: BatchSrc, key_file: Path) -> bytes:
    """The manifest as an enrolled agent sends it: signed with its station key."""
    msg = envelope.decode(batch.manifest()).message
    assert isinstance(msg, Manifest)
    key = signing.private_key_from_bytes(key_file.read_bytes())
    return envelope.encode(msg.model_copy(update={"signature": signing.sign(msg, key)}))


def _status(device: str) -> bytes:
    msg = Status(device_id=device, msg_id="a" * 32, sent_at=time.time(), state="online")
    return envelope.encode(msg)


def _stranger_messages() -> tuple[BatchSrc, list[tuple[str, bytes]]]:
    batch = make_batch(1, random.Random(7))
    batch.device = STRANGER
    msgs = [(topics.up(STRANGER, "manifest"), batch.manifest())]
    msgs += [(topics.up(STRANGER, "chunk"), c) for c in batch.all_chunks(64 * 1024)]
    msgs.append((topics.status(STRANGER), _status(STRANGER)))
    return batch, msgs


def _rows(db: Database, sql: str, *args: object) -> list[tuple[object, ...]]:
    return [tuple(r) for r in db.read().execute(sql, args).fetchall()]


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[tuple[Database, Store, Path]]:
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    enrol_offline(server_dir, tmp_path / "agent", KNOWN)
    db = Database(server_dir / "archive.sqlite3")
    yield db, Store(server_dir / "store"), tmp_path / "agent" / "enrolment" / "station.key"
    db.close()


def test_a_stranger_is_refused_and_an_enrolled_station_is_stored(
    archive: tuple[Database, Store, Path], caplog: pytest.LogCaptureFixture
) -> None:
    db, store, key_file = archive
    key = signing.new_key()
    ingest = Ingest(db, store, signing_key=key)
    batch, stranger = _stranger_messages()
    known = make_batch(1, random.Random(8))
    known.device = KNOWN
    ours = [(topics.up(KNOWN, "manifest"), _signed_manifest(known, key_file))]
    ours += [(topics.up(KNOWN, "chunk"), c) for c in known.all_chunks(64 * 1024)]
    with caplog.at_level(logging.WARNING, logger="server.ingest.core"):
        results = ingest.handle_many(stranger + ours)
    assert all(r.error is None for r in results)
    # Nothing of the stranger's: no batch, no part, not even a devices row from its status.
    assert _rows(db, "SELECT batch_id FROM batches WHERE device_id = ?", STRANGER) == []
    assert _rows(db, "SELECT device_id FROM devices WHERE device_id = ?", STRANGER) == []
    # One line in the log for all its messages, naming it and what to do.
    lines = [r.getMessage() for r in caplog.records if STRANGER in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"refused {len(stranger)} message(s)" in lines[0] and "device add" in lines[0]
    # One signed reject, to its first message.
    replies = [o for r in results[: len(stranger)] for o in r.replies]
    assert [o.topic for o in replies] == [topics.down(STRANGER, "reject")]
    reject = envelope.decode(replies[0].payload).message
    assert isinstance(reject, Reject) and reject.reason == "refused"
    assert signing.verify(reject, reject.signature, signing.public_key_hex(key))
    # The enrolled station in the same group: all of it stored.
    committed = "SELECT COUNT(*) FROM parts JOIN pages ON pages.id = parts.page_pk"
    committed += " WHERE pages.device_id = ? AND parts.state = 'committed'"
    pages = _rows(db, committed, KNOWN)
    assert pages == [(sum(len(p.parts) for p in known.pages),)]
    assert batch.batch_id != known.batch_id


def test_pending_and_revoked_stations_are_refused_too(
    archive: tuple[Database, Store, Path],
) -> None:
    db, store, key_file = archive
    registry.issue_code(db, "xa-pending", "Xã Chờ", "", hours=1)
    ingest = Ingest(db, store)
    pending = make_batch(1, random.Random(9))
    pending.device = "xa-pending"
    ingest.handle(topics.up("xa-pending", "manifest"), pending.manifest())
    registry.revoke(db, KNOWN)
    known = make_batch(1, random.Random(10))
    known.device = KNOWN
    ingest.handle(topics.up(KNOWN, "manifest"), _signed_manifest(known, key_file))
    assert _rows(db, "SELECT device_id FROM batches") == []


def test_the_check_is_what_refuses(archive: tuple[Database, Store, Path]) -> None:
    """Control: with the lab setting on, the same stranger's batch is stored. So the
    refusal above comes from the registry check, not from a malformed message."""
    db, store, _ = archive
    batch, stranger = _stranger_messages()
    Ingest(db, store, accept_unenrolled=True).handle_many(stranger)
    assert _rows(db, "SELECT batch_id FROM batches WHERE device_id = ?", STRANGER) == [
        (batch.batch_id,)
    ]


@pytest.mark.mqtt
@pytest.mark.slow
def test_a_stranger_on_the_anonymous_broker_is_refused_by_the_running_server(
    tmp_path: Path,
) -> None:
    """The real server behind the anonymous test broker, where anyone may connect and
    publish under any device id: the stranger's pages are not stored, it hears a signed
    refusal, the log says so in one line; the enrolled station beside it is archived."""
    broker = Broker(tmp_path / "broker").start()
    server = ServerProcess(tmp_path / "server", broker.url, enrolled_only=True)
    agent_dir = tmp_path / "agent"
    try:
        enrol_offline(server.data_dir, agent_dir, KNOWN)
        server.start()
        replies: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=STRANGER,
            protocol=mqtt.MQTTv5,
        )
        subscribed = threading.Event()
        client.on_message = lambda c, u, m: replies.put((m.topic, bytes(m.payload)))
        client.on_subscribe = lambda *a: subscribed.set()
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        client.subscribe(topics.down_filter(STRANGER), qos=1)
        assert subscribed.wait(10)
        batch, stranger = _stranger_messages()
        known = make_batch(1, random.Random(11))
        known.device = KNOWN
        signed = _signed_manifest(known, agent_dir / "enrolment" / "station.key")
        ours = [(topics.up(KNOWN, "manifest"), signed)]
        for topic, payload in stranger + ours:
            client.publish(topic, payload, qos=1).wait_for_publish(10)
        topic, payload = replies.get(timeout=30)
        assert topic == topics.down(STRANGER, "reject")
        reject = envelope.decode(payload).message
        assert isinstance(reject, Reject) and reject.reason == "refused"
        assert signing.verify(reject, reject.signature, pinned_archive_key())
        client.loop_stop()
        client.disconnect()
        # The enrolled station's manifest (sent after the stranger's) is in: the server has
        # handled everything before it.
        con = sqlite3.connect(server.data_dir / "archive.sqlite3")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            known_rows = con.execute(
                "SELECT batch_id FROM batches WHERE device_id = ?", (KNOWN,)
            ).fetchall()
            if known_rows:
                break
            time.sleep(0.2)
        assert known_rows == [(known.batch_id,)]
        assert con.execute("SELECT COUNT(*) FROM batches WHERE device_id = ?",
                           (STRANGER,)).fetchone() == (0,)  # fmt: skip
        assert con.execute("SELECT COUNT(*) FROM devices WHERE device_id = ?",
                           (STRANGER,)).fetchone() == (0,)  # fmt: skip
        con.close()
        log = server.log_path.read_text(errors="replace")
        lines = [ln for ln in log.splitlines() if "refused" in ln and STRANGER in ln]
        assert lines, log[-2000:]
        assert all("not an enrolled station" in ln for ln in lines)
        assert batch.batch_id not in log
    finally:
        server.stop()
        broker.stop()
