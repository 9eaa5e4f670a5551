"""A văn bản's pages, each a PDF/A-2b from the agent, joined into one handover PDF."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pikepdf
import pypdfium2 as pdfium

from agent.pipeline.archival import legal_check, make_archival_pdf
from agent.pipeline.ocr import Word
from server.archive.export import join_pdfa


def _page(word: str) -> bytes:
    page = np.full((1169, 827, 3), 245, np.uint8)  # A4 at 100 dpi, colour paper
    cv2.putText(page, "XXXXXXXX", (100, 200), cv2.FONT_HERSHEY_SIMPLEX, 2, (30, 30, 30), 4)
    cv2.circle(page, (600, 900), 80, (40, 40, 200), 6)  # a red seal (BGR)
    binary = np.where(page.min(axis=2) < 128, 0, 255).astype(np.uint8)
    words = [Word(text=word, conf=95.0, box=(100, 150, 300, 60), line=(1, 1, 1))]
    return make_archival_pdf(page, binary, words, 100, legal_check(100, True)).pdf


def test_joined_pages_keep_text_and_pdfa_identity() -> None:
    joined = join_pdfa([_page("Quyết"), _page("định")], "000.00.00.H53.1998.HS-01.001")
    with pikepdf.open(io.BytesIO(joined)) as pdf:
        assert len(pdf.pages) == 2
        assert "/OutputIntents" in pdf.Root
        meta = pdf.open_metadata()
        assert meta["pdfaid:part"] == "2"
        assert meta["dc:title"] == "000.00.00.H53.1998.HS-01.001"
        assert not pdf.is_encrypted
    doc = pdfium.PdfDocument(joined)
    try:
        texts = [doc[i].get_textpage().get_text_range().strip() for i in range(len(doc))]
    finally:
        doc.close()
    assert texts == ["Quyết", "định"]
