"""Fonds on the archive the real pipeline built (tests/real_archive.py, through ingest and the
staff API): a hồ sơ made before its fonds existed joins it, is found by the merged commune's
old and new names with and without diacritics, and the closed fonds is handed over with the
command line — papers, a package per hồ sơ, the checklist — then confirmed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from harness import BIN
from test_staff import MA, Staff, make_ho_so, staff  # noqa: F401 - the fixture

from server.archive import audit, fonds
from server.fleet import registry

pytestmark = [pytest.mark.tesseract, pytest.mark.mqtt, pytest.mark.slow]


def _cli(s: Staff, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
    env["SOHOA_DATA_DIR"] = str(s.data_dir)
    env["SOHOA_DATABASE_URL"] = s.db.url
    return subprocess.run([str(BIN / "sohoa-server"), *argv], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def _found(s: Staff, q: str) -> set[str]:
    hits = s.client.get("/api/v1/search", params={"q": q}, headers=s.bearer("viewer")).json()
    return {h["ma_ho_so"] for h in hits if h["kind"] == "ho_so"}


def test_a_merged_communes_fonds_is_found_and_handed_over(staff: Staff, tmp_path: Path) -> None:  # noqa: F811
    make_ho_so(staff)  # organ 000.00.00.H53, made before any fonds: it has none yet
    assert staff.client.get(f"/api/v1/ho-so/{MA}", headers=staff.bearer("viewer")).json()[
        "fonds_code"
    ] is None  # fmt: skip
    assert _found(staff, "Pác Nặm") == set()

    made = _cli(staff, "fonds", "add", "NL", "UBND xã Nghiên Loan", "--unit", "new:01882",
                "--opened", "2025-07-01")  # fmt: skip
    assert made.returncode == 0, made.stderr
    made = _cli(staff, "fonds", "add", "XL", "UBND xã Xuân La", "--organ-id", "000.00.00.H53",
                "--unit", "old:01873")  # fmt: skip
    assert made.returncode == 0, made.stderr
    ho_so = staff.client.get(f"/api/v1/ho-so/{MA}", headers=staff.bearer("viewer")).json()
    assert ho_so["fonds_code"] == "XL"  # claimed by its organ id

    refused = _cli(staff, "fonds", "handover", "XL", "--out", str(tmp_path / "early"))
    assert (
        refused.returncode == 2 and "open" in refused.stderr and "Traceback" not in refused.stderr
    )
    assert not (tmp_path / "early").exists()
    closed = _cli(staff, "fonds", "close", "XL", "--on", "2025-06-30", "--merged-into", "NL",
                  "--deadline", "2026-06-30")  # fmt: skip
    assert closed.returncode == 0, closed.stderr

    # The old commune, its former district and province, the new commune and province, with
    # and without diacritics: all find the hồ sơ of the closed fonds.
    for q in ("xã Xuân La", "xuan la", "huyện Pác Nặm", "pac nam", "Nghiên Loan",
              "tinh bac kan", "Thái Nguyên"):  # fmt: skip
        assert _found(staff, q) == {MA}, q
    staff.login("viewer")  # the hồ sơ list: filtered by the fonds' places, old or new
    for place, found in (("pac nam", True), ("Thái Nguyên", True), ("Tân Phú", False)):
        html = staff.client.get("/ho-so", params={"place": place}).text
        assert (f'href="/ho-so/{MA}"' in html) is found, place
    assert "Xã Nghiên Loan (trước đây: Xã Xuân La)" in staff.client.get("/ho-so").text
    csv_text = staff.client.post(
        "/api/v1/catalogue.csv", headers=staff.bearer("archivist")
    ).content.decode("utf-8-sig")  # the catalogue export names the fonds and both places
    assert "Phông lưu trữ" in csv_text and "UBND xã Xuân La (XL)" in csv_text
    assert "Xã Nghiên Loan (trước đây: Xã Xuân La)" in csv_text
    listed = _cli(staff, "fonds", "list")
    assert "Xã Nghiên Loan (trước đây: Xã Xuân La)" in listed.stdout
    assert "Huyện Pác Nặm" in listed.stdout and "Tỉnh Thái Nguyên (trước đây: Tỉnh Bắc Kạn)" in (
        listed.stdout
    )

    out = tmp_path / "nop-luu-XL"
    done = _cli(staff, "fonds", "handover", "XL", "--out", str(out), "--ben-nhan",
                "Lưu trữ lịch sử tỉnh Thái Nguyên")  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name in ("muc-luc-ho-so-nop-luu.xlsx", "muc-luc-ho-so-nop-luu.pdf",
                 "bien-ban-giao-nhan.pdf", "danh-sach-con-thieu.txt"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    assert (out / "goi" / MA / "METS.xml").is_file()  # the hồ sơ's package (server.archive.aip)
    pdfs = list((out / "goi" / MA / "representations" / "rep1" / "data").glob("*.pdf"))
    assert [p.name for p in pdfs] == [f"{MA}.001.pdf"]
    # The real pipeline flags page 3 (blank) only; the văn bản holds pages 1 and 2, so the
    # checklist has nothing to say unless the package could not be built.
    assert json.loads((out / "checklist.json").read_text(encoding="utf-8")) == []
    # The batch scanned for this fonds: page 3 belongs to no văn bản — the checklist says so.
    with staff.db.tx() as con:
        con.execute("UPDATE batches SET fonds_code = 'XL' WHERE id = 1")
    again = _cli(staff, "fonds", "handover", "XL", "--out", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    missing = json.loads((tmp_path / "again" / "checklist.json").read_text(encoding="utf-8"))
    assert [m["what"] for m in missing] == [
        "1 trang đã quét cho phông này chưa thuộc văn bản nào (chưa biên mục)"
    ]

    for bad in (["--receiver", " ", "--reference", "BB-1"],):
        no = _cli(staff, "fonds", "confirm", "XL", *bad)
        assert no.returncode == 2 and fonds.get(staff.db, "XL").status == "closed"  # type: ignore[union-attr]
    ok = _cli(staff, "fonds", "confirm", "XL", "--receiver", "Trần Thị B",
              "--reference", "BB-12/2026/LTLS", "--on", "2026-05-20")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert fonds.get(staff.db, "XL").status == "handed_over"  # type: ignore[union-attr]
    again = _cli(staff, "fonds", "confirm", "XL", "--receiver", "X", "--reference", "Y")
    assert again.returncode == 2
    actions = [r["action"] for r in audit.recent(staff.db, 50)]
    assert {"fonds.create", "fonds.edit", "fonds.handover.prepare",
            "fonds.handover.confirm"} <= set(actions)  # fmt: skip


def test_stations_are_assigned_fonds_from_the_command_line(staff: Staff) -> None:  # noqa: F811
    registry.issue_code(staff.db, "xa-nghien-loan", "Xã Nghiên Loan", "", hours=1)
    fonds.create(staff.db, "NL", "UBND xã Nghiên Loan", unit_code="new:01882")
    fonds.create(staff.db, "XL", "UBND xã Xuân La", unit_code="old:01873")
    done = _cli(staff, "fonds", "assign", "xa-nghien-loan", "NL", "XL")
    assert done.returncode == 0, done.stderr
    assert registry.get(staff.db, "xa-nghien-loan").fonds_codes == ("NL", "XL")  # type: ignore[union-attr]
    # A batch scanned for XL (as the ingest records it): a hồ sơ made from it takes its
    # organ part from the fonds.
    fonds.update(staff.db, "XL", organ_id="H06.XL")
    with staff.db.tx() as con:
        con.execute("UPDATE batches SET fonds_code = 'XL' WHERE id = 1")
    staff.login("archivist")
    assert 'value="H06.XL"' in staff.client.get("/ho-so/new", params={"batch": 1}).text
    batch = staff.client.get("/api/v1/batches/1", headers=staff.bearer("viewer")).json()
    assert batch["fonds_code"] == "XL"
    staff.login("admin")  # the fleet view names each station's fonds before and after 2025
    html = staff.client.get("/stations").text
    assert "UBND xã Xuân La — Xã Nghiên Loan (trước đây: Xã Xuân La)" in html
    for argv in (["xa-nghien-loan", "NOPE"], ["xa-unknown", "NL"]):
        refused = _cli(staff, "fonds", "assign", *argv)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, argv
    assert registry.get(staff.db, "xa-nghien-loan").fonds_codes == ("NL", "XL")  # type: ignore[union-attr]


def test_fonds_pages_refuse_the_wrong_role_a_forged_form_and_other_files(
    staff: Staff,  # noqa: F811
) -> None:
    """The attacks first: a viewer reading or an archivist making fonds, a form without the
    session's CSRF value, a handover download outside its list of files."""
    from test_staff import csrf_of

    fonds.create(staff.db, "XL", "UBND xã Xuân La", unit_code="old:01873", status="closed")
    c = staff.client
    assert c.get("/fonds", follow_redirects=False).status_code == 303  # not logged in
    staff.login("viewer")
    assert c.get("/fonds").status_code == 403
    c.post("/logout", data={"csrf": csrf_of(c.get("/").text)})
    csrf = staff.login("archivist")
    assert c.get("/fonds").status_code == 200
    made = c.post("/fonds", data={"csrf": csrf, "code": "EVIL", "name": "x"})
    assert made.status_code == 403 and fonds.get(staff.db, "EVIL") is None
    closed = c.post("/fonds/XL/handover", data={"csrf": "forged"})
    assert closed.status_code == 403 and fonds_handover_rows(staff) == 0
    prepared = c.post("/fonds/XL/handover", data={"csrf": csrf}, follow_redirects=False)
    assert prepared.status_code == 303
    assert fonds_handover_rows(staff) == 1
    for name in ("..%2F..%2Farchive.sqlite3", "checklist.json", "receipt.key"):
        assert c.get(f"/fonds/XL/handover/{name}").status_code == 404, name
    assert c.get("/fonds/XL/handover/danh-sach-con-thieu.txt").status_code == 200
    english = c.get("/fonds", params={"lang": "en"}).text
    assert "Archival fonds" in english and "District (before 1 July 2025)" in english
    c.get("/fonds", params={"lang": "vi"})
    # The API: assignments are the admin's; a fonds list is anyone's who reads.
    body = {"fonds_codes": ["XL"]}
    registry.issue_code(staff.db, "xa-a", "Xã A", "", hours=1)
    put = c.put("/api/v1/stations/xa-a/fonds", json=body, headers=staff.bearer("archivist"))
    assert put.status_code == 403
    put = c.put("/api/v1/stations/xa-a/fonds", json=body, headers=staff.bearer("admin"))
    assert put.status_code == 200 and put.json()["fonds_codes"] == ["XL"]
    listed = c.get("/api/v1/fonds", headers=staff.bearer("viewer")).json()
    assert listed[0]["lineage"]["district"]["old"] == "Huyện Pác Nặm"


def fonds_handover_rows(s: Staff) -> int:
    return int(s.db.read().execute("SELECT count(*) FROM fonds_handovers").fetchone()[0])
