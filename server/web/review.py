"""The review queue: accept, rotate or ask for a re-scan of a flagged page (archivists;
``server.archive.review``, ``server.archive.rescan``).

Owns: the review pages and their form. Must not: change a page's files (decisions are rows)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from server.archive import access, rescan, review
from server.web.deps import (
    DB,
    PublisherDep,
    WebArchivist,
    WebViewer,
    client_ip,
)
from server.web.render import csrf_refused, not_open, render, safe_next

router = APIRouter(include_in_schema=False)


@router.get("/review", response_class=HTMLResponse)
def review_page(request: Request, session: WebViewer, db: DB) -> Response:
    queue = review.queue(db)
    readable = access.readable_pages(db, session.principal, [i["id"] for i in queue])
    return render(
        request,
        "review.html",
        items=[i for i in queue if i["id"] in readable],
        rescans=rescan.listing(db, 50),
        rotations=review.ROTATIONS[1:],
    )


@router.post("/review/{page}")
def review_decide(
    page: int,
    request: Request,
    session: WebArchivist,
    db: DB,
    publisher: PublisherDep,
    csrf: Annotated[str, Form()] = "",
    action: Annotated[str, Form(max_length=20)] = "accept",
    note: Annotated[str, Form(max_length=500)] = "",
    degrees: Annotated[int, Form()] = 0,
    next: Annotated[str, Form(max_length=500)] = "/review",
) -> Response:
    """accept | rotate (``degrees``) | rescan (``note``): see server.archive.review and
    server.archive.rescan."""
    refused = csrf_refused(request, session, csrf)
    if refused:
        return refused
    actor, ip = session.principal.name, client_ip(request)
    allowed = access.page_access(db, session.principal, page, ip)
    if allowed is None:
        return render(request, "message.html", 404, message_key="not_found")
    if not allowed:
        return not_open(request)
    if action == "rotate":
        if degrees not in review.ROTATIONS:
            return render(request, "message.html", 422, message_key="invalid_action")
        found = review.rotate(db, page, degrees, actor, ip)
    elif action == "rescan":
        found = rescan.request(db, page, note, actor, ip) is not None
        if found:
            rescan.send_pending(db, publisher)
    elif action == "accept":
        found = review.decide(db, page, "accept", actor, note, ip)
    else:
        return render(request, "message.html", 422, message_key="invalid_action")
    if not found:
        return render(request, "message.html", 404, message_key="not_found")
    return RedirectResponse(safe_next(next), status_code=303)
