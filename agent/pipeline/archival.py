"""The archival page: one searchable PDF/A-2b per page, mixed-raster compressed, checked
against the legal numbers.

This module owns three things, each a pure function over arrays and bytes:

- `legal_check`: the capture against NĐ 30/2020 Phụ lục I Phần II / TT 01/2019 (docs/design.md §4):
  PDF ≥ 1.4, colour image, ≥ 200 dpi, 100 % scale. Every page is checked; a failure is a
  flag for review, never a refusal (the capture is kept whatever it is).
- `segment`: mixed-raster content (MRC) layers. The mask is the OCR binarisation (dark ink,
  stamps and signatures in colour already dropped by `imaging.text_grey`) further limited to
  low-chroma pixels, at full resolution; the ink is one colour per page (the median of the
  mask's strokes). Marks in colour (seals, stamps, signatures, notes in ballpoint blue) get
  their own full-resolution mask over a ~75-dpi colour image of themselves (`colour_marks`),
  so they keep their shape and their own colour; the background is the page with both
  masks' pixels filled from their neighbours, at ~75 dpi.
- `write_pdfa`: a one-page PDF/A-2b (ISO 19005-2 = TCVN 14159-2) written by hand: the
  background as /DCTDecode JPEG, the colour marks as a /DCTDecode JPEG with a G4 explicit
  /Mask, the mask as a /CCITTFaxDecode G4 /ImageMask painted in the ink colour, invisible
  text (render mode 3) in tesseract's GlyphLessFont with a ToUnicode CMap so that search
  and copy return the OCR's Vietnamese (NFC), XMP with pdfaid, an sRGB OutputIntent, a
  document ID, no encryption.

Why by hand: the format needed here is ~15 objects; writing them keeps the agent free of a
PDF library and every byte explainable. G4 rather than JBIG2 because Debian 12 has no JBIG2
encoder (docs/design.md §8); G4 is 89–100 KB for a dense 300-dpi A4 (docs/research/perf.md B4).

It must not: read or write files (the pipeline does), run tesseract (agent.pipeline.ocr), or change
the page geometry (the page size in the PDF is pixels × 72 / dpi: 100 % scale).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image as PILImage
from PIL import ImageCms, TiffImagePlugin

from agent.pipeline.imaging import Image
from agent.pipeline.ocr import Word

PDF_VERSION = "1.7"  # PDF/A-2 is based on ISO 32000-1 (PDF 1.7); the law asks for ≥ 1.4
LEGAL_MIN_DPI = 200  # NĐ 30/2020 Phụ lục I Phần II khoản 2c
LEGAL_MIN_PDF = (1, 4)  # ibid. khoản 2a
BACKGROUND_DPI = 75  # MRC background: paper tone, seals, stains; text is in the mask
BACKGROUND_QUALITY = 40  # JPEG quality of the background (smooth content: blocking invisible)
MAX_INK_CHROMA = 80  # max−min of RGB: dark ink (≤ ~25) in the mask, red seal (~160) not
MIN_COLOUR_CHROMA = 2  # a "colour" capture whose channels never differ by more is grey
MARK_MIN_CHROMA = 40  # a colour mark: this far from grey (ballpoint blue 120, seal red 165)...
MARK_MAX_LUMA = 0.7  # ... and darker than this share of the paper (see colour_marks)
BAND_ROWS = 256  # rows of the full page the background reduction holds at a time
PRODUCER = "sohoa"

# tesseract's GlyphLessFont (tessdata/pdf.ttf, Apache-2.0, 572 bytes): a TrueType font whose
# glyph 1 has no outline and an advance of 1024/2048 em. Every CID maps to it, so the font
# can carry any Unicode text invisibly; PDF/A wants fonts embedded even for render mode 3
# in validators' practice (ISO 19005-2 6.2.11.4.1), and 572 bytes is cheap. Loaded lazily.
_GLYPHLESS_PATHS = (
    "/usr/share/tesseract-ocr/5/tessdata/pdf.ttf",
    "/usr/share/tesseract-ocr/4.00/tessdata/pdf.ttf",
    "/usr/share/tessdata/pdf.ttf",
)
_GLYPH_ADVANCE = 500  # 1024/2048 em in PDF glyph space units (1/1000 em): the /DW


def _u8(array: object) -> Image:
    """View an OpenCV result as our image type (no copy: cv2 already returns uint8 here)."""
    return np.asarray(array, dtype=np.uint8)


class ArchivalError(Exception):
    """The archival page could not be made (a missing font file, an encoder failure)."""


# ----------------------------------------------------------------------------- legal check


@dataclass(frozen=True)
class LegalCheck:
    """The capture against the legal numbers for a digitised paper page (docs/design.md §4)."""

    dpi: int
    colour: bool
    scale_percent: float  # page size in the PDF over the physical size at `dpi`
    pdf_version: str
    failures: tuple[str, ...]  # e.g. ("below_200dpi", "not_colour"); empty when it passes
    rule: str = "NĐ 30/2020/NĐ-CP Phụ lục I Phần II mục I khoản 2; TT 01/2019/TT-BNV"

    @property
    def passed(self) -> bool:
        return not self.failures


def is_colour(image: Image, channels_in_file: int) -> bool:
    """A colour capture: three channels in the file that are not all the same grey.

    A grey scan saved as RGB (R = G = B everywhere) is not a colour image in the law's sense.
    """
    if channels_in_file < 3 or image.ndim != 3:
        return False
    sample = image[::7, ::7].astype(np.int16)
    chroma = sample.max(axis=2) - sample.min(axis=2)
    return bool(chroma.max() > MIN_COLOUR_CHROMA)


def legal_check(
    dpi: int,
    colour: bool,
    scale_percent: float = 100.0,
    dpi_known: bool = True,
    pdf_version: str = PDF_VERSION,
) -> LegalCheck:
    """``dpi_known=False``: the source did not say its resolution (an imported file without
    one); the check then fails with ``dpi_unknown`` and records dpi 0 — a resolution is never
    assumed into a legal result (issue 17)."""
    failures = []
    if not dpi_known:
        failures.append("dpi_unknown")
        dpi = 0
    elif dpi < LEGAL_MIN_DPI:
        failures.append("below_200dpi")
    if not colour:
        failures.append("not_colour")
    if abs(scale_percent - 100.0) > 0.5:
        failures.append("not_100_percent")
    major, minor = (int(p) for p in pdf_version.split("."))
    if (major, minor) < LEGAL_MIN_PDF:
        failures.append("pdf_version")
    return LegalCheck(dpi, colour, round(scale_percent, 3), pdf_version, tuple(failures))


@dataclass(frozen=True)
class Produced:
    """What an archival PDF says of itself, read back from the file's bytes."""

    pdf_version: str  # from the header, e.g. "1.7"
    scale_percent: float  # its page size over the physical size of `pixels` at `dpi`


