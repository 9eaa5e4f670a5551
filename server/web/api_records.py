"""JSON API for the staff work on top of the batches: hồ sơ / văn bản metadata, handover
exports, the review queue and the audit log. Reads need the viewer role, edits and exports
the archivist role, the audit log the admin role; edits and exports are audited."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, BackgroundTasks, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from server.archive import access, aip, audit, export, fixity, rescan, review, rotation
from server.archive.auth import Principal
from server.archive.records import Conflict, HoSo, HoSoOut, NotFound, VanBan, VanBanIn
from server.store.db import Database
from server.web.api import NOT_YOURS, readable_page
from server.web.deps import (
    DB,
    Admin,
    Archivist,
    CatalogDep,
    Exporter,
    PublisherDep,
    RecordsDep,
    Viewer,
    client_ip,
)

router = APIRouter(prefix="/api/v1", tags=["records"])


class MetaHit(BaseModel):
    kind: str
    ma_ho_so: str
    title: str
    score: float


class ReviewItem(BaseModel):
    id: int
    page_no: int
    batch_pk: int
    batch_id: str
    device_id: str
    flags: list[str]
    ocr_confidence: float | None
    dpi: int
    quality_score: float | None = Field(
        default=None, description="the device's 0–100 judgement of the OCR text (flag review)"
    )
    quality_reasons: list[str] = Field(
        default_factory=list,
        description="why the text is likely wrong: no_text, implausible_text, low_confidence, "
        "unsure_words, low_score, junk_line, unread_text, dot_matrix",
    )


class Decision(BaseModel):
    action: review.Action = "accept"
    note: str = Field(default="", max_length=500)
    degrees: Literal[0, 90, 180, 270] | None = Field(
        default=None, description="rotate: clockwise degrees from the original archival file"
    )


class RescanOut(BaseModel):
    id: int
    page_pk: int
    page_no: int
    batch_pk: int
    device_id: str
    batch_id: str
    page_id: str
    note: str
    requested_by: str
    requested_at: float
    state: Literal["requested", "sent", "acknowledged"]
    sends: int
    sent_at: float | None
    acknowledged_at: float | None


class AuditRow(BaseModel):
    id: int
    at: float
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    ip: str


@router.get("/ho-so", response_model=list[HoSoOut])
def list_ho_so(
    records: RecordsDep,
    user: Viewer,
    db: DB,
    limit: int = Query(1000, ge=1, le=10000),
    offset: int = 0,
) -> list[HoSoOut]:
    found = records.list_ho_so(limit, offset)
    mine = access.readable_ho_so(db, user, [h.ma_ho_so for h in found])
    return [h for h in found if h.ma_ho_so in mine]


def readable_ho_so(db: Database, user: Principal, ma: str, request: Request) -> None:
    """404 for no such hồ sơ; 403 (audited) when its regime or place is not the user's."""
    allowed = access.ho_so_access(db, user, ma, client_ip(request))
    if allowed is None:
        raise HTTPException(404, "no such hồ sơ")
    if not allowed:
        raise HTTPException(403, NOT_YOURS)


@router.get("/ho-so-search", response_model=list[MetaHit])
def search_ho_so(
    records: RecordsDep, user: Viewer, db: DB, q: str = Query(..., min_length=1, max_length=200)
) -> list[dict[str, Any]]:
    """Hồ sơ and văn bản by their metadata (diacritics ignored when the query has none)."""
    hits = records.search(q)
    mine = access.readable_ho_so(db, user, [h["ma_ho_so"] for h in hits])
    return [h for h in hits if h["ma_ho_so"] in mine]


@router.get("/ho-so/{ma}", response_model=HoSoOut)
def get_ho_so(ma: str, records: RecordsDep, user: Viewer, db: DB, request: Request) -> HoSoOut:
    readable_ho_so(db, user, ma, request)
    found = records.ho_so(ma)
    if found is None:
        raise HTTPException(404, "no such hồ sơ")
    audit.record(db, user.name, "ho_so.view", ma, {"via": "api"}, client_ip(request))
    return found


