"""The plan to measure against: a fonds' paper inventory (Danh mục / Mục lục hồ sơ), kept by
the office in Excel, imported as the hồ sơ it is expected to hand over (``planned_ho_so``).

Reading an inventory (:func:`read`) is pure: the file's rows become a :class:`Preview` —
the header it found, how its columns map onto the fields below, the planned hồ sơ, the lines
it skipped (blank, headings, "Tổng cộng" totals, signatures) and the lines it refuses, each
with its line number and a reason (Vietnamese and English). What offices' sheets look like,
and what is handled:

* ``.xlsx`` (openpyxl) and ``.csv`` (UTF-8, ``,`` ``;`` or tab). Old ``.xls`` is refused
  with the advice to save as ``.xlsx``.
* Title lines above the header (the office, "MỤC LỤC HỒ SƠ", the year); the header is the
  row that names most fields, possibly spread over two rows with merged cells ("Thời gian
  tài liệu" over "Bắt đầu" / "Kết thúc", "Số lượng" over "Tờ" / "Trang"); a row of column
  numbers ("(1) (2) (3)…") under it.
* Dates as Excel dates, ``dd/mm/yyyy`` (also ``-`` and ``.``), ``mm/yyyy``, ``yyyy``,
  "năm 2019", and periods "1998-2003" or "01/02/2019 - 31/12/2019" in one column.
* Retention "Vĩnh viễn" (or "VV") and "N năm" (or a bare number of years).
* The code: a full mã hồ sơ (``<mã định danh>.<năm>.<ký hiệu>``) or the số và ký hiệu hồ sơ
  alone, made into the full code with the fonds' mã định danh and the hồ sơ's year (the
  "Năm" column, else its first date) — never guessed when there is no year.

Storing (:func:`import_plan`) is all or nothing: a preview with any refused line, or a code
already in the fonds' plan, stores nothing; otherwise every row in one transaction, audited.

Owns: ``planned_ho_so``. Must not: create hồ sơ (the plan is what is expected, the catalogue
what was described) or guess a code, a year or a page count a line does not give.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from server.archive import audit
from server.archive.records import NOTATION, ORGAN_ID
from server.store.db import Database, fold

# Fields an inventory column can map to, with the patterns (on the folded, lower-case header
# text) that recognise them, most specific first. The first field whose pattern matches wins.
FIELDS: dict[str, str] = {
    "start": r"bat dau|tu ngay",
    "end": r"ket thuc|den ngay",
    "code": r"ma ho so|ky hieu ho so|so hieu ho so|ho so so\b|^so ho so$|^ma hs$|^(so )?ky hieu$",
    "title": r"tieu de|ten ho so|trich yeu",
    "retention": r"bao quan|thbq|thoi han",
    "pages": r"\btrang\b",
    "sheets": r"\bto\b",
    "documents": r"van ban",
    "note": r"ghi chu",
    "year": r"^nam\b|nam hinh thanh",
    "period": r"thoi gian",
    "stt": r"^s\.? ?tt\b|^stt\b|so thu tu|^tt$|^so tt",
}
LABELS = {
    "stt": ("Số TT", "No."),
    "code": ("Mã / số và ký hiệu hồ sơ", "File code / notation"),
    "title": ("Tiêu đề hồ sơ", "Title"),
    "start": ("Thời gian bắt đầu", "Start date"),
    "end": ("Thời gian kết thúc", "End date"),
    "period": ("Thời gian tài liệu", "Dates"),
    "year": ("Năm", "Year"),
    "retention": ("Thời hạn bảo quản", "Retention"),
    "pages": ("Số trang", "Pages"),
    "sheets": ("Số tờ", "Sheets"),
    "documents": ("Số văn bản", "Documents"),
    "note": ("Ghi chú", "Note"),
}
# Columns of older inventories that name no field here although their words would: the
# storage unit (đơn vị bảo quản, a box or file number from a chỉnh lý) is no retention period.
IGNORED = r"don vi bao quan|dvbq|^hop( so)?$|^cap so$|^hop/cap"
HEADER_SEARCH = 30  # rows looked at for the header
MAX_ROWS = 100_000
FULL_CODE = re.compile(r"^(?P<organ>[0-9A-Za-z.]{1,13}?)\.(?P<nam>\d{4})\.(?P<ky_hieu>[^|]{1,20})$")
TOTALS = re.compile(r"^(tong cong|tong so|cong)\b")


class InventoryError(Exception):
    """The file as a whole cannot be read (not an inventory, wrong format)."""


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based, as the spreadsheet numbers it
    vi: str
    en: str


@dataclass
class PlannedHoSo:
    code: str  # the full mã hồ sơ
    ky_hieu: str
    nam: int
    tieu_de: str
    line: int
    so_tt: int | None = None
    bat_dau: dt.date | None = None
    ket_thuc: dt.date | None = None
    thoi_han: str = ""  # "Vĩnh viễn" | "N năm" | "" (not given)
    so_trang: int | None = None
    so_to: int | None = None
    so_van_ban: int | None = None
    ghi_chu: str = ""

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["bat_dau"] = self.bat_dau.isoformat() if self.bat_dau else None
        data["ket_thuc"] = self.ket_thuc.isoformat() if self.ket_thuc else None
        return data


@dataclass
class Preview:
    """What an inventory file holds, before anything is stored."""

    header_lines: list[int] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # header text per column
    mapping: dict[str, int] = field(default_factory=dict)  # field → 0-based column
    sheet: str = ""  # the workbook's sheet read ("" for a CSV)
    rows: list[PlannedHoSo] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)  # not hồ sơ lines, with why

    @property
    def ok(self) -> bool:
        return bool(self.rows) and not self.problems

    @property
    def pages(self) -> int:
        return sum(r.so_trang or 0 for r in self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "sheet": self.sheet,
            "header_lines": self.header_lines,
            "columns": self.columns,
            "mapping": {k: column_letter(v) for k, v in self.mapping.items()},
            "rows": [r.as_dict() for r in self.rows],
            "problems": [asdict(p) for p in self.problems],
            "skipped": [asdict(p) for p in self.skipped],
            "pages": self.pages,
        }


def column_letter(index: int) -> str:
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


def column_index(letter: str) -> int:
    n = 0
    for ch in letter.strip().upper():
        if not "A" <= ch <= "Z":
            raise ValueError(f"{letter!r} is not a column letter")
        n = n * 26 + ord(ch) - 64
    if n == 0:
        raise ValueError("empty column letter")
    return n - 1


# -- reading the file ---------------------------------------------------------------------


def load_sheets(data: bytes, name: str) -> list[tuple[str, list[list[Any]]]]:
    """Each sheet's name and cells, row by row (merged cells carry their value into every
    cell they cover, as a reader sees them). A CSV is one sheet."""
    suffix = Path(name).suffix.lower()
    if suffix == ".xls":
        raise InventoryError(
            "tệp .xls (Excel cũ): hãy lưu lại thành .xlsx / old .xls file: save it as .xlsx"
        )
    if suffix == ".csv":
        return [("", _csv_rows(data))]
    if suffix in (".xlsx", ".xlsm") or data[:2] == b"PK":
        return _xlsx_sheets(data)
    raise InventoryError(f"không đọc được tệp {name} / not an .xlsx or .csv file: {name}")


def _xlsx_sheets(data: bytes) -> list[tuple[str, list[list[Any]]]]:
    from zipfile import BadZipFile

    from openpyxl import load_workbook  # type: ignore[import-untyped]

    try:
        wb = load_workbook(io.BytesIO(data), data_only=True)
    except (BadZipFile, KeyError, ValueError, OSError) as exc:
        raise InventoryError(f"tệp Excel hỏng / not a readable .xlsx file: {exc}") from exc
    sheets = []
    for ws in wb.worksheets:
        if ws.max_row > MAX_ROWS:
            raise InventoryError(f"quá {MAX_ROWS} dòng / more than {MAX_ROWS} lines")
        rows = [list(r) for r in ws.iter_rows(values_only=True)]
        for merged in ws.merged_cells.ranges:
            value = ws.cell(merged.min_row, merged.min_col).value
            for r in range(merged.min_row, min(merged.max_row, len(rows)) + 1):
                for c in range(merged.min_col, merged.max_col + 1):
                    row = rows[r - 1]
                    while len(row) < c:
                        row.append(None)
                    row[c - 1] = value
        sheets.append((str(ws.title), rows))
    return sheets


def _csv_rows(data: bytes) -> list[list[Any]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InventoryError(
            "tệp CSV không phải UTF-8: hãy lưu lại với bảng mã UTF-8 / the CSV is not UTF-8"
        ) from exc
    sample = text[:4096]
    delimiter = max((",", ";", "\t"), key=sample.count)
    return [list(r) for r in csv.reader(io.StringIO(text), delimiter=delimiter)]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return unicodedata.normalize("NFC", " ".join(str(value).split()))


def _field_of(label: str) -> str | None:
    folded = fold(label).strip(" .:*")
    if not folded:
        return None
    if re.search(IGNORED, folded):
        return None
    if re.search(r"bat dau.*ket thuc|tu ngay.*den ngay", folded):
        return "period"  # "Ngày tháng năm bắt đầu và kết thúc": both in one column
    for name, pattern in FIELDS.items():
        if re.search(pattern, folded):
            return name
    return None


def _is_numbering(row: list[str]) -> bool:
    """The row of column numbers under a header: "(1) (2) (3)…" or "1 2 3…"."""
    cells = [c for c in row if c]
    return len(cells) >= 3 and (
        all(re.fullmatch(r"\(?\d{1,2}\)?", c) for c in cells)
        or all(re.fullmatch(r"\(?[A-Z]\)?", c) for c in cells)
    )


def _find_header(texts: list[list[str]]) -> tuple[list[int], list[str]]:
    """The header line(s) and each column's label (two rows joined when the second one
    refines the first)."""
    best, best_score = -1, 0
    for i, row in enumerate(texts[:HEADER_SEARCH]):
        fields = {_field_of(c) for c in row if c} - {None}
        score = len(fields) + (2 if {"code", "title"} <= fields else 0)
        if score > best_score:
            best, best_score = i, score
    if best < 0 or best_score < 3:
        raise InventoryError(
            "không tìm thấy dòng tiêu đề cột (Số TT, Mã hồ sơ, Tiêu đề hồ sơ…)"
            " / no header line found (Số TT, Mã hồ sơ, Tiêu đề hồ sơ…)"
        )
    width = max(len(r) for r in texts)

    def padded(i: int) -> list[str]:
        return texts[i] + [""] * (width - len(texts[i]))

    def refines(top: list[str], below: list[str]) -> bool:
        # A sub-header ("Bắt đầu" / "Kết thúc" under a merged "Thời gian tài liệu"): every
        # cell repeats the one above (a vertical merge) or names a field by itself.
        # The row above must name a field itself: a blank line or a title merged across
        # ("MỤC LỤC HỒ SƠ") is no part of the header.
        if not any(_field_of(a) for a in top if a):
            return False
        sub = [(a, b) for a, b in zip(top, below, strict=True) if b]
        return (
            bool(sub)
            and any(a != b for a, b in sub)
            and all(a == b or _field_of(b) for a, b in sub)
        )

    lines = [best]
    if best > 0 and refines(padded(best - 1), padded(best)):
        lines = [best - 1, best]
    elif best + 1 < len(texts) and refines(padded(best), padded(best + 1)):
        lines = [best, best + 1]
    labels = padded(lines[0])
    if len(lines) == 2:
        labels = [
            a if (not b or a == b) else (f"{a} {b}" if a else b)
            for a, b in zip(labels, padded(lines[1]), strict=True)
        ]
    return lines, labels


def auto_mapping(labels: list[str]) -> dict[str, int]:
    mapping: dict[str, int] = {}
    for i, label in enumerate(labels):
        name = _field_of(label)
        if name is not None and name not in mapping:
            mapping[name] = i
    return mapping


def read(
    data: bytes,
    name: str,
    organ_id: str,
    override: dict[str, str] | None = None,
    year: int | None = None,
) -> Preview:
    """Read an inventory file into a :class:`Preview` (see the module's docstring).
    ``override`` maps a field to a column letter ("code": "B"), or to "" to ignore it.
    ``year``: the year the archivist says the whole inventory is of ("Mục lục hồ sơ năm
    2019" with no date on its lines), for lines that give none themselves."""
    if year is not None and not 1000 <= year <= 9999:
        raise InventoryError(f"năm {year} không hợp lệ / year {year} is not valid")
    if not ORGAN_ID.match(organ_id):
        raise InventoryError(f"mã định danh {organ_id!r} is not valid")
    # The first sheet with a header line (a workbook may open on a cover or an instructions
    # sheet).
    first_error: InventoryError | None = None
    for sheet, raw in load_sheets(data, name):  # noqa: B007 (sheet is read after the break)
        texts = [[_text(c) for c in row] for row in raw]
        if not any(any(r) for r in texts):
            first_error = first_error or InventoryError("tệp trống / the file is empty")
            continue
        try:
            header_lines, labels = _find_header(texts)
        except InventoryError as exc:
            first_error = first_error or exc
            continue
        break
    else:
        assert first_error is not None
        raise first_error
    mapping = auto_mapping(labels)
    for key, letter in (override or {}).items():
        if key not in FIELDS:
            raise InventoryError(f"không có trường {key!r} / no field {key!r}")
        if letter:
            mapping[key] = column_index(letter)
        else:
            mapping.pop(key, None)
    preview = Preview([n + 1 for n in header_lines], labels, mapping, sheet=sheet)
    if "code" not in mapping:
        raise InventoryError(
            "không có cột mã hồ sơ / số và ký hiệu hồ sơ; hãy chỉ định cột"
            " / no code column (Mã hồ sơ / Số và ký hiệu hồ sơ): name it"
        )
    if "title" not in mapping:
        raise InventoryError(
            "không có cột tiêu đề hồ sơ; hãy chỉ định cột / no title column: name it"
        )
    seen: dict[str, int] = {}
    start = header_lines[-1] + 1
    for i in range(start, len(raw)):
        line = i + 1
        cells = texts[i]
        if not any(cells) or _is_numbering(cells):
            continue
        first = fold(next(c for c in cells if c))
        if TOTALS.match(first):
            preview.skipped.append(Problem(line, "dòng tổng cộng", "totals line"))
            if first.startswith("tong cong"):  # the grand total: signatures follow
                rest = sum(1 for r in texts[i + 1 :] if any(r))
                if rest:
                    preview.skipped.append(
                        Problem(line, f"{rest} dòng sau dòng tổng cộng không đọc",
                                f"{rest} lines after the totals line not read")
                    )  # fmt: skip
                break
            continue
        got = {k: raw[i][c] if c < len(raw[i]) else None for k, c in mapping.items()}
        code_text = _text(got.get("code"))
        # A heading ("II. VĂN BẢN CHỈ ĐẠO", numbered "II" or "A") gives no code and nothing
        # but text; a hồ sơ line without its code still has a number, a date or a count.
        others = [
            k
            for k, v in got.items()
            if _text(v)
            and k not in ("code", "title", "note")
            and (k != "stt" or _text(v).isdigit())
        ]
        title_text = _text(got.get("title"))
        # A group heading may stand in the code column ("TỔ CHỨC - CÁN BỘ"): no title, nothing
        # else, and words no code has (spaces).
        heading_as_code = (
            not title_text and not others and " " in code_text and not FULL_CODE.match(code_text)
        )
        if (not code_text and not others) or code_text == title_text or heading_as_code:
            preview.skipped.append(
                Problem(line, "không phải dòng hồ sơ (đề mục, chữ ký…)",
                        "not a hồ sơ line (a heading, a signature…)")
            )  # fmt: skip
            continue
        row, problem = _row(got, line, organ_id, year)
        if problem is not None:
            preview.problems.append(problem)
            continue
        assert row is not None
        if row.code in seen:
            preview.problems.append(
                Problem(line, f"mã hồ sơ {row.code} trùng với dòng {seen[row.code]}",
                        f"code {row.code} repeats line {seen[row.code]}")
            )  # fmt: skip
            continue
        seen[row.code] = line
        preview.rows.append(row)
    return preview


def _row(
    got: dict[str, Any], line: int, organ_id: str, default_year: int | None = None
) -> tuple[PlannedHoSo | None, Problem | None]:
    def bad(vi: str, en: str) -> tuple[None, Problem]:
        return None, Problem(line, vi, en)

    code_text = _text(got.get("code"))
    if re.fullmatch(r"\d+\.", code_text):  # "1." numbered as a list: the number is the code
        code_text = code_text[:-1]
    title = _text(got.get("title"))
    if not code_text:
        return bad("thiếu mã / số và ký hiệu hồ sơ", "no code")
    if not title:
        return bad("thiếu tiêu đề hồ sơ", "no title")
    if len(title) > 500:
        return bad("tiêu đề dài quá 500 ký tự", "title longer than 500 characters")
    try:
        start, end = _dates(got)
    except ValueError as exc:
        return bad(f"ngày không đọc được: {exc}", f"unreadable date: {exc}")
    if start and end and start > end:
        return bad("ngày bắt đầu sau ngày kết thúc", "start date after end date")
    stt = _text(got.get("stt")).rstrip(".")
    numbers: dict[str, int | None] = {"stt": int(stt) if stt.isdigit() else None}
    for key, vi in (("pages", "số trang"), ("sheets", "số tờ"),
                    ("documents", "số văn bản")):  # fmt: skip
        try:
            numbers[key] = _count(got.get(key))
        except ValueError:
            return bad(
                f"{vi} không phải là số: {_text(got.get(key))!r}",
                f"{LABELS[key][1].lower()} is not a number: {_text(got.get(key))!r}",
            )
    try:
        retention = _retention(got.get("retention"))
    except ValueError:
        text = _text(got.get("retention"))
        return bad(
            f"thời hạn bảo quản không hợp lệ: {text!r} (Vĩnh viễn hoặc số năm)",
            f"retention not understood: {text!r} (Vĩnh viễn or a number of years)",
        )
    full = FULL_CODE.match(code_text)
    if full and ORGAN_ID.match(full["organ"]) and NOTATION.match(full["ky_hieu"]):
        if full["organ"] != organ_id:
            return bad(
                f"mã hồ sơ {code_text} thuộc cơ quan {full['organ']}, không phải {organ_id}",
                f"code {code_text} is of organisation {full['organ']}, not {organ_id}",
            )
        ky_hieu, nam = full["ky_hieu"], int(full["nam"])
    else:
        ky_hieu = code_text
        if not NOTATION.match(ky_hieu):
            return bad(
                f"số và ký hiệu hồ sơ {ky_hieu!r}: 1–20 chữ, số, '.', '_', '-'",
                f"file notation {ky_hieu!r}: 1-20 letters, digits, '.', '_', '-'",
            )
        year = _year(got.get("year"))
        nam_or_none = year or (start.year if start else end.year if end else default_year)
        if nam_or_none is None:
            return bad(
                "không có năm để lập mã hồ sơ (cột Năm, thời gian tài liệu, hoặc ghi năm"
                " của cả mục lục)",
                "no year to make the mã hồ sơ (a Năm or a date column, or the inventory's"
                " year given)",
            )
        nam = nam_or_none
    return PlannedHoSo(
        code=f"{organ_id}.{nam}.{ky_hieu}", ky_hieu=ky_hieu, nam=nam, tieu_de=title,
        line=line, so_tt=numbers["stt"], bat_dau=start, ket_thuc=end, thoi_han=retention,
        so_trang=numbers["pages"], so_to=numbers["sheets"], so_van_ban=numbers["documents"],
        ghi_chu=_text(got.get("note"))[:500],
    ), None  # fmt: skip


def _count(value: Any) -> int | None:
    if value is None or _text(value) in ("", "-", "–", "—", "x", "X"):
        return None
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        n = value
    elif isinstance(value, float):
        if not value.is_integer():
            raise ValueError(value)
        n = int(value)
    else:
        text = _text(value)
        # Vietnamese thousands: "1.234"; also "1 234".
        if not re.fullmatch(r"\d{1,3}([. ]\d{3})*|\d+", text):
            raise ValueError(value)
        n = int(re.sub(r"[. ]", "", text))
    if not 0 <= n <= 10_000_000:
        raise ValueError(value)
    return n


def _retention(value: Any) -> str:
    text = fold(_text(value)).lower().strip(" .")
    if not text:
        return ""
    if text in ("vinh vien", "vv"):
        return "Vĩnh viễn"
    # The categories before 2011 (Luật Lưu trữ 2011 replaced them with numbers of years):
    # old inventories still carry them; kept as written.
    if text in ("lau dai", "tam thoi"):
        return {"lau dai": "Lâu dài", "tam thoi": "Tạm thời"}[text]
    match = re.fullmatch(r"(\d{1,2})( nam)?", text)
    if match and 1 <= int(match[1]) <= 99:
        return f"{int(match[1])} năm"
    raise ValueError(value)


def _year(value: Any) -> int | None:
    text = _text(value)
    if not text:
        return None
    match = re.fullmatch(r"(?:năm |nam )?(\d{4})", text, re.IGNORECASE)
    if match and 1000 <= int(match[1]) <= 9999:
        return int(match[1])
    return None


DATE = re.compile(
    r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})|(\d{1,2})[/.-](\d{4})|(\d{4})(?:-(\d{2})-(\d{2}))?"
)


