"""The technician's page and its JSON, served with the standard library's http.server.

Routes: `GET /` the page (one HTML document, its script polls `/api/state` every 2 s);
`GET /api/state` what to show; `POST /api/scan` start a scan (409 while one runs);
`POST /api/ho-so` the mã hồ sơ for the next batch; `POST /api/rescan` "quét lại trang này"
(one sheet from the glass replaces that page: shown in its place here, travelling as a batch
that names the page it replaces); `GET /thumb/<batch>/<page_no>` a page's
thumbnail (the pipeline's once processed, else made from the capture while it is on disk).
Every text the page shows comes as data and is set with textContent (never HTML from data).
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from agent.messages import REVIEW_REASONS
from agent.outbox import outbox as ob

log = logging.getLogger(__name__)

THUMB_PX = 320
MA_HO_SO_RE = re.compile(r"^[0-9A-Za-z.\-/_]{0,40}$")  # as agent.pipeline.coversheet
CROOKED_DEG = 1.0  # a deskew this large means the sheet went in crooked (routine ones are less)

WARNINGS = {  # flag → (vi, en)
    "blank": ("Trang trắng", "Blank page"),
    "rotated": ("Trang bị xoay", "Page turned"),
    "crooked": ("Trang bị lệch", "Page crooked"),
    "low_confidence": ("Chữ khó đọc (OCR kém)", "Hard to read (low OCR quality)"),
    "below_200dpi": ("Độ phân giải dưới 200 dpi", "Below 200 dpi"),
    "dpi_unknown": ("Không rõ độ phân giải", "Resolution unknown"),
    "legal_fail": ("Chưa đạt chuẩn lưu trữ", "Fails the archival rules"),
    # the text is likely wrong (agent.pipeline.quality): shown with its reasons, so that the
    # technician can rescan the sheet while still at the scanner
    "review": ("Chữ nhận dạng có thể sai", "Text likely wrong"),
}


class Station(Protocol):
    """What the daemon lends the screen."""

    outbox: ob.Outbox | None  # None until the daemon opened it

    def screen_state(self) -> dict[str, Any]:
        """scanner, scanning, last_error, link, pending_pages, disk_days_left, disk_warn,
        rescans, next_ho_so, fonds, fonds_choices, fonds_names, language."""
        ...

    def start_scan(self) -> bool:
        """Start a scan like the button does; False when one is already running."""
        ...

    def set_next_ho_so(self, code: str) -> None: ...

    def set_fonds(self, code: str) -> bool:
        """Choose the fonds of the next batches among the station's; False if not one."""
        ...

    def rescan_page(self, batch_id: str, page_no: int) -> bool:
        """Scan one sheet from the glass as the replacement of that page (a new batch that
        names the page it replaces); False when a scan is already running."""
        ...


@dataclass
class Screen:
    station: Station
    host: str = "127.0.0.1"
    port: int = 8765

    def start(self) -> ThreadingHTTPServer:
        station = self.station

        class Handler(_Handler):
            pass

        Handler.station = station
        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="screen", daemon=True).start()
        log.info("technician's screen on http://%s:%d/", self.host, server.server_address[1])
        return server


def page_warnings(page: ob.PageRecord) -> list[str]:
    flags = [f for f in page.flags if f in WARNINGS]
    if "review" in flags and "low_confidence" in flags:
        # One line, the one that says why ("Chữ nhận dạng có thể sai: không đọc được chữ"):
        # the demo's every test-pattern card said both, "Chữ khó đọc (OCR kém)" above it.
        flags.remove("low_confidence")
    skew = page.decisions.get("skew") or {}
    if abs(float(skew.get("angle_deg") or 0.0)) >= CROOKED_DEG:
        flags.append("crooked")
    return flags


def warning_text(page: ob.PageRecord, flag: str, lang: int) -> str:
    """The card's line for ``flag`` in language ``lang`` (0 vi, 1 en); for ``review``, with
    the reasons the station judged the text by (``decisions["quality"]``)."""
    text = WARNINGS[flag][lang]
    if flag != "review":
        return text
    judged = page.decisions.get("quality")
    reasons = judged.get("reasons") if isinstance(judged, dict) else None
    if not isinstance(reasons, list) or not reasons:
        return text
    why = ", ".join(REVIEW_REASONS.get(str(r), (str(r), str(r)))[lang] for r in reasons)
    return f"{text}: {why}"


def state(station: Station) -> dict[str, Any]:
    """What the page shows, as data (texts in the station's language)."""
    st = station.screen_state()
    lang = 0 if st.get("language", "vi") == "vi" else 1
    outbox = station.outbox
    assert outbox is not None
    scanned = [b for b in outbox.batches() if b.source == "scan"]
    batches = [b for b in scanned if "replaces_batch" not in b.metadata]
    # the newest re-scan of each page of a batch, shown in its place
    replaced: dict[tuple[str, int], tuple[str, int]] = {}
    for b in scanned:
        if "replaces_batch" in b.metadata:
            key = (b.metadata["replaces_batch"], int(b.metadata.get("replaces_page_no", "0")))
            replaced[key] = (b.batch_id, 1)
    pages: list[dict[str, Any]] = []
    batch_view: dict[str, Any] | None = None
    if batches:
        batch = batches[-1]
        batch_view = {
            "id": batch.batch_id,
            # typed on this screen, else read from the batch's first QR cover sheet
            "ma_ho_so": batch.metadata.get("ma_ho_so", "") or cover_ho_so(outbox, batch.batch_id),
            "state": batch.state,
        }
        for original in outbox.pages(batch.batch_id):
            page = original
            again = replaced.get((batch.batch_id, original.page_no))
            if again is not None:
                page = next((p for p in outbox.pages(again[0]) if p.page_no == again[1]), page)
            warnings = page_warnings(page)
            pages.append(
                {
                    "page_no": original.page_no,
                    "batch_id": batch.batch_id,
                    "thumb": f"/thumb/{page.batch_id}/{page.page_no}",
                    # the archive has the page and the station has let its files go
                    # (agent/retention.py): a card that says so, not a broken image
                    "sent": not image_on_disk(outbox, page),
                    "processed": page.state != ob.CAPTURED,
                    "rescanned": again is not None,
                    "warnings": [warning_text(page, w, lang) for w in warnings],
                    "warning_flags": warnings,
                }
            )
    sent = ("Đã gửi lên lưu trữ tỉnh", "At the provincial archive")[lang]
    return {
        **st, "sync_words": sync_words(st, lang), "sent_words": sent, "batch": batch_view,
        "pages": pages,
    }  # fmt: skip


