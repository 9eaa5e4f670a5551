"""Enrolment from a one-time code, with real processes: a Mosquitto with the dynamic security
plugin, ``sohoa-server run`` (its enrolment desk), ``sohoa-server device add|list|revoke``
and ``sohoa-agent enrol``. Nobody writes credentials by hand."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import (
    Broker,
    ServerProcess,
    enrolled_agent_env,
    run_agent,
    run_server,
)
from PIL import Image

from protocol import enrolment
from server.fleet import registry as stations
from server.store.db import Database

pytestmark = [pytest.mark.mqtt, pytest.mark.dynsec]


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[tuple[Broker, ServerProcess]]:
    broker = Broker(tmp_path / "broker", dynsec=True).start()
    data = tmp_path / "server"
    data.mkdir()
    (data / "broker-admin-password").write_text(broker.admin_password)
    server = ServerProcess(data, broker.ingest_url).start()
    yield broker, server
    server.stop()
    broker.stop()


def add_station(server: ServerProcess, name: str, tmp_path: Path, *extra: str) -> tuple[str, Path]:
    sheet = tmp_path / f"{name}.pdf"
    out = run_server(
        server, "device", "add", name, "--commune", "Xã Tân Phú", "--sheet", str(sheet), *extra
    )
    assert out.returncode == 0, out.stderr
    code = out.stdout.strip().splitlines()[-1]  # the last line, as documented
    enrolment.EnrolCode.parse(code)
    return code, sheet


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (400, 300), "white").save(path, dpi=(300, 300))
    return path


def _stored_secrets(server: ServerProcess) -> list[str]:
    db = Database(server.data_dir / "archive.sqlite3")
    try:
        rows = db.read().execute("SELECT * FROM stations").fetchall()
        return [str(v) for r in rows for v in tuple(r)]
    finally:
        db.close()


@pytest.mark.tesseract
def test_enrol_then_sync_then_revoke(tmp_path: Path, archive: tuple[Broker, ServerProcess]) -> None:
    broker, server = archive
    code, sheet = add_station(server, "xa-tan-phu-01", tmp_path)
    assert sheet.read_bytes().startswith(b"%PDF")
    parsed = enrolment.EnrolCode.parse(code)
    assert parsed.port == broker.port
    # The code is stored hashed only.
    assert not any(parsed.secret in v for v in _stored_secrets(server))

    env = enrolled_agent_env(tmp_path / "agent")
    out = run_agent(env, "enrol", code)
    assert out.returncode == 0, out.stdout + out.stderr
    fp = " ".join(parsed.key_fingerprint[i : i + 4] for i in range(0, 32, 4))
    assert fp in out.stdout
    state = json.loads((tmp_path / "agent" / "enrolment" / "enrolment.json").read_text())
    assert state["device_id"] == "xa-tan-phu-01"
    receipt_key = run_server(server, "receipt-key").stdout.strip()
    assert state["server_public_key"] == receipt_key  # pinned
    assert (tmp_path / "agent" / "enrolment" / "station.key").stat().st_mode & 0o077 == 0

    listed = json.loads(run_server(server, "device", "list", "--json").stdout)
    assert [(s["device_id"], s["state"]) for s in listed] == [("xa-tan-phu-01", "active")]
    assert listed[0]["public_key"] == state["station_public_key"]
    assert listed[0]["commune"] == "Xã Tân Phú"

    # The enrolled identity works end to end.
    run_agent(env, "import", str(_png(tmp_path / "in" / "a.png")), check=True)
    out = run_agent(env, "sync", "--wait", "--timeout", "120")
    assert out.returncode == 0, out.stdout + out.stderr
    batches = server.get_json("/api/v1/batches")
    assert [b["device_id"] for b in batches] == ["xa-tan-phu-01"]

    # Revoked: refused by the broker from now on; what the archive holds stays.
    out = run_server(server, "device", "revoke", "xa-tan-phu-01")
    assert out.returncode == 0, out.stderr
    run_agent(env, "import", str(_png(tmp_path / "in" / "b.png")), check=True)
    out = run_agent(env, "sync", "--wait", "--timeout", "20")
    assert out.returncode == 75
    assert "từ chối trạm quét này" in out.stderr
    assert len(server.get_json("/api/v1/batches")) == 1
    listed = json.loads(run_server(server, "device", "list", "--json").stdout)
    assert listed[0]["state"] == "revoked"
    status = json.loads(run_agent(env, "status", "--json", check=True).stdout)
    assert status["pages_waiting_sync"] == 1  # nothing lost on the station either


def test_code_used_twice_is_refused(tmp_path: Path, archive: tuple[Broker, ServerProcess]) -> None:
    _, server = archive
    code, _ = add_station(server, "xa-a", tmp_path)
    first = enrolled_agent_env(tmp_path / "first")
    assert run_agent(first, "enrol", code).returncode == 0
    key_before = json.loads(run_server(server, "device", "list", "--json").stdout)[0]

    thief = enrolled_agent_env(tmp_path / "thief")
    out = run_agent(thief, "enrol", code)
    assert out.returncode != 0
    assert "đã được dùng" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "thief" / "enrolment" / "enrolment.json").exists()
    key_after = json.loads(run_server(server, "device", "list", "--json").stdout)[0]
    assert key_after == key_before  # the first station's key still stands

    # A failed re-enrolment (--force with a spent code) leaves the working station as it was.
    folder = tmp_path / "first" / "enrolment"
    before = {f.name: f.read_bytes() for f in folder.iterdir() if not f.name.endswith("pending")}
    out = run_agent(first, "enrol", "--force", code)
    assert out.returncode != 0
    after = {f.name: f.read_bytes() for f in folder.iterdir() if not f.name.endswith("pending")}
    assert after == before


def test_expired_code_is_refused(tmp_path: Path, archive: tuple[Broker, ServerProcess]) -> None:
    _, server = archive
    code, _ = add_station(server, "xa-b", tmp_path, "--hours", "0.0003")  # ~1 s
    time.sleep(1.5)
    env = enrolled_agent_env(tmp_path / "late")
    out = run_agent(env, "enrol", code)
    assert out.returncode != 0
    assert "hết hạn" in out.stderr or "Xin phiếu mới" in out.stderr, out.stderr
    assert not (tmp_path / "late" / "enrolment" / "enrolment.json").exists()
    listed = json.loads(run_server(server, "device", "list", "--json").stdout)
    assert listed[0]["state"] == "pending"
    assert listed[0]["public_key"] == ""


def test_forged_code_names_another_archive(
    tmp_path: Path, archive: tuple[Broker, ServerProcess]
) -> None:
    """A code whose key fingerprint is not this archive's: the agent installs nothing."""
    _, server = archive
    code, _ = add_station(server, "xa-c", tmp_path)
    parsed = enrolment.EnrolCode.parse(code)
    wrong = enrolment.EnrolCode(
        parsed.device_id, parsed.secret, parsed.host, parsed.port, parsed.tls, "0" * 32
    )
    env = enrolled_agent_env(tmp_path / "agent")
    out = run_agent(env, "enrol", wrong.text())
    assert out.returncode != 0
    assert "không đến từ Lưu trữ" in out.stderr
    assert not (tmp_path / "agent" / "enrolment" / "enrolment.json").exists()


