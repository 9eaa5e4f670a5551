"""Phông lưu trữ (the archival fonds of one organisation) as a first-class record.

Every hồ sơ belongs to one fonds (``ho_so.fonds_code``), found from mã hồ sơ's organ part
(:func:`for_organ`: one organisation, one fonds). A commune merged in the 2025
reorganisation has its fonds closed and ``merged_into`` the new commune's fonds; the nộp lưu
of a closed fonds is server.archive.fonds_handover. Which units a fonds stands for, before
and after 2025, comes from server.archive.units (:func:`lineage`).

Owns: the ``fonds`` table, assigning hồ sơ to fonds, the names a fonds' records are found
by. Must not: know stations (server.fleet.registry keeps which fonds a station may scan
for), render, or guess a fonds — an organ id no fonds claims leaves the hồ sơ without one.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
import re
import time
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from server.archive import audit, units
from server.store.db import Connection, Database, Row, nfc

# Administrative level of the organisation whose fonds it is (Vietnamese first, English).
LEVELS: dict[str, tuple[str, str]] = {
    "xa": ("Xã", "Commune"),
    "phuong": ("Phường", "Ward"),
    "thi_tran": ("Thị trấn", "Township"),
    "dac_khu": ("Đặc khu", "Special zone"),
    "huyen": ("Huyện", "District"),
    "quan": ("Quận", "Urban district"),
    "thi_xa": ("Thị xã", "Town"),
    "thanh_pho": ("Thành phố", "City"),
    "tinh": ("Tỉnh", "Province"),
    "so": ("Sở, ngành", "Department"),
    "khac": ("Cơ quan khác", "Other organisation"),
}
STATUSES: dict[str, tuple[str, str]] = {
    "open": ("Đang hình thành", "Open"),
    "closing": ("Đang kết thúc", "Closing"),
    "closed": ("Đã kết thúc", "Closed"),
    "handed_over": ("Đã nộp lưu", "Handed over"),
}
# A fonds code travels in batch manifests and mã hồ sơ-like references: short, no spaces.
CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
ORGAN_ID = re.compile(r"^[A-Za-z0-9.\-]{1,13}$")  # as records.HoSo.organ_id


class FondsError(ValueError):
    """A refusal with a short reason code and a message for the admin."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Fonds:
    code: str
    name: str
    organ_id: str  # mã định danh of the organisation ("" when not yet known)
    level: str  # a key of LEVELS
    unit_code: str  # server.archive.units code ("" for a body that is no unit: a sở)
    opened: dt.date | None
    closed: dt.date | None
    status: str  # a key of STATUSES
    merged_into: str | None  # the fonds this one's organisation was merged into
    deadline: dt.date | None  # handover due

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("opened", "closed", "deadline"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


class Names(NamedTuple):
    """A place before and after the 2025 reorganisation ("" where there is none: a new
    commune has no district; a district has no successor)."""

    old: str
    new: str

    @property
    def label(self) -> str:
        return self.label_in("vi")

    def label_in(self, lang: str) -> str:
        """ "Xã Nghiên Loan (trước đây: Xã Xuân La)"; in English "(formerly: …)"."""
        if self.old and self.new and self.old != self.new:
            return f"{self.new} ({'trước đây' if lang == 'vi' else 'formerly'}: {self.old})"
        return self.new or self.old


def places_line(line: Lineage, lang: str = "vi") -> str:
    """A fonds' places on one line, each "now (formerly: …)": for lists and exports."""
    return " · ".join(p.label_in(lang) for p in line if p.label_in(lang))


class Lineage(NamedTuple):
    commune: Names
    district: Names
    province: Names


def _date(value: Any) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise FondsError("bad_date", f"{value!r} is not a date (YYYY-MM-DD)") from None


def _iso(value: Any) -> str | None:
    found = _date(value)
    return found.isoformat() if found else None


_COLUMNS = "code, name, organ_id, level, unit_code, opened, closed, status, merged_into, deadline"


def _fonds(row: Row) -> Fonds:
    return Fonds(
        code=str(row["code"]),
        name=str(row["name"]),
        organ_id=str(row["organ_id"]),
        level=str(row["level"]),
        unit_code=str(row["unit_code"]),
        opened=_date(row["opened"]),
        closed=_date(row["closed"]),
        status=str(row["status"]),
        merged_into=row["merged_into"],
        deadline=_date(row["deadline"]),
    )


def _check(con: Connection, fields: dict[str, Any], code: str) -> dict[str, Any]:
    """Validate and normalise the writable fields (NFC text, ISO dates)."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key in ("opened", "closed", "deadline"):
            out[key] = _iso(value)
        elif key == "merged_into":
            target = nfc(str(value)).strip() if value else None
            if target == code:
                raise FondsError("bad_merge", "a fonds cannot be merged into itself")
            if (
                target
                and con.execute("SELECT 1 FROM fonds WHERE code = ?", (target,)).fetchone() is None
            ):
                raise FondsError("unknown", f"no fonds {target}")
            out[key] = target
        else:
            text = nfc(str(value or "")).strip()
            if key == "name" and not text:
                raise FondsError("bad_name", "a fonds needs a name")
            if key == "level" and text not in LEVELS:
                raise FondsError("bad_level", f"level must be one of {', '.join(LEVELS)}")
            if key == "status" and text not in STATUSES:
                raise FondsError("bad_status", f"status must be one of {', '.join(STATUSES)}")
            if key == "status" and text == "handed_over":  # fonds_handover.confirm alone
                raise FondsError(
                    "bad_status", "a fonds is handed over only by recording the receipt"
                )
            if key == "organ_id" and text and not ORGAN_ID.match(text):
                raise FondsError("bad_organ", f"{text!r} is not a mã định danh (≤13 characters)")
            if key == "unit_code" and text:
                try:
                    if units.unit(text) is None:
                        raise FondsError("bad_unit", f"no administrative unit {text}")
                except units.UnitError as exc:
                    raise FondsError("bad_unit", str(exc)) from None
            out[key] = text
    if out.get("organ_id"):
        other = con.execute(
            "SELECT code FROM fonds WHERE organ_id = ? AND code <> ?", (out["organ_id"], code)
        ).fetchone()
        if other is not None:
            raise FondsError(
                "organ_taken", f"organ {out['organ_id']} already has fonds {other['code']}"
            )
    return out


def _claim_ho_so(con: Connection, code: str, organ_id: str) -> int:
    """Give the fonds the hồ sơ of its organisation that have none yet (the migration of
    hồ sơ made before fonds existed); returns how many."""
    if not organ_id:
        return 0
    cur = con.execute(
        "UPDATE ho_so SET fonds_code = ? WHERE organ_id = ? AND fonds_code IS NULL",
        (code, organ_id),
    )
    return int(cur.rowcount)


def _reindex(db: Database, con: Connection, code: str) -> None:
    """Re-index the metadata of a fonds' hồ sơ with its names (after they joined it, or after
    its names changed), inside the caller's transaction."""
    from server.archive.records import ho_so_text  # records asks this module for fonds

    names = search_names(db, code)
    rows = con.execute("SELECT ma_ho_so, data FROM ho_so WHERE fonds_code = ?", (code,))
    for r in rows.fetchall():
        db.index_meta(con, f"ho_so:{r['ma_ho_so']}", ho_so_text(json.loads(r["data"]), names))


