"""The archival page (agent.pipeline.archival through agent.pipeline.process): a searchable
PDF/A-2b per page,
mixed-raster, colour, 100 % scale, ≤ 100 KB for a 300-dpi A4, checked against the law.

veraPDF (the reference PDF/A validator) is a Java download, not packaged for Debian 12 nor
on PyPI, so it cannot run here: conformance is checked structurally (the entries ISO 19005-2
asks for) with pikepdf when it is installed, and always by rendering with pdfium.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pytest
from corpus import A5_LANDSCAPE_MM, PageSpec, cer, render_page, save_png

from agent.pipeline import archival, imaging
from agent.pipeline.ocr import Word
from agent.pipeline.process import PipelineSettings, process_page

HALF = {"n_lines": 12, "paper_mm": A5_LANDSCAPE_MM}
NOISY = {"paper": "gradient", "blur_sigma": 0.9, "speckles": 4350, "noise_sigma": 6.0}


def _render(pdf_path: Path | bytes, dpi: int) -> tuple[np.ndarray, tuple[float, float]]:
    pdf = pdfium.PdfDocument(pdf_path)
    try:
        assert len(pdf) == 1
        page = pdf[0]
        size = page.get_size()
        image = np.asarray(page.render(scale=dpi / 72).to_pil().convert("RGB"))
        return image, size
    finally:
        pdf.close()


def _pdf_text(pdf_path: Path) -> str:
    pdf = pdfium.PdfDocument(pdf_path)
    try:
        return str(pdf[0].get_textpage().get_text_range())
    finally:
        pdf.close()


def _chroma(rgb: np.ndarray) -> np.ndarray:
    a = rgb.astype(np.int16)
    return np.asarray(a.max(axis=2) - a.min(axis=2))


def _seal_pixels(capture_rgb: np.ndarray) -> np.ndarray:
    """Where the capture is clearly seal red (and not text crossing the seal)."""
    r, g, b = (capture_rgb[:, :, i].astype(int) for i in range(3))
    return np.asarray((r > 150) & (r - g > 90) & (r - b > 90))


# ----------------------------------------------------------------------------- with tesseract


@pytest.mark.tesseract
def test_a_sealed_page_becomes_a_searchable_colour_pdf_at_100_percent(tmp_path: Path) -> None:
    page = render_page(PageSpec(seal=True, paper="tinted", noise_sigma=2.0, **HALF))
    capture = save_png(page, tmp_path / "0001.png")
    result = process_page(capture, tmp_path / "work", PipelineSettings())

    assert result.archival.name == "archival.pdf"
    assert result.archival.read_bytes().startswith(b"%PDF-1.7\n")
    assert result.flags == ()
    assert result.decisions["legal"]["passed"] is True  # type: ignore[index]

    # 100 % scale: one page pixel is 1/300 inch. Deskewing (if the estimate says so) grows
    # the canvas so no corner is cut, by at most sin(angle) of the other side.
    rendered, (width_pt, height_pt) = _render(result.archival, 300)
    assert [width_pt, height_pt] == pytest.approx(result.decisions["archival"]["page_pt"])  # type: ignore[index]
    height_px, width_px = page.image.shape[:2]
    assert width_pt == pytest.approx(width_px * 72 / 300, rel=0.005)
    assert height_pt == pytest.approx(height_px * 72 / 300, rel=0.005)
    if not result.decisions["skew"]["applied"]:  # type: ignore[index]
        assert rendered.shape[:2] == (height_px, width_px)

    # Searchable: the invisible text is the OCR text, Vietnamese diacritics intact, NFC.
    ocr_text = result.text.read_text(encoding="utf-8")
    pdf_text = _pdf_text(result.archival)
    assert pdf_text == unicodedata.normalize("NFC", pdf_text)
    assert cer(ocr_text, pdf_text) <= 0.01
    assert cer(page.text, pdf_text) <= 0.02
    for phrase in ("ỦY BAN NHÂN DÂN XÃ TÂN PHÚ", "Độc lập - Tự do - Hạnh phúc", "QUYẾT ĐỊNH"):
        assert phrase in pdf_text
    # Nothing of it is drawn: render mode 3 (the only Tr operator in the content).
    assert result.decisions["archival"]["text_words"] == len(ocr_text.split())  # type: ignore[index]

    # Colour, and the red seal stays red (it lives in the background, not the ink mask).
    # Compared by count and region: a deskew may have shifted the page by a pixel or two.
    seal = _seal_pixels(page.image)
    assert seal.sum() > 5000
    r, g, b = (rendered[:, :, i].astype(int) for i in range(3))
    red_kept = (r > 140) & (r - g > 60) & (r - b > 60)
    assert red_kept.sum() > 0.85 * seal.sum()
    ys, xs = np.nonzero(seal)
    box = (slice(ys.min() + 5, ys.max() - 5), slice(xs.min() + 5, xs.max() - 5))
    assert red_kept[box].sum() > 0.85 * seal.sum()
    # ...and the text is dark ink, also where it crosses the seal.
    grey = rendered.astype(int).mean(axis=2)
    assert np.percentile(grey[box], 1) < 80
    assert (grey < 80).sum() > 0.5 * (imaging.to_grey(page.image) < 80).sum()


@pytest.mark.tesseract
def test_a_full_a4_300_dpi_colour_page_is_at_most_100_kb_and_legible(tmp_path: Path) -> None:
    page = render_page(PageSpec(paper="gradient", noise_sigma=2.0, speckles=1000))
    capture = save_png(page, tmp_path / "a4.png")
    result = process_page(capture, tmp_path / "work", PipelineSettings())

    size = result.archival.stat().st_size
    assert size <= 100_000, result.decisions["archival"]
    rendered, _ = _render(result.archival, 300)
    assert _chroma(rendered).max() > 10  # the paper tint survives: still a colour image
    # Legible: tesseract on the archival page itself reads as well as on the capture.
    assert cer(page.text, _pdf_text(result.archival)) <= 0.02


@pytest.mark.tesseract
def test_a_grey_150_dpi_capture_is_archived_but_flagged_as_failing_the_law(
    tmp_path: Path,
) -> None:
    page = render_page(PageSpec(dpi=150, **HALF))
    grey = np.asarray(imaging.to_grey(page.image))
    capture = save_png(np.dstack([grey] * 3)[:, :, 0], tmp_path / "grey.png", dpi=150)
    result = process_page(capture, tmp_path / "work", PipelineSettings(dpi=150))

    assert {"below_200dpi", "not_colour", "legal_fail"} <= set(result.flags)
    legal = result.decisions["legal"]
    assert legal["passed"] is False  # type: ignore[index]
    assert set(legal["failures"]) == {"below_200dpi", "not_colour"}  # type: ignore[index]
    # Still archived, at its own 100 % scale.
    _, (width_pt, _) = _render(result.archival, 72)
    assert width_pt == pytest.approx(grey.shape[1] * 72 / 150, rel=0.005)  # + deskew canvas


# ----------------------------------------------------------------------------- without tesseract


def test_legal_check_numbers() -> None:
    ok = archival.legal_check(300, colour=True)
    assert ok.passed and ok.failures == () and ok.pdf_version == "1.7"
    assert archival.legal_check(200, colour=True).passed  # 200 dpi is the minimum, allowed
    assert archival.legal_check(199, colour=True).failures == ("below_200dpi",)
    assert archival.legal_check(150, colour=False).failures == ("below_200dpi", "not_colour")
    assert archival.legal_check(300, True, scale_percent=98).failures == ("not_100_percent",)


def test_scale_and_pdf_version_are_read_from_the_produced_file() -> None:
    """Issue 17: the legal check's scale and PDF version come from the file, so a file that
    says something else fails — they are not constants that pass whatever was written."""
    page = render_page(PageSpec(blank=True, noise_sigma=2.0, **HALF))
    bgr = np.ascontiguousarray(page.image[:, :, ::-1])
    binary = np.full(bgr.shape[:2], 255, np.uint8)
    pixels = (bgr.shape[1], bgr.shape[0])
    made = archival.make_archival_pdf(bgr, binary, (), 300, archival.legal_check(300, True))
    produced = archival.read_produced(made.pdf, pixels, 300)
    assert produced.pdf_version == "1.7"
    assert produced.scale_percent == pytest.approx(100.0, abs=0.01)
    ok = archival.legal_check(300, True, produced.scale_percent, True, produced.pdf_version)
    assert ok.passed
    # The same bytes against a 200-dpi capture: the page would be printed at 2/3 its size.
    wrong = archival.read_produced(made.pdf, pixels, 200)
    assert wrong.scale_percent == pytest.approx(66.667, abs=0.01)
    assert "not_100_percent" in archival.legal_check(300, True, wrong.scale_percent).failures
    # A header that says PDF 1.3 fails the ≥ 1.4 line.
    old = archival.read_produced(made.pdf.replace(b"%PDF-1.7", b"%PDF-1.3", 1), pixels, 300)
    assert old.pdf_version == "1.3"
    failed = archival.legal_check(300, True, old.scale_percent, True, old.pdf_version)
    assert failed.failures == ("pdf_version",)


def test_colour_means_colour_content_not_three_channels() -> None:
    page = render_page(PageSpec(dpi=100, seal=True, **HALF)).image
    assert archival.is_colour(page, 3)
    grey3 = np.dstack([page[:, :, 1]] * 3)
    assert not archival.is_colour(grey3, 3)  # a grey scan saved as RGB
    assert not archival.is_colour(page[:, :, 1], 1)


def test_the_mask_takes_dark_ink_and_leaves_the_red_seal_in_the_background() -> None:
    page = render_page(PageSpec(seal=True, paper="tinted", **HALF))
    bgr = np.ascontiguousarray(page.image[:, :, ::-1])
    grey, _ = imaging.text_grey(bgr)
    binary, _ = imaging.binarise(imaging.normalise_background(grey, 300), 300)
    layers = archival.segment(bgr, binary, 300)

    seal = _seal_pixels(page.image)
    assert layers.mask[seal].mean() < 0.01  # no seal red in the ink
    dark = imaging.to_grey(bgr) < 80
    assert layers.mask[dark].mean() > 0.9  # the text, including where it crosses the seal
    assert max(layers.ink_rgb) < 90  # one dark ink colour
    assert layers.background_dpi == 75
    # The background has no text left in it: its darkest pixels are seal or paper, not ink.
    assert np.percentile(imaging.to_grey(layers.background), 0.5) > 60


def test_marks_in_colour_keep_their_shape_and_their_own_colour() -> None:
    """A ballpoint note and a red stamp line are drawn at full resolution in their colours.

    In the ~75-dpi background they were a pale blur that read worse than the capture
    (issue 15, tests/records margin_notes); painted in the text's ink they would be black.
    """
    import cv2

    bgr = np.full((900, 1200, 3), (242, 246, 247), np.uint8)
    for y in (120, 200, 280, 360):  # the page's own text, in black
        cv2.putText(bgr, "VAN BAN SO", (300, y), cv2.FONT_HERSHEY_SIMPLEX, 2.5, (35, 30, 30), 6)
    note = np.array([[100 + 9 * k, 500 + int(40 * np.sin(k / 3))] for k in range(100)], np.int32)
    cv2.polylines(bgr, [note], False, (150, 50, 30), 3, cv2.LINE_AA)  # ballpoint blue (BGR)
    cv2.line(bgr, (100, 750), (1100, 750), (45, 35, 200), 3, cv2.LINE_AA)  # stamp red
    grey, _ = imaging.text_grey(bgr)
    binary, _ = imaging.binarise(imaging.normalise_background(grey, 300), 300)
    assert archival.segment(bgr, binary, 300).mask[note[:, 1], note[:, 0]].mean() < 0.05
    made = archival.make_archival_pdf(bgr, binary, (), 300, archival.legal_check(300, True))
    assert made.bytes_by_layer["marks_mask_g4"] > 0 and made.bytes_by_layer["marks_jpeg"] > 0
    rendered, _ = _render(made.pdf, 300)
    rendered = rendered[: bgr.shape[0], : bgr.shape[1]]  # pdfium rounds the size up
    r, g, b = (rendered[:, :, i].astype(int) for i in range(3))

    core = np.zeros(bgr.shape[:2], np.uint8)
    cv2.polylines(core, [note], False, 1, 1)
    blue = (b - r > 60) & (b < 200)  # dark and blue, not a pale blur
    assert blue[core > 0].mean() > 0.9
    red = (r - b > 60) & (r - g > 60) & (r < 230)
    assert red[749:752, 110:1090].mean() > 0.9
    # Sharp: 5 px off the stroke is paper again (a 4× reduced layer smears ~8 px).
    ring = (np.ones((11, 11), np.uint8), np.ones((9, 9), np.uint8))
    away = cv2.dilate(core, ring[0]) - cv2.dilate(core, ring[1])
    assert np.percentile(rendered.mean(axis=2)[away > 0], 5) > 215
    # The black text is still the ink mask's, in the ink colour.
    assert max(made.ink_rgb) < 90 and rendered[60:370, 300:900].min() < 90


def test_a_blank_page_still_makes_a_valid_pdf() -> None:
    page = render_page(PageSpec(blank=True, noise_sigma=2.0, **HALF))
    bgr = np.ascontiguousarray(page.image[:, :, ::-1])
    binary = np.full(bgr.shape[:2], 255, np.uint8)
    made = archival.make_archival_pdf(bgr, binary, (), 300, archival.legal_check(300, True))
    assert made.bytes_by_layer["mask_g4"] == 0 and made.words == 0
    rendered, (width_pt, _) = _render(made.pdf, 72)
    assert width_pt == pytest.approx(bgr.shape[1] * 72 / 300, abs=0.01)
    assert rendered.mean() > 200  # paper
    assert len(made.pdf) < 20_000


def test_the_g4_mask_is_painted_where_the_ink_is() -> None:
    mask = np.zeros((300, 400), bool)
    mask[50:80, 30:370] = True  # a bar of ink
    mask[200:203, 100:103] = True  # a dot
    background = np.full((75, 100, 3), 250, np.uint8)
    pdf = archival.write_pdfa(
        width_pt=400 * 72 / 300,
        height_pt=300 * 72 / 300,
        background=archival.encode_jpeg(background, 40),
        background_size=(100, 75),
        background_grey=False,
        mask=archival.encode_g4(mask),
        mask_size=(400, 300),
        ink_rgb=(20, 30, 120),
        text_operators=b"",
        text_codes=set(),
    )
    rendered, _ = _render(pdf, 300)
    assert rendered.shape[:2] == mask.shape
    assert np.abs(rendered[60, 200].astype(int) - (20, 30, 120)).max() <= 3
    assert rendered[150, 200].min() > 240
    assert rendered[201, 101].max() < 130


def test_pdfa_structure() -> None:
    """The entries PDF/A-2b requires, read back by an independent PDF library."""
    pikepdf = pytest.importorskip("pikepdf")  # dev/bench extra; pypdfium2 tests run always
    page = render_page(PageSpec(dpi=100, seal=True, **HALF))
    bgr = np.ascontiguousarray(page.image[:, :, ::-1])
    grey, _ = imaging.text_grey(bgr)
    binary, _ = imaging.binarise(imaging.normalise_background(grey, 100), 100)
    words = (
        Word("Ủy", 95.0, (200, 100, 60, 30), (1, 1, 1)),
        Word("ban", 95.0, (270, 100, 70, 30), (1, 1, 1)),
        Word("Quyết", 90.0, (200, 150, 90, 30), (1, 1, 2)),
    )
    made = archival.make_archival_pdf(bgr, binary, words, 100, archival.legal_check(100, True))
    data = made.pdf
    assert data.startswith(b"%PDF-1.7\n%") and all(c > 127 for c in data[10:14])
    assert data.rstrip().endswith(b"%%EOF") and b"/Encrypt" not in data
    with pikepdf.open(__import__("io").BytesIO(data)) as pdf:  # strict parse, xref checked
        root = pdf.Root
        xmp = bytes(root.Metadata.read_raw_bytes()).decode()
        assert "<pdfaid:part>2</pdfaid:part>" in xmp
        assert "<pdfaid:conformance>B</pdfaid:conformance>" in xmp
        assert "/Filter" not in repr(root.Metadata.stream_dict)
        intent = root.OutputIntents[0]
        assert intent.S == "/GTS_PDFA1" and int(intent.DestOutputProfile.N) == 3
        assert len(pdf.trailer.ID) == 2
        created = str(pdf.docinfo.CreationDate)
        assert created[2:10] in re.sub(r"\D", "", xmp)  # Info and XMP dates agree
        page0 = pdf.pages[0]
        for image in page0.Resources.XObject.values():
            assert "/Interpolate" not in image or not bool(image.Interpolate)
        font = page0.Resources.Font.F1
        cid = font.DescendantFonts[0]
        assert cid.FontDescriptor.FontFile2 is not None  # embedded
        assert "/CIDToGIDMap" in cid
    pdf_text = str(pdfium.PdfDocument(data)[0].get_textpage().get_text_range())
    assert pdf_text.split() == ["Ủy", "ban", "Quyết"]


def test_layers_made_before_ocr_and_words_added_after_give_the_same_pdf() -> None:
    """The pipeline's split (encode_layers, free the page, OCR, assemble_pdf) changes nothing."""
    import datetime as dt

    page = render_page(PageSpec(dpi=100, seal=True, **HALF))
    bgr = np.ascontiguousarray(page.image[:, :, ::-1])
    grey, _ = imaging.text_grey(bgr)
    binary, _ = imaging.binarise(imaging.normalise_background(grey, 100), 100)
    before = (bgr.copy(), binary.copy())
    layers = archival.encode_layers(bgr, binary, 100, background_quality=40)
    assert np.array_equal(bgr, before[0]) and np.array_equal(binary, before[1])  # inputs intact
    # All the PDF needs of the pixels is in the encoded layers: a few KB, no arrays.
    assert layers.mask and layers.background.startswith(b"\xff\xd8")
    assert layers.mask_size == (bgr.shape[1], bgr.shape[0])
    assert len(layers.mask) + len(layers.background) < 60_000
    del bgr, binary  # what the pipeline does before tesseract runs
    words = (
        Word("Ủy", 95.0, (200, 100, 60, 30), (1, 1, 1)),
        Word("ban", 95.0, (270, 100, 70, 30), (1, 1, 1)),
        Word("Quyết", 90.0, (200, 150, 90, 30), (1, 1, 2)),
    )
    created = dt.datetime(2024, 3, 14, 8, 0, tzinfo=dt.UTC)
    legal = archival.legal_check(100, True)
    split = archival.assemble_pdf(layers, words, 100, legal, created=created)
    whole = archival.make_archival_pdf(
        before[0], before[1], words, 100, legal, background_quality=40, created=created
    )
    assert split.pdf == whole.pdf
    assert split.words == 3 and split.bytes_by_layer == whole.bytes_by_layer
    assert "Quyết" in _pdf_text_bytes(split.pdf)
    # Word boxes from an enlarged OCR image (words_dpi) land at the same place on the page.
    enlarged = tuple(
        Word(w.text, w.conf, tuple(2 * v for v in w.box), w.line)  # type: ignore[arg-type]
        for w in words
    )
    doubled = archival.assemble_pdf(layers, enlarged, 100, legal, words_dpi=200, created=created)
    assert doubled.pdf == split.pdf or _text_positions(doubled.pdf) == _text_positions(split.pdf)