def test_redeem_rules(tmp_path: Path) -> None:
    """The registry's rules without a broker: hashed code, single key, expiry, signature."""
    from protocol import signing

    db = Database(tmp_path / "a.sqlite3")
    secret = stations.issue_code(db, "xa-d", "Xã D", "", hours=72, now=1000.0)

    def request(key: signing.Ed25519PrivateKey, code: str = secret) -> enrolment.EnrolRequest:
        req = enrolment.EnrolRequest(
            device_id="xa-d",
            msg_id="a" * 32,
            secret=code,
            public_key=signing.public_key_hex(key),
            box_key="b" * 64,
        )
        return req.model_copy(update={"signature": signing.sign_bytes(req.signed_bytes(), key)})

    station, thief = signing.new_key(), signing.new_key()
    forged = request(station).model_copy(update={"public_key": signing.public_key_hex(thief)})
    with pytest.raises(stations.FleetError, match="bad_signature"):
        stations.redeem(db, forged, now=1001.0)
    with pytest.raises(stations.FleetError, match="bad_code"):
        stations.redeem(db, request(station, enrolment.new_secret()), now=1001.0)
    with pytest.raises(stations.FleetError, match="code_expired"):
        stations.redeem(db, request(station), now=1000.0 + 72 * 3600 + 1)
    assert stations.redeem(db, request(station), now=1001.0).state == "active"
    # The same station asking again (its reply was lost) is answered; another key is not.
    assert stations.redeem(db, request(station), now=1002.0).state == "active"
    with pytest.raises(stations.FleetError, match="code_used"):
        stations.redeem(db, request(thief), now=1003.0)
    assert stations.trusted_key(db, "xa-d") == signing.public_key_hex(station)
    stations.revoke(db, "xa-d")
    assert stations.trusted_key(db, "xa-d") is None
    with pytest.raises(stations.FleetError, match="bad_code"):
        stations.redeem(db, request(station), now=1004.0)
    db.close()