def parse_span(value: Any) -> tuple[dt.date, dt.date] | None:
    """A cell as the first and last day it may mean: a date is itself, "03/2019" its month,
    "2019" / "năm 2019" its year, "1998-2003" or "01/02/2019 - 31/12/2019" the span."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date(), value.date()
    if isinstance(value, dt.date):
        return value, value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if float(value).is_integer() and 1000 <= value <= 9999:
            y = int(value)
            return dt.date(y, 1, 1), dt.date(y, 12, 31)
        raise ValueError(_text(value))
    text = fold(_text(value)).lower()
    text = re.sub(r"ngay (\d{1,2}) thang (\d{1,2}) nam (\d{4})", r"\1/\2/\3", text)
    text = re.sub(r"\b(nam|thang|ngay)\s+", "", text)
    days: list[dt.date] = []
    rest = text
    for match in DATE.finditer(text):
        try:
            if match[3]:
                d = dt.date(int(match[3]), int(match[2]), int(match[1]))
                days += [d, d]
            elif match[5]:
                y, m = int(match[5]), int(match[4])
                first = dt.date(y, m, 1)
                nxt = dt.date(y + m // 12, m % 12 + 1, 1)
                days += [first, nxt - dt.timedelta(days=1)]
            elif match[7]:  # ISO, as software exports write it
                d = dt.date(int(match[6]), int(match[7]), int(match[8]))
                days += [d, d]
            else:
                y = int(match[6])
                days += [dt.date(y, 1, 1), dt.date(y, 12, 31)]
        except ValueError as exc:
            raise ValueError(_text(value)) from exc
        rest = rest.replace(match[0], " ", 1)
    if not days or re.sub(r"[\s\-–—/,.]|\b(tu|den|toi)\b", "", rest):
        raise ValueError(_text(value))
    return min(days), max(days)


def _dates(got: dict[str, Any]) -> tuple[dt.date | None, dt.date | None]:
    start_span = parse_span(got.get("start"))
    end_span = parse_span(got.get("end"))
    period = parse_span(got.get("period"))
    start = start_span[0] if start_span else period[0] if period else None
    end = end_span[1] if end_span else period[1] if period else None
    return start, end


# -- storing the plan ---------------------------------------------------------------------


@dataclass(frozen=True)
class Imported:
    fonds_code: str
    rows: int
    pages: int


class ImportRefused(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"dòng {p.line}: {p.vi}" for p in problems[:5]))
        self.problems = problems


def import_plan(db: Database, fonds_code: str, preview: Preview, actor: str, source: str,
                ip: str = "") -> Imported:  # fmt: skip
    """Store a preview's planned hồ sơ for ``fonds_code``: all of them in one transaction, or
    none (a refused line, no rows, or a code the fonds' plan already holds)."""
    if preview.problems:
        raise ImportRefused(preview.problems)
    if not preview.rows:
        raise ImportRefused([Problem(0, "không có dòng hồ sơ nào", "no hồ sơ lines")])
    now = time.time()
    with db.tx() as con:
        have = {
            r["code"]: r["source"]
            for r in con.execute(
                "SELECT code, source FROM planned_ho_so WHERE fonds_code = ?", (fonds_code,)
            )
        }
        clashes = [
            Problem(r.line, f"mã hồ sơ {r.code} đã có trong kế hoạch (từ {have[r.code]})",
                    f"code {r.code} is already planned (from {have[r.code]})")
            for r in preview.rows if r.code in have
        ]  # fmt: skip
        if clashes:
            raise ImportRefused(clashes)
        con.executemany(
            "INSERT INTO planned_ho_so(fonds_code, code, ky_hieu, nam, tieu_de, so_tt,"
            " bat_dau, ket_thuc, thoi_han, so_trang, so_to, so_van_ban, ghi_chu, source,"
            " line, imported_at, imported_by) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (fonds_code, r.code, r.ky_hieu, r.nam, r.tieu_de, r.so_tt,
                 r.bat_dau.isoformat() if r.bat_dau else None,
                 r.ket_thuc.isoformat() if r.ket_thuc else None, r.thoi_han, r.so_trang,
                 r.so_to, r.so_van_ban, r.ghi_chu, source[:200], r.line, now, actor)
                for r in preview.rows
            ],
        )  # fmt: skip
        audit.append(
            con, actor, "plan.import", fonds_code,
            {"source": source[:200], "rows": len(preview.rows), "pages": preview.pages,
             "mapping": {k: column_letter(v) for k, v in preview.mapping.items()}},
            ip,
        )  # fmt: skip
    return Imported(fonds_code, len(preview.rows), preview.pages)


