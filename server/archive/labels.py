"""Box and folder labels (issue 17): an A4 sheet of labels, each a hồ sơ's code, title and the
QR code of its public lookup address (server.archive.public), Vietnamese.

Eight labels a sheet, 2 × 4 cells of 99 × 67.7 mm — the common A4 sheet of eight
self-adhesive labels (e.g. Avery L7165 / J8165: 99.1 × 67.7 mm, top margin 13.1 mm) — so the
sheet prints onto stock sold in any stationery shop; on plain paper the thin frame is where to
cut. Rendered as a 300-dpi bilevel image per page (PIL), saved as PDF: the QR modules stay sharp
(1-bit, no JPEG) and a page stays small.

The QR code holds only the address (error correction M: a label on a box gets scuffed). The
address is made on first use and is the same on every reprint until staff rotate it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from server.archive import public
from server.archive.records import Records
from server.store.db import Database

DPI = 300
A4_MM = (210.0, 297.0)
LABEL_MM = (99.1, 67.7)  # Avery L7165 / J8165
TOP_MM, LEFT_MM, GAP_MM = 13.1, 4.65, 2.5  # that sheet's top margin, side margin, column gap
COLUMNS, ROWS = 2, 4
PER_SHEET = COLUMNS * ROWS
FONTS = (
    Path("/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf"),
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
)
BOLD = (
    Path("/usr/share/fonts/truetype/noto/NotoSans-Bold.ttf"),
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
)


class LabelError(Exception):
    pass


@dataclass(frozen=True)
class Label:
    ma_ho_so: str
    tieu_de: str
    nam: int
    thoi_han_bao_quan: str
    url: str


def _px(mm: float) -> int:
    return round(mm / 25.4 * DPI)


def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in BOLD if bold else FONTS:
        if path.exists():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default()


def labels_for(
    db: Database, records: Records, codes: list[str], base_url: str, actor: str
) -> list[Label]:
    """One label per hồ sơ code, in the order given; raises LabelError on an unknown code."""
    out = []
    for ma in codes:
        ho_so = records.ho_so(ma)
        token = public.address(db, ma, actor) if ho_so else None
        if ho_so is None or token is None:
            raise LabelError(f"no hồ sơ {ma!r}")
        out.append(
            Label(
                ma, ho_so.tieu_de, ho_so.nam, ho_so.thoi_han_bao_quan, public.url(base_url, token)
            )
        )
    return out


def _wrap(
    draw: ImageDraw.ImageDraw,
    text: str,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    width: int,
    lines: int,
) -> list[str]:
    out: list[str] = []
    for word in text.split():
        if out and draw.textlength(f"{out[-1]} {word}", font=font) <= width:
            out[-1] = f"{out[-1]} {word}"
        else:
            out.append(word)
    if len(out) > lines:
        out = out[:lines]
        out[-1] = out[-1].rstrip(".,;") + "…"
    return out


def _draw_label(page: Image.Image, label: Label, x: int, y: int) -> None:
    import qrcode

    w, h = _px(LABEL_MM[0]), _px(LABEL_MM[1])
    draw = ImageDraw.Draw(page)
    draw.rectangle((x, y, x + w - 1, y + h - 1), outline=0, width=2)  # where to cut
    pad = _px(3)
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=1, border=2)
    qr.add_data(label.url)
    qr.make(fit=True)
    side = _px(38)
    modules = len(qr.get_matrix())
    box = max(1, side // modules)
    code = qr.make_image().get_image().convert("L")
    code = code.resize((modules * box, modules * box), Image.Resampling.NEAREST)
    page.paste(code, (x + pad, y + (h - code.height) // 2))
    tx = x + pad + code.width + pad
    width = x + w - pad - tx
    ty = y + pad
    draw.text((tx, ty), "LƯU TRỮ LỊCH SỬ TỈNH", fill=0, font=_font(_px(2.6)))
    ty += _px(4.5)
    code_font = _font(_px(3.6), bold=True)
    for line in _wrap(draw, label.ma_ho_so.replace(".", ". "), code_font, width, 2):
        draw.text((tx, ty), line.replace(". ", "."), fill=0, font=code_font)
        ty += _px(4.6)
    ty += _px(1)
    title_font = _font(_px(3.0))
    for line in _wrap(draw, label.tieu_de, title_font, width, 5):
        draw.text((tx, ty), line, fill=0, font=title_font)
        ty += _px(4.0)
    small = _font(_px(2.5))
    draw.text(
        (tx, y + h - pad - _px(8)),
        f"Năm {label.nam} · {label.thoi_han_bao_quan}",
        fill=0,
        font=small,
    )
    draw.text((tx, y + h - pad - _px(4)), "Quét mã để tra cứu", fill=0, font=small)


def render(labels: list[Label]) -> list[Image.Image]:
    """The sheets, one bilevel A4 image each, labels filled row by row."""
    pages = []
    for start in range(0, len(labels), PER_SHEET):
        page = Image.new("L", (_px(A4_MM[0]), _px(A4_MM[1])), 255)
        for i, label in enumerate(labels[start : start + PER_SHEET]):
            col, row = i % COLUMNS, i // COLUMNS
            x = _px(LEFT_MM + col * (LABEL_MM[0] + GAP_MM))
            y = _px(TOP_MM + row * LABEL_MM[1])
            _draw_label(page, label, x, y)
        pages.append(page.point(lambda v: 255 if v >= 128 else 0).convert("1"))
    return pages


def pdf(labels: list[Label]) -> bytes:
    if not labels:
        raise LabelError("no label to print")
    pages = render(labels)
    buf = io.BytesIO()
    pages[0].save(
        buf, "PDF", resolution=DPI, save_all=True, append_images=pages[1:], title="Nhãn hồ sơ"
    )
    return buf.getvalue()


def cell(index: int) -> tuple[int, int, int, int]:
    """The pixel box (left, top, right, bottom) of label ``index`` on its sheet at DPI."""
    col, row = index % COLUMNS, (index % PER_SHEET) // COLUMNS
    x = _px(LEFT_MM + col * (LABEL_MM[0] + GAP_MM))
    y = _px(TOP_MM + row * LABEL_MM[1])
    return x, y, x + _px(LABEL_MM[0]), y + _px(LABEL_MM[1])