@pytest.mark.sane
def test_enrolment_sheet_scanned_through_sane(
    tmp_path: Path, archive: tuple[Broker, ServerProcess]
) -> None:
    """The printed sheet, fed to SANE's ``pnm`` backend (it scans a PNM file; the ``test``
    backend can only draw patterns), read by the agent and used to enrol."""
    from agent import profiles
    from agent.capture import sane_device
    from agent.cli import read_enrolment_sheet
    from agent.uplink import enrol

    _, server = archive
    code, sheet = add_station(server, "xa-scan", tmp_path)
    # The PDF the server wrote, rasterised as a printer and a scanner would see it.
    import pypdfium2

    pdf = pypdfium2.PdfDocument(str(sheet))
    page = pdf[0].render(scale=200 / 72).to_pil().convert("RGB")
    pdf.close()
    pnm = tmp_path / "sheet.ppm"
    page.save(pnm)
    known = profiles.load_scanner_profiles()
    with sane_device.open_scanner("pnm:0", known) as scanner:
        scanner.device.filename = str(pnm)
        read = read_enrolment_sheet(scanner)
    assert read == code
    done = enrol.enrol(read, tmp_path / "agent", timeout=30)
    assert done.device_id == "xa-scan"
    listed = json.loads(run_server(server, "device", "list", "--json").stdout)
    assert listed[0]["state"] == "active"
    assert listed[0]["public_key"] == done.station_public_key