def planned(db: Database, fonds_code: str | None = None) -> list[dict[str, Any]]:
    """The plan (one fonds, or all), in inventory order."""
    sql = "SELECT * FROM planned_ho_so"
    args: tuple[Any, ...] = ()
    if fonds_code is not None:
        sql += " WHERE fonds_code = ?"
        args = (fonds_code,)
    rows = db.read().execute(sql + " ORDER BY fonds_code, line", args).fetchall()
    return [dict(r) for r in rows]


def preview_json(preview: Preview) -> str:
    return json.dumps(preview.as_dict(), ensure_ascii=False)


# -- matching scanned batches to the plan -------------------------------------------------
#
# A page counts for a planned hồ sơ when, in this order: it is in a văn bản of the hồ sơ with
# that code (staff catalogued it, or the cover-sheet split did); it follows, in its batch, a
# cover sheet carrying that code (the split may not have run yet); its batch was matched to
# it by hand (``plan_matches``). A code planned in two fonds matches neither by itself.


@dataclass
class Attribution:
    """Which planned hồ sơ each scanned page counts for."""

    planned: dict[str, str]  # code → fonds_code (codes planned once)
    of_page: dict[int, str] = field(default_factory=dict)  # page id → code
    batch_codes: dict[int, set[str]] = field(default_factory=dict)  # batch → codes
    batches: dict[int, dict[str, Any]] = field(default_factory=dict)  # every batch

    @cached_property
    def scanned(self) -> frozenset[str]:
        """The planned codes some scanned page counts for (ask once attributed)."""
        return frozenset(self.of_page.values())


