"""Page-image cleanup with OpenCV: load, orient, deskew, normalise, detect blank, binarise.

This module owns every pixel decision made about a captured page before OCR, each returned
with its confidence in a small frozen dataclass so the pipeline can record it in
`decisions.json` and a reviewer can undo it (docs/design.md §4: cleanup decisions are recorded and
reversible; a blank page is flagged, never dropped).

It must not: run tesseract or any other program (that is `agent.pipeline.ocr`), write any file
(callers write), or alter its inputs (every function returns a new array; the
capture file is only read). Functions are pure over numpy arrays; images are `uint8`, either
grey (H, W) or BGR (H, W, 3) as OpenCV keeps them.

Numbers that bound the methods come from docs/research/perf.md §B3 (measured on a 300-dpi A4):
text-line-contour deskew at 0.5× scale (6–8 ms, error ≤ 0.015° over −4…+6°), despeckle of
components under 15 px at 300 dpi (smallest Vietnamese diacritic part: 17 px; 25 px or 40 px
thresholds delete tone marks), blank detection by paper-relative threshold plus blob count
(Otsu alone calls 43 % of a blank noisy page "ink").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from agent.errors import SohoaError

Image = npt.NDArray[np.uint8]

MAX_SKEW_DEG = 15.0  # beyond this a sheet was fed badly enough to need a rescan, not a fix
REFERENCE_DPI = 300
HALO_PX = 3  # ink_grey: grey kept this far (px) around binarised ink, at ≥ 300 dpi
HALO_PX_LOW_DPI = 4  # and below 300 dpi (see ink_grey for the measurements)
WORK_DPI = 150  # line analysis runs at 150 dpi: docs/research/perf.md B3's 0.5× of a 300-dpi page


def _u8(array: object) -> Image:
    """View an OpenCV result as our image type (no copy: cv2 already returns uint8 here)."""
    return np.asarray(array, dtype=np.uint8)


class CaptureUnreadable(SohoaError):
    """The capture file is missing or cannot be decoded as an image."""


def _scale(dpi: int) -> float:
    return dpi / REFERENCE_DPI


def min_speck_area(dpi: int) -> int:
    """Smallest connected component kept as ink: 15 px at 300 dpi, scaled by area.

    docs/research/perf.md B3: < 15 px removes speckles while the smallest diacritic part (17 px at
    11 pt,
    300 dpi) survives; at 200 dpi this gives 7 px, the value measured there (B2c).
    """
    return max(2, round(15 * _scale(dpi) ** 2))


def _components(binary: Image) -> tuple[int, npt.NDArray[np.integer], npt.NDArray[np.int32]]:
    """8-connected components of a 0/non-0 image: (count, labels, stats).

    Labels are 16-bit when they fit (a 300-dpi A4 page: 17 MB instead of 35 MB of int32);
    OpenCV raises on overflow, and a page with more than 65 535 components gets int32.
    """
    try:
        count, labels, stats, _ = cv2.connectedComponentsWithStats(
            binary, connectivity=8, ltype=cv2.CV_16U
        )
    except cv2.error:
        count, labels, stats, _ = cv2.connectedComponentsWithStats(
            binary, connectivity=8, ltype=cv2.CV_32S
        )
    return int(count), np.asarray(labels), np.asarray(stats, dtype=np.int32)


COMPONENT_BAND_ROWS = 512  # _banded_components: rows labelled at a time


def _banded_components(
    binary: Image,
) -> tuple[npt.NDArray[np.int64], list[tuple[int, int, int]], npt.NDArray[np.intp]]:
    """The 8-connected components of a 0/non-0 image, labelled COMPONENT_BAND_ROWS rows at
    a time: exactly those of the whole image, without its label image (16-bit, 17 MB for a
    300-dpi A4, beside OpenCV's own work array: the worker's peak in blank detection and
    binarisation, docs/benchmarks.md "Ninth sitting").

    A component crossing a band's edge is labelled in each band and joined again where
    its pixels touch across the edge (8-connected: the pixel below or diagonally below).
    Returns `stats`, one row per component (background excluded; columns as OpenCV's
    CC_STAT_LEFT, TOP, WIDTH, HEIGHT, AREA; in no particular order), the bands as (top,
    bottom, offset), and `component`: band `b`'s label `n` ≥ 1 is component
    `component[offset_b + n - 1]`, a row of `stats`. Labelling a band again
    (`_components(binary[top:bottom])`) gives the same labels.
    """
    height = binary.shape[0]
    parts: list[npt.NDArray[np.int64]] = []
    bands: list[tuple[int, int, int]] = []
    edges: list[npt.NDArray[np.int64]] = []
    offset = 0
    above: npt.NDArray[np.int64] | None = None  # the previous band's last row, global ids
    for top in range(0, height, COMPONENT_BAND_ROWS):
        bottom = min(height, top + COMPONENT_BAND_ROWS)
        count, labels, stats = _components(binary[top:bottom])
        part = stats[1:count].astype(np.int64)
        part[:, cv2.CC_STAT_TOP] += top
        parts.append(part)
        bands.append((top, bottom, offset))
        first = np.where(labels[0] > 0, labels[0].astype(np.int64) + offset - 1, -1)
        if above is not None:
            for a, b in ((above, first), (above[1:], first[:-1]), (above[:-1], first[1:])):
                touching = (a >= 0) & (b >= 0)
                edges.append(np.stack([a[touching], b[touching]], axis=1))
        above = np.where(labels[-1] > 0, labels[-1].astype(np.int64) + offset - 1, -1)
        offset += count - 1
        del labels
    parent = np.arange(offset)
    joins = np.unique(np.concatenate(edges), axis=0) if edges else np.empty((0, 2), np.int64)
    for a, b in joins.tolist():
        while parent[a] != a:
            a = parent[a]
        while parent[b] != b:
            b = parent[b]
        if a != b:
            parent[max(a, b)] = min(a, b)
    while True:  # every id to its root
        grand = parent[parent]
        if np.array_equal(grand, parent):
            break
        parent = grand
    roots, component = np.unique(parent, return_inverse=True)
    each = np.concatenate(parts) if parts else np.empty((0, 5), np.int64)
    left, top_, width, height_, area = (each[:, c] for c in range(5))
    merged = np.empty((roots.size, 5), np.int64)
    low_x = np.full(roots.size, np.iinfo(np.int64).max)
    low_y = np.full(roots.size, np.iinfo(np.int64).max)
    high_x = np.zeros(roots.size, np.int64)
    high_y = np.zeros(roots.size, np.int64)
    np.minimum.at(low_x, component, left)
    np.minimum.at(low_y, component, top_)
    np.maximum.at(high_x, component, left + width)
    np.maximum.at(high_y, component, top_ + height_)
    merged[:, cv2.CC_STAT_LEFT], merged[:, cv2.CC_STAT_TOP] = low_x, low_y
    merged[:, cv2.CC_STAT_WIDTH], merged[:, cv2.CC_STAT_HEIGHT] = high_x - low_x, high_y - low_y
    merged[:, cv2.CC_STAT_AREA] = np.bincount(component, weights=area, minlength=roots.size)
    return merged, bands, component


# ----------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class LoadedCapture:
    """A capture decoded to 8-bit grey or BGR, with what the file held before conversion."""

    image: Image
    bit_depth: int  # 8 or 16 in the file
    channels: int  # 1, 2, 3 or 4 in the file
    width: int
    height: int


def load_capture(path: Path) -> LoadedCapture:
    """Decode any capture (PNG/TIFF/JPEG, 8/16-bit, grey/colour, with or without alpha).

    The file is read once and never written. 16-bit samples are scaled to 8 bits (/257);
    alpha is composited onto white (a transparent scan background is paper).
    """
    # imread streams the file: the encoded bytes (10–25 MB for a noisy 300-dpi PNG) never
    # sit in memory beside the decoded pixels. Paths OpenCV cannot open (non-UTF-8 names on
    # some platforms) go through a buffer instead. Decoded into an output array (`None`:
    # OpenCV allocates it as a numpy array): the plain `imread(path, flags)` returns a Mat
    # of its own that the Python binding then copies, two copies of the page at once (a
    # colour 300-dpi A4: 50 MB for a 25 MB page, the worker's load peak; docs/benchmarks.md
    # "Ninth sitting"). The output-array form needs OpenCV ≥ 4.11 (pyproject.toml).
    raw = cv2.imread(str(path), None, cv2.IMREAD_UNCHANGED) if path.is_file() else None
    if raw is None:
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            raise CaptureUnreadable("capture_unreadable", f"{path}: {exc}") from exc
        raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        del data
    if raw is None:
        raise CaptureUnreadable("capture_unreadable", f"{path}: not a decodable image")
    channels = 1 if raw.ndim == 2 else int(raw.shape[2])
    bit_depth = 16 if raw.dtype == np.uint16 else 8
    if raw.dtype == np.uint16:
        raw = cv2.convertScaleAbs(raw, alpha=1 / 257)
    elif raw.dtype != np.uint8:
        # 32-bit or float TIFFs from odd drivers: stretch their range onto 8 bits.
        values = np.asarray(raw, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        raw = cv2.convertScaleAbs(
            values, alpha=255 / max(high - low, 1e-9), beta=-low * 255 / max(high - low, 1e-9)
        )
    pixels = _u8(raw)
    image: Image
    if channels == 1:
        image = np.ascontiguousarray(pixels)
    elif channels == 2:  # grey + alpha
        image = _over_white(pixels[:, :, 0], pixels[:, :, 1])
    elif channels == 4:
        bgr = np.ascontiguousarray(pixels[:, :, :3])
        alpha = pixels[:, :, 3]
        image = bgr if bool((alpha == 255).all()) else _over_white(bgr, alpha)
    else:
        image = np.ascontiguousarray(pixels[:, :, :3])
    height, width = image.shape[:2]
    return LoadedCapture(image, bit_depth, channels, width, height)


def _over_white(colour: Image, alpha: Image) -> Image:
    a = alpha.astype(np.float32) / 255.0
    if colour.ndim == 3:
        a = a[:, :, None]
    out = colour.astype(np.float32) * a + 255.0 * (1.0 - a)
    return _u8(np.clip(out + 0.5, 0, 255))


def to_grey(image: Image) -> Image:
    """Luma grey (for blank detection and anything that must see every mark, seals included)."""
    return image if image.ndim == 2 else _u8(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))


COLOUR_INK_KEPT = 0.75  # max_channel only when it keeps this share of the page's dark ink
COLOUR_INK_BAND_ROWS = 512  # text_grey works in row bands (no whole-page channel copies)


def neutral_ink_share(image: Image) -> float:
    """Share of the page's ink (luma under 0.7 × paper) that stays ink in the max channel.

    On a sample (every 4th pixel). Black or grey type stays dark in every channel: a typed
    page keeps ~0.9 of its ink whatever its stamps cover (measured on tests/records:
    stamps_colour, margin_notes). A carbon copy or a page written in blue keeps little:
    its ink is bright in the blue channel.
    """
    sample = np.ascontiguousarray(image[::4, ::4])
    luma = cv2.cvtColor(sample, cv2.COLOR_BGR2GRAY)
    dark = luma < 0.7 * float(np.percentile(luma, 90))
    if int(dark.sum()) < 50:
        return 1.0
    brightest = sample.max(axis=2)
    kept = brightest < 0.7 * float(np.percentile(brightest, 90))
    return float((kept & dark).sum()) / float(dark.sum())


def text_grey(
    image: Image, dpi: int = REFERENCE_DPI, *, crossings: bool = True
) -> tuple[Image, str]:
    """Grey for reading text, with stamps and signatures in colour dropped out.

    A commune document carries a red round seal over the signature, often a blue or violet
    office stamp ("SAO Y BẢN CHÍNH", "ĐÃ KÝ") and a blue signature over the text. When the
    page's own ink is neutral (black or grey: `neutral_ink_share` of COLOUR_INK_KEPT), the
    grey is the brightest channel of each pixel plus its chroma (max − min channel): red,
    blue and violet inks are bright in one channel and far from grey, and vanish to paper
    (a ballpoint blue, 30/50/150, is 150 in its brightest channel alone: still ink to
    Otsu, so the chroma is added); black ink is dark and grey in all three and stays — also
    where it runs under a stamp (subtractive: black under blue is still dark in every
    channel). Issue 15: a blue stamp and signature destroyed the lines under them in the
    red channel. When the ink itself is coloured (a carbon copy, a page written in blue),
    the red channel as before: it keeps blue-violet text dark and drops a red seal.
    Where two colour marks cross (a blue signature over a red seal) the crossing is dark and
    nearly grey, and is dropped by `_drop_mark_overlaps` (`crossings`; the line analysis of
    orientation and deskew goes without: 0.1–0.3 s on a page with marks, nothing without).
    Returns the grey image and the method name recorded in the decisions.
    """
    if image.ndim == 2:
        return image, "grey"
    if neutral_ink_share(image) < COLOUR_INK_KEPT:
        return np.ascontiguousarray(image[:, :, 2]), "red_channel"
    out = np.empty(image.shape[:2], np.uint8)
    tinted = []
    for top in range(0, image.shape[0], COLOUR_INK_BAND_ROWS):
        rows = slice(top, top + COLOUR_INK_BAND_ROWS)
        b, g, r = cv2.split(image[rows])
        brightest = cv2.max(cv2.max(b, g), r)
        chroma = cv2.subtract(brightest, cv2.min(cv2.min(b, g), r))
        out[rows] = cv2.add(brightest, chroma)  # saturates: any vivid colour becomes paper
        if crossings:
            tinted.append(_tinted_dark(out[rows], _u8(brightest), _u8(chroma)))
    if crossings:
        _drop_mark_overlaps(image, out, tinted, dpi)
    return out, "max_channel+chroma"


OVERLAP_DARK = 192  # in text grey: a pixel that could be ink ...
OVERLAP_MIN_CHROMA = 10  # ... this far from grey ...
OVERLAP_MIN_SATURATION = 0.35  # ... and this share of its brightest channel: tinted, not black
OVERLAP_MARK_CHROMA = 40  # a colour mark's own pixels (ballpoint blue 120, seal red 165) ...
OVERLAP_MARK_LIGHT = 0.5  # ... with their brightest channel at least this share of the paper
OVERLAP_REACH_MM = 1.0  # a mark's colour is taken from its pixels this near
OVERLAP_HUE_BINS = 12  # marks are told apart by hue, 30° a bin
OVERLAP_MIN_MARK_PX = 50  # pixels of a hue that make a mark (fewer: edges of other marks)
OVERLAP_NEUTRAL = 0.5  # a tint under this share of the brightest channel is neutral


def _tinted_dark(grey: Image, brightest: Image, chroma: Image) -> npt.NDArray[np.bool_] | None:
    """Pixels of a band that are dark in text grey and tinted (see `_drop_mark_overlaps`)."""
    mask = (grey < OVERLAP_DARK) & (chroma >= OVERLAP_MIN_CHROMA)
    if not mask.any():
        return None
    # chroma ≥ OVERLAP_MIN_SATURATION × brightest, in integers (uint8 would wrap)
    mask &= chroma.astype(np.uint16) * 100 >= brightest.astype(np.uint16) * round(
        100 * OVERLAP_MIN_SATURATION
    )
    return mask if mask.any() else None


def _drop_mark_overlaps(
    image: Image, out: Image, tinted: list[npt.NDArray[np.bool_] | None], dpi: int
) -> None:
    """Where two colour marks cross, the dark result is a mark too: paper in `out` (in place).

    Inks multiply: a blue signature over a red seal absorbs red (the blue) and blue and green
    (the red), so the crossing is dark in all three channels — as dark as black type, with
    too little chroma for `text_grey` to drop it, and a signature running along a seal's ring
    leaves a long dark arc across the lines (stamps_colour seed 0 of tests/records read 3.1 %
    for it). The crossing keeps a tint black type has not (here ~(57, 24, 23) BGR: it is the
    product of the two marks' colours), but black type under one mark is tinted too: under
    a red seal a dark red. What tells them apart is what is left when the colour of a mark
    near the pixel is divided out (measured on that mark's own pixels within about
    OVERLAP_REACH_MM, its stroke cores weighted most): black type under the seal comes out
    black; a crossing comes out as the other mark's colour, bright in its own channel, which
    the text grey (brightest + chroma) makes paper. So each tinted dark pixel near marks gets
    the darkest text grey among: as it is, when it is neutral as it is (black type beside a
    mark, OVERLAP_NEUTRAL), and with the colour of each hue of mark near it divided out;
    paper when none of these is dark. Any two inks of different hues cross this way; tinted
    pixels far from marks (colour fringes of black type) keep their grey.
    """
    reach = max(2, round(OVERLAP_REACH_MM * dpi / 25.4))
    paper = np.maximum(np.array(paper_colour(image), np.float32), 1.0)
    for index, found in enumerate(tinted):
        if found is None:
            continue
        top = index * COLOUR_INK_BAND_ROWS
        ys, xs = np.nonzero(found)
        # The tinted pixels' box and the reach around it: the only part of the band read.
        y0, y1 = (
            max(0, top + int(ys.min()) - reach),
            min(out.shape[0], top + int(ys.max()) + reach + 1),
        )
        x0, x1 = max(0, int(xs.min()) - reach), min(out.shape[1], int(xs.max()) + reach + 1)
        box = image[y0:y1, x0:x1]
        b, g, r = cv2.split(box)
        brightest = cv2.max(cv2.max(b, g), r)
        chroma = cv2.subtract(brightest, cv2.min(cv2.min(b, g), r))
        # One ink over the paper lets its own colour through (ballpoint blue keeps 0.6 of
        # the paper in blue, seal red 0.8 in red); where two overlap, even at their edges,
        # every channel is a product of both and darker: not a mark's own colour.
        pure = (chroma >= OVERLAP_MARK_CHROMA) & (
            brightest >= OVERLAP_MARK_LIGHT * float(paper.max())
        )
        marks = cv2.morphologyEx(pure.view(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        if not marks.any():
            continue
        ys, xs = ys + top - y0, xs - x0  # into the box
        pix = box[ys, xs].astype(np.float32) / paper  # BGR transmissions
        grey_out = out[y0:y1, x0:x1]
        as_is = grey_out[ys, xs].astype(np.float32)
        best = np.where(_neutral(pix), as_is, 255.0)
        near_marks = np.zeros(len(ys), bool)
        on_marks = marks != 0
        hue = cv2.cvtColor(box, cv2.COLOR_BGR2HSV_FULL)[:, :, 0][on_marks].astype(np.int32)
        bins = np.full(marks.shape, -1, np.int8)  # OVERLAP_HUE_BINS fit: 1 byte, not 4
        bins[on_marks] = ((hue + 256 // (2 * OVERLAP_HUE_BINS)) % 256) * OVERLAP_HUE_BINS // 256
        kinds, counts = np.unique(bins[on_marks], return_counts=True)
        weight = chroma.astype(np.float32)
        weight /= 255.0
        np.square(weight, out=weight)  # in place: each whole-box float copy is 5 MB for a
        np.square(weight, out=weight)  # band of a 300-dpi A4
        # The marks' colours are measured on cells of `reach` px, each pixel taking the
        # mean over the 3 × 3 cells around its own (a square of about 3 reaches).
        cells = (max(1, box.shape[1] // reach), max(1, box.shape[0] // reach))
        cy = np.minimum(ys * cells[1] // box.shape[0], cells[1] - 1)
        cx = np.minimum(xs * cells[0] // box.shape[1], cells[0] - 1)
        for k in kinds[counts >= OVERLAP_MIN_MARK_PX]:
            # Weighted by chroma⁴: a stroke's core (the ink at full strength) counts, its
            # antialiased edges, paler, hardly.
            of_k = np.where(bins == k, weight, np.float32(0))
            # Each channel reduced on its own, then merged: the same values as reducing the
            # four-channel stack (INTER_AREA works per channel), without the box-sized
            # four-channel float copy (20 MB for a band of a 300-dpi A4 with a seal: the
            # worker's peak on such a page, docs/benchmarks.md "Ninth sitting").
            reduced = [cv2.resize(c * of_k, cells, interpolation=cv2.INTER_AREA) for c in (b, g, r)]
            reduced.append(cv2.resize(of_k, cells, interpolation=cv2.INTER_AREA))
            del of_k
            near = cv2.boxFilter(cv2.merge(reduced), -1, (3, 3), normalize=False)[cy, cx]
            # At least the weight of ~2 core pixels of a ballpoint stroke (chroma 120: 0.05).
            has = near[:, 3] * (box.shape[0] * box.shape[1] / (cells[0] * cells[1])) >= 0.1
            if not has.any():
                continue
            mark = near[:, :3] / np.maximum(near[:, 3:], 1e-6) / paper
            under = np.minimum(pix / np.maximum(mark, 0.02), 1.0)  # the mark's colour taken out
            high = under.max(axis=1)
            grey = 255.0 * (2 * high - under.min(axis=1))  # text_grey's brightest + chroma
            best = np.where(has, np.minimum(best, grey), best)
            near_marks |= has
        best = np.where(near_marks, best, as_is)  # far from any mark: as text_grey made it
        grey_out[ys, xs] = np.clip(best, 0, 255).astype(np.uint8)


def _neutral(transmission: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.bool_]:
    """Rows of per-channel transmissions that are a neutral ink (or paper): a tint under
    OVERLAP_NEUTRAL of the brightest channel."""
    t = np.minimum(transmission, 1.0)
    high = t.max(axis=1)
    low = t.min(axis=1)
    neutral: npt.NDArray[np.bool_] = (high - low) <= np.maximum(OVERLAP_NEUTRAL * high, 10 / 255)
    return neutral


def paper_colour(image: Image) -> tuple[int, ...]:
    """The paper colour (per-channel 90th percentile of a 1/8 sample): the fill for rotations."""
    sample = image[::8, ::8]
    if sample.ndim == 2:
        return (int(np.percentile(sample, 90)),)
    return tuple(int(np.percentile(sample[:, :, c], 90)) for c in range(sample.shape[2]))


# ----------------------------------------------------------------------------- skew


@dataclass(frozen=True)
class SkewEstimate:
    """Skew of the text lines, degrees counter-clockwise (rotate by −angle to correct)."""

    angle_deg: float
    confidence: float  # 0..1: how many text lines agree, and how tightly
    lines: int  # long line blobs that voted
    spread_deg: float  # median absolute deviation of their angles
    method: str = "text_line_contours"


def _line_blob_angles(small: Image, dpi: int) -> npt.NDArray[np.float64]:
    """Angles (deg, CCW) of the long thin blobs a horizontal close makes of text lines.

    `small` is the page at `_work_dpi(dpi)`. docs/research/perf.md B3: Otsu, 40×3 close at 0.5× of
    300 dpi,
    minAreaRect of each blob; 6–8 ms and exact to 0.015° where minAreaRect of all ink pixels
    fails on speckled pages.
    """
    work_dpi = _work_dpi(dpi)
    _, ink = cv2.threshold(small, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    kernel_w = max(9, round(40 * work_dpi / WORK_DPI))
    closed = cv2.morphologyEx(ink, cv2.MORPH_CLOSE, np.ones((3, kernel_w), np.uint8))
    contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    min_length = 15 * work_dpi / 25.4  # 15 mm: a short centred title still counts
    angles = []
    for contour in contours:
        if len(contour) < 5:
            continue
        rect = cv2.minAreaRect(contour)
        (w, h) = rect[1]
        long_side, short_side = max(w, h), min(w, h)
        if long_side < min_length or long_side < 5 * max(short_side, 1.0):
            continue
        # minAreaRect picks the blobs; their principal axis (second moments of the filled
        # contour) gives the angle. The rect's own angle snaps to 0 on short lines under
        # ~0.5° (a 15 mm title rises half a pixel), the moments do not. y grows downwards,
        # so counter-clockwise is the negated image-space angle.
        m = cv2.moments(contour)
        angle = -math.degrees(0.5 * math.atan2(2 * m["mu11"], m["mu20"] - m["mu02"]))
        if abs(angle) <= MAX_SKEW_DEG:
            angles.append(angle)
    return np.asarray(angles, dtype=np.float64)


def _work_dpi(dpi: int) -> int:
    return min(dpi, WORK_DPI)


def _working(grey: Image, dpi: int) -> Image:
    """The page at WORK_DPI (never enlarged): line shapes survive, pixels are 4× fewer."""
    factor = _work_dpi(dpi) / dpi
    if factor >= 1:
        return grey
    return _u8(cv2.resize(grey, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA))


def estimate_skew(grey: Image, dpi: int = REFERENCE_DPI) -> SkewEstimate:
    """Estimate the text-line skew within ±15°; angle 0 and confidence 0 when no lines vote.

    Two passes: beyond a few degrees the 40×3 close starts to bridge neighbouring lines and
    speckles, so the first estimate is refined on the half-scale page turned level by it
    (noisy page at 10°: 0.27° error in one pass, measured on tests/corpus.py).
    """
    small = _working(grey, dpi)
    angles = _line_blob_angles(small, dpi)
    if angles.size == 0:
        return SkewEstimate(0.0, 0.0, 0, 0.0)
    first = float(np.median(angles))
    if abs(first) > 0.5:
        residual = _line_blob_angles(rotate(small, -first), dpi)
        if residual.size >= angles.size // 2:
            angles = residual + first
    angle = float(np.median(angles))
    spread = float(np.median(np.abs(angles - angle)))
    # Ten agreeing lines within 0.1° is as sure as this method gets; one line is a guess.
    confidence = min(1.0, angles.size / 10) * max(0.0, 1.0 - spread / 1.0)
    return SkewEstimate(round(angle, 3), round(confidence, 3), int(angles.size), round(spread, 3))


def rotate(image: Image, angle_deg: float, fill: tuple[int, ...] | None = None) -> Image:
    """Rotate counter-clockwise by `angle_deg`, growing the canvas so no corner is cut.

    The uncovered corners get the paper colour (white-ish), never black: black wedges would
    read as ink to blank detection and binarisation. The scale stays 100 % (legal: NĐ 30/2020).
    """
    if abs(angle_deg) < 1e-3:
        return image.copy()
    height, width = image.shape[:2]
    rad = math.radians(angle_deg)
    cos, sin = abs(math.cos(rad)), abs(math.sin(rad))
    new_w, new_h = math.ceil(width * cos + height * sin), math.ceil(width * sin + height * cos)
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle_deg, 1.0)
    matrix[0, 2] += (new_w - width) / 2
    matrix[1, 2] += (new_h - height) / 2
    border = fill if fill is not None else paper_colour(image)
    rotated = cv2.warpAffine(
        image,
        matrix,
        (new_w, new_h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=tuple(float(v) for v in border) + (0.0,) * (4 - len(border)),
    )
    return _u8(rotated)


# ----------------------------------------------------------------------------- orientation


@dataclass(frozen=True)
class OrientationEstimate:
    """How far to turn the page clockwise (0/90/180/270) so that its text reads upright."""

    turn_cw: int
    confidence: float  # 0..1, the weaker of the two votes below
    lines_turn_cw: int  # 0 or 90: the turn that makes the lines horizontal (the surer half)
    lines_confidence: float  # horizontal vs vertical text lines
    updown_confidence: float  # upright vs upside down (ink above vs below the x-height)
    method: str = "line_contours+ascender_balance"


def turn(image: Image, turn_cw: int) -> Image:
    """Turn by a multiple of 90° clockwise (lossless)."""
    codes = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
    turns = turn_cw % 360
    if turns == 0:
        return image.copy()
    if turns not in codes:
        raise ValueError(f"turn must be a multiple of 90, got {turn_cw}")
    return _u8(cv2.rotate(image, codes[turns]))


def _updown_balance(grey: Image, dpi: int) -> tuple[float, int]:
    """Ink above the x-height band minus ink below it, over all text lines, in −1..1.

    Upright Latin text has more ascenders (b d h k l t, capitals) than descenders (g p q y),
    and Vietnamese adds tone and vowel marks above far more often than the dot below, so an
    upright page scores clearly positive and an upside-down one clearly negative.
    Expects horizontal lines (already deskewed). Returns (balance, lines used).
    """
    small = _working(grey, dpi)
    _, ink = cv2.threshold(small, 0, 1, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    ink = cv2.medianBlur(ink, 3)  # speckles would otherwise fill the gaps between lines
    profile = ink.sum(axis=1).astype(np.float64)
    if profile.max() <= 0:
        return 0.0, 0
    on = profile > 0.02 * profile.max()
    edges = np.flatnonzero(np.diff(np.concatenate(([0], on.astype(np.int8), [0]))))
    runs = list(zip(edges[::2], edges[1::2], strict=True))
    heights = [b - a for a, b in runs]
    if not heights:
        return 0.0, 0
    typical = float(np.median([h for h in heights if h >= 4] or heights))
    above = below = 0.0
    used = 0
    for start, stop in runs:
        if not 0.5 * typical <= stop - start <= 1.8 * typical:
            continue  # merged lines, rules or specks: their bands mean nothing
        line = profile[start:stop]
        core = np.flatnonzero(line >= 0.5 * line.max())
        above += float(line[: core[0]].sum())
        below += float(line[core[-1] + 1 :].sum())
        used += 1
    total = above + below
    return (0.0 if total == 0 else (above - below) / total), used


def estimate_orientation(grey: Image, dpi: int = REFERENCE_DPI) -> OrientationEstimate:
    """Find the 0/90/180/270 turn without OCR: line direction first, then up versus down.

    Everything runs on one copy at WORK_DPI (a quarter of the pixels of a 300-dpi page),
    which every step below worked at anyway: no full-page turn or rotation is made.
    """
    work_dpi = _work_dpi(dpi)
    small = _working(grey, dpi)
    upright_lines = _line_blob_angles(small, work_dpi).size
    turned = turn(small, 90)
    sideways_lines = _line_blob_angles(turned, work_dpi).size
    total = upright_lines + sideways_lines
    lines_confidence = 0.0 if total == 0 else abs(upright_lines - sideways_lines) / total
    horizontal = turned if sideways_lines > upright_lines else small
    base_turn = 90 if sideways_lines > upright_lines else 0
    skew = estimate_skew(horizontal, work_dpi)
    level = rotate(horizontal, -skew.angle_deg, fill=(255,)) if skew.lines else horizontal
    balance, used = _updown_balance(level, work_dpi)
    # A balance of ±0.25 over five lines or more is a clear vote (measured on the corpus).
    updown_confidence = min(1.0, abs(balance) / 0.25) * min(1.0, used / 5)
    turn_cw = (base_turn + (180 if balance < 0 else 0)) % 360
    return OrientationEstimate(
        turn_cw=turn_cw,
        lines_turn_cw=base_turn,
        confidence=round(min(lines_confidence, updown_confidence), 3),
        lines_confidence=round(lines_confidence, 3),
        updown_confidence=round(updown_confidence, 3),
    )


# ----------------------------------------------------------------------------- background, blank


def normalise_background(grey: Image, dpi: int = REFERENCE_DPI) -> Image:
    """Divide out the paper's shading (yellowing, gradients, lid shadow) so paper → ~255.

    The background is the grey closed (dilated) at 1/4 scale with a kernel wider than any
    stroke (~4 mm), smoothed, and scaled back; text strokes vanish from it, tone does not.
    """
    small = cv2.resize(grey, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    k = max(5, round(12 * _scale(dpi))) | 1
    background = cv2.morphologyEx(small, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
    background = cv2.medianBlur(background, 5)
    background = cv2.resize(
        background, (grey.shape[1], grey.shape[0]), interpolation=cv2.INTER_LINEAR
    )
    np.maximum(background, 1, out=background)  # in place: no third full-page copy
    return _u8(cv2.divide(grey, background, scale=255))


@dataclass(frozen=True)
class DotMatrix:
    """Whether the page's type is dot-matrix print, and the pitch of its dots."""

    found: bool
    cores_per_blob: float  # dark dot cores per ink component (dotted type: ≥ DOTTED_CORES)
    pitch_px: float  # median spacing of neighbouring dots on a row (0: not measured)
    sigma_px: float = 0.0  # the blur `join_dots` applies (0: none)
    method: str = "dark_cores_per_blob"
    regular: float = 0.0  # share of the dots' gaps at the pitch (dotted type: ≥ DOT_REGULAR)

    @property
    def printed_in_dots(self) -> bool:
        """Dot-matrix print, not only strokes broken into cores (see `dot_matrix`)."""
        return self.found and self.regular >= DOT_REGULAR


DOTTED_CORE_LEVEL = 0.2  # a dot's core: darker than ink + this share of (paper − ink)
DOTTED_CORES = 3.2  # cores per ink component from which the type is dotted (see dot_matrix)
DOT_PITCH_MM = (0.2, 0.6)  # 9-pin heads strike at 1/72 in (0.35 mm); what a pitch may be
DOT_BLUR = 0.45  # × the pitch: the Gaussian that joins the dots (see join_dots)
DOT_REGULAR = 0.6  # share of gaps within DOT_PITCH_TOLERANCE of the pitch (see dot_matrix)
DOT_PITCH_TOLERANCE = 0.15


def dot_matrix(grey: Image, dpi: int = REFERENCE_DPI) -> DotMatrix:
    """Is this page printed in dots? Counted on its text grey as captured (before deskew).

    Dot-matrix type is strokes of overlapping round dots: thresholded near the ink's own
    darkness (DOTTED_CORE_LEVEL of the way to paper) each stroke falls apart into the dots'
    cores, where a printed or typed stroke stays one piece. Measured on tests/records, three
    pages per class, on the middle half of the page: dot_matrix 4.0–4.8 cores per ink
    component; seven other classes 0.3–2.3 (faded typewriter and carbon copy 1.9–2.3, ruled
    tables 1.7–2.2, serif 1.5–2.1, copies of copies 0.3–0.4). The pitch is the median gap
    between neighbouring cores on one pixel column or row (9-pin: 1/72 in, 4.2 px at 300
    dpi; the corpus' dots are 4 px apart).

    The dots of a print head are struck at its pins' fixed pitch, so most gaps sit at the
    pitch (`regular`: the share within DOT_PITCH_TOLERANCE of it, down columns or along rows,
    each at its own pitch, the better of the two): dot_matrix 0.74–0.85 on tests/records seeds
    0–5. Textures that also break strokes into cores — augraphy's low-ink
    streaks and letterpress (bench foreign: 3.3–4.0 cores per component, so they were taken
    for dots, flagged and blurred) — leave gaps spread over every spacing: 0.22–0.45. Under
    DOT_REGULAR the strokes are still joined (`found`: the blur helps broken strokes
    whatever broke them — augraphy low_ink read 8.0 % joined, 14.7 % not) but the page is not
    said to be printed in dots (`printed_in_dots`, which sends it for review).
    """
    height = grey.shape[0]
    band = grey[height // 4 : 3 * height // 4]  # half the page says it: half the cost
    _, ink = cv2.threshold(band, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    blobs = len(_banded_components(_u8(ink))[0])
    if blobs < BLANK_MAX_BLOBS:
        return DotMatrix(False, 0.0, 0.0)
    ink_level = float(np.percentile(band[ink > 0], 10))
    del ink
    paper = float(np.percentile(band[::4, ::4], 90))
    level = ink_level + DOTTED_CORE_LEVEL * (paper - ink_level)
    _, core = cv2.threshold(band, level, 255, cv2.THRESH_BINARY_INV)
    cores = _banded_components(_u8(core))[0]  # in no particular order: sorted below
    del core
    ratio = len(cores) / blobs
    if ratio < DOTTED_CORES:
        return DotMatrix(False, round(ratio, 3), 0.0)
    # Centres of the cores; the gap to the next core on the same pixel column (dots along
    # a row overlap into one core, those down a column mostly do not) or row.
    cx = np.round(cores[:, cv2.CC_STAT_LEFT] + cores[:, cv2.CC_STAT_WIDTH] / 2)
    cy = np.round(cores[:, cv2.CC_STAT_TOP] + cores[:, cv2.CC_STAT_HEIGHT] / 2)
    low, high = (mm * dpi / 25.4 for mm in DOT_PITCH_MM)
    gaps = []
    for along, across in ((cy, cx), (cx, cy)):
        order = np.lexsort((along, across))
        found = np.diff(along[order])[np.diff(across[order]) == 0]
        gaps.append(found[(found >= low) & (found <= high)])
    gap = np.concatenate(gaps)
    if gap.size < 50:
        return DotMatrix(False, round(ratio, 3), 0.0)
    pitch = float(np.median(gap))
    # Per direction, each at its own pitch: a head's pins are a fixed pitch apart down the
    # column; across, the pitch is the print mode's (the same, or 60-240 dpi).
    shares = [
        float(np.mean(np.abs(g - np.median(g)) <= DOT_PITCH_TOLERANCE * np.median(g)))
        for g in gaps
        if g.size >= 25
    ]
    regular = max(shares, default=0.0)
    return DotMatrix(
        True,
        round(ratio, 3),
        round(pitch, 2),
        round(DOT_BLUR * pitch, 2),
        regular=round(regular, 3),
    )


def join_dots(grey: Image, found: DotMatrix, dpi: int = REFERENCE_DPI) -> Image:
    """Dot-matrix strokes made solid: a Gaussian blur of DOT_BLUR × the dot pitch.

    The standard remedy for dotted type before OCR: the blur fills the waists between dots
    and leaves a stroke tesseract knows. Measured on tests/records dot_matrix, plain
    tesseract on the capture and on the blurred capture (σ 1.5 px, pitch 4.2 px): seed 0
    8.4 → 6.1 % CER, seed 1 13.7 → 11.2 %; a morphological close of the dots (3×3) made it
    worse (9.9, 14.4 %), halving the resolution did little (8.1, 13.1 %). Marks standing
    free inside a counter (the dotted zero's dot) are erased first (`erase_enclosed_marks`).
    """
    if not found.found:
        return grey
    erased = erase_enclosed_marks(grey, dpi)
    if erased is grey:
        return _u8(cv2.GaussianBlur(grey, (0, 0), found.sigma_px))
    # In place: the erased copy is ours, and a third page-sized array would raise the
    # worker's peak (a 300-dpi grey page is 8.7 MB).
    cv2.GaussianBlur(erased, (0, 0), found.sigma_px, dst=erased)
    return erased


ENCLOSED_COUNTER_MM = 3.0  # a letter's counter: at most this wide and high (a table cell is more)
ENCLOSED_MARK_SHARE = 0.5  # a mark inside it covers at most this share of the counter's area


def erase_enclosed_marks(grey: Image, dpi: int = REFERENCE_DPI) -> Image:
    """`grey` with every small mark standing free inside a letter's counter painted paper (a
    copy; `grey` itself when there is none).

    No letter of Vietnamese (nor of Latin script) holds a separate mark inside a closed
    counter: marks go above, below or beside. Dot-matrix and monospace fonts do — the dotted
    zero, whose centre dot a 9-pin head strikes one empty pin away from the ring — and
    tesseract reads that zero as 8 or 9 once the dots are joined (the dot runs into the
    ring): "10/04/1977" → "19/64/1977". With the dot gone it reads an ordinary 0 (tests/records
    dot_matrix seeds 0–5, plain tesseract on the joined page: 5.72 → 4.63 % CER). Found on the
    dots as printed, before they are joined: Otsu's ink, marks whose outer contour lies in a
    hole (a counter no larger than ENCLOSED_COUNTER_MM, so text inside a table's cells is
    never touched) and covers at most ENCLOSED_MARK_SHARE of it. A zero whose dot touches the
    ring (a font's dot off-centre on the pin grid) has no free mark and stays as it is; "@",
    "®" and "©" lose their inner letter, which commune records do not print.
    """
    _, ink = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    contours, hierarchy = cv2.findContours(ink, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    del ink
    if not contours:  # (OpenCV gives no hierarchy then)
        return grey
    parents = hierarchy[0][:, 3]
    largest = ENCLOSED_COUNTER_MM * dpi / 25.4
    marks = []
    for n, hole in enumerate(parents):
        # Contours alternate down the tree: outer boundary, hole, outer boundary inside it…
        # A mark in a counter is an outer boundary whose parent hole has a parent of its own.
        if hole < 0 or parents[hole] < 0 or _depth(parents, n) % 2:
            continue
        _, _, width, height = cv2.boundingRect(contours[hole])
        if max(width, height) > largest:
            continue
        if cv2.contourArea(contours[n]) > ENCLOSED_MARK_SHARE * cv2.contourArea(contours[hole]):
            continue
        marks.append(contours[n])
    if not marks:
        return grey
    out = grey.copy()
    paper = int(np.percentile(grey[::4, ::4], 90))
    cv2.drawContours(out, marks, -1, paper, thickness=cv2.FILLED)
    cv2.drawContours(out, marks, -1, paper, thickness=2)  # its antialiased rim too
    return out


def _depth(parents: npt.NDArray[np.int32], n: int) -> int:
    depth = 0
    while parents[n] >= 0:
        n = int(parents[n])
        depth += 1
    return depth


@dataclass(frozen=True)
class BlankCheck:
    """Whether a page holds no marks; blank pages are flagged for review, never dropped."""

    blank: bool
    confidence: float
    ink_blobs: int  # dark components of at least min_blob_px
    ink_fraction: float  # share of the inner page covered by those components
    paper_level: int  # 90th percentile grey
    min_blob_px: int
    method: str = "paper_relative_blobs"


BLANK_MAX_BLOBS = 3  # fewer letter-sized marks than this: nothing to read on the page
FAINT_MIN_LINES = 2  # faint letter-sized marks lined up into this many text lines: text
FAINT_MIN_CONTRAST = 10  # grey levels under the paper a faint mark must reach, at least
FAINT_NOISE_SIGMAS = 5.0  # ... and this many of the paper's own noise (robust sd)
# A faint mark counts as a letter from 1.5 mm high (x-height of 10-pt type: 1.6 mm) and twice
# blank detection's blob area: two merged specks of dust reach 17 px high at 300 dpi, a
# pencil letter or syllable ~37 px (measured on tests/records pencil pages).
FAINT_MIN_HEIGHT_MM = 1.5


def detect_blank(grey: Image, dpi: int = REFERENCE_DPI) -> BlankCheck:
    """Count letter-sized marks darker than 0.6 × the paper level (docs/research/perf.md B3's rule).

    Not Otsu: on a blank noisy page Otsu's threshold lands inside the paper noise (43 % "ink").
    A mark must cover 4 × the despeckle area (60 px at 300 dpi): on tests/corpus.py blank
    pages dust specks reach 44 px (two overlapping) and 11–242 of them pass docs/research/perf.md's
    15 px,
    while one line of 12-pt text has 23 marks of 60 px or more.
    A 5 mm frame is ignored because sheet edges and lid shadows live there.
    """
    margin = round(5 * dpi / 25.4)
    inner = grey[margin:-margin, margin:-margin] if min(grey.shape) > 4 * margin else grey
    paper = int(np.percentile(inner[::4, ::4], 90))
    # grey < 0.6 × paper, as uint8 straight from OpenCV (no bool + cast copies of the page).
    level = math.ceil(0.6 * paper) - 1
    _, dark = cv2.threshold(inner, level, 1, cv2.THRESH_BINARY_INV)
    min_blob = 4 * min_speck_area(dpi)
    areas = _banded_components(_u8(dark))[0][:, cv2.CC_STAT_AREA]
    del dark
    big = areas[areas >= min_blob]
    blobs = int(big.size)
    fraction = float(big.sum()) / max(1, inner.size)
    blank = blobs < BLANK_MAX_BLOBS
    method = "paper_relative_blobs"
    faint_lines = 0
    if blank and _not_paper(inner):
        # All noise, or a photograph: nothing here is a blank sheet, whatever the blobs say.
        # Not blank, so OCR is expected to find text, and its failure is flagged for review.
        blank, method, blobs = False, "not_paper", max(blobs, BLANK_MAX_BLOBS)
    if blank:
        # Pencil or a faded ribbon never reaches 0.6 × paper: look again for faint marks
        # lined up as text (issue 15: a full page of grey text was flagged blank).
        faint_lines = _faint_text_lines(inner, paper, dpi, min_blob)
        if faint_lines >= FAINT_MIN_LINES:
            blank, method = False, "paper_relative_blobs+faint_lines"
    # Confidence falls as the count nears the cut-off from either side; a line of text
    # (~25 marks) is a sure "not blank".
    if blank:
        confidence = 1.0 - blobs / BLANK_MAX_BLOBS
    elif faint_lines:
        confidence = min(1.0, faint_lines / 5)
    else:
        confidence = min(1.0, (blobs - BLANK_MAX_BLOBS + 1) / 20)
    return BlankCheck(
        blank, round(confidence, 3), blobs, round(fraction, 6), paper, min_blob, method
    )


NOT_PAPER_SIGMA = 12.0  # robust sd of the grey above which a page is not blank paper


def _not_paper(inner: Image) -> bool:
    """A blank sheet is flat: its grey varies by a few levels (paper grain, sensor noise σ
    2–6 on the corpus: robust sd ≤ 6). A page of random pixels: 17.8; a photograph more."""
    sample = inner[::4, ::4].astype(np.float32)
    median = float(np.median(sample))
    return 1.4826 * float(np.median(np.abs(sample - median))) > NOT_PAPER_SIGMA


def _faint_text_lines(inner: Image, paper: int, dpi: int, min_blob: int) -> int:
    """Text lines made of faint letter-sized marks (pencil, a faded ribbon, light grey type).

    A mark is darker than the paper by FAINT_NOISE_SIGMAS of the paper's noise (and at least
    FAINT_MIN_CONTRAST levels) after a light blur, and letter-sized (2 × min_blob px,
    FAINT_MIN_HEIGHT_MM to 12 mm high). Marks only count when a horizontal close joins
    them into a line at least 15 mm long and five times longer than high — dust and sensor
    noise do not line up (tests/test_records_corpus.py: 40,000 specks on a page stay blank).
    """
    sample = inner[::4, ::4]
    median = float(np.median(sample))
    sigma = 1.4826 * float(np.median(np.abs(sample.astype(np.float32) - median)))
    level = min(paper, median) - max(FAINT_MIN_CONTRAST, FAINT_NOISE_SIGMAS * sigma)
    if level <= 0:
        return 0
    smooth = cv2.GaussianBlur(inner, (0, 0), max(0.5, _scale(dpi)))
    _, dark = cv2.threshold(smooth, level, 1, cv2.THRESH_BINARY_INV)
    del smooth
    closed_marks = _u8(cv2.morphologyEx(_u8(dark), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)))
    del dark
    _count, labels, stats = _components(closed_marks)
    del closed_marks
    areas, heights = stats[:, cv2.CC_STAT_AREA], stats[:, cv2.CC_STAT_HEIGHT]
    mm = dpi / 25.4
    letter = (areas >= 2 * min_blob) & (heights >= FAINT_MIN_HEIGHT_MM * mm) & (heights <= 12 * mm)
    letter[0] = False
    if int(letter.sum()) < BLANK_MAX_BLOBS:
        return 0
    marks = _u8(np.where(letter, 255, 0).astype(np.uint8)[labels])
    del labels
    work_dpi = _work_dpi(dpi)
    _, small = cv2.threshold(_working(marks, dpi), 0, 255, cv2.THRESH_BINARY)
    closed = cv2.morphologyEx(
        small, cv2.MORPH_CLOSE, np.ones((3, max(9, round(40 * work_dpi / WORK_DPI))), np.uint8)
    )
    contours, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    min_length = 15 * work_dpi / 25.4
    lines = 0
    for contour in contours:
        _x, _y, w, h = cv2.boundingRect(contour)
        if w >= min_length and w >= 5 * max(h, 1):
            lines += 1
    return lines


# ----------------------------------------------------------------------------- binarise


@dataclass(frozen=True)
class Binarisation:
    """How the OCR image was made: median 3, Otsu, despeckle (docs/research/perf.md B2c: 5.4 → 0.3
    % CER)."""

    threshold: float
    min_component_px: int
    removed_components: int
    kept_components: int
    restored_marks: int = 0  # small components kept on a dust-free page (see binarise)
    method: str = "median3+otsu+despeckle"


DUST_FREE_SHARE = 0.1  # fewer small components than this share of the kept ones: no dust
DUST_FREE_MIN = 10  # ... or than this many
TONE_MARK_REACH_PX = 6  # at 300 dpi: a small mark this close to a kept letter belongs to it
# at 300 dpi: a small mark with a dot or comma this far straight above or below it is the other
# half of a colon or semicolon (Liberation Sans 11 pt italic: the semicolon's dot 15 px above
# its comma, both dots of a colon under the despeckle size; "2015;" was read "2015,", "Lưu:"
# "Lưu", plain tesseract right).
PUNCTUATION_DOT_REACH_PX = 24
MEDIAN_MIN_DPI = (
    300  # under this, the archival mask is thresholded without the median (mask_binary)
)


def _ink_near(binary: Image, box: tuple[int, ...], reach: int) -> bool:
    """Whether `binary` has ink (0) within `reach` px of the box (x, y, w, h)."""
    x, y, w, h = box
    return bool(
        (binary[max(0, y - reach) : y + h + reach, max(0, x - reach) : x + w + reach] == 0).any()
    )


def _punctuation_dots(
    stats: npt.NDArray[np.int64],
    small: npt.NDArray[np.intp],
    kept: set[int],
    min_area: int,
    dpi: int,
) -> list[int]:
    """The small components, not in `kept`, that have a dot-sized component (kept or small:
    under 4 × `min_area`) straight above or below them within PUNCTUATION_DOT_REACH_PX and
    overlapping them across: the dots of ":" and ";". A letter is never such a partner, so a
    speck above or below a letter is not put back."""
    reach = max(2, round(PUNCTUATION_DOT_REACH_PX * _scale(dpi)))
    rest = np.array([c for c in small if int(c) not in kept], dtype=np.intp)
    if rest.size == 0:
        return []
    dots = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < 4 * min_area)
    x, y = stats[dots, cv2.CC_STAT_LEFT], stats[dots, cv2.CC_STAT_TOP]
    right = x + stats[dots, cv2.CC_STAT_WIDTH]
    bottom = y + stats[dots, cv2.CC_STAT_HEIGHT]
    found = []
    for c in rest:
        cx, cy, cw, ch = (int(v) for v in stats[c, :4])
        across = (x < cx + cw) & (right > cx)
        below = (y >= cy + ch) & (y - (cy + ch) <= reach)
        above = (bottom <= cy) & (cy - bottom <= reach)
        if ((across & (below | above)) & (dots != c)).any():
            found.append(int(c))
    return found


def binarise(
    grey: Image, dpi: int = REFERENCE_DPI, *, smooth: bool = True
) -> tuple[Image, Binarisation]:
    """Black text on white for tesseract; components under `min_speck_area(dpi)` removed.

    `smooth=False` thresholds the page as it is, without the 3×3 median first: the archival
    ink mask of a page under MEDIAN_MIN_DPI (see `mask_binary`).

    Except on a dust-free page: when the small components are few (under DUST_FREE_SHARE
    of the kept ones, or DUST_FREE_MIN), they are not dust but thin strokes the median
    thinned — the acute of "ố" at 10.5 pt comes out of median 3 + Otsu as a 10–14 px sliver
    and was dropped, so tesseract read "Thống" as "Thông" (measured on the bench's 10.5-pt
    clean page: 15 small components, all tone-mark parts). Those within TONE_MARK_REACH_PX
    of a kept component are kept (`restored_marks`); farther ones still go. A dusty page
    (bench σ2/σ6: ~1,600 small components for ~1,330 letters) is despeckled as before.
    DUST_FREE_SHARE was 2 %: an 11-pt Arial-metric page has ~17 dots below (dấu nặng) under
    the despeckle size for ~700 letters (2.4 %), all dropped ("tại hội" read "tai hôi",
    plain tesseract right; tests/records sans_small 0.29 → 0 %). At 10 % every page of the
    records corpus without dust keeps its marks; its copies of copies (1,400 specks) do not.
    So are the dots of ":" and ";" (`_punctuation_dots`), which sit farther from a letter.
    """
    smoothed = cv2.medianBlur(grey, 3) if smooth else grey
    # Into the smoothed copy when there is one (ours): a 300-dpi A4 is 8.7 MB per grey copy.
    threshold, ink = cv2.threshold(
        smoothed,
        0,
        255,
        cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU,
        dst=smoothed if smooth else None,
    )
    del smoothed
    min_area = min_speck_area(dpi)
    # Components band by band (`_banded_components`: no whole-page label image), then the
    # page painted band by band in place of its ink: kept ink → black, all else → white.
    stats, bands, component = _banded_components(_u8(ink))
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    small = np.flatnonzero(~keep)
    kept = int(keep.sum())
    dust_free = 0 < small.size <= max(DUST_FREE_MIN, DUST_FREE_SHARE * kept)
    binary: Image = _u8(ink)
    del ink
    specks: list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]] = []
    for top, bottom, offset in bands:
        count, labels, _ = _components(binary[top:bottom])  # the same labels as above
        of_band = component[offset : offset + count - 1]
        lut = np.full(count, 255, np.uint8)
        lut[1:][keep[of_band]] = 0
        if dust_free:  # where the small components are, to put marks back (below)
            ys, xs = np.nonzero((lut == 255)[labels] & (labels > 0))
            specks.append((ys + top, xs, of_band[labels[ys, xs].astype(np.intp) - 1]))
        binary[top:bottom] = lut[labels]
        del labels
    restored = 0
    if dust_free:
        reach = max(2, round(TONE_MARK_REACH_PX * _scale(dpi)))
        # Checked before any mark is put back: a mark never joins through another mark.
        marks = [
            int(c) for c in small if _ink_near(binary, tuple(int(v) for v in stats[c, :4]), reach)
        ]
        marks += _punctuation_dots(stats, small, set(marks), min_area, dpi)
        if marks:
            ys, xs, of = (np.concatenate(parts) for parts in zip(*specks, strict=True))
            back = np.isin(of, marks)
            binary[ys[back], xs[back]] = 0  # only the marks' own pixels change
        restored = len(marks)
    removed = int(small.size) - restored
    return binary, Binarisation(float(threshold), min_area, removed, kept + restored, restored)


