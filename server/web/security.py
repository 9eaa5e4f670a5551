"""What every HTTP response of the archive carries, whoever made it (issue 13).

- ``X-Content-Type-Options: nosniff``: a browser takes a response for what its
  ``Content-Type`` says, never for what its bytes look like.
- A strict Content-Security-Policy: scripts and styles only from this origin's files
  (``/static``), none inline (no ``<script>``/``<style>`` element, no ``style`` attribute:
  injected markup can neither run nor restyle a page to mislead), none from elsewhere; no
  plugins (``object-src 'none'``); forms post only here; no framing (``frame-ancestors
  'none'``, and ``X-Frame-Options: DENY`` for old browsers). Scripts may still set element
  styles through the DOM (``el.style.width``), which CSP does not govern. The OpenAPI
  pages (``/docs``, ``/redoc``) are FastAPI's own HTML, which runs an inline script and
  loads Swagger UI from a CDN: they get a policy of their own that allows exactly that and
  still forbids framing.
- ``Referrer-Policy: same-origin``: page URLs (search words, ids) never leave in a Referer.
- ``Cross-Origin-Opener-Policy: same-origin`` and ``Cross-Origin-Resource-Policy:
  same-origin``: another site can neither script a window of ours nor embed our images.
- Over HTTPS (directly, or ``X-Forwarded-Proto: https`` from a proxy in
  ``trusted_proxies``, which :func:`proxied` resolves first): every cookie is marked
  ``Secure`` and ``Strict-Transport-Security`` is sent.

A route may set its own value of any of these headers (a download's CSP, say); the
middleware fills in only what is missing. It must not read the body or the catalogue.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
# FastAPI's /docs and /redoc pages: an inline bootstrap script and Swagger UI / ReDoc from
# jsdelivr (static HTML with no archive data in it).
DOCS_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
    "https://cdn.redoc.ly; connect-src 'self'; worker-src blob:; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")
HSTS = "max-age=31536000"
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


def _secure_cookie(value: bytes) -> bytes:
    attributes = {part.strip().lower() for part in value.split(b";")[1:]}
    return value if b"secure" in attributes else value + b"; Secure"


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"
        csp = DOCS_CSP if scope.get("path") in DOCS_PATHS else CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[tuple[bytes, bytes]] = []
                for name, value in message.get("headers", []):
                    lname = name.lower()
                    headers.append(
                        (name, _secure_cookie(value) if https and lname == b"set-cookie" else value)
                    )
                present = {name.lower() for name, _ in headers}
                wanted = [*HEADERS, (b"content-security-policy", csp.encode())]
                if https:
                    wanted.append((b"strict-transport-security", HSTS.encode()))
                headers += [(n, v) for n, v in wanted if n not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class TrustedProxies:
    """uvicorn's proxy-header handling for exactly ``trusted_proxies``: from those addresses
    ``X-Forwarded-For`` becomes the client address (the login brake counts per client) and
    ``X-Forwarded-Proto`` the scheme; from anyone else both are ignored. (``sohoa-server
    run`` turns uvicorn's own handling off: it trusts 127.0.0.1 by default.)"""

    def __init__(self, app: ASGIApp, trusted_proxies: list[str]) -> None:
        self.app = app
        self.inner = (
            ProxyHeadersMiddleware(app, trusted_hosts=list(trusted_proxies))  # type: ignore[arg-type]
            if trusted_proxies
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.inner is None:
            await self.app(scope, receive, send)
        else:
            await self.inner(scope, receive, send)  # type: ignore[arg-type]