def create(
    db: Database,
    code: str,
    name: str,
    *,
    organ_id: str = "",
    level: str = "xa",
    unit_code: str = "",
    opened: dt.date | str | None = None,
    closed: dt.date | str | None = None,
    status: str = "open",
    merged_into: str | None = None,
    deadline: dt.date | str | None = None,
    actor: str = "system",
    ip: str = "",
) -> Fonds:
    """Make a fonds; the hồ sơ of its organisation that have no fonds join it. Audited."""
    code = nfc(code).strip()
    if not CODE.match(code):
        raise FondsError("bad_code", f"{code!r}: letters, digits, '.', '_', '-' (≤40)")
    now = time.time()
    with db.tx() as con:
        if con.execute("SELECT 1 FROM fonds WHERE code = ?", (code,)).fetchone() is not None:
            raise FondsError("exists", f"fonds {code} already exists")
        fields = _check(
            con,
            {"name": name, "organ_id": organ_id, "level": level, "unit_code": unit_code,
             "opened": opened, "closed": closed, "status": status,
             "merged_into": merged_into, "deadline": deadline},
            code,
        )  # fmt: skip
        con.execute(
            f"INSERT INTO fonds({_COLUMNS}, created_at, updated_at)"  # noqa: S608 (constants)
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (code, fields["name"], fields["organ_id"], fields["level"], fields["unit_code"],
             fields["opened"], fields["closed"], fields["status"], fields["merged_into"],
             fields["deadline"], now, now),
        )  # fmt: skip
        claimed = _claim_ho_so(con, code, fields["organ_id"])
        _reindex(db, con, code)
        audit.append(con, actor, "fonds.create", code, {**fields, "ho_so_claimed": claimed}, ip)
    found = get(db, code)
    assert found is not None
    return found


def get(db: Database, code: str) -> Fonds | None:
    row = (
        db.read()
        .execute(
            f"SELECT {_COLUMNS} FROM fonds WHERE code = ?",  # noqa: S608 (constants)
            (code,),
        )
        .fetchone()
    )
    return None if row is None else _fonds(row)


def list_fonds(db: Database, *, status: str | None = None) -> builtins.list[Fonds]:
    """Every fonds (or those of one status), by code."""
    sql = f"SELECT {_COLUMNS} FROM fonds"  # noqa: S608 (constants)
    params: tuple[Any, ...] = ()
    if status:
        sql += " WHERE status = ?"
        params = (status,)
    return [_fonds(r) for r in db.read().execute(sql + " ORDER BY code", params)]