@router.put("/ho-so/{ma}", response_model=HoSoOut)
def put_ho_so(
    ma: str, body: HoSo, records: RecordsDep, user: Archivist, db: DB, request: Request
) -> HoSoOut:
    """Create or replace a hồ sơ. ``ma`` must equal organ_id.nam.ky_hieu of the body. Only
    someone who may read it may replace it, and only to a regime they may read (an archivist
    cannot file a hồ sơ as Mật and lose it, nor open a Mật one)."""
    if body.code() != ma:
        raise HTTPException(422, f"mã hồ sơ in the path {ma!r} ≠ {body.code()!r} from the body")
    if records.ho_so(ma) is not None:
        readable_ho_so(db, user, ma, request)
    if not access.may_file_as(user, body.che_do_su_dung):
        access.refused(db, user, "ho_so.regime", ma, client_ip(request))
        raise HTTPException(403, NOT_YOURS)
    return records.save_ho_so(body, user.name, client_ip(request))


@router.post("/ho-so/{ma}/van-ban", response_model=VanBan, status_code=201)
def add_van_ban(
    ma: str, body: VanBanIn, records: RecordsDep, user: Archivist, db: DB, request: Request
) -> VanBan:
    readable_ho_so(db, user, ma, request)
    for page in body.pages:
        readable_page(db, user, page, request)
    try:
        return records.add_van_ban(ma, body, user.name, client_ip(request))
    except NotFound as exc:
        raise HTTPException(404, f"not found: {exc}") from exc
    except Conflict as exc:
        raise HTTPException(409, str(exc)) from exc


class PagesIn(BaseModel):
    pages: list[int] = Field(min_length=1, max_length=999, description="Page ids, in order")


@router.put("/ho-so/{ma}/van-ban/{stt}/pages", response_model=VanBan)
def set_van_ban_pages(
    ma: str,
    stt: int,
    body: PagesIn,
    records: RecordsDep,
    user: Archivist,
    db: DB,
    request: Request,
) -> VanBan:
    """Correct which pages make a văn bản (e.g. a split made at cover sheets)."""
    readable_ho_so(db, user, ma, request)
    for page in body.pages:
        readable_page(db, user, page, request)
    try:
        return records.set_pages(ma, stt, body.pages, user.name, client_ip(request))
    except NotFound as exc:
        raise HTTPException(404, f"not found: {exc}") from exc
    except Conflict as exc:
        raise HTTPException(409, str(exc)) from exc


def _zip_export(
    write: Callable[[Path], object],
    name: str,
    *,
    cleanup: BackgroundTasks,
    db: Database,
    user: str,
    action: str,
    ip: str,
) -> FileResponse:
    """Build a zip in a temp file with ``write``, audit it, send it, delete it afterwards."""
    fd, tmp = tempfile.mkstemp(prefix="sohoa-export-", suffix=".zip")
    os.close(fd)
    out = Path(tmp)
    try:
        write(out)
    except (export.ExportError, fixity.FixityError) as exc:  # a fixity failure is an alert too
        out.unlink(missing_ok=True)
        raise HTTPException(409, str(exc)) from exc
    cleanup.add_task(out.unlink, missing_ok=True)
    audit.record(db, user, action, name, {}, ip)
    return FileResponse(out, media_type="application/zip", filename=f"{name}.zip")


@router.api_route("/ho-so/{ma}/bag", methods=["GET", "POST"], response_class=FileResponse)
def ho_so_bag(
    ma: str,
    records: RecordsDep,
    catalog: CatalogDep,
    user: Exporter,
    db: DB,
    request: Request,
    cleanup: BackgroundTasks,
) -> FileResponse:
    """The hồ sơ as a zipped BagIt bag (RFC 8493, sha256) for handover."""
    readable_ho_so(db, user, ma, request)
    return _zip_export(
        lambda out: export.write_bag(records, catalog, ma, out),
        ma,
        cleanup=cleanup,
        db=db,
        user=user.name,
        action="export.bag",
        ip=client_ip(request),
    )


@router.api_route("/ho-so/{ma}/aip", methods=["GET", "POST"], response_class=FileResponse)
def ho_so_aip(
    ma: str,
    records: RecordsDep,
    catalog: CatalogDep,
    user: Exporter,
    db: DB,
    request: Request,
    cleanup: BackgroundTasks,
) -> FileResponse:
    """The hồ sơ as a zipped TT 05/2025 package (E-ARK CSIP/AIP: METS, EAD3, PREMIS 3)."""
    readable_ho_so(db, user, ma, request)
    return _zip_export(
        lambda out: aip.write_aip_zip(records, catalog, ma, out),
        ma,
        cleanup=cleanup,
        db=db,
        user=user.name,
        action="export.aip",
        ip=client_ip(request),
    )


