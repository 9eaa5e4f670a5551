"""The nộp lưu of a closed fonds, as one action: its Mục lục hồ sơ nộp lưu and Biên bản giao
nhận (server.archive.handover), the package of each of its hồ sơ (server.archive.aip), and a
checklist of what is missing — then, later, the receiving archive's confirmation (who, when,
their reference), which marks the fonds handed over.

    <out>/muc-luc-ho-so-nop-luu.xlsx, .pdf, bien-ban-giao-nhan.pdf   the papers
    <out>/goi/<mã hồ sơ>/                                             one package per hồ sơ
    <out>/danh-sach-con-thieu.txt, checklist.json                     what is missing

Owns: ``fonds_handovers``. Must not: change hồ sơ or pages, or mark a fonds handed over
without a recorded confirmation.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from server.archive import aip, audit, coversheets, export, fixity, fonds, handover, inventory
from server.archive.catalog import Catalog
from server.archive.fonds import FondsError
from server.archive.records import HoSoOut, Records
from server.store.db import Database


@dataclass(frozen=True)
class Missing:
    """One thing missing before the fonds is complete (Vietnamese first, for the archivist)."""

    what: str
    ma_ho_so: str = ""


@dataclass
class Prepared:
    fonds: fonds.Fonds
    handover_id: int
    out: Path
    papers: list[Path]
    packages: list[Path]
    missing: list[Missing] = field(default_factory=list)


def ho_so_of(records: Records, code: str) -> list[HoSoOut]:
    rows = records.db.read().execute(
        "SELECT ma_ho_so FROM ho_so WHERE fonds_code = ? ORDER BY nam, ky_hieu", (code,)
    )
    found = [records.ho_so(str(r[0])) for r in rows.fetchall()]
    return [h for h in found if h is not None]


def checklist(records: Records, catalog: Catalog, code: str) -> list[Missing]:
    """What stands between the fonds and a complete handover, read from the catalogue."""
    found = fonds.get(records.db, code)
    if found is None:
        raise FondsError("unknown", f"no fonds {code}")
    missing: list[Missing] = []
    if found.status == "open":
        missing.append(Missing("Phông chưa kết thúc (chưa đóng phông)"))
    chosen = ho_so_of(records, code)
    if not chosen:
        missing.append(Missing("Phông chưa có hồ sơ nào"))
    loose_sql = (
        "SELECT COUNT(*) FROM pages p JOIN batches b ON b.id = p.batch_pk WHERE b.fonds_code = ?"
        " AND NOT EXISTS (SELECT 1 FROM van_ban_pages v WHERE v.page_pk = p.id)"
    )
    loose = records.db.read().execute(loose_sql, (code,)).fetchone()[0]
    if loose:
        missing.append(Missing(f"{loose} trang đã quét cho phông này chưa thuộc văn bản nào "
                               "(chưa biên mục)"))  # fmt: skip
    # The plan (the office's Mục lục, server.archive.inventory): hồ sơ it lists that no
    # scanned page counts for are missing from the handover.
    for p in inventory.unscanned(records.db, code):
        missing.append(Missing(f"Hồ sơ trong mục lục (kế hoạch) chưa được quét: {p['tieu_de']}",
                               p["code"]))  # fmt: skip
    for h in chosen:
        if not h.van_ban:
            missing.append(Missing("Hồ sơ chưa có văn bản (chưa quét hoặc chưa biên mục)",
                                   h.ma_ho_so))  # fmt: skip
        if coversheets.UNCONFIRMED in (h.ghi_chu or ""):
            missing.append(Missing("Hồ sơ tạo từ tờ bìa, chưa được lưu trữ viên xác nhận",
                                   h.ma_ho_so))  # fmt: skip
        pages = [p for doc in h.van_ban for p in doc.pages]
        legal = aip.legal_review(catalog, pages)
        failing = [p for p in pages if legal[p].failures and legal[p].accepted_by is None]
        if failing:
            missing.append(Missing(f"{len(failing)} trang chưa đạt chuẩn lưu trữ, chưa được "
                                   "chấp nhận (hàng đợi kiểm tra)", h.ma_ho_so))  # fmt: skip
    return missing


def prepare(
    db: Database,
    code: str,
    out: Path,
    *,
    ben_giao: str = "",
    ben_nhan: str = "",
    actor: str = "system",
    ip: str = "",
) -> Prepared:
    """Write the handover of fonds ``code`` into ``out`` (which must not exist) and record
    it. Refused for an open fonds (close it first) or one already handed over. A hồ sơ whose
    package cannot be built (no văn bản, a page failing its fixity or legal check) is left out
    and listed as missing; the rest is written."""
    found = fonds.get(db, code)
    if found is None:
        raise FondsError("unknown", f"no fonds {code}")
    if found.status == "open":
        raise FondsError("not_closed", f"fonds {code} is open: close it before its handover")
    if found.status == "handed_over":
        raise FondsError("handed_over", f"fonds {code} was already handed over")
    records, catalog = Records(db), Catalog(db)
    missing = checklist(records, catalog, code)
    chosen = ho_so_of(records, code)
    out.mkdir(parents=True)
    papers: list[Path] = []
    if chosen:
        papers = handover.write(
            handover.Handover(found.organ_id or found.code, chosen, ben_giao or found.name,
                              ben_nhan, dt.date.today()),
            out,
        )  # fmt: skip
    packages: list[Path] = []
    for h in chosen:
        if not h.van_ban:
            continue  # listed by the checklist already
        try:
            packages.append(aip.write_aip(records, catalog, h.ma_ho_so, out / "goi").root)
        except aip.PackageError as exc:
            if "legal check" not in str(exc):  # that one is listed already
                missing.append(Missing(f"Không lập được gói: {exc}", h.ma_ho_so))
        except (export.ExportError, fixity.FixityError) as exc:
            missing.append(Missing(f"Không lập được gói: {exc}", h.ma_ho_so))
    _write_checklist(out, found, missing)
    with db.tx() as con:
        cur = con.execute(
            "INSERT INTO fonds_handovers(fonds_code, prepared_at, prepared_by, package,"
            " checklist) VALUES (?, ?, ?, ?, ?) RETURNING id",
            (code, time.time(), actor, str(out),
             json.dumps([asdict(m) for m in missing], ensure_ascii=False)),
        )  # fmt: skip
        handover_id = int(cur.fetchone()[0])
        detail = {"out": str(out), "ho_so": len(chosen), "packages": len(packages),
                  "missing": len(missing)}  # fmt: skip
        audit.append(con, actor, "fonds.handover.prepare", code, detail, ip)
    return Prepared(found, handover_id, out, papers, packages, missing)


def _write_checklist(out: Path, found: fonds.Fonds, missing: list[Missing]) -> None:
    lines = [f"Phông {found.code} — {found.name}", ""]
    if not missing:
        lines.append("Không còn thiếu gì. (Nothing missing.)")
    for m in missing:
        lines.append(f"- {m.ma_ho_so + ': ' if m.ma_ho_so else ''}{m.what}")
    (out / "danh-sach-con-thieu.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "checklist.json").write_text(
        json.dumps([asdict(m) for m in missing], ensure_ascii=False, indent=1), encoding="utf-8"
    )


def confirm(
    db: Database,
    code: str,
    *,
    receiver: str,
    reference: str,
    received_on: dt.date | str | None = None,
    actor: str = "system",
    ip: str = "",
) -> fonds.Fonds:
    """Record the receiving archive's confirmation of the last prepared handover (who signed
    for it, their reference, the day) and mark the fonds handed over. Audited."""
    receiver, reference = receiver.strip(), reference.strip()
    if not receiver or not reference:
        raise FondsError("bad_confirmation", "who received it and their reference are needed")
    day = received_on or dt.date.today()
    day_iso = (
        day.isoformat() if isinstance(day, dt.date) else dt.date.fromisoformat(day).isoformat()
    )
    with db.tx() as con:
        row = con.execute(
            "SELECT f.status, h.id, h.confirmed_at FROM fonds f LEFT JOIN fonds_handovers h"
            " ON h.fonds_code = f.code WHERE f.code = ? ORDER BY h.id DESC LIMIT 1",
            (code,),
        ).fetchone()
        if row is None:
            raise FondsError("unknown", f"no fonds {code}")
        if row[1] is None:
            raise FondsError("not_prepared", f"fonds {code} has no prepared handover")
        if row[0] == "handed_over" or row[2] is not None:
            raise FondsError("handed_over", f"fonds {code} was already handed over")
        now = time.time()
        con.execute(
            "UPDATE fonds_handovers SET confirmed_at = ?, confirmed_by = ?, receiver = ?,"
            " reference = ?, received_on = ? WHERE id = ?",
            (now, actor, receiver, reference, day_iso, row[1]),
        )
        con.execute(
            "UPDATE fonds SET status = 'handed_over', updated_at = ? WHERE code = ?", (now, code)
        )
        detail = {"handover": row[1], "receiver": receiver, "reference": reference,
                  "received_on": day_iso}  # fmt: skip
        audit.append(con, actor, "fonds.handover.confirm", code, detail, ip)
    done = fonds.get(db, code)
    assert done is not None
    return done


def last(db: Database, code: str) -> dict[str, Any] | None:
    """The last handover of a fonds (prepared, and confirmed or not), or None."""
    row = (
        db.read()
        .execute(
            "SELECT id, prepared_at, prepared_by, package, checklist, confirmed_at, confirmed_by,"
            " receiver, reference, received_on FROM fonds_handovers WHERE fonds_code = ?"
            " ORDER BY id DESC LIMIT 1",
            (code,),
        )
        .fetchone()
    )
    if row is None:
        return None
    keys = ("id", "prepared_at", "prepared_by", "package", "checklist", "confirmed_at",
            "confirmed_by", "receiver", "reference", "received_on")  # fmt: skip
    out = {k: row[i] for i, k in enumerate(keys)}
    out["checklist"] = json.loads(out["checklist"] or "[]")
    if out["received_on"] is not None:
        out["received_on"] = str(out["received_on"])[:10]
    return out
