"""agent.pipeline.imaging on generated pages: fast, no tesseract."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from corpus import (
    A5_LANDSCAPE_MM,
    FONT_REGULAR,
    PageSpec,
    TestPage,
    cer,
    render_page,
    save_png,
    signed_over_the_seal,
)
from PIL import Image, ImageDraw, ImageFont

from agent.pipeline import imaging

NOISY = {"paper": "gradient", "blur_sigma": 0.9, "speckles": 4350, "noise_sigma": 6.0}
HALF = {"n_lines": 12, "paper_mm": A5_LANDSCAPE_MM}


def bgr(page: TestPage) -> imaging.Image:
    return np.ascontiguousarray(page.image[:, :, ::-1])


def grey_of(page: TestPage) -> imaging.Image:
    return imaging.text_grey(bgr(page))[0]


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(array.tobytes()).hexdigest()


# ----------------------------------------------------------------------------- loading


def test_load_capture_decodes_8_and_16_bit_grey_and_colour(tmp_path: Path) -> None:
    page = render_page(PageSpec(dpi=100, **HALF)).image  # small: this tests decoding only
    grey8 = cv2.cvtColor(page, cv2.COLOR_RGB2GRAY)
    cases = {
        "grey8.png": (grey8, 8, 1),
        "grey16.png": (grey8.astype(np.uint16) * 257, 16, 1),
        "rgb16.png": (bgr_of(page).astype(np.uint16) * 257, 16, 3),
        "rgba8.png": (np.dstack([bgr_of(page), np.full(grey8.shape, 255, np.uint8)]), 8, 4),
    }
    for name, (pixels, depth, channels) in cases.items():
        assert cv2.imwrite(str(tmp_path / name), pixels)
        loaded = imaging.load_capture(tmp_path / name)
        assert (loaded.bit_depth, loaded.channels) == (depth, channels), name
        assert loaded.image.dtype == np.uint8
        assert (loaded.height, loaded.width) == grey8.shape
        expected = grey8 if channels == 1 else bgr_of(page)
        assert np.abs(loaded.image.astype(int) - expected).max() <= 1, name


def test_load_capture_holds_the_page_once_while_decoding(tmp_path: Path) -> None:
    """The decoder writes into the array returned: OpenCV's plain `imread` returned a Mat of
    its own that the Python binding copied, two copies of the page at the load's peak (50
    MB for a colour 300-dpi A4; docs/benchmarks.md, "Ninth sitting"). The peak's growth is
    compared with the page's own size (VmHWM, reset through /proc/self/clear_refs)."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2000, 1500, 3), dtype=np.uint8)  # 9 MB, incompressible
    assert cv2.imwrite(str(tmp_path / "page.png"), pixels, [cv2.IMWRITE_PNG_COMPRESSION, 0])
    assert np.array_equal(imaging.load_capture(tmp_path / "page.png").image, pixels)  # warm

    def status(key: str) -> int:
        with open("/proc/self/status", encoding="ascii") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith(key + ":"))

    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")  # VmHWM := VmRSS
    before = status("VmRSS")
    loaded = imaging.load_capture(tmp_path / "page.png")
    grown_kb = status("VmHWM") - before
    assert np.array_equal(loaded.image, pixels)
    assert grown_kb * 1024 < 1.5 * pixels.nbytes, f"{grown_kb} kB for a {pixels.nbytes} B page"


def bgr_of(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, :, ::-1])


def test_transparent_capture_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((40, 60, 4), np.uint8)  # black, fully transparent
    cv2.imwrite(str(tmp_path / "clear.png"), rgba)
    assert imaging.load_capture(tmp_path / "clear.png").image.min() == 255


def test_unreadable_capture_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(imaging.CaptureUnreadable) as err:
        imaging.load_capture(tmp_path / "junk.png")
    assert err.value.key == "capture_unreadable"
    with pytest.raises(imaging.CaptureUnreadable):
        imaging.load_capture(tmp_path / "missing.png")


# ----------------------------------------------------------------------------- skew


@pytest.mark.parametrize("angle", [-12.0, -4.0, -1.2, 0.3, 2.5, 6.0, 14.0])
def test_skew_is_found_within_a_fifth_of_a_degree(angle: float) -> None:
    page = render_page(PageSpec(skew_deg=angle, seed=int(angle * 10) % 7, **NOISY, **HALF))
    estimate = imaging.estimate_skew(grey_of(page), page.spec.dpi)
    assert abs(estimate.angle_deg - angle) <= 0.2, estimate
    assert estimate.confidence >= 0.5
    assert estimate.lines >= 8


def test_deskewed_page_is_level_and_keeps_its_corners() -> None:
    page = render_page(PageSpec(skew_deg=4.0, **NOISY, **HALF))
    image = bgr(page)
    estimate = imaging.estimate_skew(grey_of(page))
    level = imaging.rotate(image, -estimate.angle_deg, fill=imaging.paper_colour(image))
    assert level.shape[0] > image.shape[0]
    assert level.shape[1] > image.shape[1]
    assert level[0, 0].min() > 150  # paper-coloured wedge, not black
    residual = imaging.estimate_skew(imaging.text_grey(level)[0])
    assert abs(residual.angle_deg) <= 0.2


