"""The thống kê table per fonds: how much each phông lưu trữ holds (hồ sơ, văn bản, pages,
the years its records cover, their retention periods) — planned (its inventory) beside what
the archive holds of it — as data, XLSX and PDF (drawn like the handover's Mục lục,
server.archive.handover).

Numbers come from the plan (``planned_ho_so``) and from server.archive.progress (pages
received, hồ sơ catalogued). Must not: write anything.
"""

from __future__ import annotations

import datetime as dt
import io
from collections import Counter
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFont

from server.archive import handover
from server.archive.progress import PlanView
from server.store.db import Database

TITLE = "THỐNG KÊ SỐ LƯỢNG TÀI LIỆU THUỘC CÁC PHÔNG LƯU TRỮ"
# (header, width in mm on A4 landscape)
COLUMNS: list[tuple[str, int]] = [
    ("STT", 10),
    ("Phông lưu trữ", 62),
    ("Tình trạng", 22),
    ("Hồ sơ (kế hoạch / đã biên mục)", 32),
    ("Văn bản (kế hoạch / đã biên mục)", 32),
    ("Trang (kế hoạch / đã nhận)", 34),
    ("Thời gian tài liệu", 24),
    ("Thời hạn bảo quản", 0),
]
STATUS_VI = {
    "open": "Đang hình thành",
    "closing": "Đang kết thúc",
    "closed": "Đã kết thúc",
    "handed_over": "Đã nộp lưu",
}


@dataclass
class FondsCount:
    code: str
    name: str
    status: str
    ho_so_planned: int
    ho_so_catalogued: int
    van_ban_planned: int | None  # None: the inventory gives no document counts
    van_ban_catalogued: int
    pages_planned: int
    pages_received: int
    first_year: int | None
    last_year: int | None
    retention: dict[str, int] = field(default_factory=dict)  # "Vĩnh viễn" → hồ sơ

    @property
    def years(self) -> str:
        if self.first_year is None or self.last_year is None:
            return ""
        if self.first_year == self.last_year:
            return str(self.first_year)
        return f"{self.first_year}–{self.last_year}"

    @property
    def retention_text(self) -> str:
        return "; ".join(f"{k}: {vn_int(v)}" for k, v in self.retention.items())


def vn_int(n: int | None) -> str:
    return "—" if n is None else f"{n:,}".replace(",", ".")


def _retention_order(label: str) -> tuple[int, str]:
    if label == "Vĩnh viễn":
        return (0, label)
    head = label.split()[0] if label else ""
    return (1, f"{1000 - int(head):04d}") if head.isdigit() else (2, label)


def counts(db: Database, view: PlanView) -> list[FondsCount]:
    con = db.read()
    plans: dict[str, list[dict[str, object]]] = {}
    for r in con.execute(
        "SELECT fonds_code, code, nam, bat_dau, ket_thuc, thoi_han, so_van_ban"
        " FROM planned_ho_so ORDER BY fonds_code, line"
    ):
        plans.setdefault(r["fonds_code"], []).append(dict(r))
    documents = Counter(
        {r[0]: int(r[1]) for r in con.execute(
            "SELECT ma_ho_so, COUNT(*) FROM van_ban GROUP BY ma_ho_so")}
    )  # fmt: skip
    out = []
    for fp in sorted(view.fonds, key=lambda f: f.key):
        rows = plans.get(fp.key, [])
        years: list[int] = []
        for r in rows:
            years.append(int(str(r["nam"])))
            for key in ("bat_dau", "ket_thuc"):
                if r[key]:
                    years.append(dt.date.fromisoformat(str(r[key])).year)
        given = [r["so_van_ban"] for r in rows if r["so_van_ban"] is not None]
        retention = Counter(str(r["thoi_han"]) or "Chưa xác định" for r in rows)
        out.append(
            FondsCount(
                code=fp.key, name=fp.name, status=fp.status,
                ho_so_planned=fp.ho_so["planned"], ho_so_catalogued=fp.ho_so["catalogued"],
                van_ban_planned=sum(int(str(v)) for v in given) if given else None,
                van_ban_catalogued=sum(documents[str(r["code"])] for r in rows),
                pages_planned=fp.pages["planned"], pages_received=fp.pages["received"],
                first_year=min(years, default=None), last_year=max(years, default=None),
                retention=dict(sorted(retention.items(), key=lambda kv: _retention_order(kv[0]))),
            )
        )  # fmt: skip
    return out


def rows(table: list[FondsCount]) -> list[list[str]]:
    return [
        [
            str(i),
            f"{c.name} ({c.code})",
            STATUS_VI.get(c.status, c.status),
            f"{vn_int(c.ho_so_planned)} / {vn_int(c.ho_so_catalogued)}",
            f"{vn_int(c.van_ban_planned)} / {vn_int(c.van_ban_catalogued)}",
            f"{vn_int(c.pages_planned)} / {vn_int(c.pages_received)}",
            c.years,
            c.retention_text,
        ]
        for i, c in enumerate(table, 1)
    ]


