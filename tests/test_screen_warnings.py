"""What a page's card on the technician's screen warns of (agent/screen/web.py): a page whose
text is likely wrong says so and why, so that the sheet can be scanned again while the
technician is still at the scanner — on a page this project did not make, read by the real
pipeline and tesseract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_unread_text import FIXTURES

from agent.outbox import outbox as ob
from agent.pipeline.process import PipelineSettings, process_page
from agent.screen.web import page_warnings, warning_text


def _page(flags: tuple[str, ...], decisions: dict[str, Any]) -> ob.PageRecord:
    return ob.PageRecord(
        batch_id="b1", page_id="b1-1", page_no=1, state="processed", capture_file="c.png",
        capture_sha256="", capture_size=0, capture_media_type="image/png", dpi=300,
        width_px=2480, height_px=3508, colour=False, source_name=None, parts={},
        flags=flags, decisions=decisions, ocr_confidence=90.0, error=None,
    )  # fmt: skip


def _card(page: ob.PageRecord, lang: int = 0) -> list[str]:
    return [warning_text(page, w, lang) for w in page_warnings(page)]


def test_a_page_whose_text_is_likely_wrong_says_why_in_the_technician_s_language() -> None:
    page = _page(("review",), {"quality": {"score": 80.0, "reasons": ["low_score", "junk_line"]}})
    assert _card(page) == [
        "Chữ nhận dạng có thể sai: điểm chữ thấp, có dòng phần lớn là ký hiệu, không phải chữ"
    ]
    assert _card(page, 1) == [
        "Text likely wrong: low text score, a line mostly of marks, not words"
    ]
    # without reasons (an older record), or with one this version does not know
    assert _card(_page(("review",), {})) == ["Chữ nhận dạng có thể sai"]
    odd = _page(("review",), {"quality": {"reasons": ["new_reason"]}})
    assert _card(odd) == ["Chữ nhận dạng có thể sai: new_reason"]
    assert _card(_page((), {"quality": {"reasons": ["low_score"]}})) == []  # not flagged


@pytest.mark.tesseract
def test_the_table_whose_faint_cells_tesseract_left_out_warns_on_its_card(tmp_path: Path) -> None:
    result = process_page(
        FIXTURES / "letterpress-5-table.png", tmp_path / "work", PipelineSettings(dpi=300)
    )
    card = _card(_page(result.flags, result.decisions))
    review = [line for line in card if line.startswith("Chữ nhận dạng có thể sai: ")]
    assert len(review) == 1, card
    assert "có chữ trên trang không được nhận dạng" in review[0], card


def test_a_page_unread_and_likely_wrong_gets_one_line_that_says_why() -> None:
    """A sheet with no text read carries both low_confidence and review: its card said
    "Chữ khó đọc (OCR kém)" and "Chữ nhận dạng có thể sai: không đọc được chữ" (the demo's
    test pattern, ten cards of two lines). One line now, the one with the reason."""
    both = _page(("low_confidence", "review"), {"quality": {"reasons": ["no_text"]}})
    assert _card(both) == ["Chữ nhận dạng có thể sai: không đọc được chữ"]
    assert _card(both, 1) == ["Text likely wrong: no text read"]
    assert _card(_page(("low_confidence",), {})) == ["Chữ khó đọc (OCR kém)"]  # alone: shown
