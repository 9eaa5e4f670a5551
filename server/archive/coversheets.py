"""Cover sheets build the catalogue: a batch whose pages carry QR cover sheets
(``agent.pipeline.coversheet``; the station records what it read in the page's decisions,
``cover_sheet``, and flags the page ``separator``) is split into văn bản under the hồ sơ
each sheet names.

* The pages after a sheet, up to the next sheet, are one văn bản of the hồ sơ the sheet names,
  numbered ``<mã hồ sơ>.<số thứ tự>``: the sheet's number when it has one (and it is free),
  else the next. The sheet itself is not part of the văn bản (it stays in the batch).
* A hồ sơ that does not exist yet is created from its code (mã định danh . năm . ký hiệu)
  with the sheet's title, marked in its ghi chú as made from a cover sheet and waiting for an
  archivist to confirm; its other fields are the form's defaults until then.
* Pages before the first sheet, and pages already in a văn bản, are left alone.
* Each batch is split once (``cover_sheet_splits``); what was done is in the audit log
  (actor ``cover-sheet``) and in that table. Staff correct a split like any văn bản.

Owns: ``cover_sheet_splits``. Must not: change pages or files, or guess a code a sheet does
not carry.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from server.archive.records import Conflict, HoSo, NotFound, Records, VanBanIn
from server.store.db import Database

ACTOR = "cover-sheet"
UNCONFIRMED = "Tạo tự động từ tờ bìa QR — chờ lưu trữ viên xác nhận"
# mã hồ sơ = mã định danh (≤13 letters, digits, dots) . năm (4 digits) . số và ký hiệu hồ sơ
CODE = re.compile(r"^(?P<organ>[0-9A-Za-z.]{1,13}?)\.(?P<nam>\d{4})\.(?P<ky_hieu>[^|]{1,20})$")


@dataclass
class Split:
    """What splitting one batch did."""

    batch_pk: int
    van_ban: list[str] = field(default_factory=list)  # file names made
    created_ho_so: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _sheet(row: Any) -> dict[str, Any] | None:
    decisions = json.loads(row["decisions"] or "{}")
    sheet = decisions.get("cover_sheet") or {}
    flags = json.loads(row["flags"] or "[]")
    if sheet.get("found") and sheet.get("ma_ho_so"):
        return dict(sheet)
    if "separator" in flags:  # flagged, but what it says was not recorded
        return {"ma_ho_so": None}
    return None


def split_batch(records: Records, batch_pk: int) -> Split:
    """Split one batch at its cover sheets (see the module's docstring)."""
    db = records.db
    result = Split(batch_pk)
    con = db.read()
    rows = con.execute(
        "SELECT p.id, p.page_no, p.flags, p.decisions,"
        " EXISTS (SELECT 1 FROM van_ban_pages v WHERE v.page_pk = p.id) AS assigned"
        " FROM pages p WHERE p.batch_pk = ? ORDER BY p.page_no",
        (batch_pk,),
    ).fetchall()
    groups: list[tuple[dict[str, Any], list[int]]] = []
    for row in rows:
        sheet = _sheet(row)
        if sheet is not None:
            groups.append((sheet, []))
        elif groups and not row["assigned"]:
            groups[-1][1].append(row["id"])
    for sheet, pages in groups:
        ma = sheet.get("ma_ho_so")
        if not ma:
            result.problems.append("a separator page whose code was not read")
            continue
        if not pages:
            result.problems.append(f"cover sheet for {ma} with no pages after it")
            continue
        try:
            if records.ho_so(ma) is None:
                _create_ho_so(records, ma, str(sheet.get("title") or ""), batch_pk)
                result.created_ho_so.append(ma)
            number = sheet.get("van_ban")
            doc = VanBanIn(stt=number, trich_yeu=str(sheet.get("title") or ""), pages=pages)
            try:
                made = records.add_van_ban(ma, doc, ACTOR)
            except Conflict:  # the sheet's number is taken: the next free one
                made = records.add_van_ban(ma, doc.model_copy(update={"stt": None}), ACTOR)
                result.problems.append(f"{ma}: số thứ tự {number} was taken; used {made.stt}")
            result.van_ban.append(made.file_name)
        except (ValueError, NotFound, Conflict) as exc:
            result.problems.append(f"{ma}: {exc}".splitlines()[0])
    return result


def _create_ho_so(records: Records, ma: str, title: str, batch_pk: int) -> None:
    match = CODE.match(ma)
    if match is None:
        raise ValueError(f"{ma} is not <mã định danh>.<năm>.<ký hiệu>")
    ho_so = HoSo(
        organ_id=match["organ"],
        nam=int(match["nam"]),
        ky_hieu=match["ky_hieu"],
        tieu_de=title or f"Hồ sơ {ma} (tạo từ tờ bìa)",
        thoi_han_bao_quan="Vĩnh viễn",  # to be confirmed with the rest (ghi chú says so)
        ghi_chu=UNCONFIRMED,
    )
    if ho_so.code() != ma:
        raise ValueError(f"{ma} does not read back as one code")
    records.save_ho_so(ho_so, ACTOR, batch_pk=batch_pk)


def split_new_batches(records: Records) -> list[Split]:
    """Split every complete batch not split before; each is recorded, whatever it held."""
    db: Database = records.db
    todo = [
        r[0]
        for r in db.read().execute(
            "SELECT b.id FROM batches b WHERE b.complete_at IS NOT NULL AND NOT EXISTS"
            " (SELECT 1 FROM cover_sheet_splits s WHERE s.batch_pk = b.id) ORDER BY b.id"
        )
    ]
    done = []
    for batch_pk in todo:
        with db.tx() as con:  # claim it first: two sweeps never split one batch twice
            claimed = con.execute(
                "INSERT INTO cover_sheet_splits(batch_pk, at, result) VALUES (?, ?, '{}')"
                " ON CONFLICT(batch_pk) DO NOTHING",
                (batch_pk, time.time()),
            ).rowcount
        if claimed != 1:
            continue
        split = split_batch(records, batch_pk)
        with db.tx() as con:
            con.execute(
                "UPDATE cover_sheet_splits SET result = ? WHERE batch_pk = ?",
                (json.dumps(split.__dict__, ensure_ascii=False), batch_pk),
            )
        done.append(split)
    return done
