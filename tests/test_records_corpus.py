"""The commune-record corpus (tests/records) and what the pipeline's pixel stages do with it.

No tesseract here: that is tests/test_records_ocr.py. These check that the corpus is what it
says (deterministic, every class renders, NFC ground truth) and that blank detection never
calls a page with text blank — on every class, and on faint sparse text.
"""

from __future__ import annotations

import os
import unicodedata

import cv2
import numpy as np
import pytest
import records
from corpus import PageSpec, render_page

from agent.pipeline import imaging


def _fonts_or_fail() -> None:
    try:
        records.render("serif_clean", 0)
    except records.FontMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def _grey(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def test_a_class_page_is_the_same_for_the_same_seed_and_differs_by_seed() -> None:
    _fonts_or_fail()
    a, b = records.render("sans_small", 4), records.render("sans_small", 4)
    assert np.array_equal(a.image, b.image) and a.text == b.text
    assert records.render("sans_small", 5).text != a.text


@pytest.mark.slow
@pytest.mark.parametrize("name", list(records.CLASSES))
def test_every_class_renders_text_that_blank_detection_sees(name: str) -> None:
    _fonts_or_fail()
    page = records.render(name, 1)
    assert page.text == unicodedata.normalize("NFC", page.text)
    assert len(page.text.splitlines()) >= 10
    assert page.image.ndim == (2 if page.page_class.grey else 3)
    check = imaging.detect_blank(_grey(page.image), page.dpi)
    assert not check.blank, check


def test_faint_small_sparse_text_is_not_blank() -> None:
    """Three short lines of light grey 10-pt type on an otherwise empty page."""
    page = render_page(PageSpec(n_lines=3, font_pt=10, noise_sigma=2.0))
    image = page.image.astype(np.float32)
    faint = 247 - (247 - image) * 0.45  # ink 35 → ~152: pencil-grey
    grey = _grey(np.clip(faint, 0, 255).astype(np.uint8))
    assert (grey < 0.6 * 247).sum() == 0  # the old rule could not see it at all
    check = imaging.detect_blank(grey, 300)
    assert not check.blank, check
    assert check.method.endswith("faint_lines")


@pytest.mark.parametrize("specks", [4350, 20000, 40000])
def test_dust_and_noise_do_not_line_up_as_faint_text(specks: int) -> None:
    page = render_page(PageSpec(blank=True, paper="tinted", speckles=specks, noise_sigma=6))
    assert imaging.detect_blank(_grey(page.image), 300).blank


@pytest.mark.parametrize("kind", records.BAD_KINDS)
def test_bad_pages_render(kind: str) -> None:
    _fonts_or_fail()
    image = records.bad_page(kind, 0)
    assert image.dtype == np.uint8 and image.shape[2] == 3
