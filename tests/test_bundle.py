"""USB bundles for communes with no link at all: `sohoa-agent export` → `sohoa-server
import-bundle` → `sohoa-agent import-receipts`. Real processes for the round trips (the
server never gets a broker: a refused MQTT port proves import-bundle does not need one),
in-process tests for the rules (secret batches, free space, foreign receipts)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from harness import (
    BIN,
    TEST_ARCHIVE_KEY,
    ServerProcess,
    agent_env,
    enrol_offline,
    pinned_archive_key,
    run_agent,
    seed_archive_key,
)
from PIL import Image

from agent.config import AgentSettings
from agent.outbox import outbox as ob
from agent.uplink import bundle, transfer
from protocol import envelope, signing, topics
from protocol.messages import ChunkHeader, PartState, Receipt
from server.archive.catalog import Catalog
from server.ingest import Ingest
from server.ingest import bundle as server_bundle
from server.store.db import Database
from server.store.files import Store

DEVICE = "xa-test-01"
NO_BROKER = "mqtt://127.0.0.1:1"  # nothing listens there


# -- helpers --------------------------------------------------------------------------------------


def _pngs(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, colour in enumerate(["white", "grey", "lightblue", "pink"][:n]):
        Image.new("RGB", (400, 300), colour).save(folder / f"{i + 1:02d}.png", dpi=(300, 300))
    return folder


@pytest.fixture(autouse=True)
def _enrolled(tmp_path: Path) -> None:
    """The station (tmp_path/agent) is enrolled with the archive (tmp_path/server): the
    archive takes only bundles signed by an enrolled station's key."""
    enrol_offline(tmp_path / "server", tmp_path / "agent", DEVICE)


def _server_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
    env.update(SOHOA_DATA_DIR=str(data_dir), SOHOA_MQTT_URL=NO_BROKER)
    seed_archive_key(data_dir)
    return env


