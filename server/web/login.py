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