def mask_binary(grey: Image, ocr_binary: Image, dpi: int) -> Image:
    """The ink the archival page's G4 mask paints (0 = ink, 255 = paper).

    At MEDIAN_MIN_DPI and above it is the OCR binarisation itself. Under it, the 3×3 median
    is half again as wide against the strokes and takes 1-px rules and thin joins with it:
    on the records corpus' 200-dpi copier JPEG (a ruled danh mục) the archival rendering's
    table rules came out broken and its codes merged, and plain tesseract read that
    rendering at 67.6 % CER against 7.0 % for the capture. Thresholding the page as it is
    (still despeckled by components) reads 2.2 %. The OCR's ink-masked grey is cut by this
    mask too: on 3 pages per class, copier JPEG 2.12 → 1.15 % CER, 200-dpi typewriter
    1.44 → 1.37 %; the older bench corpus' 200-dpi pages stay at 0 %.
    """
    if dpi >= MEDIAN_MIN_DPI:
        return ocr_binary
    binary, _ = binarise(grey, dpi, smooth=False)
    return binary


# ------------------------------------------------------------------ marks that are not type

SCRAWL_MIN_HEIGHT = 2.2  # × the page's median letter height: handwriting's words stand taller
SCRAWL_MIN_HEIGHT_MM = 4.0  # ... and at least this (a page of small type is no yardstick)
SCRAWL_MAX_HEIGHT = 4.5  # ... but within a line or two (a table or a frame is larger)
SCRAWL_MIN_WIDTH = 2.5  # × the letter height: a word, not one letter or mark
SCRAWL_MAX_FILL = 0.5  # share of its box a running stroke inks (a black block: more)
SCRAWL_TYPE_REACH = 2.0  # × the letter height: no type this near it in its rows
SCRAWL_GLYPH_GAP = 0.25  # × its height: a neighbour at least half as tall this near is a letter
SCRAWL_PEN_STROKE = 0.085  # stroke width / height: a pen's line is thinner than type's ...
SCRAWL_TYPE_STROKE = 0.12  # ... and no hand writes this thick for its height (bold type)
SCRAWL_GLYPHS_WIDE = 2.0  # × its height: at most this wide, a letter or two of large type
SCRAWL_MIN_LETTERS = 50  # letter-sized components a page needs before its marks are judged
NOT_TYPE_MAX_INK = 0.25  # ... and at most this share of it ink (more: noise, a photo)
EDGE_BAND_MAX_MM = 12.0  # a dark band along the page's top or bottom at most this thick ...
EDGE_BAND_MIN_MM = 0.5  # ... at least this (thinner: the sliver a deskew's rotation leaves)
EDGE_BAND_LENGTH = 4.0  # ... and this many times as long as it is thick: the copier's lid
EDGE_BAND_REACH_MM = 0.5  # "along the edge": this near it (deskewing leaves a paper sliver)


