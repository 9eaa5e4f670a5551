"""What years, machines and copiers do to a commune record, as pixel operations.

Two kinds of step: on the ink coverage before it meets the paper (ribbon, carbon, dot
matrix, copy generations: they change the strokes), and on the RGB page after (stains,
bleed-through, stamps, notes, binding, the scanner). Every step takes a
`numpy.random.Generator` so a page is the same for the same seed. Float32 throughout;
coverage in [0, 1], pages in 0..255 (RGB).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image, ImageDraw

from .layout import font

Rng = np.random.Generator

INK_BLACK = (30, 30, 35)
INK_TYPEWRITER = (40, 38, 45)
INK_CARBON = (70, 60, 140)  # carbon paper copies come out blue-violet
INK_PENCIL = (150, 150, 155)
INK_FADED_BROWN = (85, 70, 60)
RED = (200, 35, 45)
BLUE = (35, 60, 165)
VIOLET = (105, 45, 150)
BALLPOINT_BLUE = (30, 50, 150)
PAPER_WHITE = (247, 246, 242)
PAPER_THIN = (232, 232, 226)  # onion-skin paper of carbon copies
PAPER_YELLOWED = (232, 218, 180)
PAPER_COPY = (240, 240, 240)


def _px(dpi: int, at_300: float) -> float:
    return at_300 * dpi / 300


def _smooth_field(rng: Rng, shape: tuple[int, int], cell_px: float, low: float, high: float):  # type: ignore[no-untyped-def]
    """A smooth random field in [low, high]: uniform noise on a coarse grid, scaled up."""
    h, w = shape
    gh, gw = max(2, math.ceil(h / cell_px)), max(2, math.ceil(w / cell_px))
    grid = rng.uniform(low, high, (gh, gw)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC).clip(low, high)


# ----------------------------------------------------------------------------- on the ink


def ribbon(cov: np.ndarray, rng: Rng, dpi: int, fade: float) -> np.ndarray:
    """A worn typewriter ribbon: uneven along the line, fabric texture, weaker overall."""
    strength = _smooth_field(rng, cov.shape, _px(dpi, 180), 1.0 - fade, 1.0)
    fabric = (rng.random(cov.shape, dtype=np.float32) > 0.22).astype(np.float32)
    fabric = cv2.GaussianBlur(fabric, (0, 0), _px(dpi, 0.8))
    out = cov * strength * (0.55 + 0.45 * fabric)
    return cv2.GaussianBlur(out, (0, 0), _px(dpi, 0.6))


def carbon(cov: np.ndarray, rng: Rng, dpi: int) -> np.ndarray:
    """A carbon copy: the key's blow through paper and carbon spreads and softens each glyph."""
    soft = cv2.GaussianBlur(cov, (0, 0), _px(dpi, 1.3))
    spread = cv2.dilate(soft, np.ones((2, 2), np.uint8))
    strength = _smooth_field(rng, cov.shape, _px(dpi, 300), 0.55, 0.85)
    return np.clip(spread * 1.25, 0, 1) * strength


