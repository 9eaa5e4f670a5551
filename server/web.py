"""The staff web app: server-rendered pages (Jinja2), Vietnamese by default, ?lang=en."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from server import auth, i18n
from server.catalog import Catalog
from server.db import Database
from server.deps import get_catalog, get_db

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
LANG_COOKIE = "sohoa_lang"


def _when(ts: float | None) -> str:
    if not ts:
        return "—"
    return dt.datetime.fromtimestamp(ts).strftime("%d/%m/%Y %H:%M")


templates.env.filters["when"] = _when


def _lang(request: Request) -> str:
    lang = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    if lang in ("vi", "en"):
        return lang
    default: str = request.app.state.settings.language
    return default


def _render(request: Request, name: str, status: int = 200, **ctx: Any) -> Response:
    lang = _lang(request)
    ctx.update(lang=lang, t=lambda key: i18n.t(key, lang), other="en" if lang == "vi" else "vi")
    response = templates.TemplateResponse(request, name, ctx, status_code=status)
    if request.query_params.get("lang") in ("vi", "en"):
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
    return response


def _user(request: Request, db: Database) -> str | None:
    return auth.user_for(db, request.cookies.get(auth.COOKIE))


DB = Annotated[Database, Depends(get_db)]
Cat = Annotated[Catalog, Depends(get_catalog)]


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, db: DB, token: str | None = None) -> Response:
    if token:  # a login link (the demo prints one): check, set the cookie, go home
        if auth.user_for(db, token) is None:
            return _render(request, "login.html", 401, error=True)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(auth.COOKIE, token, httponly=True, samesite="lax")
        return response
    return _render(request, "login.html", error=False)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, db: DB, token: Annotated[str, Form()]) -> Response:
    return login_form(request, db, token.strip())


@router.get("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(auth.COOKIE)
    return response


@router.get("/", response_class=HTMLResponse)
def home(request: Request, db: DB, catalog: Cat) -> Response:
    if _user(request, db) is None:
        return RedirectResponse("/login", status_code=303)
    batches = catalog.batches(limit=200)
    previews = {}
    for b in batches[:50]:
        detail = catalog.batch(b["id"])
        previews[b["id"]] = detail["pages"][:6] if detail else []
    return _render(
        request, "batches.html", batches=batches, previews=previews, devices=catalog.devices()
    )


@router.get("/batches/{batch}", response_class=HTMLResponse)
def batch_page(batch: int, request: Request, db: DB, catalog: Cat) -> Response:
    if _user(request, db) is None:
        return RedirectResponse("/login", status_code=303)
    found = catalog.batch(batch)
    if found is None:
        return _render(request, "batches.html", 404, batches=[], previews={}, devices=[])
    return _render(request, "batch.html", batch=found)


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request, db: DB, catalog: Cat, q: str = "") -> Response:
    if _user(request, db) is None:
        return RedirectResponse("/login", status_code=303)
    hits = catalog.search(q) if q.strip() else []
    return _render(request, "search.html", q=q, hits=hits)
