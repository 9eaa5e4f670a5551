"""``sohoa-agent import``: files from a scan-to-folder copier become one batch.

Accepts PNG, JPEG, TIFF (multi-page, incl. bilevel G4) and PDF (multi-page, rendered with
pdfium), recognised by content, not by name. A single-image file is kept byte-for-byte as the
capture (its sha256 is the file's); pages of multi-page files are rendered to PNG and name
their source (``file.pdf#3``). A file that cannot be decoded is refused by name with the
reason; the rest of the batch is kept. Decompression bombs are refused before decoding.

A page's dpi is its source's, never the configured one (issue 17): an image file's own
resolution (0 when it records none: the pipeline flags it ``dpi_unknown``); a PDF page that is
a scan (one image covering the page) is rasterised at that image's native resolution and
recorded with it, so a 150-dpi scan saved as PDF stays 150 dpi; a PDF page without such an
image (born digital) is rendered at the configured dpi and recorded as unknown (0).
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageSequence, UnidentifiedImageError

from agent.capture.scan import PNG_LEVEL, check_disk
from agent.config import AgentSettings
from agent.errors import ImportRefused
from agent.outbox.outbox import BatchRecord, Outbox

log = logging.getLogger(__name__)

MAX_PIXELS = 150_000_000  # an A0 sheet at 600 dpi is ~70 MP; more is a bomb, not a page
MAX_FILE_BYTES = 2 * 1024**3
SCAN_COVER = 0.8  # an image over this share of a PDF page makes the page a scan of that image
MAX_RENDER_DPI = 600  # a scan embedded finer than this is rendered (and recorded) at this
MAX_PDF_PAGES = 2000
_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"II*\x00": "image/tiff",
    b"MM\x00*": "image/tiff",
    b"%PDF-": "application/pdf",
}
_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/tiff": "tif"}


@dataclass
class ImportOutcome:
    batch: BatchRecord | None
    pages: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Page:
    data: bytes
    media_type: str
    width: int
    height: int
    colour: bool
    dpi: int
    source_name: str


def expand(paths: list[Path]) -> list[Path]:
    """Files in the order a person expects: folders walked, names sorted naturally."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted((p for p in path.rglob("*") if p.is_file()), key=_natural))
        else:
            out.append(path)
    return out


def _natural(path: Path) -> list[object]:
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", str(path))]


def sniff(head: bytes) -> str | None:
    return next((t for magic, t in _MAGIC.items() if head.startswith(magic)), None)


def import_files(
    settings: AgentSettings,
    outbox: Outbox,
    paths: list[Path],
    metadata: dict[str, str] | None = None,
) -> ImportOutcome:
    """One batch of the files' pages; ``metadata`` goes with it (e.g. the page a re-scan
    replaces: ``replaces_batch``, ``replaces_page_no``, which the archive places)."""
    files = expand(paths)
    check_disk(settings, len(files))
    outcome = ImportOutcome(batch=None)
    batch = outbox.new_batch(
        source="import", metadata={"files": str(len(files)), **(metadata or {})}
    )
    for path in files:
        try:
            pages = list(_decode(path, settings.dpi))
        except ImportRefused as exc:
            log.warning("import: refused %s: %s", path, exc.detail)
            outcome.refused.append((path.name, exc.detail))
            continue
        for page in pages:
            outbox.add_capture(
                batch.batch_id,
                page.data,
                extension=_EXT[page.media_type],
                media_type=page.media_type,
                dpi=page.dpi,
                width_px=page.width,
                height_px=page.height,
                colour=page.colour,
                source_name=page.source_name,
            )
            outcome.pages += 1
    if outcome.pages == 0:
        outbox.discard_empty_batch(batch.batch_id)
        return outcome
    outcome.batch = outbox.close_batch(batch.batch_id)
    return outcome


def _decode(path: Path, render_dpi: int) -> Iterator[_Page]:
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise ImportRefused("import_refused", f"cannot read: {exc.strerror}") from exc
    if size == 0:
        raise ImportRefused("import_refused", "empty file")
    if size > MAX_FILE_BYTES:
        raise ImportRefused("import_refused", f"file of {size} bytes is too large")
    media_type = sniff(head)
    if media_type is None:
        raise ImportRefused("import_refused", "not a PNG, JPEG, TIFF or PDF file")
    data = path.read_bytes()
    if media_type == "application/pdf":
        yield from _decode_pdf(path.name, data, render_dpi)
    else:
        yield from _decode_image(path.name, data, media_type)


