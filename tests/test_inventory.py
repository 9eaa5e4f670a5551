"""The inventory importer (server.archive.inventory) on inventories made as offices make them
(tests/inventories.py: merged two-row headers, title lines, Vietnamese dates, blank rows,
headings, totals, signatures) and on broken ones; storing is all or nothing, on both
catalogue engines."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
from pathlib import Path

import pytest
from harness import BIN
from inventories import COMMUNE_A, csv_inventory, danh_muc, muc_luc
from openpyxl import Workbook  # type: ignore[import-untyped]

from server.archive import audit, fonds, inventory
from server.archive.inventory import InventoryError, import_plan, read
from server.store.db import Database

ORGAN = "000.00.01.H53"


def test_muc_luc_with_merged_two_row_header() -> None:
    preview = read(muc_luc("xã Tân Lập", COMMUNE_A), "muc-luc.xlsx", ORGAN)
    assert preview.ok, preview.problems
    assert preview.header_lines == [6, 7]
    assert {k: inventory.column_letter(v) for k, v in preview.mapping.items()} == {
        "stt": "A", "code": "B", "title": "C", "start": "D", "end": "E", "retention": "F",
        "sheets": "G", "pages": "H", "note": "I",
    }  # fmt: skip
    codes = [r.code for r in preview.rows]
    assert codes == [f"{ORGAN}.2019.01", f"{ORGAN}.2019.02", f"{ORGAN}.2019.03"]
    first, second, third = preview.rows
    assert (first.bat_dau, first.ket_thuc) == (dt.date(2019, 3, 14), dt.date(2019, 12, 20))
    assert (second.bat_dau, second.ket_thuc) == (dt.date(2019, 1, 1), None)
    assert (third.bat_dau, third.ket_thuc) == (dt.date(2019, 5, 1), dt.date(2019, 6, 30))
    assert [r.thoi_han for r in preview.rows] == ["Vĩnh viễn", "Vĩnh viễn", "10 năm"]
    assert [(r.so_to, r.so_trang) for r in preview.rows] == [(20, 40), (60, 120), (8, 16)]
    assert preview.pages == 176
    assert first.tieu_de == "Hồ sơ xử lý vi phạm khai thác khoáng sản trái phép"
    assert first.line == 11  # the line the archivist sees in Excel
    why = [(p.line, p.en) for p in preview.skipped]
    assert why == [
        (9, "not a hồ sơ line (a heading, a signature…)"),  # "I. VĂN BẢN CHỈ ĐẠO…"
        (14, "totals line"),  # "Cộng"
        (16, "totals line"),  # "Tổng cộng": the signature block after it is not read
        (16, "3 lines after the totals line not read"),
    ]


def test_danh_muc_full_codes_periods_and_thousands() -> None:
    data = danh_muc([
        [1, f"{ORGAN}.1998.05", "Sổ địa chính", "1998-2003", "VV", "1.234", ""],
        [2, f"{ORGAN}.2019.HS-07", "Hồ sơ bầu cử", "năm 2019", "70", 88, "thiếu trang 3"],
        [3, f"{ORGAN}.2020.08", "Hồ sơ hòa giải", "01/02/2020 - 31/12/2020", "10 năm", None, ""],
    ])  # fmt: skip
    preview = read(data, "danh-muc.xlsx", ORGAN)
    assert preview.ok, preview.problems
    a, b, c = preview.rows
    assert (a.code, a.nam, a.bat_dau, a.ket_thuc) == (
        f"{ORGAN}.1998.05",
        1998,
        dt.date(1998, 1, 1),
        dt.date(2003, 12, 31),
    )
    assert (a.thoi_han, a.so_trang) == ("Vĩnh viễn", 1234)
    assert (b.thoi_han, b.so_trang, b.ghi_chu) == ("70 năm", 88, "thiếu trang 3")
    assert (c.bat_dau, c.ket_thuc, c.so_trang) == (dt.date(2020, 2, 1), dt.date(2020, 12, 31), None)


def test_csv_with_year_column() -> None:
    data = csv_inventory([
        "MỤC LỤC HỒ SƠ NĂM 2021;;;;;",
        "TT;Ký hiệu hồ sơ;Tiêu đề hồ sơ;Năm;Số trang;Thời hạn bảo quản",
        "1;HS.01;Hồ sơ tiếp công dân;2021;35;10 năm",
        ";;;;;",
        "2;HS.02;Hồ sơ cấp giấy chứng nhận quyền sử dụng đất;Năm 2021;210;Vĩnh viễn",
        "Tổng cộng;;;;245;",
    ])  # fmt: skip
    preview = read(data, "muc-luc.csv", ORGAN)
    assert preview.ok, preview.problems
    assert [(r.code, r.so_trang) for r in preview.rows] == [
        (f"{ORGAN}.2021.HS.01", 35), (f"{ORGAN}.2021.HS.02", 210)]  # fmt: skip


def test_old_form_on_a_second_sheet() -> None:
    """The older Mục lục form: a cover sheet first; "Hộp số" and "Hồ sơ số"; one column for
    "Ngày tháng năm bắt đầu và kết thúc" (two dates on two lines in the cell); "Lâu dài" /
    "Tạm thời" retention of before 2011; "1." numbering; "-" for an unknown page count."""
    wb = Workbook()
    cover = wb.active
    cover.title = "Bìa"
    cover["B3"] = "MỤC LỤC HỒ SƠ PHÔNG UBND XÃ XUÂN LA"
    cover["B5"] = "Quyển số 1, từ năm 1995 đến năm 1999"
    ws = wb.create_sheet("Mục lục")
    ws.append(["Hộp số", "Hồ sơ số", "Tiêu đề hồ sơ",
               "Ngày tháng năm\nbắt đầu và kết thúc", "Số tờ", "Thời hạn bảo quản",
               "Ghi chú"])  # fmt: skip
    ws.append([1, "1.", "Sổ đăng ký khai sinh", "02/01/1995\n28/12/1995", 48, "Vĩnh viễn", ""])
    ws.append([1, 2, "Báo cáo tổng kết năm", "1996", "-", "Lâu dài", ""])
    ws.append([2, 3, "Công văn đi", "03/1997 - 11/1997", 12, "Tạm thời", "rách"])
    buf = io.BytesIO()
    wb.save(buf)
    preview = read(buf.getvalue(), "muc-luc-cu.xlsx", ORGAN)
    assert preview.ok, preview.problems
    assert preview.sheet == "Mục lục"
    assert preview.mapping == {"code": 1, "title": 2, "period": 3, "sheets": 4, "retention": 5,
                               "note": 6}  # fmt: skip
    a, b, c = preview.rows
    assert (a.code, a.bat_dau, a.ket_thuc, a.so_to) == (
        f"{ORGAN}.1995.1",
        dt.date(1995, 1, 2),
        dt.date(1995, 12, 28),
        48,
    )
    assert (b.code, b.so_to, b.thoi_han) == (f"{ORGAN}.1996.2", None, "Lâu dài")
    assert (c.bat_dau, c.ket_thuc, c.thoi_han) == (
        dt.date(1997, 3, 1),
        dt.date(1997, 11, 30),
        "Tạm thời",
    )


def test_table_off_column_a_with_headings_in_the_code_column() -> None:
    """A "Danh mục" laid out from column B, header words broken over lines, a row of column
    letters, group headings numbered "I", "II" written in the code column, an empty count,
    "Cộng: …" at the end."""
    wb = Workbook()
    ws = wb.active
    ws["B1"] = "UBND XÃ AN THẮNG"
    ws["B2"] = "DANH MỤC HỒ SƠ, TÀI LIỆU"
    ws.merge_cells("B2:H2")
    ws.append([])
    ws.append([None, "STT", "Số, ký hiệu\nhồ sơ", "Tiêu đề\nhồ sơ", "Thời gian\ntài liệu",
               "THBQ", "Số\ntờ", "Ghi chú"])  # fmt: skip
    ws.append([None, "A", "B", "C", "D", "E", "F", "G"])
    ws.append([None, "I", "TỔ CHỨC - CÁN BỘ"])
    ws.append([None, 1, "TCCB-01", "Hồ sơ nâng lương năm 2018", "2018", "VV", 35, None])
    ws.append([None, 2, "TCCB-02", "Hồ sơ tuyển dụng", "12/2018 - 03/2019", "70 năm", "", None])
    ws.append([None, "II", "TƯ PHÁP - HỘ TỊCH"])
    ws.append([None, 3, "TP-01", "Sổ khai sinh", "Năm 2017", "Vĩnh viễn", 120, "Bìa rách"])
    ws.append([None, None, "Cộng: 3 hồ sơ"])
    ws.append([None, 4, "TP 02", "", "2017", "VV", 1, None])  # a real line: refused, not skipped
    buf = io.BytesIO()
    wb.save(buf)
    preview = read(buf.getvalue(), "danh-muc.xlsx", "H06.AT")
    assert preview.header_lines == [4]
    assert [(r.line, r.code, r.so_to) for r in preview.rows] == [
        (7, "H06.AT.2018.TCCB-01", 35), (8, "H06.AT.2018.TCCB-02", None),
        (10, "H06.AT.2017.TP-01", 120),
    ]  # fmt: skip
    assert preview.rows[1].ket_thuc == dt.date(2019, 3, 31)
    assert [(p.line, p.en) for p in preview.skipped[:2]] == [
        (6, "not a hồ sơ line (a heading, a signature…)"),
        (9, "not a hồ sơ line (a heading, a signature…)"),
    ]
    assert [(p.line, p.en) for p in preview.problems] == [(12, "no title")]


def test_a_title_merged_right_above_the_header_is_not_part_of_it() -> None:
    wb = Workbook()
    ws = wb.active
    ws.append(["MỤC LỤC HỒ SƠ NĂM 2020"])
    ws.merge_cells("A1:E1")
    ws.append(["STT", "Số, ký hiệu hồ sơ", "Tên hồ sơ", "Năm", "Số trang"])
    ws.append([1, "05", "Hồ sơ hòa giải", 2020, 9])
    buf = io.BytesIO()
    wb.save(buf)
    preview = read(buf.getvalue(), "x.xlsx", ORGAN)
    assert preview.header_lines == [2]
    assert preview.mapping == {"stt": 0, "code": 1, "title": 2, "year": 3, "pages": 4}
    assert [(r.code, r.so_trang) for r in preview.rows] == [(f"{ORGAN}.2020.05", 9)]


def test_the_inventorys_year_for_lines_without_one() -> None:
    """ "MỤC LỤC HỒ SƠ NĂM 2019" and no date on its lines: refused unless the archivist says
    the year (never taken from the title line by guess)."""
    data = csv_inventory(["MỤC LỤC HỒ SƠ NĂM 2019;;", "TT;Hồ sơ số;Tiêu đề hồ sơ",
                          "1;01;Hồ sơ tiếp dân", "2;02;Hồ sơ đất đai;1998"])  # fmt: skip
    refused = read(data, "x.csv", ORGAN)
    assert [p.line for p in refused.problems] == [3, 4]
    assert refused.problems[0].en.startswith("no year")
    preview = read(data, "x.csv", ORGAN, year=2019)
    assert [r.code for r in preview.rows] == [f"{ORGAN}.2019.01", f"{ORGAN}.2019.02"]
    with pytest.raises(InventoryError, match="year 19 is not valid"):
        read(data, "x.csv", ORGAN, year=19)


def test_mapping_override_for_a_header_it_does_not_know() -> None:
    wb = Workbook()
    ws = wb.active
    ws.append(["Số TT", "Số hồ sơ lưu", "Tiêu đề hồ sơ", "Năm", "Số trang"])
    ws.append([1, "17", "Hồ sơ giải quyết khiếu nại", 2018, 12])
    buf = io.BytesIO()
    wb.save(buf)
    with pytest.raises(InventoryError, match="no code column"):
        read(buf.getvalue(), "x.xlsx", ORGAN)
    preview = read(buf.getvalue(), "x.xlsx", ORGAN, {"code": "B"})
    assert [r.code for r in preview.rows] == [f"{ORGAN}.2018.17"]


def test_broken_inventories_are_refused_line_by_line() -> None:
    data = danh_muc([
        [1, f"{ORGAN}.2019.01", "Hồ sơ một", "2019", "VV", 10, ""],
        [2, f"{ORGAN}.2019.01", "Hồ sơ trùng mã", "2019", "VV", 10, ""],
        [3, f"{ORGAN}.2019.03", "Hồ sơ ngày sai", "31/02/2019", "VV", 10, ""],
        [4, f"{ORGAN}.2019.04", "Hồ sơ số trang chữ", "2019", "VV", "khoảng 50", ""],
        [5, f"{ORGAN}.2019.05", "Hồ sơ thời hạn lạ", "2019", "mãi mãi", 10, ""],
        [6, "", "Hồ sơ không mã", "2019", "VV", 10, ""],
        [7, "05/HS", "Ký hiệu có gạch chéo", "2019", "VV", 10, ""],
        [8, "09", "Không có năm", "", "VV", 10, ""],
        [9, "999.99.99.X01.2019.01", "Mã cơ quan khác", "2019", "VV", 10, ""],
    ])  # fmt: skip
    preview = read(data, "hong.xlsx", ORGAN)
    assert not preview.ok
    assert [r.line for r in preview.rows] == [4]
    why = {p.line: p.en for p in preview.problems}
    assert why[5] == f"code {ORGAN}.2019.01 repeats line 4"
    assert why[6].startswith("unreadable date: 31/02/2019")
    assert why[7] == "pages is not a number: 'khoảng 50'"
    assert why[8].startswith("retention not understood: 'mãi mãi'")
    assert why[9] == "no code"
    assert why[10].startswith("file notation '05/HS'")
    assert why[11].startswith("no year")
    assert why[12] == f"code 999.99.99.X01.2019.01 is of organisation 999.99.99.X01, not {ORGAN}"
    assert all(p.vi for p in preview.problems)  # Vietnamese first


def test_files_that_are_not_inventories() -> None:
    with pytest.raises(InventoryError, match="no header line"):
        read(danh_muc([])[:0] or csv_inventory(["a;b;c", "1;2;3"]), "x.csv", ORGAN)
    with pytest.raises(InventoryError, match=r"\.xls"):
        read(b"\xd0\xcf\x11\xe0", "cu.xls", ORGAN)
    with pytest.raises(InventoryError, match="readable"):
        read(b"PK\x03\x04 broken", "x.xlsx", ORGAN)
    with pytest.raises(InventoryError, match="UTF-8"):
        read("TT;Mã;Tiêu đề".encode("utf-16"), "x.csv", ORGAN)


def test_import_is_all_or_nothing(database: Path | str) -> None:
    db = Database(database)
    good = read(muc_luc("xã Tân Lập", COMMUNE_A), "muc-luc.xlsx", ORGAN)
    broken = read(
        danh_muc([[1, f"{ORGAN}.2019.09", "Hồ sơ", "2019", "VV", "mười", ""]]), "b.xlsx", ORGAN
    )
    with pytest.raises(inventory.ImportRefused) as refused:
        import_plan(db, "TANLAP", broken, "lan", "b.xlsx")
    assert refused.value.problems[0].line == 4
    assert inventory.planned(db, "TANLAP") == []
    done = import_plan(db, "TANLAP", good, "lan", "muc-luc.xlsx")
    assert (done.rows, done.pages) == (3, 176)
    plan = inventory.planned(db, "TANLAP")
    assert [p["code"] for p in plan] == [r.code for r in good.rows]
    assert plan[0]["bat_dau"] == "2019-03-14" and plan[0]["source"] == "muc-luc.xlsx"
    # The same inventory again, with one new line: refused as a whole, nothing added.
    again = read(
        muc_luc("xã Tân Lập", [*COMMUNE_A, ("04", "Hồ sơ mới", "2019", None, "VV", 1, 2)]),
        "muc-luc-2.xlsx", ORGAN,
    )  # fmt: skip
    with pytest.raises(inventory.ImportRefused) as clash:
        import_plan(db, "TANLAP", again, "lan", "muc-luc-2.xlsx")
    assert len(clash.value.problems) == 3
    assert "already planned" in clash.value.problems[0].en
    assert len(inventory.planned(db, "TANLAP")) == 3
    entries = [e for e in audit.recent(db) if e["action"] == "plan.import"]
    assert len(entries) == 1 and entries[0]["target"] == "TANLAP"


def test_cli_preview_refuse_import(tmp_path: Path) -> None:
    """`sohoa-server inventory import`: --preview stores nothing; a refused line exits 2 with
    the line and reason on stderr and stores nothing; a good file is stored."""
    data_dir = tmp_path / "server"
    db = Database(data_dir / "archive.sqlite3")
    fonds.create(db, "XL", "UBND xã Xuân La", organ_id=ORGAN)
    db.close()
    good, bad = tmp_path / "muc-luc.xlsx", tmp_path / "hong.csv"
    good.write_bytes(muc_luc("xã Xuân La", COMMUNE_A))
    bad.write_bytes(csv_inventory(["TT;Ký hiệu hồ sơ;Tiêu đề hồ sơ;Năm;Số trang",
                                   "1;01;Hồ sơ một;2019;mười"]))  # fmt: skip
    env = {"SOHOA_SERVER_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "sohoa-server"), "inventory", "import", *args],
                              env=env, capture_output=True, text=True, timeout=120)  # fmt: skip

    out = cli(str(good), "--fonds", "XL", "--preview")
    assert out.returncode == 0, out.stderr
    assert "3 hồ sơ, 176 pages" in out.stdout and f"{ORGAN}.2019.03" in out.stdout
    out = cli(str(bad), "--fonds", "XL")
    assert out.returncode == 2
    assert "line 2: số trang không phải là số" in out.stderr and "nothing imported" in out.stderr
    out = cli(str(good), "--fonds", "NOPE")
    assert out.returncode == 2 and "no fonds NOPE" in out.stderr
    assert inventory.planned(Database(data_dir / "archive.sqlite3")) == []
    out = cli(str(good), "--fonds", "XL", "--column", "note=")
    assert out.returncode == 0, out.stderr
    assert "imported 3 hồ sơ (176 pages) into the plan of XL" in out.stdout
    assert len(inventory.planned(Database(data_dir / "archive.sqlite3"), "XL")) == 3


@pytest.mark.parametrize(
    ("cell", "span"),
    [
        ("14/3/2019", ("2019-03-14", "2019-03-14")),
        ("14.03.2019", ("2019-03-14", "2019-03-14")),
        ("2019-03-14", ("2019-03-14", "2019-03-14")),  # ISO, as software exports it
        ("ngày 5 tháng 3 năm 2019", ("2019-03-05", "2019-03-05")),
        ("tháng 3/2019", ("2019-03-01", "2019-03-31")),
        ("năm 2019", ("2019-01-01", "2019-12-31")),
        ("Từ 1998 đến 2003", ("1998-01-01", "2003-12-31")),
        ("1998–2003", ("1998-01-01", "2003-12-31")),
        ("02/01/1995\n28/12/1995", ("1995-01-02", "1995-12-28")),
        (dt.datetime(2019, 3, 14), ("2019-03-14", "2019-03-14")),
        (2019, ("2019-01-01", "2019-12-31")),
    ],
)
def test_vietnamese_dates(cell: object, span: tuple[str, str]) -> None:
    got = inventory.parse_span(cell)
    assert got is not None and (got[0].isoformat(), got[1].isoformat()) == span


@pytest.mark.parametrize("cell", ["31/02/2019", "khoảng 2019", "19/3", "2019?", 12.5])
def test_dates_it_refuses(cell: object) -> None:
    with pytest.raises(ValueError, match=r"\S"):  # the cell, as the line's reason quotes it
        inventory.parse_span(cell)


def test_headers_of_older_inventories() -> None:
    """ "Đơn vị bảo quản" (a box or file number) is no retention period; "Thời hạn BQ" is."""
    labels = ["STT", "Hộp số", "Số ĐVBQ", "Hồ sơ số", "Tiêu đề hồ sơ", "Thời hạn BQ",
              "Đơn vị bảo quản", "Số tờ"]  # fmt: skip
    assert inventory.auto_mapping(labels) == {
        "stt": 0, "code": 3, "title": 4, "retention": 5, "sheets": 7
    }  # fmt: skip