def read_produced(pdf: bytes, pixels: tuple[int, int], dpi: int) -> Produced:
    """The scale and PDF version of a one-page archival PDF as the file has them (issue 17:
    the legal check reads them from the produced file, not from constants). The scale is the
    page's size (pdfium's reading of its MediaBox) over ``pixels`` at ``dpi``; of the two
    axes, the one further from 100 %."""
    import re

    import pypdfium2 as pdfium

    header = re.match(rb"%PDF-(\d+\.\d+)", pdf[:16])
    version = header.group(1).decode("ascii") if header else "0.0"
    doc = pdfium.PdfDocument(pdf)
    try:
        width_pt, height_pt = doc[0].get_size()
    finally:
        doc.close()
    scales = (
        width_pt / (pixels[0] * 72 / dpi) * 100,
        height_pt / (pixels[1] * 72 / dpi) * 100,
    )
    return Produced(version, max(scales, key=lambda v: abs(v - 100)))


# ----------------------------------------------------------------------------- MRC layers


@dataclass(frozen=True)
class Layers:
    """The mixed-raster layers of one page."""

    mask: npt.NDArray[np.bool_]  # full resolution, True = ink
    ink_rgb: tuple[int, int, int]  # the one colour the mask is painted in
    background: Image  # reduced page, RGB or grey, ink and marks filled from their neighbours
    background_dpi: float
    marks: npt.NDArray[np.bool_] | None = None  # full resolution, True = a mark in colour
    marks_image: Image | None = None  # their colours, reduced as the background (BGR)


def segment(page: Image, ocr_binary: Image, dpi: int) -> Layers:
    """Split a BGR or grey page into a full-resolution ink mask and a reduced background.

    `ocr_binary` is the page tesseract read (0 = ink, 255 = paper, same size as `page`):
    already despeckled and red-channel based, so a red seal is not in it. Ink is further
    limited to low-chroma pixels: where text crosses a seal the ink stays dark and stays in
    the mask, the seal's own red never does.
    """
    if ocr_binary.shape[:2] != page.shape[:2]:
        raise ValueError("the OCR image and the page differ in size")
    return segment_ink(page, ink_of(ocr_binary), dpi)


def ink_of(ocr_binary: Image) -> npt.NDArray[np.bool_]:
    """The ink of a binarised page (0 = ink, 255 = paper) as a mask, True = ink."""
    return np.asarray(ocr_binary < 128, dtype=np.bool_)


