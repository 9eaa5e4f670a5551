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
