"""Typesetting a record's blocks into an ink-coverage image, and the text that was set.

Coverage is float32 in [0, 1] per pixel (1 = full ink), at the page's dpi. Ruled table
lines go into a separate coverage so a defect can treat type and rules differently, and
so the ground truth holds only what was typeset: one line per rendered line, a table row
as its non-empty cells joined by spaces, in reading order.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .texts import Block

_LIB = Path("/usr/share/fonts/truetype/liberation2")
_DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
# Debian fonts-liberation2 (metric-compatible with Times New Roman, Arial, Courier New: the
# faces NĐ 30/2020 offices and their typewriter-era predecessors used) and fonts-dejavu-core.
FONTS: dict[str, tuple[Path, Path]] = {
    "serif": (_LIB / "LiberationSerif-Regular.ttf", _LIB / "LiberationSerif-Bold.ttf"),
    "sans": (_LIB / "LiberationSans-Regular.ttf", _LIB / "LiberationSans-Bold.ttf"),
    "mono": (_LIB / "LiberationMono-Regular.ttf", _LIB / "LiberationMono-Bold.ttf"),
    "dejavu": (_DEJAVU / "DejaVuSans.ttf", _DEJAVU / "DejaVuSans-Bold.ttf"),
    "dejavu_serif": (_DEJAVU / "DejaVuSerif.ttf", _DEJAVU / "DejaVuSerif-Bold.ttf"),
}
INSTALL_HINT = "apt install fonts-liberation2 fonts-dejavu-core"


class FontMissing(RuntimeError):
    """A corpus font is not installed (the test must fail under CI, not skip)."""


@functools.lru_cache(maxsize=64)
def font(family: str, size_px: int, bold: bool) -> ImageFont.FreeTypeFont:
    path = FONTS[family][1 if bold else 0]
    if not path.exists():
        raise FontMissing(f"{path} missing ({INSTALL_HINT})")
    return ImageFont.truetype(str(path), size_px)


@dataclass(frozen=True)
class Typeset:
    text: np.ndarray  # float32 H×W coverage of type
    rules: np.ndarray  # float32 H×W coverage of ruled lines (tables)
    lines: tuple[str, ...]  # ground truth, one per rendered line
    boxes: tuple[tuple[int, int, int, int], ...]  # x, y, w, h of each rendered line


@dataclass(frozen=True)
class Style:
    family: str
    size_pt: float
    dpi: int
    margin_mm: float = 20.0
    jitter: float = 0.0  # typewriter: per-character vertical jitter (px at 300 dpi)
    strike_spread: float = 0.0  # typewriter: per-character strength varies this much (0..1)


def _wrap(text: str, face: ImageFont.FreeTypeFont, width_px: float) -> list[str]:
    lines, current = [], ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if current and face.getlength(candidate) > width_px:
            lines.append(current)
            current = word
        else:
            current = candidate
    lines.append(current)
    return lines


class _Setter:
    def __init__(self, style: Style, width: int, height: int, rng: random.Random) -> None:
        self.style, self.rng = style, rng
        self.canvas = Image.new("L", (width, height), 0)
        self.rules = Image.new("L", (width, height), 0)
        self.draw = ImageDraw.Draw(self.canvas)
        self.rule_draw = ImageDraw.Draw(self.rules)
        px_mm = style.dpi / 25.4
        self.left = round(style.margin_mm * px_mm)
        self.right = width - round(style.margin_mm * 0.75 * px_mm)
        self.bottom = height - round(style.margin_mm * px_mm)
        self.y = round(style.margin_mm * px_mm)
        self.size_px = round(style.size_pt * style.dpi / 72)
        self.lines: list[str] = []
        self.boxes: list[tuple[int, int, int, int]] = []
        self.full = False

    @property
    def width(self) -> int:
        return self.right - self.left

    def put(self, text: str, x: float, y: float, face: ImageFont.FreeTypeFont) -> None:
        if not (self.style.jitter or self.style.strike_spread):
            self.draw.text((x, y), text, font=face, fill=255)
            return
        # A typewriter strikes each character on its own: height and strength vary.
        scale = self.style.dpi / 300
        for ch in text:
            dy = self.rng.uniform(-self.style.jitter, self.style.jitter) * scale
            strength = 1.0 - self.rng.uniform(0, self.style.strike_spread)
            if ch != " ":
                self.draw.text((x, y + dy), ch, font=face, fill=round(255 * strength))
            x += face.getlength(ch)

    def line(self, text: str, face: ImageFont.FreeTypeFont, align: str, pitch: int) -> None:
        if self.full or self.y + pitch > self.bottom:
            self.full = True
            return
        w = face.getlength(text)
        x = {
            "left": self.left,
            "centre": self.left + (self.width - w) / 2,
            "right": self.right - w,
        }[align]
        self.put(text, x, self.y, face)
        self.lines.append(text)
        self.boxes.append((round(x), self.y, round(w), pitch))
        self.y += pitch

    def table(self, rows: tuple[tuple[str, ...], ...], pitch: int) -> None:
        size = self.size_px
        while True:
            face, head = font(self.style.family, size, False), font(self.style.family, size, True)
            pad = round(size * 0.4)
            widths = [
                max((head if r == 0 else face).getlength(row[c]) for r, row in enumerate(rows))
                + 2 * pad
                for c in range(len(rows[0]))
            ]
            if sum(widths) <= self.width or size <= 8:
                break
            size -= 1
        spare = max(0.0, self.width - sum(widths))
        widths = [w + spare * w / sum(widths) for w in widths]
        row_h = round(size * 1.7)
        rule = max(1, round(2 * self.style.dpi / 300))
        xs = [self.left + round(sum(widths[:c])) for c in range(len(widths) + 1)]
        top = self.y
        for r, row in enumerate(rows):
            if self.y + row_h > self.bottom:
                self.full = True
                break
            f = head if r == 0 else face
            cells = []
            for c, cell in enumerate(row):
                if cell:
                    self.put(cell, xs[c] + pad, self.y + round((row_h - size * 1.15) / 2), f)
                    cells.append(cell)
            self.lines.append(" ".join(cells))
            self.boxes.append((xs[0], self.y, xs[-1] - xs[0], row_h))
            self.rule_draw.line((xs[0], self.y, xs[-1], self.y), fill=255, width=rule)
            self.y += row_h
        self.rule_draw.line((xs[0], self.y, xs[-1], self.y), fill=255, width=rule)
        for x in xs:
            self.rule_draw.line((x, top, x, self.y), fill=255, width=rule)
        self.y += pitch // 2


def typeset(blocks: list[Block], style: Style, width: int, height: int, seed: int) -> Typeset:
    """Set `blocks` on a page of width × height px; what does not fit is left out."""
    setter = _Setter(style, width, height, random.Random(seed))
    size = setter.size_px
    pitch = round(size * 1.45)
    regular, bold = font(style.family, size, False), font(style.family, size, True)
    title = font(style.family, round(size * 1.15), True)
    for block in blocks:
        if block.style == "table":
            setter.table(block.rows, pitch)
            continue
        face = {"heading": bold, "title": title}.get(block.style, regular)
        align = {"heading": "centre", "title": "centre", "right": "right"}.get(block.style, "left")
        block_pitch = round(pitch * 1.15) if block.style == "title" else pitch
        for text in _wrap(block.text, face, setter.width):
            setter.line(text, face, align, block_pitch)
    coverage = np.asarray(setter.canvas, np.float32) / 255.0
    rules = np.asarray(setter.rules, np.float32) / 255.0
    return Typeset(coverage, rules, tuple(setter.lines), tuple(setter.boxes))
