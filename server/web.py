"""The staff web app: server-rendered pages (Jinja2), Vietnamese by default, ?lang=en.

Login is a user name and password (or a token link, ``/login?token=…``, which the demo
prints) and gives a server-side session; every POST form carries the session's CSRF token.
Roles: viewer reads; archivist edits metadata, reviews pages and exports; admin sees the
audit log and the users. Views, edits and logins are written to the audit log.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import math
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from pydantic import ValidationError

from server import audit, auth, i18n, progress, records, rescan, review, search
from server.auth import Session
from server.catalog import MAX_OFFSET, Span, match_spans, query_terms
from server.deps import (
    DB,
    CatalogDep,
    PublisherDep,
    RecordsDep,
    WebAdmin,
    WebArchivist,
    WebViewer,
    client_ip,
)

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
LANG_COOKIE = "sohoa_lang"


def _when(ts: float | None) -> str:
    if not ts:
        return "—"
    return dt.datetime.fromtimestamp(ts).strftime("%d/%m/%Y %H:%M")


def _bytes(n: int | None) -> str:
    if not n:
        return "—"
    units = ("B", "KB", "MB", "GB", "TB")
    i = min(len(units) - 1, int(math.log(n, 1024)))
    return f"{n / 1024**i:.1f} {units[i]}"


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


def bar_chart(per_day: list[int], today: dt.date | None = None, label: str = "") -> Markup:
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
            f' height="{h}" fill="#7a1f1f"><title>{day}: {n}</title></rect>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers and escaped text only


templates.env.filters["when"] = _when
templates.env.filters["bytes"] = _bytes
templates.env.filters["vndate"] = _date


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


def _csrf_refused(request: Request, session: Session, csrf: str) -> Response | None:
    if auth.csrf_ok(session, csrf):
        return None
    return render(request, "message.html", 403, message_key="csrf_failed")


async def _checked_form(
    request: Request, session: Session
) -> tuple[dict[str, str], Response | None]:
    """A posted form as strings, and the refusal to return when its CSRF value is wrong."""
    form = {k: str(v) for k, v in (await request.form()).items()}
    return form, _csrf_refused(request, session, form.get("csrf", ""))


def _safe_next(url: str) -> str:
    # Only local paths: "//host" or "http://…" would make the login an open redirect.
    return url if url.startswith("/") and not url.startswith("//") else "/"


def _start_session(db: DB, principal: auth.Principal, next_url: str) -> Response:
    sid = auth.create_session(db, principal)
    response = RedirectResponse(_safe_next(next_url), status_code=303)
    response.set_cookie(
        auth.SESSION_COOKIE, sid, max_age=auth.SESSION_SECONDS, httponly=True, samesite="lax"
    )
    return response


# -- login ------------------------------------------------------------------------------------


# Login CSRF (another site posting its own credentials into this form, so that staff work
# in the attacker's account): the form carries a random value that must equal a cookie only
# this site can set (double submit; the cookie is SameSite=Strict and scoped to /login).
LOGIN_CSRF_COOKIE = "sohoa_login_csrf"


def _login_page(
    request: Request, status: int = 200, error: str | None = None, **ctx: Any
) -> Response:
    value = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = render(request, "login.html", status, error=error, login_csrf=value, **ctx)
    response.set_cookie(
        LOGIN_CSRF_COOKIE, value, max_age=12 * 3600, path="/login", httponly=True,
        samesite="strict",
    )  # fmt: skip
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, db: DB, token: str | None = None, next: str = "/") -> Response:
    if token:  # a login link (the demo prints one)
        principal = auth.principal_for_token(db, token)
        if principal is None:
            audit.record(db, "-", "login.fail", "", {"via": "token"}, client_ip(request))
            return _login_page(request, 401, error="login_failed", next=next)
        audit.record(db, principal.name, "login", "", {"via": "token"}, client_ip(request))
        return _start_session(db, principal, next)
    return _login_page(request, next=next)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    db: DB,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=500)] = "/",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not (expected and csrf and hmac.compare_digest(expected, csrf)):
        audit.record(db, username.strip().lower() or "-", "login.csrf", "", {}, client_ip(request))
        return _login_page(request, 403, error="csrf_failed", next=next)
    if token.strip() and not username:
        return login_form(request, db, token.strip(), next)
    ip = client_ip(request)
    name = username.strip().lower()
    wait = auth.locked_for(db, name, ip)
    if wait > 0:
        audit.record(db, name or "-", "login.locked", "", {}, ip)
        return _login_page(request, 429, error="login_locked", wait=math.ceil(wait), next=next)
    principal = auth.authenticate(db, name, password, ip)
    if principal is None:
        audit.record(db, name or "-", "login.fail", "", {"via": "password"}, ip)
        return _login_page(request, 401, error="login_bad", next=next)
    audit.record(db, principal.name, "login", "", {"via": "password"}, ip)
    return _start_session(db, principal, next)


def _logout(request: Request, db: DB) -> Response:
    auth.end_session(db, request.cookies.get(auth.SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(auth.SESSION_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, db: DB) -> Response:
    return _logout(request, db)


@router.get("/logout")
def logout_link(request: Request, db: DB) -> Response:
    # Kept for old bookmarks; ending one's own session is harmless even if forged.
    return _logout(request, db)


# -- dashboard, batches, viewer, search -------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def home(request: Request, session: WebViewer, catalog: CatalogDep) -> Response:
    batches = catalog.batches(limit=200)
    previews = {}
    for b in batches[:50]:
        detail = catalog.batch(b["id"])
        previews[b["id"]] = detail["pages"][:6] if detail else []
    language = lang(request)
    communes = progress.communes(catalog.db)
    charts = {
        c.commune: bar_chart(c.per_day, label=i18n.t("per_day_chart", language)) for c in communes
    }
    return render(
        request,
        "batches.html",
        batches=batches,
        previews=previews,
        devices=catalog.devices(),
        assigned=catalog.pages_in_records(),
        communes=communes,
        charts=charts,
    )


@router.post("/devices/{device_id}/commune")
def device_commune(
    device_id: str,
    request: Request,
    session: WebAdmin,
    db: DB,
    csrf: Annotated[str, Form()] = "",
    commune: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    refused = _csrf_refused(request, session, csrf)
    if refused:
        return refused
    if not progress.set_commune(db, device_id, commune, session.principal.name, client_ip(request)):
        return render(request, "message.html", 404, message_key="not_found")
    return RedirectResponse("/", status_code=303)


@router.get("/batches/{batch}", response_class=HTMLResponse)
def batch_page(
    batch: int, request: Request, session: WebViewer, catalog: CatalogDep, db: DB
) -> Response:
    found = catalog.batch(batch)
    if found is None:
        return render(request, "message.html", 404, message_key="not_found")
    audit.record(db, session.principal.name, "batch.view", str(batch), {}, client_ip(request))
    return render(request, "batch.html", batch=found)


@router.get("/pages/{page}", response_class=HTMLResponse)
def page_viewer(
    page: int, request: Request, session: WebViewer, catalog: CatalogDep, db: DB, q: str = ""
) -> Response:
    found = catalog.page(page)
    if found is None:
        return render(request, "message.html", 404, message_key="not_found")
    batch = catalog.batch(found["batch_pk"])
    siblings = [p["id"] for p in batch["pages"]] if batch else [page]
    i = siblings.index(page)
    terms, exact = query_terms(q)
    body = found["text"]
    text = marked(body, match_spans(body, terms, exact)) if body else None
    audit.record(db, session.principal.name, "page.view", str(page), {}, client_ip(request))
    return render(
        request,
        "page.html",
        page=found,
        batch=batch,
        text=text,
        q=q,
        rotation=review.rotation(db, page),
        rotations=review.ROTATIONS,
        rescans=rescan.for_page(db, page),
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
    found = search.search(catalog, records_, q, SEARCH_PAGE, offset)
    hits = [{**h, "html": marked(h["snippet"], h["spans"])} for h in found.pages]
    meta = [{**m, "html": marked(m["snippet"], m["spans"])} for m in found.records]
    total = found.total
    more = offset + SEARCH_PAGE if offset + SEARCH_PAGE < min(total, MAX_OFFSET + 1) else None
    return render(
        request, "search.html", q=q, hits=hits, meta=meta, total=total, offset=offset,
        more=more, estimated=found.estimated,
    )  # fmt: skip


# -- review queue -----------------------------------------------------------------------------


@router.get("/review", response_class=HTMLResponse)
def review_page(request: Request, session: WebViewer, db: DB) -> Response:
    return render(
        request,
        "review.html",
        items=review.queue(db),
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
    """accept | rotate (``degrees``) | rescan (``note``): see server.review, server.rescan."""
    refused = _csrf_refused(request, session, csrf)
    if refused:
        return refused
    actor, ip = session.principal.name, client_ip(request)
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
    return RedirectResponse(_safe_next(next), status_code=303)


# -- hồ sơ / văn bản --------------------------------------------------------------------------


def _form_ctx() -> dict[str, Any]:
    return {
        "ho_so_labels": records.HO_SO_LABELS,
        "van_ban_labels": records.VAN_BAN_LABELS,
        "thoi_han": records.THOI_HAN_CHOICES,
        "che_do": records.CHE_DO_SU_DUNG,
        "ngon_ngu": records.NGON_NGU,
        "tin_cay": records.MUC_DO_TIN_CAY,
        "ten_loai": records.TEN_LOAI,
        "label": records.label,
    }


def _errors(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(x) for x in e['loc']) or '—'}: {e['msg']}" for e in exc.errors()]


def _ho_so_fields(form: dict[str, str]) -> dict[str, Any]:
    keys = set(records.HoSo.model_fields)
    data: dict[str, Any] = {k: v for k, v in form.items() if k in keys}
    for key in ("thoi_gian_bat_dau", "thoi_gian_ket_thuc", "so_luong_to"):
        if not str(data.get(key, "")).strip():
            data[key] = None
    return data


@router.get("/ho-so", response_class=HTMLResponse)
def ho_so_list(request: Request, session: WebViewer, records_: RecordsDep) -> Response:
    items = records_.list_ho_so()
    organs = sorted({h.organ_id for h in items})
    return render(request, "ho_so_list.html", items=items, organs=organs, **_form_ctx())


@router.get("/ho-so/new", response_class=HTMLResponse)
def ho_so_new_form(
    request: Request, session: WebArchivist, catalog: CatalogDep, batch: int | None = None
) -> Response:
    found = catalog.batch(batch) if batch else None
    year = dt.date.fromtimestamp(found["created_at"]).year if found else dt.date.today().year
    values = {"nam": year, "thoi_han_bao_quan": "Vĩnh viễn", "muc_do_tin_cay": "02"}
    return render(
        request, "ho_so_form.html", values=values, batch=found, errors=[], new=True, **_form_ctx()
    )


@router.post("/ho-so/new", response_class=HTMLResponse)
async def ho_so_create(
    request: Request, session: WebArchivist, records_: RecordsDep, catalog: CatalogDep
) -> Response:
    form, refused = await _checked_form(request, session)
    if refused:
        return refused
    batch_pk = int(form["batch"]) if form.get("batch", "").isdigit() else None
    try:
        ho_so = records.HoSo.model_validate(_ho_so_fields(form))
    except ValidationError as exc:
        batch = await run_in_threadpool(catalog.batch, batch_pk) if batch_pk else None
        return render(request, "ho_so_form.html", 422, values=form, batch=batch,
                      errors=_errors(exc), new=True, **_form_ctx())  # fmt: skip
    if await run_in_threadpool(records_.ho_so, ho_so.code()) is not None:
        batch = await run_in_threadpool(catalog.batch, batch_pk) if batch_pk else None
        errors = [f"{ho_so.code()}: đã có / exists"]
        return render(request, "ho_so_form.html", 409, values=form, batch=batch,
                      errors=errors, new=True, **_form_ctx())  # fmt: skip
    saved = await run_in_threadpool(
        records_.save_ho_so, ho_so, session.principal.name, client_ip(request), batch_pk
    )
    return RedirectResponse(f"/ho-so/{saved.ma_ho_so}", status_code=303)


def _ho_so_page(
    request: Request,
    records_: records.Records,
    catalog: Any,
    ma: str,
    status: int = 200,
    errors: list[str] | None = None,
    values: dict[str, Any] | None = None,
    saved: bool = False,
) -> Response:
    found = records_.ho_so(ma)
    if found is None:
        return render(request, "message.html", 404, message_key="not_found")
    batch = catalog.batch(found.batch_pk) if found.batch_pk else None
    return render(
        request,
        "ho_so.html",
        status,
        ho_so=found,
        values=values or found.model_dump(),
        batch=batch,
        errors=errors or [],
        saved=saved,
        **_form_ctx(),
    )


@router.get("/ho-so/{ma}", response_class=HTMLResponse)
def ho_so_page(
    ma: str,
    request: Request,
    session: WebViewer,
    records_: RecordsDep,
    catalog: CatalogDep,
    db: DB,
    saved: bool = False,
) -> Response:
    if records_.ho_so(ma) is not None:
        audit.record(db, session.principal.name, "ho_so.view", ma, {}, client_ip(request))
    return _ho_so_page(request, records_, catalog, ma, saved=saved)


@router.post("/ho-so/{ma}", response_class=HTMLResponse)
async def ho_so_update(
    ma: str, request: Request, session: WebArchivist, records_: RecordsDep, catalog: CatalogDep
) -> Response:
    form, refused = await _checked_form(request, session)
    if refused:
        return refused
    current = await run_in_threadpool(records_.ho_so, ma)
    if current is None:
        return render(request, "message.html", 404, message_key="not_found")
    data = _ho_so_fields(form)
    # The code's parts are the record's key: fixed once the hồ sơ exists.
    data.update(organ_id=current.organ_id, nam=current.nam, ky_hieu=current.ky_hieu)
    try:
        ho_so = records.HoSo.model_validate(data)
    except ValidationError as exc:
        return await run_in_threadpool(
            _ho_so_page, request, records_, catalog, ma, 422, _errors(exc), {**data}
        )
    await run_in_threadpool(records_.save_ho_so, ho_so, session.principal.name, client_ip(request))
    return RedirectResponse(f"/ho-so/{ma}?saved=1", status_code=303)


@router.post("/ho-so/{ma}/van-ban", response_class=HTMLResponse)
async def van_ban_create(
    ma: str, request: Request, session: WebArchivist, records_: RecordsDep, catalog: CatalogDep
) -> Response:
    form, refused = await _checked_form(request, session)
    if refused:
        return refused
    batch_pk = int(form["batch"]) if form.get("batch", "").isdigit() else 0
    batch = await run_in_threadpool(catalog.batch, batch_pk)
    errors: list[str] = []
    if batch is None:
        errors.append("batch: —")
    else:
        try:
            pages = records.parse_pages(
                form.get("pages", ""), {p["page_no"]: p["id"] for p in batch["pages"]}
            )
            keys = set(records.VanBanIn.model_fields) - {"pages", "stt"}
            data: dict[str, Any] = {k: v for k, v in form.items() if k in keys}
            data["ngay"] = data.get("ngay") or None
            data["stt"] = int(form["stt"]) if form.get("stt", "").strip().isdigit() else None
            doc = records.VanBanIn.model_validate({**data, "pages": pages})
            await run_in_threadpool(
                records_.add_van_ban, ma, doc, session.principal.name, client_ip(request)
            )
            return RedirectResponse(f"/ho-so/{ma}?saved=1", status_code=303)
        except ValidationError as exc:
            errors += _errors(exc)
        except (ValueError, records.NotFound, records.Conflict) as exc:
            errors.append(str(exc))
    return await run_in_threadpool(_ho_so_page, request, records_, catalog, ma, 422, errors)


# -- admin ------------------------------------------------------------------------------------


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, session: WebAdmin, db: DB, offset: int = 0) -> Response:
    rows = audit.recent(db, 200, max(0, offset))
    for r in rows:
        r["detail_text"] = json.dumps(r["detail"], ensure_ascii=False)[:300]
    return render(request, "audit.html", rows=rows, offset=offset)


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, session: WebAdmin, db: DB) -> Response:
    return render(request, "users.html", users=auth.users(db))
