"""Phông lưu trữ (server.archive.fonds) and the 2025 reorganisation as data
(server.archive.units), on both engines (the ``database`` fixture: SQLite and a real
PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from server.archive import fonds, fonds_handover, units
from server.archive.fonds import FondsError
from server.store.db import Database

# The demo merger (from the library's data, not typed here): xã Xuân La and xã An Thắng of
# huyện Pác Nặm, tỉnh Bắc Kạn, became part of xã Nghiên Loan, tỉnh Thái Nguyên.
XUAN_LA = "old:01873"
NGHIEN_LOAN_NEW = "new:01882"


def _merger(db: Database) -> None:
    fonds.create(db, "NL", "UBND xã Nghiên Loan", organ_id="H19.NL",
                 unit_code=NGHIEN_LOAN_NEW, opened="2025-07-01")  # fmt: skip
    fonds.create(db, "XL", "UBND xã Xuân La", organ_id="H06.XL", unit_code=XUAN_LA,
                 opened=dt.date(1976, 1, 1))  # fmt: skip


def test_units_come_from_the_library_old_and_new() -> None:
    old = units.unit(XUAN_LA)
    assert old is not None and old.name == "Xã Xuân La" and old.district == "Huyện Pác Nặm"
    after = units.successor(XUAN_LA)
    assert after is not None and after.code == NGHIEN_LOAN_NEW
    assert after.province == "Tỉnh Thái Nguyên"
    province = units.successor("old:p06")
    assert province is not None and province.name == "Tỉnh Thái Nguyên"
    assert units.successor("old:d060") is None  # districts ended on 1 July 2025
    assert units.find("pac nam")[0].code == "old:d060"  # without diacritics
    assert {u.code for u in units.find("xã Nghiên Loan")} >= {"old:01882", NGHIEN_LOAN_NEW}
    with pytest.raises(units.UnitError):
        units.unit("01873")  # no era: ambiguous, refused


def test_fonds_lifecycle_and_lineage(database: Path | str) -> None:
    db = Database(database)
    _merger(db)
    with pytest.raises(FondsError) as refused:
        fonds.create(db, "XL2", "again", organ_id="H06.XL")
    assert refused.value.reason == "organ_taken"
    with pytest.raises(FondsError):
        fonds.create(db, "bad code", "x")
    with pytest.raises(FondsError):
        fonds.create(db, "U1", "x", unit_code="old:99999")

    closed = fonds.close(db, "XL", closed="2025-06-30", merged_into="NL", deadline="2026-03-31")
    assert closed.status == "closed" and closed.merged_into == "NL"
    assert closed.closed == dt.date(2025, 6, 30) and closed.deadline == dt.date(2026, 3, 31)
    assert [f.code for f in fonds.list(db)] == ["NL", "XL"]
    assert [f.code for f in fonds.list(db, status="open")] == ["NL"]
    assert fonds.for_organ(db, "H06.XL") == closed
    assert fonds.for_organ(db, "H99") is None

    line = fonds.lineage(db, "XL")
    assert line.commune == ("Xã Xuân La", "Xã Nghiên Loan")
    assert line.district == ("Huyện Pác Nặm", "")
    assert line.province == ("Tỉnh Bắc Kạn", "Tỉnh Thái Nguyên")
    commune, district, province = fonds.lineage(db, "NL")
    assert commune.new == "Xã Nghiên Loan" and province.new == "Tỉnh Thái Nguyên"
    assert not district.old and not district.new
    names = fonds.search_names(db, "XL")
    assert {"Xã Xuân La", "Huyện Pác Nặm", "Tỉnh Bắc Kạn", "UBND xã Nghiên Loan"} <= set(names)

    with pytest.raises(FondsError):
        fonds.update(db, "NL", merged_into="NL")
    with pytest.raises(FondsError):
        fonds.update(db, "NL", status="gone")
    # Handed over only through the receiving archive's recorded confirmation.
    with pytest.raises(FondsError, match="receipt"):
        fonds.update(db, "XL", status="handed_over")
    with pytest.raises(FondsError, match="receipt"):
        fonds.create(db, "H1", "x", status="handed_over")
    with pytest.raises(FondsError, match="no prepared handover"):
        fonds_handover.confirm(db, "XL", receiver="B", reference="BB-1")
    assert fonds.get(db, "XL").status == "closed"  # type: ignore[union-attr]
    rows = db.read().execute("SELECT action, target FROM audit ORDER BY id").fetchall()
    assert [(r[0], r[1]) for r in rows] == [
        ("fonds.create", "NL"), ("fonds.create", "XL"), ("fonds.edit", "XL")
    ]  # fmt: skip


def test_the_manifest_carries_the_chosen_fonds_and_old_manifests_still_verify() -> None:
    """protocol: ``fonds`` is optional; an agent that predates it sends none, and its signed
    bytes are the same as before (exclude_none), so the archive still verifies it."""
    import json

    from agent.config import AgentSettings
    from agent.outbox import outbox as ob
    from agent.uplink.transfer import build_manifests
    from protocol import signing
    from protocol.messages import Manifest

    key = signing.new_key()
    batch = ob.BatchRecord(
        batch_id="a" * 32, state=ob.READY, created_at=1.0, source="scan", scanner=None,
        profile=None, page_count=0, metadata={"ma_ho_so": "X.2025.1", ob.FONDS_KEY: "XL"},
        attempts=0, last_error=None, secret=False,
    )  # fmt: skip
    (msg,) = build_manifests("xa-nghien-loan", batch, [], "1.0", key)
    assert msg.fonds == "XL" and msg.metadata == {"ma_ho_so": "X.2025.1"}
    assert signing.verify(msg, msg.signature, signing.public_key_hex(key))

    old_batch = ob.BatchRecord(**{**batch.__dict__, "metadata": {}})
    (old,) = build_manifests("xa-nghien-loan", old_batch, [], "1.0", key)
    wire = json.loads(old.model_dump_json(exclude_none=True))
    assert "fonds" not in wire and "fonds" not in signing.canonical(old).decode()
    again = Manifest.model_validate(wire)  # an old agent's manifest, as the archive reads it
    assert again.fonds is None and signing.verify(
        again, again.signature, signing.public_key_hex(key)
    )
    with pytest.raises(ValueError, match="fonds"):
        Manifest.model_validate({**wire, "fonds": "no spaces allowed"})

    settings = AgentSettings(fonds="NL, XL")  # type: ignore[arg-type]  # as SOHOA_FONDS
    assert settings.fonds == ["NL", "XL"]
    with pytest.raises(ValueError, match="fonds code"):
        AgentSettings(fonds=["bad code"])


def test_the_technician_chooses_the_fonds_on_the_screen(tmp_path: Path) -> None:
    """The station's own daemon behind the real screen server (no scanner needed): the
    technician picks one of the station's fonds for the next batches; another is refused;
    the next batch's metadata carries the choice (the manifest's ``fonds``)."""
    import json
    import urllib.error
    import urllib.request

    from agent.config import AgentSettings
    from agent.daemon import Daemon
    from agent.outbox import outbox as ob
    from agent.screen.web import Screen

    settings = AgentSettings(data_dir=tmp_path, device_id="xa-nghien-loan", fonds=["NL", "XL"])
    station = Daemon(settings, "boot")
    station.outbox = ob.Outbox(settings.data_dir)
    server = Screen(station, port=0).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def post(code: str) -> int:
        body = json.dumps({"fonds": code}).encode()
        req = urllib.request.Request(base + "/api/fonds", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        try:
            return int(urllib.request.urlopen(req, timeout=10).status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    try:
        state = json.load(urllib.request.urlopen(base + "/api/state", timeout=10))
        assert state["fonds"] == "NL" and state["fonds_choices"] == ["NL", "XL"]  # the default
        assert post("XL") == 200
        assert post("OTHER") == 400  # not one of the station's: never sent
        state = json.load(urllib.request.urlopen(base + "/api/state", timeout=10))
        assert state["fonds"] == "XL"
        assert station._batch_metadata("") == {ob.FONDS_KEY: "XL"}
    finally:
        server.shutdown()
        station.outbox.close()


def test_a_long_press_chooses_the_next_fonds_when_the_station_is_set_so(tmp_path: Path) -> None:
    """long_press = next_fonds: button 1 held chooses the next of the station's fonds (round)
    and scans nothing; by default a long press still scans from the alternate source."""
    from agent.buttons import ButtonEvent
    from agent.config import AgentSettings
    from agent.daemon import Daemon
    from agent.outbox import outbox as ob

    settings = AgentSettings(data_dir=tmp_path, device_id="xa-nghien-loan", fonds=["NL", "XL"],
                             long_press="next_fonds")  # fmt: skip
    station = Daemon(settings, "boot")
    station.outbox = ob.Outbox(settings.data_dir)
    try:
        held = ButtonEvent(1, "long", 0.0)
        station._on_press(held, "alternate")
        assert station.fonds == "XL" and station.outbox.batches() == []
        station._on_press(held, "alternate")
        assert station.fonds == "NL" and station.outbox.batches() == []
    finally:
        station.outbox.close()


@pytest.mark.browser
def test_the_screens_fonds_choice_in_chromium(tmp_path: Path) -> None:
    """The technician's page itself: the choice shows only with several fonds, and choosing
    one in the list is what the station then holds."""
    from test_browser import ARGS, CHROMIUM

    from agent.config import AgentSettings
    from agent.daemon import Daemon
    from agent.outbox import outbox as ob
    from agent.screen.web import Screen

    if not CHROMIUM.exists() and os.environ.get("CI") != "true":
        pytest.skip("Debian chromium not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    settings = AgentSettings(data_dir=tmp_path, device_id="xa-nghien-loan", fonds=["NL", "XL"])
    station = Daemon(settings, "boot")
    station.outbox = ob.Outbox(settings.data_dir)
    server = Screen(station, port=0).start()
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page(viewport={"width": 800, "height": 480}, locale="vi-VN",
                                    bypass_csp=True)  # fmt: skip
            page.set_default_timeout(20_000)
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            page.wait_for_selector("#fonds-row:not([hidden])")
            assert page.locator("#fonds option").all_inner_texts() == ["NL", "XL"]
            assert page.input_value("#fonds") == "NL"
            page.select_option("#fonds", "XL")
            page.wait_for_selector("text=Đã chọn")
            assert station.fonds == "XL"
            browser.close()
    finally:
        server.shutdown()
        station.outbox.close()
