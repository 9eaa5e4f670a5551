"""Capture: turn sheets of paper (or files) into durable pages of a batch.

:func:`scan_now` is what one press of the button (or `sohoa-agent scan`) does: check the disk,
open the scanner, continue a batch a scanner stop cut short or start a new one. The
orchestrator :func:`scan_batch` reads top to bottom: check disk → open a batch → for each
sheet: encode losslessly, write durably with its sha256, record it → next sheet → close the
batch. Nothing here waits on OCR or the network; the pipeline picks closed batches up later.
A failure on page N keeps pages 1..N-1 (they are on disk and in the outbox already).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from agent import profiles
from agent.capture import sane_device
from agent.capture.sane_device import ScannedPage, Scanner
from agent.config import AgentSettings
from agent.errors import DiskFullError, ScannerError
from agent.outbox import storage
from agent.outbox.outbox import BatchRecord, Outbox, PageRecord
from agent.profiles import SaneDeviceInfo, ScanRequest

log = logging.getLogger(__name__)

# PNG at zlib level 1: lossless and ~10x faster than level 6 for a few % more bytes
# (docs/research/perf.md B4: level 6 takes ~1 s for a 300-dpi page; the feeder must not wait).
PNG_LEVEL = 1
EXPECTED_SHEETS = 50  # when the profile does not state the feeder capacity
# A batch the scanner stopped (jam, cover, double feed, unplugged) is continued by the next
# press within this time: the new batch records which one it continues, so the archive sees
# one run of pages, and the technician only clears the jam and presses the button again.
RESUMABLE_ERRORS = (
    "scanner_jammed",
    "scanner_cover_open",
    "scanner_double_feed",
    "scanner_failed",
    "interrupted",
    "disk_full",
)
RESUME_WINDOW_S = 30 * 60


def batch_to_continue(outbox: Outbox, now: float | None = None) -> BatchRecord | None:
    """The latest scanned batch, if a scanner stop cut it short recently."""
    scanned = [b for b in outbox.batches() if b.source == "scan"]
    if not scanned:
        return None
    last = scanned[-1]
    recent = (now if now is not None else time.time()) - last.created_at < RESUME_WINDOW_S
    return last if recent and last.last_error in RESUMABLE_ERRORS else None


@dataclass(frozen=True)
class ScanOutcome:
    batch: BatchRecord
    pages: int
    error: ScannerError | None  # the failure that stopped the batch early, if any
    # The first sheet was an enrolment sheet: its code; nothing was stored (the batch is gone).
    enrolment_code: str | None = None


# Reads the first sheet of a scan: an enrolment code when it is an enrolment sheet, else
# None. Given by the caller (the daemon, `sohoa-agent scan`: agent.worker.enrolment_code_on),
# which may look at pages; this room may not.
FirstSheetCheck = Callable[[ScannedPage], str | None]


# A page is budgeted at the largest of the station's recent captures times this margin (a
# denser page than any recent one still fits), never more than the setting page_budget_mb.
RECENT_PAGES = 50
PAGE_MARGIN = 1.5


def page_budget(settings: AgentSettings, outbox: Outbox | None) -> int | None:
    """Bytes one more page may take: measured on this station's own recent captures (a
    300-dpi colour page is ~3.6 MB on a synthetic A4, 25-30 MB on a noisy real scan), never
    above the setting page_budget_mb; None before there is any capture to measure. Budgeting
    every page at the setting would refuse a feeder load long before the disk is short
    (50 sheets x 40 MB = 2 GB)."""
    if outbox is None:
        return None
    sizes: list[int] = []
    for batch in reversed(outbox.batches()):
        sizes += [p.capture_size for p in outbox.pages(batch.batch_id)]
        if len(sizes) >= RECENT_PAGES:
            break
    if not sizes:
        return None
    return min(settings.page_budget_mb * 1024 * 1024, int(max(sizes[:RECENT_PAGES]) * PAGE_MARGIN))


def check_disk(settings: AgentSettings, pages_expected: int, outbox: Outbox | None = None) -> None:
    """Refuse to start (or continue) when the data disk could not hold what may come: the
    pages expected at the measured page size, or, with nothing measured yet, one page at the
    setting page_budget_mb (the check after every page stops the feeder in time)."""
    free = storage.disk_free(settings.data_dir)
    measured = page_budget(settings, outbox)
    budget = settings.page_budget_mb * 1024 * 1024 if measured is None else measured
    need = settings.min_free_mb * 1024 * 1024 + budget * (pages_expected if measured else 1)
    if free < need:
        raise DiskFullError(
            "disk_full", f"{free // 2**20} MiB free on {settings.data_dir}, need {need // 2**20}"
        )


def encode_capture(page: ScannedPage) -> bytes:
    buf = io.BytesIO()
    dpi = (page.dpi, page.dpi) if page.dpi else None  # no pHYs: "dpi unknown" stays unknown
    page.image.save(buf, "PNG", compress_level=PNG_LEVEL, dpi=dpi)
    return buf.getvalue()


def scan_now(
    settings: AgentSettings,
    outbox: Outbox,
    *,
    source: str | None = None,
    scanner: str | None = None,
    resume: bool = True,
    on_heard: Callable[[], None] = lambda: None,
    on_start: Callable[[SaneDeviceInfo, BatchRecord | None], None] = lambda info, previous: None,
    on_page: Callable[[PageRecord], None] = lambda page: None,
    metadata: dict[str, str] | None = None,
    first_sheet: FirstSheetCheck | None = None,
) -> ScanOutcome:
    """Scan one feeder load now, the one flow of the button and of `sohoa-agent scan`.

    `source` and `scanner` default to the settings; `resume=False` never continues a stopped
    batch. `on_heard()` runs once the disk check passed, before the scanner is opened (which
    may take a second or more): the moment to tell the operator the press was heard.
    `on_start(scanner, continued batch or None)` runs once the scanner is open, before the
    first sheet. Raises DiskFullError or ScannerError when nothing could be scanned; a
    failure after the first page comes back in `ScanOutcome.error` (the pages are kept).
    """
    request = ScanRequest(source=source or settings.source, mode=settings.mode, dpi=settings.dpi)
    check_disk(settings, 1, outbox)
    known = profiles.load_scanner_profiles(settings.hw_profiles_dir)
    on_heard()
    with sane_device.open_scanner(scanner or settings.scanner, known) as device:
        previous = batch_to_continue(outbox) if resume else None
        on_start(device.info, previous)
        return scan_batch(
            settings,
            outbox,
            device,
            request,
            on_page=on_page,
            metadata=metadata,
            continues=previous,
            first_sheet=first_sheet,
        )


def scan_batch(
    settings: AgentSettings,
    outbox: Outbox,
    scanner: Scanner,
    request: ScanRequest,
    on_page: Callable[[PageRecord], None] = lambda page: None,
    metadata: dict[str, str] | None = None,
    continues: BatchRecord | None = None,
    first_sheet: FirstSheetCheck | None = None,
) -> ScanOutcome:
    """Scan a feeder load into a new batch. With ``first_sheet``, the first sheet is looked
    at before it is stored: an enrolment sheet is not a page of the archive — nothing is
    stored, the feeder stops, and the outcome carries its code (issue #14: the technician
    enrols by pressing the button on the sheet)."""
    metadata = dict(metadata or {})
    if continues is not None:
        metadata["continues_batch"] = continues.batch_id
        metadata["continues_after_page"] = str(continues.page_count)
    capacity = getattr(scanner.profile, "adf_capacity", None) or EXPECTED_SHEETS
    sheets = 1 if request.source == "flatbed" else int(capacity)
    check_disk(settings, sheets * (2 if request.source == "adf_duplex" else 1), outbox)
    batch = outbox.new_batch(
        source="scan", scanner=scanner.info.name, profile=scanner.profile.id, metadata=metadata
    )
    log.info("batch %s: scanning from %s (%s)", batch.batch_id, scanner.info.name, request)
    count = 0
    try:
        for sheet in scanner.pages(request):
            if count == 0 and first_sheet is not None:
                code = first_sheet(sheet)
                if code is not None:
                    log.info("batch %s: the first sheet is an enrolment sheet", batch.batch_id)
                    outbox.discard_empty_batch(batch.batch_id)
                    return ScanOutcome(batch, 0, None, enrolment_code=code)
            page = outbox.add_capture(
                batch.batch_id,
                encode_capture(sheet),
                extension="png",
                media_type="image/png",
                dpi=sheet.dpi,
                width_px=sheet.image.width,
                height_px=sheet.image.height,
                colour=sheet.colour,
            )
            count += 1
            log.info(
                "batch %s page %d stored sha256=%s",
                batch.batch_id,
                page.page_no,
                page.capture_sha256[:12],
            )
            on_page(page)
            check_disk(settings, 1, outbox)  # stop the feeder before the disk can no longer hold it
    except (ScannerError, DiskFullError) as exc:
        if count == 0:
            outbox.discard_empty_batch(batch.batch_id)
            raise
        log.warning("batch %s stopped after %d page(s): %s", batch.batch_id, count, exc)
        closed = outbox.close_batch(batch.batch_id, error=exc.key)
        err = exc if isinstance(exc, ScannerError) else ScannerError(exc.key, exc.detail)
        return ScanOutcome(closed, count, err)
    return ScanOutcome(outbox.close_batch(batch.batch_id), count, None)


def image_info(data: bytes) -> tuple[int, int, bool, int]:
    """(width, height, colour, dpi) of an encoded image, for pages that arrive as files."""
    with Image.open(io.BytesIO(data)) as im:
        dpi = im.info.get("dpi", (0, 0))[0]
        colour = im.mode not in ("1", "L", "LA", "I", "I;16", "F")
        return im.width, im.height, colour, round(float(dpi or 0))
