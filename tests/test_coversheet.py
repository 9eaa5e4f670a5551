"""QR cover sheets: printed by the agent, recognised on scanned pages, splitting a batch."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from harness import agent_env, run_agent

from agent.outbox import outbox as ob
from agent.pipeline.coversheet import CoverSheet, CoverSheetError, detect, render, split_documents


def test_payload_round_trip_and_validation() -> None:
    sheet = CoverSheet("000.00.00.H01.2024.HS-05", 3, "Hồ sơ đất đai | thôn 2")
    parsed = CoverSheet.parse(sheet.payload())
    assert parsed == CoverSheet("000.00.00.H01.2024.HS-05", 3, "Hồ sơ đất đai / thôn 2")
    assert CoverSheet.parse("hello") is None
    assert CoverSheet.parse("SOHOA1|bad code with spaces||") is None
    with pytest.raises(CoverSheetError):
        CoverSheet("ma|ho").payload()
    with pytest.raises(CoverSheetError):
        CoverSheet("H01", 1000).payload()


def test_a_printed_sheet_is_recognised_even_skewed_and_noisy() -> None:
    sheet = CoverSheet("000.00.00.H01.2024.HS-05", 12)
    page = np.array(render(sheet, dpi=300))
    h, w = page.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 3.0, 1.0)
    page = cv2.warpAffine(page, m, (w, h), borderValue=235)
    noise = np.random.default_rng(1).normal(0, 8, page.shape)
    page = np.clip(page.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    assert detect(page) == sheet
    assert detect(np.full((3508, 2480), 240, np.uint8)) is None


def test_split_documents_at_each_cover() -> None:
    a, b = CoverSheet("H01", 1), CoverSheet("H01", 2)
    pages = [(1, None), (2, a), (3, None), (4, None), (5, b), (6, None)]
    assert split_documents(pages) == [(None, [1]), (a, [3, 4]), (b, [6])]
    assert split_documents([(1, a)]) == [(a, [])]


@pytest.mark.tesseract
def test_coversheet_command_and_the_pipeline_flags_separators(tmp_path: Path) -> None:
    env = agent_env(tmp_path / "agent", "mqtt://127.0.0.1:1")
    out = run_agent(
        env,
        "coversheet",
        "--ma-ho-so",
        "H01.2024.HS-05",
        "--count",
        "2",
        "--out",
        str(tmp_path / "covers.pdf"),
        check=True,
    )
    assert "Đã tạo 2 tờ bìa" in out.stdout
    run_agent(env, "import", str(tmp_path / "covers.pdf"), check=True)
    run_agent(env, "process", check=True)
    with ob.Outbox(tmp_path / "agent", read_only=True) as outbox:
        (batch,) = outbox.batches()
        pages = outbox.pages(batch.batch_id)
    assert [p.flags.count("separator") for p in pages] == [1, 1]
    assert [p.decisions["cover_sheet"]["van_ban"] for p in pages] == [1, 2]
    json.dumps([p.decisions for p in pages])  # travels in the manifest
    bad = run_agent(env, "coversheet", "--ma-ho-so", "a b", "--out", str(tmp_path / "x.pdf"))
    assert bad.returncode == 2
    assert "Không tạo được tờ bìa" in bad.stderr


def test_every_enrolment_sheet_s_code_is_read(tmp_path: Path) -> None:
    """OpenCV's classic QR detector finds no code at all on some enrolment sheets (8 of 150
    with random codes, printed by the server and rasterised at 200 dpi; a test run failed
    on one in `enrol --scan`). These three codes are such sheets; the ArUco-based detector
    reads them."""
    import random

    import cv2
    import pypdfium2

    from agent.pipeline import coversheet
    from protocol.enrolment import EnrolCode
    from server.fleet import sheet

    missed = 0
    for seed in (4, 29, 30):
        r = random.Random(seed)
        secret, key = f"{r.getrandbits(80):020X}", f"{r.getrandbits(256):064x}"
        code = EnrolCode("xa-scan", secret, "127.0.0.1", 8883, True, key)
        pdf = pypdfium2.PdfDocument(
            str(sheet.write_pdf(code, "Xã Tân Lập", 1_800_000_000, tmp_path / f"{seed}.pdf"))
        )
        page = np.asarray(pdf[0].render(scale=200 / 72).to_pil().convert("L"))
        pdf.close()
        small = cv2.resize(page, None, fx=1600 / page.shape[1], fy=1600 / page.shape[1],
                           interpolation=cv2.INTER_AREA)  # fmt: skip
        missed += not cv2.QRCodeDetector().detectAndDecode(small)[0]
        assert coversheet.qr_text(page, 1600) == code.text()
    assert missed >= 1, "the classic detector reads them all here: pick sheets it misses"
