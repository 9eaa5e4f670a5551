"""The fonds an admin assigns reaches the station (issue 21): the archive publishes a signed,
retained :class:`protocol.messages.FondsAssignment` on the station's own down topic; the
station keeps it only when its pinned archive key signed it, and uses it as its choice list
instead of its local ``fonds`` setting. Attacks first (a forged, unsigned, foreign or replayed
assignment changes nothing), then the real path: Mosquitto with dynamic security,
``sohoa-server run``, ``sohoa-agent enrol`` and ``sohoa-agent sync``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from harness import Broker, ServerProcess, enrolled_agent_env, run_agent, run_server

from agent.config import AgentSettings, load
from agent.daemon import Daemon
from agent.outbox import outbox as ob
from agent.uplink import assignment
from agent.uplink.mqtt_link import MqttLink
from agent.uplink.sync import Syncer
from protocol import envelope, signing, topics
from protocol.messages import AssignedFonds, FondsAssignment

DEVICE = "xa-nghien-loan"


def _assignment(
    key: object | None, codes: list[str], at: float, device: str = DEVICE
) -> FondsAssignment:
    msg = FondsAssignment(
        device_id=device,
        msg_id=uuid.uuid4().hex,
        sent_at=at,
        assigned_at=at,
        fonds=tuple(AssignedFonds(code=c, name=f"Phông {c}") for c in codes),
    )
    if key is None:
        return msg
    return msg.model_copy(update={"signature": signing.sign(msg, key)})  # type: ignore[arg-type]


def test_only_an_assignment_the_pinned_archive_key_signed_is_kept(tmp_path: Path) -> None:
    """Forged (another key), unsigned, altered after signing, meant for another station, or
    older than the one held: refused, nothing written, the choice list unchanged."""
    archive, forger = signing.new_key(), signing.new_key()
    trusted = {signing.public_key_hex(archive)}
    local = ["LOCAL"]

    def choice_list() -> list[str]:
        return assignment.choices(tmp_path, DEVICE, trusted, local)[0]

    attacks = [
        _assignment(forger, ["EVIL"], 100.0),
        _assignment(None, ["EVIL"], 100.0),
        _assignment(archive, ["NL"], 100.0).model_copy(
            update={"fonds": (AssignedFonds(code="EVIL"),)}
        ),
        _assignment(archive, ["EVIL"], 100.0, device="xa-khac"),
    ]
    for forged in attacks:
        with pytest.raises(assignment.AssignmentRefused):
            assignment.record(tmp_path, DEVICE, trusted, forged)
        assert choice_list() == local  # not yet told: the local setting
    assert not (tmp_path / assignment.FILE).exists()
    with pytest.raises(assignment.AssignmentRefused, match="no archive key"):
        assignment.record(tmp_path, DEVICE, set(), _assignment(archive, ["NL"], 1.0))

    assert assignment.record(tmp_path, DEVICE, trusted, _assignment(archive, ["XL", "NL"], 200.0))
    assert assignment.choices(tmp_path, DEVICE, trusted, local) == (
        ["XL", "NL"], {"XL": "Phông XL", "NL": "Phông NL"}
    )  # fmt: skip
    # An old genuine assignment replayed does not undo a newer one.
    with pytest.raises(assignment.AssignmentRefused, match="older"):
        assignment.record(tmp_path, DEVICE, trusted, _assignment(archive, ["NL"], 150.0))
    assert choice_list() == ["XL", "NL"]
    # The broker's retained copy of the same list, older than the one held since: no
    # change, no refusal (it comes at every reconnection).
    held = (tmp_path / assignment.FILE).read_bytes()
    assert not assignment.record(
        tmp_path, DEVICE, trusted, _assignment(archive, ["XL", "NL"], 150.0)
    )
    assert (tmp_path / assignment.FILE).read_bytes() == held
    # The file on disk is checked again when read: edited by hand, it is not used.
    path = tmp_path / assignment.FILE
    path.write_text(path.read_text().replace('"XL"', '"EV"'))
    assert choice_list() == local


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


def _enrol(server: ServerProcess, device: str, folder: Path) -> dict[str, str]:
    sheet = folder.parent / f"{device}.pdf"  # never in the working directory
    out = run_server(
        server, "device", "add", device, "--commune", "Xã Nghiên Loan", "--sheet", str(sheet)
    )
    assert out.returncode == 0, out.stderr
    env = enrolled_agent_env(folder)
    out = run_agent(env, "enrol", out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0, out.stdout + out.stderr
    return env


@pytest.mark.mqtt
@pytest.mark.dynsec
@pytest.mark.slow
def test_the_admins_assignment_reaches_the_station_and_a_forged_one_does_not(
    tmp_path: Path, archive: tuple[Broker, ServerProcess]
) -> None:
    from test_fleet import Peer

    broker, server = archive
    for code, name in (("NL", "UBND xã Nghiên Loan"), ("XL", "UBND xã Xuân La")):
        assert run_server(server, "fonds", "add", code, name).returncode == 0
    env = _enrol(server, DEVICE, tmp_path / "agent")
    _enrol(server, "xa-khac", tmp_path / "other")
    pinned = run_server(server, "receipt-key").stdout.strip()
    # The station's own setting says LOCAL; nobody edits it in this test.
    station = Daemon(
        AgentSettings(data_dir=tmp_path / "agent", device_id=DEVICE, server_public_key=pinned,
                      fonds=["LOCAL"]),
        "boot",
    )  # fmt: skip
    assert station.fonds_choices()[0] == ["LOCAL"] and station.fonds == "LOCAL"

    def assign(*codes: str) -> None:
        status, body, _ = server.request(
            "PUT", f"/api/v1/stations/{DEVICE}/fonds", {"fonds_codes": list(codes)}
        )
        assert status == 200, body

    # Assigned while the station is offline: retained, it hears it at its next connection.
    assign("XL", "NL")
    assert run_agent(env, "sync").returncode == 0
    assert station.fonds_choices() == (
        ["XL", "NL"], {"XL": "UBND xã Xuân La", "NL": "UBND xã Nghiên Loan"}
    )  # fmt: skip
    assert station._batch_metadata("") == {"fonds": "XL"}  # the new default, first
    assert station.set_fonds("NL") and not station.set_fonds("LOCAL")

    # Another station cannot write the station's down topic at all (broker ACL) ...
    password = (tmp_path / "other" / "enrolment" / "mqtt-password").read_text()
    intruder = Peer(broker, "xa-khac", password, "xa-khac")
    assert not intruder.connect().is_failure
    forged = _assignment(signing.new_key(), ["EVIL"], time.time() + 3600)
    topic = topics.down(DEVICE, "fonds")
    assert intruder.publish(topic, envelope.encode(forged)).is_failure
    intruder.close()
    # ... and one that does get through (here with the ingest identity itself, as if its
    # password had leaked) is refused by the station: not signed by the key it pinned.
    ingest = urlsplit(broker.ingest_url)
    assert ingest.username and ingest.password
    leak = Peer(broker, ingest.username, ingest.password, "leaked-ingest")
    assert not leak.connect().is_failure
    info = leak.client.publish(topic, envelope.encode(forged), qos=1, retain=True)
    info.wait_for_publish(10)
    leak.close()
    out = run_agent(env, "sync")
    assert out.returncode == 0
    assert "ignored a fonds assignment" in out.stderr
    assert station.fonds_choices()[0] == ["XL", "NL"]  # unchanged

    # A new assignment replaces the forged retained one and reaches the station.
    assign("NL")
    assert run_agent(env, "sync").returncode == 0
    assert station.fonds_choices()[0] == ["NL"]
    assert station.fonds == "NL"
    held = json.loads((tmp_path / "agent" / assignment.FILE).read_text())
    assert held["device_id"] == DEVICE and held["signature"]
    # Online at the time: a station connected (the daemon's link, idle) hears a change made
    # on the page / API at once; one made with the CLI (another process, no broker client)
    # when it next comes online (its status tells the ingest, which sends the list again).
    settings = load(environ=env)
    outbox = ob.Outbox(settings.data_dir)
    link = MqttLink(settings, "boot", "test")
    syncer = Syncer(settings, outbox, link, "test")

    def heard(expected: list[str]) -> list[str]:
        deadline = time.monotonic() + 60  # a bound for a broken build, not a measurement
        while station.fonds_choices()[0] != expected and time.monotonic() < deadline:
            syncer.collect_commands(0.5)
        return station.fonds_choices()[0]

    try:
        link.connect()
        assign("XL")
        assert heard(["XL"]) == ["XL"]
        link.close()
        assert run_server(server, "fonds", "assign", DEVICE, "NL", "XL").returncode == 0
        link.connect()
        assert heard(["NL", "XL"]) == ["NL", "XL"]
    finally:
        link.close()
        outbox.close()

    # The other station's list is its own (still its local setting: nothing assigned).
    assert (
        not (tmp_path / "other" / assignment.FILE).exists()
        or json.loads((tmp_path / "other" / assignment.FILE).read_text())["fonds"] == []
    )


@pytest.mark.browser
def test_the_screen_shows_the_archives_list_and_follows_its_changes(tmp_path: Path) -> None:
    """The technician's page in Chromium: the archive's list (with names) replaces the local
    setting, and a later assignment of as many fonds but other ones replaces the list on the
    open page (no reload)."""
    import os

    from test_browser import ARGS, CHROMIUM

    from agent.screen.web import Screen

    if not CHROMIUM.exists() and os.environ.get("CI") != "true":
        pytest.skip("Debian chromium not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    key = signing.new_key()
    pinned = signing.public_key_hex(key)
    settings = AgentSettings(data_dir=tmp_path, device_id=DEVICE, server_public_key=pinned,
                             fonds=["LOCAL", "OTHER"])  # fmt: skip
    station = Daemon(settings, "boot")
    station.outbox = ob.Outbox(settings.data_dir)
    assert assignment.record(tmp_path, DEVICE, {pinned}, _assignment(key, ["NL", "XL"], 1.0))
    server = Screen(station, port=0).start()
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page(viewport={"width": 800, "height": 480}, locale="vi-VN",
                                    bypass_csp=True)  # fmt: skip
            page.set_default_timeout(20_000)
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            page.wait_for_selector("#fonds-row:not([hidden])")
            assert page.locator("#fonds option").all_inner_texts() == [
                "NL — Phông NL", "XL — Phông XL"
            ]  # fmt: skip
            assert page.input_value("#fonds") == "NL"
            assignment.record(tmp_path, DEVICE, {pinned}, _assignment(key, ["BK", "NL"], 2.0))
            page.wait_for_selector("#fonds option[value='BK']", state="attached")
            assert page.locator("#fonds option").all_inner_texts() == [
                "BK — Phông BK", "NL — Phông NL"
            ]  # fmt: skip
            assert page.input_value("#fonds") == "NL"  # the technician's choice still holds
            browser.close()
    finally:
        server.shutdown()
        station.outbox.close()