def dot_matrix(cov: np.ndarray, rng: Rng, dpi: int) -> np.ndarray:
    """A 9-pin printer: glyphs sampled on a 72-dpi grid and struck as round dots."""
    pitch = max(2, round(dpi / 72))
    small = cv2.resize(cov, None, fx=1 / pitch, fy=1 / pitch, interpolation=cv2.INTER_AREA)
    pins = (small > 0.35).astype(np.float32)
    canvas = np.zeros(cov.shape, np.float32)
    canvas[pitch // 2 :: pitch, pitch // 2 :: pitch][: pins.shape[0], : pins.shape[1]] = pins[
        : canvas[pitch // 2 :: pitch].shape[0], : canvas[:, pitch // 2 :: pitch].shape[1]
    ]
    radius = max(1, round(pitch * 0.55))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    dots = cv2.dilate(canvas, disk)
    dots = cv2.GaussianBlur(dots, (0, 0), _px(dpi, 0.7))
    return dots * _smooth_field(rng, cov.shape, _px(dpi, 400), 0.7, 1.0)


def copy_generations(cov: np.ndarray, rng: Rng, dpi: int, generations: int = 2) -> np.ndarray:
    """Each photocopy thickens strokes and hardens edges (toner spreads, grey goes black)."""
    out = cov
    for _ in range(generations):
        out = cv2.GaussianBlur(out, (0, 0), _px(dpi, 1.0))
        out = np.clip((out - 0.22) * 2.6, 0, 1)
    return out


def pencil(cov: np.ndarray, rng: Rng, dpi: int) -> np.ndarray:
    """Graphite: grainy, uneven pressure."""
    grain = cv2.GaussianBlur(rng.random(cov.shape, dtype=np.float32), (0, 0), _px(dpi, 0.7))
    pressure = _smooth_field(rng, cov.shape, _px(dpi, 250), 0.75, 1.0)
    return cov * pressure * (0.65 + 0.7 * grain).clip(0, 1)


# ----------------------------------------------------------------------------- on the page


def paper(shape: tuple[int, int], colour: tuple[int, int, int]) -> np.ndarray:
    page = np.empty((*shape, 3), np.float32)
    page[:] = np.array(colour, np.float32)
    return page


def ink(page: np.ndarray, cov: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Lay ink of `colour` with coverage `cov` on the page (subtractive: ink over ink darkens)."""
    tint = [1 - cov + cov * (c / 255.0) for c in colour]
    return cv2.multiply(page, cv2.merge(tint))


def yellowing(page: np.ndarray, rng: Rng, dpi: int) -> np.ndarray:
    """Uneven yellowing, tide-mark stains and foxing spots."""
    h, w = page.shape[:2]
    tone = _smooth_field(rng, (h, w), _px(dpi, 600), 0.9, 1.0)
    out = page * cv2.merge([tone, tone, tone])
    stains = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(2, 5)):
        cx, cy = rng.integers(0, w), rng.integers(0, h)
        r = rng.integers(round(_px(dpi, 120)), round(_px(dpi, 450)))
        cv2.circle(stains, (int(cx), int(cy)), int(r), 1.0, round(_px(dpi, 25)))
        cv2.circle(stains, (int(cx), int(cy)), int(r), 0.4, -1)
    stains = cv2.GaussianBlur(stains, (0, 0), _px(dpi, 30)) * 0.22
    for _ in range(rng.integers(20, 60)):  # foxing: small brown spots
        cx, cy = rng.integers(0, w), rng.integers(0, h)
        cv2.circle(stains, (int(cx), int(cy)), int(rng.integers(2, 9)), 0.25, -1)
    return ink(out, stains, (150, 110, 60))


def bleed_through(page: np.ndarray, back: np.ndarray, rng: Rng, dpi: int) -> np.ndarray:
    """The other side's writing seen through thin paper: mirrored, blurred, faint."""
    mirrored = np.ascontiguousarray(back[:, ::-1])
    shift = int(rng.integers(-round(_px(dpi, 30)), round(_px(dpi, 30))))
    mirrored = np.roll(mirrored, shift, axis=0)
    faint = cv2.GaussianBlur(mirrored, (0, 0), _px(dpi, 1.8)) * float(rng.uniform(0.22, 0.32))
    return ink(page, faint, (90, 85, 80))


def seal(page: np.ndarray, rng: Rng, dpi: int, centre: tuple[float, float], colour) -> np.ndarray:  # type: ignore[no-untyped-def]
    """A round commune seal (~38 mm) with its ring text and star."""
    h, w = page.shape[:2]
    layer = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(layer)
    px_mm = dpi / 25.4
    r = 19 * px_mm
    cx, cy = centre
    ring = max(2, round(0.9 * px_mm))
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
    face = font("sans", round(0.12 * r), True)
    for i, ch in enumerate("ỦY BAN NHÂN DÂN XÃ"):
        a = math.radians(-80 + i * 9.5)
        draw.text(
            (cx + 0.86 * r * math.sin(a), cy - 0.86 * r * math.cos(a)), ch, font=face, fill=255
        )
    cov = np.asarray(layer, np.float32) / 255.0
    cov *= _smooth_field(rng, (h, w), _px(dpi, 60), 0.55, 0.9)  # stamp pad ink is uneven
    return ink(page, cov, colour)


def box_stamp(page: np.ndarray, rng: Rng, dpi: int, at: tuple[float, float], colour) -> np.ndarray:  # type: ignore[no-untyped-def]
    """A rectangular office stamp ("SAO Y BẢN CHÍNH", "ĐÃ KÝ") slapped over the text."""
    h, w = page.shape[:2]
    layer = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(layer)
    text = str(rng.choice(["SAO Y BẢN CHÍNH", "ĐÃ ĐỐI CHIẾU", "VĂN BẢN ĐẾN"]))
    face = font("sans", round(_px(dpi, 58)), True)
    tw = face.getlength(text)
    x, y = at
    pad = _px(dpi, 22)
    draw.rectangle(
        (x - pad, y - pad, x + tw + pad, y + _px(dpi, 70) + pad),
        outline=255,
        width=round(_px(dpi, 7)),
    )
    draw.text((x, y), text, font=face, fill=255)
    cov = np.asarray(layer.rotate(float(rng.uniform(-8, 8)), center=(x, y)), np.float32) / 255.0
    cov *= _smooth_field(rng, (h, w), _px(dpi, 50), 0.5, 0.9)
    return ink(page, cov, colour)


def _scrawl(rng: Rng, start: tuple[float, float], length: float, height: float, n: int):  # type: ignore[no-untyped-def]
    """Points of a running hand: loops along a baseline (handwriting or a signature)."""
    t = np.linspace(0, 1, n)
    loops = rng.uniform(6, 14) * length / max(height, 1) / 4
    x = start[0] + t * length + 0.35 * height * np.cos(2 * math.pi * loops * t + rng.uniform(0, 6))
    y = (
        start[1]
        + 0.5 * height * np.sin(2 * math.pi * loops * t * rng.uniform(0.9, 1.1))
        + 0.25 * height * np.sin(2 * math.pi * rng.uniform(0.5, 2) * t)
    )
    return np.stack([x, y], axis=1).round().astype(np.int32)


def handwriting(
    page: np.ndarray, rng: Rng, dpi: int, box: tuple[float, float, float, float], colour, lines: int
) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Lines of running handwriting (ballpoint) inside `box` (x, y, w, h)."""
    h, w = page.shape[:2]
    cov = np.zeros((h, w), np.float32)
    x0, y0, bw, bh = box
    thick = max(1, round(_px(dpi, 3)))
    pitch = bh / max(lines, 1)
    for k in range(lines):
        x = x0
        while x < x0 + bw * rng.uniform(0.6, 1.0):
            word = float(rng.uniform(_px(dpi, 60), _px(dpi, 220)))
            pts = _scrawl(rng, (x, y0 + (k + 0.5) * pitch), word, pitch * 0.45, 120)
            cv2.polylines(cov, [pts], False, 1.0, thick, cv2.LINE_AA)
            x += word + _px(dpi, 35)
    return ink(page, cov * 0.9, colour)


def signature(page: np.ndarray, rng: Rng, dpi: int, at: tuple[float, float], colour) -> np.ndarray:  # type: ignore[no-untyped-def]
    """A signature: one big looping stroke and an underline flourish, over whatever is there."""
    h, w = page.shape[:2]
    cov = np.zeros((h, w), np.float32)
    pts = _scrawl(rng, at, _px(dpi, 520), _px(dpi, 150), 220)
    cv2.polylines(cov, [pts], False, 1.0, max(1, round(_px(dpi, 4))), cv2.LINE_AA)
    tail = np.array(
        [
            [at[0] - _px(dpi, 40), at[1] + _px(dpi, 90)],
            [at[0] + _px(dpi, 600), at[1] + _px(dpi, 50)],
        ],
        np.int32,
    )
    cv2.polylines(cov, [tail], False, 1.0, max(1, round(_px(dpi, 4))), cv2.LINE_AA)
    return ink(page, cov, colour)


def toner_streaks(page: np.ndarray, rng: Rng, dpi: int) -> np.ndarray:
    """A dirty copier drum: faint vertical streaks, a few dark, along the whole sheet."""
    h, w = page.shape[:2]
    cov = np.zeros((h, w), np.float32)
    for _ in range(rng.integers(3, 7)):
        x = int(rng.integers(0, w))
        width = int(rng.integers(1, max(2, round(_px(dpi, 6)))))
        cov[:, x : x + width] = float(rng.uniform(0.08, 0.35))
    cov *= _smooth_field(rng, (h, w), _px(dpi, 200), 0.3, 1.0)
    return ink(page, cov, INK_BLACK)


def black_borders(page: np.ndarray, rng: Rng, dpi: int) -> np.ndarray:
    """The copier lid left open: black wedges along the edges of the copy."""
    h, w = page.shape[:2]
    cov = np.zeros((h, w), np.float32)
    for side in range(4):
        depth = int(rng.integers(round(_px(dpi, 15)), round(_px(dpi, 70))))
        slope = float(rng.uniform(-0.01, 0.01))
        if side == 0:
            cov[:depth, :] = 1
        elif side == 1:
            cov[h - depth :, :] = 1
        elif side == 2:
            cols = (depth + slope * np.arange(h)).clip(1, w // 10).astype(int)
            for y in range(0, h, 4):
                cov[y : y + 4, : cols[y]] = 1
        else:
            cov[:, w - depth :] = 1
    return ink(page, cov * 0.92, (20, 20, 20))


def speckle(page: np.ndarray, rng: Rng, dpi: int, count: int) -> np.ndarray:
    h, w = page.shape[:2]
    cov = np.zeros((h, w), np.float32)
    xs, ys = rng.integers(0, w, count), rng.integers(0, h, count)
    radii = np.maximum(1, np.rint(rng.integers(1, 3, count) * dpi / 300)).astype(int)
    for x, y, r in zip(xs, ys, radii, strict=True):
        cv2.circle(cov, (int(x), int(y)), int(r), float(rng.uniform(0.5, 0.95)), -1)
    return ink(page, cov, INK_BLACK)


def spine(page: np.ndarray, rng: Rng, dpi: int) -> np.ndarray:
    """A bound register open on a flatbed: lines curve down into the gutter, which darkens."""
    h, w = page.shape[:2]
    side_left = bool(rng.integers(0, 2))
    gutter = _px(dpi, 500)  # the last ~4 cm lift off the glass
    xs = np.arange(w, dtype=np.float32)
    dist = xs if side_left else (w - 1 - xs)
    lift = np.clip(1 - dist / gutter, 0, 1) ** 2
    droop = float(rng.uniform(_px(dpi, 25), _px(dpi, 45)))
    # The lift raises each line towards the gutter and squeezes it sideways.
    map_x = np.tile(xs - (lift * _px(dpi, 30) * (1 if side_left else -1)), (h, 1))
    ys = np.arange(h, dtype=np.float32)[:, None]
    centre = h / 2
    map_y = ys + lift[None, :] * droop * ((ys - centre) / centre)
    curved = cv2.remap(
        page,
        map_x.astype(np.float32),
        map_y.astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    shade = 1 - 0.75 * np.clip(1 - dist / _px(dpi, 260), 0, 1) ** 1.6
    shade3 = np.repeat(shade[None, :, None], 3, axis=2).astype(np.float32)
    return curved * np.broadcast_to(shade3, curved.shape)


def scanner(
    page: np.ndarray, rng: Rng, dpi: int, skew_deg: float, blur: float, noise: float
) -> np.ndarray:
    """The flatbed: a slightly crooked sheet (lid grey in the corners), optics, sensor noise."""
    h, w = page.shape[:2]
    if skew_deg:
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), skew_deg, 1.0)
        page = cv2.warpAffine(
            page, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=(205, 205, 205)
        )
    if blur:
        page = cv2.GaussianBlur(page, (0, 0), _px(dpi, blur))
    if noise:
        page = page + rng.standard_normal(page.shape, dtype=np.float32) * np.float32(noise)
    return page


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """A round trip through a copier's JPEG encoder (grey or RGB uint8)."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return np.asarray(cv2.imdecode(data, cv2.IMREAD_UNCHANGED), np.uint8)