@dataclass(frozen=True)
class NotType:
    """Ink `not_type_marks` found that is not type: erased from what tesseract reads only."""

    letter_height_px: float  # the page's median letter height (0: too few letters to judge)
    handwriting: int  # components written by hand: tall, looped, away from type
    edge_bands: int  # dark bands along the page's edges
    boxes: tuple[tuple[int, int, int, int], ...]  # (x, y, w, h) of each, for decisions.json


def _loops_and_stroke(mask: Image) -> tuple[int, float]:
    """Of the one component in `mask` (non-0 = ink): its counters (paper areas it encloses)
    and its mean stroke width in px — twice its area over the length of its outlines, the
    counters' included (a stroke of width t and length L: 2tL / 2L)."""
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return 0, 0.0
    loops = int((np.asarray(hierarchy)[0][:, 3] >= 0).sum())
    outline = sum(cv2.arcLength(c, True) for c in contours)
    return loops, 2.0 * float(np.count_nonzero(mask)) / max(outline, 1.0)


def not_type_marks(binary: Image, dpi: int = REFERENCE_DPI) -> tuple[Image | None, NotType]:
    """The OCR binarisation without the ink that is not type, or None when there is none.

    Tesseract reads whatever ink it is given as letters. Two kinds of dark ink that no
    colour separation takes away (`text_grey` removes coloured marks) came back as lines of
    garbage ("\\qWf2 oạCÑs, /2277Ø2", "_ERENNNNWGNGNECN…") and swallowed a line of type
    beside them:
    - **handwriting** in black or dark ink (a note in the margin, lines added under the
      text): a running word is one connected stroke, SCRAWL_MIN_HEIGHT to SCRAWL_MAX_HEIGHT
      times as tall as the page's median letter (and SCRAWL_MIN_HEIGHT_MM at least), as
      wide as a word, looped (a counter at least), its box sparse, and with no type-sized
      component in its rows within SCRAWL_TYPE_REACH letter heights, and written with a
      pen's thin line. Letters are each their own component, as tall as their line. The
      last two conditions keep print that noise has run together (a dirty drum's streak
      through a line, a black copy's merged words), which has type beside it, and large
      type (a 20-36 pt heading over 12 pt text, whose looped letters are as tall as a
      hand's words): its strokes are thicker for their height (Liberation Serif and Sans,
      regular and bold, 20-36 pt: 0.087-0.178 of the letter's height; the notes of
      tests/records 0.053-0.099), and a letter of it has a neighbour at least half its
      height within SCRAWL_GLYPH_GAP of its height. Under SCRAWL_PEN_STROKE the line is a
      pen's; from SCRAWL_TYPE_STROKE it is type's; between, it is type when it is a letter
      or two wide (SCRAWL_GLYPHS_WIDE: two letters of regular type run together measured
      1.77) with such a neighbour; a hand's words there measured 2.3-3.1;
    - **a dark band along the page's top or bottom edge** (a copy made with the lid open):
      a component within EDGE_BAND_REACH_MM of the edge, EDGE_BAND_MIN_MM to
      EDGE_BAND_MAX_MM thick and EDGE_BAND_LENGTH times as long, which tesseract reads as a
      line of marks. Bands down the sides are left: tesseract takes them for a column's
      edge, not a line (a bound register's spine shadow, erased, changed how tesseract laid
      out the lines beside it and cost a date: 0.69 → 2.08 % CER).
    Only what tesseract reads changes: the archival page keeps every mark as captured. With
    too few letters to know their height (a page of handwriting) or too much ink for a page
    of type (noise, a photo: NOT_TYPE_MAX_INK) nothing is found.
    Measured on tests/records margin_notes and photocopy_2gen and on bench foreign
    (docs/benchmarks.md, "Twelfth sitting: ink that is not type").
    """
    height = binary.shape[0]
    ink = _u8(cv2.bitwise_not(binary))
    stats, _, _ = _banded_components(ink)
    del ink
    x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    w, h = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
    area = stats[:, cv2.CC_STAT_AREA]
    mm = dpi / 25.4
    specks = area >= min_speck_area(dpi)
    lettered = (h >= 0.8 * mm) & (h <= 10 * mm) & specks
    if (
        int(lettered.sum()) < SCRAWL_MIN_LETTERS
        or float(area.sum()) > NOT_TYPE_MAX_INK * binary.size
    ):
        return None, NotType(0.0, 0, 0, ())
    letter = float(np.median(h[lettered]))
    edge = max(2, round(EDGE_BAND_REACH_MM * mm))
    thick = EDGE_BAND_MAX_MM * mm
    thin = EDGE_BAND_MIN_MM * mm
    along_top_bottom = ((y <= edge) | (y + h >= height - edge)) & (h <= thick) & (h >= thin)
    banded = along_top_bottom & (w >= EDGE_BAND_LENGTH * h)
    tall = (
        (h >= max(SCRAWL_MIN_HEIGHT * letter, SCRAWL_MIN_HEIGHT_MM * mm))
        & (h <= SCRAWL_MAX_HEIGHT * letter)
        & (w >= SCRAWL_MIN_WIDTH * letter)
        & (area <= SCRAWL_MAX_FILL * w * h)
        & ~banded
    )
    typeset = (h >= 0.6 * letter) & (h <= 1.6 * letter) & specks & ~tall
    middle = y + h / 2
    reach = SCRAWL_TYPE_REACH * letter
    erase: list[tuple[tuple[int, ...], Image | None]] = []  # (box and area, own pixels)
    for c in np.flatnonzero(tall):
        beside = (
            typeset
            & (middle >= y[c])
            & (middle <= y[c] + h[c])
            & (x + w >= x[c] - reach)
            & (x <= x[c] + w[c] + reach)
        )
        if beside.any():
            continue
        box = tuple(int(v) for v in stats[c, :5])
        own = _own_component(binary, box)
        if own is None:
            continue
        loops, stroke_px = _loops_and_stroke(own)
        stroke = stroke_px / float(h[c])
        if loops < 1 or stroke >= SCRAWL_TYPE_STROKE:
            continue
        if stroke >= SCRAWL_PEN_STROKE and w[c] <= SCRAWL_GLYPHS_WIDE * h[c]:
            # Large type: a heading's letters stand as tall, their neighbours a letter's
            # spacing away (a 20-36 pt heading over 12 pt text); a hand's words stand farther.
            gap = SCRAWL_GLYPH_GAP * h[c]
            glyphs = (
                (h >= 0.5 * h[c])
                & specks
                & (middle >= y[c])
                & (middle <= y[c] + h[c])
                & (x + w >= x[c] - gap)
                & (x <= x[c] + w[c] + gap)
            )
            glyphs[c] = False
            if glyphs.any():
                continue
        erase.append((box, own))
    scrawls = len(erase)
    erase += [(tuple(int(v) for v in stats[c, :5]), None) for c in np.flatnonzero(banded)]
    boxes = tuple((b[0], b[1], b[2], b[3]) for b, _ in erase)
    found = NotType(letter, scrawls, len(erase) - scrawls, boxes)
    if not erase:
        return None, found
    cleaned = binary.copy()
    for box, own in erase:
        own = own if own is not None else _own_component(binary, box)
        if own is not None:
            bx, by, bw, bh = box[:4]
            cleaned[by : by + bh, bx : bx + bw][own > 0] = 255
    return cleaned, found


