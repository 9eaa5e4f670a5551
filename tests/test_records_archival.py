"""The archival page reads as well as the capture, on every class of commune record.

The PDF/A's invisible text layer is our OCR, so reading it back proves nothing about the
image a person (or a later OCR) will see. Here pdfium renders the PDF/A's image layers
(the G4 ink mask over the colour background; the text layer is invisible and not drawn) at
the capture's dpi, plain `tesseract -l vie` reads that rendering and the capture itself,
and the rendering may not read clearly worse.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest
import records
from corpus import cer
from PIL import Image

from agent.pipeline.process import PipelineSettings, process_page

pytestmark = [pytest.mark.tesseract, pytest.mark.slow]

TOLERANCE = 0.01  # the rendering may read up to 1 point of CER worse than the capture
SEED = 1


def _read(image: Path, dpi: int) -> str:
    run = subprocess.run(
        ["tesseract", str(image), "-", "-l", "vie", "--dpi", str(dpi)],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_THREAD_LIMIT="1"),
        check=True,
    )
    return run.stdout.replace("\f", "")


def _render_pdf(pdf_path: Path, dpi: int, out: Path) -> Path:
    pdf = pdfium.PdfDocument(pdf_path)
    try:
        image = pdf[0].render(scale=dpi / 72).to_pil().convert("RGB")
    finally:
        pdf.close()
    image.save(out, dpi=(dpi, dpi))
    return out


@pytest.mark.parametrize("name", list(records.CLASSES))
def test_the_archival_page_reads_as_well_as_the_capture(tmp_path: Path, name: str) -> None:
    page = records.render(name, SEED)
    capture = records.save(page, tmp_path / "capture.png")
    result = process_page(capture, tmp_path / "work", PipelineSettings(dpi=page.dpi))
    rendering = _render_pdf(result.archival, page.dpi, tmp_path / "archival.png")
    assert np.asarray(Image.open(rendering)).std() > 5  # a page was drawn, not a blank
    from_capture = cer(page.text, _read(capture, page.dpi))
    from_archival = cer(page.text, _read(rendering, page.dpi))
    print(f"{name}: capture {from_capture:.3%}, archival rendering {from_archival:.3%}")
    assert from_archival <= from_capture + TOLERANCE, result.decisions["archival"]
