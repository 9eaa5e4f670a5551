"""The administrative units of Vietnam before and after the 2025 reorganisation, and the
mapping between them — from the ``vietnamadminunits`` library, never typed by hand.

Owns: one module over that library (nothing else imports it): unit codes, names, the old →
new successor of a unit, search by name with or without diacritics. Must not: write, know
fonds or hồ sơ (server.archive.fonds asks it), reach the network (the library geocodes only
addresses with a street; this module never passes one).

Why this library (docs/fonds.md has the comparison): it ships both lists — the 63 provinces,
696 districts and 10,040 communes before 1 July 2025 and the 34 provinces and 3,321 communes
after — and the old → new mapping, including communes split between several new ones (each
with its default successor). ``vietnam-provinces`` 2025.x carries only the new list; its 2026
releases need Python 3.12.

Unit codes are the GSO codes with the era in front, because a new commune often keeps the
code of one of the communes merged into it ("old:01882" is the former xã Nghiên Loan of
huyện Pác Nặm, "new:01882" the xã Nghiên Loan formed from it, Xuân La and An Thắng):

- ``old:<ward>`` / ``new:<ward>`` — a commune, ward, township or special zone;
- ``old:d<district>`` — a district (they ended on 1 July 2025);
- ``old:p<province>`` / ``new:p<province>`` — a province or centrally-run city.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from server.store.db import fold

LIBRARY = "vietnamadminunits"

# The unit type as the library spells it → the fonds level (server.archive.fonds.LEVELS).
_LEVELS = {
    "xã": "xa",
    "phường": "phuong",
    "thị trấn": "thi_tran",
    "đặc khu": "dac_khu",
    "huyện": "huyen",
    "quận": "quan",
    "thị xã": "thi_xa",
    "thành phố": "thanh_pho",
    "tỉnh": "tinh",
}
_CODE = re.compile(r"^(old|new):(d|p)?(\d{2,5})$")


class UnitError(ValueError):
    """A unit code that is malformed or names no unit."""


@dataclass(frozen=True)
class Unit:
    code: str  # see the module docstring
    name: str  # with its type, as the official list writes it: "Xã Nghiên Loan"
    level: str  # xa | phuong | thi_tran | dac_khu | huyen | quan | thi_xa | thanh_pho | tinh
    district: str  # the district's name (old communes only), else ""
    province: str  # the province's name ("" for a province itself)

    @property
    def old(self) -> bool:
        return self.code.startswith("old:")

    @property
    def label(self) -> str:
        """Name with its parents: "Xã Nghiên Loan, Huyện Pác Nặm, Tỉnh Bắc Kạn"."""
        return ", ".join(p for p in (self.name, self.district, self.province) if p)


def _nfc(text: Any) -> str:
    return unicodedata.normalize("NFC", str(text or "")).strip()


def _level(name: str) -> str:
    lowered = name.lower()
    for prefix in sorted(_LEVELS, key=len, reverse=True):
        if lowered.startswith(prefix + " "):
            return _LEVELS[prefix]
    return "khac"


@lru_cache(maxsize=1)
def _table() -> dict[str, Unit]:
    """Every unit by code (about 14,100), read once from the library's lists."""
    from vietnamadminunits.database import get_data

    units: dict[str, Unit] = {}
    old_fields = ["province", "district", "ward", "provinceCode", "districtCode", "wardCode"]
    for r in get_data(fields=old_fields, table="admin_units_legacy"):
        province, district, ward = _nfc(r["province"]), _nfc(r["district"]), _nfc(r["ward"])
        units[f"old:p{r['provinceCode']}"] = Unit(
            f"old:p{r['provinceCode']}", province, _level(province), "", ""
        )
        if district and r["districtCode"]:
            code = f"old:d{r['districtCode']}"
            units[code] = Unit(code, district, _level(district), "", province)
        if ward and r["wardCode"]:
            code = f"old:{r['wardCode']}"
            units[code] = Unit(code, ward, _level(ward), district, province)
    for r in get_data(fields=["province", "ward", "provinceCode", "wardCode"]):
        province, ward = _nfc(r["province"]), _nfc(r["ward"])
        code = f"new:p{r['provinceCode']}"
        units[code] = Unit(code, province, _level(province), "", "")
        if ward and r["wardCode"]:
            units[f"new:{r['wardCode']}"] = Unit(
                f"new:{r['wardCode']}", ward, _level(ward), "", province
            )
    return units


def check_code(code: str) -> str:
    """``code`` if it is well-formed, else UnitError (whether it exists: :func:`unit`)."""
    if not _CODE.match(code):
        raise UnitError(
            f"unit code {code!r} is not old:<commune>, new:<commune>, old:d<district>,"
            " old:p<province> or new:p<province> (GSO codes)"
        )
    return code


def unit(code: str) -> Unit | None:
    return _table().get(check_code(code))


def find(name: str, *, era: str = "", limit: int = 20) -> list[Unit]:
    """Units whose name contains ``name`` — with or without diacritics, with or without the
    type ("Nghiên Loan", "nghien loan", "xã Nghiên Loan"); old and new unless ``era``."""
    wanted = fold(_nfc(name))
    if not wanted:
        return []
    hits = []
    for u in _table().values():
        if era and not u.code.startswith(era + ":"):
            continue
        folded = fold(u.name)
        if wanted in folded or wanted in fold(u.label):
            exact = folded == wanted or folded.endswith(" " + wanted)
            hits.append((not exact, u.code, u))
    hits.sort(key=lambda h: (h[0], h[1]))
    return [h[2] for h in hits[:limit]]


@lru_cache(maxsize=4096)
def successor(code: str) -> Unit | None:
    """What an old unit became on 1 July 2025: the new commune (the library's default one
    when the old commune was split) or the new province; None for a district (districts
    ended) and for a unit that is already new."""
    found = unit(code)
    if found is None or not found.old or code.startswith("old:d"):
        return None
    from vietnamadminunits import convert_address

    # Full official names and no street: the library parses them exactly and never geocodes.
    converted = convert_address(found.label)
    if code.startswith("old:p"):
        return _table().get(f"new:p{converted.province_code}") if converted.province_code else None
    if not converted.ward_code:
        return None
    return _table().get(f"new:{converted.ward_code}")


def province_of(code: str) -> Unit | None:
    """The province a unit lies in (itself for a province), in the unit's own era."""
    found = unit(code)
    if found is None:
        return None
    if code[4:5] == "p":
        return found
    return _parents().get((code[:3], found.province, ""))


def district_of(code: str) -> Unit | None:
    """The former district of an old commune (None for new units: no districts since 2025)."""
    found = unit(code)
    if found is None or not found.old or not found.district or code.startswith("old:p"):
        return None
    if code.startswith("old:d"):
        return found
    return _parents().get(("old", found.province, found.district))


@lru_cache(maxsize=1)
def _parents() -> dict[tuple[str, str, str], Unit]:
    """Provinces by (era, name, "") and former districts by ("old", province, name)."""
    out: dict[tuple[str, str, str], Unit] = {}
    for u in _table().values():
        if u.code[4:5] == "p":
            out[(u.code[:3], u.name, "")] = u
        elif u.code.startswith("old:d"):
            out[("old", u.province, u.name)] = u
    return out


def version() -> str:
    from importlib.metadata import version as dist_version

    return f"{LIBRARY} {dist_version(LIBRARY)}"