@pytest.mark.sane
def test_the_sheet_on_an_ordinary_scan_enrols_and_is_not_stored(
    tmp_path: Path, archive: tuple[Broker, ServerProcess]
) -> None:
    """The technician puts the sheet on the scanner and scans as for any page (the capture
    path of the button and of `sohoa-agent scan`): the sheet is not stored, the station
    enrols — and an ordinary page through the same path is stored as a page (control).
    SANE's ``pnm`` backend feeds the printed sheet (the ``test`` backend cannot draw one);
    it has no mode option, so the profile's option planning is skipped for it
    (``configure`` returns nothing): the image still comes from SANE."""
    import pypdfium2

    from agent import enrolsheet, profiles
    from agent.capture import sane_device
    from agent.capture import scan as capture
    from agent.config import AgentSettings
    from agent.outbox import outbox as ob
    from agent.profiles import ScanRequest

    _, server = archive
    code, sheet = add_station(server, "xa-press", tmp_path)
    pdf = pypdfium2.PdfDocument(str(sheet))
    pnm = tmp_path / "sheet.ppm"
    pdf[0].render(scale=200 / 72).to_pil().convert("RGB").save(pnm)
    pdf.close()
    blank = tmp_path / "page.ppm"
    Image.new("RGB", (800, 1100), "white").save(blank)
    settings = AgentSettings(data_dir=tmp_path / "agent", scanner="pnm:0", min_free_mb=10)
    request = ScanRequest(source="flatbed", mode="gray", dpi=200)
    known = profiles.load_scanner_profiles()
    with ob.Outbox(settings.data_dir) as outbox:
        with sane_device.open_scanner("pnm:0", known) as scanner:
            scanner.device.filename = str(pnm)
            scanner.configure = lambda request: {}  # type: ignore[method-assign]
            outcome = capture.scan_batch(settings, outbox, scanner, request,
                                         first_sheet=enrolsheet.code_on)  # fmt: skip
        assert outcome.enrolment_code == code and outcome.pages == 0
        assert outbox.batches() == []  # not a page of the archive
        with sane_device.open_scanner("pnm:0", known) as scanner:
            scanner.device.filename = str(blank)
            scanner.configure = lambda request: {}  # type: ignore[method-assign]
            ordinary = capture.scan_batch(settings, outbox, scanner, request,
                                          first_sheet=enrolsheet.code_on)  # fmt: skip
        assert ordinary.enrolment_code is None and ordinary.pages == 1
    done = enrolsheet.enrol_from_sheet(settings, outcome.enrolment_code)
    assert done.device_id == "xa-press"
    listed = json.loads(run_server(server, "device", "list", "--json").stdout)
    assert [(s["device_id"], s["state"]) for s in listed] == [("xa-press", "active")]
    assert listed[0]["public_key"] == done.station_public_key


@pytest.mark.sane
def test_a_page_without_a_sheet_is_not_a_code(tmp_path: Path) -> None:
    from agent import profiles
    from agent.capture import sane_device
    from agent.cli import read_enrolment_sheet
    from agent.uplink import enrol

    pnm = tmp_path / "blank.ppm"
    Image.new("RGB", (800, 1100), "white").save(pnm)
    with sane_device.open_scanner("pnm:0", profiles.load_scanner_profiles()) as scanner:
        scanner.device.filename = str(pnm)
        with pytest.raises(enrol.EnrolError, match="enrol_no_sheet"):
            read_enrolment_sheet(scanner)


@pytest.mark.tesseract
def test_replacement_station_takes_over_the_outbox(
    tmp_path: Path, archive: tuple[Broker, ServerProcess]
) -> None:
    """The Pi of a commune dies with pages not yet sent; its SD card survives. A new sheet
    (--replace) enrols the replacement under the same id; the old outbox, copied without
    the old enrolment, is sent from the new Pi; the old Pi's identity is refused."""
    import shutil

    _, server = archive
    code, _ = add_station(server, "xa-tan-phu-01", tmp_path)
    old = enrolled_agent_env(tmp_path / "old")
    assert run_agent(old, "enrol", code).returncode == 0
    run_agent(old, "import", str(_png(tmp_path / "in" / "a.png")), check=True)
    assert run_agent(old, "sync", "--wait", "--timeout", "120").returncode == 0
    run_agent(old, "import", str(_png(tmp_path / "in2" / "b.png")), check=True)
    old_key = json.loads(run_server(server, "device", "list", "--json").stdout)[0]["public_key"]

    code2, _ = add_station(server, "xa-tan-phu-01", tmp_path, "--replace")
    assert code2 != code
    # The outbox moves; the old enrolment (its private key, its password) does not.
    shutil.copytree(tmp_path / "old", tmp_path / "new", ignore=shutil.ignore_patterns("enrolment"))
    new = enrolled_agent_env(tmp_path / "new")
    out = run_agent(new, "enrol", code2)
    assert out.returncode == 0, out.stdout + out.stderr
    listed = json.loads(run_server(server, "device", "list", "--json").stdout)
    assert listed[0]["state"] == "active" and listed[0]["public_key"] != old_key

    out = run_agent(new, "sync", "--wait", "--timeout", "120")
    assert out.returncode == 0, out.stdout + out.stderr
    batches = server.get_json("/api/v1/batches")
    assert len(batches) == 2  # both batches, the first not duplicated
    assert (
        json.loads(run_agent(new, "status", "--json", check=True).stdout)["pages_waiting_sync"] == 0
    )
    # The old Pi (if it comes back) is refused: its broker password was replaced.
    run_agent(old, "import", str(_png(tmp_path / "in3" / "c.png")), check=True)
    out = run_agent(old, "sync", "--wait", "--timeout", "20")
    assert out.returncode == 75
    assert len(server.get_json("/api/v1/batches")) == 2