@router.api_route("/export/{organ_id}.zip", methods=["GET", "POST"], response_class=FileResponse)
def commune_export(
    organ_id: str,
    records: RecordsDep,
    catalog: CatalogDep,
    user: Exporter,
    db: DB,
    request: Request,
    cleanup: BackgroundTasks,
) -> FileResponse:
    """Every hồ sơ of one organisation (commune) as bags, plus its catalogue — those the
    user may read, never a Mật one (server.archive.access)."""

    def only(codes: list[str]) -> set[str]:
        return access.bulk_exportable(db, user, codes)

    return _zip_export(
        lambda out: export.write_commune_bags(records, catalog, organ_id, out, only),
        organ_id,
        cleanup=cleanup,
        db=db,
        user=user.name,
        action="export.commune",
        ip=client_ip(request),
    )


def _bulk(db: Database, user: Principal) -> Callable[[list[str]], set[str]]:
    """The catalogue lists what the user may read, never a Mật hồ sơ (a bulk export)."""
    return lambda codes: access.bulk_exportable(db, user, codes)


@router.api_route("/catalogue.csv", methods=["GET", "POST"], response_class=Response)
def catalogue_csv(records: RecordsDep, user: Exporter, db: DB, request: Request) -> Response:
    """Danh mục hồ sơ, UTF-8 with BOM (Excel opens Vietnamese correctly)."""
    audit.record(db, user.name, "export.catalogue", "csv", {}, client_ip(request))
    return Response(
        export.catalogue_csv(records, only=_bulk(db, user)).encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="danh-muc-ho-so.csv"'},
    )


@router.api_route("/catalogue.xlsx", methods=["GET", "POST"], response_class=Response)
def catalogue_xlsx(records: RecordsDep, user: Exporter, db: DB, request: Request) -> Response:
    audit.record(db, user.name, "export.catalogue", "xlsx", {}, client_ip(request))
    return Response(
        export.catalogue_xlsx(records, only=_bulk(db, user)),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": 'attachment; filename="danh-muc-ho-so.xlsx"'},
    )


@router.get("/review", response_model=list[ReviewItem])
def review_queue(db: DB, user: Viewer) -> list[dict[str, Any]]:
    queue = review.queue(db)
    mine = access.readable_pages(db, user, [i["id"] for i in queue])
    return [i for i in queue if i["id"] in mine]


@router.post("/pages/{page}/review", status_code=204)
def review_page(
    page: int,
    body: Decision,
    db: DB,
    user: Archivist,
    request: Request,
    publisher: PublisherDep,
) -> None:
    """accept; rotate (``degrees`` from the original: a new turned archival version, the
    original kept, server.archive.rotation); rescan (a
    command to the scan station, sent now if the broker link is up, else on reconnect)."""
    readable_page(db, user, page, request)
    ip = client_ip(request)
    if body.action == "rotate":
        if body.degrees is None:
            raise HTTPException(422, "rotate needs degrees (0, 90, 180 or 270)")
        found = review.rotate(db, page, body.degrees, user.name, ip)
    elif body.action == "rescan":
        request_id = rescan.request(db, page, body.note, user.name, ip)
        found = request_id is not None
        if found:
            rescan.send_pending(db, publisher)
    else:
        found = review.decide(db, page, body.action, user.name, body.note, ip)
    if not found:
        raise HTTPException(404, "no such page")


@router.get("/rescans", response_model=list[RescanOut])
def rescan_requests(
    db: DB, user: Viewer, limit: int = Query(200, ge=1, le=5000)
) -> list[dict[str, Any]]:
    """Re-scan requests, newest first, with their delivery state."""
    return rescan.listing(db, limit)


@router.get("/audit", response_model=list[AuditRow])
def audit_log(
    db: DB, user: Admin, limit: int = Query(200, ge=1, le=5000), offset: int = 0
) -> list[dict[str, Any]]:
    return audit.recent(db, limit, offset)


class PageVersionOut(BaseModel):
    degrees: int = Field(description="clockwise turn from the station's original archival file")
    from_sha256: str = Field(description="the original archival file it was made from")
    sha256: str = Field(description="the turned file (the original's own for 0)")
    actor: str
    at: float


@router.get("/pages/{page}/versions", response_model=list[PageVersionOut])
def page_versions(page: int, db: DB, user: Viewer, request: Request) -> list[PageVersionOut]:
    """The page's turned archival versions, oldest first: who turned it, when, from which
    sha256 to which (server.archive.rotation). Empty: the station's file as it arrived."""
    readable_page(db, user, page, request)
    return [
        PageVersionOut(
            degrees=v.degrees, from_sha256=v.from_sha256, sha256=v.sha256, actor=v.actor, at=v.at
        )
        for v in rotation.versions(db, page)
    ]