def segment_ink(page: Image, ink: npt.NDArray[np.bool_], dpi: int) -> Layers:
    """`segment` from the binarisation's ink mask (`ink_of`), which becomes the layers' ink
    mask (changed in place): a caller can drop the binarisation first
    (`agent.pipeline.process`: one page-sized array less at a worker's highest step)."""
    if ink.shape[:2] != page.shape[:2]:
        raise ValueError("the OCR image and the page differ in size")
    if page.ndim == 3:
        # max − min over the channels, band by band: whole-page channel planes would be
        # three more 8.7 MB copies at 300 dpi.
        for top in range(0, page.shape[0], BAND_ROWS):
            rows = slice(top, top + BAND_ROWS)
            b, g, r = cv2.split(page[rows])
            chroma = cv2.subtract(cv2.max(cv2.max(b, g), r), cv2.min(cv2.min(b, g), r))
            ink[rows] &= chroma <= MAX_INK_CHROMA
    ink_u8 = ink.view(np.uint8)
    ink_rgb = _ink_colour(page, ink_u8)
    factor = max(1, round(dpi / BACKGROUND_DPI))
    marks = colour_marks(page, ink)
    if marks is None:
        return Layers(ink, ink_rgb, _fill_background(page, ink_u8, factor), dpi / factor)
    marks_u8 = marks.view(np.uint8)
    # The marks' colours first, the background after: each with no other whole-page array
    # than the page and the two masks (the ink-or-marks mask is made band by band).
    marks_image = _mark_colours(page, marks_u8, factor)
    background = _fill_background(page, ink_u8, factor, marks_u8)
    return Layers(ink, ink_rgb, background, dpi / factor, marks, marks_image)


def colour_marks(page: Image, ink: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_] | None:
    """The page's marks in colour that the ink mask leaves out, or None when it has none.

    A mark is a pixel darker than MARK_MAX_LUMA of the paper (luma; the paper is the 90th
    percentile of a sample) and at least MARK_MIN_CHROMA from grey (max − min channel):
    a red seal, a blue or violet stamp, a blue signature or marginal note. Grey paper
    shadows (a spine, a dirty copier) and yellowed paper (chroma ~50 but light) are not
    marks. In the background at ~75 dpi such strokes were a blur: a handwritten note read
    worse from the archival page than from the capture (issue 15, tests/records
    margin_notes: 9.9 % CER from the capture, 11.5 % from the rendering). A grey page has
    no colour marks.
    """
    if page.ndim != 3:
        return None
    sample = cv2.cvtColor(np.ascontiguousarray(page[::8, ::8]), cv2.COLOR_BGR2GRAY)
    darkest = MARK_MAX_LUMA * float(np.percentile(sample, 90))
    marks = None  # made at the first band with a mark: most pages have none
    for top in range(0, page.shape[0], BAND_ROWS):
        rows = slice(top, top + BAND_ROWS)
        b, g, r = cv2.split(page[rows])
        chroma = cv2.subtract(cv2.max(cv2.max(b, g), r), cv2.min(cv2.min(b, g), r))
        luma = cv2.cvtColor(page[rows], cv2.COLOR_BGR2GRAY)
        band = (chroma >= MARK_MIN_CHROMA) & (luma < darkest) & ~ink[rows]
        if marks is None and band.any():
            marks = np.zeros(ink.shape, bool)
        if marks is not None:
            marks[rows] = band
    return marks


