"""Reading the archive: the dashboard (batches, per-commune progress), a batch, the page
viewer and the search page (``server.archive.search``, the same search as ``/api/v1/search``).

Owns: the pages a viewer reads. Must not: write (views are audited through ``server.archive.audit``)
or build HTML itself (``render``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from server.archive import (
    access,
    audit,
    dashboard,
    fixity,
    fleet_view,
    redo,
    replacements,
    rescan,
    review,
    search,
)
from server.archive.catalog import MAX_OFFSET, match_spans, query_terms
from server.fleet import registry
from server.web import i18n
from server.web.deps import (
    DB,
    CatalogDep,
    RecordsDep,
    WebViewer,
    client_ip,
)
from server.web.render import bar_chart, lang, marked, not_open, render

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def home(
    request: Request,
    session: WebViewer,
    catalog: CatalogDep,
    state: Annotated[str, Query(max_length=20)] = "",
    commune: Annotated[str, Query(max_length=200)] = "",
    name: Annotated[str, Query(max_length=100)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    """The dashboard; ``state``, ``commune``, ``name`` and ``page`` page the fleet table."""
    view = dashboard.overview(
        catalog, session.principal, state=state, commune=commune, name=name, page=page
    )
    language = lang(request)
    charts = {
        c.commune: bar_chart(c.per_day, label=i18n.t("per_day_chart", language), lang=language)
        for c in view.communes
    }
    return render(
        request,
        "batches.html",
        batches=view.batches,
        previews=view.previews,
        fleet=view.fleet,
        attention_states=fleet_view.DEVICE_ATTENTION,
        communes=view.communes,
        charts=charts,
        damage=fixity.damaged(catalog.db),
        alerts=[{**a, "label": i18n.t(f"alert_{a['kind']}", language)} for a in catalog.alerts()],
        # Why the archive cannot store right now (a full disk: the alert row itself may not
        # have found room). Set by server.app from the ingest worker; None when all is well.
        ingest_trouble=getattr(request.app.state, "ingest_trouble", lambda: None)(),
    )


@router.get("/devices/{device_id}", response_class=HTMLResponse)
def device_page(device_id: str, request: Request, session: WebViewer, db: DB) -> Response:
    """One station: what it last reported, its registry entry, and (for an admin) the form
    that labels it with its commune — kept off the fleet list of 1,000 rows."""
    found = fleet_view.station(db, device_id)
    if found is None:
        return render(request, "message.html", 404, message_key="not_found")
    return render(
        request, "device.html", d=found, station=registry.get(db, device_id),
        attention_states=fleet_view.DEVICE_ATTENTION,
    )  # fmt: skip


@router.get("/batches/{batch}", response_class=HTMLResponse)
def batch_page(
    batch: int, request: Request, session: WebViewer, catalog: CatalogDep, db: DB
) -> Response:
    found = catalog.batch(batch)
    if found is None:
        return render(request, "message.html", 404, message_key="not_found")
    me, ip = session.principal, client_ip(request)
    if not access.batch_access(db, me, batch, ip):
        return not_open(request)
    readable = access.readable_pages(db, me, [p["id"] for p in found["pages"]])
    found = {**found, "pages": [p for p in found["pages"] if p["id"] in readable]}
    audit.record(db, me.name, "batch.view", str(batch), {}, ip)
    return render(
        request, "batch.html", batch=found, replaced=replacements.in_batch(db, batch),
        replaces=replacements.of_batch(db, batch),
    )  # fmt: skip


@router.get("/pages/{page}", response_class=HTMLResponse)
def page_viewer(
    page: int, request: Request, session: WebViewer, catalog: CatalogDep, db: DB, q: str = ""
) -> Response:
    me, ip = session.principal, client_ip(request)
    allowed = access.page_access(db, me, page, ip)
    if allowed is None:
        return render(request, "message.html", 404, message_key="not_found")
    if not allowed:
        return not_open(request)
    found = catalog.page(page)
    if found is None:
        return render(request, "message.html", 404, message_key="not_found")
    batch = catalog.batch(found["batch_pk"])
    siblings = [p["id"] for p in batch["pages"]] if batch else [page]
    readable = access.readable_pages(db, me, siblings)
    siblings = [p for p in siblings if p in readable or p == page]
    i = siblings.index(page)
    terms, exact = query_terms(q)
    body = found["text"]
    text = marked(body, match_spans(body, terms, exact)) if body else None
    audit.record(db, me.name, "page.view", str(page), {}, ip)
    return render(
        request,
        "page.html",
        page=found,
        batch=batch,
        text=text,
        q=q,
        rotation=review.rotation(db, page),
        rotations=review.ROTATIONS,
        quality=review.page_quality(db, page),
        rescans=rescan.for_page(db, page),
        replaced=replacements.of_page(db, page),
        redone=redo.count(request.app.state.settings.data_dir, page),
        prev_id=siblings[i - 1] if i > 0 else None,
        next_id=siblings[i + 1] if i + 1 < len(siblings) else None,
    )


# Page-text hits per page of results: each hit re-reads its page's text for the snippet.
SEARCH_PAGE = 50


@router.get("/search", response_class=HTMLResponse)
def search_page(
    request: Request,
    session: WebViewer,
    catalog: CatalogDep,
    records_: RecordsDep,
    q: str = "",
    offset: int = 0,
) -> Response:
    q = q[:200]
    offset = max(0, min(offset, MAX_OFFSET))
    found = search.search(catalog, records_, q, session.principal, SEARCH_PAGE, offset)
    hits = [{**h, "html": marked(h["snippet"], h["spans"])} for h in found.pages]
    meta = [{**m, "html": marked(m["snippet"], m["spans"])} for m in found.records]
    total = found.total
    more = offset + SEARCH_PAGE if offset + SEARCH_PAGE < min(total, MAX_OFFSET + 1) else None
    return render(
        request, "search.html", q=q, hits=hits, meta=meta, total=total, offset=offset,
        more=more, estimated=found.estimated,
    )  # fmt: skip
