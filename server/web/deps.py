"""Shared FastAPI dependencies: the archive's objects and who is asking, with what role.

API: ``Authorization: Bearer <token>``; a web session cookie also works for GET/HEAD reads
(the staff pages load page images from the API) but never for writes — a write with a
cookie alone would be a CSRF hole — and for exports only by POST with the session's CSRF
value (:func:`api_export`). No credentials → 401; a role too low → 403.
Web pages use :func:`web_session`, which raises :class:`LoginRequired` (the app turns it into
a redirect to /login) instead of 401.

The dependencies that only look up an object the app holds, or check a role already known,
are ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool, one hand-over
to a worker thread and back per dependency and request (seven for an API search before this,
each a thread woken on a busy machine; docs/benchmarks.md, "twelfth sitting"). What reads the
database (a token, a session) stays a plain ``def`` or goes to the pool itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from server.archive import auth
from server.archive.auth import Principal, Role, Session
from server.archive.catalog import Catalog
from server.archive.page_images import PageRenderer
from server.archive.records import Records
from server.archive.rescan import Publisher
from server.store.db import Database


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


async def get_records(request: Request) -> Records:
    records: Records = request.app.state.records
    return records


async def get_renderer(request: Request) -> PageRenderer:
    renderer: PageRenderer = request.app.state.renderer
    return renderer


async def get_publisher(request: Request) -> Publisher | None:
    """The running ingest worker (the server's broker client), or None without MQTT."""
    worker: Publisher | None = getattr(request.app.state, "worker", None)
    return worker


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


DB = Annotated[Database, Depends(get_db)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
RecordsDep = Annotated[Records, Depends(get_records)]
RendererDep = Annotated[PageRenderer, Depends(get_renderer)]
PublisherDep = Annotated[Publisher | None, Depends(get_publisher)]


def api_principal(request: Request, db: DB) -> Principal:
    header = request.headers.get("authorization", "")
    found: Principal | None = None
    if header.lower().startswith("bearer "):
        found = auth.principal_for_token(db, header[7:].strip())
    elif request.method in ("GET", "HEAD"):
        session = auth.session_for(db, request.cookies.get(auth.SESSION_COOKIE))
        found = session.principal if session else None
    if found is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return found


def api_role(role: Role) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: Annotated[Principal, Depends(api_principal)]) -> Principal:
        if not principal.can(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"needs the {role} role")
        return principal

    return check


def api_export(role: Role) -> Callable[..., Awaitable[Principal]]:
    """Who asks for an export (a catalogue, a bag, a commune's zip). A bearer token, by GET or
    POST; or, by POST only, the web session's cookie with that session's CSRF value in the
    form field ``csrf`` — so another site can make a browser neither GET nor POST one."""

    async def check(request: Request, db: DB) -> Principal:
        header = request.headers.get("authorization", "")
        found: Principal | None = None
        if header.lower().startswith("bearer "):
            found = await run_in_threadpool(auth.principal_for_token, db, header[7:].strip())
        elif request.method == "POST":
            cookie = request.cookies.get(auth.SESSION_COOKIE)
            session = await run_in_threadpool(auth.session_for, db, cookie)
            if session is not None:
                form = await request.form()
                if not auth.csrf_ok(session, str(form.get("csrf") or "")):
                    raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF value")
                found = session.principal
        if found is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing or invalid bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not found.can(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"needs the {role} role")
        return found

    return check


Viewer = Annotated[Principal, Depends(api_role("viewer"))]
Archivist = Annotated[Principal, Depends(api_role("archivist"))]
Admin = Annotated[Principal, Depends(api_role("admin"))]
Exporter = Annotated[Principal, Depends(api_export("archivist"))]
User = Viewer  # the first version's name for "any authenticated staff member"


class LoginRequired(Exception):
    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class Forbidden(Exception):
    def __init__(self, role: Role) -> None:
        super().__init__(role)
        self.role = role


def web_session(request: Request, db: DB) -> Session:
    session = auth.session_for(db, request.cookies.get(auth.SESSION_COOKIE))
    if session is None:
        raise LoginRequired(request.url.path)
    request.state.session = session
    return session


def web_role(role: Role) -> Callable[[Session], Awaitable[Session]]:
    async def check(session: Annotated[Session, Depends(web_session)]) -> Session:
        if not session.principal.can(role):
            raise Forbidden(role)
        return session

    return check


WebViewer = Annotated[Session, Depends(web_role("viewer"))]
WebArchivist = Annotated[Session, Depends(web_role("archivist"))]
WebAdmin = Annotated[Session, Depends(web_role("admin"))]
