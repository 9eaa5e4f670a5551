"""Web: the staff web app and the JSON API — everything a person or a client asks over HTTP.

Server-rendered pages (Jinja2, ``templates/``), Vietnamese by default, ?lang=en; the JSON API
under ``/api/v1/`` (``api``, ``api_records``); authentication and role checks as FastAPI
dependencies (``deps``); staff-facing words (``i18n``). May import ``server.archive`` and
``server.store``; never ``server.ingest``.

Login is a user name and password (or a posted access token, or a one-time link from
``sohoa-server login-link``, which the demo prints) and gives a server-side session; every
POST form carries the session's CSRF token. Every response carries the headers of
``security``; page scripts are files in ``static/`` (the CSP allows no inline script).
Roles: viewer reads; archivist edits metadata, reviews pages and exports; admin sees the
audit log and the users. Views, edits and logins are written to the audit log.

One router per domain (``login``, ``archive``, ``review``, ``ho_so``, ``admin``, ``fonds``,
``plan``) and one
render helper (``render``); this module only joins the routers. The web layer renders what
the archive side returns: it must not query the database itself beyond the dependencies in
``server.web.deps``, and nothing below it may import it.
"""

from __future__ import annotations

from fastapi import APIRouter

from server.web import admin, archive, fonds, ho_so, login, plan, redo, review
from server.web.render import bar_chart, lang, marked, render

router = APIRouter(include_in_schema=False)
for _domain in (login, archive, review, redo, ho_so, admin, fonds, plan):
    router.include_router(_domain.router)

__all__ = ["bar_chart", "lang", "marked", "render", "router"]
