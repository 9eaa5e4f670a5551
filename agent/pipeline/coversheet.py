"""Document separation with printed QR cover sheets.

A technician puts a cover sheet before each văn bản (or hồ sơ) in the feeder. The sheet
carries a QR code with the mã hồ sơ and the document number, plus the same in large print
for people. The pipeline detects the code on every page; a cover page is flagged
``separator`` (kept in the batch, never dropped) and the pages after it, up to the next
cover, belong to that document. The payload is plain text, versioned:

    SOHOA1|<mã hồ sơ>|<số thứ tự văn bản or empty>|<tiêu đề, optional>

This module owns generating the sheets (PDF) and reading them; it must not decide what the
archive does with the split (the server's metadata does).
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PREFIX = "SOHOA1"
# mã hồ sơ: OrganId (13) + year (4) + số và ký hiệu hồ sơ (≤ 20), docs/design.md §4. Dots, dashes
# and slashes appear in real codes ("000.00.00.H01.2024.HS-05"); nothing that breaks a line.
MA_HO_SO_RE = re.compile(r"^[0-9A-Za-z.\-/_]{1,40}$")
FONT = Path("/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf")
FONT_FALLBACK = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


class CoverSheetError(ValueError):
    pass


@dataclass(frozen=True)
class CoverSheet:
    ma_ho_so: str
    van_ban: int | None = None
    title: str = ""

    def payload(self) -> str:
        if not MA_HO_SO_RE.fullmatch(self.ma_ho_so):
            raise CoverSheetError(f"mã hồ sơ {self.ma_ho_so!r} has characters a code cannot hold")
        if self.van_ban is not None and not 1 <= self.van_ban <= 999:
            raise CoverSheetError("số thứ tự văn bản must be 1..999")
        title = self.title.replace("|", "/").replace("\n", " ")[:120]
        number = "" if self.van_ban is None else str(self.van_ban)
        return f"{PREFIX}|{self.ma_ho_so}|{number}|{title}"

    @classmethod
    def parse(cls, text: str) -> CoverSheet | None:
        parts = text.split("|")
        if len(parts) != 4 or parts[0] != PREFIX or not MA_HO_SO_RE.fullmatch(parts[1]):
            return None
        number = int(parts[2]) if parts[2].isdigit() else None
        return cls(parts[1], number, parts[3])


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in (FONT, FONT_FALLBACK):
        if path.exists():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default()


def render(sheet: CoverSheet, dpi: int = 150) -> Image.Image:
    """One A4 cover sheet as an image: a large QR code and the same data in print."""
    import qrcode

    width, height = int(210 / 25.4 * dpi), int(297 / 25.4 * dpi)
    page = Image.new("L", (width, height), 255)
    code = qrcode.make(sheet.payload(), box_size=max(4, dpi // 15), border=4).convert("L")
    page.paste(code, ((width - code.width) // 2, int(height * 0.12)))
    draw = ImageDraw.Draw(page)
    lines = ["TỜ BÌA PHÂN TÁCH — không lưu trữ", f"Mã hồ sơ: {sheet.ma_ho_so}"]
    if sheet.van_ban is not None:
        lines.append(f"Văn bản số thứ tự: {sheet.van_ban}")
    if sheet.title:
        lines.append(sheet.title)
    y = int(height * 0.12) + code.height + dpi // 3
    for i, line in enumerate(lines):
        font = _font(dpi // (5 if i else 6))
        w = draw.textlength(line, font=font)
        draw.text(((width - w) / 2, y), line, fill=0, font=font)
        y += int(dpi / 2.5)
    return page


def write_pdf(sheets: list[CoverSheet], path: Path, dpi: int = 150) -> Path:
    if not sheets:
        raise CoverSheetError("no cover sheet to print")
    pages = [render(s, dpi).convert("RGB") for s in sheets]
    buf = io.BytesIO()
    pages[0].save(buf, "PDF", resolution=dpi, save_all=True, append_images=pages[1:])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


def detect(image: np.ndarray) -> CoverSheet | None:
    """Read a cover sheet's QR code from a page (grey or BGR array), or None.

    Works on a ~1000-px-wide copy: a cover sheet's code is large, and detection there costs
    tens of milliseconds instead of hundreds at 300 dpi."""
    text = qr_text(image, 1000)
    return CoverSheet.parse(text) if text else None


def qr_text(image: np.ndarray, width: int = 1000) -> str | None:
    """The text of the page's QR code (cover sheets; the enrolment sheet of
    ``sohoa-agent enrol --scan``, whose code is denser: read at 1600 px), or None."""
    import cv2

    scale = min(1.0, width / max(image.shape[1], 1))
    if scale < 1.0:  # shrink first: converting a colour page at full size costs more
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    # OpenCV's classic detector misses some codes outright: 8 of 150 enrolment sheets,
    # printed by the server and rasterised at 200 dpi, read as no code at all (a technician's
    # `enrol --scan` then fails; a fresh-clone test run met one). Its ArUco-based detector read all
    # of 200 such sheets, at every width tried, and costs ~10 ms on a page with no code: it
    # is asked when the classic one finds nothing.
    for detector in _qr_detectors():
        try:
            text, _, _ = detector().detectAndDecode(grey)
        except cv2.error:
            continue
        if text:
            return str(text)
    return None


@functools.cache
def _qr_detectors() -> tuple[Callable[[], Any], ...]:
    import cv2

    aruco = getattr(cv2, "QRCodeDetectorAruco", None)  # OpenCV ≥ 4.8
    return (cv2.QRCodeDetector,) if aruco is None else (cv2.QRCodeDetector, aruco)


def split_documents(
    pages: list[tuple[int, CoverSheet | None]],
) -> list[tuple[CoverSheet | None, list[int]]]:
    """Group page numbers into documents at each cover sheet. Pages before the first cover
    form a document without metadata; the cover pages themselves belong to no document."""
    docs: list[tuple[CoverSheet | None, list[int]]] = []
    current: tuple[CoverSheet | None, list[int]] = (None, [])
    for page_no, cover in pages:
        if cover is not None:
            if current[0] is not None or current[1]:
                docs.append(current)
            current = (cover, [])
        else:
            current[1].append(page_no)
    if current[0] is not None or current[1]:
        docs.append(current)
    return docs
