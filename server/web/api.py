"""JSON API under /api/v1 (docs/design.md §6): batches, pages, search, devices. Every route needs a
bearer token (viewer role); reading a batch or a page's content is written to the audit log."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from server.archive import access, audit, progress, search
from server.archive.auth import Principal
from server.archive.catalog import MAX_OFFSET, PartFile, query_terms
from server.archive.page_images import (
    MEDIA_TYPE,
    THUMB_WIDTH,
    WIDTHS,
    Box,
    RenderError,
    etag_for,
    snap_width,
    word_boxes,
)
from server.store import objects
from server.store.db import Database, fold
from server.store.files import StoreError
from server.web.deps import DB, Admin, CatalogDep, RecordsDep, RendererDep, User, client_ip

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
    fonds_code: str | None = Field(default=None, description="the fonds it was scanned for")


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


NOT_YOURS = "this is not open to you (chế độ sử dụng or place; see server.archive.access)"


def readable_page(db: Database, user: Principal, page: int, request: Request) -> None:
    """404 for no such page; 403 (audited) when its regime or place is not the user's."""
    allowed = access.page_access(db, user, page, client_ip(request))
    if allowed is None:
        raise HTTPException(404, "no such page")
    if not allowed:
        raise HTTPException(403, NOT_YOURS)


@router.get("/batches", response_model=list[BatchOut])
def list_batches(
    catalog: CatalogDep,
    user: User,
    db: DB,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = 0,
) -> list[dict[str, Any]]:
    found = catalog.batches(limit, offset)
    mine = access.readable_batches(db, user, [b["id"] for b in found])
    return [b for b in found if b["id"] in mine]


@router.get("/batches/{batch}", response_model=BatchDetail)
def get_batch(
    batch: int, catalog: CatalogDep, user: User, db: DB, request: Request
) -> dict[str, Any]:
    found = catalog.batch(batch)
    if found is None:
        raise HTTPException(404, "no such batch")
    if not access.batch_access(db, user, batch, client_ip(request)):
        raise HTTPException(403, NOT_YOURS)
    mine = access.readable_pages(db, user, [p["id"] for p in found["pages"]])
    found = {**found, "pages": [p for p in found["pages"] if p["id"] in mine]}
    audit.record(db, user.name, "batch.view", str(batch), {"via": "api"}, client_ip(request))
    return found


@router.get("/pages/{page}", response_model=PageOut)
def get_page(
    page: int, catalog: CatalogDep, user: User, db: DB, request: Request
) -> dict[str, Any]:
    readable_page(db, user, page, request)
    found = catalog.page(page)
    if found is None:
        raise HTTPException(404, "no such page")
    return found


# What a stored part is sent as: its media type when it is one a station may send for that
# part (the ingest's allow-list), else opaque bytes. Always a download ("attachment"), never
# shown in this origin: an archival PDF or a capture is the station's bytes, and a PDF can
# carry script.
SERVED_TYPES = {
    "archival": ("application/pdf", "image/jpeg", "image/png", "image/tiff", "image/webp"),
    "capture": ("image/png", "image/jpeg", "image/tiff", "image/webp", "application/pdf"),
}
SUFFIX = {
    "application/pdf": ".pdf",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/tiff": ".tif",
    "image/webp": ".webp",
}


# A store that cannot give a file now (server.store.objects: a gateway down or not answering)
STORE_RETRY = {"Retry-After": str(objects.RETRY_AFTER_S)}


def _file(catalog: CatalogDep, page: int, part: str, what: str) -> Response:
    found = catalog.part_file(page, part)
    if found is None:
        raise HTTPException(404, f"the {what} of this page has not arrived")
    kind = found.media_type.split(";")[0].strip().lower()
    media = kind if kind in SERVED_TYPES.get(part, ()) else "application/octet-stream"
    name = f"sohoa-page-{page}-{part}{SUFFIX.get(media, '.bin')}"
    headers = {"X-Sha256": found.sha256, "Content-Security-Policy": "sandbox"}
    if objects.split_location(found.location) is not None:  # in the object store: streamed
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
        headers["Content-Length"] = str(found.size)
        try:
            body = objects.stream(found.location)
            first = next(body, b"")  # fails here (a 503), not half-way through the response
        except (OSError, StoreError) as exc:
            raise HTTPException(
                503, f"the object store cannot give this file: {exc}", headers=STORE_RETRY
            ) from exc

        def chunks() -> Iterator[bytes]:
            yield first
            yield from body

        return StreamingResponse(chunks(), media_type=media, headers=headers)
    return FileResponse(
        found.location,
        media_type=media,
        filename=name,
        content_disposition_type="attachment",
        headers=headers,
    )