def xlsx(table: list[FondsCount], on: dt.date) -> bytes:
    """One row per fonds, numbers as numbers (a spreadsheet sums them)."""
    from openpyxl import Workbook  # type: ignore[import-untyped]
    from openpyxl.styles import Alignment, Font  # type: ignore[import-untyped]

    wb = Workbook()
    ws = wb.active
    ws.title = "Thống kê phông"
    ws.append([TITLE])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append([f"Lập ngày {on.strftime('%d/%m/%Y')}"])
    ws.append([])
    header = ["STT", "Mã phông", "Tên phông", "Tình trạng", "Hồ sơ theo kế hoạch",
              "Hồ sơ đã biên mục", "Văn bản theo kế hoạch", "Văn bản đã biên mục",
              "Trang theo kế hoạch", "Trang đã nhận", "Từ năm", "Đến năm",
              "Thời hạn bảo quản"]  # fmt: skip
    ws.append(header)
    for cell in ws[4]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    for i, c in enumerate(table, 1):
        ws.append([i, c.code, c.name, STATUS_VI.get(c.status, c.status), c.ho_so_planned,
                   c.ho_so_catalogued, c.van_ban_planned, c.van_ban_catalogued,
                   c.pages_planned, c.pages_received, c.first_year, c.last_year,
                   c.retention_text])  # fmt: skip
        for cell in ws[ws.max_row]:
            if isinstance(cell.value, str):
                cell.data_type = "s"  # never a formula, whatever a name starts with
    ws.append(["", "Tổng cộng", "", "", *(
        sum(getattr(c, k) or 0 for c in table)
        for k in ("ho_so_planned", "ho_so_catalogued", "van_ban_planned", "van_ban_catalogued",
                  "pages_planned", "pages_received")
    )])  # fmt: skip
    ws.freeze_panes = "A5"
    for letter, width in zip("ABCDEFGHIJKLM", (5, 16, 36, 16, 11, 11, 11, 11, 11, 11, 8, 8, 40),
                             strict=True):  # fmt: skip
        ws.column_dimensions[letter].width = width
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def pdf(table: list[FondsCount], on: dt.date) -> bytes:
    """A4 landscape pages, the table ruled, Vietnamese throughout."""
    size = handover.LANDSCAPE
    mm = handover.DPI / 25.4
    widths = [round(w * mm) for _, w in COLUMNS]
    widths[-1] = size[0] - 2 * handover.MARGIN - sum(widths[:-1])
    font = _font(9)
    bold = _font(9, bold=True)
    line_h = round(9 / 72 * handover.DPI * 1.3)
    pages: list[Image.Image] = []

    def new_page() -> handover.Sheet:
        s = handover.Sheet(size)
        s.line(TITLE, 14, True, "center")
        s.line(f"Lập ngày {on.strftime('%d/%m/%Y')}", 10, align="center")
        s.gap(3)
        row(s, [t for t, _ in COLUMNS], bold)
        pages.append(s.image)
        return s

    def row(s: handover.Sheet, cells: list[str], f: ImageFont.FreeTypeFont) -> None:
        wrapped = [s.wrap(c, f, w - 10) for c, w in zip(cells, widths, strict=True)]
        height = max(len(w) for w in wrapped) * line_h + 8
        x = handover.MARGIN
        for lines, w in zip(wrapped, widths, strict=True):
            s.draw.rectangle((x, s.y, x + w, s.y + height), outline=0, width=1)
            for k, text in enumerate(lines):
                s.draw.text((x + 5, s.y + 4 + k * line_h), text, fill=0, font=f)
            x += w
        s.y += height

    sheet = new_page()
    for cells in rows(table):
        if sheet.y + 4 * line_h > size[1] - handover.MARGIN - 3 * line_h:
            sheet = new_page()
        row(sheet, cells, font)
    sheet.gap(4)
    total_pages = sum(c.pages_received for c in table)
    planned = sum(c.ho_so_planned for c in table)
    sheet.line(f"Tổng cộng: {vn_int(len(table))} phông, {vn_int(planned)} hồ sơ theo kế hoạch,"
               f" {vn_int(total_pages)} trang đã nhận.", 10, True)  # fmt: skip
    for i, page in enumerate(pages, 1):
        ImageDraw.Draw(page).text(
            (size[0] - handover.MARGIN - 120, size[1] - handover.MARGIN // 2 - 10),
            f"Trang {i}/{len(pages)}", fill=0, font=_font(8),
        )  # fmt: skip
    buf = io.BytesIO()
    pages[0].save(buf, "PDF", resolution=handover.DPI, save_all=True, append_images=pages[1:],
                  title=TITLE, author="sohoa")  # fmt: skip
    return buf.getvalue()


def _font(pt: float, bold: bool = False) -> ImageFont.FreeTypeFont:
    for path in handover.BOLD if bold else handover.REGULAR:
        if path.exists():
            return ImageFont.truetype(str(path), round(pt / 72 * handover.DPI))
    raise handover.HandoverError("no font with Vietnamese glyphs (apt install fonts-noto-core)")
