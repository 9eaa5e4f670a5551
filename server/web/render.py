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
from urllib.parse import urlencode

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


def _fleet_href(path: str, fleet: Any, **changes: Any) -> str:
    """``path`` with a fleet list's filters (``server.archive.fleet_view.FleetPage``) and
    ``changes`` as its query; empty values and page 1 are left out."""
    query = {"state": fleet.state, "commune": fleet.commune, "name": fleet.name,
             "page": fleet.page, **changes}  # fmt: skip
    kept = {k: v for k, v in query.items() if v and not (k == "page" and v == 1)}
    return f"{path}?{urlencode(kept)}" if kept else path


templates.env.globals["fleet_href"] = _fleet_href
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
    other = "en" if language == "vi" else "vi"
    # The language link keeps what the page was asked with (a fleet filter, a search, the
    # page of a list): only the language changes.
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    ctx.update(
        lang=language,
        t=lambda key, **kw: i18n.t(key, language, **kw),
        other=other,
        lang_href="?" + urlencode([*kept, ("lang", other)]),
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


def vn_number(n: float, decimals: int = 0) -> str:
    """Vietnamese number formatting: "1.234", "12,5"."""
    text = f"{n:,.{decimals}f}"
    return text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")


def forecast_chart(
    received: int,
    per_day: list[int],
    planned: int,
    finish: dt.date | None,
    deadline: dt.date | None,
    today: dt.date,
    labels: dict[str, str],
) -> Markup:
    """An inline SVG answering "will we finish before the deadline?": pages received so far
    (the last ``len(per_day)`` days, solid), the forecast from today to the finish date
    (dashed), the plan (a horizontal line) and the deadline (a vertical line). ``labels``:
    Vietnamese (or English) words for "planned", "deadline", "forecast", "pages"."""
    width, height, left, bottom, top = 560, 200, 56, 28, 14
    first = today - dt.timedelta(days=len(per_day) - 1)
    last = max(d for d in (today + dt.timedelta(days=7), finish, deadline) if d is not None)
    last = min(last, today + dt.timedelta(days=3 * 365))  # a far forecast is cut at 3 years
    span = max(1, (last - first).days)
    top_value = max(planned, received, 1)

    def x(day: dt.date) -> float:
        return left + (width - left - 8) * min(span, (day - first).days) / span

    def y(value: float) -> float:
        return top + (height - top - bottom) * (1 - min(value, top_value) / top_value)

    cumulative, total = [], received - sum(per_day)
    for n in per_day:
        total += n
        cumulative.append(total)
    points = " ".join(
        f"{x(first + dt.timedelta(days=i)):.1f},{y(v):.1f}" for i, v in enumerate(cumulative)
    )
    parts = [
        f'<svg class="forecast" xmlns="http://www.w3.org/2000/svg" width="{width}"'
        f' height="{height}" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="{escape(labels.get("title", ""))}">',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 8}" y2="{height - bottom}"'
        ' stroke="#888"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#888"/>',
        f'<text x="{left - 4}" y="{y(top_value) + 4:.1f}" text-anchor="end" font-size="10">'
        f"{vn_number(top_value)}</text>",
        f'<text x="{left - 4}" y="{height - bottom + 4}" text-anchor="end" font-size="10">0</text>',
        f'<text x="{left}" y="{height - 8}" font-size="10">{first.strftime("%d/%m/%Y")}</text>',
        f'<text x="{width - 8}" y="{height - 8}" text-anchor="end" font-size="10">'
        f"{last.strftime('%d/%m/%Y')}</text>",
    ]
    if planned:
        parts.append(
            f'<line class="planned" x1="{left}" y1="{y(planned):.1f}" x2="{width - 8}"'
            f' y2="{y(planned):.1f}" stroke="#1a4d8f" stroke-dasharray="2 3">'
            f"<title>{escape(labels.get('planned', ''))}: {vn_number(planned)}</title></line>"
        )
    parts.append(
        f'<polyline class="received" points="{points}" fill="none" stroke="#7a1f1f"'
        f' stroke-width="2"><title>{escape(labels.get("pages", ""))}: {vn_number(received)}'
        "</title></polyline>"
    )
    if finish is not None and planned > received:
        parts.append(
            f'<line class="projection" x1="{x(today):.1f}" y1="{y(received):.1f}"'
            f' x2="{x(finish):.1f}" y2="{y(planned):.1f}" stroke="#7a1f1f"'
            f' stroke-dasharray="6 4"><title>{escape(labels.get("forecast", ""))}:'
            f" {finish.strftime('%d/%m/%Y')}</title></line>"
        )
    if deadline is not None:
        late = finish is None or finish > deadline
        colour = "#9b1c1c" if late else "#1d6b2f"
        parts.append(
            f'<line class="deadline" x1="{x(deadline):.1f}" y1="{top}" x2="{x(deadline):.1f}"'
            f' y2="{height - bottom}" stroke="{colour}" stroke-width="2"/>'
            f'<text x="{x(deadline) + (3 if x(deadline) < width / 2 else -3):.1f}"'
            f' y="{top + 10}" text-anchor="{"start" if x(deadline) < width / 2 else "end"}"'
            ' font-size="10"'
            f' fill="{colour}">{escape(labels.get("deadline", ""))}'
            f" {deadline.strftime('%d/%m/%Y')}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers and escaped text only


def stage_bars(counts: dict[str, int], stages: tuple[str, ...], labels: dict[str, str]) -> Markup:
    """An inline SVG: one horizontal bar per stage, as a share of the first (the plan)."""
    width, row, label_w = 420, 18, 130
    whole = max(counts.get(stages[0], 0), max(counts.values(), default=0), 1)
    parts = [
        f'<svg class="stages" xmlns="http://www.w3.org/2000/svg" width="{width}"'
        f' height="{row * len(stages) + 4}" viewBox="0 0 {width} {row * len(stages) + 4}"'
        ' role="img">'
    ]
    for i, stage in enumerate(stages):
        n = counts.get(stage, 0)
        w = round((width - label_w - 70) * n / whole)
        y = i * row + 2
        parts.append(
            f'<text x="0" y="{y + 12}" font-size="11">{escape(labels[stage])}</text>'
            f'<rect x="{label_w}" y="{y + 2}" width="{w}" height="{row - 6}" fill="#7a1f1f"/>'
            f'<text x="{label_w + w + 4}" y="{y + 12}" font-size="11">{vn_number(n)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers and escaped text only


templates.env.filters["vn_number"] = vn_number


def _column_letter(index: int) -> str:
    out, index = "", index + 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


templates.env.filters["column_letter"] = _column_letter