def test_revoke_from_the_staff_api_disconnects_at_once_and_is_audited(
    tmp_path: Path, archive: tuple[Broker, ServerProcess]
) -> None:
    import urllib.request

    from test_fleet import WAIT, Peer

    broker, server = archive
    code, _ = add_station(server, "xa-e", tmp_path)
    env = enrolled_agent_env(tmp_path / "agent")
    assert run_agent(env, "enrol", code).returncode == 0
    password = (tmp_path / "agent" / "enrolment" / "mqtt-password").read_text()
    station = Peer(broker, "xa-e", password, "xa-e")  # the station, online
    assert not station.connect().is_failure
    listed: list[dict[str, str]] = server.get_json("/api/v1/stations")  # type: ignore[assignment]
    assert [(s["device_id"], s["state"]) for s in listed] == [("xa-e", "active")]
    assert "public_key" not in listed[0]

    req = urllib.request.Request(
        f"{server.url}/api/v1/stations/xa-e/revoke", method="POST",
        headers={"Authorization": f"Bearer {server.token}"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=30) as resp:
        answer = json.loads(resp.read())
    assert answer["state"] == "revoked" and answer["broker_error"] is None
    assert station.disconnected.wait(WAIT)  # cut off now, not at its next reconnect
    station.client.loop_stop()
    assert Peer(broker, "xa-e", password, "xa-e").connect().is_failure
    rows: list[dict[str, str]] = server.get_json("/api/v1/audit")  # type: ignore[assignment]
    assert any(r["action"] == "station.revoke" and r["target"] == "xa-e" for r in rows)


def _tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A private CA and a broker certificate for localhost / 127.0.0.1."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lưu trữ tỉnh test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
        ]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = folder / "ca.pem", folder / "broker.crt", folder / "broker.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.mark.tesseract
