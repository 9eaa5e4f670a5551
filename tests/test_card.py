"""The clerk's one-page card (scripts/clerk_card.py): A4, one page, every light-and-beep state
the box can show with its Vietnamese sentence, and Vietnamese that a reader (here: tesseract
with `vie`, which did not draw it) can read back."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pypdfium2 as pdfium
import pytest

from agent.buttons.feedback import OPERATOR_TEXT, AgentState

REPO = Path(__file__).resolve().parent.parent


def _card() -> ModuleType:
    spec = importlib.util.spec_from_file_location("clerk_card", REPO / "scripts" / "clerk_card.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_card_is_one_a4_page_with_every_state(tmp_path: Path) -> None:
    card = _card()
    pdf = card.write(tmp_path / "card.pdf")
    doc = pdfium.PdfDocument(pdf)
    assert len(doc) == 1
    width, height = doc[0].get_size()
    assert abs(width - 595.3) < 1.5 and abs(height - 841.9) < 1.5  # A4 in points
    _, lines = card.render()
    text = " ".join(" ".join(lines).split())
    for state in AgentState:
        assert " ".join(OPERATOR_TEXT["vi"][state].split()) in text, state


@pytest.mark.tesseract
def test_card_reads_back_in_vietnamese(tmp_path: Path) -> None:
    image, _ = _card().render()
    png = tmp_path / "card.png"
    image.save(png)
    out = subprocess.run(
        ["tesseract", str(png), "stdout", "-l", "vie"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        check=True,
    ).stdout
    for words in ("Nạp giấy", "Khi máy dừng", "Đèn và tiếng bíp", "Kẹt giấy"):
        assert words in out, out[:500]