def _mark_colours(page: Image, marks: npt.NDArray[np.uint8], factor: int) -> Image:
    """The colours of the marks, reduced `factor` times (the marks' pixels only, averaged).

    Reduced pixels with no mark in them take the colour of the marks near them (a
    normalised blur), so a renderer's interpolation at a stroke's edge never mixes in
    paper; those far from any mark are white (never painted: the mask is the shape).
    """
    height, width = page.shape[:2]
    size = (max(1, -(-width // factor)), max(1, -(-height // factor)))
    weight = np.empty((size[1], size[0]), np.float32)
    summed = np.empty((size[1], size[0], 3), np.float32)
    step = max(factor, BAND_ROWS // factor * factor)
    for top in range(0, height, step):
        rows = slice(top, min(height, top + step))
        small_rows = slice(top // factor, -(-rows.stop // factor))
        band_size = (size[0], small_rows.stop - small_rows.start)
        band = cv2.bitwise_and(page[rows], page[rows], mask=marks[rows])
        summed[small_rows] = cv2.resize(band, band_size, interpolation=cv2.INTER_AREA)
        weight[small_rows] = cv2.resize(
            marks[rows].astype(np.float32), band_size, interpolation=cv2.INTER_AREA
        )
    own = weight > 0
    spread_w = cv2.GaussianBlur(weight, (0, 0), 2.0)
    out = np.asarray(cv2.GaussianBlur(summed, (0, 0), 2.0), dtype=np.float32)  # the spread
    near = ~own & (spread_w > 1e-3)
    # In place, one reduced float image at a time: the whole-array temporaries of the
    # straightforward arithmetic were ~38 MB for a colour 300-dpi A4 with a seal, the
    # worker's peak on such a page (docs/benchmarks.md, "Seventh sitting").
    np.divide(out, spread_w[:, :, None], out=out, where=near[:, :, None])
    # Not `out[~near] = 255`: a 2-D mask on a 3-D array is indexed through its nonzero
    # coordinates, two int64 arrays (8.7 MB at 75 dpi, the step's peak).
    np.copyto(out, np.float32(255.0), where=~near[:, :, None])
    np.divide(summed, weight[:, :, None], out=out, where=own[:, :, None])
    out += 0.5
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def _bands(height: int, step: int, halo: int) -> list[tuple[slice, slice]]:
    """Row bands of `step` rows, each with the `halo` rows a morphology needs on either side.

    Returns (rows with halo, the band's own rows within them). A 3×3 or 5×5 erosion or
    dilation of the rows with halo, cut back to the band, equals that of the whole page
    (OpenCV's morphology border never wins), so the whole-page copy is never made.
    """
    out = []
    for top in range(0, height, step):
        bottom = min(height, top + step)
        low, high = max(0, top - halo), min(height, bottom + halo)
        out.append((slice(low, high), slice(top - low, bottom - low)))
    return out


def _ink_colour(page: Image, ink: npt.NDArray[np.uint8]) -> tuple[int, int, int]:
    """Median colour of stroke cores (eroded mask: edge pixels are blended with paper).

    Band by band (an eroded copy of the whole mask would be another 8.7 MB at 300 dpi), on
    every second pixel of every second row.
    """
    kernel = np.ones((3, 3), np.uint8)
    samples: list[Image] = []
    for with_halo, own in _bands(ink.shape[0], BAND_ROWS, 1):
        core = cv2.erode(ink[with_halo], kernel)[own]
        rows = slice(with_halo.start + own.start, with_halo.start + own.stop)
        samples.append(page[rows][::2, ::2][core[::2, ::2] != 0])
    if sum(len(s) for s in samples) < 50:  # too few cores (thin strokes only): all ink
        samples = [page[::2, ::2][ink[::2, ::2] != 0]]
    pixels = np.concatenate(samples)
    if pixels.shape[0] == 0:
        return (0, 0, 0)
    if page.ndim == 2:
        grey = int(np.median(pixels))
        return (grey, grey, grey)
    b, g, r = (int(v) for v in np.median(pixels.reshape(-1, 3), axis=0))
    return (r, g, b)


def _fill_background(
    page: Image,
    ink: npt.NDArray[np.uint8],
    factor: int,
    marks: npt.NDArray[np.uint8] | None = None,
) -> Image:
    """The page without its ink (and its `marks`), reduced `factor` times (normalised
    averaging + inpainting).

    Ink pixels and a 2-px halo (anti-aliased stroke edges) are left out of each reduced
    pixel's average; reduced pixels that were all ink are inpainted from their neighbours.
    Band by band (rows in multiples of `factor`, so each reduced row sees the same pixels as
    a whole-page resize): neither the ink-free page (26 MB for a colour 300-dpi A4) nor the
    dilated mask is ever made whole, and the float arithmetic runs on one reduced band at a
    time (whole-page float32 temporaries were ~30 MB at 75 dpi colour).
    """
    height, width = page.shape[:2]
    small_w = max(1, -(-width // factor))
    step = max(factor, BAND_ROWS // factor * factor)
    kernel = np.ones((5, 5), np.uint8)
    reduced_rows, weight_rows = [], []
    for with_halo, own in _bands(height, step, 2):
        left_out = (
            ink[with_halo] if marks is None else cv2.bitwise_or(ink[with_halo], marks[with_halo])
        )
        grown = cv2.dilate(left_out, kernel)[own]
        del left_out
        band_keep = np.where(grown == 0, np.uint8(255), np.uint8(0))  # away from ink + halo
        del grown
        rows = slice(with_halo.start + own.start, with_halo.start + own.stop)
        band = cv2.bitwise_and(page[rows], page[rows], mask=band_keep)
        size = (small_w, max(1, -(-band.shape[0] // factor)))
        summed = cv2.resize(band, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        weight_u8 = _u8(cv2.resize(band_keep, size, interpolation=cv2.INTER_AREA))
        weight = weight_u8.astype(np.float32) / 255.0
        if summed.ndim == 3:
            weight = np.asarray(cv2.merge([weight, weight, weight]), dtype=np.float32)
        reduced_rows.append(
            np.clip(summed / np.maximum(weight, 1e-3) + 0.5, 0, 255).astype(np.uint8)
        )
        weight_rows.append(weight_u8)
    reduced: Image = np.concatenate(reduced_rows)
    # Under 0.15 of a reduced pixel kept: weight_u8 / 255 < 0.15, i.e. ≤ 38 (in integers:
    # the float copies of the weights were two more 75-dpi planes at the step's peak).
    holes = (np.concatenate(weight_rows) <= 38).view(np.uint8)
    if holes.any():
        reduced = _u8(cv2.inpaint(reduced, holes, 2, cv2.INPAINT_TELEA))
    return reduced


# ----------------------------------------------------------------------------- encoders


def encode_g4(mask: npt.NDArray[np.bool_]) -> bytes:
    """The mask as one raw CCITT G4 (T.6) strip, ink = black (0 bits in the decoded image)."""
    # libtiff's fax coder writes 1 bits as fax "black" whatever the TIFF photometric says,
    # and Pillow's mode "1" stores True as 1: so ink = True goes in as it is. (The TIFF itself
    # then reads as a negative under BlackIsZero; only its raw strip is used.)
    bilevel = PILImage.fromarray(np.ascontiguousarray(mask))
    buf = io.BytesIO()
    # One strip for the whole page: a PDF /CCITTFaxDecode stream is a single coded image.
    bilevel.save(buf, "TIFF", compression="group4", tiffinfo={278: mask.shape[0]})
    with TiffImagePlugin.TiffImageFile(io.BytesIO(buf.getvalue())) as tif:
        offsets = tif.tag_v2.get(273)
        counts = tif.tag_v2.get(279)
        photometric = tif.tag_v2.get(262)
    if offsets is None or counts is None or len(offsets) != 1:
        raise ArchivalError("libtiff did not write the mask as a single G4 strip")
    if photometric != 1:  # the bit sense above was measured with BlackIsZero output
        raise ArchivalError(f"unexpected TIFF photometric {photometric} for the G4 mask")
    start = int(offsets[0])
    return buf.getvalue()[start : start + int(counts[0])]


def encode_jpeg(image: Image, quality: int) -> bytes:
    rgb = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()


# ----------------------------------------------------------------------------- the PDF


@dataclass(frozen=True)
class ArchivalPage:
    """What `make_archival_pdf` produced: the PDF bytes and how they were made."""

    pdf: bytes
    legal: LegalCheck
    width_pt: float
    height_pt: float
    ink_rgb: tuple[int, int, int]
    background_dpi: float
    bytes_by_layer: dict[str, int] = field(default_factory=dict)
    words: int = 0


@dataclass(frozen=True)
class EncodedLayers:
    """The page's image layers, encoded: all the PDF needs of the pixels (~50 KB).

    Made before OCR so that the page itself can be freed while tesseract runs; the words
    are added by `assemble_pdf` afterwards.
    """

    background: bytes  # JPEG
    background_size: tuple[int, int]  # width, height in pixels
    background_grey: bool
    background_dpi: float
    mask: bytes  # raw G4 strip, b"" when the page has no ink
    mask_size: tuple[int, int]  # width, height: the page's pixels
    ink_rgb: tuple[int, int, int]
    marks_mask: bytes = b""  # raw G4 strip of the colour marks, b"" when there are none
    marks: bytes = b""  # JPEG of their colours, background_size pixels


def encode_layers(
    page: Image, ocr_binary: Image, dpi: int, *, background_quality: int = BACKGROUND_QUALITY
) -> EncodedLayers:
    """Segment the page (`segment`) and encode the background (JPEG) and ink mask (G4)."""
    return encode_segmented(segment(page, ocr_binary, dpi), background_quality=background_quality)


def encode_segmented(
    layers: Layers, *, background_quality: int = BACKGROUND_QUALITY
) -> EncodedLayers:
    """Encode `segment`'s layers: the background and marks as JPEG, the masks as G4.

    Apart from `segment` so that a caller can drop the page (26 MB in colour at 300 dpi)
    and its binarisation before the encoders' own copies of the masks are made
    (`agent.pipeline.process`: the worker's peak for a colour page, docs/benchmarks.md).
    """
    height, width = layers.mask.shape[:2]
    return EncodedLayers(
        background=encode_jpeg(layers.background, background_quality),
        background_size=(layers.background.shape[1], layers.background.shape[0]),
        background_grey=layers.background.ndim == 2,
        background_dpi=layers.background_dpi,
        mask=encode_g4(layers.mask) if layers.mask.any() else b"",
        mask_size=(width, height),
        ink_rgb=layers.ink_rgb,
        marks_mask=encode_g4(layers.marks) if layers.marks is not None else b"",
        marks=(
            encode_jpeg(layers.marks_image, background_quality)
            if layers.marks_image is not None
            else b""
        ),
    )


def assemble_pdf(
    layers: EncodedLayers,
    words: Sequence[Word],
    dpi: int,
    legal: LegalCheck,
    *,
    words_dpi: float | None = None,
    created: dt.datetime | None = None,
) -> ArchivalPage:
    """The one-page searchable PDF/A-2b at 100 % scale from encoded layers and OCR words.

    `words_dpi`: the resolution of the image tesseract read, when it was not the page's
    own (an enlarged low-dpi page); word boxes are in its pixels.
    """
    width, height = layers.mask_size
    width_pt, height_pt = width * 72 / dpi, height * 72 / dpi
    text_dpi = words_dpi or dpi
    text, codes = _text_operators(words, text_dpi, height * text_dpi / dpi)
    pdf = write_pdfa(
        width_pt=width_pt,
        height_pt=height_pt,
        background=layers.background,
        background_size=layers.background_size,
        background_grey=layers.background_grey,
        mask=layers.mask,
        mask_size=layers.mask_size,
        ink_rgb=layers.ink_rgb,
        marks=layers.marks,
        marks_mask=layers.marks_mask,
        text_operators=text,
        text_codes=codes,
        created=created,
    )
    return ArchivalPage(
        pdf,
        legal,
        round(width_pt, 3),
        round(height_pt, 3),
        layers.ink_rgb,
        round(layers.background_dpi, 2),
        {
            "background_jpeg": len(layers.background),
            "mask_g4": len(layers.mask),
            "marks_jpeg": len(layers.marks),
            "marks_mask_g4": len(layers.marks_mask),
            "text_ops": len(text),
        },
        len(words),
    )


def make_archival_pdf(
    page: Image,
    ocr_binary: Image,
    words: Sequence[Word],
    dpi: int,
    legal: LegalCheck,
    *,
    background_quality: int = BACKGROUND_QUALITY,
    created: dt.datetime | None = None,
) -> ArchivalPage:
    """Segment the page and write it as a one-page searchable PDF/A-2b at 100 % scale."""
    layers = encode_layers(page, ocr_binary, dpi, background_quality=background_quality)
    return assemble_pdf(layers, words, dpi, legal, created=created)


def _text_operators(
    words: Sequence[Word], dpi: float, page_height_px: float
) -> tuple[bytes, set[int]]:
    """Invisible text (3 Tr), each word stretched (Tz) over its box, a space after it.

    Boxes are tesseract's, in pixels of the page that goes into the PDF. The font size is
    the line's tallest box (one size per line keeps baselines straight for text selection).
    Returns the operators and the character codes (= Unicode BMP code points) they use.
    """
    if not words:
        return b"", set()
    scale = 72 / dpi
    line_height: dict[tuple[int, int, int], int] = {}
    line_bottom: dict[tuple[int, int, int], int] = {}
    for word in words:
        _, top, _, h = word.box
        line_height[word.line] = max(line_height.get(word.line, 0), h)
        line_bottom[word.line] = max(line_bottom.get(word.line, 0), top + h)
    out = [b"BT\n3 Tr\n"]
    used: set[int] = set()
    for index, word in enumerate(words):
        left, _, w, _ = word.box
        last_of_line = index + 1 == len(words) or words[index + 1].line != word.line
        text = word.text if last_of_line else word.text + " "
        codes = [ord(c) for c in text if ord(c) < 0x10000]
        if not codes:
            continue
        used.update(codes)
        size_pt = max(1.0, line_height[word.line] * scale)
        span_px = w if last_of_line else max(w, words[index + 1].box[0] - left)
        natural_pt = len(codes) * _GLYPH_ADVANCE / 1000 * size_pt
        stretch = 100 * span_px * scale / natural_pt
        x = left * scale
        # Baseline a fifth of the line height above the lowest box bottom (descenders).
        y = (page_height_px - line_bottom[word.line] + 0.2 * line_height[word.line]) * scale
        hexcodes = "".join(f"{c:04X}" for c in codes)
        out.append(
            f"/F1 {size_pt:.2f} Tf {stretch:.2f} Tz 1 0 0 1 {x:.2f} {y:.2f} Tm "
            f"<{hexcodes}> Tj\n".encode("ascii")
        )
    out.append(b"ET\n")
    return b"".join(out), used


def _glyphless_font() -> bytes:
    for path in _GLYPHLESS_PATHS:
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except OSError:
            continue
    raise ArchivalError(
        "tesseract's GlyphLessFont (tessdata/pdf.ttf) not found "
        "(install: apt install tesseract-ocr)"
    )


@functools.cache
def _srgb_profile() -> bytes:
    """lcms' sRGB profile, made once per process: it stamps its creation time (header bytes
    24–35), and two PDFs of the same page made a second apart differed by it."""
    return bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())


def _to_unicode_cmap(codes: set[int]) -> bytes:
    """Identity CID → Unicode, one bfrange per high byte in use (a range may vary only in
    its last byte, PDF 32000-1 9.10.3)."""
    highs = sorted({c >> 8 for c in codes}) or [0]
    ranges = "".join(f"<{h:02X}00> <{h:02X}FF> <{h:02X}00>\n" for h in highs)
    return (
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
        "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
        f"{len(highs)} beginbfrange\n{ranges}endbfrange\n"
        "endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n"
    ).encode("ascii")


def _xmp(created: str, producer: str, document_id: str) -> bytes:
    # pdfaid identifies PDF/A-2b; the dates and producer equal the Info dictionary's
    # (ISO 19005-2 6.6.2.3.1: Info entries and their XMP analogues must agree).
    return f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about=""
 xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/"
 xmlns:dc="http://purl.org/dc/elements/1.1/"
 xmlns:xmp="http://ns.adobe.com/xap/1.0/"
 xmlns:pdf="http://ns.adobe.com/pdf/1.3/"
 xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/">
<pdfaid:part>2</pdfaid:part>
<pdfaid:conformance>B</pdfaid:conformance>
<dc:format>application/pdf</dc:format>
<xmp:CreateDate>{created}</xmp:CreateDate>
<xmp:ModifyDate>{created}</xmp:ModifyDate>
<xmp:MetadataDate>{created}</xmp:MetadataDate>
<xmp:CreatorTool>{producer}</xmp:CreatorTool>
<pdf:Producer>{producer}</pdf:Producer>
<xmpMM:DocumentID>uuid:{document_id}</xmpMM:DocumentID>
</rdf:Description>
</rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>""".encode()


class _PdfFile:
    """Objects numbered in order of `add`, serialised with an exact cross-reference table."""

    def __init__(self) -> None:
        self._objects: list[bytes] = []

    def reserve(self) -> int:
        self._objects.append(b"")
        return len(self._objects)

    def put(self, number: int, body: bytes) -> int:
        self._objects[number - 1] = body
        return number

    def add(self, body: bytes) -> int:
        return self.put(self.reserve(), body)

    def stream(self, attrs: str, data: bytes, compress: bool = False) -> int:
        if compress:
            data = zlib.compress(data, 9)
            attrs += " /Filter /FlateDecode"
        head = f"<< {attrs} /Length {len(data)} >>\nstream\n".encode("ascii")
        return self.add(head + data + b"\nendstream")

    def serialise(self, root: int, info: int, file_id: bytes) -> bytes:
        # The binary comment of four bytes > 127 after the header is required (6.1.2).
        out = bytearray(f"%PDF-{PDF_VERSION}\n%\xe2\xe3\xcf\xd3\n".encode("latin-1"))
        offsets = []
        for number, body in enumerate(self._objects, start=1):
            offsets.append(len(out))
            out += f"{number} 0 obj\n".encode("ascii") + body + b"\nendobj\n"
        xref = len(out)
        out += f"xref\n0 {len(self._objects) + 1}\n0000000000 65535 f \n".encode("ascii")
        for offset in offsets:
            out += f"{offset:010d} 00000 n \n".encode("ascii")
        hex_id = file_id.hex().upper()
        out += (
            f"trailer\n<< /Size {len(self._objects) + 1} /Root {root} 0 R /Info {info} 0 R "
            f"/ID [<{hex_id}> <{hex_id}>] >>\nstartxref\n{xref}\n%%EOF\n"
        ).encode("ascii")
        return bytes(out)


def write_pdfa(
    *,
    width_pt: float,
    height_pt: float,
    background: bytes,
    background_size: tuple[int, int],
    background_grey: bool,
    mask: bytes,
    mask_size: tuple[int, int],
    ink_rgb: tuple[int, int, int],
    text_operators: bytes,
    text_codes: set[int],
    marks: bytes = b"",
    marks_mask: bytes = b"",
    created: dt.datetime | None = None,
) -> bytes:
    """A one-page PDF/A-2b: background JPEG, colour marks (a JPEG of their colours at the
    background's size, shaped by a G4 explicit mask at the page's), G4 ink mask, invisible
    text, XMP, sRGB intent."""
    when = (created or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    xmp_date = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    info_date = when.strftime("D:%Y%m%d%H%M%SZ")
    digest = hashlib.md5(  # noqa: S324 -- a file identifier, not a security hash
        background + mask + marks + marks_mask + text_operators + xmp_date.encode()
    ).digest()
    doc_uuid = digest.hex()
    doc_uuid = "-".join(
        (doc_uuid[:8], doc_uuid[8:12], doc_uuid[12:16], doc_uuid[16:20], doc_uuid[20:])
    )

    pdf = _PdfFile()
    catalog, pages, page_obj = pdf.reserve(), pdf.reserve(), pdf.reserve()
    metadata = pdf.stream(
        "/Type /Metadata /Subtype /XML", _xmp(xmp_date, PRODUCER, doc_uuid), compress=False
    )
    icc = pdf.stream("/N 3", _srgb_profile(), compress=True)
    intent = pdf.add(
        f"<< /Type /OutputIntent /S /GTS_PDFA1 /OutputConditionIdentifier (sRGB IEC61966-2.1) "
        f"/Info (sRGB IEC61966-2.1) /DestOutputProfile {icc} 0 R >>".encode("ascii")
    )
    bw, bh = background_size
    colour_space = "/DeviceGray" if background_grey else "/DeviceRGB"
    bg = pdf.stream(
        f"/Type /XObject /Subtype /Image /Width {bw} /Height {bh} /ColorSpace {colour_space} "
        "/BitsPerComponent 8 /Filter /DCTDecode",
        background,
    )
    xobjects = f"/Bg {bg} 0 R"
    draw = [f"q {width_pt:.4f} 0 0 {height_pt:.4f} 0 0 cm /Bg Do Q\n"]
    if marks and marks_mask:
        mw, mh = mask_size
        # An explicit mask (PDF 32000-1 8.9.6.3): the colour image is painted where the
        # stencil's samples are 0 — the same G4 sense as the ink mask below. It may have
        # its own resolution: the shape at the page's, the colours at the background's.
        shape = pdf.stream(
            f"/Type /XObject /Subtype /Image /Width {mw} /Height {mh} /ImageMask true "
            f"/BitsPerComponent 1 /Filter /CCITTFaxDecode "
            f"/DecodeParms << /K -1 /Columns {mw} /Rows {mh} /BlackIs1 false >>",
            marks_mask,
        )
        fg = pdf.stream(
            f"/Type /XObject /Subtype /Image /Width {bw} /Height {bh} /ColorSpace /DeviceRGB "
            f"/BitsPerComponent 8 /Filter /DCTDecode /Mask {shape} 0 R",
            marks,
        )
        xobjects += f" /Marks {fg} 0 R"
        draw.append(f"q {width_pt:.4f} 0 0 {height_pt:.4f} 0 0 cm /Marks Do Q\n")
    if mask:
        mw, mh = mask_size
        ink = pdf.stream(
            f"/Type /XObject /Subtype /Image /Width {mw} /Height {mh} /ImageMask true "
            f"/BitsPerComponent 1 /Filter /CCITTFaxDecode "
            f"/DecodeParms << /K -1 /Columns {mw} /Rows {mh} /BlackIs1 false >>",
            mask,
        )
        xobjects += f" /Ink {ink} 0 R"
        r, g, b = (c / 255 for c in ink_rgb)
        draw.append(
            f"q {r:.3f} {g:.3f} {b:.3f} rg {width_pt:.4f} 0 0 {height_pt:.4f} 0 0 cm /Ink Do Q\n"
        )
    resources = f"/XObject << {xobjects} >>"
    content_bytes = "".join(draw).encode("ascii") + text_operators
    if text_operators:
        font_file = _glyphless_font()
        font_stream = pdf.stream(f"/Length1 {len(font_file)}", font_file, compress=True)
        descriptor = pdf.add(
            b"<< /Type /FontDescriptor /FontName /GlyphLessFont /Flags 5 "
            b"/FontBBox [0 0 500 1000] /ItalicAngle 0 /Ascent 1000 /Descent 0 "
            b"/CapHeight 1000 /StemV 80 /FontFile2 " + f"{font_stream} 0 R >>".encode("ascii")
        )
        # Every CID → glyph 1 (the invisible one, advance 500): widths agree with /DW 500.
        gid_map = pdf.stream("", b"\x00\x01" * 65536, compress=True)
        cid_font = pdf.add(
            b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /GlyphLessFont "
            b"/CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> "
            + f"/FontDescriptor {descriptor} 0 R /DW {_GLYPH_ADVANCE} "
            f"/CIDToGIDMap {gid_map} 0 R >>".encode("ascii")
        )
        to_unicode = pdf.stream("", _to_unicode_cmap(text_codes), compress=True)
        font = pdf.add(
            b"<< /Type /Font /Subtype /Type0 /BaseFont /GlyphLessFont /Encoding /Identity-H "
            + f"/DescendantFonts [{cid_font} 0 R] /ToUnicode {to_unicode} 0 R >>".encode("ascii")
        )
        resources += f" /Font << /F1 {font} 0 R >>"
    contents = pdf.stream("", content_bytes, compress=True)
    pdf.put(
        page_obj,
        f"<< /Type /Page /Parent {pages} 0 R /MediaBox [0 0 {width_pt:.4f} {height_pt:.4f}] "
        f"/Resources << {resources} >> /Contents {contents} 0 R >>".encode("ascii"),
    )
    pdf.put(pages, f"<< /Type /Pages /Kids [{page_obj} 0 R] /Count 1 >>".encode("ascii"))
    pdf.put(
        catalog,
        f"<< /Type /Catalog /Pages {pages} 0 R /Metadata {metadata} 0 R "
        f"/OutputIntents [{intent} 0 R] /Lang (vi) >>".encode("ascii"),
    )
    info = pdf.add(
        f"<< /Producer ({PRODUCER}) /Creator ({PRODUCER}) /CreationDate ({info_date}) "
        f"/ModDate ({info_date}) >>".encode("ascii")
    )
    return pdf.serialise(catalog, info, digest)