def update(db: Database, code: str, *, actor: str = "system", ip: str = "", **fields: Any) -> Fonds:
    """Change some fields (any of the table's but ``code``); audited with before/after."""
    allowed = set(_COLUMNS.split(", ")) - {"code"}
    unknown = set(fields) - allowed
    if unknown:
        raise FondsError("bad_field", f"unknown fields {sorted(unknown)}")
    with db.tx() as con:
        row = con.execute(
            f"SELECT {_COLUMNS} FROM fonds WHERE code = ?",  # noqa: S608 (constants)
            (code,),
        ).fetchone()
        if row is None:
            raise FondsError("unknown", f"no fonds {code}")
        before = _fonds(row).as_dict()
        checked = _check(con, fields, code)
        if checked:
            sets = ", ".join(f"{k} = ?" for k in checked)
            con.execute(
                f"UPDATE fonds SET {sets}, updated_at = ? WHERE code = ?",  # noqa: S608
                (*checked.values(), time.time(), code),
            )
        organ = checked.get("organ_id") or before["organ_id"]
        claimed = _claim_ho_so(con, code, organ)
        _reindex(db, con, code)
        changed = {k: [before.get(k), v] for k, v in checked.items() if before.get(k) != v}
        audit.append(con, actor, "fonds.edit", code, {"changed": changed,
                                                      "ho_so_claimed": claimed}, ip)  # fmt: skip
    found = get(db, code)
    assert found is not None
    return found


def close(
    db: Database,
    code: str,
    *,
    closed: dt.date | str | None = None,
    merged_into: str | None = None,
    deadline: dt.date | str | None = None,
    actor: str = "system",
    ip: str = "",
) -> Fonds:
    """End a fonds (its organisation ceased or merged): status closed, the closing date
    (today when not given), the fonds it was merged into, the handover deadline."""
    current = get(db, code)
    if current is None:
        raise FondsError("unknown", f"no fonds {code}")
    if current.status == "handed_over":
        raise FondsError("handed_over", f"fonds {code} was already handed over")
    fields: dict[str, Any] = {"status": "closed", "closed": closed or dt.date.today()}
    if merged_into is not None:
        fields["merged_into"] = merged_into
    if deadline is not None:
        fields["deadline"] = deadline
    return update(db, code, actor=actor, ip=ip, **fields)


def for_organ(db: Database, organ_id: str) -> Fonds | None:
    """The fonds of an organisation (mã định danh), or None: never a guess."""
    if not organ_id:
        return None
    row = (
        db.read()
        .execute(
            f"SELECT {_COLUMNS} FROM fonds WHERE organ_id = ?",  # noqa: S608 (constants)
            (organ_id,),
        )
        .fetchone()
    )
    return None if row is None else _fonds(row)


def fonds_code_for_organ(con: Connection, organ_id: str) -> str | None:
    """Inside a caller's transaction (server.archive.records saving a hồ sơ)."""
    if not organ_id:
        return None
    row = con.execute("SELECT code FROM fonds WHERE organ_id = ?", (organ_id,)).fetchone()
    return None if row is None else str(row[0])


def lineage(db: Database, code: str) -> Lineage:
    """The commune, district and province of a fonds, each named before and after 2025:
    for a former commune of huyện Pác Nặm, (Xã Nghiên Loan → Xã Nghiên Loan), (Huyện Pác
    Nặm → ""), (Tỉnh Bắc Kạn → Tỉnh Thái Nguyên). A fonds with no unit code (a sở) has its
    own name as commune and nothing else; one merged into another takes its successor's
    names as "new" when the library has none."""
    found = get(db, code)
    if found is None:
        raise FondsError("unknown", f"no fonds {code}")
    if not found.unit_code:
        return Lineage(Names("", found.name), Names("", ""), Names("", ""))
    unit = units.unit(found.unit_code)
    if unit is None:
        return Lineage(Names("", found.name), Names("", ""), Names("", ""))
    province = units.province_of(unit.code)
    district = units.district_of(unit.code)
    if not unit.old:
        commune = Names("", unit.name) if unit.code[4:5] not in ("p", "d") else Names("", "")
        return Lineage(commune, Names("", ""), Names("", province.name if province else ""))
    after = units.successor(unit.code)
    province_after = units.successor(province.code) if province else None
    if unit.code.startswith(("old:p", "old:d")):
        commune = Names("", "")
    else:
        commune = Names(unit.name, after.name if after else "")
    return Lineage(
        commune,
        Names(district.name if district else "", ""),
        Names(province.name if province else "", province_after.name if province_after else ""),
    )


def search_names(db: Database, code: str) -> builtins.list[str]:
    """Every name a fonds' records are found by: its own, its units' old and new names, and
    the fonds it was merged into (search indexes them with each hồ sơ)."""
    found = get(db, code)
    if found is None:
        return []
    names = [found.name, found.code]
    for place in lineage(db, code):
        names += [place.old, place.new]
    if found.merged_into:
        target = get(db, found.merged_into)
        if target is not None:
            names.append(target.name)
    seen: dict[str, None] = {}
    for name in names:
        if name:
            seen.setdefault(name, None)
    return builtins.list(seen)


# The agreed name of the listing function (``fonds.list``); defined last so that ``list``
# in this module's annotations above is still the builtin.
list = list_fonds