def _pdf_text_bytes(data: bytes) -> str:
    pdf = pdfium.PdfDocument(data)
    try:
        return unicodedata.normalize("NFC", pdf[0].get_textpage().get_text_range())
    finally:
        pdf.close()


def _text_positions(data: bytes) -> list[tuple[float, ...]]:
    pdf = pdfium.PdfDocument(data)
    try:
        text = pdf[0].get_textpage()
        return [tuple(round(v, 1) for v in text.get_charbox(i)) for i in range(text.count_chars())]
    finally:
        pdf.close()


def test_mark_colours_hold_their_reduced_planes_and_no_index_arrays() -> None:
    """`_mark_colours` works on the page reduced to the background's resolution; what it
    holds at its peak is a few float planes of that size (the summed colours, their
    spread, the weights: under 16 bytes per byte of its result). Filling the cells far
    from any mark through a 2-D boolean index on the 3-D array built two int64 coordinate
    arrays first (18.8 bytes per result byte, 8.7 MB at 300 dpi: docs/benchmarks.md,
    "Ninth sitting"). Counted with tracemalloc, which sees every numpy buffer."""
    import tracemalloc

    page = render_page(PageSpec(seal=True, **HALF)).image[:, :, ::-1]
    page = np.ascontiguousarray(page)
    ink = imaging.binarise(imaging.text_grey(page)[0])[0] < 128
    marks = archival.colour_marks(page, ink)
    assert marks is not None  # the seal
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = archival._mark_colours(page, marks.view(np.uint8), 4)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert out.shape == (-(-page.shape[0] // 4), -(-page.shape[1] // 4), 3)
    assert peak < 16 * out.nbytes, f"{peak / out.nbytes:.1f} bytes per result byte"


def test_a_page_without_colour_marks_holds_no_marks_array() -> None:
    """Most pages have no seal, stamp or signature in colour: `colour_marks` then makes no
    page-sized array at all (an empty bool mask, 8.7 MB at 300 dpi, was made and dropped
    beside the page and its masks; docs/benchmarks.md, "Ninth sitting"). Counted with
    tracemalloc, which sees every numpy buffer; on an A4, whose bands (BAND_ROWS rows, their
    channel planes and tests) are a small part of it."""
    import tracemalloc

    page = np.ascontiguousarray(render_page(PageSpec()).image[:, :, ::-1])
    ink = imaging.binarise(imaging.text_grey(page)[0])[0] < 128
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        marks = archival.colour_marks(page, ink)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert marks is None
    assert peak < ink.size, f"{peak / ink.size:.2f} bytes per page pixel"