def _own_component(binary: Image, box: tuple[int, ...]) -> Image | None:
    """The pixels (non-0) of the component whose bounding box and area are `box` (left, top,
    width, height, area), within that box; None if the box holds no such component."""
    bx, by, bw, bh, area = box
    crop = _u8(cv2.bitwise_not(binary[by : by + bh, bx : bx + bw]))
    count, labels, stats = _components(crop)
    for label in range(1, count):
        cx, cy, cw, ch, size = (int(v) for v in stats[label, :5])
        if (cx, cy, cw, ch) == (0, 0, bw, bh) and size == area:
            return _u8((labels == label).astype(np.uint8))
    return None


RULE_MIN_MM = 12.0  # a straight vertical ink run this long is a table rule, not a letter


def vertical_rules(binary: Image, dpi: int) -> list[tuple[int, int, int, int]]:
    """The vertical table rules of a binarised page, as boxes (left, top, width, height).

    A vertical ink run of RULE_MIN_MM (12 mm: three lines of 12-pt text; the tallest letter
    with its marks is under 6 mm) is a rule, found by a morphological opening with a
    one-pixel-wide line. The rules stay in the image tesseract reads (without them it reads
    a table column by column: a sổ đăng ký page 1.6 → 74 % CER); what it reads of them
    ("|" beside a cell's text) is dropped from the text afterwards.
    """
    length = max(9, round(RULE_MIN_MM / 25.4 * dpi))
    kernel = np.ones((length, 1), np.uint8)
    # Band by band, each with `length` rows of the page on either side: an opening's row
    # depends on rows at most length − 1 away, so each band's own rows are those of the
    # whole page's opening, and only the result is page-sized (the whole-page inverse and
    # opening held three page-sized arrays).
    vertical = np.empty_like(binary)
    height = binary.shape[0]
    for top in range(0, height, COMPONENT_BAND_ROWS):
        bottom = min(height, top + COMPONENT_BAND_ROWS)
        low, high = max(0, top - length), min(height, bottom + length)
        opened = cv2.morphologyEx(cv2.bitwise_not(binary[low:high]), cv2.MORPH_OPEN, kernel)
        vertical[top:bottom] = opened[top - low : bottom - low]
    # The bounding boxes of the outer contours are those of the 8-connected components,
    # without a label image (int32: 35 MB for a 300-dpi A4, which took the station's peak
    # from ~270 to ~305 MB in `bench pipeline`).
    contours, _ = cv2.findContours(vertical, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    boxes = [tuple(int(v) for v in cv2.boundingRect(c)) for c in contours]
    return sorted(boxes, key=lambda b: (b[1], b[0]))  # type: ignore[arg-type]


def ink_halo_px(dpi: int) -> int:
    """How far (px, 8-connected) `ink_grey` keeps the grey around binarised ink."""
    return HALO_PX if dpi >= REFERENCE_DPI else HALO_PX_LOW_DPI


def ink_grey(grey: Image, binary: Image, dpi: int = REFERENCE_DPI) -> Image:
    """`grey` where `binary` has ink (0) or within a halo around it, white (255) elsewhere.

    The halo keeps the anti-aliased edges of every kept stroke, tone marks included;
    everything `binarise` dropped (speckles, paper noise) becomes paper. Its width was
    measured on 8 pages per bench variant (the bench's 2 plus 6 more seeds; clean pages at
    10.5–14 pt, as clean pages have no randomness), mean ± sd CER, halo 1 / 3 px at 300 dpi:
    clean 0.36±0.33 / 0.23±0.11 % (with 1 px tesseract loses circumflexes on small type:
    ế → ê), σ6 0.30 / 0.27, σ2 0.20 / 0.22, tinted + seal 0.18 / 0.19, rotated 0.16 / 0.16;
    at 200 dpi, 3 / 4 / 5 px: 0.20±0.04 / 0.16±0.06 / 0.16±0.04 %. More grey context helps
    tesseract's tone marks; the halo never reaches a removed speck farther than it away.
    """
    size = 2 * ink_halo_px(dpi) + 1
    paper = cv2.erode(binary, np.ones((size, size), np.uint8))  # ink grows, paper shrinks
    return _u8(cv2.max(grey, paper, dst=paper))  # 255 away from ink, the grey next to it


def line_crop(image: Image, box: tuple[int, int, int, int]) -> tuple[Image, tuple[int, int]]:
    """One text line (`box`: left, top, width, height) with a quarter of its height around it.

    Returns a copy and its top-left corner in `image`. The margin is what tesseract's own
    line images get; a crop of the one line leaves out the accents of the lines above and
    below, which in the page read as marks under this line (ỦY BAN → ỦY BẠN, measured).
    """
    left, top, width, height = box
    pad = max(4, height // 4)
    x0, y0 = max(0, left - pad), max(0, top - pad)
    x1, y1 = min(image.shape[1], left + width + pad), min(image.shape[0], top + height + pad)
    return image[y0:y1, x0:x1].copy(), (x0, y0)


@dataclass(frozen=True)
class Insertion:
    """Blank columns `dekern_punctuation` opened: `width` px before column `at` (input)."""

    at: int
    width: int


DEKERN_GAP_PX = 3  # space left between a moved mark and the letter it sat under
# A line of type has a few kerned pairs ("Lưu: VT, VP." grows by ~9 %); a crop that would
# grow by more is noise read as a line (a 286-px crop of random pixels grew to 5,992 px,
# and tesseract 5.3 died of SIGFPE on it: tests/test_faults.py's noise pages).
DEKERN_MAX_GROWTH = 0.2


def dekern_punctuation(line: Image, gap_px: int = DEKERN_GAP_PX) -> tuple[Image, list[Insertion]]:
    """Move commas and full stops out from under the capital that overhangs them.

    Serif faces kern "T," "V," "P." "Y.": the mark sits under the letter's arm (Times New
    Roman, which NĐ 30/2020 prescribes, does it as Noto Serif does). Tesseract's `vie`
    model then reads "VT," as "VT;" or "VI" and "VP." as "VE." on nearly every page ending
    "Lưu: VT, VP."; the same line with the marks moved right reads correctly (measured on
    48 bench pages, docs/benchmarks.md, Pipeline). `line` is one grey text line, dark on
    light, as `line_crop` cuts it (the size rules below are fractions of that crop's
    height). A small low mark whose left edge lies under a tall glyph's right half is moved
    (with everything whose centre is right of that edge) clear of that glyph plus `gap_px`.
    Returns the line unchanged and no insertions when nothing overhangs.
    """
    _, ink = cv2.threshold(line, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    count, labels, stats = _components(_u8(ink))
    height = line.shape[0]
    boxes = [tuple(int(v) for v in stats[i, :5]) for i in range(1, count)]
    tall = [b for b in boxes if b[3] > 0.45 * height]
    insertions: list[Insertion] = []
    for x, y, _w, h, area in boxes:
        if area <= 3 or h > 0.3 * height or y + h < 0.55 * height:
            continue  # not a small mark on the baseline
        for tx, _ty, tw, _th, _ in tall:
            if tx + tw / 2 < x < tx + tw:  # under the glyph's right half
                insertions.append(Insertion(x, tx + tw - x + gap_px))
                break
    total = sum(i.width for i in insertions)
    if not insertions or total > DEKERN_MAX_GROWTH * line.shape[1]:
        return line, []  # nothing overhangs, or this is not type (noise, a drawing)
    out = np.full((height, line.shape[1] + total), 255, np.uint8)
    grow = np.ones((5, 5), np.uint8)  # each mark keeps its anti-aliased rim (2 px)
    for label, (x, y, w, h, area) in enumerate(boxes, start=1):
        if area <= 3:
            continue
        shift = sum(i.width for i in insertions if i.at <= x + w / 2)  # the mark and after
        y0, y1 = max(0, y - 2), min(height, y + h + 2)
        x0, x1 = max(0, x - 2), min(line.shape[1], x + w + 2)
        own = cv2.dilate(_u8(labels[y0:y1, x0:x1] == label), grow).astype(bool)
        target = out[y0:y1, x0 + shift : x1 + shift]
        np.minimum(target, np.where(own, line[y0:y1, x0:x1], 255), out=target)
    return out, insertions


def undo_insertions(x: int, insertions: list[Insertion]) -> int:
    """A column of `dekern_punctuation`'s output mapped back to its input column."""
    for insertion in sorted(insertions, key=lambda i: i.at):
        if x <= insertion.at:
            break
        x = max(insertion.at, x - insertion.width)
    return x


def enlarge(image: Image, factor: float) -> Image:
    """Bicubic enlargement (for OCR of captures below 300 dpi)."""
    return _u8(cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC))


# ----------------------------------------------------------------------------- thumbnail


def thumbnail(image: Image, max_width: int = 320) -> Image:
    """A reduced copy no wider than `max_width` (area averaging: no moiré on text)."""
    height, width = image.shape[:2]
    if width <= max_width:
        return image.copy()
    new_h = max(1, round(height * max_width / width))
    return _u8(cv2.resize(image, (max_width, new_h), interpolation=cv2.INTER_AREA))


# unread_text: what counts as a word's ink, and as noise around it. Chosen on the corpora's
# seeds 0–5 and checked on seeds 6–11 (docs/benchmarks.md, fifteenth sitting).
UNREAD_INK_BELOW = 230  # ink in tesseract's input (white is paper; the halo's grey fades out)
UNREAD_JOIN_EM = 0.35  # letters closer than this (in text heights) make one word's blob
UNREAD_HEIGHT_EM = (0.45, 1.7)  # a blob this tall, in text heights, is shaped like a word…
UNREAD_MIN_WIDTH_EM = 0.6  # …when at least this wide
UNREAD_READ_SHARE = 0.5  # a blob with less than this share of its ink under a word is unread
UNREAD_WORD_MARGIN_EM = 0.15  # a word's box covers this much more around it (its marks' edges)
UNREAD_CLUTTER_PER_EM2 = 0.3  # more unread marks than this around it: noise, not a word
UNREAD_AROUND_EM = 1.5  # how far around a blob those marks are counted
UNREAD_RULE_EM = 5.1  # a mark wider than this is a rule, not clutter


@dataclass(frozen=True)
class UnreadText:
    """Word-shaped ink on clean paper that no word of the reading covers (`unread_text`)."""

    words: int  # blobs shaped like words that the reading has no word over
    width_em: float  # their width, summed, in text heights
    share: float  # of the width of every blob shaped like a word
    text_height_px: int  # the reading's median word height, the unit of every measure
    boxes: tuple[tuple[int, int, int, int], ...]  # (x, y, w, h) in the OCR image's pixels
    image_size: tuple[int, int] = (0, 0)  # the OCR image's (width, height): the boxes' frame


def unread_text(ocr_image: Image, word_boxes: list[tuple[int, int, int, int]]) -> UnreadText:
    """The ink in tesseract's input (`ocr_image`, grey, paper white) that looks like words and
    lies where the reading (`word_boxes`: left, top, width, height) has none.

    Tesseract drops text without a sign in what it returns: the cells of a ruled table it
    took for a picture, faint words in a row it read, a block it segmented away. The words it
    did read score well, so no check of the text sees what is missing (bench foreign
    letterpress-5: "6 Ngôn ngữ Chuỗi ký tự 50" read "6 Chuỗi ký tự 50", CER 6.2 %, score 89.9).
    Letters are joined into word blobs (a horizontal closing of UNREAD_JOIN_EM); a blob of a
    word's height that has no word over it is unread, unless other marks crowd around it
    (UNREAD_CLUTTER_PER_EM2): a word stands on clean paper, beside read words and rules, while
    clumps of a copier's toner noise take word shapes among more clumps (bench foreign
    bad_photocopy-4, read right at 0.0 % CER, has 73 such clumps, 0.41–2.1 marks per em²
    around each; the dropped words of letterpress-5 none).

    Measured at half scale when the text is tall enough (a word ≥ 24 px): the labels of a
    300-dpi A4 page are then 4.4 MB, not 17 MB.
    """
    size = (int(ocr_image.shape[1]), int(ocr_image.shape[0]))
    heights = sorted(h for _, _, _, h in word_boxes if h > 0)
    if not heights:
        return UnreadText(0, 0.0, 0.0, 0, (), size)
    text_px = heights[len(heights) // 2]
    scale = 0.5 if text_px >= 24 else 1.0
    small = (
        ocr_image
        if scale == 1.0
        else cv2.resize(ocr_image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    )
    em = text_px * scale
    ink = (small < UNREAD_INK_BELOW).astype(np.uint8)
    del small
    read = np.zeros(ink.shape, np.uint8)
    margin = UNREAD_WORD_MARGIN_EM * em
    for left, top, width, height in word_boxes:
        x0, y0 = max(0, int(left * scale - margin)), max(0, int(top * scale - margin))
        x1, y1 = int((left + width) * scale + margin) + 1, int((top + height) * scale + margin) + 1
        read[y0:y1, x0:x1] = 1
    # The marks no word covers (a rule's long stroke aside), by their centres: the clutter.
    count, labels, stats = _components(ink)
    del labels
    low, high = UNREAD_HEIGHT_EM
    marks = stats[1:count]
    mark_x = marks[:, cv2.CC_STAT_LEFT] + marks[:, cv2.CC_STAT_WIDTH] // 2
    mark_y = marks[:, cv2.CC_STAT_TOP] + marks[:, cv2.CC_STAT_HEIGHT] // 2
    loose = (
        (marks[:, cv2.CC_STAT_HEIGHT] <= high * em)
        & (marks[:, cv2.CC_STAT_WIDTH] <= UNREAD_RULE_EM * em)
        & (read[mark_y, mark_x] == 0)
    )
    mark_x, mark_y = mark_x[loose], mark_y[loose]
    join = max(1, round(UNREAD_JOIN_EM * em))
    joined = _u8(cv2.morphologyEx(ink, cv2.MORPH_CLOSE, np.ones((1, join), np.uint8)))
    del ink
    count, labels, stats = _components(joined)
    del joined
    total = 0.0
    unread: list[tuple[int, int, int, int]] = []
    around = UNREAD_AROUND_EM * em
    for i in range(1, count):
        x, y, w, h = (int(v) for v in stats[i, :4])
        if not (low * em <= h <= high * em and w >= UNREAD_MIN_WIDTH_EM * em):
            continue
        total += w
        own = labels[y : y + h, x : x + w] == i
        if float(read[y : y + h, x : x + w][own].mean()) >= UNREAD_READ_SHARE:
            continue
        in_reach = (
            (mark_x > x - around)
            & (mark_x < x + w + around)
            & (mark_y > y - around)
            & (mark_y < y + h + around)
        )
        in_blob = (mark_x >= x) & (mark_x < x + w) & (mark_y >= y) & (mark_y < y + h)
        ring_em2 = ((w + 2 * around) * (h + 2 * around) - w * h) / em**2
        if int((in_reach & ~in_blob).sum()) > UNREAD_CLUTTER_PER_EM2 * ring_em2:
            continue
        unread.append((x, y, w, h))
    width = sum(w for _, _, w, _ in unread)
    return UnreadText(
        words=len(unread),
        width_em=round(width / em, 2),
        share=round(width / total, 4) if total else 0.0,
        text_height_px=text_px,
        boxes=tuple(
            (round(x / scale), round(y / scale), round(w / scale), round(h / scale))
            for x, y, w, h in unread
        ),
        image_size=size,
    )
