"""Synthetic test pages of Vietnamese administrative text, and a character error rate.

This module owns the generator used by tests (and later by benchmarks): it renders an NFC
Vietnamese "quyết định" with Pillow at a given dpi, then degrades it the way a commune scan
degrades (skew, a page fed sideways or upside down, tinted or yellowed paper, sensor noise,
dust speckles, a red seal stamped over the text, a blank sheet).

It must not import anything from `agent` (the thing under test) and must not write files:
callers decide where a page goes. Pages come back as RGB `uint8` numpy arrays (H, W, 3) with
the exact ground-truth text, one rendered line per text line.

The degradation model follows docs/research/perf.md B1 (Noto Serif, ink 35, paper 238→218
gradient, blur σ 0.9, grey speckles of radius 1–2 px, Gaussian noise σ 2–6).
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_REGULAR = Path("/usr/share/fonts/truetype/noto/NotoSerif-Regular.ttf")
FONT_BOLD = Path("/usr/share/fonts/truetype/noto/NotoSerif-Bold.ttf")
FONT_FALLBACK = Path("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf")

# (text, centred, bold). A commune People's Committee decision, the commonest record kind.
# ASCII hyphens on purpose: the test measures OCR, not dash typography.
_LINES: tuple[tuple[str, bool, bool], ...] = (
    ("ỦY BAN NHÂN DÂN XÃ TÂN PHÚ", True, True),
    ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", True, True),
    ("Độc lập - Tự do - Hạnh phúc", True, True),
    ("Số: 125/QĐ-UBND, Tân Phú, ngày 14 tháng 3 năm 2024", True, False),
    ("QUYẾT ĐỊNH", True, True),
    ("Về việc phê duyệt kế hoạch chỉnh lý tài liệu lưu trữ năm 2024", True, True),
    ("CHỦ TỊCH ỦY BAN NHÂN DÂN XÃ TÂN PHÚ", True, True),
    ("Căn cứ Luật Tổ chức chính quyền địa phương ngày 19 tháng 6 năm 2015;", False, False),
    ("Căn cứ Luật Lưu trữ ngày 11 tháng 11 năm 2011;", False, False),
    ("Căn cứ Nghị định số 30/2020/NĐ-CP ngày 05 tháng 3 năm 2020 của Chính phủ", False, False),
    ("về công tác văn thư;", False, False),
    ("Xét đề nghị của công chức Văn phòng - Thống kê xã,", False, False),
    ("QUYẾT ĐỊNH:", True, True),
    ("Điều 1. Phê duyệt kế hoạch chỉnh lý tài liệu lưu trữ của Ủy ban nhân dân", False, False),
    ("xã năm 2024, gồm các nội dung chính sau đây:", False, False),
    ("1. Thu thập, phân loại và lập hồ sơ đối với tài liệu hình thành từ năm", False, False),
    ("2010 đến năm 2020 đang bảo quản tại kho lưu trữ của xã.", False, False),
    ("2. Số hóa toàn bộ sổ hộ tịch, sổ địa chính và hồ sơ đất đai của các thôn.", False, False),
    ("3. Xác định thời hạn bảo quản, lập danh mục tài liệu hết giá trị.", False, False),
    ("Điều 2. Giao công chức Văn phòng - Thống kê chủ trì, phối hợp với công", False, False),
    ("chức Địa chính - Xây dựng tổ chức thực hiện; kinh phí do ngân sách xã", False, False),
    ("bảo đảm theo quy định hiện hành.", False, False),
    ("Điều 3. Quyết định này có hiệu lực kể từ ngày ký. Văn phòng Ủy ban nhân", False, False),
    ("dân xã, các ban, ngành, đoàn thể và trưởng các thôn chịu trách nhiệm thi", False, False),
    ("hành Quyết định này./.", False, False),
    ("Nơi nhận:", False, True),
    ("- Như Điều 3;", False, False),
    ("- Lưu: VT, VP.", False, False),
    ("TM. ỦY BAN NHÂN DÂN", True, True),
    ("CHỦ TỊCH", True, True),
    ("Nguyễn Văn Hùng", True, True),
)

LINES: tuple[str, ...] = tuple(unicodedata.normalize("NFC", t) for t, _, _ in _LINES)

PAPER_PLAIN = (246, 245, 241)
PAPER_TINTED = (236, 226, 198)  # yellowed archive paper
INK = (35, 35, 40)
SEAL_RED = (205, 35, 45)
BALLPOINT_BLUE = (30, 50, 150)  # RGB, as tests/records draws a signature
A4_MM = (210.0, 297.0)
A5_LANDSCAPE_MM = (210.0, 148.0)  # half an A4: enough for ~12 lines, half the OCR time


@dataclass(frozen=True)
class PageSpec:
    """What to render and how to degrade it. Defaults: a clean A4 at 300 dpi, 12 pt."""

    dpi: int = 300
    n_lines: int | None = None  # None: every line of the decision
    font_pt: float = 12.0
    paper_mm: tuple[float, float] = A4_MM
    paper: str = "plain"  # "plain" | "tinted" | "gradient"
    skew_deg: float = 0.0  # counter-clockwise, as the sheet lay crooked on the glass
    turned_cw: int = 0  # 0/90/180/270: the sheet was fed turned this far clockwise
    blur_sigma: float = 0.0
    noise_sigma: float = 0.0
    speckles: int = 0  # dust specks per A4 page (scaled to the paper area)
    seal: bool = False  # a red round seal stamped over body text
    blank: bool = False  # no text at all (paper texture and noise stay)
    seed: int = 0


@dataclass(frozen=True)
class TestPage:
    __test__ = False  # a fixture type, not a pytest test class

    image: np.ndarray  # RGB uint8 (H, W, 3)
    text: str  # ground truth, NFC, one line per rendered line ("" for a blank page)
    spec: PageSpec


@functools.lru_cache(maxsize=32)
def _font(size_px: int, bold: bool) -> ImageFont.FreeTypeFont:
    path = FONT_BOLD if bold else FONT_REGULAR
    if not path.exists():
        path = FONT_FALLBACK
    return ImageFont.truetype(str(path), size_px)


def _wrap(text: str, font: ImageFont.FreeTypeFont, width_px: float) -> list[str]:
    words, lines, current = text.split(" "), [], ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if current and font.getlength(candidate) > width_px:
            lines.append(current)
            current = word
        else:
            current = candidate
    lines.append(current)
    return lines


def _paper(spec: PageSpec, height: int, width: int) -> np.ndarray:
    base = np.array(PAPER_TINTED if spec.paper == "tinted" else PAPER_PLAIN, np.float32)
    page = np.empty((height, width, 3), np.float32)
    page[:] = base
    if spec.paper == "gradient":
        # docs/research/perf.md B1: paper tone 238 at the top to 218 at the bottom, slightly warm.
        ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        page = page - ramp * np.array([22.0, 26.0, 34.0], np.float32)
    return page


def _render_ink(spec: PageSpec, height: int, width: int) -> tuple[np.ndarray, list[str]]:
    """Ink coverage in [0, 1] (float32, H×W) and the lines actually drawn."""
    mask = Image.new("L", (width, height), 0)
    if spec.blank:
        return np.zeros((height, width), np.float32), []
    draw = ImageDraw.Draw(mask)
    px_per_mm = spec.dpi / 25.4
    margin = round(20 * px_per_mm)  # 2 cm margins, as docs/research/perf.md B1
    size_px = round(spec.font_pt * spec.dpi / 72)
    pitch = round(size_px * 1.45)
    text_width = width - 2 * margin
    chosen = _LINES if spec.n_lines is None else _LINES[: spec.n_lines]
    drawn: list[str] = []
    y = margin
    for text, centred, bold in chosen:
        font = _font(size_px, bold)
        for line in _wrap(unicodedata.normalize("NFC", text), font, text_width):
            if y + pitch > height - margin:
                break
            w = font.getlength(line)
            x = margin + (text_width - w) / 2 if centred else margin
            draw.text((x, y), line, font=font, fill=255)
            drawn.append(line)
            y += pitch
    return np.asarray(mask, np.float32) / 255.0, drawn


def _seal(spec: PageSpec, height: int, width: int) -> np.ndarray:
    """Coverage of a red round seal (float32 H×W) over the right half of the body text."""
    layer = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(layer)
    px_per_mm = spec.dpi / 25.4
    r = 19 * px_per_mm  # commune seals are ~38 mm across
    cx, cy = width * 0.62, min(height * 0.45, 20 * px_per_mm + 9 * spec.font_pt * spec.dpi / 72)
    ring = max(2, round(0.9 * px_per_mm))
    for radius in (r, r * 0.72):
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), outline=255, width=ring)
    star = [
        (
            cx + (0.25 * r if k % 2 == 0 else 0.1 * r) * math.sin(k * math.pi / 5),
            cy - (0.25 * r if k % 2 == 0 else 0.1 * r) * math.cos(k * math.pi / 5),
        )
        for k in range(10)
    ]
    draw.polygon(star, fill=255)
    font = _font(round(0.12 * r), True)
    for i, ch in enumerate("ỦY BAN NHÂN DÂN XÃ TÂN PHÚ"):
        a = math.radians(-115 + i * 9.2)
        draw.text(
            (cx + 0.86 * r * math.sin(a), cy - 0.86 * r * math.cos(a)), ch, font=font, fill=255
        )
    coverage = np.asarray(layer, np.float32) / 255.0
    return coverage * 0.85  # stamp ink is never fully opaque


def render_page(spec: PageSpec | None = None) -> TestPage:
    """Render one page; deterministic for a given spec (the seed drives every random step)."""
    spec = spec or PageSpec()
    rng = np.random.default_rng(spec.seed)
    px_per_mm = spec.dpi / 25.4
    width, height = round(spec.paper_mm[0] * px_per_mm), round(spec.paper_mm[1] * px_per_mm)

    ink, drawn = _render_ink(spec, height, width)
    page = _paper(spec, height, width)
    # Ink and seal multiply the paper (subtractive), so text under the seal stays dark.
    # cv2 arithmetic rather than numpy broadcasting: a 300-dpi A4 is 26 M floats per step.
    ink3 = cv2.merge([ink, ink, ink])
    page = cv2.subtract(page, cv2.multiply(cv2.subtract(page, (*INK, 0.0)), ink3))
    if spec.seal:
        seal = _seal(spec, height, width)
        tint = [1 - seal + seal * (c / 255.0) for c in SEAL_RED]
        page = cv2.multiply(page, cv2.merge(tint))

    if spec.skew_deg:
        centre = (width / 2, height / 2)
        matrix = cv2.getRotationMatrix2D(centre, spec.skew_deg, 1.0)
        # The scanner lid shows as light grey where the crooked sheet leaves the glass bare.
        page = cv2.warpAffine(
            page, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=(200, 200, 200)
        )
    if spec.blur_sigma:
        page = cv2.GaussianBlur(page, (0, 0), spec.blur_sigma)
    if spec.speckles:
        n = round(spec.speckles * (width * height) / (A4_MM[0] * A4_MM[1] * px_per_mm**2))
        xs, ys = rng.integers(0, width, n), rng.integers(0, height, n)
        # Dust has a physical size: radius 1–2 px at 300 dpi, fewer pixels at lower dpi.
        radii = np.maximum(1, np.rint(rng.integers(1, 3, n) * spec.dpi / 300)).astype(int)
        greys = rng.integers(90, 190, n)
        for x, y, rad, grey in zip(xs, ys, radii, greys, strict=True):
            cv2.circle(page, (int(x), int(y)), int(rad), (float(grey),) * 3, -1)
    if spec.noise_sigma:
        noise = np.empty_like(page)
        cv2.setRNGSeed(spec.seed)
        cv2.randn(noise, 0.0, spec.noise_sigma)
        page = cv2.add(page, noise)
    image = cv2.convertScaleAbs(page)  # rounds and saturates to uint8
    # np.rot90 turns counter-clockwise; a sheet turned clockwise is k = -turns.
    if spec.turned_cw % 360:
        image = np.ascontiguousarray(np.rot90(image, k=-(spec.turned_cw // 90)))
    return TestPage(image=image, text="\n".join(drawn), spec=spec)


def signed_over_the_seal(page: TestPage) -> tuple[TestPage, np.ndarray]:
    """`page` (rendered with its seal) with a blue ballpoint stroke laid along the seal's
    outer ring, down its left side across the text lines, then on along the inner ring.

    Returns the page and where the stroke runs over the red ring (the stroke's coverage
    on the ring's own pixels). Inks multiply, as in tests/records: the crossing is dark.
    """
    spec = page.spec
    px_mm = spec.dpi / 25.4
    height, width = page.image.shape[:2]
    r = 19 * px_mm  # tests/corpus.py's seal
    cx = width * 0.62
    cy = min(height * 0.45, 20 * px_mm + 9 * spec.font_pt * spec.dpi / 72)
    ring = max(2, round(0.9 * px_mm))
    stroke = np.zeros((height, width), np.float32)
    centre = (round(cx), round(cy))
    for radius, (start, end) in ((r - ring / 2, (100, 260)), (0.72 * r - ring / 2, (280, 420))):
        axes = (round(radius), round(radius))
        cv2.ellipse(stroke, centre, axes, 0, start, end, 1.0, 4, cv2.LINE_AA)
    on_ring = np.zeros((height, width), np.uint8)
    for radius in (r, 0.72 * r):  # the rings as tests/corpus.py draws them (inward outline)
        axes = (round(radius - ring / 2), round(radius - ring / 2))
        cv2.ellipse(on_ring, centre, axes, 0, 0, 360, 1, max(1, ring - 4))
    tint = [1.0 - stroke + stroke * (c / 255.0) for c in BALLPOINT_BLUE]
    image = cv2.convertScaleAbs(cv2.multiply(page.image.astype(np.float32), cv2.merge(tint)))
    return TestPage(image=image, text=page.text, spec=spec), (stroke > 0.9) & (on_ring > 0)


def save_png(page: TestPage | np.ndarray, path: Path, dpi: int | None = None) -> Path:
    """Write a page as an RGB PNG with its dpi recorded (a test fixture, not production I/O)."""
    image = page.image if isinstance(page, TestPage) else page
    resolution = dpi or (page.spec.dpi if isinstance(page, TestPage) else 300)
    Image.fromarray(image).save(path, dpi=(resolution, resolution), compress_level=1)
    return path


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip()


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert, delete, substitute: cost 1), row DP in numpy."""
    if not a:
        return len(b)
    if not b:
        return len(a)
    codes_b = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    previous = np.arange(len(b) + 1, dtype=np.int64)
    for i, ch in enumerate(a, start=1):
        substitute = previous[:-1] + (codes_b != ord(ch))
        current = np.empty_like(previous)
        current[0] = i
        current[1:] = np.minimum(previous[1:] + 1, substitute)
        # Insertions run left to right: a running minimum of (cost - index) does it in one pass.
        offsets = np.arange(len(b) + 1)
        current = np.minimum.accumulate(current - offsets) + offsets
        previous = current
    return int(previous[-1])


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate: edits / len(reference), on NFC text with whitespace collapsed."""
    ref, hyp = _normalise(reference), _normalise(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return levenshtein(ref, hyp) / len(ref)