def _import_bundle(server_dir: Path, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "sohoa-server"), "import-bundle", str(path), *extra],
        env=_server_env(server_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _only_bundle(usb: Path) -> Path:
    found = sorted(usb.glob("sohoa-bundle-*"))
    assert len(found) == 1, found
    return found[0]


def _status(env: dict[str, str]) -> dict[str, Any]:
    return json.loads(run_agent(env, "status", "--json", check=True).stdout)  # type: ignore[no-any-return]


def _catalog(server_dir: Path) -> Catalog:
    return Catalog(Database(server_dir / "archive.sqlite3"))


def _server_pages(server_dir: Path) -> list[dict[str, Any]]:
    cat = _catalog(server_dir)
    pages: list[dict[str, Any]] = []
    for b in cat.batches():
        detail = cat.batch(b["id"])
        assert detail is not None
        pages += detail["pages"]
    return pages


def _receipt_index(bundle_dir: Path) -> dict[str, Any]:
    return json.loads((bundle_dir / "receipts" / "receipts.json").read_text())  # type: ignore[no-any-return]


def _committed_in_receipts(rdir: Path) -> set[tuple[str, str]]:
    index = json.loads((rdir / "receipts.json").read_text())
    out = set()
    for item in index["files"]:
        msg = envelope.decode((rdir / item["file"]).read_bytes()).message
        parts = getattr(msg, "committed", None) or getattr(msg, "parts", ())
        out |= {(p.page_id, p.part) for p in parts if p.committed}
    return out


# -- real processes ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.tesseract
def test_usb_round_trip_archives_and_releases(tmp_path: Path) -> None:
    env = agent_env(tmp_path / "agent", NO_BROKER)
    run_agent(env, "import", str(_pngs(tmp_path / "in")), check=True)
    usb = tmp_path / "usb"
    usb.mkdir()

    out = run_agent(env, "export", str(usb), check=True)
    assert "Đã chép 2 trang" in out.stdout
    bdir = _only_bundle(usb)
    assert bdir.name.startswith(f"sohoa-bundle-{DEVICE}-")
    index = json.loads((bdir / "bundle.json").read_text())
    assert index["device_id"] == DEVICE and index["page_count"] == 2
    frames = sorted((bdir / "frames").iterdir())
    assert [f["file"] for f in index["frames"]] == [f"frames/{p.name}" for p in frames]
    assert frames[0].name == "000001.manifest" and frames[-1].suffix == ".chunk"
    for entry in index["frames"]:  # each file is one protocol frame, listed with its sha256
        data = (bdir / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert envelope.decode(data).message.device_id == DEVICE
    # bundle.json is the commit point: written after every frame.
    index_mtime = (bdir / "bundle.json").stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns <= index_mtime for p in frames)
    assert not list(bdir.rglob(".tmp-*"))
    # Exporting changes nothing on the device: only receipts do.
    assert _status(env)["pages_waiting_sync"] == 2

    server_dir = tmp_path / "server"
    imp = _import_bundle(server_dir, bdir)
    assert imp.returncode == 0, imp.stderr
    n = len(index["frames"])
    assert f"{n}/{n}" in imp.stdout
    pages = _server_pages(server_dir)
    assert len(pages) == 2
    assert all(p["parts"]["archival"]["committed"] for p in pages)
    assert not any(p["has_original"] for p in pages)  # masters were not asked for
    batches = _catalog(server_dir).batches()
    assert len(batches) == 1 and batches[0]["complete"]

    back = run_agent(env, "import-receipts", str(usb), check=True)
    assert "Đã đọc biên nhận" in back.stdout
    st = _status(env)
    assert st["pages_waiting_sync"] == 0 and st["batches"] == {"done": 1}
    agent_batches = tmp_path / "agent" / "batches"
    assert not list(agent_batches.glob("*/archival/*"))  # released
    assert len(list(agent_batches.glob("*/capture/*"))) == 2  # masters stay on the device

    # The same bundle again: nothing duplicated, and the receipts come back again.
    again = _import_bundle(server_dir, bdir)
    assert again.returncode == 0, again.stderr
    assert len(_server_pages(server_dir)) == 2
    assert len(_catalog(server_dir).batches()) == 1
    receipted = _committed_in_receipts(bdir / "receipts")
    assert {(p["page_id"], "archival") for p in pages} <= receipted
    assert run_agent(env, "import-receipts", str(bdir), check=True).returncode == 0
    # Nothing left to export.
    assert "Không có lô nào" in run_agent(env, "export", str(usb), check=True).stdout


@pytest.mark.slow
@pytest.mark.tesseract
def test_masters_travel_on_usb_when_asked(tmp_path: Path) -> None:
    env = agent_env(tmp_path / "agent", NO_BROKER, SOHOA_SYNC_MASTERS="true")
    src = _pngs(tmp_path / "in", 1)
    run_agent(env, "import", str(src), check=True)
    usb = tmp_path / "usb"
    usb.mkdir()
    run_agent(env, "export", str(usb), check=True)
    bdir = _only_bundle(usb)
    assert json.loads((bdir / "bundle.json").read_text())["masters"] is True

    server_dir = tmp_path / "server"
    assert _import_bundle(server_dir, bdir).returncode == 0
    (page,) = _server_pages(server_dir)
    assert page["has_original"]
    original = _catalog(server_dir).part_file(page["id"], "capture")
    assert original is not None
    assert Path(original.location).read_bytes() == (src / "01.png").read_bytes()

    run_agent(env, "import-receipts", str(usb), check=True)
    assert not list((tmp_path / "agent" / "batches").glob("*/capture/*"))  # released too


@pytest.mark.slow
@pytest.mark.tesseract
def test_corrupted_frame_is_refused_alone_and_a_second_export_completes(tmp_path: Path) -> None:
    env = agent_env(tmp_path / "agent", NO_BROKER)
    run_agent(env, "import", str(_pngs(tmp_path / "in")), check=True)
    usb = tmp_path / "usb"
    usb.mkdir()
    run_agent(env, "export", str(usb), check=True)
    bdir = _only_bundle(usb)
    victim = sorted((bdir / "frames").glob("*.chunk"))[-1]
    header = envelope.decode(victim.read_bytes()).message
    assert isinstance(header, ChunkHeader)
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit of image data on a tired stick
    victim.write_bytes(bytes(data))

    server_dir = tmp_path / "server"
    imp = _import_bundle(server_dir, bdir)
    assert imp.returncode == 4, imp.stderr
    assert f"frames/{victim.name}" in imp.stderr and "sha256_mismatch" in imp.stderr
    refused = _receipt_index(bdir)["refused"]
    assert [r["file"] for r in refused] == [f"frames/{victim.name}"]
    receipted = _committed_in_receipts(bdir / "receipts")
    assert (header.page_id, header.part) not in receipted
    part_count = json.loads((bdir / "bundle.json").read_text())["part_count"]
    assert len(receipted) == part_count - 1  # everything else of the two pages made it

    back = run_agent(env, "import-receipts", str(usb))
    assert back.returncode == 0, back.stderr
    assert "từ chối 1 tệp" in back.stderr
    st = _status(env)
    assert st["pages_waiting_sync"] == 1  # the page whose archival image lacks a receipt
    assert len(st["pending"]) == 1  # the batch waits for its last part
    assert st["pending"][0]["parts_acked"] == st["pending"][0]["parts_total"] - 1

    # Next trip: export again (only what lacks a receipt) and import.
    out = run_agent(env, "export", str(usb), check=True)
    assert "Đã chép 2 trang" in out.stdout
    second = next(p for p in sorted(usb.glob("sohoa-bundle-*")) if p != bdir)
    second_index = json.loads((second / "bundle.json").read_text())
    assert second_index["part_count"] == 1
    assert _import_bundle(server_dir, second).returncode == 0
    assert _catalog(server_dir).batches()[0]["complete"]
    run_agent(env, "import-receipts", str(usb), check=True)
    assert _status(env)["batches"] == {"done": 1}


@pytest.mark.slow
@pytest.mark.tesseract
def test_incomplete_and_foreign_bundles_are_refused(tmp_path: Path) -> None:
    env = agent_env(tmp_path / "agent", NO_BROKER)
    run_agent(env, "import", str(_pngs(tmp_path / "in", 1)), check=True)
    usb = tmp_path / "usb"
    usb.mkdir()
    run_agent(env, "export", str(usb), check=True)
    bdir = _only_bundle(usb)
    server_dir = tmp_path / "server"

    # Truncated: the disk was pulled before bundle.json was written.
    index_path = bdir / "bundle.json"
    good_index = index_path.read_text()
    index_path.unlink()
    imp = _import_bundle(server_dir, bdir)
    assert imp.returncode == 3
    assert "bundle.json" in imp.stderr and "Không nhập được gói" in imp.stderr
    assert "Traceback" not in imp.stderr
    assert _catalog(server_dir).batches() == []
    assert not (bdir / "receipts").exists()

    # A bundle naming another station than the one that made it (issue 14: forged records
    # entered under another commune's station). Unknown to the archive: refused whole ...
    forged = json.loads(good_index)
    forged["device_id"] = "xa-other-02"
    index_path.write_text(json.dumps(forged))
    imp = _import_bundle(server_dir, bdir)
    assert imp.returncode == 3, imp.stderr
    assert "xa-other-02 is not enrolled" in imp.stderr
    # ... and enrolled: its key did not sign this index. One line, nothing written.
    enrol_offline(server_dir, tmp_path / "other-station", "xa-other-02")
    imp = _import_bundle(server_dir, bdir)
    assert imp.returncode == 3, imp.stderr
    assert "not signed by station xa-other-02" in imp.stderr
    assert len(imp.stderr.strip().splitlines()) == 1
    assert _catalog(server_dir).batches() == []
    assert not (bdir / "receipts").exists()
    alerts = Database(server_dir / "archive.sqlite3").read().execute("SELECT kind FROM alerts")
    assert "bad_signature" in {r[0] for r in alerts}

    # Restored, it imports; receipts can also go to another folder.
    index_path.write_text(good_index)
    elsewhere = tmp_path / "other-usb"
    imp = _import_bundle(server_dir, bdir, "--receipts-to", str(elsewhere), "--json")
    assert imp.returncode == 0, imp.stderr
    report = json.loads(imp.stdout)
    assert report["frames_imported"] == report["frames_total"]
    run_agent(env, "import-receipts", str(elsewhere), check=True)
    assert _status(env)["batches"] == {"done": 1}


@pytest.mark.slow
@pytest.mark.tesseract
@pytest.mark.mqtt
def test_link_after_usb_sends_nothing_already_archived(tmp_path: Path) -> None:
    """The receipts never came home on the disk, but a link did: reconciliation learns from
    the server what the bundle brought, and no chunk travels twice."""
    from harness import Broker

    broker = Broker(tmp_path / "broker").start()
    try:
        env = agent_env(tmp_path / "agent", broker.url)
        run_agent(env, "import", str(_pngs(tmp_path / "in")), check=True)
        usb = tmp_path / "usb"
        usb.mkdir()
        run_agent(env, "export", str(usb), check=True)
        server_dir = tmp_path / "server"
        assert _import_bundle(server_dir, _only_bundle(usb)).returncode == 0
        # No API call below, so no token (and no dependency on how tokens are made).
        server = ServerProcess(server_dir, broker.url, token="unused").start()
        manifests = _ManifestSpy(broker.port)
        try:
            out = run_agent(env, "-v", "sync", "--wait", "--timeout", "60")
            assert out.returncode == 0, out.stderr
            assert " 0 chunks (0 bytes) sent" in out.stderr
            # A new process knows no batch state: it asks before it announces, so a batch
            # the archive already holds costs no manifest on the link either.
            assert manifests.seen == [], manifests.seen
            assert _status(env)["batches"] == {"done": 1}
            assert len(_catalog(server_dir).batches()) == 1
            # The disk comes home later: its receipts change nothing any more.
            late = run_agent(env, "import-receipts", str(usb))
            assert late.returncode == 0, late.stderr
            assert _status(env)["batches"] == {"done": 1}
        finally:
            manifests.stop()
            server.stop()
    finally:
        broker.stop()


class _ManifestSpy:
    """Every manifest any station publishes on the (anonymous) test broker."""

    def __init__(self, port: int) -> None:
        import threading

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.seen: list[str] = []
        subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5
        )
        self.client.on_message = lambda c, u, m: self.seen.append(m.topic)
        self.client.on_subscribe = lambda c, u, mid, rc, p: subscribed.set()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            f"{topics.PREFIX}/up/+/manifest", qos=1
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10), "the spy could not subscribe"

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_cli_help_and_missing_disk(tmp_path: Path) -> None:
    env = agent_env(tmp_path / "agent", NO_BROKER)
    for cmd in ("export", "import-receipts"):
        out = run_agent(env, cmd, "--help")
        assert out.returncode == 0 and "usage: sohoa-agent" in out.stdout
    out = run_agent(env, "export", str(tmp_path / "not-mounted"))
    assert out.returncode == 73
    assert "Không thấy ổ USB" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "not-mounted").exists()
    out = run_agent(env, "import-receipts", str(tmp_path))
    assert out.returncode == 2 and "Không tìm thấy biên nhận" in out.stdout
    srv = subprocess.run(
        [str(BIN / "sohoa-server"), "import-bundle", "--help"],
        env=_server_env(tmp_path / "server"),
        capture_output=True,
        text=True,
    )
    assert srv.returncode == 0 and "--receipts-to" in srv.stdout


