"""The one render helper of the staff web app: templates, their filters, the language of a
request, and what turns read-side data into HTML (marked search hits, the progress chart).
Also the CSRF refusal every form handler returns and the local-redirect guard.

Owns: every Jinja2 environment detail and every piece of HTML built in Python. Must not:
query the archive or hold routes (the routers in this package do)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup, escape

from server.archive import auth
from server.archive.auth import Session
from server.archive.catalog import Span
from server.archive.page_images import SCREEN_WIDTH, WIDTHS
from server.web import i18n

# The one place templates are looked up: beside this package, in the web room.
TEMPLATES = Path(__file__).resolve().parent / "templates"
templates = Jinja2Templates(directory=str(TEMPLATES))
LANG_COOKIE = "sohoa_lang"


def _when(ts: float | None) -> str:
    if not ts:
        return "—"
    return dt.datetime.fromtimestamp(ts).strftime("%d/%m/%Y %H:%M")


def _bytes(n: int | None, lang: str = "vi") -> str:
    if not n:
        return "—"
    units = ("B", "KB", "MB", "GB", "TB")
    i = min(len(units) - 1, int(math.log(n, 1024)))
    return f"{i18n.number(n / 1024**i, lang, 1)} {units[i]}"


@pass_context
def _num(ctx: Context, value: float | int | None, digits: int = 0) -> str:
    """``{{ n|num }}``, ``{{ x|num(1) }}``: a number in the page's language (i18n.number)."""
    return i18n.number(value, ctx.get("lang", "vi"), digits)


@pass_context
def _bytes_filter(ctx: Context, value: int | None) -> str:
    return _bytes(value, ctx.get("lang", "vi"))


def _date(value: Any) -> str:
    if isinstance(value, dt.date):
        return value.strftime("%d/%m/%Y")
    return "" if value is None else str(value)


def marked(text: str, spans: list[Span]) -> Markup:
    """``text`` HTML-escaped, each span (offsets from the read side) wrapped in <mark>."""
    out, pos = [], 0
    for s, e in spans:
        out.append(escape(text[pos:s]))
        out.append(Markup("<mark>") + escape(text[s:e]) + Markup("</mark>"))
        pos = e
    out.append(escape(text[pos:]))
    return Markup("").join(out)


def bar_chart(
    per_day: list[int], today: dt.date | None = None, label: str = "", lang: str = "vi"
) -> Markup:
    """An inline SVG: one bar per day (oldest left), each with a <title> tooltip."""
    today = today or dt.date.today()
    first = today - dt.timedelta(days=len(per_day) - 1)
    bar, gap, height = 7, 2, 48
    top = max(per_day, default=0) or 1
    width = len(per_day) * (bar + gap)
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}"'
        f' height="{height + 2}" viewBox="0 0 {width} {height + 2}" role="img"'
        f' aria-label="{escape(label)}">',
        f'<line x1="0" y1="{height + 1}" x2="{width}" y2="{height + 1}" stroke="#bbb"/>',
    ]
    for i, n in enumerate(per_day):
        h = round(n / top * height)
        day = (first + dt.timedelta(days=i)).strftime("%d/%m")
        parts.append(
            f'<rect class="bar" x="{i * (bar + gap)}" y="{height + 1 - h}" width="{bar}"'
            f' height="{h}" fill="#7a1f1f"><title>{day}: {i18n.number(n, lang)}</title></rect>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers and escaped text only


templates.env.filters["when"] = _when
templates.env.filters["bytes"] = _bytes_filter
templates.env.filters["num"] = _num
templates.env.filters["vndate"] = _date
# The viewer and thumbnails ask for rendered page images at these widths (page.html).
templates.env.globals.update(render_widths=WIDTHS, render_width=SCREEN_WIDTH)


def lang(request: Request) -> str:
    """The language of this request's pages: ``?lang=``, then the cookie, then the default."""
    lang = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    if lang in ("vi", "en"):
        return lang
    default: str = request.app.state.settings.language
    return default


def render(request: Request, name: str, status: int = 200, **ctx: Any) -> Response:
    language = lang(request)
    session: Session | None = getattr(request.state, "session", None)
    ctx.update(
        lang=language,
        t=lambda key, **kw: i18n.t(key, language, **kw),
        other="en" if language == "vi" else "vi",
        session=session,
        me=session.principal if session else None,
        csrf=session.csrf if session else "",
    )
    response = templates.TemplateResponse(request, name, ctx, status_code=status)
    if request.query_params.get("lang") in ("vi", "en"):
        response.set_cookie(LANG_COOKIE, language, max_age=365 * 86400, samesite="lax")
    return response


def not_open(request: Request) -> Response:
    """What a refusal by server.archive.access shows (it has audited it)."""
    return render(request, "message.html", 403, message_key="not_open")


def csrf_refused(request: Request, session: Session, csrf: str) -> Response | None:
    if auth.csrf_ok(session, csrf):
        return None
    return render(request, "message.html", 403, message_key="csrf_failed")


async def checked_form(
    request: Request, session: Session
) -> tuple[dict[str, str], Response | None]:
    """A posted form as strings, and the refusal to return when its CSRF value is wrong."""
    form = {k: str(v) for k, v in (await request.form()).items()}
    return form, csrf_refused(request, session, form.get("csrf", ""))


def safe_next(url: str) -> str:
    # Only local paths: "//host" or "http://…" would make the login an open redirect.
    return url if url.startswith("/") and not url.startswith("//") else "/"
