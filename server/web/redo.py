"""Choosing a redone result (issue 16): a page redone at the archive from its capture
(``sohoa-server reprocess PAGE``, server.archive.redo) is shown beside the station's result —
both page images and both texts — and an archivist chooses which reading is the better one;
the choice is recorded (``redo_choices``) and audited.

Owns: the comparison page, its form and the redone page's image. Must not: change the
page's stored parts (server.archive.redo says what a choice does)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from server.archive import access, audit, redo
from server.archive.page_images import MEDIA_TYPE, WIDTHS, RenderError, etag_for, snap_width
from server.web.deps import DB, CatalogDep, RendererDep, WebArchivist, client_ip
from server.web.render import csrf_refused, not_open, render

router = APIRouter(include_in_schema=False)


def _refused(request: Request, db: DB, session: WebArchivist, page: int) -> Response | None:
    allowed = access.page_access(db, session.principal, page, client_ip(request))
    if allowed is None:
        return render(request, "message.html", 404, message_key="not_found")
    return None if allowed else not_open(request)


@router.get("/pages/{page}/redo", response_class=HTMLResponse)
def redo_page(
    page: int, request: Request, session: WebArchivist, catalog: CatalogDep, db: DB
) -> Response:
    refused = _refused(request, db, session, page)
    if refused is not None:
        return refused
    found = catalog.page(page)
    if found is None:
        return render(request, "message.html", 404, message_key="not_found")
    data_dir = request.app.state.settings.data_dir
    return render(
        request,
        "redo.html",
        page=found,
        old_text=found.get("text") or "",
        results=redo.results(data_dir, page),
        chosen=redo.chosen(db, page),
        saved=request.query_params.get("saved") == "1",
    )


@router.post("/pages/{page}/redo/{stamp}")
def redo_choose(
    page: int,
    stamp: str,
    request: Request,
    session: WebArchivist,
    db: DB,
    csrf: Annotated[str, Form()] = "",
    choice: Annotated[str, Form()] = "",
) -> Response:
    bad = csrf_refused(request, session, csrf)
    if bad is not None:
        return bad
    refused = _refused(request, db, session, page)
    if refused is not None:
        return refused
    data_dir = request.app.state.settings.data_dir
    if not redo.choose(db, data_dir, page, stamp, choice, session.principal.name,
                       client_ip(request)):  # fmt: skip
        return render(request, "message.html", 404, message_key="not_found")
    return RedirectResponse(f"/pages/{page}/redo?saved=1", status_code=303)


@router.get("/pages/{page}/redo/{stamp}/render", response_class=FileResponse)
def redo_render(
    page: int,
    stamp: str,
    request: Request,
    session: WebArchivist,
    renderer: RendererDep,
    db: DB,
    w: int = Query(WIDTHS[1], ge=1, le=100_000),
) -> Response:
    """The redone archival page as a JPEG (cached by its sha256, like every page image)."""
    refused = _refused(request, db, session, page)
    if refused is not None:
        return refused
    found = redo.result(request.app.state.settings.data_dir, page, stamp)
    if found is None or found.archival is None:
        return Response(status_code=404)
    width = snap_width(w)
    etag = etag_for(found.archival_sha256, width)
    headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    try:
        rendered = renderer.render(found.archival, "application/pdf", found.archival_sha256, width)
    except RenderError:
        return Response(status_code=422)
    audit.record(db, session.principal.name, "page.redo.image", str(page), {"stamp": stamp},
                 client_ip(request))  # fmt: skip
    return FileResponse(rendered.path, media_type=MEDIA_TYPE, headers=headers)