def test_enrol_and_sync_over_tls(tmp_path: Path) -> None:
    """What production does: stations reach the broker by mqtts:// only; the archive hands
    each its broker CA at enrolment. Without a CA it can trust, a station sends nothing."""
    from harness import free_port

    ca, cert, key = _tls_files(tmp_path / "tls")
    tls_port = free_port()
    broker = Broker(
        tmp_path / "broker", dynsec=True,
        extra=f"listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n",
    ).start()  # fmt: skip
    data = tmp_path / "server"
    data.mkdir()
    (data / "broker-admin-password").write_text(broker.admin_password)
    server = ServerProcess(data, broker.ingest_url, settings={
        "SOHOA_STATION_BROKER_URL": f"mqtts://localhost:{tls_port}",
        "SOHOA_STATION_CA_FILE": str(ca),
    }).start()  # fmt: skip
    try:
        code, _ = add_station(server, "xa-tls", tmp_path)
        assert code.startswith("mqtts://xa-tls:")
        assert f"@localhost:{tls_port}/" in code
        env = enrolled_agent_env(tmp_path / "agent")
        untrusted = run_agent(env, "enrol", code, "--timeout", "15")
        assert untrusted.returncode != 0  # the system store does not know this CA
        assert "Traceback" not in untrusted.stderr
        assert "Không xác thực được máy chủ" in untrusted.stderr
        assert not (tmp_path / "agent" / "enrolment" / "enrolment.json").exists()

        out = run_agent(env, "enrol", code, "--ca", str(ca))
        assert out.returncode == 0, out.stdout + out.stderr
        state = json.loads((tmp_path / "agent" / "enrolment" / "enrolment.json").read_text())
        assert state["mqtt_url"] == f"mqtts://xa-tls@localhost:{tls_port}"
        assert Path(state["mqtt_ca_file"]).read_text() == ca.read_text()  # sent by the archive
        run_agent(env, "import", str(_png(tmp_path / "in" / "a.png")), check=True)
        out = run_agent(env, "sync", "--wait", "--timeout", "120")
        assert out.returncode == 0, out.stdout + out.stderr
        assert [b["device_id"] for b in server.get_json("/api/v1/batches")] == ["xa-tls"]
    finally:
        server.stop()
        broker.stop()


def test_station_ids_that_would_replace_the_servers_identities_are_refused(
    tmp_path: Path,
) -> None:
    db = Database(tmp_path / "a.sqlite3")
    for name in ("sohoa-server", "sohoa-admin", "enrol-xa-a"):
        with pytest.raises(stations.FleetError, match="reserved"):
            stations.issue_code(db, name, "Xã X", "", hours=1)
    assert stations.stations(db) == []
    db.close()


def test_revoke_button_in_the_staff_app(
    tmp_path: Path, archive: tuple[Broker, ServerProcess]
) -> None:
    """The admin's button: a real server, a real browser session (login link, CSRF form)."""
    import http.cookiejar
    import re
    import urllib.error
    import urllib.parse
    import urllib.request

    from test_fleet import WAIT, Peer

    broker, server = archive
    code, _ = add_station(server, "xa-web", tmp_path)
    assert run_agent(enrolled_agent_env(tmp_path / "agent"), "enrol", code).returncode == 0
    password = (tmp_path / "agent" / "enrolment" / "mqtt-password").read_text()
    station = Peer(broker, "xa-web", password, "xa-web")
    assert not station.connect().is_failure

    browser = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    link = run_server(server, "login-link", "--user", "test", "--base-url", server.url)
    form = browser.open(link.stdout.strip(), timeout=30).read().decode()
    fields = dict(re.findall(r'name="(csrf|code)" value="([^"]+)"', form))
    browser.open(
        f"{server.url}/login/link", data=urllib.parse.urlencode(fields).encode(), timeout=30
    ).read()
    page = browser.open(f"{server.url}/stations", timeout=30).read().decode()
    assert "xa-web" in page and "Thu hồi" in page
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    # Without the session's CSRF value the button does nothing.
    forged = urllib.parse.urlencode({"csrf": "forged"}).encode()
    with pytest.raises(urllib.error.HTTPError):
        browser.open(f"{server.url}/stations/xa-web/revoke", data=forged, timeout=30)
    assert not station.disconnected.is_set()
    body = urllib.parse.urlencode({"csrf": csrf.group(1)}).encode()
    after = browser.open(f"{server.url}/stations/xa-web/revoke", data=body, timeout=30)
    assert "đã thu hồi" in after.read().decode()  # back on the list, shown revoked
    assert station.disconnected.wait(WAIT)
    station.client.loop_stop()
    rows: list[dict[str, str]] = server.get_json("/api/v1/audit")  # type: ignore[assignment]
    assert any(
        r["action"] == "station.revoke" and r["target"] == "xa-web" and r["actor"] == "test"
        for r in rows
    )