# -- in process: the rules -----------------------------------------------------------------------


def _settings(tmp_path: Path, **extra: Any) -> AgentSettings:
    return AgentSettings(device_id=DEVICE, data_dir=tmp_path / "agent", **extra)


def _ready_batch(outbox: ob.Outbox, work: Path, pages: int = 2, secret: bool = False) -> str:
    """A processed batch without running the pipeline: small files stand in for its parts."""
    batch = outbox.new_batch(source="import", secret=secret)
    for n in range(pages):
        page = outbox.add_capture(
            batch.batch_id,
            f"capture {n} {batch.batch_id}".encode(),
            extension="png",
            media_type="image/png",
            dpi=300,
            width_px=10,
            height_px=10,
            colour=True,
        )
        files = {}
        for name, data in (
            ("text", f"Quyết định số {n}".encode()),
            ("thumb", os.urandom(100)),
            ("archival", os.urandom(3 * 1024 * 1024 + 17)),  # several 1 MiB chunks
        ):
            path = work / f"{batch.batch_id}-{n}.{name}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            files[name] = path
        outbox.record_processed(
            batch.batch_id,
            page.page_id,
            parts=files,
            media_types={
                "text": "text/plain; charset=utf-8",
                "thumb": "image/jpeg",
                "archival": "application/pdf",
            },
            flags=(),
            decisions={},
            ocr_confidence=0.9,
        )
    outbox.close_batch(batch.batch_id)
    outbox.update_batch(batch.batch_id, state=ob.READY)
    return batch.batch_id


