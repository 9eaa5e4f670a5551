"""Cover sheets build the catalogue (issue 17): sheets printed by `sohoa-agent coversheet` are
put between pages, the real agent reads them (import → pipeline), the batch travels on a USB
bundle into the real server, and it arrives split into văn bản under the hồ sơ each sheet
names — created when missing and marked for an archivist to confirm — numbered
`<mã hồ sơ>.<số thứ tự>`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import test_staff
from corpus import PageSpec, render_page, save_png
from harness import BIN, agent_env, enrol_offline, run_agent
from test_staff import MA, Staff, make_ho_so

from server.archive import coversheets
from server.archive.records import HoSo, Records, VanBanIn
from server.store.db import Database

NEW = "000.00.00.H53.2001.07.XD"  # no such hồ sơ at the archive yet
KNOWN = "000.00.00.H53.1998.01.HT"
staff = test_staff.staff  # the fixture: the archive the real pipeline built (copy per test)


@pytest.mark.slow
@pytest.mark.tesseract
def test_a_batch_with_cover_sheets_arrives_split(tmp_path: Path) -> None:
    env = agent_env(tmp_path / "agent", "mqtt://127.0.0.1:1")
    pages = tmp_path / "in"
    pages.mkdir()
    title = "Giấy phép xây dựng"
    run_agent(env, "coversheet", "--ma-ho-so", NEW, "--first", "2", "--count", "1",
              "--title", title, "--out", str(pages / "02-cover.pdf"), check=True)  # fmt: skip
    run_agent(env, "coversheet", "--ma-ho-so", KNOWN, "--first", "5", "--count", "1",
              "--out", str(pages / "05-cover.pdf"), check=True)  # fmt: skip
    for name, seed in (("01", 1), ("03", 3), ("04", 4), ("06", 6)):
        save_png(
            render_page(PageSpec(dpi=200, n_lines=6, seed=seed)), pages / f"{name}.png", dpi=200
        )
    run_agent(env, "import", str(pages), check=True)
    enrol_offline(tmp_path / "server", tmp_path / "agent", "xa-test-01")  # bundles are signed
    usb = tmp_path / "usb"
    usb.mkdir()
    run_agent(env, "export", str(usb), check=True)

    server_dir = tmp_path / "server"
    db = Database(server_dir / "archive.sqlite3")
    records = Records(db)
    body = {"organ_id": "000.00.00.H53", "nam": 1998, "ky_hieu": "01.HT", "tieu_de": "Hộ tịch",
            "thoi_han_bao_quan": "Vĩnh viễn"}  # fmt: skip
    records.save_ho_so(HoSo.model_validate(body), "lan")
    env_server = {"SOHOA_SERVER_DATA_DIR": str(server_dir), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [str(BIN / "sohoa-server"), "import-bundle", str(next(usb.glob("sohoa-bundle-*")))],
        env=env_server, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr

    page_of = {
        r["source_name"]: r["id"]
        for r in db.read().execute("SELECT id, source_name FROM pages ORDER BY page_no")
    }
    assert len(page_of) == 6, page_of
    by_file = {Path(k.split("#")[0]).stem: v for k, v in page_of.items()}
    new = records.ho_so(NEW)
    assert new is not None and new.ghi_chu == coversheets.UNCONFIRMED
    assert new.tieu_de == "Giấy phép xây dựng"
    assert [(d.file_name, d.pages) for d in new.van_ban] == [
        (f"{NEW}.002", [by_file["03"], by_file["04"]])
    ]
    known = records.ho_so(KNOWN)
    assert known is not None and known.ghi_chu == ""  # not touched beyond its văn bản
    assert [(d.file_name, d.pages) for d in known.van_ban] == [(f"{KNOWN}.005", [by_file["06"]])]
    # Page 01 came before any sheet: left for staff. The split is done once.
    assert coversheets.split_new_batches(records) == []
    actors = {
        r[0] for r in db.read().execute("SELECT actor FROM audit WHERE action LIKE 'van_ban%'")
    }
    assert actors == {coversheets.ACTOR}


def test_a_taken_number_goes_to_the_next_and_a_bad_code_is_reported(tmp_path: Path) -> None:
    from test_ingest import BatchSrc, PageSrc

    from protocol import topics
    from server.ingest import Ingest
    from server.store.files import Store

    db = Database(tmp_path / "archive.sqlite3")
    batch = BatchSrc(
        pages=[PageSrc(page_no=n, parts={"text": b"trang %d" % n}) for n in range(1, 6)]
    )
    ingest = Ingest(db, Store(tmp_path / "store"), accept_unenrolled=True)
    ingest.handle(topics.up(batch.device, "manifest"), batch.manifest())
    for payload in batch.all_chunks(64 * 1024):
        ingest.handle(topics.up(batch.device, "chunk"), payload)
    records = Records(db)
    records.save_ho_so(HoSo.model_validate({
        "organ_id": "000.00.00.H53", "nam": 1998, "ky_hieu": "01.HT", "tieu_de": "Hộ tịch",
        "thoi_han_bao_quan": "Vĩnh viễn"}), "lan")  # fmt: skip
    records.add_van_ban(KNOWN, VanBanIn(stt=1, pages=[5]), "lan")
    sheets = {
        1: {"found": True, "ma_ho_so": KNOWN, "van_ban": 1, "title": ""},
        3: {"found": True, "ma_ho_so": "not-a-code", "van_ban": None, "title": ""},
    }
    with db.tx() as con:
        for page_no, sheet in sheets.items():
            con.execute(
                "UPDATE pages SET decisions = ?, flags = '[\"separator\"]' WHERE page_no = ?",
                (json.dumps({"cover_sheet": sheet}), page_no),
            )
    (split,) = coversheets.split_new_batches(records)
    assert split.van_ban == [f"{KNOWN}.002"]
    assert any("số thứ tự 1 was taken" in p for p in split.problems)
    assert any("not-a-code" in p for p in split.problems)
    assert records.ho_so("not-a-code") is None


@pytest.mark.tesseract
@pytest.mark.mqtt
@pytest.mark.slow
def test_staff_correct_a_split_through_the_api(staff: Staff) -> None:
    make_ho_so(staff)  # văn bản .001 = pages 1, 2
    url = f"/api/v1/ho-so/{MA}/van-ban/1/pages"
    archivist = staff.bearer("archivist")
    assert (
        staff.client.put(url, json={"pages": [2]}, headers=staff.bearer("viewer")).status_code
        == 403
    )
    r = staff.client.put(url, json={"pages": [2, 3]}, headers=archivist)
    assert r.status_code == 200, r.text
    assert r.json()["pages"] == [2, 3] and r.json()["so_trang"] == 2
    assert staff.client.put(url, json={"pages": [2, 2]}, headers=archivist).status_code == 409
    assert staff.client.put(url, json={"pages": [999]}, headers=archivist).status_code == 404
    row = (
        staff.db.read()
        .execute("SELECT detail FROM audit WHERE action = 'van_ban.pages'")
        .fetchone()
    )
    assert json.loads(row["detail"]) == {"before": [1, 2], "after": [2, 3]}
