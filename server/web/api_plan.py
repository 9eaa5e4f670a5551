"""The plan in the JSON API: import a fonds' inventory (preview or store, all or nothing),
read the plan, progress against it, hand matching of batches, and the thống kê exports
(server.archive.inventory, .progress, .thong_ke)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field

from server.archive import access, inventory, progress, thong_ke
from server.archive.auth import Principal
from server.web.deps import DB, Archivist, User, api_export, client_ip

router = APIRouter(prefix="/api/v1", tags=["plan"])
MAX_UPLOAD = 5 * 1024 * 1024
Reader = Annotated[Principal, Depends(api_export("viewer"))]


class MatchIn(BaseModel):
    batch: int
    fonds_code: str = Field(max_length=40)
    code: str = Field(max_length=60, description="the planned hồ sơ's mã hồ sơ")


@router.post("/fonds/{fonds_code}/inventory")
async def import_inventory(
    fonds_code: str,
    db: DB,
    user: Archivist,
    request: Request,
    file: Annotated[UploadFile, File(description="the inventory, .xlsx or .csv")],
    preview: Annotated[bool, Form(description="read and show, store nothing")] = False,
    columns: Annotated[str, Form(description="overrides: 'code=B,note=' (field=letter)")] = "",
    year: Annotated[int | None, Form(description="the inventory's year, for lines without")] = None,
) -> dict[str, Any]:
    """Read an inventory for a fonds; with ``preview`` only show what it holds, else store
    every line in one transaction or none (422 with the refused lines)."""
    data = await file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise HTTPException(413, "inventory over 5 MB")
    name = file.filename or "inventory"
    try:
        override = inventory.parse_override([c for c in columns.split(",") if c.strip()])
        found = inventory.read_for_fonds(db, fonds_code, data, name, override, year)
    except inventory.InventoryError as exc:
        raise HTTPException(422, str(exc)) from exc
    out = found.as_dict()
    if preview:
        return {**out, "imported": False}
    try:
        inventory.import_plan(db, fonds_code, found, user.name, name, client_ip(request))
    except inventory.ImportRefused as exc:
        raise HTTPException(
            422, {"problems": [p.__dict__ for p in exc.problems], "imported": False}
        ) from exc
    return {**out, "imported": True}


@router.get("/fonds/{fonds_code}/plan")
def fonds_plan(fonds_code: str, db: DB, user: User) -> list[dict[str, Any]]:
    """The fonds' planned hồ sơ, in inventory order."""
    return inventory.planned(db, fonds_code)


@router.get("/plan/progress")
def plan_progress(db: DB, user: User) -> dict[str, Any]:
    """Progress against the plan per fonds, commune, district and province, with forecasts;
    batches matching nothing (those the caller may read) and planned hồ sơ never scanned."""
    view = progress.plan(db)
    readable = access.readable_batches(db, user, [b["id"] for b in view.unmatched])
    return {
        "today": view.today.isoformat(),
        "fonds": [p.as_dict() for p in view.fonds],
        "communes": [p.as_dict() for p in view.communes],
        "districts": [p.as_dict() for p in view.districts],
        "province": [p.as_dict() for p in view.province],
        "unmatched_batches": [b for b in view.unmatched if b["id"] in readable],
        "unscanned": view.unscanned,
    }


@router.post("/plan/matches")
def match_batch(body: MatchIn, db: DB, user: Archivist, request: Request) -> dict[str, Any]:
    """Match a batch by hand to a planned hồ sơ (one with no cover sheet); audited."""
    if not access.batch_access(db, user, body.batch, client_ip(request)):
        raise HTTPException(403, "batch not open to you")
    try:
        inventory.match_batch(db, body.batch, body.fonds_code, body.code, user.name,
                              client_ip(request))  # fmt: skip
    except inventory.MatchRefused as exc:
        raise HTTPException(422, str(exc)) from exc
    return {"batch": body.batch, "fonds_code": body.fonds_code, "code": body.code}


def _table(db: Any) -> tuple[list[thong_ke.FondsCount], dt.date]:
    view = progress.plan(db)
    return thong_ke.counts(db, view), view.today


@router.api_route("/plan/thong-ke.xlsx", methods=["GET", "POST"])
def thong_ke_xlsx(db: DB, user: Reader) -> Response:
    """The thống kê table per fonds as XLSX (a bearer token, or the web session's form)."""
    table, today = _table(db)
    return Response(
        thong_ke.xlsx(table, today),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f'attachment; filename="thong-ke-{today}.xlsx"'},
    )


@router.api_route("/plan/thong-ke.pdf", methods=["GET", "POST"])
def thong_ke_pdf(db: DB, user: Reader) -> Response:
    """The thống kê table per fonds as PDF (A4 landscape)."""
    table, today = _table(db)
    return Response(
        thong_ke.pdf(table, today),
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="thong-ke-{today}.pdf"'},
    )
