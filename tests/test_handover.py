"""The handover papers from an archive built through ingest and the staff API: the Mục lục hồ
sơ nộp lưu (XLSX and PDF) and the Biên bản giao nhận, read back by tesseract (`vie`)."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from harness import BIN
from test_staff import MA, Staff, make_ho_so, staff  # noqa: F401 - the fixture


def _ocr(pdf: Path, tmp: Path) -> str:
    text = ""
    for i, page in enumerate(pdfium.PdfDocument(pdf)):
        png = tmp / f"{pdf.stem}-{i}.png"
        page.render(scale=200 / 72).to_pil().save(png)
        text += subprocess.run(
            ["tesseract", str(png), "stdout", "-l", "vie"],
            capture_output=True, text=True, check=True,
            env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        ).stdout  # fmt: skip
    return text


@pytest.mark.tesseract
def test_handover_papers(staff: Staff, tmp_path: Path) -> None:  # noqa: F811
    make_ho_so(staff)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
    env["SOHOA_DATA_DIR"] = str(staff.data_dir)
    env["SOHOA_DATABASE_URL"] = staff.db.url
    out = tmp_path / "nop-luu"
    cmd = [str(BIN / "sohoa-server"), "handover", "000.00.00.H53", "--out", str(out),
           "--ben-giao", "Ủy ban nhân dân xã Tân Lập"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    from openpyxl import load_workbook

    ws = load_workbook(io.BytesIO((out / "muc-luc-ho-so-nop-luu.xlsx").read_bytes())).active
    assert ws["A1"].value == "MỤC LỤC HỒ SƠ NỘP LƯU"
    assert ws["B5"].value == "Mã hồ sơ" and ws["B6"].value == MA and ws["G6"].value == 2

    for name in ("muc-luc-ho-so-nop-luu.pdf", "bien-ban-giao-nhan.pdf"):
        doc = pdfium.PdfDocument(out / name)
        sizes = {tuple(round(x) for x in page.get_size()) for page in doc}
        assert sizes <= {(595, 842), (842, 595)}, sizes  # A4, portrait or landscape
    muc_luc = _ocr(out / "muc-luc-ho-so-nop-luu.pdf", tmp_path)
    assert "MỤC LỤC HỒ SƠ NỘP LƯU" in muc_luc and "khai thác khoáng sản" in muc_luc
    bien_ban = _ocr(out / "bien-ban-giao-nhan.pdf", tmp_path)
    # ("BÊN GIAO" is read as "BỀN GIAO" by vie's fast model: a stacked-diacritic confusion.)
    for words in ("BIÊN BẢN GIAO NHẬN", "ĐẠI DIỆN BÊN NHẬN", "1 hồ sơ, 2 trang", "Tân Lập"):
        assert words in bien_ban, bien_ban

    nothing = subprocess.run([*cmd[:2], "handover", "000.00.00.X99", "--out", str(out)],
                             env=env, capture_output=True, text=True)  # fmt: skip
    assert nothing.returncode == 2 and "Traceback" not in nothing.stderr


def test_station_list_shows_what_the_station_said(staff: Staff) -> None:  # noqa: F811
    """A station reports ``key: English detail``; staff read its Vietnamese line (the detail
    stays in the tooltip)."""
    from test_ingest import env

    from protocol import envelope, topics
    from protocol.messages import Telemetry
    from server.ingest import Ingest
    from server.store.files import Store

    device = staff.client.get("/api/v1/devices", headers=staff.bearer("viewer")).json()[0]
    tel = Telemetry(**env(device["device_id"]), last_error="disk_full: 12 MB free < 500 MB")  # type: ignore[arg-type]
    Ingest(staff.db, Store(staff.data_dir / "store"), accept_unenrolled=True).handle(
        topics.up(device["device_id"], "telemetry"), envelope.encode(tel)
    )
    staff.login("viewer")
    home = staff.client.get("/").text
    assert "Ổ đĩa sắp đầy — không nhận bản quét mới." in home
    assert 'title="disk_full: 12 MB free &lt; 500 MB"' in home
