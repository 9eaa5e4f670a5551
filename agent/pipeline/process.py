"""What happens to one captured page: cover sheet, cleanup, OCR, derivatives (`process_page`).

This module owns the order of the stages and the record of what each decided. Read
`process_page` top to bottom: that is the whole flow. The pixel work lives in
`agent.pipeline.imaging`, every tesseract run in `agent.pipeline.ocr`.

Contract (docs/architecture.md, "Pipeline stage contract"): file in, files out.
MUST: never modify `capture` (it is only read); write every output inside `work_dir`
(`archival.pdf` — a searchable PDF/A-2b, see `agent.pipeline.archival` —, `text.txt` UTF-8 NFC,
`thumb.jpg`, `decisions.json`) completely (each is written to a temporary name and renamed);
return their paths with every decision and its confidence; check every page against the
legal numbers and flag what fails (`legal_fail`); flag a QR cover sheet (`separator`) with
what it says in `decisions["cover_sheet"]`; judge the text (`agent.pipeline.quality`) and flag
`review` when it is likely wrong; flag, never drop (a blank page or a cover sheet still gets
all four outputs).
MAY: keep intermediate files in `work_dir` (`ocr.tif`, the cleaned grey page tesseract read;
`plain.tif`, the page before despeckle and mask, which the second pass reads lines from).
MUST NOT: fsync or move files into the outbox (the caller does), talk to the network.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import itertools
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image as PILImage

from agent.pipeline import archival, coversheet, imaging, ocr, quality

Flag = str  # one of FLAGS
FLAGS = frozenset(
    {
        "blank",
        "low_confidence",
        "below_200dpi",
        "dpi_unknown",  # the source gave no resolution (legal check: never assumed)
        "not_colour",
        "legal_fail",
        "rotated",
        "ocr_retry",
        # a QR cover sheet (agent.pipeline.coversheet): kept, marks where a document starts
        "separator",
        "review",  # the text is likely wrong (agent.pipeline.quality): decisions["quality"]
    }
)
LEGAL_MIN_DPI = (
    archival.LEGAL_MIN_DPI
)  # NĐ 30/2020 Phụ lục I: never below 200 dpi (docs/design.md §4)
MIN_DESKEW_DEG = (
    0.05  # below this the estimate is noise (docs/research/perf.md B3: error ≤ 0.015°–0.1°)
)
MIN_DESKEW_CONFIDENCE = 0.3  # fewer than ~3 agreeing lines: leave the page as scanned
ORIENTATION_TRUSTED = 0.5  # below this the pixel heuristic asks tesseract's OSD
OSD_TRUSTED = 14.0  # OCRmyPDF's default --rotate-pages-threshold for tesseract OSD
OCR_MIN_DPI = 300  # tesseract is trained on ~300-dpi text: lower captures are enlarged for it
OCR_UPSCALE = 1.0  # by this factor (1.0: off; see _ocr_input)
MMAP_THRESHOLD = 2 * 1024 * 1024  # blocks from this size on are mmapped (see return_freed_memory)
SECOND_PASS_BELOW = 90.0  # a line with a word less sure than this is read again (_second_pass)
SECOND_PASS_MAX_SHARE = 0.5  # ... unless more lines than this share are unsure
SECOND_PASS_MIN_PLAUSIBLE = 0.5  # ... and under this share of the reading is valid (not text)


@dataclass(frozen=True)
class PipelineSettings:
    languages: str = (
        "vie"  # tesseract spec, e.g. "vie+eng" (+20–50 % time, docs/research/perf.md B2)
    )
    dpi: int = 300  # what the capture was scanned at
    # False: the source did not say (an imported file without a resolution); `dpi` is then
    # only the working assumption for cleanup and OCR, and the page is flagged dpi_unknown.
    dpi_known: bool = True
    low_confidence: float = 70.0  # mean word confidence (0–100) under which a page is flagged
    jpeg_quality: int = 40  # the MRC background of the archival PDF (text is in the G4 mask)
    thumb_width: int = 320
    ocr_timeout_s: float = ocr.DEFAULT_TIMEOUT_S
    tesseract: str = ocr.TESSERACT  # the binary: tests plug a fake in here

    def __post_init__(self) -> None:
        if not 50 <= self.dpi <= 2400:
            raise ValueError(f"dpi {self.dpi} is not a scanner resolution")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"jpeg_quality {self.jpeg_quality} outside 1..95")
        if self.thumb_width < 16:
            raise ValueError(f"thumb_width {self.thumb_width} too small")


@dataclass(frozen=True)
class PageResult:
    capture: Path
    archival: Path
    text: Path
    thumb: Path
    decisions_path: Path
    decisions: dict[str, object]  # JSON-serialisable, the content of decisions.json
    ocr_confidence: float  # mean word confidence 0–100
    flags: tuple[Flag, ...]
    cover_sheet: coversheet.CoverSheet | None = None  # this page is a QR cover sheet


def process_page(capture: Path, work_dir: Path, settings: PipelineSettings) -> PageResult:
    """Clean up, orient, deskew and OCR one capture; write the derivatives into `work_dir`."""
    return_freed_memory()
    work_dir.mkdir(parents=True, exist_ok=True)
    dpi = settings.dpi
    decisions: dict[str, object] = {}
    ms: dict[str, float] = {}
    # Memory (a colour 300-dpi A4 is 26 MB, each grey copy 8.7 MB; two workers plus their
    # tesseracts must stay under 300 MB on a 2 GB Pi): every full-page array is dropped as
    # soon as the next stage has what it needs, and the page is encoded into its archival
    # layers before OCR, so the worker holds no page while tesseract runs.
    with _timed(ms, "load"):
        loaded = imaging.load_capture(capture)
        image = loaded.image
        colour = archival.is_colour(image, loaded.channels)
        capture_record = {
            "name": capture.name,
            "width": loaded.width,
            "height": loaded.height,
            "bit_depth": loaded.bit_depth,
            "channels": loaded.channels,
            "dpi": dpi if settings.dpi_known else None,
        }
        if not settings.dpi_known:
            decisions["dpi_unknown"] = {"assumed_for_processing": dpi}
        del loaded
    with _timed(ms, "cover_sheet"):
        cover, decisions["cover_sheet"] = _cover_sheet(image)
    with _timed(ms, "blank"):
        blank = imaging.detect_blank(imaging.to_grey(image), dpi)
    with _timed(ms, "orientation"):
        guess, osd_input = _orientation_guess(image, blank, work_dir, settings)
        if osd_input is not None:
            # Tesseract's OSD reads the page (~0.5 s, 70 MB): the worker holds no page array
            # meanwhile (the colour page and two greys were 42 MB beside it, and met the other
            # worker's heaviest step: docs/benchmarks.md "Ninth sitting"). The capture is
            # decoded again after it (~0.15 s), on these pages only.
            del image
        turn_cw, decisions["orientation"] = _orientation(guess, osd_input, blank, settings)
        if osd_input is not None:
            image = imaging.load_capture(capture).image
        # `image` is ours (decoded from the file): no copy when there is nothing to turn.
        page = imaging.turn(image, turn_cw) if turn_cw else image
        del image
    with _timed(ms, "deskew"):
        grey, _ = imaging.text_grey(page, dpi, crossings=False)
        # Before any rotation: its interpolation blurs the dots (a dot-matrix page turned
        # by 0.5° counted 2.6 dark cores per blob instead of 4.1).
        dots = imaging.dot_matrix(grey, dpi)
        decisions["dot_matrix"] = dataclasses.asdict(dots)
        skew = imaging.estimate_skew(grey, dpi)
        del grey  # not alive beside the page and its rotated copy
        page, decisions["skew"] = _deskew(page, skew, blank)
    with _timed(ms, "binarise"):
        grey, decisions["text_grey"] = imaging.text_grey(page, dpi)
        normalised = imaging.normalise_background(grey, dpi)
        del grey
        # Dot-matrix type is read with its dots joined; `plain.tif` keeps them as printed.
        cleaned = imaging.join_dots(normalised, dots, dpi)  # `normalised` itself when not dotted
        binary, binarisation = imaging.binarise(cleaned, dpi)
        ink_mask = imaging.mask_binary(cleaned, binary, dpi)
        decisions["archival_mask"] = "ocr_binary" if ink_mask is binary else "unsmoothed_otsu"
        # The less-processed page (no despeckle, no mask): the second pass reads its unsure
        # lines from it too, so cleanup can never cost a line plain tesseract would get.
        plain_input = _write_image(work_dir / "plain.tif", normalised)
        del normalised
        # Handwriting in dark ink and the copier's dark edges are not read (the archival
        # page keeps them: `ink_mask` is not touched).
        typed, not_type = imaging.not_type_marks(ink_mask, dpi)
        decisions["not_type"] = dataclasses.asdict(not_type) | {
            "boxes": [list(box) for box in not_type.boxes]
        }
        ocr_image, ocr_dpi, decisions["ocr_input"] = _ocr_input(
            cleaned, ink_mask if typed is None else typed, dpi
        )
        del typed
        del cleaned
        ocr_input = _write_image(work_dir / "ocr.tif", ocr_image)
        del ocr_image
    with _timed(ms, "rules"):
        # Before the layers, so that the binary is gone by then (its band-wise morphology
        # holds one page-sized array beside the page and the binary).
        rules = imaging.vertical_rules(binary, dpi)
    with _timed(ms, "layers"):
        thumb_image = imaging.thumbnail(page, settings.thumb_width)
        ink = archival.ink_of(ink_mask)
        # The segmentation, the worker's highest step, holds the page, this mask and the
        # marks: not the binarisation too (docs/benchmarks.md, "Ninth sitting").
        del binary, ink_mask
        segmented = archival.segment_ink(page, ink, dpi)
        # The page goes before the encoders copy the masks (PIL holds a byte per pixel of
        # each): a colour page's worker peaked here.
        del page, ink
        layers = archival.encode_segmented(segmented, background_quality=settings.jpeg_quality)
        del segmented
    with _timed(ms, "ocr"):
        result = ocr.recognize(
            ocr_input,
            languages=settings.languages,
            dpi=ocr_dpi,
            # A page that is not paper (noise, a photo) is read once: the retry modes would
            # spend minutes "reading" noise (psm 6 on a 300-dpi page of random pixels: >120 s).
            expect_text=not blank.blank and blank.method != "not_paper",
            timeout_s=settings.ocr_timeout_s,
            binary=settings.tesseract,
        )
    expect_text = not blank.blank and cover is None  # a cover sheet is a QR code
    with _timed(ms, "ocr_lines"):
        # Whether the page's own reading, before its lines are mended, was likely wrong: the
        # plain page is then read too (`_plain_page`).
        first_review = _doubtful(result.words, expect_text)
        first_text = _net_valid(result.words)
        result, decisions["ocr_second_pass"] = _second_pass(
            result, ocr_input, plain_input, work_dir, ocr_dpi, settings, dots.printed_in_dots
        )
        result, dropped = _drop_rule_marks(result, rules, ocr_dpi / dpi)
    with _timed(ms, "quality"):
        judged = _judge(result.words, expect_text)
    with _timed(ms, "ocr_plain_page"):
        result, judged, decisions["ocr_plain_page"] = _plain_page(
            result,
            judged,
            (first_review, first_text),
            plain_input,
            ocr_dpi,
            expect_text,
            settings,
            dots.printed_in_dots,
        )
        result, judged, decisions["ocr_single_block"] = _single_block(
            result, judged, ocr_input, ocr_dpi, expect_text, settings, dots.printed_in_dots
        )
        result, dropped_late = _drop_rule_marks(result, rules, ocr_dpi / dpi)
        decisions["rule_marks"] = {"rules": len(rules), "dropped": dropped + dropped_late}
        result, judged, decisions["ocr_retry_noise"] = _drop_retry_noise(
            result, judged, expect_text
        )
        result, moved = ocr.reading_order(result)
        result, split = ocr.nd30_columns(result)
        result, twice = ocr.drop_lines_read_twice(result, _line_key)
        decisions["reading_order"] = {
            "blocks_moved": moved,
            "nd30_lines_split": split,
            "lines_read_twice": twice,
        }
    with _timed(ms, "unread_text"):
        # Words tesseract left out (a table's cells, a faint word in a row it read) leave no
        # trace in the words it kept: the ink it was given is compared with where it read.
        unread = _unread_text(ocr_input, result) if expect_text else None
        decisions["unread_text"] = unread_record = _unread_record(unread)
        trusted = not judged.review
        if unread is not None and unread.width_em >= quality.UNREAD_TEXT_EM and trusted:
            # On a page whose reading passes every other check, the boxes left out are read
            # again, each as a line (a cell tesseract took for a picture reads well on its
            # own), and what is still left out after that decides the review.
            result, reread = _read_unread(result, unread, ocr_input, work_dir, ocr_dpi, settings)
            if reread.get("inserted"):
                judged = _judge(result.words, expect_text)
                unread = _unread_text(ocr_input, result) or unread
                reread["width_em_after"] = unread.width_em
                reread["boxes_after"] = _widest(unread)
            unread_record["reread"] = reread
        if unread is not None:
            judged = quality.review_unread(judged, unread.width_em)
    if dots.printed_in_dots and expect_text:
        # Dotted digits are misread as other digits (0 → 8 or 9: "118" for "110", "25/84"
        # for "25/04") and a wrong number is a valid token: no plausibility check sees it.
        # Every dot-matrix page of tests/records reads 3–9 % CER (seeds 0–11,
        # docs/benchmarks.md; 3.0–5.2 % since the dotted zero's dot is erased), some over
        # 5 % with a plausible text: a page in dots is reviewed, and says why, unless its
        # reading scores as type read right does (`quality.DOTTED_TRUSTED_SCORE`; sitting 6
        # reviewed every dotted page, bench foreign's dot_matrix seed 1 at 0.95 % CER too).
        judged = quality.review_dotted(judged)
    with _timed(ms, "archival"):
        archival_path, decisions["archival"] = write_archival(
            layers, result.words, work_dir / "archival.pdf", dpi, ocr_dpi,
            archival.legal_check(dpi, colour, dpi_known=settings.dpi_known),
        )  # fmt: skip
    with _timed(ms, "legal"):
        # Scale and PDF version as the produced file has them, not as we meant to write them.
        produced = archival.read_produced(archival_path.read_bytes(), layers.mask_size, dpi)
        legal = archival.legal_check(
            dpi, colour, produced.scale_percent, settings.dpi_known, produced.pdf_version
        )
    with _timed(ms, "write"):
        thumb = _write_jpeg(thumb_image, work_dir / "thumb.jpg")
        text = _write_text(work_dir / "text.txt", result.text)
    flags = _flags(blank, turn_cw, result, legal, settings, cover, judged)
    decisions |= {
        "quality": judged.as_record(),
        "legal": dataclasses.asdict(legal)
        | {"failures": list(legal.failures), "passed": legal.passed},
        "capture": capture_record,
        "blank": dataclasses.asdict(blank),
        "binarisation": dataclasses.asdict(binarisation),
        "ocr": _ocr_record(result),
        "flags": list(flags),
        "timings_ms": ms,
        "settings": dataclasses.asdict(settings),
    }
    decisions_path = _write_text(work_dir / "decisions.json", json.dumps(decisions, indent=2))
    return PageResult(
        capture,
        archival_path,
        text,
        thumb,
        decisions_path,
        decisions,
        result.mean_confidence,
        flags,
        cover,
    )


@functools.cache
def return_freed_memory() -> bool:
    """Make glibc give freed page-sized arrays back to the OS at once (once per process).

    glibc serves blocks ≥ 128 KiB with mmap, but raises that threshold to the size of each
    mmapped block freed (up to 32 MB): after the first page every 8.7 MB grey copy lands on
    the heap, and a freed heap block returns to the OS only from the heap's top. Measured
    (one 300-dpi page, VmRSS while tesseract runs): 82–131 MB by default, 65 MB with the
    threshold fixed, which also fixes the trim threshold's twin rule. Not glibc (musl, macOS):
    nothing to do, returns False.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    trimmed = mallopt(m_trim_threshold, MMAP_THRESHOLD)
    mapped = mallopt(m_mmap_threshold, MMAP_THRESHOLD)
    return bool(trimmed and mapped)