def attribute(db: Database) -> Attribution:
    """Attribute every page to a planned hồ sơ (see above), in four queries."""
    con = db.read()
    count: dict[str, int] = {}
    fonds_of: dict[str, str] = {}
    for r in con.execute("SELECT fonds_code, code FROM planned_ho_so"):
        count[r["code"]] = count.get(r["code"], 0) + 1
        fonds_of[r["code"]] = r["fonds_code"]
    result = Attribution({c: f for c, f in fonds_of.items() if count[c] == 1})
    manual = {
        r["batch_pk"]: r["code"] for r in con.execute("SELECT batch_pk, code FROM plan_matches")
    }
    described = {
        r["page_pk"]: r["ma_ho_so"]
        for r in con.execute(
            "SELECT vp.page_pk, v.ma_ho_so FROM van_ban_pages vp"
            " JOIN van_ban v ON v.id = vp.van_ban_id"
        )
    }
    for r in con.execute(
        "SELECT b.id, b.device_id, b.batch_id, b.created_at, b.page_count, b.complete_at,"
        " b.fonds_code FROM batches b ORDER BY b.id"
    ):
        result.batches[r["id"]] = dict(r)
    current: tuple[int, str | None] = (-1, None)  # batch, the last cover sheet's code
    for r in con.execute(
        "SELECT p.id, p.batch_pk,"
        " CASE WHEN p.flags LIKE ? THEN p.decisions END AS sheet"
        " FROM pages p ORDER BY p.batch_pk, p.page_no",
        ("%separator%",),  # a parameter: a % in a literal breaks the ? -> %s rewrite
    ):
        batch = r["batch_pk"]
        if current[0] != batch:
            current = (batch, None)
        if r["sheet"] is not None:
            sheet = json.loads(r["sheet"] or "{}").get("cover_sheet") or {}
            current = (batch, str(sheet.get("ma_ho_so") or "") or None)
            continue  # the sheet itself is not a page of the hồ sơ
        code = described.get(r["id"]) or current[1] or manual.get(batch)
        if code is not None and code in result.planned:
            result.of_page[r["id"]] = code
            result.batch_codes.setdefault(batch, set()).add(code)
    return result