def test_a_page_without_lines_has_no_skew_confidence() -> None:
    blank = render_page(PageSpec(blank=True, dpi=150))
    estimate = imaging.estimate_skew(grey_of(blank), 150)
    assert estimate.confidence < 0.3


# ----------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("turned_cw", [0, 90, 180, 270])
def test_orientation_is_found_without_ocr(turned_cw: int) -> None:
    page = render_page(PageSpec(turned_cw=turned_cw, skew_deg=1.5, **NOISY, **HALF))
    estimate = imaging.estimate_orientation(grey_of(page), page.spec.dpi)
    assert (estimate.turn_cw + turned_cw) % 360 == 0, estimate
    assert estimate.confidence >= 0.5
    upright = imaging.turn(grey_of(page), estimate.turn_cw)
    assert upright.shape[1] > upright.shape[0]  # the half page is landscape when upright


def test_turn_rejects_odd_angles() -> None:
    with pytest.raises(ValueError, match="multiple of 90"):
        imaging.turn(np.zeros((4, 4), np.uint8), 45)


# ----------------------------------------------------------------------------- blank, background


@pytest.mark.parametrize(
    ("spec", "blank"),
    [
        (PageSpec(blank=True, dpi=200), True),
        (PageSpec(blank=True, dpi=200, **NOISY), True),
        (PageSpec(blank=True, dpi=200, paper="tinted", speckles=20000, noise_sigma=6), True),
        (PageSpec(n_lines=1, dpi=200, **NOISY), False),
        (PageSpec(dpi=200, **NOISY, **HALF), False),
    ],
)
def test_blank_detection_is_not_fooled_by_paper_noise(spec: PageSpec, blank: bool) -> None:
    page = render_page(spec)
    check = imaging.detect_blank(imaging.to_grey(bgr(page)), spec.dpi)
    assert check.blank is blank, check
    assert check.confidence >= 0.5


def test_otsu_alone_would_call_a_noisy_blank_page_inked() -> None:
    """Why detect_blank does not use Otsu (docs/research/perf.md B3): this is the trap it avoids."""
    grey = imaging.to_grey(bgr(render_page(PageSpec(blank=True, dpi=200, **NOISY))))
    _, ink = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    assert ink.mean() > 0.05
    assert imaging.detect_blank(grey, 200).blank


def test_background_normalisation_flattens_a_gradient() -> None:
    page = render_page(PageSpec(paper="gradient", **HALF))
    # Luma, not text_grey: the text grey adds chroma, which already evens out warm paper.
    grey = imaging.to_grey(bgr(page))
    flat = imaging.normalise_background(grey)
    top, bottom = grey[100:300], grey[-300:-100]
    assert np.percentile(top, 90) - np.percentile(bottom, 90) > 8  # the page really is shaded
    flat_top, flat_bottom = flat[100:300], flat[-300:-100]
    assert abs(np.percentile(flat_top, 90) - np.percentile(flat_bottom, 90)) <= 3


# ----------------------------------------------------------------------------- binarise


def test_despeckle_threshold_scales_with_dpi() -> None:
    # docs/research/perf.md B2c/B3: 15 px at 300 dpi, 7 px at 200 dpi; 25 px already deletes tone
    # marks.
    assert imaging.min_speck_area(300) == 15
    assert imaging.min_speck_area(200) == 7
    assert imaging.min_speck_area(600) == 60


def test_binarise_removes_speckles_and_keeps_diacritics() -> None:
    clean = render_page(PageSpec(**HALF))
    noisy = render_page(PageSpec(**NOISY, **HALF))
    clean_bin, clean_info = imaging.binarise(imaging.normalise_background(grey_of(clean)))
    noisy_bin, noisy_info = imaging.binarise(imaging.normalise_background(grey_of(noisy)))
    assert set(np.unique(noisy_bin)) <= {0, 255}
    assert noisy_info.removed_components > 1000  # the dust went
    # Every mark of the clean page (diacritics included) survives: same component count.
    assert abs(noisy_info.kept_components - clean_info.kept_components) <= 0.03 * (
        clean_info.kept_components
    )
    assert abs(int((noisy_bin == 0).sum()) - int((clean_bin == 0).sum())) < 0.1 * int(
        (clean_bin == 0).sum()
    )


