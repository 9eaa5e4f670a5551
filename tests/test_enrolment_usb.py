"""Enrolment by USB with the link down (issue #14), with real processes: Mosquitto with the
dynamic security plugin, ``sohoa-server device add --usb-file`` and ``sohoa-agent enrol
--usb``. The forger goes first: an altered file, a file signed by a key of its own, a file
nobody can check; each is refused with one line and nothing written. Then the genuine file
enrols the station while the broker is DOWN, the station scans, and its first connection
after the broker is back registers its key and delivers the page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Broker, ServerProcess, enrolled_agent_env, run_agent, run_server
from PIL import Image

from protocol import enrolment, signing

pytestmark = [pytest.mark.mqtt, pytest.mark.dynsec]

STATION = "xa-usb-01"


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[tuple[Broker, ServerProcess, Path, str]]:
    """The archive with a station added for USB: (broker, server, the USB file, the
    fingerprint printed on the sheet)."""
    broker = Broker(tmp_path / "broker", dynsec=True).start()
    data = tmp_path / "server"
    data.mkdir()
    (data / "broker-admin-password").write_text(broker.admin_password)
    server = ServerProcess(data, broker.ingest_url, enrolled_only=True).start()
    usb = tmp_path / "usb" / f"enrol-{STATION}.json"
    usb.parent.mkdir()
    sheet = str(tmp_path / "sheet.pdf")
    out = run_server(server, "device", "add", STATION, "--commune", "Xã Tân Phú",
                     "--hours", "720", "--sheet", sheet, "--usb-file", str(usb))  # fmt: skip
    assert out.returncode == 0, out.stderr
    code = enrolment.EnrolCode.parse(out.stdout.strip().splitlines()[-1])
    assert "--usb FILE" in out.stdout
    fp = " ".join(code.key_fingerprint[i : i + 4] for i in range(0, 32, 4))
    yield broker, server, usb, fp
    server.stop()
    broker.stop()


def _nothing_written(agent_dir: Path) -> None:
    folder = agent_dir / "enrolment"
    assert not (folder / "enrolment.json").exists()
    assert not (folder / "code.pending").exists()
    assert not (folder / "mqtt-password").exists()


def test_a_forged_or_altered_usb_file_is_refused(
    tmp_path: Path, archive: tuple[Broker, ServerProcess, Path, str]
) -> None:
    _, _, usb, fp = archive
    genuine = json.loads(usb.read_text())
    env = enrolled_agent_env(tmp_path / "agent")

    # Altered: the broker address moved to the attacker's host, signature kept.
    altered = tmp_path / "altered.json"
    code = enrolment.EnrolCode.parse(genuine["code"])
    moved = enrolment.EnrolCode(code.device_id, code.secret, "evil.example", 8883, True,
                                code.key_fingerprint)  # fmt: skip
    altered.write_text(json.dumps({**genuine, "code": moved.text()}))
    out = run_agent(env, "enrol", "--usb", str(altered), "--fingerprint", fp)
    assert out.returncode == 65, out.stdout + out.stderr
    assert "bị sửa hoặc giả mạo" in out.stderr and "Traceback" not in out.stderr
    assert "bị sửa" in out.stderr.strip().splitlines()[-1]  # the operator's line, last
    _nothing_written(tmp_path / "agent")

    # Forged whole: the attacker's own archive key, its code, its signature — consistent
    # in itself, but not the key printed on the sheet.
    evil = signing.new_key()
    evil_pub = signing.public_key_hex(evil)
    forged_code = enrolment.EnrolCode(code.device_id, code.secret, "evil.example", 8883, True,
                                      enrolment.key_fingerprint(evil_pub))  # fmt: skip
    forged = enrolment.EnrolBundle(code=forged_code.text(), server_public_key=evil_pub,
                                   issued_at=0, expires_at=2e9)  # fmt: skip
    forged = forged.model_copy(
        update={"signature": signing.sign_bytes(forged.signed_bytes(), evil)}
    )
    forged_file = tmp_path / "forged.json"
    forged_file.write_text(forged.model_dump_json())
    out = run_agent(env, "enrol", "--usb", str(forged_file), "--fingerprint", fp)
    assert out.returncode == 65 and "không do Lưu trữ của trạm này ký" in out.stderr
    _nothing_written(tmp_path / "agent")
    # ... nor the key the station has pinned (the province's image pins it).
    pinned = {**env, "SOHOA_SERVER_PUBLIC_KEY": genuine["server_public_key"]}
    out = run_agent(pinned, "enrol", "--usb", str(forged_file))
    assert out.returncode == 65 and "không do Lưu trữ của trạm này ký" in out.stderr
    _nothing_written(tmp_path / "agent")
    # Nothing to check the genuine file against: refused too (a forger could sign one).
    out = run_agent(env, "enrol", "--usb", str(usb))
    assert out.returncode == 65 and "dấu khóa Lưu trữ" in out.stderr
    _nothing_written(tmp_path / "agent")


@pytest.mark.tesseract
@pytest.mark.slow
def test_enrol_by_usb_with_the_broker_down_then_the_first_connection_works(
    tmp_path: Path, archive: tuple[Broker, ServerProcess, Path, str]
) -> None:
    broker, server, usb, fp = archive
    broker.stop()  # the link is down from here until the station has scanned
    agent_dir = tmp_path / "agent"
    env = enrolled_agent_env(agent_dir)
    out = run_agent(env, "enrol", "--usb", str(usb), "--fingerprint", fp, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert fp in out.stdout
    state = json.loads((agent_dir / "enrolment" / "enrolment.json").read_text())
    assert state["device_id"] == STATION and state["registered"] is False
    assert state["server_public_key"] == run_server(server, "receipt-key").stdout.strip()
    assert (agent_dir / "enrolment" / "code.pending").stat().st_mode & 0o077 == 0
    listed = json.loads(run_server(server, "device", "list", "--json").stdout)
    assert [(s["device_id"], s["state"]) for s in listed] == [(STATION, "pending")]

    page = tmp_path / "in" / "a.png"
    page.parent.mkdir()
    Image.new("RGB", (400, 300), "white").save(page, dpi=(300, 300))
    run_agent(env, "import", str(page), check=True)
    down = run_agent(env, "sync", "--wait", "--timeout", "10")
    assert down.returncode != 0 and "Traceback" not in down.stderr  # still down: it waits
    assert (agent_dir / "enrolment" / "code.pending").exists()

    broker.start()
    out = run_agent(env, "sync", "--wait", "--timeout", "120")
    assert out.returncode == 0, out.stdout + out.stderr
    state = json.loads((agent_dir / "enrolment" / "enrolment.json").read_text())
    assert state["registered"] is True
    assert not (agent_dir / "enrolment" / "code.pending").exists()
    listed = json.loads(run_server(server, "device", "list", "--json").stdout)
    assert [(s["device_id"], s["state"]) for s in listed] == [(STATION, "active")]
    assert listed[0]["public_key"] == state["station_public_key"]  # made on the station
    batches = server.get_json("/api/v1/batches")
    assert [b["device_id"] for b in batches] == [STATION]
    status = json.loads(run_agent(env, "status", "--json", check=True).stdout)
    assert status["pages_waiting_sync"] == 0
