"""Admin pages: the audit log, the users, a scan station's commune label, and the fleet
(every enrolled station; revoking one: the same ``revoke_station`` as the CLI, audited).

Owns: admin-only views and forms. Must not: be reachable below the admin role."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from server.archive import audit, auth, fleet_view, fonds, progress
from server.fleet import broker as fleet
from server.fleet import registry
from server.web.deps import (
    DB,
    WebAdmin,
    client_ip,
)
from server.web.render import csrf_refused, lang, render

router = APIRouter(include_in_schema=False)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, session: WebAdmin, db: DB, offset: int = 0) -> Response:
    rows = audit.recent(db, 200, max(0, offset))
    for r in rows:
        r["detail_text"] = json.dumps(r["detail"], ensure_ascii=False)[:300]
    return render(request, "audit.html", rows=rows, offset=offset)


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, session: WebAdmin, db: DB) -> Response:
    return render(request, "users.html", users=auth.users(db))


@router.get("/stations", response_class=HTMLResponse)
def stations_page(
    request: Request,
    session: WebAdmin,
    db: DB,
    state: Annotated[str, Query(max_length=20)] = "",
    commune: Annotated[str, Query(max_length=200)] = "",
    name: Annotated[str, Query(max_length=100)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    """The registry, pending stations first, 50 a page (``fleet_view.paged``)."""
    found = fleet_view.paged(
        registry.stations(db), lambda s: (s.state,), lambda s: s.device_id,
        lambda s: s.commune, fleet_view.REGISTRY_STATES, attention=("pending",), state=state,
        commune=commune, name=name, page=page,
    )  # fmt: skip
    shown = {c for s in found.rows for c in s.fonds_codes}
    places = {}  # fonds code → its name and its places before and after 2025
    for f in fonds.list(db):
        if f.code in shown:
            line = fonds.places_line(fonds.lineage(db, f.code), lang(request))
            places[f.code] = f"{f.name} — {line}" if line else f.name
    return render(
        request, "stations.html", fleet=found, places=places, attention_states=("pending",)
    )


@router.post("/stations/{device_id}/revoke")
def station_revoke(
    device_id: str,
    request: Request,
    session: WebAdmin,
    db: DB,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Cut a station off now: the broker disconnects it, its key is refused (audited)."""
    refused = csrf_refused(request, session, csrf)
    if refused:
        return refused
    actor, ip = session.principal.name, client_ip(request)
    worker = getattr(request.app.state, "fleet", None)
    try:
        error = fleet.revoke_station(
            request.app.state.settings, db, device_id,
            audit=lambda con, action, target, detail: audit.append(
                con, actor, action, target, detail, ip
            ),
            admin=worker.admin if worker is not None else None,
        )  # fmt: skip
    except registry.FleetError:
        return render(request, "message.html", 404, message_key="not_found")
    if error is not None:
        return render(request, "message.html", 503, message_key="revoke_broker_failed")
    return RedirectResponse("/stations", status_code=303)


@router.post("/devices/{device_id}/commune")
def device_commune(
    device_id: str,
    request: Request,
    session: WebAdmin,
    db: DB,
    csrf: Annotated[str, Form()] = "",
    commune: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    refused = csrf_refused(request, session, csrf)
    if refused:
        return refused
    if not progress.set_commune(db, device_id, commune, session.principal.name, client_ip(request)):
        return render(request, "message.html", 404, message_key="not_found")
    return RedirectResponse("/", status_code=303)
