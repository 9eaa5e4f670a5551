"""JSON API under /api/v1 (docs/design.md §6): batches, pages, search, devices. Every route needs a
bearer token (viewer role); reading a batch or a page's content is written to the audit log."""

from __future__ import annotations

import unicodedata
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from server.archive import audit, progress, search
from server.archive.catalog import MAX_OFFSET
from server.web.deps import DB, Admin, CatalogDep, RecordsDep, User, client_ip

router = APIRouter(prefix="/api/v1", tags=["archive"])


class BatchOut(BaseModel):
    id: int
    batch_id: str
    device_id: str
    created_at: float
    received_at: float
    page_count: int
    pages_received: int
    complete: bool
    complete_at: float | None
    source: str
    scanner: str | None
    profile: str | None


class PartOut(BaseModel):
    sha256: str
    size: int
    media_type: str
    committed: bool


class PageOut(BaseModel):
    id: int
    page_id: str
    page_no: int
    batch_pk: int
    capture_sha256: str
    capture_size: int
    sha256: str | None
    dpi: int
    width_px: int
    height_px: int
    colour: bool
    flags: list[str]
    ocr_confidence: float | None
    source_name: str | None
    parts: dict[str, PartOut]
    has_original: bool


class BatchDetail(BatchOut):
    metadata: dict[str, Any]
    pages: list[PageOut]


class DeviceOut(BaseModel):
    device_id: str
    status: str
    first_seen: float
    last_seen: float
    agent_version: str
    commune: str = Field(description="the label an admin set ('' = none)")
    telemetry: dict[str, Any]
    batches: int
    pages: int


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    commune: str = Field(max_length=200, description="the commune this station serves")


class CommuneOut(BaseModel):
    commune: str = Field(description="'' = not known yet")
    devices: list[str]
    pages: int
    pages_received: int
    pages_described: int
    pages_flagged: int
    per_day: list[int] = Field(description="pages received per day, last 30 days, oldest first")


class SearchHit(BaseModel):
    """A page (``kind`` "page": page, page_no, batch, device_id) or a hồ sơ / văn bản whose
    metadata match (``kind`` "ho_so" / "van_ban": ma_ho_so, title). ``spans`` are the
    ``[start, end)`` offsets of the query's words in ``snippet``."""

    kind: Literal["page", "ho_so", "van_ban"] = "page"
    page: int | None = None
    page_no: int | None = None
    batch: int | None = None
    device_id: str | None = None
    ma_ho_so: str | None = None
    title: str | None = None
    snippet: str
    spans: list[tuple[int, int]]
    score: float


@router.get("/batches", response_model=list[BatchOut])
def list_batches(
    catalog: CatalogDep, user: User, limit: int = Query(100, ge=1, le=1000), offset: int = 0
) -> list[dict[str, Any]]:
    return catalog.batches(limit, offset)


@router.get("/batches/{batch}", response_model=BatchDetail)
def get_batch(
    batch: int, catalog: CatalogDep, user: User, db: DB, request: Request
) -> dict[str, Any]:
    found = catalog.batch(batch)
    if found is None:
        raise HTTPException(404, "no such batch")
    audit.record(db, user.name, "batch.view", str(batch), {"via": "api"}, client_ip(request))
    return found


@router.get("/pages/{page}", response_model=PageOut)
def get_page(page: int, catalog: CatalogDep, user: User) -> dict[str, Any]:
    found = catalog.page(page)
    if found is None:
        raise HTTPException(404, "no such page")
    return found


def _file(catalog: CatalogDep, page: int, part: str, what: str) -> FileResponse:
    found = catalog.part_file(page, part)
    if found is None:
        raise HTTPException(404, f"the {what} of this page has not arrived")
    return FileResponse(found.path, media_type=found.media_type, headers={"X-Sha256": found.sha256})


@router.get("/pages/{page}/image", response_class=FileResponse)
def page_image(
    page: int, catalog: CatalogDep, user: User, db: DB, request: Request
) -> FileResponse:
    found = _file(catalog, page, "archival", "archival image")
    audit.record(db, user.name, "page.image", str(page), {}, client_ip(request))
    return found


@router.get("/pages/{page}/original", response_class=FileResponse)
def page_original(
    page: int, catalog: CatalogDep, user: User, db: DB, request: Request
) -> FileResponse:
    found = _file(catalog, page, "capture", "original capture")
    audit.record(db, user.name, "page.original", str(page), {}, client_ip(request))
    return found


@router.get("/pages/{page}/thumb", response_class=FileResponse)
def page_thumb(page: int, catalog: CatalogDep, user: User) -> FileResponse:
    return _file(catalog, page, "thumb", "thumbnail")


@router.get("/pages/{page}/text", response_class=PlainTextResponse)
def page_text(
    page: int, catalog: CatalogDep, user: User, db: DB, request: Request
) -> PlainTextResponse:
    found = catalog.part_file(page, "text")
    if found is None:
        raise HTTPException(404, "the text of this page has not arrived")
    audit.record(db, user.name, "page.text", str(page), {}, client_ip(request))
    text = unicodedata.normalize("NFC", found.path.read_text(encoding="utf-8"))
    return PlainTextResponse(text, media_type="text/plain; charset=utf-8")


@router.get("/search", response_model=list[SearchHit])
def search_hits(
    catalog: CatalogDep,
    records: RecordsDep,
    user: User,
    response: Response,
    q: str = Query(..., min_length=1, max_length=200),
    limit: int = Query(50, ge=1, le=100),
    offset: int = Query(0, ge=0, le=MAX_OFFSET, description="for more results: 50, 100…"),
) -> list[dict[str, Any]]:
    """The staff search page's search (server.archive.search): pages whose text matches ``q``, best
    first (ranking: server.archive.catalog.Catalog.search_page), ``limit`` of them from ``offset``;
    with ``offset`` 0 they are followed by the hồ sơ and văn bản whose metadata match. The
    header ``X-Total-Count`` says how many pages contain every word of ``q``; with
    ``X-Total-Count-Estimated: true`` it is the database's estimate (PostgreSQL, above
    10,000 pages)."""
    found = search.search(catalog, records, q, limit, offset)
    response.headers["X-Total-Count"] = str(found.total)
    if found.estimated:
        response.headers["X-Total-Count-Estimated"] = "true"
    return [{"kind": "page", **h} for h in found.pages] + found.records


@router.get("/devices", response_model=list[DeviceOut])
def devices(catalog: CatalogDep, user: User) -> list[dict[str, Any]]:
    return catalog.devices()


@router.put("/devices/{device_id}", response_model=DeviceOut)
def set_device(
    device_id: str, body: DeviceIn, catalog: CatalogDep, user: Admin, db: DB, request: Request
) -> dict[str, Any]:
    """Label a scan station with the commune it serves (admin; audited)."""
    if not progress.set_commune(db, device_id, body.commune, user.name, client_ip(request)):
        raise HTTPException(404, "no such device")
    return next(d for d in catalog.devices() if d["device_id"] == device_id)


@router.get("/communes", response_model=list[CommuneOut])
def communes(db: DB, user: User) -> list[dict[str, Any]]:
    """Progress per commune (see server.archive.progress)."""
    return [c.as_dict() for c in progress.communes(db)]