def _open_checked(data: bytes) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImportRefused("import_refused", f"image too large (bomb?): {exc}") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImportRefused("import_refused", f"cannot decode: {exc}") from exc
    if im.width * im.height > MAX_PIXELS:
        raise ImportRefused("import_refused", f"{im.width}x{im.height} pixels is too large")
    return im


def _decode_image(name: str, data: bytes, media_type: str) -> Iterator[_Page]:
    im = _open_checked(data)
    frames = getattr(im, "n_frames", 1)
    for index, frame in enumerate(ImageSequence.Iterator(im), start=1):
        try:
            frame.load()  # decode fully now: a truncated file fails here, not in the pipeline
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImportRefused("import_refused", f"cannot decode: {exc}") from exc
        if frame.width * frame.height > MAX_PIXELS:
            raise ImportRefused("import_refused", "frame is too large")
        dpi = round(float(frame.info.get("dpi", (0, 0))[0] or 0))
        colour = frame.mode not in ("1", "L", "LA", "I", "I;16", "I;16B", "F")
        if frames == 1:
            yield _Page(data, media_type, frame.width, frame.height, colour, dpi, name)
        else:
            yield _Page(
                _png(frame, dpi),
                "image/png",
                frame.width,
                frame.height,
                colour,
                dpi,
                f"{name}#{index}",
            )


def _png(image: Image.Image, dpi: int) -> bytes:
    buf = io.BytesIO()
    if image.mode not in ("1", "L", "RGB", "RGBA", "I;16", "LA", "P"):
        image = image.convert("RGB")
    image.save(buf, "PNG", compress_level=PNG_LEVEL, dpi=(dpi, dpi) if dpi else None)
    return buf.getvalue()


def _decode_pdf(name: str, data: bytes, dpi: int) -> Iterator[_Page]:
    import pypdfium2 as pdfium  # only PDF imports need it

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise ImportRefused("import_refused", f"cannot open PDF: {exc}") from exc
    try:
        if len(pdf) == 0:
            raise ImportRefused("import_refused", "PDF has no pages")
        if len(pdf) > MAX_PDF_PAGES:
            raise ImportRefused("import_refused", f"PDF has {len(pdf)} pages")
        rendered: list[_Page] = []
        for index in range(len(pdf)):
            page = pdf[index]
            width_pt, height_pt = page.get_size()
            native = native_dpi(page)
            recorded = min(native, MAX_RENDER_DPI)
            # pdfium rounds the bitmap size up: a hair under the exact scale keeps a scan's
            # 240 px at 240 (115.2 pt x 150/72 computes as 240.00000001).
            scale = (recorded or dpi) / 72 * (1 - 1e-7)
            if width_pt * height_pt * scale * scale > MAX_PIXELS:
                raise ImportRefused("import_refused", f"page {index + 1} is too large")
            image = page.render(scale=scale).to_pil()
            rendered.append(
                _Page(
                    _png(image, recorded),
                    "image/png",
                    image.width,
                    image.height,
                    image.mode != "L",
                    recorded,
                    f"{name}#{index + 1}",
                )
            )
    except pdfium.PdfiumError as exc:
        raise ImportRefused("import_refused", f"cannot render PDF: {exc}") from exc
    finally:
        pdf.close()
    yield from rendered


def native_dpi(page: Any) -> int:
    """The resolution of the scan a PDF page carries: the dpi (the coarser axis) of the
    largest image that covers at least SCAN_COVER of the page, as placed on it; 0 when no
    image does (a born-digital page has no dpi)."""
    import pypdfium2 as pdfium

    width_pt, height_pt = page.get_size()
    page_area = max(width_pt * height_pt, 1.0)
    best, best_area = 0, 0.0
    for obj in page.get_objects(filter=(pdfium.raw.FPDF_PAGEOBJ_IMAGE,)):
        left, bottom, right, top = obj.get_bounds()
        area = max(right - left, 0) * max(top - bottom, 0)
        if area < SCAN_COVER * page_area or area <= best_area:
            continue
        meta = obj.get_metadata()
        dpi = round(min(meta.horizontal_dpi, meta.vertical_dpi))
        if dpi > 0:
            best, best_area = dpi, area
    return best