def test_a_dust_free_page_keeps_thin_tone_marks_next_to_letters() -> None:
    grey = np.full((200, 400), 250, np.uint8)
    cv2.rectangle(grey, (50, 100), (60, 140), 40, -1)  # a letter's stem
    grey[92:95, 52:56] = 40  # a thin mark 5 px above it: after median 3, 8 px < 15 px
    grey[20:23, 300:304] = 40  # the same mark far from any letter
    binary, info = imaging.binarise(grey, 300)
    assert binary[93, 53] == 0  # kept: it belongs to the letter (an acute at 10.5 pt)
    assert binary[21, 301] == 255  # a lone speck still goes
    assert info.restored_marks == 1 and info.removed_components == 1

    dusty = grey.copy()
    for k in range(30):  # dust: more small components than a clean page ever has
        y, x = 160 + 10 * (k // 15), 120 + 10 * (k % 15)
        dusty[y : y + 3, x : x + 4] = 40
    binary, info = imaging.binarise(dusty, 300)
    assert binary[93, 53] == 255  # among dust, the small mark is dust
    assert info.restored_marks == 0 and info.removed_components == 32


def _strokes_and_specks(dpi: int) -> tuple[imaging.Image, imaging.Image]:
    """A grey page with two anti-aliased bars and dust specks, and its binarisation."""
    size = round(2 * dpi / 2.54)  # 2 × 2 cm
    grey = np.full((size, size), 250, np.uint8)
    cv2.line(grey, (10, size // 3), (size - 10, size // 3), 40, 4, cv2.LINE_AA)
    cv2.line(grey, (size // 2, 10), (size // 2, size - 10), 40, 3, cv2.LINE_AA)
    for x, y in ((15, 15), (size - 20, size - 25), (25, size - 15)):
        cv2.circle(grey, (x, y), 1, 90, -1)  # ~5 px of dust: under min_speck_area
    return grey, imaging.binarise(grey, dpi)[0]


@pytest.mark.parametrize("dpi", [200, 300])
def test_ink_grey_keeps_strokes_in_grey_and_whitens_specks(dpi: int) -> None:
    grey, binary = _strokes_and_specks(dpi)
    out = imaging.ink_grey(grey, binary, dpi)
    ink = binary == 0
    assert ink.any()
    assert np.array_equal(out[ink], grey[ink])  # stroke pixels keep their grey exactly
    far_from_ink = cv2.dilate(ink.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    specks = (grey < 200) & far_from_ink
    assert specks.any() and (out[specks] == 255).all()  # dust became paper
    assert len(np.unique(out)) > 2  # grey, not a second binarisation
    assert (out[~ink] >= grey[~ink]).all()  # nothing darker than the page


@pytest.mark.parametrize("dpi", [150, 200, 300, 600])
def test_ink_grey_halo_is_the_documented_width_by_dpi(dpi: int) -> None:
    halo = imaging.ink_halo_px(dpi)
    assert halo == (imaging.HALO_PX if dpi >= imaging.REFERENCE_DPI else imaging.HALO_PX_LOW_DPI)
    grey = np.full((41, 41), 200, np.uint8)  # flat mid grey: the halo shows as 200, paper 255
    binary = np.full_like(grey, 255)
    binary[20, 20] = 0  # one ink pixel
    out = imaging.ink_grey(grey, binary, dpi)
    kept = np.argwhere(out == 200)
    assert kept.min(axis=0).tolist() == [20 - halo] * 2
    assert kept.max(axis=0).tolist() == [20 + halo] * 2
    assert kept.shape[0] == (2 * halo + 1) ** 2  # a square halo (8-connected growth)
    assert (np.delete(out.ravel(), np.ravel_multi_index(kept.T, out.shape)) == 255).all()


def _line(text: str, dpi: int = 200, pt: float = 12.0) -> imaging.Image:
    """One line of Noto Serif as `line_crop` cuts it from a page (a quarter-height margin)."""
    font = ImageFont.truetype(str(FONT_REGULAR), round(pt * dpi / 72))
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("L", (right + 40, bottom + 40), 255)
    ImageDraw.Draw(canvas).text((20, 20), text, font=font, fill=35)
    page = np.asarray(canvas, np.uint8)
    rows, cols = np.flatnonzero(page.min(axis=1) < 128), np.flatnonzero(page.min(axis=0) < 128)
    box = (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))
    return imaging.line_crop(page, box)[0]


def _marks_under_tall_glyphs(line: imaging.Image) -> int:
    """Small low marks whose left edge lies under the right half of a tall glyph."""
    _, ink = cv2.threshold(line, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    count, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    boxes = [stats[i, :4] for i in range(1, count) if stats[i, 4] > 3]
    height = line.shape[0]
    tall = [b for b in boxes if b[3] > 0.45 * height]
    return sum(
        1
        for x, y, _, h in boxes
        if h <= 0.3 * height and y + h >= 0.55 * height
        for tx, _, tw, _ in tall
        if tx + tw / 2 < x < tx + tw
    )


def test_dekern_moves_commas_and_stops_out_from_under_capitals() -> None:
    line = _line("- Lưu: VT, VP.")
    assert _marks_under_tall_glyphs(line) >= 1  # Noto Serif kerns "T," (and "P.")
    moved, insertions = imaging.dekern_punctuation(line)
    assert insertions
    assert moved.shape == (line.shape[0], line.shape[1] + sum(i.width for i in insertions))
    assert _marks_under_tall_glyphs(moved) == 0
    # Nothing lost or smeared: the same ink, only moved.
    assert abs(int((moved < 128).sum()) - int((line < 128).sum())) <= 2
    assert moved.min() == line.min()


def test_dekern_leaves_lines_without_overhangs_alone() -> None:
    line = _line("Số hóa toàn bộ sổ hộ tịch")
    moved, insertions = imaging.dekern_punctuation(line)
    assert insertions == []
    assert moved is line


def test_dekern_leaves_noise_alone() -> None:
    # Random pixels have "marks under glyphs" everywhere: moving them all would make a
    # 300-px crop thousands of px wide (tesseract 5.3 died of SIGFPE on one).
    noise = np.random.default_rng(12).integers(0, 256, (75, 300), dtype=np.uint8)
    moved, insertions = imaging.dekern_punctuation(noise)
    assert insertions == [] and moved is noise


def test_undo_insertions_maps_dekerned_columns_back() -> None:
    insertions = [imaging.Insertion(at=50, width=5), imaging.Insertion(at=10, width=3)]
    assert imaging.undo_insertions(5, insertions) == 5  # before any insertion
    assert imaging.undo_insertions(11, insertions) == 10  # inside the first gap
    assert imaging.undo_insertions(20, insertions) == 17
    assert imaging.undo_insertions(55, insertions) == 50  # inside the second gap
    assert imaging.undo_insertions(60, insertions) == 52


def test_line_crop_keeps_a_quarter_height_margin_inside_the_page() -> None:
    page = np.arange(100 * 200, dtype=np.uint32).reshape(100, 200).astype(np.uint8)
    crop, origin = imaging.line_crop(page, (20, 40, 100, 20))
    assert origin == (15, 35)
    assert crop.shape == (30, 110)
    assert np.array_equal(crop, page[35:65, 15:125])
    edge, origin = imaging.line_crop(page, (0, 0, 200, 40))  # clipped, never outside
    assert origin == (0, 0) and edge.shape == (50, 200)
    before = page.copy()
    crop[:] = 0
    assert np.array_equal(page, before)  # a copy, not a view into the page


def test_components_use_16_bit_labels_and_fall_back_to_32_bit() -> None:
    few = np.zeros((64, 64), np.uint8)
    few[10:20, 10:20] = 255
    few[40:42, 40:42] = 255
    count, labels, stats = imaging._components(few)
    assert count == 3 and labels.dtype == np.uint16  # half the bytes of int32 labels
    assert sorted(stats[1:, cv2.CC_STAT_AREA].tolist()) == [4, 100]
    # 300 × 300 isolated pixels (a gap in every direction, diagonals included): 90 000
    # components, more than 16-bit labels can number.
    many = np.zeros((600, 600), np.uint8)
    many[::2, ::2] = 255
    count, labels, stats = imaging._components(many)
    assert count == 90_001 and labels.dtype == np.int32
    assert int(labels.max()) == 90_000 and (stats[1:, cv2.CC_STAT_AREA] == 1).all()
    # binarise (median 3, then labels) on a page of 67 600 specks still despeckles it:
    # 3 × 3 dots 5 px apart survive the median as 5-px crosses, under min_speck_area.
    dust = np.full((1300, 1300), 255, np.uint8)
    for dy in range(3):
        for dx in range(3):
            dust[dy::5, dx::5] = 0
    binary, info = imaging.binarise(dust, 300)
    assert info.removed_components == 260 * 260 and info.kept_components == 0
    assert (binary == 255).all()


def test_red_seal_drops_out_of_the_text_grey() -> None:
    plain = render_page(PageSpec(**HALF))
    sealed = render_page(PageSpec(seal=True, **HALF))
    luma_ink = int((imaging.binarise(imaging.to_grey(bgr(sealed)))[0] == 0).sum())
    plain_ink = int((imaging.binarise(grey_of(plain))[0] == 0).sum())
    sealed_ink = int((imaging.binarise(grey_of(sealed))[0] == 0).sum())
    assert imaging.text_grey(bgr(sealed))[1] == "max_channel+chroma"  # black type: colour drops
    assert luma_ink > 1.1 * plain_ink  # in luma the seal is ink...
    assert abs(sealed_ink - plain_ink) < 0.02 * plain_ink  # ...in the text grey it is gone


def test_a_blue_signature_along_a_red_seal_drops_out_and_the_text_under_it_stays() -> None:
    plain = render_page(PageSpec(**HALF))
    sealed = render_page(PageSpec(seal=True, **HALF))
    signed, crossing = signed_over_the_seal(sealed)
    text = imaging.binarise(grey_of(plain))[0] == 0
    crossing &= ~cv2.dilate(text.view(np.uint8), np.ones((9, 9), np.uint8)).view(bool)
    assert crossing.sum() > 1000  # the stroke runs a long way on the ring, off the text
    # Blue over red is dark in every channel (here a median RGB of (24, 13, 42)): ink to
    # luma, and to the text grey before crossings of two marks were taken for a mark.
    assert (imaging.binarise(imaging.to_grey(bgr(signed)))[0][crossing] == 0).mean() > 0.9
    signed_ink = imaging.binarise(grey_of(signed))[0] == 0
    assert signed_ink[crossing].mean() < 0.02
    # The type under the seal and under the stroke stays: as much ink as the plain page's.
    assert abs(int(signed_ink.sum()) - int(text.sum())) < 0.02 * int(text.sum())
    assert (signed_ink & text).sum() > 0.97 * text.sum()


def test_crossings_of_marks_are_found_without_whole_box_float_stacks() -> None:
    """Where a page's colour marks are looked at for crossings (`_drop_mark_overlaps`), the
    marks' colours are measured per channel: the four-channel float stack of the marks'
    box (16 bytes a pixel, 20 MB for a band of a 300-dpi A4 with a seal) was the worker's
    peak on such a page (docs/benchmarks.md, "Ninth sitting"). On the bench's tinted page
    with a seal, text_grey holds under 4 bytes per page pixel beyond its result (5.9 with
    the stack); its result is unchanged (the bench pages compared array for array)."""
    import tracemalloc

    page = bgr(render_page(PageSpec(paper="tinted", seal=True, noise_sigma=2.0, seed=3)))
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        grey, method = imaging.text_grey(page)
        held = tracemalloc.get_traced_memory()[1] - base - grey.nbytes
    finally:
        tracemalloc.stop()
    assert method == "max_channel+chroma"
    pixels = page.shape[0] * page.shape[1]
    assert held < 4 * pixels, f"{held / pixels:.2f} bytes per page pixel"


@pytest.mark.parametrize("share", [0.05, 0.3, 0.5, 0.7])
def test_components_found_band_by_band_are_those_of_the_whole_image(share: float) -> None:
    """`_banded_components` against OpenCV on the whole image: the same components (their
    boxes and areas), and each band's labels name one whole-image component each. Random
    pixels at these densities make components that cross several band edges, diagonally
    too (0.5 and 0.7: one component spans the image)."""
    rng = np.random.default_rng(round(share * 100))
    image = ((rng.random((3 * imaging.COMPONENT_BAND_ROWS + 77, 300)) < share) * 255).astype(
        np.uint8
    )
    count, labels, whole, _ = cv2.connectedComponentsWithStats(image, connectivity=8)
    stats, bands, component = imaging._banded_components(image)
    assert sorted(map(tuple, stats.tolist())) == sorted(map(tuple, whole[1:count].tolist()))
    assert len(bands) == 4
    for top, bottom, offset in bands:
        _, band, _ = imaging._components(image[top:bottom])
        ink = band > 0
        pairs = np.unique(
            np.stack([component[offset + band[ink].astype(np.int64) - 1], labels[top:bottom][ink]]),
            axis=1,
        )
        assert len(set(pairs[0])) == len(set(pairs[1])) == pairs.shape[1]  # one to one


def test_binarisation_and_blank_detection_hold_no_label_image_of_the_page() -> None:
    """Connected components are labelled band by band (`_banded_components`) and the binary
    painted in place of the ink: the page's 16-bit label image (2 bytes a pixel) and a
    second binary are never held (docs/benchmarks.md, "Ninth sitting": 30 MB at 300 dpi,
    the worker's peak). Counted with tracemalloc, which sees every numpy buffer; the
    results are the whole-image ones (compared on the bench pages, and the tests above)."""
    import tracemalloc

    grey = grey_of(render_page(PageSpec(**NOISY)))
    pixels = grey.size
    held = {}
    tracemalloc.start()
    try:
        for name, step in (
            ("binarise", lambda: imaging.binarise(grey)),
            ("detect_blank", lambda: imaging.detect_blank(grey)),
        ):
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            result = step()
            held[name] = (tracemalloc.get_traced_memory()[1] - base) / pixels
            del result
    finally:
        tracemalloc.stop()
    assert held["binarise"] < 2, held  # its ink, become the binary, and a band's labels
    assert held["detect_blank"] < 2, held


def test_vertical_rules_found_band_by_band_are_those_of_the_whole_page() -> None:
    """`vertical_rules` opens the page band by band, each band with a rule's length of rows
    around it: the rules found are those of the opening of the whole page, rules crossing
    band edges, starting or ending near them, and touching the page's top and bottom
    included."""
    rng = np.random.default_rng(7)
    dpi = 300
    length = max(9, round(imaging.RULE_MIN_MM / 25.4 * dpi))
    height = 3 * imaging.COMPONENT_BAND_ROWS + 100
    binary = np.full((height, 400), 255, np.uint8)
    binary[rng.random(binary.shape) < 0.03] = 0  # specks
    for x, top, size in [(10, 0, height), (40, 500, length), (70, 510, length - 1)]:
        binary[top : top + size, x] = 0
    for x in range(100, 390, 7):  # rules of every length ending anywhere, some 2 px wide
        top = int(rng.integers(0, height - 20))
        size = int(rng.integers(length - 5, 3 * length))
        binary[top : top + size, x : x + 1 + int(rng.integers(0, 2))] = 0
    whole = cv2.morphologyEx(
        cv2.bitwise_not(binary), cv2.MORPH_OPEN, np.ones((length, 1), np.uint8)
    )
    contours, _ = cv2.findContours(whole, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    expected = sorted((tuple(cv2.boundingRect(c)) for c in contours), key=lambda b: (b[1], b[0]))
    found = imaging.vertical_rules(binary, dpi)
    assert len(found) > 30
    assert found == expected


# ----------------------------------------------------------------------------- misc


def test_thumbnail_is_at_most_320_wide_and_keeps_aspect() -> None:
    image = bgr(render_page(PageSpec(dpi=150)))
    thumb = imaging.thumbnail(image, 320)
    assert thumb.shape[1] == 320
    assert abs(thumb.shape[0] / 320 - image.shape[0] / image.shape[1]) < 0.01


def test_nothing_alters_its_input(tmp_path: Path) -> None:
    page = render_page(PageSpec(skew_deg=3, turned_cw=90, **NOISY, **HALF))
    capture = save_png(page, tmp_path / "capture.png")
    file_digest = hashlib.sha256(capture.read_bytes()).hexdigest()
    mtime = capture.stat().st_mtime_ns
    image = imaging.load_capture(capture).image
    grey = imaging.text_grey(image)[0]
    before = digest(image), digest(grey)
    imaging.detect_blank(imaging.to_grey(image))
    orientation = imaging.estimate_orientation(grey)
    turned = imaging.turn(image, orientation.turn_cw)
    imaging.rotate(turned, -imaging.estimate_skew(imaging.text_grey(turned)[0]).angle_deg)
    imaging.binarise(imaging.normalise_background(grey))
    imaging.thumbnail(image)
    imaging.rotate(image, 0.0)[:] = 0  # even a no-op rotation hands back a copy
    imaging.turn(image, 0)[:] = 0
    assert (digest(image), digest(grey)) == before
    assert hashlib.sha256(capture.read_bytes()).hexdigest() == file_digest
    assert capture.stat().st_mtime_ns == mtime


# ----------------------------------------------------------------------------- corpus helpers


def test_cer_normalises_unicode_and_whitespace() -> None:
    import unicodedata

    text = "Quyết định  số\n125"
    assert cer(text, unicodedata.normalize("NFD", "Quyết định số 125")) == 0.0
    assert cer("abcd", "abxd") == 0.25
    assert cer("", "") == 0.0


def test_corpus_text_is_nfc_and_pages_are_deterministic() -> None:
    import unicodedata

    a, b = render_page(PageSpec(dpi=100, **NOISY)), render_page(PageSpec(dpi=100, **NOISY))
    assert a.text == unicodedata.normalize("NFC", a.text)
    assert "QUYẾT ĐỊNH" in a.text
    assert np.array_equal(a.image, b.image)


def test_the_archival_mask_keeps_one_pixel_rules_under_300_dpi() -> None:
    """A 200-dpi ruled table: the 3×3 median of the OCR binarisation breaks its 1-px rules;
    the archival mask, thresholded without it, keeps them whole (and still drops dust)."""
    page = np.full((400, 600), 235, np.uint8)
    page[100, 50:550] = 40  # a horizontal rule, 1 px
    page[50:350, 300] = 40  # a vertical rule, 1 px
    cv2.putText(page, "So 12/UBND", (60, 200), cv2.FONT_HERSHEY_SIMPLEX, 1.2, 30, 3)
    page[370, 20] = 40  # one dust speck
    ocr_binary, _ = imaging.binarise(page, 200)
    assert (ocr_binary[100, 50:550] == 0).mean() < 0.1  # the median took the rule
    mask = imaging.mask_binary(page, ocr_binary, 200)
    assert (mask[100, 50:550] == 0).all() and (mask[50:350, 300] == 0).all()
    assert mask[370, 20] == 255
    assert (mask[150:220, 60:290] == 0).sum() >= (ocr_binary[150:220, 60:290] == 0).sum() * 0.9
    # At 300 dpi and above the mask is the OCR binarisation itself: no second pass.
    assert imaging.mask_binary(page, ocr_binary, 300) is ocr_binary


@pytest.mark.parametrize(
    ("name", "dotted"),
    [("dot_matrix", True), ("serif_clean", False), ("typewriter_faded", False),
     ("ruled_table", False), ("carbon_copy", False)],
)  # fmt: skip
def test_dot_matrix_type_is_told_by_its_dots_and_joined_at_their_pitch(
    name: str, dotted: bool
) -> None:
    import records

    page = records.render(name, 1)
    image = page.image if page.image.ndim == 2 else np.ascontiguousarray(page.image[:, :, ::-1])
    grey, _ = imaging.text_grey(image)
    found = imaging.dot_matrix(grey, page.dpi)
    assert found.found is dotted, found
    if not dotted:
        assert found.cores_per_blob < imaging.DOTTED_CORES - 0.5  # not a near miss
        assert imaging.join_dots(grey, found) is grey  # nothing done to printed type
        return
    assert found.pitch_px == pytest.approx(page.dpi / 72, abs=0.5)  # 9-pin: 1/72 in
    joined = imaging.join_dots(grey, found)
    # Joined: the dots' dark cores merge into strokes (fewer, larger pieces).
    core = imaging.dot_matrix(joined, page.dpi)
    assert core.cores_per_blob < found.cores_per_blob / 2, core


def test_type_broken_by_a_texture_is_not_taken_for_dots() -> None:
    """Worn or starved ink (augraphy's low-ink streaks and letterpress in bench foreign) also
    breaks strokes into dark cores, 3.3-4.0 per component, as many as dot-matrix type: it was
    taken for dot-matrix print and sent for review. Its gaps are spread over every spacing,
    where a print head's dots sit at its pins' pitch: not printed in dots (its strokes may
    still be joined). Here printed type with its ink knocked out
    starved at random (patches of 3-7 px lighter than the ink's cores, still ink)."""
    import records

    page = records.render("serif_clean", 1)
    grey, _ = imaging.text_grey(np.ascontiguousarray(page.image[:, :, ::-1]))
    rng = np.random.default_rng(7)
    holes = np.zeros(grey.shape, np.uint8)
    for _ in range(3):  # patches 3-7 px across, scattered over the strokes
        size = int(rng.integers(3, 8))
        seeds = rng.random((grey.shape[0] // size + 1, grey.shape[1] // size + 1)) < 0.3
        grid = np.kron(seeds, np.ones((size, size), np.uint8))[: grey.shape[0], : grey.shape[1]]
        shift = tuple(int(x) for x in rng.integers(0, size, 2))
        holes |= np.roll(grid, shift, axis=(0, 1))
    # Starved ink: lighter than the ink's dark cores, still ink to a threshold.
    ink, paper = np.percentile(grey, 1), np.percentile(grey, 90)
    faded = np.maximum(grey, ink + 0.4 * (paper - ink))
    worn = np.where(holes > 0, faded, grey).astype(np.uint8)
    found = imaging.dot_matrix(worn, page.dpi)
    assert found.cores_per_blob >= imaging.DOTTED_CORES, found  # as many cores as dots have
    assert not found.printed_in_dots and found.regular < imaging.DOT_REGULAR, found
    dotted = records.render("dot_matrix", 1)
    dots, _ = imaging.text_grey(np.ascontiguousarray(dotted.image[:, :, ::-1]))
    assert imaging.dot_matrix(dots, dotted.dpi).printed_in_dots
    assert imaging.dot_matrix(dots, dotted.dpi).regular >= imaging.DOT_REGULAR + 0.1


def test_a_mark_free_in_a_letters_counter_is_erased_and_nothing_else() -> None:
    """The dotted zero of dot-matrix fonts: a dot standing free inside the ring, which no
    Vietnamese letter has (tesseract read the joined zero as 8 or 9). Erased; a tone mark
    above a ring, a ring's own hole, a word inside a table's cell and a dot next to a ring
    stay as they are."""
    page = np.full((300, 700), 245, np.uint8)
    # a dotted zero: a ring 24 x 36 px (2 x 3 mm), a 6-px dot in its counter
    cv2.ellipse(page, (60, 150), (12, 18), 0, 0, 360, 30, 5)
    cv2.circle(page, (60, 150), 3, 30, -1)
    # an "ô": a ring with its mark above, outside the counter
    cv2.ellipse(page, (140, 150), (12, 14), 0, 0, 360, 30, 5)
    cv2.circle(page, (140, 122), 3, 30, -1)
    # a ring with nothing inside, and one with a dot beside it
    cv2.ellipse(page, (220, 150), (12, 18), 0, 0, 360, 30, 5)
    cv2.circle(page, (250, 150), 3, 30, -1)
    # a table cell (a 5 x 8 mm box of rules) with a word and a dot inside
    cv2.rectangle(page, (320, 100), (420, 200), 30, 3)
    cv2.putText(page, "So 12", (330, 160), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 30, 2)
    cv2.circle(page, (410, 185), 3, 30, -1)
    erased = imaging.erase_enclosed_marks(page, 300)
    assert erased[150, 60] >= 240  # the zero's dot is paper
    assert (erased[150, 44:51] < 100).any() and (erased[150, 69:76] < 100).any()  # ring kept
    changed = np.argwhere(erased != page)
    assert changed[:, 1].min() >= 50 and changed[:, 1].max() <= 70  # only inside that zero
    assert changed[:, 0].min() >= 140 and changed[:, 0].max() <= 160
    # Joined, the dotted page is read without the zero's dot.
    found = imaging.DotMatrix(True, 4.0, 4.0, 1.8, regular=0.8)
    assert imaging.join_dots(page, found, 300)[150, 60] > 200
    assert imaging.join_dots(page, dataclasses.replace(found, found=False), 300) is page


def test_the_dots_of_colons_and_semicolons_are_punctuation_not_dust() -> None:
    """On a page without dust, small marks are put back when a letter is near; a colon's
    dots and a semicolon's upper dot are farther from any letter (Liberation Sans 11 pt
    italic: 15 px above the comma). They are put back as the other half of a dot pair; a
    speck straight above a letter is not."""
    import numpy as np

    # left, top, width, height, area: components as `_banded_components` gives them
    stats = np.array([
        [100, 100, 5, 4, 14],   # 0: a semicolon's dot (small)
        [99, 119, 6, 11, 35],   # 1: its comma (kept, dot-sized)
        [300, 100, 5, 4, 13],   # 2: a colon's upper dot (small)
        [300, 118, 5, 4, 13],   # 3: its lower dot (small)
        [500, 90, 5, 4, 14],    # 4: a speck above a letter (small)
        [498, 110, 20, 30, 240],  # 5: the letter
        [700, 100, 5, 4, 14],   # 6: a speck alone
    ], dtype=np.int64)  # fmt: skip
    small = np.array([0, 2, 3, 4, 6], dtype=np.intp)
    assert imaging._punctuation_dots(stats, small, set(), 15, 300) == [0, 2, 3]
    assert imaging._punctuation_dots(stats, small, {0, 2}, 15, 300) == [3]


def _ocr_binary(image: np.ndarray, dpi: int) -> np.ndarray:
    grey, _ = imaging.text_grey(np.ascontiguousarray(image[:, :, ::-1]), dpi)
    normalised = imaging.normalise_background(grey, dpi)
    binary, _ = imaging.binarise(normalised, dpi)
    return imaging.mask_binary(normalised, binary, dpi)


def test_handwriting_away_from_type_is_not_read_and_type_a_scrawl_runs_into_is() -> None:
    """Notes in near-black ink (tests/records margin_notes seed 3: beside the text and under
    it) are found and erased from what tesseract reads, and only they; the same hand's
    scrawl written across a line of type joins some of its letters into one tall looped
    component, which has the rest of the line beside it: it stays, letters and all."""
    import records
    from records import defects

    page = records.render("margin_notes", 3)
    binary = _ocr_binary(page.image, page.dpi)
    typed, found = imaging.not_type_marks(binary, page.dpi)
    assert typed is not None and found.handwriting >= 10 and found.edge_bands == 0, found
    changed = np.argwhere(typed != binary)
    assert (binary[changed[:, 0], changed[:, 1]] == 0).all()  # only ink became paper
    for x, y, w, h in found.boxes:  # the notes: in the left margin or under the text
        assert x + w < 38 / 25.4 * page.dpi or y > 2300, (x, y, w, h)

    clean = records.render("serif_clean", 0)
    dpi = clean.dpi
    plain = _ocr_binary(clean.image, dpi)
    assert imaging.not_type_marks(plain, dpi)[0] is None  # nothing on a clean page
    # A scrawl across the middle of the body's lines, 40 mm wide, over the type.
    mm = dpi / 25.4
    rows = np.flatnonzero((plain[:, round(60 * mm) : round(150 * mm)] == 0).any(axis=1))
    middle = int(np.median(rows))
    scrawled = defects.handwriting(
        clean.image.astype(np.float32),
        np.random.default_rng(3),
        dpi,
        (90 * mm, middle - 5 * mm, 40 * mm, 10 * mm),
        (25, 25, 30),
        lines=1,
    )
    over = _ocr_binary(cv2.convertScaleAbs(scrawled), dpi)
    _, beside = imaging.not_type_marks(over, dpi)
    assert beside.handwriting == 0, beside


@pytest.mark.parametrize("font", ["Serif-Regular", "Serif-Bold", "Sans-Regular", "Sans-Bold"])
def test_a_large_heading_s_looped_letters_are_type_not_handwriting(font: str) -> None:
    """A heading at 20-36 pt over 12-pt text has letters with counters (Ồ, Ơ, Đ, B, A, O, Q)
    as tall as a hand's words and alone in their rows: they were erased from what tesseract
    reads. Their strokes are thicker for their height than a pen's, and each has a letter
    beside it."""
    path = f"/usr/share/fonts/truetype/liberation2/Liberation{font}.ttf"
    body = ImageFont.truetype(
        "/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf", 50
    )
    for pt in (20, 28, 36):
        image = Image.new("L", (2480, 3508), 250)
        draw = ImageDraw.Draw(image)
        heading = ImageFont.truetype(path, round(pt * 300 / 72))
        draw.text((400, 300), "HỒ SƠ LƯU TRỮ ĐỢT 2 BẢO QUẢN", font=heading, fill=20)
        for row in range(30):
            line = "Ủy ban nhân dân xã Đông Sơn báo cáo việc số hóa hồ sơ lưu trữ năm 2024."
            draw.text((300, 700 + row * 75), line, font=body, fill=20)
        grey = np.asarray(image)
        binary, _ = imaging.binarise(imaging.normalise_background(grey, 300), 300)
        typed, found = imaging.not_type_marks(binary, 300)
        assert typed is None and found.handwriting == 0, (pt, found)