def cover_ho_so(outbox: ob.Outbox, batch_id: str) -> str:
    """The mã hồ sơ the batch's first cover sheet (agent.pipeline.coversheet) carries."""
    for page in outbox.pages(batch_id):
        sheet = page.decisions.get("cover_sheet") or {}
        if sheet.get("found") and sheet.get("ma_ho_so"):
            return str(sheet["ma_ho_so"])
    return ""


def sync_words(st: dict[str, Any], lang: int) -> str:
    pending = int(st.get("pending_pages") or 0)
    if pending == 0:
        return ("Lưu trữ tỉnh đã nhận đủ mọi trang", "All received by the archive")[lang]
    if not st.get("link"):
        return (
            f"Đang chờ mạng để gửi {pending} trang",
            f"Waiting for the link to send {pending} page(s)",
        )[lang]
    return (f"Đang gửi: còn {pending} trang", f"Sending: {pending} page(s) to go")[lang]


def _image_file(outbox: ob.Outbox, page: ob.PageRecord) -> tuple[Path, bool] | None:
    """The file a page's card is drawn from: (path, whether it is the pipeline's thumbnail
    rather than the capture); None when the station no longer holds either."""
    folder = outbox.batch_dir(page.batch_id)
    thumb = page.parts.get("thumb")
    if thumb is not None and (folder / thumb.file).exists():
        return folder / thumb.file, True
    capture = folder / page.capture_file
    return (capture, False) if capture.exists() else None


def image_on_disk(outbox: ob.Outbox, page: ob.PageRecord) -> bool:
    """Whether :func:`thumbnail` has something to draw the page from."""
    return _image_file(outbox, page) is not None


def thumbnail(outbox: ob.Outbox, batch_id: str, page_no: int) -> bytes | None:
    page = next((p for p in outbox.pages(batch_id) if p.page_no == page_no), None)
    found = None if page is None else _image_file(outbox, page)
    if found is None:
        return None
    path, is_thumbnail = found
    if is_thumbnail:
        return path.read_bytes()
    with Image.open(path) as im:
        im.draft("RGB", (THUMB_PX, THUMB_PX))
        small = im.convert("RGB")
        small.thumbnail((THUMB_PX, THUMB_PX))
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=70)
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    station: Station
    server_version = "sohoa-screen"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("screen %s", format % args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
            "img-src 'self'",
        )
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        body = json.dumps(data, ensure_ascii=False).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8")

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            html = resources.files("agent.screen").joinpath("page.html").read_bytes()
            self._send(HTTPStatus.OK, html, "text/html; charset=utf-8")
        elif path == "/api/state":
            self._json(HTTPStatus.OK, state(self.station))
        elif m := re.fullmatch(r"/thumb/([0-9a-f]{32})/(\d{1,5})", path):
            outbox = self.station.outbox
            data = thumbnail(outbox, m.group(1), int(m.group(2))) if outbox else None
            if data is None:
                self._send(HTTPStatus.NOT_FOUND, b"", "text/plain")
            else:
                self._send(HTTPStatus.OK, data, "image/jpeg")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

    def do_POST(self) -> None:
        # A page on another site must not press the button: only same-origin JSON posts.
        if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
            self._send(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, b"", "text/plain")
            return
        length = min(int(self.headers.get("Content-Length") or 0), 4096)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._json(HTTPStatus.BAD_REQUEST, {"error": "json"})
            return
        if self.path == "/api/scan":
            started = self.station.start_scan()
            self._json(
                HTTPStatus.ACCEPTED if started else HTTPStatus.CONFLICT, {"started": started}
            )
        elif self.path == "/api/rescan":
            batch_id, page_no = str(body.get("batch_id", "")), body.get("page_no")
            if not re.fullmatch(r"[0-9a-f]{32}", batch_id) or not isinstance(page_no, int):
                self._json(HTTPStatus.BAD_REQUEST, {"error": "page"})
                return
            started = self.station.rescan_page(batch_id, page_no)
            self._json(
                HTTPStatus.ACCEPTED if started else HTTPStatus.CONFLICT, {"started": started}
            )
        elif self.path == "/api/ho-so":
            code = str(body.get("ma_ho_so", "")).strip()
            if not MA_HO_SO_RE.fullmatch(code):
                self._json(HTTPStatus.BAD_REQUEST, {"error": "ma_ho_so"})
                return
            self.station.set_next_ho_so(code)
            self._json(HTTPStatus.OK, {"ma_ho_so": code})
        elif self.path == "/api/fonds":
            code = str(body.get("fonds", "")).strip()
            if not self.station.set_fonds(code):
                self._json(HTTPStatus.BAD_REQUEST, {"error": "fonds"})
                return
            self._json(HTTPStatus.OK, {"fonds": code})
        else:
            self._send(HTTPStatus.NOT_FOUND, b"", "text/plain")
