"""The paper side of a handover (nộp lưu) to the historical archive: the Mục lục hồ sơ nộp lưu
(XLSX and PDF) and a Biên bản giao nhận to print and sign (PDF), for one organisation.

``sohoa-server handover ORGAN_ID --out DIR`` writes the three files; the BagIt bags that carry
the records themselves come from the staff app's export (server/export.py). The layout
follows the usual form of these documents (national motto, parties, contents, signatures);
the wording was not checked against an official template, which this project does not hold.
Drawn with Pillow at 150 dpi, in a font with Vietnamese glyphs, like the clerk's card.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from server.archive.records import HoSoOut, Records

DPI = 150
PORTRAIT = (round(210 / 25.4 * DPI), round(297 / 25.4 * DPI))
LANDSCAPE = (PORTRAIT[1], PORTRAIT[0])
MARGIN = round(15 / 25.4 * DPI)
FONTS = Path("/usr/share/fonts/truetype")
REGULAR = [FONTS / "noto/NotoSans-Regular.ttf", FONTS / "dejavu/DejaVuSans.ttf"]
BOLD = [FONTS / "noto/NotoSans-Bold.ttf", FONTS / "dejavu/DejaVuSans-Bold.ttf"]
MUC_LUC = "MỤC LỤC HỒ SƠ NỘP LƯU"
BIEN_BAN = "BIÊN BẢN GIAO NHẬN HỒ SƠ, TÀI LIỆU NỘP LƯU"
# Columns of the Mục lục: (title, width in mm on A4 landscape; 0 = what is left, 22 mm).
COLUMNS: list[tuple[str, int]] = [
    ("STT", 10),
    ("Mã hồ sơ", 55),
    ("Tiêu đề hồ sơ", 80),
    ("Thời gian tài liệu", 36),
    ("Thời hạn bảo quản", 26),
    ("Chế độ sử dụng", 24),
    ("Số trang", 14),
    ("Ghi chú", 0),  # the rest of the line
]


class HandoverError(Exception):
    pass


@dataclass(frozen=True)
class Handover:
    organ_id: str
    ho_so: list[HoSoOut]
    ben_giao: str
    ben_nhan: str
    on: dt.date

    @property
    def pages(self) -> int:
        return sum(h.tong_so_trang for h in self.ho_so)

    @property
    def span(self) -> str:
        starts = [h.thoi_gian_bat_dau for h in self.ho_so if h.thoi_gian_bat_dau]
        ends = [h.thoi_gian_ket_thuc for h in self.ho_so if h.thoi_gian_ket_thuc]
        if not starts and not ends:
            return "…"
        first = min(starts or ends)
        last = max(ends or starts)
        return f"{first.year}" if first.year == last.year else f"{first.year}–{last.year}"


def collect(records: Records, organ_id: str, ben_giao: str, ben_nhan: str) -> Handover:
    chosen = [h for h in records.list_ho_so(limit=100_000) if h.organ_id == organ_id]
    if not chosen:
        raise HandoverError(f"no hồ sơ of organisation {organ_id}")
    return Handover(organ_id, chosen, ben_giao, ben_nhan, dt.date.today())


def vn_date(day: dt.date | None) -> str:
    return day.strftime("%d/%m/%Y") if day else ""


def vn_int(n: int) -> str:
    return f"{n:,}".replace(",", ".")


def rows(h: Handover) -> list[list[str]]:
    out = []
    for i, ho_so in enumerate(h.ho_so, 1):
        span = " – ".join(
            x for x in (vn_date(ho_so.thoi_gian_bat_dau), vn_date(ho_so.thoi_gian_ket_thuc)) if x
        )
        out.append(
            [
                str(i),
                ho_so.ma_ho_so,
                ho_so.tieu_de,
                span,
                ho_so.thoi_han_bao_quan,
                ho_so.che_do_su_dung,
                vn_int(ho_so.tong_so_trang),
                ho_so.ghi_chu,
            ]
        )
    return out


# -- XLSX -----------------------------------------------------------------------------------


def muc_luc_xlsx(h: Handover) -> bytes:
    from openpyxl import Workbook  # type: ignore[import-untyped]
    from openpyxl.styles import Alignment, Font  # type: ignore[import-untyped]

    wb = Workbook()
    ws = wb.active
    ws.title = "Mục lục hồ sơ nộp lưu"
    ws.append([MUC_LUC])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append([f"Cơ quan, tổ chức nộp lưu: {h.ben_giao or h.organ_id} (mã định danh {h.organ_id})"])
    ws.append([f"Lập ngày {vn_date(h.on)}; {len(h.ho_so)} hồ sơ, {vn_int(h.pages)} trang"])
    ws.append([])
    header = [title for title, _ in COLUMNS]
    ws.append(header)
    for cell in ws[5]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    for row in rows(h):
        ws.append([int(row[0]), *row[1:6], h.ho_so[int(row[0]) - 1].tong_so_trang, row[7]])
    for letter, (_, mm) in zip("ABCDEFGH", COLUMNS, strict=True):
        ws.column_dimensions[letter].width = max(8, (mm or 40) // 2)
    ws.freeze_panes = "A6"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


# -- drawing ----------------------------------------------------------------------------------


def _font(pt: float, bold: bool = False) -> ImageFont.FreeTypeFont:
    for path in BOLD if bold else REGULAR:
        if path.exists():
            return ImageFont.truetype(str(path), round(pt / 72 * DPI))
    raise HandoverError("no font with Vietnamese glyphs (apt install fonts-noto-core)")


class Sheet:
    """One page being drawn, with a cursor."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.image = Image.new("L", size, 255)
        self.draw = ImageDraw.Draw(self.image)
        self.width, self.height = size
        self.y = MARGIN

    def wrap(self, text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
        lines: list[str] = []
        for paragraph in text.split("\n"):
            line = ""
            for word in paragraph.split():
                candidate = f"{line} {word}".strip()
                if self.draw.textlength(candidate, font=font) <= width or not line:
                    line = candidate
                else:
                    lines.append(line)
                    line = word
            lines.append(line)
        return lines

    def line(self, text: str, pt: float = 12, bold: bool = False, align: str = "left",
             x: int = MARGIN, width: int | None = None) -> None:  # fmt: skip
        font = _font(pt, bold)
        width = width or self.width - MARGIN - x
        for part in self.wrap(text, font, width):
            w = self.draw.textlength(part, font=font)
            left = {"left": x, "center": x + (width - w) / 2, "right": x + width - w}[align]
            self.draw.text((left, self.y), part, fill=0, font=font)
            self.y += round(pt / 72 * DPI * 1.35)

    def gap(self, mm: float) -> None:
        self.y += round(mm / 25.4 * DPI)


def _motto(sheet: Sheet) -> None:
    half = (sheet.width - 2 * MARGIN) // 2
    top = sheet.y
    sheet.line("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", 11, True, "center", MARGIN + half, half)
    sheet.line("Độc lập - Tự do - Hạnh phúc", 11, True, "center", MARGIN + half, half)
    end = sheet.y
    sheet.y = top
    sheet.line("LƯU TRỮ LỊCH SỬ", 11, True, "center", MARGIN, half)
    sheet.y = max(end, sheet.y)


def muc_luc_pdf(h: Handover) -> bytes:
    mm = DPI / 25.4
    widths = [round(w * mm) for _, w in COLUMNS]
    widths[-1] = LANDSCAPE[0] - 2 * MARGIN - sum(widths[:-1])
    font, bold = _font(9), _font(9, True)
    line_h = round(9 / 72 * DPI * 1.3)
    pages: list[Image.Image] = []
    sheet = None
    todo = rows(h)

    def new_page() -> Sheet:
        s = Sheet(LANDSCAPE)
        s.line(MUC_LUC, 15, True, "center")
        s.line(f"Cơ quan, tổ chức nộp lưu: {h.ben_giao or h.organ_id} — mã định danh "
               f"{h.organ_id}", 10, align="center")  # fmt: skip
        s.gap(3)
        _row(s, [t for t, _ in COLUMNS], bold)
        pages.append(s.image)
        return s

    def _row(s: Sheet, cells: list[str], f: ImageFont.FreeTypeFont) -> None:
        wrapped = [s.wrap(c, f, w - 10) for c, w in zip(cells, widths, strict=True)]
        height = max(len(w) for w in wrapped) * line_h + 8
        x = MARGIN
        for lines, w in zip(wrapped, widths, strict=True):
            s.draw.rectangle((x, s.y, x + w, s.y + height), outline=0, width=1)
            for k, text in enumerate(lines):
                s.draw.text((x + 5, s.y + 4 + k * line_h), text, fill=0, font=f)
            x += w
        s.y += height

    sheet = new_page()
    for cells in todo:
        if sheet.y + 4 * line_h > LANDSCAPE[1] - MARGIN - 3 * line_h:
            sheet = new_page()
        _row(sheet, cells, font)
    sheet.gap(4)
    sheet.line(f"Tổng cộng: {len(h.ho_so)} hồ sơ, {vn_int(h.pages)} trang. Lập ngày "
               f"{vn_date(h.on)}.", 10, True)  # fmt: skip
    for i, page in enumerate(pages, 1):
        ImageDraw.Draw(page).text(
            (LANDSCAPE[0] - MARGIN - 120, LANDSCAPE[1] - MARGIN // 2 - 10),
            f"Trang {i}/{len(pages)}",
            fill=0,
            font=_font(8),
        )
    return _pdf(pages, MUC_LUC)


def bien_ban_pdf(h: Handover) -> bytes:
    s = Sheet(PORTRAIT)
    _motto(s)
    s.gap(8)
    s.line(BIEN_BAN, 14, True, "center")
    s.gap(4)
    day = h.on
    s.line(f"Hôm nay, ngày {day.day:02d} tháng {day.month:02d} năm {day.year}, tại "
           "……………………………………………, chúng tôi gồm:", 12)  # fmt: skip
    s.gap(2)
    s.line(f"BÊN GIAO: {h.ben_giao or '……………………………………………………'} (mã định danh {h.organ_id})",
           12, True)  # fmt: skip
    s.line("Đại diện là ông/bà: ……………………………………… Chức vụ: ………………………………", 12)
    s.gap(2)
    s.line(f"BÊN NHẬN: {h.ben_nhan or '……………………………………………………'}", 12, True)
    s.line("Đại diện là ông/bà: ……………………………………… Chức vụ: ………………………………", 12)
    s.gap(3)
    s.line("Thống nhất lập biên bản giao nhận hồ sơ, tài liệu nộp lưu với nội dung sau:", 12)
    items = [
        f"Tên khối tài liệu nộp lưu: hồ sơ, tài liệu của {h.ben_giao or h.organ_id}, "
        "bản số hóa kèm ảnh quét gốc.",
        f"Thời gian của tài liệu: {h.span}.",
        f"Số lượng: {vn_int(len(h.ho_so))} hồ sơ, {vn_int(h.pages)} trang.",
        "Tình trạng tài liệu: ………………………………………………………………………………",
        f"Công cụ tra cứu kèm theo: Mục lục hồ sơ nộp lưu ({len(h.ho_so)} hồ sơ), "
        "mỗi hồ sơ có gói dữ liệu kèm mã kiểm tra SHA-256.",
    ]
    for i, item in enumerate(items, 1):
        s.line(f"{i}. {item}", 12, x=MARGIN + 20)
    s.gap(2)
    s.line("Biên bản này được lập thành hai bản có giá trị như nhau; mỗi bên giữ một bản.", 12)
    s.gap(10)
    half = (s.width - 2 * MARGIN) // 2
    top = s.y
    for k, who in enumerate(("ĐẠI DIỆN BÊN GIAO", "ĐẠI DIỆN BÊN NHẬN")):
        s.y = top
        s.line(who, 12, True, "center", MARGIN + k * half, half)
        s.line("(Ký, ghi rõ họ tên và đóng dấu)", 11, False, "center", MARGIN + k * half, half)
    return _pdf([s.image], BIEN_BAN)


def _pdf(pages: list[Image.Image], title: str) -> bytes:
    buf = io.BytesIO()
    pages[0].save(
        buf, "PDF", resolution=DPI, save_all=True, append_images=pages[1:], title=title,
        author="sohoa",
    )  # fmt: skip
    return buf.getvalue()


def write(h: Handover, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {
        out / "muc-luc-ho-so-nop-luu.xlsx": muc_luc_xlsx(h),
        out / "muc-luc-ho-so-nop-luu.pdf": muc_luc_pdf(h),
        out / "bien-ban-giao-nhan.pdf": bien_ban_pdf(h),
    }
    for path, data in files.items():
        path.write_bytes(data)
    return list(files)
