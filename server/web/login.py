"""Login and logout: password or token link, a server-side session cookie, login CSRF
(double submit) and lock-out after failed attempts (``server.archive.auth``), each audited.

Owns: the session cookie's life. Must not: render other pages or read the archive."""

from __future__ import annotations

import hmac
import math
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from server.archive import audit, auth
from server.web.deps import (
    DB,
    client_ip,
)
from server.web.render import render, safe_next

router = APIRouter(include_in_schema=False)


def _start_session(db: DB, principal: auth.Principal, next_url: str) -> Response:
    sid = auth.create_session(db, principal)
    response = RedirectResponse(safe_next(next_url), status_code=303)
    response.set_cookie(
        auth.SESSION_COOKIE, sid, max_age=auth.SESSION_SECONDS, httponly=True, samesite="lax"
    )
    return response


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
def login_form(request: Request, next: str = "/") -> Response:
    # No ``?token=``: a long-lived token in a URL lands in the access log and the history,
    # and a link that logs in at once puts a victim in the attacker's account.
    return _login_page(request, next=next)


def _login_csrf_ok(request: Request, csrf: str) -> bool:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return bool(expected and csrf and hmac.compare_digest(expected, csrf))


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
    ip = client_ip(request)
    name = username.strip().lower()
    if not _login_csrf_ok(request, csrf):
        audit.record(db, "-", "login.csrf", "", {}, ip)
        return _login_page(request, 403, error="csrf_failed", next=next)
    if token.strip() and not username:
        principal = auth.principal_for_token(db, token.strip())
        if principal is None:
            audit.record(db, "-", "login.fail", "", {"via": "token"}, ip)
            return _login_page(request, 401, error="login_failed", next=next)
        audit.record(db, principal.name, "login", "", {"via": "token"}, ip)
        return _start_session(db, principal, next)
    result = auth.login(db, name, password, ip)
    if result.locked_for > 0:
        wait = math.ceil(result.locked_for)
        return _login_page(request, 429, error="login_locked", wait=wait, next=next)
    if result.principal is None:
        return _login_page(request, 401, error="login_bad", next=next)
    return _start_session(db, result.principal, next)


# -- one-time login links (``sohoa-server login-link``; the demo prints one) -----------------


@router.get("/login/link", response_class=HTMLResponse)
def login_link_form(request: Request, db: DB, code: str = "") -> Response:
    """Name the account and ask for a click: the link is spent by the POST, so a preview
    (chat apps fetch links) does not use it up, and nobody is logged in unawares."""
    user = auth.login_link_user(db, code)
    if user is None:
        return _login_page(request, 401, error="login_link_bad")
    return _login_page(request, link_code=code, link_user=user)


@router.post("/login/link", response_class=HTMLResponse)
def login_link(
    request: Request,
    db: DB,
    code: Annotated[str, Form(max_length=100)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    ip = client_ip(request)
    if not _login_csrf_ok(request, csrf):
        audit.record(db, "-", "login.csrf", "", {"via": "link"}, ip)
        return _login_page(request, 403, error="csrf_failed")
    principal = auth.use_login_link(db, code)
    if principal is None:
        audit.record(db, "-", "login.fail", "", {"via": "link"}, ip)
        return _login_page(request, 401, error="login_link_bad")
    audit.record(db, principal.name, "login", "", {"via": "link"}, ip)
    return _start_session(db, principal, "/")


def _logout(request: Request, db: DB) -> Response:
    auth.end_session(db, request.cookies.get(auth.SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(auth.SESSION_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, db: DB, csrf: Annotated[str, Form()] = "") -> Response:
    # Another site could otherwise log staff out at will (a form posting here): the
    # session's own CSRF value is needed, as for every other change.
    session = auth.session_for(db, request.cookies.get(auth.SESSION_COOKIE))
    if session is not None and not auth.csrf_ok(session, csrf):
        return RedirectResponse("/", status_code=303)
    return _logout(request, db)
