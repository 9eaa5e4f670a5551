"""The citizens' side (issue 17): ``/p/<token>``, the page a label's QR code opens.

Made for a phone on a slow mobile link: one small HTML page (no script, no image, no font)
and one small stylesheet (``/p/s.css``, cached for a day), Vietnamese by default and English
with ``?lang=en``. What it shows is server.archive.public's decision; this module only
renders it.

Nothing of the staff app reaches here:
- its own path prefix, and :class:`NoCookies` drops the ``Cookie`` header of every request
  under it before any code runs, so a staff session cookie (Path=/, sent by the browser)
  gives nothing more; no response here sets a cookie (the language is the query only);
- no login, no session, no CSRF: the pages are GET only and change nothing but a counter;
- a policy of its own: ``default-src 'none'; style-src 'self'`` (nothing inline),
  ``form-action 'none'``, ``Referrer-Policy: no-referrer``, ``Cache-Control: no-store``
  (every view is counted and a rotated address stops at once);
- a per-client brake (server.archive.public.RateLimit): 429 with ``Retry-After`` past
  ``public_requests_per_minute``.

Mật hồ sơ, unknown and rotated-away addresses get one identical 404 page.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.types import ASGIApp, Receive, Scope, Send

from server.archive import public
from server.archive.records import Records
from server.store.db import Database

PREFIX = public.PREFIX
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'none'; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
}
STYLE = (
    "body{font:16px/1.45 sans-serif;margin:0 auto;max-width:40em;padding:0 .8em;color:#111}"
    "header{border-bottom:1px solid #ccc;font-size:.9em}h1{font-size:1.3em}"
    "h2{font-size:1.1em}dt{font-weight:bold}dd{margin:0 0 .4em}li{margin:.5em 0}"
    "a{color:#1a4f8a}"
)
WORDS: dict[str, dict[str, str]] = {
    "vi": {
        "title": "Tra cứu hồ sơ lưu trữ",
        "archive": "Lưu trữ lịch sử tỉnh",
        "other": "English",
        "closed": "Hồ sơ không công khai",
        "closed_note": "Mã này không dẫn tới hồ sơ nào được công bố.",
        "code": "Mã hồ sơ",
        "regime": "Chế độ sử dụng",
        "conditional": "Sử dụng có điều kiện",
        "how": "Cách đề nghị được xem",
        "organ": "Cơ quan lập hồ sơ (mã định danh)",
        "dates": "Thời gian",
        "pages": "Số trang",
        "documents": "Văn bản",
        "document": "Văn bản",
        "page_unit": "trang",
        "busy": "Quá nhiều yêu cầu. Vui lòng thử lại sau một phút.",
        "unavailable": "Hệ thống đang bận. Vui lòng thử lại sau ít phút.",
    },
    "en": {
        "title": "Archival record lookup",
        "archive": "Provincial historical archive",
        "other": "Tiếng Việt",
        "closed": "This record is not public",
        "closed_note": "This code does not lead to a published record.",
        "code": "File code",
        "regime": "Access",
        "conditional": "Conditional use",
        "how": "How to ask to see it",
        "organ": "Creating body (identifier)",
        "dates": "Dates",
        "pages": "Pages",
        "documents": "Documents",
        "document": "Document",
        "page_unit": "pages",
        "busy": "Too many requests. Please try again in a minute.",
        "unavailable": "The archive is busy. Please try again in a few minutes.",
    },
}
# The access note is configured in Vietnamese; English readers get this beside it.
ACCESS_NOTE_EN = "Ask the archive's reading room, with an identity document and this file code."

env = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent / "templates" / "public"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters["d_m_y"] = lambda d: d.strftime("%d/%m/%Y") if isinstance(d, dt.date) else ""

router = APIRouter(prefix=PREFIX, include_in_schema=False)


class NoCookies:
    """ASGI middleware: requests under ``/p/`` reach the app without their Cookie header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(PREFIX + "/"):
            headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"cookie"]
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


def _lang(request: Request) -> str:
    return "en" if request.query_params.get("lang") == "en" else "vi"


def _limited(request: Request) -> Response | None:
    brake: public.RateLimit = request.app.state.public_brake
    client = request.client.host if request.client else ""
    if brake.allow(client):
        return None
    return Response(
        WORDS[_lang(request)]["busy"],
        status_code=429,
        media_type="text/plain; charset=utf-8",
        headers={**HEADERS, "Retry-After": "60"},
    )


def unavailable(request: Request, retry_after_s: int) -> Response:
    """What a citizen sees when the archive cannot answer (its database busy): the public
    pages' own words and headers, nothing of the staff app."""
    return Response(
        WORDS[_lang(request)]["unavailable"],
        status_code=503,
        media_type="text/plain; charset=utf-8",
        headers={**HEADERS, "Retry-After": str(retry_after_s)},
    )


@router.get("/s.css")
def stylesheet() -> Response:
    return Response(
        STYLE,
        media_type="text/css; charset=utf-8",
        headers={**HEADERS, "Cache-Control": "public, max-age=86400"},
    )


@router.get("/{token}")
def lookup(token: str, request: Request) -> Response:
    refused = _limited(request)
    if refused is not None:
        return refused
    db: Database = request.app.state.db
    records: Records = request.app.state.records
    view = public.lookup(db, records, token)
    language = _lang(request)
    note = request.app.state.settings.public_access_note
    context: dict[str, Any] = {
        "lang": language,
        "other": "vi" if language == "en" else "en",
        "w": WORDS[language],
        "view": view,
        "access_note": note if language == "vi" else f"{ACCESS_NOTE_EN} ({note})",
    }
    html = env.get_template("page.html").render(context)
    return Response(
        html,
        status_code=404 if view.shown == "closed" else 200,
        media_type="text/html; charset=utf-8",
        headers={**HEADERS, "Content-Language": language},
    )
