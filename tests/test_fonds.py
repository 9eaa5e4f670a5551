"""Phông lưu trữ (server.archive.fonds) and the 2025 reorganisation as data
(server.archive.units), on both engines (the ``database`` fixture: SQLite and a real
PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from server.archive import fonds, units
from server.archive.fonds import FondsError
from server.store.db import Database

# The demo merger (from the library's data, not typed here): xã Xuân La and xã An Thắng of
# huyện Pác Nặm, tỉnh Bắc Kạn, became part of xã Nghiên Loan, tỉnh Thái Nguyên.
XUAN_LA = "old:01873"
NGHIEN_LOAN_NEW = "new:01882"


def _merger(db: Database) -> None:
    fonds.create(db, "NL", "UBND xã Nghiên Loan", organ_id="H19.NL",
                 unit_code=NGHIEN_LOAN_NEW, opened="2025-07-01")  # fmt: skip
    fonds.create(db, "XL", "UBND xã Xuân La", organ_id="H06.XL", unit_code=XUAN_LA,
                 opened=dt.date(1976, 1, 1))  # fmt: skip


def test_units_come_from_the_library_old_and_new() -> None:
    old = units.unit(XUAN_LA)
    assert old is not None and old.name == "Xã Xuân La" and old.district == "Huyện Pác Nặm"
    after = units.successor(XUAN_LA)
    assert after is not None and after.code == NGHIEN_LOAN_NEW
    assert after.province == "Tỉnh Thái Nguyên"
    province = units.successor("old:p06")
    assert province is not None and province.name == "Tỉnh Thái Nguyên"
    assert units.successor("old:d060") is None  # districts ended on 1 July 2025
    assert units.find("pac nam")[0].code == "old:d060"  # without diacritics
    assert {u.code for u in units.find("xã Nghiên Loan")} >= {"old:01882", NGHIEN_LOAN_NEW}
    with pytest.raises(units.UnitError):
        units.unit("01873")  # no era: ambiguous, refused


def test_fonds_lifecycle_and_lineage(database: Path | str) -> None:
    db = Database(database)
    _merger(db)
    with pytest.raises(FondsError) as refused:
        fonds.create(db, "XL2", "again", organ_id="H06.XL")
    assert refused.value.reason == "organ_taken"
    with pytest.raises(FondsError):
        fonds.create(db, "bad code", "x")
    with pytest.raises(FondsError):
        fonds.create(db, "U1", "x", unit_code="old:99999")

    closed = fonds.close(db, "XL", closed="2025-06-30", merged_into="NL", deadline="2026-03-31")
    assert closed.status == "closed" and closed.merged_into == "NL"
    assert closed.closed == dt.date(2025, 6, 30) and closed.deadline == dt.date(2026, 3, 31)
    assert [f.code for f in fonds.list(db)] == ["NL", "XL"]
    assert [f.code for f in fonds.list(db, status="open")] == ["NL"]
    assert fonds.for_organ(db, "H06.XL") == closed
    assert fonds.for_organ(db, "H99") is None

    line = fonds.lineage(db, "XL")
    assert line.commune == ("Xã Xuân La", "Xã Nghiên Loan")
    assert line.district == ("Huyện Pác Nặm", "")
    assert line.province == ("Tỉnh Bắc Kạn", "Tỉnh Thái Nguyên")
    commune, district, province = fonds.lineage(db, "NL")
    assert commune.new == "Xã Nghiên Loan" and province.new == "Tỉnh Thái Nguyên"
    assert not district.old and not district.new
    names = fonds.search_names(db, "XL")
    assert {"Xã Xuân La", "Huyện Pác Nặm", "Tỉnh Bắc Kạn", "UBND xã Nghiên Loan"} <= set(names)

    with pytest.raises(FondsError):
        fonds.update(db, "NL", merged_into="NL")
    with pytest.raises(FondsError):
        fonds.update(db, "NL", status="gone")
    rows = db.read().execute("SELECT action, target FROM audit ORDER BY id").fetchall()
    assert [(r[0], r[1]) for r in rows] == [
        ("fonds.create", "NL"), ("fonds.create", "XL"), ("fonds.edit", "XL")
    ]  # fmt: skip
