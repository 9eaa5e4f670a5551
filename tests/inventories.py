"""Inventories built the way offices build them (openpyxl: merged header cells over two rows,
title lines, a row of column numbers, group headings, blank rows, subtotals and a "Tổng cộng"
line, a signature block) — several layouts, and broken ones. Shared by the inventory and the
progress tests and the demo."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from typing import Any

from openpyxl import Workbook  # type: ignore[import-untyped]
from openpyxl.styles import Alignment, Font  # type: ignore[import-untyped]


def _save(wb: Any) -> bytes:
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def muc_luc(
    office: str,
    rows: Sequence[tuple[str, str, Any, Any, str, Any, Any]],
    year_title: str = "2019",
) -> bytes:
    """The "Mục lục hồ sơ" layout: office and title lines, a header over rows 6-7 (Số TT,
    Số và ký hiệu hồ sơ, Tiêu đề hồ sơ merged down; "Thời gian tài liệu" merged across
    "Bắt đầu" / "Kết thúc"; "Số lượng" across "Tờ" / "Trang"; Thời hạn bảo quản; Ghi chú),
    a row of column numbers, a group heading, a blank row, the rows, a subtotal, "Tổng cộng"
    and the signature block. ``rows``: (ký hiệu, title, start, end, retention, sheets, pages).
    """
    wb = Workbook()
    ws = wb.active
    ws.title = "Mục lục"
    ws["A1"] = f"ỦY BAN NHÂN DÂN {office.upper()}"
    ws["F1"] = "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"
    ws.merge_cells("A1:C1")
    ws.merge_cells("F1:I1")
    ws["A3"] = "MỤC LỤC HỒ SƠ"
    ws.merge_cells("A3:I3")
    ws["A3"].font = Font(bold=True, size=14)
    ws["A4"] = f"Phông lưu trữ {office} — năm {year_title}"
    ws.merge_cells("A4:I4")
    for col, label in (("A", "Số TT"), ("B", "Số và ký hiệu hồ sơ"), ("C", "Tiêu đề hồ sơ"),
                       ("F", "Thời hạn bảo quản"), ("I", "Ghi chú")):  # fmt: skip
        ws[f"{col}6"] = label
        ws.merge_cells(f"{col}6:{col}7")
    ws["D6"] = "Thời gian tài liệu"
    ws.merge_cells("D6:E6")
    ws["D7"], ws["E7"] = "Bắt đầu", "Kết thúc"
    ws["G6"] = "Số lượng"
    ws.merge_cells("G6:H6")
    ws["G7"], ws["H7"] = "Tờ", "Trang"
    for row in ws["A6:I7"]:
        for cell in row:
            cell.alignment = Alignment(wrap_text=True, horizontal="center")
    ws.append([f"({n})" for n in range(1, 10)])  # row 8
    ws.append(["I", "VĂN BẢN CHỈ ĐẠO, ĐIỀU HÀNH"])  # row 9, a group heading
    ws.merge_cells("B9:I9")
    ws.append([])  # row 10, blank
    total = 0
    for i, (ky_hieu, title, start, end, retention, sheets, pages) in enumerate(rows, 1):
        ws.append([i, ky_hieu, title, start, end, retention, sheets, pages, ""])
        if isinstance(pages, int):
            total += pages
    ws.append(["", "Cộng", "", "", "", "", "", total])
    ws.append([])
    ws.append(["", "Tổng cộng", f"{len(rows)} hồ sơ", "", "", "", "", total])
    ws.append([])
    ws.append(["", "", "", "", "", f"{office}, ngày 20 tháng 11 năm 2025"])
    ws.append(["", "NGƯỜI LẬP", "", "", "", "THỦ TRƯỞNG CƠ QUAN"])
    ws.append(["", "(Ký, ghi rõ họ tên)"])
    return _save(wb)


def danh_muc(rows: Sequence[Sequence[Any]]) -> bytes:
    """The "Danh mục hồ sơ" layout: one title line, a one-row header with the full mã hồ sơ,
    "Tên hồ sơ", one "Thời gian tài liệu" column ("1998-2003", "năm 2019"), "Số trang"."""
    wb = Workbook()
    ws = wb.active
    ws.append(["DANH MỤC HỒ SƠ LƯU TRỮ"])
    ws.merge_cells("A1:G1")
    ws.append([])
    ws.append(["STT", "Mã hồ sơ", "Tên hồ sơ", "Thời gian tài liệu", "Thời hạn bảo quản",
               "Số trang", "Ghi chú"])  # fmt: skip
    for row in rows:
        ws.append(list(row))
    return _save(wb)


def csv_inventory(lines: Sequence[str]) -> bytes:
    """A CSV as a spreadsheet saves it ("CSV UTF-8": a BOM, semicolons, CRLF)."""
    return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode()


# Demo / progress material: two communes, each with its plan.
COMMUNE_A = [
    ("01", "Hồ sơ xử lý vi phạm khai thác khoáng sản trái phép", "14/03/2019",
     dt.datetime(2019, 12, 20), "Vĩnh viễn", 20, 40),
    ("02", "Sổ đăng ký khai sinh năm 2019", "năm 2019", None, "Vĩnh viễn", 60, 120),
    ("03", "Hồ sơ hội nghị tiếp xúc cử tri", "05/2019", "06/2019", "10 năm", 8, 16),
]  # fmt: skip
COMMUNE_B = [
    ("01", "Hồ sơ quy hoạch sử dụng đất xã", "02/01/2019", "30/06/2019", "70 năm", 30, 60),
    ("02", "Sổ đăng ký kết hôn", "năm 2019", None, "Vĩnh viễn", 25, 50),
]  # fmt: skip


# The demo merger (unit codes from the library, as tests/test_fonds.py): xã Xuân La and xã An
# Thắng of huyện Pác Nặm, tỉnh Bắc Kạn, became part of xã Nghiên Loan, tỉnh Thái Nguyên.
XUAN_LA, AN_THANG, NGHIEN_LOAN = "old:01873", "old:01876", "new:01882"
ORGANS = {"XL": "H06.XL", "AT": "H06.AT", "NL": "H19.NL"}
FIRST_PLANNED = "H06.XL.2019.01"


def danh_muc_b(organ: str) -> bytes:
    """COMMUNE_B in the "Danh mục" layout (full codes, one period column)."""
    return danh_muc([
        [i, f"{organ}.2019.{k}", title, f"{a} - {b}" if b else a, ret, pages, ""]
        for i, (k, title, a, b, ret, _sheets, pages) in enumerate(COMMUNE_B, 1)
    ])  # fmt: skip


def setup_demo(db: Any, today: dt.date, inventories: bool = True) -> None:
    """Three fonds — two former communes closed on 30/06/2025 and merged into the new one,
    due to hand over in 60 and 90 days — and (``inventories``) the two former communes'
    inventories."""
    from server.archive import fonds, inventory

    fonds.create(db, "NL", "UBND xã Nghiên Loan", organ_id=ORGANS["NL"],
                 unit_code=NGHIEN_LOAN, opened="2025-07-01")  # fmt: skip
    fonds.create(db, "XL", "UBND xã Xuân La", organ_id=ORGANS["XL"], unit_code=XUAN_LA,
                 opened="1976-01-01")  # fmt: skip
    fonds.create(db, "AT", "UBND xã An Thắng", organ_id=ORGANS["AT"], unit_code=AN_THANG,
                 opened="1976-01-01")  # fmt: skip
    for code, days in (("XL", 60), ("AT", 90)):
        fonds.close(db, code, closed="2025-06-30", merged_into="NL",
                    deadline=today + dt.timedelta(days=days))  # fmt: skip
    if not inventories:
        return
    plan_xl = inventory.read(muc_luc("xã Xuân La", COMMUNE_A), "muc-luc-xuan-la.xlsx", "H06.XL")
    inventory.import_plan(db, "XL", plan_xl, "lan", "muc-luc-xuan-la.xlsx")
    plan_at = inventory.read(danh_muc_b("H06.AT"), "danh-muc-an-thang.xlsx", "H06.AT")
    inventory.import_plan(db, "AT", plan_at, "lan", "danh-muc-an-thang.xlsx")