# ----------------------------------------------------------------------------- stages


def _cover_sheet(image: imaging.Image) -> tuple[coversheet.CoverSheet | None, dict[str, object]]:
    """Is this page a QR cover sheet (`agent.pipeline.coversheet`), and what does it say?

    Read from the page as decoded, before any turn: a QR code reads in every orientation,
    and `coversheet.detect` works on a ~1000-px copy (tens of ms). A cover page stays in the
    batch, flagged `separator`; the archive splits documents at it.
    """
    sheet = coversheet.detect(image)
    record: dict[str, object] = {"method": "opencv_qr", "found": sheet is not None}
    if sheet is not None:
        record |= {
            "payload": sheet.payload(),
            "ma_ho_so": sheet.ma_ho_so,
            "van_ban": sheet.van_ban,
            "title": sheet.title,
        }
    return sheet, record


def _orientation_guess(
    image: imaging.Image, blank: imaging.BlankCheck, work_dir: Path, settings: PipelineSettings
) -> tuple[imaging.OrientationEstimate, Path | None]:
    """The pixel heuristic's guess (~30 ms), and the image for tesseract's OSD (`osd.tif` in
    `work_dir`) when `_orientation` must ask it: the page is not blank, the heuristic is
    unsure or would turn it, and OSD is installed. Nothing of the page is kept."""
    grey, _ = imaging.text_grey(image, settings.dpi, crossings=False)
    guess = imaging.estimate_orientation(grey, settings.dpi)
    trusted = guess.confidence >= ORIENTATION_TRUSTED
    if blank.blank or (trusted and not guess.turn_cw) or not ocr.has_osd(settings.tesseract):
        return guess, None
    normalised = imaging.normalise_background(grey, settings.dpi)
    del grey  # not beside the binarisation's components (the colour page still is)
    binary, _ = imaging.binarise(normalised)
    del normalised
    return guess, _write_image(work_dir / "osd.tif", binary)


