"""Phông lưu trữ in the staff app: every fonds with its places named before and after the
2025 reorganisation, making and closing one (admin), which fonds each station scans for
(admin), and the handover of a closed fonds with the receiving archive's confirmation
(archivist) — the same functions as ``sohoa-server fonds …``, audited with the staff member.

Owns: the /fonds pages and forms. Must not: query the database itself (server.archive.fonds,
.fonds_handover and server.fleet.registry answer).
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from server.archive import audit, fonds, fonds_handover
from server.archive.fonds import FondsError
from server.fleet import assignment, registry
from server.store import keys
from server.web.deps import DB, WebAdmin, WebArchivist, client_ip
from server.web.render import csrf_refused, lang, render

router = APIRouter(include_in_schema=False)

# The handover files a staff member may download from the last handover's folder.
PAPERS = ("muc-luc-ho-so-nop-luu.xlsx", "muc-luc-ho-so-nop-luu.pdf", "bien-ban-giao-nhan.pdf",
          "danh-sach-con-thieu.txt")  # fmt: skip


def rows(db: Any, lang: str = "vi") -> list[dict[str, Any]]:
    """Every fonds with its lineage and last handover, for the page and the API."""
    out = []
    for f in fonds.list(db):
        line = fonds.lineage(db, f.code)
        places = {k: {"old": v.old, "new": v.new, "label": v.label_in(lang)}
                  for k, v in line._asdict().items()}  # fmt: skip
        out.append({**f.as_dict(), "lineage": places,
                    "handover": fonds_handover.last(db, f.code)})  # fmt: skip
    return out


def _page(request: Request, db: Any, status: int = 200, error: str = "") -> Response:
    return render(request, "fonds.html", status, fonds_rows=rows(db, lang(request)),
                  stations=registry.stations(db), levels=fonds.LEVELS,
                  statuses=fonds.STATUSES, error=error, papers=PAPERS)  # fmt: skip


@router.get("/fonds", response_class=HTMLResponse)
def fonds_page(request: Request, session: WebArchivist, db: DB) -> Response:
    return _page(request, db)


@router.post("/fonds")
def fonds_create(
    request: Request,
    session: WebAdmin,
    db: DB,
    csrf: Annotated[str, Form()] = "",
    code: Annotated[str, Form(max_length=40)] = "",
    name: Annotated[str, Form(max_length=300)] = "",
    organ_id: Annotated[str, Form(max_length=13)] = "",
    level: Annotated[str, Form(max_length=20)] = "xa",
    unit_code: Annotated[str, Form(max_length=20)] = "",
    opened: Annotated[str, Form(max_length=10)] = "",
    deadline: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    refused = csrf_refused(request, session, csrf)
    if refused:
        return refused
    try:
        fonds.create(db, code, name, organ_id=organ_id, level=level, unit_code=unit_code,
                     opened=opened or None, deadline=deadline or None,
                     actor=session.principal.name, ip=client_ip(request))  # fmt: skip
    except FondsError as exc:
        return _page(request, db, 400, exc.detail)
    return RedirectResponse("/fonds", status_code=303)


@router.post("/fonds/{code}/close")
def fonds_close(
    code: str,
    request: Request,
    session: WebAdmin,
    db: DB,
    csrf: Annotated[str, Form()] = "",
    closed: Annotated[str, Form(max_length=10)] = "",
    merged_into: Annotated[str, Form(max_length=40)] = "",
    deadline: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    refused = csrf_refused(request, session, csrf)
    if refused:
        return refused
    try:
        fonds.close(db, code, closed=closed or None, merged_into=merged_into or None,
                    deadline=deadline or None, actor=session.principal.name,
                    ip=client_ip(request))  # fmt: skip
    except FondsError as exc:
        return _page(request, db, 404 if exc.reason == "unknown" else 400, exc.detail)
    return RedirectResponse("/fonds", status_code=303)


@router.post("/stations/{device_id}/fonds")
def station_fonds(
    device_id: str,
    request: Request,
    session: WebAdmin,
    db: DB,
    csrf: Annotated[str, Form()] = "",
    codes: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """The fonds a station scans for: codes separated by commas or spaces, default first."""
    refused = csrf_refused(request, session, csrf)
    if refused:
        return refused
    actor, ip = session.principal.name, client_ip(request)
    try:
        registry.assign_fonds(
            db, device_id, codes.replace(",", " ").split(),
            audit=lambda con, action, target, detail: audit.append(
                con, actor, action, target, detail, ip
            ),
        )  # fmt: skip
    except registry.FleetError as exc:
        return _page(request, db, 404 if exc.reason == "unknown" else 400, exc.detail)
    # To the station now, signed and retained (it hears it later if offline).
    worker = getattr(request.app.state, "worker", None)
    if worker is not None:
        key = keys.current(request.app.state.settings.data_dir)
        assignment.send(db, worker, key, device_id)
    return RedirectResponse("/fonds", status_code=303)


@router.post("/fonds/{code}/handover")
def fonds_handover_prepare(
    code: str,
    request: Request,
    session: WebArchivist,
    db: DB,
    csrf: Annotated[str, Form()] = "",
    ben_nhan: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    """Write the handover of a closed fonds under the archive's data folder."""
    refused = csrf_refused(request, session, csrf)
    if refused:
        return refused
    data_dir: Path = request.app.state.settings.data_dir
    out = data_dir / "handovers" / f"{code}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        fonds_handover.prepare(db, code, out, ben_nhan=ben_nhan, actor=session.principal.name,
                               ip=client_ip(request))  # fmt: skip
    except FondsError as exc:
        return _page(request, db, 404 if exc.reason == "unknown" else 400, exc.detail)
    except FileExistsError:
        return _page(request, db, 409, f"{out.name} already exists: try again in a second")
    return RedirectResponse("/fonds", status_code=303)


@router.get("/fonds/{code}/handover/{name}")
def fonds_handover_file(code: str, name: str, session: WebArchivist, db: DB) -> Response:
    last = fonds_handover.last(db, code)
    if name not in PAPERS or last is None:
        return Response(status_code=404)
    path = Path(last["package"]) / name
    if not path.is_file():
        return Response(status_code=404)
    return FileResponse(path, filename=f"{code}-{name}")


@router.post("/fonds/{code}/confirm")
def fonds_handover_confirm(
    code: str,
    request: Request,
    session: WebArchivist,
    db: DB,
    csrf: Annotated[str, Form()] = "",
    receiver: Annotated[str, Form(max_length=200)] = "",
    reference: Annotated[str, Form(max_length=200)] = "",
    received_on: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    refused = csrf_refused(request, session, csrf)
    if refused:
        return refused
    try:
        day = dt.date.fromisoformat(received_on) if received_on else None
        fonds_handover.confirm(db, code, receiver=receiver, reference=reference, received_on=day,
                               actor=session.principal.name, ip=client_ip(request))  # fmt: skip
    except ValueError as exc:  # FondsError is one
        detail = exc.detail if isinstance(exc, FondsError) else str(exc)
        return _page(request, db, 400, detail)
    return RedirectResponse("/fonds", status_code=303)