@router.get("/pages/{page}/image", response_class=FileResponse)
def page_image(page: int, catalog: CatalogDep, user: User, db: DB, request: Request) -> Response:
    readable_page(db, user, page, request)
    found = _file(catalog, page, "archival", "archival image")
    audit.record(db, user.name, "page.image", str(page), {}, client_ip(request))
    return found


@router.get("/pages/{page}/original", response_class=FileResponse)
def page_original(page: int, catalog: CatalogDep, user: User, db: DB, request: Request) -> Response:
    readable_page(db, user, page, request)
    found = _file(catalog, page, "capture", "original capture")
    audit.record(db, user.name, "page.original", str(page), {}, client_ip(request))
    return found


# Rendered images never change for a given archival sha256 (the key is in the ETag): the
# browser keeps them for a year. "private": they are behind a login, no shared cache may keep
# them.
RENDER_CACHE_CONTROL = "private, max-age=31536000, immutable"


def _etag_matches(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match", "")
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return etag in tags or "*" in tags


def _rendered(
    request: Request,
    renderer: RendererDep,
    found: PartFile | None,
    width: int,
    what: str = "archival image",
) -> Response:
    if found is None:
        raise HTTPException(404, f"the {what} of this page has not arrived")
    etag = etag_for(found.sha256, width)
    headers = {"ETag": etag, "Cache-Control": RENDER_CACHE_CONTROL, "X-Render-Width": str(width)}
    if _etag_matches(request, etag):
        return Response(status_code=304, headers=headers)
    try:
        rendered = renderer.render(found.location, found.media_type, found.sha256, width)
    except RenderError as exc:
        raise HTTPException(422, f"this page cannot be shown as an image: {exc}") from exc
    except (OSError, StoreError) as exc:  # the store cannot give the file now
        raise HTTPException(
            503, f"the store cannot give this page now: {exc}", headers=STORE_RETRY
        ) from exc
    return FileResponse(rendered.path, media_type=MEDIA_TYPE, headers=headers)


@router.get(
    "/pages/{page}/render",
    response_class=FileResponse,
    responses={304: {"description": "the browser's copy (If-None-Match) is current"}},
)
def page_render(
    page: int,
    request: Request,
    catalog: CatalogDep,
    renderer: RendererDep,
    user: User,
    db: DB,
    w: int = Query(
        WIDTHS[2], ge=1, le=100_000, description=f"pixels; served at the next of {WIDTHS}"
    ),
) -> Response:
    """The page as a JPEG a browser can show, rendered from the archival PDF/A (or image) at
    one of a few widths and cached; ``ETag`` / ``If-None-Match`` answer 304."""
    readable_page(db, user, page, request)
    width = snap_width(w)
    response = _rendered(request, renderer, catalog.part_file(page, "archival"), width)
    if width > THUMB_WIDTH and response.status_code == 200:
        audit.record(db, user.name, "page.image", str(page), {"w": width}, client_ip(request))
    return response


@router.get(
    "/pages/{page}/capture",
    response_class=FileResponse,
    responses={304: {"description": "the browser's copy (If-None-Match) is current"}},
)
def page_capture(
    page: int,
    request: Request,
    catalog: CatalogDep,
    renderer: RendererDep,
    user: User,
    db: DB,
    w: int = Query(
        WIDTHS[2], ge=1, le=100_000, description=f"pixels; served at the next of {WIDTHS}"
    ),
) -> Response:
    """The capture the station sent (its lossless scan, before cleanup), as a JPEG at one of
    the viewer's widths, cached and with ETags like ``/render``: the viewer shows it beside
    the archival page. The stored file itself is ``/original`` (a download)."""
    readable_page(db, user, page, request)
    width = snap_width(w)
    found = catalog.part_file(page, "capture")
    if found is not None:
        kind = found.media_type.split(";")[0].strip().lower()
        if kind not in SERVED_TYPES["capture"]:  # never handed to a decoder under another name
            raise HTTPException(422, "this capture cannot be shown as an image")
    response = _rendered(request, renderer, found, width, "capture")
    if width > THUMB_WIDTH and response.status_code == 200:
        audit.record(db, user.name, "page.capture", str(page), {"w": width}, client_ip(request))
    return response


class WordBox(BaseModel):
    left: float = Field(description="fraction of the page width, from the left edge")
    top: float = Field(description="fraction of the page height, from the top edge")
    width: float
    height: float
    word: str


@router.get("/pages/{page}/words", response_model=list[WordBox])
def page_words(
    page: int,
    request: Request,
    catalog: CatalogDep,
    user: User,
    db: DB,
    q: str = Query(..., min_length=1, max_length=200),
) -> list[Box]:
    """Where the words of ``q`` are on the page (matched as search matches them: without
    diacritics unless ``q`` has some), from the archival PDF/A's OCR text layer; for the
    viewer's highlights. Empty when the archival part has no text layer."""
    readable_page(db, user, page, request)
    found = catalog.part_file(page, "archival")
    if found is None:
        raise HTTPException(404, "the archival image of this page has not arrived")
    terms, exact = query_terms(q)
    wanted = set(terms)

    def match(word: str) -> bool:
        return (word.lower() if exact else fold(word)) in wanted

    try:
        return word_boxes(found.location, found.media_type, match)[:500]
    except RenderError as exc:
        raise HTTPException(422, f"this page's text layer cannot be read: {exc}") from exc


@router.get("/pages/{page}/thumb", response_class=FileResponse)
def page_thumb(
    page: int, request: Request, catalog: CatalogDep, renderer: RendererDep, user: User, db: DB
) -> Response:
    """A small JPEG of the page, rendered from the archival file like the viewer's image.
    Before the archival file arrives (text and thumbnails travel first) the station's
    thumbnail is decoded and re-encoded the same way: its bytes are never served as sent."""
    readable_page(db, user, page, request)
    found = catalog.part_file(page, "archival")
    if found is None:
        thumb = catalog.part_file(page, "thumb")
        if thumb is not None and thumb.media_type in ("image/jpeg", "image/webp"):
            found = thumb
    return _rendered(request, renderer, found, THUMB_WIDTH)


@router.get("/pages/{page}/text", response_class=PlainTextResponse)
def page_text(
    page: int, catalog: CatalogDep, user: User, db: DB, request: Request
) -> PlainTextResponse:
    readable_page(db, user, page, request)
    found = catalog.part_file(page, "text")
    if found is None:
        raise HTTPException(404, "the text of this page has not arrived")
    audit.record(db, user.name, "page.text", str(page), {}, client_ip(request))
    try:
        data = objects.read_bytes(found.location)
    except (OSError, StoreError) as exc:
        raise HTTPException(
            503, f"the store cannot give this text: {exc}", headers=STORE_RETRY
        ) from exc
    text = unicodedata.normalize("NFC", data.decode("utf-8"))
    return PlainTextResponse(text, media_type="text/plain; charset=utf-8")


@router.get("/search", response_model=list[SearchHit])
async def search_hits(
    catalog: CatalogDep,
    records: RecordsDep,
    user: User,
    db: DB,
    response: Response,
    q: str = Query(..., min_length=1, max_length=200),
    limit: int = Query(50, ge=1, le=100),
    offset: int = Query(0, ge=0, le=MAX_OFFSET, description="for more results: 50, 100…"),
) -> list[dict[str, Any]]:
    """The staff search page's search (server.archive.search): pages whose text matches ``q``, best
    first (ranking: server.archive.catalog.Catalog.search_page), ``limit`` of them from ``offset``;
    with ``offset`` 0 they are followed by the hồ sơ and văn bản whose metadata match. The
    header ``X-Total-Count`` says how many pages the caller may open contain every word of
    ``q`` (paging reaches exactly that many); with ``X-Total-Count-Estimated: true`` it is
    the database's estimate (PostgreSQL, above 2,000 pages, for a caller who may open every
    page)."""
    # async, so that the search is the route's one trip to the thread pool: a def route runs
    # there, and FastAPI then validates its answer against response_model in a second trip;
    # here that validation (~0.2 ms for 50 hits) runs on the event loop.
    found = await run_in_threadpool(search.search, catalog, records, q, user, limit, offset)
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