def unmatched_batches(db: Database, found: Attribution | None = None) -> list[dict[str, Any]]:
    """Complete batches none of whose pages counts for a planned hồ sơ: to match by hand."""
    found = found or attribute(db)
    return [
        b
        for pk, b in found.batches.items()
        if b["complete_at"] is not None and pk not in found.batch_codes
    ]


def unscanned(
    db: Database, fonds_code: str, found: Attribution | None = None
) -> list[dict[str, Any]]:
    """The fonds' planned hồ sơ no scanned page counts for yet."""
    return unscanned_by_fonds(db, [fonds_code], found)[fonds_code]


def unscanned_by_fonds(
    db: Database, fonds: list[str], found: Attribution | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Per fonds of ``fonds``, its planned hồ sơ no scanned page counts for yet (one reading
    of the plan for them all)."""
    found = found or attribute(db)
    out: dict[str, list[dict[str, Any]]] = {f: [] for f in fonds}
    rows = planned(db, fonds[0]) if len(fonds) == 1 else planned(db)
    for p in rows:
        if p["code"] not in found.scanned and p["fonds_code"] in out:
            out[p["fonds_code"]].append(p)
    return out


class MatchRefused(Exception):
    pass


def match_batch(db: Database, batch_pk: int, fonds_code: str, code: str, actor: str,
                ip: str = "") -> None:  # fmt: skip
    """Match a batch by hand to a planned hồ sơ (replacing an earlier hand match); refused
    for a hồ sơ of another fonds than the one the batch was scanned for. Audited."""
    with db.tx() as con:
        batch = con.execute("SELECT fonds_code FROM batches WHERE id = ?", (batch_pk,)).fetchone()
        if batch is None:
            raise MatchRefused(f"không có lô {batch_pk} / no batch {batch_pk}")
        if batch["fonds_code"] and batch["fonds_code"] != fonds_code:
            raise MatchRefused(
                f"lô {batch_pk} được quét cho phông {batch['fonds_code']}, không phải {fonds_code}"
                f" / batch {batch_pk} was scanned for fonds {batch['fonds_code']}, not {fonds_code}"
            )
        if (
            con.execute(
                "SELECT 1 FROM planned_ho_so WHERE fonds_code = ? AND code = ?", (fonds_code, code)
            ).fetchone()
            is None
        ):
            raise MatchRefused(
                f"{code} không có trong kế hoạch của phông {fonds_code}"
                f" / {code} is not planned in fonds {fonds_code}"
            )
        con.execute(
            "INSERT INTO plan_matches(batch_pk, fonds_code, code, matched_by, matched_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(batch_pk) DO UPDATE SET"
            " fonds_code = excluded.fonds_code, code = excluded.code,"
            " matched_by = excluded.matched_by, matched_at = excluded.matched_at",
            (batch_pk, fonds_code, code, actor, time.time()),
        )
        audit.append(con, actor, "plan.match", str(batch_pk),
                     {"fonds": fonds_code, "code": code}, ip)  # fmt: skip


def read_for_fonds(db: Database, fonds_code: str, data: bytes, name: str,
                   override: dict[str, str] | None = None,
                   year: int | None = None) -> Preview:  # fmt: skip
    """:func:`read` with the fonds' mã định danh (a fonds without one cannot have codes made)."""
    from server.archive import fonds

    found = fonds.get(db, fonds_code)
    if found is None:
        raise InventoryError(f"không có phông {fonds_code} / no fonds {fonds_code}")
    if not found.organ_id:
        raise InventoryError(
            f"phông {fonds_code} chưa có mã định danh cơ quan / fonds {fonds_code} has no"
            " mã định danh: set it first"
        )
    return read(data, name, found.organ_id, override, year)


def parse_override(pairs: list[str]) -> dict[str, str]:
    """``["code=B", "note="]`` → ``{"code": "B", "note": ""}`` (refusing unknown fields)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, letter = pair.partition("=")
        key = key.strip()
        if not sep or key not in FIELDS:
            raise InventoryError(
                f"{pair!r}: cần TRƯỜNG=CỘT, trường là một trong {', '.join(FIELDS)}"
                f" / {pair!r}: FIELD=LETTER, FIELD one of {', '.join(FIELDS)}"
            )
        if letter.strip():
            try:
                column_index(letter)
            except ValueError as exc:
                raise InventoryError(f"{pair!r}: {exc}") from exc
        out[key] = letter.strip().upper()
    return out