def test_secret_batches_never_leave_and_big_parts_are_cut(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    usb = tmp_path / "usb"
    usb.mkdir()
    with ob.Outbox(settings.data_dir) as outbox:
        public = _ready_batch(outbox, tmp_path / "work")
        secret = _ready_batch(outbox, tmp_path / "work", secret=True)
        report = bundle.export(settings, outbox, usb, "test")
    assert report.secret_skipped == 1 and report.batches == 1
    assert report.bundle is not None
    index = json.loads((report.bundle / "bundle.json").read_text())
    assert {b["batch_id"] for b in index["batches"]} == {public}
    assert secret not in (report.bundle / "bundle.json").read_text()
    chunks = [
        envelope.decode((report.bundle / f["file"]).read_bytes()).message
        for f in index["frames"]
        if f["kind"] == "chunk"
    ]
    assert all(isinstance(c, ChunkHeader) for c in chunks)
    headers = [c for c in chunks if isinstance(c, ChunkHeader)]
    assert all(c.length <= 1 << 20 and c.batch_id == public for c in headers)
    assert len(chunks) == 2 * (1 + 1 + 4)  # text, thumb, archival in 4 chunks, per page


def test_too_little_room_writes_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    usb = tmp_path / "usb"
    usb.mkdir()
    with ob.Outbox(settings.data_dir) as outbox:
        _ready_batch(outbox, tmp_path / "work")
        with pytest.raises(bundle.BundleError) as info:
            bundle.export(settings, outbox, usb, "test", disk_free=lambda _: 5_000_000)
    assert info.value.key == "export_no_space"
    from agent import messages

    text = messages.t("export_no_space", "vi", **info.value.params)
    assert "USB không đủ chỗ" in text and "5,0 MB" in text  # decimal comma
    assert list(usb.iterdir()) == []


def test_receipts_for_another_device_tampered_or_unsigned_are_ignored(tmp_path: Path) -> None:
    key = signing.new_key()
    settings = _settings(tmp_path, server_public_key=signing.public_key_hex(key))
    usb = tmp_path / "usb"
    usb.mkdir()
    server_dir = tmp_path / "server"
    db = Database(server_dir / "archive.sqlite3")
    ingest = Ingest(db, Store(server_dir / "store"), signing_key=key)
    with ob.Outbox(settings.data_dir) as outbox:
        batch_id = _ready_batch(outbox, tmp_path / "work", pages=1)
        report = bundle.export(settings, outbox, usb, "test")
        assert report.bundle is not None
        imported = server_bundle.import_bundle(ingest, report.bundle)
        assert not imported.refused and imported.parts_committed == 3
        rdir = report.bundle / "receipts"

        # A receipt frame that names another device, listed with a correct sha256.
        page = outbox.pages(batch_id)[0]
        foreign = Receipt(
            device_id="xa-other-02",
            msg_id="0" * 32,
            sent_at=0.0,
            batch_id=batch_id,
            committed=(),
        )
        payload = envelope.encode(foreign)
        (rdir / "r1-00000000-999999.receipt").write_bytes(payload)
        index = json.loads((rdir / "receipts.json").read_text())
        index["files"].append(
            {
                "file": "r1-00000000-999999.receipt",
                "kind": "receipt",
                "batch_id": batch_id,
                "sha256": hashlib.sha256(payload).hexdigest(),
                "size": len(payload),
            }
        )
        # ... one anybody could write on a stick: right device and sha256s, no signature ...
        forged = Receipt(
            device_id=DEVICE,
            msg_id="1" * 32,
            sent_at=0.0,
            batch_id=batch_id,
            committed=tuple(
                PartState(page_id=page.page_id, part=name, sha256=p.sha256, committed=True)
                for name, p in page.parts.items()
            ),
        )
        forged_payload = envelope.encode(forged)
        (rdir / "r1-11111111-999999.receipt").write_bytes(forged_payload)
        index["files"].append(
            {
                "file": "r1-11111111-999999.receipt",
                "kind": "receipt",
                "batch_id": batch_id,
                "sha256": hashlib.sha256(forged_payload).hexdigest(),
                "size": len(forged_payload),
            }
        )
        # ... and a damaged one; the index now lists only these three.
        first = rdir / index["files"][0]["file"]
        first.write_bytes(first.read_bytes() + b"x")
        index["files"] = [index["files"][0], *index["files"][-2:]]
        (rdir / "receipts.json").write_text(json.dumps(index))

        back = bundle.import_receipts(settings, outbox, usb)
        reasons = " ".join(why for _, why in back.refused)
        assert "wrong_device" in reasons and "sha256 mismatch" in reasons
        assert "signature" in reasons
        assert not back.finished
        assert not any(p.acked for p in outbox.page(batch_id, page.page_id).parts.values())

        # Another device's receipts on a shared disk are skipped, not refused.
        index["device_id"] = "xa-other-02"
        (rdir / "receipts.json").write_text(json.dumps(index))
        other = bundle.import_receipts(settings, outbox, usb)
        assert other.other_device == 1 and not other.refused

        # Re-imported, the server writes fresh receipts; now the batch is done.
        server_bundle.import_bundle(ingest, report.bundle)
        done = bundle.import_receipts(settings, outbox, usb)
        assert [f.batch_id for f in done.finished] == [batch_id]
        assert transfer.sendable_batches(outbox) == []
        assert outbox.batch(batch_id).state == ob.DONE


def test_import_bundle_never_touches_mqtt(tmp_path: Path) -> None:
    """No broker anywhere: the CLI path imports no MQTT client at all."""
    code = (
        "import sys; from server import cli;"
        "sys.argv=['sohoa-server','import-bundle',sys.argv[1]];"
        "rc=cli.main(sys.argv[1:]);"
        "print('paho' in ' '.join(sys.modules), rc)"
    )
    out = subprocess.run(
        [str(BIN / "python"), "-c", code, str(tmp_path / "nothing")],
        env=_server_env(tmp_path / "server"),
        capture_output=True,
        text=True,
    )
    assert out.stdout.split() == ["False", "3"], out.stderr


def _add_receipt_frame(rdir: Path, name: str, kind: str, batch_id: str, payload: bytes) -> None:
    (rdir / name).write_bytes(payload)
    index = json.loads((rdir / "receipts.json").read_text())
    index["files"].append(
        {
            "file": name,
            "kind": kind,
            "batch_id": batch_id,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "size": len(payload),
        }
    )
    (rdir / "receipts.json").write_text(json.dumps(index))


def test_forged_receipt_and_reject_on_a_usb_disk_change_nothing(tmp_path: Path) -> None:
    """Issue 14: a receipt forged on a disk made a station delete its pages, and a forged
    reject quarantined a batch. Both are now signed; a thief's signature is refused."""
    from protocol.messages import Reject

    archive, thief = signing.new_key(), signing.new_key()
    settings = _settings(tmp_path, server_public_key=signing.public_key_hex(archive))
    usb = tmp_path / "usb"
    usb.mkdir()
    with ob.Outbox(settings.data_dir) as outbox:
        batch_id = _ready_batch(outbox, tmp_path / "work", pages=1)
        report = bundle.export(settings, outbox, usb, "test")
        assert report.bundle is not None
        rdir = report.bundle / "receipts"
        rdir.mkdir()
        (rdir / "receipts.json").write_text(
            json.dumps(
                {"format": "sohoa-receipts", "format_version": 1, "device_id": DEVICE, "files": []}
            )
        )
        page = outbox.pages(batch_id)[0]
        receipt = Receipt(
            device_id=DEVICE, msg_id="1" * 32, sent_at=0.0, batch_id=batch_id,
            committed=tuple(
                PartState(page_id=page.page_id, part=name, sha256=p.sha256, committed=True)
                for name, p in page.parts.items()
            ),
        )  # fmt: skip
        reject = Reject(
            device_id=DEVICE, msg_id="2" * 32, sent_at=0.0, batch_id=batch_id,
            reason="conflict", detail="forged",
        )  # fmt: skip
        for n, msg in enumerate((receipt, reject)):
            forged = msg.model_copy(update={"signature": signing.sign(msg, thief)})
            kind = "receipt" if n == 0 else "reject"
            _add_receipt_frame(
                rdir, f"r1-0000000{n}-00000{n}.{kind}", kind, batch_id, envelope.encode(forged)
            )
        back = bundle.import_receipts(settings, outbox, usb)
        assert len(back.refused) == 2
        assert all("signature" in why for _, why in back.refused)
        assert not back.finished and not back.rejects
        assert outbox.batch(batch_id).state == ob.READY  # not quarantined
        assert not any(p.acked for p in outbox.page(batch_id, page.page_id).parts.values())
        held = settings.data_dir / "batches" / batch_id
        assert all((held / p.file).exists() for p in page.parts.values())  # nothing deleted

        # The same frames signed by the archive do act (so the refusal above is the key's).
        signed = reject.model_copy(update={"signature": signing.sign(reject, archive)})
        _add_receipt_frame(rdir, "r2-00000002-000002.reject", "reject", batch_id,
                           envelope.encode(signed))  # fmt: skip
        back = bundle.import_receipts(settings, outbox, usb)
        assert back.rejects and outbox.batch(batch_id).state == ob.QUARANTINED


def test_a_station_with_no_pinned_key_deletes_nothing(tmp_path: Path) -> None:
    key = signing.new_key()
    unpinned = _settings(tmp_path)
    assert unpinned.server_public_key is None
    usb = tmp_path / "usb"
    usb.mkdir()
    server_dir = tmp_path / "server"
    db = Database(server_dir / "archive.sqlite3")
    ingest = Ingest(db, Store(server_dir / "store"), signing_key=key)
    with ob.Outbox(unpinned.data_dir) as outbox:
        batch_id = _ready_batch(outbox, tmp_path / "work", pages=1)
        report = bundle.export(unpinned, outbox, usb, "test")
        assert report.bundle is not None
        server_bundle.import_bundle(ingest, report.bundle)  # genuine, signed receipts
        back = bundle.import_receipts(unpinned, outbox, usb)
        assert not back.finished and back.parts_acked == 0
        assert outbox.batch(batch_id).state == ob.READY
        pinned = _settings(tmp_path, server_public_key=signing.public_key_hex(key))
        done = bundle.import_receipts(pinned, outbox, usb)
        assert [f.batch_id for f in done.finished] == [batch_id]
    db.close()


def test_a_revoked_station_retrying_by_usb_is_refused_and_what_came_before_stays(
    tmp_path: Path,
) -> None:
    from server.fleet import registry as stations

    settings = _settings(tmp_path, server_public_key=pinned_archive_key())
    server_dir = tmp_path / "server"
    seed_archive_key(server_dir)
    db = Database(server_dir / "archive.sqlite3")
    ingest = Ingest(db, Store(server_dir / "store"), signing_key=signing.private_key_from_bytes(
        TEST_ARCHIVE_KEY))  # fmt: skip
    with ob.Outbox(settings.data_dir) as outbox:
        first = _ready_batch(outbox, tmp_path / "work", pages=1)
        usb1 = tmp_path / "usb1"
        usb1.mkdir()
        report = bundle.export(settings, outbox, usb1, "test")
        assert report.bundle is not None
        assert server_bundle.import_bundle(ingest, report.bundle).parts_committed == 3
        bundle.import_receipts(settings, outbox, usb1)
        assert outbox.batch(first).state == ob.DONE

        stations.revoke(db, DEVICE)  # the station was stolen
        second = _ready_batch(outbox, tmp_path / "work", pages=1)
        usb2 = tmp_path / "usb2"
        usb2.mkdir()
        report = bundle.export(settings, outbox, usb2, "test")
        assert report.bundle is not None
        with pytest.raises(server_bundle.BundleRefused) as info:
            server_bundle.import_bundle(ingest, report.bundle)
        assert info.value.reason == "revoked"
        assert not (report.bundle / "receipts").exists()
        held = {b["batch_id"] for b in Catalog(db).batches()}
        assert first in held and second not in held  # before stays, after is refused
        assert outbox.batch(second).state == ob.READY  # nothing lost on the station
    db.close()


@pytest.mark.parametrize("carried", [True, False], ids=["announced", "announcement_stripped"])
def test_usb_receipts_under_a_rotated_key_carry_its_announcement(
    tmp_path: Path, carried: bool
) -> None:
    """A station that only exchanges disks, the archive's key rotated and cut over since it
    enrolled: the receipts index carries the announcement (signed by the key the station
    pinned), so the new key's receipts finish the batch, no re-enrolment. Stripped of it
    (the control), the same receipts are ignored and nothing is released."""
    from server.store import keys

    settings = _settings(tmp_path, server_public_key=pinned_archive_key())
    server_dir = tmp_path / "server"
    seed_archive_key(server_dir)
    keys.rotate(server_dir, 30 * 86400)
    assert keys.cut_over(server_dir)  # the archive signs with the new key from now on
    db = Database(server_dir / "archive.sqlite3")
    ingest = Ingest(db, Store(server_dir / "store"), signing_key=keys.current(server_dir),
                    key_dir=server_dir)  # fmt: skip
    with ob.Outbox(settings.data_dir) as outbox:
        batch_id = _ready_batch(outbox, tmp_path / "work", pages=1)
        usb = tmp_path / "usb"
        usb.mkdir()
        report = bundle.export(settings, outbox, usb, "test")
        assert report.bundle is not None
        imported = server_bundle.import_bundle(ingest, report.bundle)
        assert imported.parts_committed == 3
        index_path = imported.receipts_dir / server_bundle.RECEIPTS_INDEX
        if not carried:
            index = json.loads(index_path.read_text())
            del index["archive_key"]
            index_path.write_text(json.dumps(index))
        back = bundle.import_receipts(settings, outbox, usb)
        if carried:
            assert [f.batch_id for f in back.finished] == [batch_id]
            assert outbox.batch(batch_id).state == ob.DONE
        else:
            assert not back.finished and back.parts_acked == 0
            assert outbox.batch(batch_id).state == ob.READY  # nothing lost
    db.close()


def test_new_bundle_folders_are_made_durable_in_their_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power cut right after an export must not lose a folder whose files were fsynced:
    every folder the export makes has its name fsynced in its parent (mkdir -p did not)."""
    synced: list[Path] = []
    monkeypatch.setattr(bundle, "_fsync_dir", synced.append)
    target = tmp_path / "usb" / "sohoa" / "sohoa-bundle-1"
    bundle._make_dirs(target)
    assert target.is_dir()
    assert synced == [tmp_path, tmp_path / "usb", tmp_path / "usb" / "sohoa"]
    synced.clear()
    bundle._make_dirs(target)  # already there: nothing made, nothing to sync
    assert synced == []
