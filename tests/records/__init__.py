"""A corpus that looks like commune archives: named classes of page, with their ground truth.

Tests and benchmarks use it to report OCR per class (`python -m bench cer`). A class names a
kind of page a commune office really keeps — a faded typewriter copy, a carbon, a dot-matrix
register, a copy of a copy, a bound register on a flatbed, a page with red and blue stamps —
and fixes its fonts (Liberation Serif/Sans/Mono: the Times/Arial/Courier metrics of NĐ
30/2020 offices and their typewriters; DejaVu), its type sizes (10–14 pt, bold headings), its
record kinds (`texts.KINDS`: quyết định, công văn, biên bản, sổ đăng ký, danh mục) and its
defects (`defects`). `render(name, seed)` draws one page; the same name and seed always give
the same pixels and text.

It must not import `agent` (the thing under test) nor write files: callers decide where a
page goes (`save`). The older single-font generator, `tests/corpus.py`, stays for the tests
written against it; its `cer` is the one measure both share.

Bad input (`bad_page`): an all-noise page, a photograph, a page of handwriting — no ground
truth to read, only to survive.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from . import defects as d
from .layout import INSTALL_HINT, FontMissing, Style, typeset
from .texts import KINDS, record

__all__ = [
    "CLASSES",
    "INSTALL_HINT",
    "KINDS",
    "ClassPage",
    "FontMissing",
    "PageClass",
    "bad_page",
    "render",
    "save",
]

A4_MM = (210.0, 297.0)


@dataclass(frozen=True)
class PageClass:
    name: str
    description: str  # what the class stands for, as a report prints it
    families: tuple[str, ...]  # chosen by seed
    sizes_pt: tuple[float, ...]  # chosen by seed
    kinds: tuple[str, ...]  # record kinds, chosen by seed
    dpi: int = 300
    grey: bool = False  # the capture is grey (copier scan-to-folder), else RGB
    margin_mm: float = 20.0


@dataclass(frozen=True)
class ClassPage:
    image: np.ndarray  # uint8, RGB (H, W, 3) or grey (H, W)
    text: str  # ground truth, NFC, one line per rendered line
    page_class: PageClass
    seed: int
    kind: str
    family: str
    size_pt: float

    @property
    def dpi(self) -> int:
        return self.page_class.dpi

    @property
    def name(self) -> str:
        return f"{self.page_class.name}-{self.seed}"


_SCAN = {"skew_deg": 0.0, "blur": 0.6, "noise": 2.5}
_BODY = ("quyet_dinh", "cong_van", "bien_ban")
_TABLES = ("so_dang_ky", "danh_muc")

CLASSES: dict[str, PageClass] = {
    c.name: c
    for c in (
        PageClass(
            "serif_clean",
            "Liberation Serif 12-14 pt, a good office print, light scan",
            ("serif",),
            (12.0, 13.0, 14.0),
            _BODY,
        ),
        PageClass(
            "sans_small",
            "Liberation Sans (Arial metrics) 10-11 pt",
            ("sans",),
            (10.0, 10.5, 11.0),
            _BODY,
        ),
        PageClass(
            "dejavu",
            "DejaVu Sans and Serif 10-12 pt",
            ("dejavu", "dejavu_serif"),
            (10.0, 11.0, 12.0),
            _BODY,
        ),
        PageClass(
            "typewriter_faded",
            "Liberation Mono, uneven faded ribbon, 200 dpi grey",
            ("mono",),
            (11.0, 12.0),
            _BODY,
            dpi=200,
            grey=True,
        ),
        PageClass(
            "carbon_copy",
            "carbon copy of a typewritten page on thin paper",
            ("mono",),
            (11.0, 12.0),
            _BODY,
        ),
        PageClass(
            "dot_matrix",
            "9-pin dot-matrix print, tables and letters",
            ("mono",),
            (11.0, 12.0),
            (*_TABLES, "cong_van"),
        ),
        PageClass(
            "photocopy_2gen",
            "copy of a copy: thick strokes, streaks, black borders, specks",
            ("serif", "sans"),
            (12.0, 13.0),
            _BODY,
        ),
        PageClass(
            "bleed_through",
            "thin paper: the back's text shows through, mirrored",
            ("serif",),
            (12.0, 13.0),
            _BODY,
        ),
        PageClass(
            "yellowed",
            "yellowed paper, tide marks, foxing, browned ink",
            ("serif", "dejavu_serif"),
            (12.0, 13.0),
            _BODY,
        ),
        PageClass(
            "ruled_table",
            "ruled tables: danh mục and sổ đăng ký",
            ("serif", "sans"),
            (11.0, 12.0),
            _TABLES,
        ),
        PageClass(
            "bound_register",
            "bound register on a flatbed: spine shadow, curved lines",
            ("serif",),
            (12.0,),
            ("so_dang_ky", "bien_ban"),
        ),
        PageClass(
            "stamps_colour",
            "red seal, blue or violet box stamp, blue signature over text",
            ("serif",),
            (12.0, 13.0),
            _BODY,
        ),
        PageClass(
            "margin_notes",
            "handwritten notes in the margins",
            ("serif", "sans"),
            (12.0,),
            _BODY,
            margin_mm=38.0,
        ),
        PageClass("pencil_grey", "faint pencil-grey text", ("sans", "serif"), (11.0, 12.0), _BODY),
        PageClass(
            "copier_jpeg_200",
            "200 dpi grey JPEG from a scan-to-folder copier",
            ("serif", "sans"),
            (11.0, 12.0, 13.0),
            (*_BODY, "danh_muc"),
            dpi=200,
            grey=True,
        ),
    )
}


def _rng(name: str, seed: int) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(f"{name}:{seed}".encode()))


def _pick(rng: np.random.Generator, options: tuple[str, ...] | tuple[float, ...]):  # type: ignore[no-untyped-def]
    return options[int(rng.integers(0, len(options)))]


@dataclass(frozen=True)
class _Context:
    dpi: int
    boxes: tuple[tuple[int, int, int, int], ...]
    style: Style
    kind: str
    seed: int


def render(name: str, seed: int) -> ClassPage:
    """One page of class `name` (a key of CLASSES); deterministic in (name, seed)."""
    cls = CLASSES[name]
    rng = _rng(name, seed)
    family = str(_pick(rng, cls.families))
    size = float(_pick(rng, cls.sizes_pt))
    kind = str(_pick(rng, cls.kinds))
    dpi = cls.dpi
    typewriter = name in ("typewriter_faded", "carbon_copy")
    style = Style(
        family,
        size,
        dpi,
        margin_mm=cls.margin_mm,
        jitter=1.2 if typewriter else 0.0,
        strike_spread=0.35 if typewriter else 0.0,
    )
    px_mm = dpi / 25.4
    width, height = round(A4_MM[0] * px_mm), round(A4_MM[1] * px_mm)
    ts = typeset(record(kind, seed), style, width, height, seed)
    cov = np.maximum(ts.text, ts.rules)
    ctx = _Context(dpi, ts.boxes, style, kind, seed)
    page = _FINISH[name](cov, rng, ctx)
    skew = float(rng.uniform(-0.8, 0.8))
    scan = _SCAN | {"skew_deg": skew}
    page = d.scanner(page, rng, dpi, **scan)
    image = cv2.convertScaleAbs(page)
    if cls.grey:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if name == "copier_jpeg_200":
        image = d.jpeg(image, 55)
    return ClassPage(image, "\n".join(ts.lines), cls, seed, kind, family, size)


# ----------------------------------------------------------------------------- per class


def _plain(cov: np.ndarray, rng: np.random.Generator, ctx: _Context) -> np.ndarray:
    return d.ink(d.paper(cov.shape, d.PAPER_WHITE), cov, d.INK_BLACK)


def _typewriter(cov: np.ndarray, rng: np.random.Generator, ctx: _Context) -> np.ndarray:
    worn = d.ribbon(cov, rng, ctx.dpi, fade=0.45)
    page = d.ink(d.paper(cov.shape, (240, 236, 224)), worn, d.INK_TYPEWRITER)
    return d.yellowing(page, rng, ctx.dpi) if rng.random() < 0.5 else page


def _carbon(cov: np.ndarray, rng: np.random.Generator, ctx: _Context) -> np.ndarray:
    page = d.ink(d.paper(cov.shape, d.PAPER_THIN), d.carbon(cov, rng, ctx.dpi), d.INK_CARBON)
    return page


def _dot_matrix(cov: np.ndarray, rng: np.random.Generator, ctx: _Context) -> np.ndarray:
    return d.ink(d.paper(cov.shape, d.PAPER_WHITE), d.dot_matrix(cov, rng, ctx.dpi), d.INK_BLACK)


def _photocopy(cov: np.ndarray, rng: np.random.Generator, ctx: _Context) -> np.ndarray:
    thick = d.copy_generations(cov, rng, ctx.dpi)
    page = d.ink(d.paper(cov.shape, d.PAPER_COPY), thick, (15, 15, 15))
    page = d.toner_streaks(page, rng, ctx.dpi)
    page = d.black_borders(page, rng, ctx.dpi)
    return d.speckle(page, rng, ctx.dpi, 3000)


def _bleed(cov: np.ndarray, rng: np.random.Generator, ctx: _Context) -> np.ndarray:
    back_kind = "cong_van" if ctx.kind != "cong_van" else "quyet_dinh"
    h, w = cov.shape
    back = typeset(record(back_kind, ctx.seed + 7919), ctx.style, w, h, ctx.seed + 1).text
    page = d.ink(d.paper(cov.shape, (242, 240, 234)), cov, d.INK_BLACK)
    return d.bleed_through(page, back, rng, ctx.dpi)


def _yellowed(cov: np.ndarray, rng: np.random.Generator, ctx: _Context) -> np.ndarray:
    page = d.ink(d.paper(cov.shape, d.PAPER_YELLOWED), cov * 0.85, d.INK_FADED_BROWN)
    return d.yellowing(page, rng, ctx.dpi)


def _bound(cov: np.ndarray, rng: np.random.Generator, ctx: _Context) -> np.ndarray:
    page = d.ink(d.paper(cov.shape, (240, 236, 222)), cov, d.INK_BLACK)
    return d.spine(page, rng, ctx.dpi)


def _body_point(ctx: _Context, rng: np.random.Generator, share: float) -> tuple[float, float]:
    """A point on a body line about `share` of the way down the rendered lines."""
    x, y, w, h = ctx.boxes[min(len(ctx.boxes) - 1, int(share * len(ctx.boxes)))]
    return x + float(rng.uniform(0.2, 0.6)) * max(w, 1), float(y + h / 2)


def _stamps(cov: np.ndarray, rng: np.random.Generator, ctx: _Context) -> np.ndarray:
    page = d.ink(d.paper(cov.shape, d.PAPER_WHITE), cov, d.INK_BLACK)
    box_colour = d.BLUE if rng.random() < 0.5 else d.VIOLET
    page = d.box_stamp(page, rng, ctx.dpi, _body_point(ctx, rng, 0.35), box_colour)
    sx, sy = _body_point(ctx, rng, 0.93)
    page = d.signature(
        page, rng, ctx.dpi, (sx - d._px(ctx.dpi, 150), sy - d._px(ctx.dpi, 60)), d.BALLPOINT_BLUE
    )
    return d.seal(page, rng, ctx.dpi, _body_point(ctx, rng, 0.8), d.RED)


def _notes(cov: np.ndarray, rng: np.random.Generator, ctx: _Context) -> np.ndarray:
    page = d.ink(d.paper(cov.shape, d.PAPER_WHITE), cov, d.INK_BLACK)
    mm = ctx.dpi / 25.4
    h = cov.shape[0]
    colour = d.BALLPOINT_BLUE if rng.random() < 0.6 else (25, 25, 30)
    box = (3 * mm, float(rng.uniform(0.2, 0.5)) * h, ctx.style.margin_mm * mm - 8 * mm, 70 * mm)
    page = d.handwriting(page, rng, ctx.dpi, box, colour, lines=6)
    last = ctx.boxes[-1]
    if last[1] + last[3] + 30 * mm < h - 10 * mm:  # room under the text: a note there too
        below = (ctx.style.margin_mm * mm, last[1] + last[3] + 12 * mm, 100 * mm, 18 * mm)
        page = d.handwriting(page, rng, ctx.dpi, below, colour, lines=2)
    return page


def _pencil(cov: np.ndarray, rng: np.random.Generator, ctx: _Context) -> np.ndarray:
    return d.ink(d.paper(cov.shape, d.PAPER_WHITE), d.pencil(cov, rng, ctx.dpi), d.INK_PENCIL)


def _copier(cov: np.ndarray, rng: np.random.Generator, ctx: _Context) -> np.ndarray:
    page = d.ink(d.paper(cov.shape, (236, 236, 236)), cov, (25, 25, 25))
    return d.speckle(page, rng, ctx.dpi, 400)


_FINISH: dict[str, Callable[[np.ndarray, np.random.Generator, _Context], np.ndarray]] = {
    "serif_clean": _plain,
    "sans_small": _plain,
    "dejavu": _plain,
    "typewriter_faded": _typewriter,
    "carbon_copy": _carbon,
    "dot_matrix": _dot_matrix,
    "photocopy_2gen": _photocopy,
    "bleed_through": _bleed,
    "yellowed": _yellowed,
    "ruled_table": _plain,
    "bound_register": _bound,
    "stamps_colour": _stamps,
    "margin_notes": _notes,
    "pencil_grey": _pencil,
    "copier_jpeg_200": _copier,
}
assert set(_FINISH) == set(CLASSES)


# ----------------------------------------------------------------------------- bad input

BAD_KINDS = ("noise", "photo", "handwriting")


def bad_page(kind: str, seed: int = 0, dpi: int = 300) -> np.ndarray:
    """An RGB A4 page with nothing typeset on it: all noise, a photograph, or handwriting."""
    rng = _rng(f"bad-{kind}", seed)
    px_mm = dpi / 25.4
    h, w = round(A4_MM[1] * px_mm), round(A4_MM[0] * px_mm)
    if kind == "noise":
        page = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        return np.asarray(cv2.GaussianBlur(page, (0, 0), 0.8), np.uint8)
    if kind == "photo":
        # A photograph: smooth colour regions, soft shapes, grain.
        page = d._smooth_field(rng, (h, w), 300.0, 40, 220)
        rgb = np.stack([page, np.roll(page, 200, axis=0), np.roll(page, 400, axis=1)], axis=2)
        for _ in range(12):
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(60, 600)), int(rng.integers(60, 600)))
            colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
            cv2.ellipse(rgb, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        rgb = cv2.GaussianBlur(rgb, (0, 0), 6)
        rgb = rgb + rng.standard_normal(rgb.shape, dtype=np.float32) * 6
        return cv2.convertScaleAbs(rgb)
    if kind == "handwriting":
        page = d.paper((h, w), d.PAPER_WHITE)
        page = d.handwriting(
            page,
            rng,
            dpi,
            (25 * px_mm, 25 * px_mm, w - 50 * px_mm, h - 50 * px_mm),
            d.BALLPOINT_BLUE,
            lines=28,
        )
        return cv2.convertScaleAbs(d.scanner(page, rng, dpi, 0.3, 0.6, 2.5))
    raise ValueError(f"unknown bad page kind {kind!r}; known: {', '.join(BAD_KINDS)}")


def save(page: ClassPage | np.ndarray, path: Path, dpi: int = 300) -> Path:
    """Write a page as PNG (RGB or grey) with its dpi (a test fixture, not production I/O)."""
    image = page.image if isinstance(page, ClassPage) else page
    resolution = page.dpi if isinstance(page, ClassPage) else dpi
    Image.fromarray(image).save(path, dpi=(resolution, resolution), compress_level=1)
    return path
