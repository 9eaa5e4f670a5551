"""FastAPI application factory. ``lifespan`` opens the archive and starts the ingest worker;
a watchdog thread tells systemd we are alive only while that worker is connected or
reconnecting (``WATCHDOG=1`` is a no-op outside systemd)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import sdnotify
from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from server import web
from server.archive import auth, coversheets, progress, public, replacements, rescan
from server.archive.catalog import Catalog
from server.archive.page_images import PageRenderer
from server.archive.records import Records
from server.config import ServerSettings
from server.fleet.broker import FleetWorker
from server.ingest import Ingest
from server.ingest.limits import StationLimits
from server.ingest.mqtt import IngestWorker
from server.store import epochs, hygiene, keys
from server.store.db import Database
from server.store.files import StoreError
from server.store.objects import ObjectStore, store_for
from server.store.pg import DatabaseBusy
from server.web import api, api_fleet, api_plan, api_public, api_records, i18n
from server.web import public as public_web
from server.web.deps import Forbidden, LoginRequired
from server.web.security import SecurityHeaders, TrustedProxies

log = logging.getLogger(__name__)

# A request refused for want of a database connection (DatabaseBusy) asks to come back in
# this many seconds; the refusals of a burst are logged as one line, then one a minute.
BUSY_RETRY_AFTER_S = 10
BUSY_LOG_EVERY_S = 60.0


class BusyLog:
    """Log a burst of refusals once: the first, then at most one line per ``every`` seconds
    with how many were refused since (a pool storm answers hundreds a second)."""

    def __init__(self, every: float = BUSY_LOG_EVERY_S) -> None:
        self.every = every
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._unlogged = 0

    def refused(self, what: str, why: object) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.every:
                self._unlogged += 1
                return
            since, self._unlogged, self._last = self._unlogged, 0, now
        more = f"; {since} more refused since the last line" if since else ""
        log.warning("database busy: refused %s with 503: %s%s", what, why, more)


VERSION = "0.1.0"


class Health(BaseModel):
    status: str
    ingest_connected: bool | None
    messages: int
    version: str
    ingest_trouble: str | None = None  # why the archive cannot store now (disk full, fsync)


def _watchdog(app: FastAPI, stop: threading.Event) -> None:
    notifier = sdnotify.SystemdNotifier()
    usec = int(os.environ.get("WATCHDOG_USEC", "0"))
    notifier.notify("READY=1")
    if not usec:
        return
    interval = usec / 2 / 1e6
    while not stop.wait(interval):
        worker: IngestWorker | None = app.state.worker
        # Ping only while the ingest worker can still work; a dead thread is a restart case.
        if worker is None or worker.healthy():
            notifier.notify("WATCHDOG=1")


COVER_SHEET_SWEEP_S = 10.0


def _split_cover_sheets(records: Records, stop: threading.Event) -> None:
    """Split each newly complete batch at its QR cover sheets (server.archive.coversheets),
    then place re-scanned pages (server.archive.replacements)."""
    while not stop.wait(COVER_SHEET_SWEEP_S):
        try:
            for split in coversheets.split_new_batches(records):
                log.info("cover sheets: batch %s → %s %s", split.batch_pk, split.van_ban,
                         split.problems)  # fmt: skip
        except Exception:  # keep sweeping; the next round retries what was not claimed
            log.exception("cover-sheet split failed")
        try:  # re-scanned pages to the place of the pages they replace
            for placed in replacements.place_new(records.db):
                log.info("re-scan: batch %s placed %s %s", placed.batch_pk, placed.pages,
                         placed.problems)  # fmt: skip
        except Exception:
            log.exception("placing re-scanned pages failed")


def create_app(settings: ServerSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(
            settings.database(),
            settings.database_password(),
            settings.database_pool_size,
            settings.database_pool_timeout_s,
        )
        store = store_for(settings)  # the local store, or the object store (store_url)
        if isinstance(store, ObjectStore):  # what a crash left in store-staging, before ingest
            try:
                hygiene.sweep_staging(db, store)
            except OSError as exc:
                log.warning("store-staging sweep failed (left as it is): %s", exc)
        app.state.settings = settings
        app.state.db = db
        app.state.catalog = Catalog(db)
        app.state.records = Records(db)
        app.state.renderer = PageRenderer(settings.data_dir / "render-cache")
        app.state.public_brake = public.RateLimit(settings.public_requests_per_minute)
        app.state.ingest = Ingest(
            db,
            store,
            settings.max_part_bytes,
            signing_key=keys.current(settings.data_dir),
            station_limits=StationLimits.from_settings(settings),
            accept_unenrolled=settings.accept_unenrolled_devices,
            key_dir=settings.data_dir,
        )
        app.state.worker = None
        app.state.fleet = None
        if settings.ingest and settings.broker_admin_password() is not None:
            # The enrolment desk: answers stations enrolling over the broker.
            app.state.fleet = FleetWorker(settings, db, keys.current(settings.data_dir))
            app.state.fleet.start()
        if settings.ingest:
            worker = IngestWorker(settings, app.state.ingest, events=rescan.Resender(db))
            worker.start()
            app.state.worker = worker
            app.state.ingest_trouble = lambda: worker.trouble
        # A large archive's progress answers, asked before the first page load waits on them.
        threading.Thread(target=progress.warm, args=(db,), daemon=True, name="progress").start()
        stop = threading.Event()
        dog = threading.Thread(target=_watchdog, args=(app, stop), daemon=True, name="watchdog")
        dog.start()
        if isinstance(store, ObjectStore):  # and again while the server runs
            threading.Thread(
                target=hygiene.sweep_staging_every, args=(db, store, stop), daemon=True,
                name="store-staging",
            ).start()  # fmt: skip
        # The newest pages' own search indexes (PostgreSQL), built as the archive grows.
        threading.Thread(
            target=epochs.keep_up, args=(db, stop), daemon=True, name="search-epochs"
        ).start()
        if settings.ingest:  # batches arrive split at their QR cover sheets
            sweep = threading.Thread(
                target=_split_cover_sheets, args=(app.state.records, stop), daemon=True,
                name="cover-sheets",
            )  # fmt: skip
            sweep.start()
        try:
            yield
        finally:
            stop.set()
            if app.state.worker is not None:
                app.state.worker.stop()
            if app.state.fleet is not None:
                app.state.fleet.stop()
            db.close()

    app = FastAPI(
        title="sohoa archive",
        version=VERSION,
        description="Central archive of digitized commune records (số hóa hồ sơ).",
        lifespan=lifespan,
    )
    # Outermost last: the proxy's word on scheme and client is settled before the headers.
    app.add_middleware(public_web.NoCookies)  # the public side never sees a cookie
    app.add_middleware(SecurityHeaders)
    app.add_middleware(TrustedProxies, trusted_proxies=settings.trusted_proxies)
    static = Path(__file__).parent / "web" / "static"  # the staff pages' scripts
    app.mount("/static", StaticFiles(directory=static), name="static")
    app.include_router(api.router)
    app.include_router(api_records.router)
    app.include_router(api_fleet.router)
    app.include_router(api_plan.router)
    app.include_router(api_public.router)
    app.include_router(web.router)
    app.include_router(public_web.router)

    @app.exception_handler(LoginRequired)
    def _login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={quote(exc.next_url)}", status_code=303)

    @app.exception_handler(StoreError)
    def _store_down(request: Request, exc: StoreError) -> Response:
        # The store (an object store that does not answer) failed a change a staff member
        # asked for (a turn of a page): nothing was recorded; they may try again.
        log.warning("store unavailable for %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(
            {"detail": f"the store cannot take this now: {exc}"},
            status_code=503,
            headers={"Retry-After": "60"},
        )

    busy_log = BusyLog()

    @app.exception_handler(DatabaseBusy)
    def _database_busy(request: Request, exc: DatabaseBusy) -> Response:
        # Every connection of this process's pool stayed busy (or PostgreSQL did not
        # answer) for database_pool_timeout_s: nothing was done; the client may try again.
        busy_log.refused(f"{request.method} {request.url.path}", exc)
        retry = {"Retry-After": str(BUSY_RETRY_AFTER_S)}
        if request.url.path.startswith(public_web.PREFIX + "/"):
            return public_web.unavailable(request, BUSY_RETRY_AFTER_S)
        if request.url.path.startswith("/api/"):
            return JSONResponse(
                {"detail": "database busy, try again later", "retry_after_s": BUSY_RETRY_AFTER_S},
                status_code=503,
                headers=retry,
            )
        page = web.render(request, "message.html", 503, message_key="database_busy")
        page.headers.update(retry)
        return page

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        # A page asked with a value it cannot use (?page=abc, a form field too long): the API
        # answers FastAPI's JSON; a person gets the page's own words, in their language.
        if request.url.path.startswith("/api/"):
            return await request_validation_exception_handler(request, exc)
        fields = sorted({str(e.get("loc", ("", "?"))[-1]) for e in exc.errors()})
        return web.render(request, "message.html", 422, message_key="bad_request",
                          fields=", ".join(fields))  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _no_such_address(request: Request, exc: StarletteHTTPException) -> Response:
        # An address no route serves (a mistyped link, a QR code printed or scanned cut
        # short) answered FastAPI's {"detail": "Not Found"}, in English, to a person. The
        # API, the static files and every other error answer as before; a person gets a
        # page in their language: staff the app's "not found", citizens the public side's
        # one 404 page, the same as an unknown or closed hồ sơ's (it tells nothing apart).
        path = request.url.path
        routed = exc.status_code != 404 or exc.detail != "Not Found"
        if routed or path.startswith(("/api/", "/static/")):
            return await http_exception_handler(request, exc)
        if path == public_web.PREFIX or path.startswith(public_web.PREFIX + "/"):
            return await run_in_threadpool(public_web.lookup, "", request)
        # A signed-in member of staff keeps the app's header and menu (no route read it).
        sid = request.cookies.get(auth.SESSION_COOKIE)
        request.state.session = await run_in_threadpool(auth.session_for, app.state.db, sid)
        return web.render(request, "message.html", 404, message_key="not_found")

    @app.exception_handler(Forbidden)
    def _forbidden(request: Request, exc: Forbidden) -> Response:
        role = i18n.t(f"role_{exc.role}", web.lang(request))
        return web.render(request, "message.html", 403, message_key="forbidden", role=role)

    @app.get("/healthz", response_model=Health, tags=["ops"])
    def healthz() -> Health:
        worker: IngestWorker | None = app.state.worker
        return Health(
            status="ok",
            ingest_connected=worker.alive if worker else None,
            messages=worker.messages if worker else 0,
            version=VERSION,
            ingest_trouble=worker.trouble if worker else None,
        )

    return app
