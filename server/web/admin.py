"""Admin pages: the audit log, the users, and a scan station's commune label.

Owns: admin-only views and forms. Must not: be reachable below the admin role."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from server.archive import audit, auth, progress
from server.web.deps import (
    DB,
    WebAdmin,
    client_ip,
)
from server.web.render import csrf_refused, render

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