def _orientation(
    guess: imaging.OrientationEstimate,
    osd_input: Path | None,
    blank: imaging.BlankCheck,
    settings: PipelineSettings,
) -> tuple[int, dict[str, object]]:
    """Whether to turn the page: the pixel heuristic's `guess` (`_orientation_guess`), and
    tesseract's OSD (~0.5 s, on `osd_input`) when the heuristic is unsure or would turn the
    page. A blank page is never turned.

    A turn is never made on the heuristic alone: on pages this project did not make (streaks,
    speckle, folds: bench/foreign.py) it turned upright pages by 180° or 90° with confidence
    0.56–0.85, and a wrongly turned page loses all its text (CER 82–85 % where plain tesseract
    read 7–17 %). A wrongly kept page is the cheaper error: it reads badly and is flagged.
    So a turn needs tesseract's OSD to be sure on its own, or to agree with the heuristic.
    """
    record: dict[str, object] = {"heuristic": dataclasses.asdict(guess), "osd": None}
    turn_cw, source = guess.turn_cw, "heuristic"
    trusted = guess.confidence >= ORIENTATION_TRUSTED
    if blank.blank:
        turn_cw, source = 0, "blank_page"
    elif osd_input is not None:
        try:
            osd = ocr.detect_orientation(
                osd_input,
                dpi=settings.dpi,
                timeout_s=settings.ocr_timeout_s,  # the page's OCR has as long (was 30 s)
                binary=settings.tesseract,
            )
            record["osd"] = dataclasses.asdict(osd)
        except ocr.OcrFailed as exc:
            # OSD is advice: its failure (a timeout on a loaded machine, seen in the seventh
            # sitting's runs at 30 s) must not fail the page. It counts as no answer.
            osd = ocr.OsdResult(0, 0.0, "")
            record["osd"] = {"error": str(exc)[:300]}
        # No answer (too few characters, or OSD failed) is no agreement: no turn.
        answered = osd.confidence > 0
        if osd.confidence >= OSD_TRUSTED:
            turn_cw, source = osd.turn_cw, "osd"
        elif trusted and answered and osd.turn_cw == guess.turn_cw:
            turn_cw, source = guess.turn_cw, "heuristic+osd"
        elif (
            guess.lines_confidence >= ORIENTATION_TRUSTED
            and answered
            and osd.turn_cw % 180 == guess.lines_turn_cw % 180
        ):
            # Nobody is sure about up/down, both see the lines run this way: only make the
            # lines horizontal. A page left upside down is easier to spot and fix than one
            # wrongly flipped.
            turn_cw, source = guess.lines_turn_cw, "heuristic_lines_only"
        else:
            turn_cw, source = 0, "unsure"
    record |= {"turn_cw": turn_cw, "source": source}
    return turn_cw, record


def _deskew(
    page: imaging.Image, skew: imaging.SkewEstimate, blank: imaging.BlankCheck
) -> tuple[imaging.Image, dict[str, object]]:
    """`page` turned level, as `skew` (`imaging.estimate_skew` of its text grey) says."""
    applied = (
        not blank.blank
        and abs(skew.angle_deg) >= MIN_DESKEW_DEG
        and skew.confidence >= MIN_DESKEW_CONFIDENCE
    )
    if applied:
        page = imaging.rotate(page, -skew.angle_deg, fill=imaging.paper_colour(page))
    return page, dataclasses.asdict(skew) | {"applied": applied}


def _ocr_input(
    normalised: imaging.Image, binary: imaging.Image, dpi: int
) -> tuple[imaging.Image, int, dict[str, object]]:
    """What tesseract reads: the normalised grey inside our binarisation's ink, white around.

    Measured on the bench pages (docs/benchmarks.md, Pipeline): tesseract reads tone marks
    better from grey stroke edges than from our hard threshold (clean page CER 0.30 → 0.23 %,
    200 dpi 0.68 → 0.15 %), but raw grey lets speckles and paper noise through (σ2/σ6 pages
    0.3 → 10–12 %). Masking the grey with the despeckled binary (dilated by a halo so the
    anti-aliased edges stay) keeps both: no speckle survives, every stroke keeps its grey.
    """
    image = imaging.ink_grey(normalised, binary, dpi)
    scale = OCR_UPSCALE if dpi < OCR_MIN_DPI else 1.0
    if scale != 1.0:
        image = imaging.enlarge(image, scale)
    ocr_dpi = round(dpi * scale)
    record = {
        "method": "ink_masked_grey",
        "halo_px": imaging.ink_halo_px(dpi),
        "scale": scale,
        "dpi": ocr_dpi,
    }
    return image, ocr_dpi, record


def _second_pass(
    result: ocr.OcrResult,
    ocr_input: Path,
    plain_input: Path,
    work_dir: Path,
    dpi: int,
    settings: PipelineSettings,
    dotted: bool = False,
) -> tuple[ocr.OcrResult, dict[str, object]]:
    """Read doubtful lines again, from the cleaned and the less-processed page; keep the best.

    A line is doubtful when a word is under SECOND_PASS_BELOW or a token is not plausible
    Vietnamese (`agent.pipeline.quality`: not a syllable, number, code or abbreviation). Each is cut
    out (`imaging.line_crop`: the neighbours' accents stay out) twice — from the image
    tesseract read (`ocr_input`: despeckled, masked) and from `plain_input`, the page before
    despeckle and mask —, its kerned punctuation is moved clear
    (`imaging.dekern_punctuation`), and all crops are read in one tesseract run (`--psm 7`).
    Of the first reading and the two new ones, the most plausible wins (share of valid
    tokens, in steps of PLAUSIBILITY_STEP), then the surest (mean word confidence); the
    first reading stays on a tie, so no line is dropped and no line gets less plausible. A
    re-read that keeps fewer valid tokens, or differs only in letter case, never wins, nor
    one as plausible that tesseract itself is unsure of (`_wins`). Measured on 48 bench
    pages (8 per variant; docs/benchmarks.md, Pipeline), the cleaned crop alone: 13 % of
    lines read again, 45 lines fixed, 1 made worse. The plain crop is what keeps small sans
    type's dots below that despeckling took (issue 15: "Viêc" for "Việc"; docs/benchmarks.md,
    "OCR per class").
    """
    started = time.perf_counter()
    lines: dict[tuple[int, int, int], list[ocr.Word]] = {}
    for word in result.words:
        lines.setdefault(word.line, []).append(word)
    unsure = [key for key, words in lines.items() if min(w.conf for w in words) < SECOND_PASS_BELOW]
    implausible = [
        key for key, words in lines.items() if key not in unsure and _plausibility(words) < 1.0
    ]
    record: dict[str, object] = {
        "method": "line_crop+dekern_punctuation+psm7, cleaned and plain crops",
        "below_confidence": SECOND_PASS_BELOW,
        "lines": len(lines),
        "reread": len(unsure) + len(implausible),
        "implausible": len(implausible),
        "dekerned": 0,
        "replaced": [],
        "seconds": 0.0,
    }
    if not unsure and not implausible:
        return result, record
    if _not_type(lines, unsure, dotted):
        record["skipped"] = "most_lines_unsure"
        return result, record
    # A "line" whose words span several lines' height (a signature tesseract joined to the
    # text, a stamp) would be cut out with its neighbours in it, and their reading could win
    # as "more plausible": such lines keep their first reading.
    heights = sorted(_union(words)[3] for words in lines.values())
    tallest = LINE_MAX_HEIGHT * heights[len(heights) // 2]
    doubtful = [key for key in unsure + implausible if _union(lines[key])[3] <= tallest]
    record |= {"reread": len(doubtful), "too_tall": len(unsure) + len(implausible) - len(doubtful)}
    crops: list[tuple[Path, tuple[int, int], list[imaging.Insertion]]] = []
    with tempfile.TemporaryDirectory(prefix="lines-", dir=work_dir) as tmp:
        for image_path, tag in ((ocr_input, "c"), (plain_input, "p")):
            page = imaging.load_capture(image_path).image
            for n, key in enumerate(doubtful):
                line, origin = imaging.line_crop(page, _union(lines[key]))
                moved, insertions = imaging.dekern_punctuation(line)
                path = _write_image(Path(tmp) / f"{tag}{n:03d}.tif", moved)
                crops.append((path, origin, insertions))
            del page
        try:
            rereads = ocr.recognize_lines(
                [path for path, _, _ in crops],
                languages=settings.languages,
                dpi=dpi,
                timeout_s=settings.ocr_timeout_s,
                binary=settings.tesseract,
            )
        except ocr.OcrFailed as exc:
            # The first reading stands: the second pass may only improve a page, never
            # cost it its text.
            record |= {"error": str(exc)[:300], "seconds": round(time.perf_counter() - started, 3)}
            return result, record
        votes = _third_readings(crops, rereads, dpi, settings)
    replaced: dict[tuple[int, int, int], list[ocr.Word]] = {}
    changes = []
    half = len(doubtful)
    for n, key in enumerate(doubtful):
        vote = None if n not in votes else "cleaned" if votes[n] == n else "plain"
        tag = _choose_line(lines[key], rereads[n], rereads[n + half], vote)
        if tag == "first":
            continue
        m = n if tag.startswith("cleaned") else n + half
        _, origin, insertions = crops[m]
        best = [
            ocr.Word(w.text, w.conf, _page_box(w.box, origin, insertions), key) for w in rereads[m]
        ]
        replaced[key] = best
        changes.append(
            {
                "before": " ".join(w.text for w in lines[key]),
                "after": " ".join(w.text for w in best),
                "from": tag,
                "confidence_before": round(_mean_conf(lines[key]), 2),
                "confidence_after": round(_mean_conf(best), 2),
                "plausible_before": _plausibility(lines[key]),
                "plausible_after": _plausibility(best),
            }
        )
    record |= {
        "dekerned": sum(1 for _, _, insertions in crops if insertions),
        "enlarged": len(votes),
        "replaced": changes,
        "seconds": round(time.perf_counter() - started, 3),
    }
    if not replaced:
        return result, record
    words = tuple(w for key, old in lines.items() for w in replaced.get(key, old))
    return dataclasses.replace(
        result,
        text=_replace_lines(result.text, lines, replaced),
        words=words,
        mean_confidence=round(_mean_conf(words), 2),
    ), record


def _not_type(
    lines: dict[tuple[int, int, int], list[ocr.Word]],
    unsure: list[tuple[int, int, int]],
    dotted: bool = False,
) -> bool:
    """Whether a page's reading is not type with doubtful lines but noise, handwriting or a
    photo: most lines unsure (SECOND_PASS_MAX_SHARE) and most of the reading not Vietnamese
    (SECOND_PASS_MIN_PLAUSIBLE). Reading such a page again line by line would double its OCR
    time for nothing to choose from. Type tesseract is unsure of throughout is read again:
    ink bleed, a dark gradient, a fax (bench foreign, docs/benchmarks.md eighth sitting:
    ink_bleed seed 1, 12 of 18 lines unsure at share 0.99, was never re-read, 1.25 % CER
    against plain tesseract's 0.42 %). On 20 pages of four such classes (seeds 0–4), every
    line's readings set against the truth, the crops fixed 254 characters net with
    `_choose_line`'s rules and this skip, 8 with the former skip and rules.

    A page printed in dots (`dotted`: `imaging.DotMatrix.printed_in_dots`) keeps the former
    skip, most lines unsure: its plain crops show the dots unjoined and its misread digits
    are valid numbers either way; re-read, tests/records dot_matrix seeds 0–2 went from 4.1,
    5.1 and 8.7 % CER to 5.2, 13.7 and 15.0 % (codes and dates dropped from table rows). Such
    a page is reviewed unless it scores as type read right (`dot_matrix`)."""
    if len(unsure) <= SECOND_PASS_MAX_SHARE * len(lines):
        return False
    if dotted:
        return True
    return _plausibility([w for words in lines.values() for w in words]) < SECOND_PASS_MIN_PLAUSIBLE


def _choose_line(first: Lines, cleaned: Lines, plain: Lines, vote: str | None) -> str:
    """Which reading of a doubtful line to keep: "first" (the page's), "cleaned" or "plain"
    (its crops', `_second_pass`), or either crop's tag with ", agreed by the enlarged crop"
    when `vote` (`_third_readings`: "cleaned" or "plain", whose letters a third reading
    repeated) decided it."""
    best_key = _reading_key(first)
    if vote and _same_letters(first, cleaned if vote == "cleaned" else plain):
        return "first"  # three readings of four agree
    if vote == "plain" or (
        vote and not any(_same_letters(first, words) for words in (cleaned, plain))
    ):
        # Two of three crop readings agree: that reading, if it may replace the first. The
        # third is the cleaned crop enlarged: siding with the plain crop it contradicts its
        # own source (tests/records bleed_through seed 0: "sổ", the page and the cleaned
        # crop "số"); siding with the cleaned crop it is its echo, and does not outvote a
        # page reading the plain crop agrees with (bench foreign ink_bleed seed 1: the
        # page's and the plain crop's "không đủ", the cleaned crop's "không dủ"); the crops
        # then only confirm or contest the page's reading, below.
        agreed = cleaned if vote == "cleaned" else plain
        if _may_replace(first, agreed) and _reading_key(agreed)[0] >= best_key[0]:
            return f"{vote}, agreed by the enlarged crop"
    # A crop that reads the first reading again (letter case aside) confirms it, as surely
    # as it read it: a different crop reading must beat that (photocopy_2gen seed 2: the
    # cleaned crop's "của Chính phủ" at 96, first at 92, the plain crop's "tủa Chính phử" at
    # 94 won when the confirmation was not counted).
    for words in (cleaned, plain):
        if words and _same_letters(first, words):
            best_key = max(best_key, _reading_key(words))
    chosen = "first"
    for words, tag in ((cleaned, "cleaned"), (plain, "plain")):
        if words and _wins(words, best_key, first):
            best_key, chosen = _reading_key(words), tag
    return chosen


TIEBREAK_SCALE = 1.5  # the third reading of a line its two crops disagree on


def _third_readings(
    crops: list[tuple[Path, tuple[int, int], list[imaging.Insertion]]],
    rereads: list[tuple[ocr.Word, ...]],
    dpi: int,
    settings: PipelineSettings,
) -> dict[int, int]:
    """Lines whose cleaned and plain crops read different letters, as plausibly: a third
    reading decides. Returns {line: the crop index (n: cleaned, n + half: plain) whose
    reading the third agrees with}; lines it agrees with neither are left out.

    The two crops are the same type through two cleanups, and the surer of two valid
    readings is not the better one where they differ in a small mark: on bleed_through
    seed 0 the cleaned crop read "sổ" as "số" at 80.6, the plain crop "sổ" at 70.8 (the
    hook is there in both). The third reading is the cleaned crop enlarged TIEBREAK_SCALE
    times (bicubic), where a tone mark spans more pixels; it is a vote, not a third
    candidate: the line keeps the boxes and confidences of the crop it agrees with.
    Only lines with such a disagreement pay for it (one more tesseract run per page).
    """
    half = len(crops) // 2
    split = [
        n
        for n in range(half)
        if rereads[n]
        and rereads[n + half]
        and not _same_letters(rereads[n], rereads[n + half])
        and _reading_key(rereads[n])[0] == _reading_key(rereads[n + half])[0]
    ]
    if not split:
        return {}
    paths = []
    for n in split:
        path = crops[n][0]
        big = imaging.enlarge(imaging.load_capture(path).image, TIEBREAK_SCALE)
        paths.append(_write_image(path.with_name(f"e{n:03d}.tif"), big))
    try:
        thirds = ocr.recognize_lines(
            paths,
            languages=settings.languages,
            dpi=round(dpi * TIEBREAK_SCALE),
            timeout_s=settings.ocr_timeout_s,
            binary=settings.tesseract,
        )
    except ocr.OcrFailed:
        return {}
    votes = {}
    for n, third in zip(split, thirds, strict=True):
        if third and _same_letters(rereads[n], third):
            votes[n] = n
        elif third and _same_letters(rereads[n + half], third):
            votes[n] = n + half
    return votes


def _plain_page(
    result: ocr.OcrResult,
    judged: quality.PageQuality,
    first: tuple[bool, int],
    plain_input: Path,
    dpi: int,
    expect_text: bool,
    settings: PipelineSettings,
    dotted: bool = False,
) -> tuple[ocr.OcrResult, quality.PageQuality, dict[str, object]]:
    """A page whose text is likely wrong is read again whole from the less-processed image.

    The cleaned page can read worse than the page itself where cleanup misjudged it (a
    200-dpi copier JPEG of a ruled table: 29 % CER cleaned, 7 % plain, tests/records
    copier_jpeg_200). Only pages `agent.pipeline.quality` sends for review pay for it (4 of the 45
    corpus pages); the plain reading wins only if it is more plausible, or as plausible and
    surer (`_page_better`), so a page can only gain. Not when it has fewer valid tokens net of
    invalid ones (`_net_valid`; by more than a PLAUSIBILITY_STEP of them: 229 for 232 is as
    much text), the page-level twin of `_may_replace`: on a foreign page with a copier drum's
    vertical streaks (tests/test_ocr_foreign.py) tesseract read the plain page as an image
    with a heading in it, 9 tokens "more plausible" than the cleaned page's 200, and the
    text was gone (CER 97 %) without a review flag.

    `first`: whether the cleaned page's reading was likely wrong before the second pass mended
    its lines, and its valid tokens net of invalid ones then. The plain page is read then too,
    whatever the mended reading scores: mended lines are local repairs, the plain page a whole
    other reading (bench foreign shadow_cast seed 0 read 72.9 cleaned and 93.6 plain, CER
    0.64 %; once its unsure lines were re-read the mended page scored 90.3, was not reviewed,
    and kept 2.56 % CER). Its amount of text is weighed against the page's own reading, not
    the mended one's, which the crops added to (copier_200_grey seed 0: 229 net valid tokens
    plain, 232 cleaned, more once mended; the plain reading, its lines in order, lost).

    Not a page printed in dots (`dotted`: `imaging.DotMatrix.printed_in_dots`): its plain
    image shows the dots unjoined, which is what its cleaned page mends. On tests/records
    dot_matrix seeds 0–11 the plain page was read on 9 of 12 pages (1.8–3.2 s each) and
    never kept: page scores 45.7–86.8 plain against 82.1–87.3 cleaned. Such a page is
    reviewed unless it scores as type read right (`dot_matrix`).
    """
    first_review, first_text = first
    record: dict[str, object] = {"read": False}
    doubtful = judged.review or first_review or _doubtful(result.words, expect_text)
    if not (doubtful and expect_text and result.words):
        return result, judged, record
    if dotted:
        return result, judged, record | {"skipped": "printed_in_dots"}
    try:
        plain = ocr.recognize(
            plain_input,
            languages=settings.languages,
            dpi=dpi,
            expect_text=False,  # one psm-3 run: the retries are for pages with no text at all
            timeout_s=settings.ocr_timeout_s,
            binary=settings.tesseract,
        )
    except ocr.OcrFailed as exc:
        return result, judged, record | {"read": True, "error": str(exc)[:300]}
    plain_judged = _judge(plain.words, expect_text)
    kept = _page_better(plain_judged, judged) and _net_valid(plain.words) >= (
        1.0 - PLAUSIBILITY_STEP
    ) * min(first_text, _net_valid(result.words))
    record |= {
        "read": True,
        "first_review": first_review,
        "kept": "plain" if kept else "cleaned",
        "score_cleaned": judged.score,
        "score_plain": plain_judged.score,
        "seconds": plain.seconds,
    }
    return (plain, plain_judged, record) if kept else (result, judged, record)


# A single-block reading replaces the page's only when it holds this much more readable text
# (valid tokens net of invalid ones) and scores this much higher: it gave text back, not the
# same text in another order, nor more noise read as short syllables (bench foreign
# dirty_drum-4: 13 % more valid tokens net, the score 38.2 → 35.9, CER 74 → 95 %).
SINGLE_BLOCK_GAIN = 1.1
SINGLE_BLOCK_SCORE_GAIN = 5.0
# Under this page score the reading is mostly noise, and reading noise as one block costs
# tesseract minutes (bench foreign bad_photocopy-2, score 8: 73 s); such a page is reviewed.
SINGLE_BLOCK_FROM_SCORE = 50.0
SINGLE_BLOCK_TIMEOUT_S = 30.0


def _single_block(
    result: ocr.OcrResult,
    judged: quality.PageQuality,
    ocr_input: Path,
    dpi: int,
    expect_text: bool,
    settings: PipelineSettings,
    dotted: bool = False,
) -> tuple[ocr.OcrResult, quality.PageQuality, dict[str, object] | None]:
    """A page whose reading has lines of marks is read again as one block of text (psm 6).

    Tesseract's page layout (psm 3) can take rows of dotted leaders — a form's "Họ và tên:
    ........", the dots wrapping onto lines of their own — for a picture, and the text lines
    among them go with it: on a form printed by Chromium in DejaVu Serif (bench layouts,
    form) three whole lines ("Nơi thường trú: thôn Khuổi Xỏm, xã Đồng Phúc, …") were read as
    "0 ĐC C 0000000060000 …", by plain tesseract alike, 49 % CER. Read as one block the same
    image gives every text line (score 64.3 → 94.3). Only a reading with a `junk_line`
    (lines more marks than words, `quality.junk_lines`) that is not mostly noise
    (SINGLE_BLOCK_FROM_SCORE) pays for the extra run, and the block reading is kept only when
    it holds SINGLE_BLOCK_GAIN times the readable text and scores SINGLE_BLOCK_SCORE_GAIN
    higher: one block has no columns, so on a page read right it could only lose its layout.
    Not a page printed in dots (psm 6 on its joined dots: 37.6 % against 4.56 %, tenth
    sitting).
    """
    if not (expect_text and result.words and "junk_line" in judged.reasons) or dotted:
        return result, judged, None
    if result.psm != 3:  # a retry's reading (psm 6 or 11): its page had no layout to lose
        return result, judged, None
    if judged.score < SINGLE_BLOCK_FROM_SCORE:
        return result, judged, {"skipped": "mostly_noise", "score": judged.score}
    try:
        block = ocr.recognize(
            ocr_input,
            languages=settings.languages,
            dpi=dpi,
            expect_text=False,  # one run: no retries
            timeout_s=min(settings.ocr_timeout_s, SINGLE_BLOCK_TIMEOUT_S),
            binary=settings.tesseract,
            psm=6,
        )
    except ocr.OcrFailed as exc:
        return result, judged, {"error": str(exc)[:300]}
    block_judged = _judge(block.words, expect_text)
    own, other = _net_valid(result.words), _net_valid(block.words)
    kept = (
        other >= SINGLE_BLOCK_GAIN * max(own, 1)
        and block_judged.score >= judged.score + SINGLE_BLOCK_SCORE_GAIN
    )
    record: dict[str, object] = {
        "kept": kept,
        "net_valid": own,
        "net_valid_block": other,
        "score": judged.score,
        "score_block": block_judged.score,
        "seconds": block.seconds,
    }
    return (block, block_judged, record) if kept else (result, judged, record)


# A retry's reading under this page score (share of valid tokens × confidence) is noise.
RETRY_NOISE_BELOW = 30.0


def _drop_retry_noise(
    result: ocr.OcrResult, judged: quality.PageQuality, expect_text: bool
) -> tuple[ocr.OcrResult, quality.PageQuality, dict[str, object] | None]:
    """The page without the text of a retry that read noise, and what was dropped.

    The retries (psm 6, then 11: `ocr.recognize`) run only when psm 3 found no text, and they
    read whatever marks a page has: on a page of fine grey speckle (a bad photocopy, augraphy's
    BadPhotoCopy in `bench foreign`, bad_photocopy-2) psm 6 "read" 4,307 tokens of garbage at a
    score of 8 — CER 1,574 % where plain tesseract returned nothing (100 %) — into the text
    layer, the search index and the citizen's view. Under `RETRY_NOISE_BELOW` such a reading is
    dropped: the page keeps no text and is reviewed as `no_text` (a page with marks and no
    readable text), and decisions.json says what was dropped. A retry that read real text
    (a sparse label, a form) scores far above it; a first-pass (psm 3) reading is never dropped
    here, however poor: it is judged and flagged as it is.
    """
    if not (result.retried and result.words and judged.score < RETRY_NOISE_BELOW):
        return result, judged, None
    record: dict[str, object] = {
        "psm": result.psm,
        "tokens": judged.tokens,
        "score": judged.score,
        "invalid_examples": list(judged.invalid_examples),
    }
    empty = dataclasses.replace(result, text="", words=(), mean_confidence=0.0)
    return empty, quality.assess([], expect_text), record


UNREAD_BOXES_KEPT = 20  # decisions.json keeps this many boxes of unread text, the widest


def _unread_text(ocr_input: Path, result: ocr.OcrResult) -> imaging.UnreadText | None:
    """`imaging.unread_text` on the image tesseract read (`ocr_input`), against the words
    kept; None when the image cannot be read back (the check is then not made, and said)."""
    boxes = [w.box for w in result.words if w.text.strip()]
    if not boxes:
        return None
    image = cv2.imread(str(ocr_input), cv2.IMREAD_GRAYSCALE)
    if image is None:
        return None
    return imaging.unread_text(np.asarray(image, dtype=np.uint8), boxes)


# A box of unread text read again (`_read_unread`) joins the reading only when every token
# of it is valid and tesseract's mean confidence in it is at least this.
UNREAD_REREAD_CONFIDENCE = 80.0


def _read_unread(
    result: ocr.OcrResult,
    unread: imaging.UnreadText,
    ocr_input: Path,
    work_dir: Path,
    dpi: int,
    settings: PipelineSettings,
) -> tuple[ocr.OcrResult, dict[str, object]]:
    """The reading with the words of its unread boxes (`imaging.unread_text`) read again one
    by one as lines (psm 7) and put into the line each lies on (`ocr.insert_words`).

    bench foreign letterpress-5 (fifteenth sitting): the two faint cells tesseract left out,
    each read alone, gave "Ngôn ngữ" and "Ghi chú" at confidence 96. A box's reading is kept
    only when every token is valid and the mean confidence reaches UNREAD_REREAD_CONFIDENCE:
    a clump of noise reads as nothing or as marks."""
    image = cv2.imread(str(ocr_input), cv2.IMREAD_GRAYSCALE)
    if image is None:
        return result, {"error": "the OCR input could not be read back"}
    boxes = unread.boxes[:UNREAD_BOXES_KEPT]
    paths, origins = [], []
    for n, box in enumerate(boxes):
        crop, origin = imaging.line_crop(np.asarray(image, dtype=np.uint8), box)
        paths.append(_write_image(work_dir / f"u{n:03d}.tif", crop))
        origins.append(origin)
    del image
    try:
        readings = ocr.recognize_lines(
            paths,
            languages=settings.languages,
            dpi=dpi,
            timeout_s=settings.ocr_timeout_s,
            binary=settings.tesseract,
        )
    except ocr.OcrFailed as exc:
        return result, {"error": str(exc)[:300]}
    found: list[ocr.Word] = []
    for words, (x0, y0) in zip(readings, origins, strict=True):
        if not words or _mean_conf(words) < UNREAD_REREAD_CONFIDENCE:
            continue
        judged = quality.plausibility(w.text for w in words)
        if judged.valid < judged.tokens or not judged.tokens:
            continue
        found += [
            dataclasses.replace(w, box=(w.box[0] + x0, w.box[1] + y0, w.box[2], w.box[3]))
            for w in words
        ]
    mended, inserted = ocr.insert_words(result, found)
    record = {"boxes": len(boxes), "inserted": inserted, "words": [w.text for w in found]}
    return mended, record


def _unread_record(unread: imaging.UnreadText | None) -> dict[str, object]:
    if unread is None:
        return {"checked": False}
    return {
        "checked": True,
        "words": unread.words,
        "width_em": unread.width_em,
        "share": unread.share,
        "text_height_px": unread.text_height_px,
        # The boxes' frame: the staff page viewer draws them over the archival page, which
        # has the OCR image's geometry (turned and deskewed) at another scale.
        "image_size": list(unread.image_size),
        "boxes": _widest(unread),
    }


def _widest(unread: imaging.UnreadText) -> list[list[int]]:
    return [list(b) for b in sorted(unread.boxes, key=lambda b: -b[2])[:UNREAD_BOXES_KEPT]]


# A line taller than this many of the page's median word heights is not type read wrong but
# ink that is not type (a note by hand `imaging.not_type_marks` let through, a drawing): it is
# not judged a line of marks (`quality.junk_lines`). tests/records margin_notes-8 read a
# handwritten note as "Ñ\ ZZ N" (a line 2.5 times the type's height, confidence 1–52) on a
# page at 0.87 % CER, and was reviewed for it (fifteenth sitting); every line of marks on a page
# over 5 % CER that no other reason reviewed was under 1.1 times.
JUNK_LINE_MAX_HEIGHT = 2.0


def _judge(words: Lines, expect_text: bool) -> quality.PageQuality:
    """`quality.assess` of a reading: its words, and its lines as `_token_lines` gives them."""
    return quality.assess([(w.text, w.conf) for w in words], expect_text, _token_lines(words))


def _doubtful(words: Lines, expect_text: bool) -> bool:
    """Whether a reading is likely wrong, a lone speck read as a token and lines taller than
    the type counted too: reason enough to read the plain page (~0.7 s, `_plain_page`), not
    to send the page for review. tests/records bound_register-10 (seeds 6–11) first read
    specks as lines "Ị", ":" and "ï"; its plain page, read for them, had none (CER 1.67 →
    0.67 %)."""
    tokens = [(w.text, w.conf) for w in words]
    lines = _token_lines(words, every_line=True)
    return quality.assess(tokens, expect_text, lines, junk_min_tokens=1).review


def _token_lines(words: Lines, every_line: bool = False) -> list[list[str]]:
    """The words' texts, line by line (tesseract's block, paragraph, line), for
    `quality.junk_lines`: not the lines taller than JUNK_LINE_MAX_HEIGHT times the page's
    median word height, unless `every_line`."""
    heights = sorted(w.box[3] for w in words if w.text.strip())
    tallest = JUNK_LINE_MAX_HEIGHT * heights[len(heights) // 2] if heights else 0.0
    if every_line:
        tallest = float("inf")
    lines: dict[tuple[int, int, int], list[ocr.Word]] = {}
    for w in words:
        lines.setdefault(w.line, []).append(w)
    kept = [line for line in lines.values() if max(w.box[3] for w in line) <= tallest]
    return [[w.text for w in line] for line in kept]


def _line_key(words: list[ocr.Word]) -> tuple[float, ...]:
    """Of two readings of one line of ink: more readable text, then surer."""
    return float(_net_valid(words)), _mean_conf(words)


def _net_valid(words: Lines) -> int:
    """Valid tokens less invalid ones: how much readable text a reading holds."""
    judged = quality.plausibility(w.text for w in words)
    return judged.valid - (judged.tokens - judged.valid)


def _page_better(other: quality.PageQuality, judged: quality.PageQuality) -> bool:
    """Whether a page's other reading beats `judged`: more plausible by a PLAUSIBILITY_STEP,
    or as plausible (closer than that) and surer. Closer shares are equal however they fall
    about a multiple of the step: with steps counted from 0 (`_reading_key`'s, for lines),
    bench foreign copier_200_grey seed 0's plain reading (share 0.9496, confidence 88.1, CER
    8.1 %: the page's lines in order) lost to the cleaned one (0.9534, 87.5, CER 27.8 %:
    tesseract split its lines into two columns at a drum's streaks)."""
    if abs(other.syllable_share - judged.syllable_share) >= PLAUSIBILITY_STEP:
        return other.syllable_share > judged.syllable_share
    return other.mean_confidence > judged.mean_confidence


Lines = list[ocr.Word] | tuple[ocr.Word, ...]  # the words of one line, in reading order
PLAUSIBILITY_STEP = 0.05  # shares of valid tokens closer than this count as equal
LINE_MAX_HEIGHT = 2.0  # × the median line height: taller "lines" are not read again


def _wins(reread: Lines, best: tuple[int, float], first: Lines) -> bool:
    """Whether a re-read of a line beats the best reading so far (`_reading_key` `best`).

    More plausible wins; as plausible, the surer wins only when tesseract is sure of it
    (mean confidence ≥ SECOND_PASS_BELOW): an unsure crop's "quyết si" for the page's
    "quyết. /." (confidence 58 against 0, both plausible) cost the 200-dpi typewriter page
    its "./.". Never a reading `_may_replace` refuses.
    """
    key = _reading_key(reread)
    if key <= best or not _may_replace(first, reread):
        return False
    return key[0] > best[0] or key[1] >= SECOND_PASS_BELOW


def _may_replace(first: Lines, reread: Lines) -> bool:
    """Whether a line's re-read may replace its first reading at all (then `_reading_key`).

    Not when it keeps fewer valid tokens: a crop read that drops words is "more plausible"
    by share only (tests/records ruled_table seed 1: "111 | BùiKim Sơn 17/12/1990 …" gave
    way to "111 17/12/1990 …", the name gone). Not when it differs only in letter case:
    the page reading saw the line among its neighbours, the crop alone does not, and on a
    faded 200-dpi monospace page a crop's "L" for "l" was the surer reading of the two ("vào
    Lúc", "- LƯU: VT": typewriter_faded seeds 1 and 2; docs/benchmarks.md, "OCR per class").
    Not when it says a word twice that the first reading says once, nor ends a word in "?"
    or "!" before a lower-case word where the first does not (`_stutters`): tesseract's line
    mode repeats a table's cell ("1.118.000.000 | 1.118.000.000") and reads a gap as "?"
    ("mương? nội"), and neither costs plausibility (a number is valid, "?" punctuation).
    Not when tesseract is unsure of it (mean confidence under quality.UNSURE_WORD) and was
    not of the first: on a folded page a crop's "0n Sy, a hố mười n be ề Tươi phí ca hội
    rưỡng thê che" (36.2) is a little more plausible than the page's "Hôm hạ o hồi mười chín
    bạ r6f ươi phút, tại hội trường thôn Khe" (85.7), and 15 characters worse (bench foreign
    folding seed 2).
    """
    if _same_letters(first, reread):
        return False
    if _mean_conf(reread) < quality.UNSURE_WORD <= _mean_conf(first):
        return False
    kept = quality.plausibility(w.text for w in reread).valid
    if kept < quality.plausibility(w.text for w in first).valid:
        return False
    return _stutters(reread) <= _stutters(first)


def _words_only(words: Lines) -> list[str]:
    """The tokens that can tell two readings of a line apart: not numbers. Any digits make a
    valid number, so a number is no evidence for a reading, and counting it let a crop that
    read a cell twice, or "54,0%" as "54,090", win over the page's "54,0%o" (bench foreign
    ink_bleed seed 3), and a line of specks read as more specks and a "1%" win over specks
    (lighting_gradient seed 0); a token of as many digits as letters counts as a number."""
    kept = []
    for w in words:
        digits = sum(ch.isdigit() for ch in w.text)
        if not digits or digits < sum(ch.isalpha() for ch in w.text):
            kept.append(w.text)
    return kept


def _stutters(words: Lines) -> int:
    """Words said twice in a row (table rules aside), and words ending in "?" or "!" that a
    lower-case word follows: what a line-mode misreading adds."""
    texts = [w.text for w in words]
    bare = [t.strip(RULE_MARKS) for t in texts]
    bare = [t for t in bare if t]
    repeats = sum(1 for a, b in itertools.pairwise(bare) if a == b and any(map(str.isalnum, a)))
    marks = sum(1 for a, b in itertools.pairwise(texts) if a[-1:] in "?!" and b[:1].islower())
    return repeats + marks


def _same_letters(first: Lines, reread: Lines) -> bool:
    """The same words, letter case aside."""
    before = " ".join(w.text for w in first)
    return before.casefold() == " ".join(w.text for w in reread).casefold()


def _plausibility(words: list[ocr.Word] | tuple[ocr.Word, ...]) -> float:
    judged = quality.plausibility(w.text for w in words)
    return judged.share if judged.tokens else 1.0  # punctuation only: nothing to doubt


def _reading_key(words: list[ocr.Word] | tuple[ocr.Word, ...]) -> tuple[int, float]:
    """Order of readings of one line: more plausible (its words, `_words_only`), then surer."""
    judged = quality.plausibility(_words_only(words))
    share = judged.share if judged.tokens else 1.0
    return int(share / PLAUSIBILITY_STEP + 1e-9), _mean_conf(words)


def _mean_conf(words: list[ocr.Word] | tuple[ocr.Word, ...]) -> float:
    return sum(w.conf for w in words) / len(words) if words else 0.0


def _union(words: list[ocr.Word]) -> tuple[int, int, int, int]:
    left = min(w.box[0] for w in words)
    top = min(w.box[1] for w in words)
    right = max(w.box[0] + w.box[2] for w in words)
    bottom = max(w.box[1] + w.box[3] for w in words)
    return left, top, right - left, bottom - top


def _page_box(
    box: tuple[int, int, int, int], origin: tuple[int, int], insertions: list[imaging.Insertion]
) -> tuple[int, int, int, int]:
    """A word box of a (de-kerned) line crop in pixels of the page it was cut from."""
    left = imaging.undo_insertions(box[0], insertions)
    right = imaging.undo_insertions(box[0] + box[2], insertions)
    return origin[0] + left, origin[1] + box[1], max(1, right - left), box[3]


RULE_MARKS = "|¦"  # what tesseract reads a vertical table rule as, beside a cell's text
RULE_REACH_MM = 0.6  # a mark's edge this close to a rule is the rule


def _drop_rule_marks(
    result: ocr.OcrResult, rules: list[tuple[int, int, int, int]], scale: float
) -> tuple[ocr.OcrResult, int]:
    """The text without what tesseract read of the page's vertical table rules.

    A word that is only rule marks ("|") standing on a rule is dropped; a mark at a word's
    start or end is cut when that edge of the word is on a rule, or when a rule stands in
    the gap on that side, nearer than the neighbouring word and than the word's height:
    tesseract's word box is cut from the blobs it found after taking the rules out of the
    page, while its line recogniser reads the line image, rule included, so "|Họ" can have
    a box starting 1.4 mm right of the rule it read as "|" (dot_matrix seed 0: twelve such
    words, none dropped before). Marks away from any rule stay: they may be the page's own.
    `scale`: OCR-image pixels per page pixel.
    """
    if not rules or not result.words:
        return result, 0
    reach = max(2.0, RULE_REACH_MM / 25.4 * 300 * scale)
    boxes = [(x * scale, y * scale, (x + w) * scale, (y + h) * scale) for x, y, w, h in rules]

    def on_rule(x: float, top: float, bottom: float) -> bool:
        return any(
            x0 - reach <= x <= x1 + reach and top < y1 and bottom > y0 for x0, y0, x1, y1 in boxes
        )

    def rule_between(low: float, high: float, top: float, bottom: float) -> bool:
        """A rule standing wholly in the gap low..high, beside this word's rows."""
        return any(
            low <= x0 and x1 <= high and top < y1 and bottom > y0 for x0, y0, x1, y1 in boxes
        )

    lines: dict[tuple[int, int, int], list[ocr.Word]] = {}
    for word in result.words:
        lines.setdefault(word.line, []).append(word)
    replaced: dict[tuple[int, int, int], list[ocr.Word]] = {}
    dropped = 0
    for key, words in lines.items():
        kept: list[ocr.Word] = []
        for n, w in enumerate(words):
            left, top, width, height = w.box
            right, bottom = left + width, top + height
            before = words[n - 1].box[0] + words[n - 1].box[2] if n else left - height
            after = words[n + 1].box[0] if n + 1 < len(words) else right + height
            text = w.text
            if not text.strip(RULE_MARKS):
                if on_rule(left + width / 2, top, bottom):
                    dropped += len(text)
                    continue
            else:
                if text[0] in RULE_MARKS and (
                    on_rule(left, top, bottom)
                    or rule_between(max(before, left - height), left, top, bottom)
                ):
                    dropped += len(text) - len(text.lstrip(RULE_MARKS))
                    text = text.lstrip(RULE_MARKS)
                if text[-1] in RULE_MARKS and (
                    on_rule(right, top, bottom)
                    or rule_between(right, min(after, right + height), top, bottom)
                ):
                    dropped += len(text) - len(text.rstrip(RULE_MARKS))
                    text = text.rstrip(RULE_MARKS)
            kept.append(w if text == w.text else dataclasses.replace(w, text=text))
        if kept != words:
            replaced[key] = kept
    if not replaced:
        return result, 0
    words_out = tuple(w for key, old in lines.items() for w in replaced.get(key, old))
    return dataclasses.replace(
        result,
        text=_replace_lines(result.text, lines, replaced),
        words=words_out,
        mean_confidence=round(_mean_conf(words_out), 2),
    ), dropped


def _replace_lines(
    text: str,
    lines: dict[tuple[int, int, int], list[ocr.Word]],
    replaced: dict[tuple[int, int, int], list[ocr.Word]],
) -> str:
    """Tesseract's laid-out text with the replaced lines swapped in.

    Each non-empty text line is the words of one TSV line joined by spaces, in order; if
    that ever fails to hold, the text is rebuilt from the words (a blank line between
    paragraphs, as tesseract lays them out).
    """
    keys = list(lines)
    out: list[str] = []
    k = 0
    for raw in text.split("\n"):
        if not raw.strip():
            out.append(raw)
            continue
        if k >= len(keys) or raw != " ".join(w.text for w in lines[keys[k]]):
            break
        key = keys[k]
        out.append(" ".join(w.text for w in replaced[key]) if key in replaced else raw)
        k += 1
    else:
        if k == len(keys):
            return "\n".join(out)
    rebuilt: list[str] = []
    for n, key in enumerate(keys):
        if n and key[:2] != keys[n - 1][:2]:
            rebuilt.append("")
        rebuilt.append(" ".join(w.text for w in replaced.get(key, lines[key])))
    return "\n".join(rebuilt)


def _flags(
    blank: imaging.BlankCheck,
    turn_cw: int,
    result: ocr.OcrResult,
    legal: archival.LegalCheck,
    settings: PipelineSettings,
    cover: coversheet.CoverSheet | None,
    judged: quality.PageQuality,
) -> tuple[Flag, ...]:
    flags = []
    if blank.blank:
        flags.append("blank")
    elif result.mean_confidence < settings.low_confidence:
        flags.append("low_confidence")
    if judged.review:
        flags.append("review")
    if not legal.passed:
        # The capture fails the legal numbers: the reasons, then one flag to filter on.
        flags.extend(f for f in legal.failures if f in FLAGS)
        flags.append("legal_fail")
    if turn_cw:
        flags.append("rotated")  # a quarter or half turn; routine deskew is not flagged
    if result.retried:
        flags.append("ocr_retry")
    if cover is not None:
        flags.append("separator")
    return tuple(flags)


def _ocr_record(result: ocr.OcrResult) -> dict[str, object]:
    return {
        "languages": result.languages,
        "psm": result.psm,
        "attempts": list(result.attempts),
        "mean_confidence": result.mean_confidence,
        "words": len(result.words),
        "characters": len(result.text),
        "seconds": result.seconds,
        "tesseract": result.tesseract_version,
        "user_words": result.user_words,
    }


# ----------------------------------------------------------------------------- outputs


def write_archival(
    layers: archival.EncodedLayers,
    words: tuple[ocr.Word, ...],
    path: Path,
    dpi: int,
    ocr_dpi: int,
    legal: archival.LegalCheck,
) -> tuple[Path, dict[str, object]]:
    """The archival derivative: the oriented, deskewed page as a searchable PDF/A-2b.

    Mixed raster (`agent.pipeline.archival`): the OCR binarisation as a full-resolution G4 ink mask
    over a ~75-dpi colour JPEG background (both encoded before OCR, `layers`), plus
    tesseract's words as invisible text (boxes in pixels of the `ocr_dpi` image); colour
    kept, 100 % scale (page size = pixels / dpi). Returns the path and what was decided.
    """
    made = archival.assemble_pdf(layers, words, dpi, legal, words_dpi=ocr_dpi)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(made.pdf)
    os.replace(tmp, path)
    return path, {
        "format": f"PDF/A-2b (PDF {archival.PDF_VERSION}), mixed raster",
        "bytes": len(made.pdf),
        "bytes_by_layer": made.bytes_by_layer,
        "page_pt": [made.width_pt, made.height_pt],
        "ink_rgb": list(made.ink_rgb),
        "background_dpi": made.background_dpi,
        "text_words": made.words,
    }


def _write_jpeg(page: imaging.Image, path: Path, dpi: int | None = None, quality: int = 75) -> Path:
    rgb = page if page.ndim == 2 else cv2.cvtColor(page, cv2.COLOR_BGR2RGB)
    tmp = path.with_name(path.name + ".tmp")
    resolution = (dpi, dpi) if dpi else (72, 72)  # thumbnails carry no meaningful scale
    PILImage.fromarray(rgb).save(tmp, format="JPEG", quality=quality, dpi=resolution)
    os.replace(tmp, path)
    return path


def _write_image(path: Path, image: imaging.Image) -> Path:
    """A work image for tesseract (and the second pass's crops): an uncompressed TIFF.

    Written and read back within the page's few seconds, then deleted with `work_dir`, so
    size does not matter and codec time does: for a 300-dpi A4 grey page, uncompressed TIFF
    is ~16 ms to write and ~12–18 ms to decode, against PNG's 25–200 ms and 50–80 ms
    (OpenCV's default and level 1), and tesseract reads it ~50 ms faster than the PNG
    (leptonica's PNM reader is ~80 ms slower than PNG's, so not PGM). The pixels, hence
    the readings, are the same (docs/benchmarks.md "Thirteenth sitting").
    """
    tmp = path.with_name(path.name + ".tmp.tif")
    if not cv2.imwrite(str(tmp), image, [cv2.IMWRITE_TIFF_COMPRESSION, 1]):
        raise OSError(f"could not write {path}")
    os.replace(tmp, path)
    return path


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text if text.endswith("\n") or not text else text + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round((time.perf_counter() - started) * 1000, 1)
