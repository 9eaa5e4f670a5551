"""Page images a browser can show: the archival PDF/A (or an archival image from older
stations) rendered to JPEG at a few fixed widths, cached on disk.

Browsers cannot show a PDF in ``<img>`` (DESIGN.md §9), so the viewer, the review queue's
thumbnails and the văn bản view ask for ``/api/v1/pages/{id}/render?w=…``. This module owns:

- the widths a client may ask for (:data:`WIDTHS`): a handful, so the cache stays small and
  nobody can make the server render a 100,000-pixel-wide page;
- rendering with pdfium (pypdfium2): the first page only, scaled to the width, height capped
  at :data:`MAX_ASPECT` × width (a hostile page box cannot make a huge bitmap);
- the cache: ``<cache>/<sha[:2]>/<sha256>-<width>.jpg``, keyed by the archival part's sha256
  (verified at ingest and never changed afterwards), written to a temporary name and renamed,
  so a reader never sees half a file. It is a cache: losing it costs a re-render, so nothing
  here fsyncs. The ETag is the key itself.

It must not: read the catalogue, check who asks, or answer HTTP (server.api does); alter the
archival file.

pdfium is not thread-safe (pypdfium2 documents that concurrent calls into the library from
several threads are undefined behaviour), so every call into it holds :data:`_PDFIUM`; the
JPEG encoding and the cache write happen outside that lock.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from server.store import objects

# Thumbnail, review list, screen (laptop), large screen, zoomed in. The viewer picks the
# smallest at least as wide as what it shows (times the device pixel ratio).
WIDTHS = (240, 800, 1200, 1600, 2400)
THUMB_WIDTH = WIDTHS[0]
SCREEN_WIDTH = 1200
MAX_ASPECT = 4.0  # a page at most 4 × as high as wide (A4 is 1.41; a long receipt 3)
JPEG_QUALITY = 82
RENDER_VERSION = 1  # bump when the output for the same input changes (new ETags)
MEDIA_TYPE = "image/jpeg"
# Archival parts the renderer reads; anything else is not rendered (never passed to pdfium
# or Pillow under another name).
SOURCE_TYPES = ("application/pdf", "image/jpeg", "image/png", "image/webp", "image/tiff")

_PDFIUM = threading.Lock()


class RenderError(Exception):
    """The archival file cannot be rendered (not a PDF or image, damaged, empty)."""


@dataclass(frozen=True)
class Rendered:
    path: Path
    etag: str  # quoted, as the header carries it
    width: int


def etag_for(sha256: str, width: int) -> str:
    return f'"{sha256}-{width}-r{RENDER_VERSION}"'


def snap_width(asked: int) -> int:
    """The smallest offered width at least ``asked`` (the largest when none is)."""
    for width in WIDTHS:
        if width >= asked:
            return width
    return WIDTHS[-1]


class PageRenderer:
    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir

    def cached_path(self, sha256: str, width: int) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise RenderError(f"not a sha256: {sha256!r}")
        if width not in WIDTHS:
            raise RenderError(f"width {width} is not one of {WIDTHS}")
        return self.cache_dir / sha256[:2] / f"{sha256}-{width}-r{RENDER_VERSION}.jpg"

    def render(
        self, location: objects.Location, media_type: str, sha256: str, width: int
    ) -> Rendered:
        """The page at ``width`` pixels as a JPEG file, from the cache or rendered now from
        the stored part at ``location`` (either store: :mod:`server.store.objects`)."""
        path = self.cached_path(sha256, width)
        if not path.exists():
            with objects.local_file(location) as source:
                image = _rasterize(source, media_type, width)
            _write_atomic(path, _encode(image))
        return Rendered(path, etag_for(sha256, width), width)


@dataclass(frozen=True)
class Box:
    """A word on the page, as fractions of the page's width and height from its top left
    (so the viewer places it over the image at any zoom)."""

    left: float
    top: float
    width: float
    height: float
    word: str


_WORD = re.compile(r"\w+")


def word_boxes(
    location: objects.Location, media_type: str, wanted: Callable[[str], bool]
) -> list[Box]:
    """Boxes of the words for which ``wanted(word)`` is true, from the archival PDF/A's text
    layer (the invisible OCR text the station placed over each word). An image archival
    part has no text layer: no boxes."""
    if media_type.split(";")[0].strip().lower() != "application/pdf":
        return []
    with objects.local_file(location) as source:
        return _word_boxes(source, wanted)


def _word_boxes(source: Path, wanted: Callable[[str], bool]) -> list[Box]:
    import pypdfium2 as pdfium

    boxes: list[Box] = []
    with _PDFIUM:
        try:
            pdf = pdfium.PdfDocument(source)
        except pdfium.PdfiumError as exc:
            raise RenderError(f"not a readable PDF: {exc}") from exc
        try:
            if len(pdf) < 1:
                return []
            page = pdf[0]
            textpage = page.get_textpage()
            try:
                turn = page.get_rotation()  # a page turned in review (server.archive.rotation)
                page_w, page_h = page.get_size()  # as shown, i.e. after the turn
                if turn in (90, 270):
                    page_w, page_h = page_h, page_w  # char boxes are in the unturned space
                text = textpage.get_text_range()
                for m in _WORD.finditer(text):
                    if not wanted(m.group()):
                        continue
                    # One char box per character of the text range (pdfium's indices).
                    lefts, bottoms, rights, tops = zip(
                        *(textpage.get_charbox(i) for i in range(m.start(), m.end())),
                        strict=True,
                    )
                    x0, y0, x1, y1 = min(lefts), min(bottoms), max(rights), max(tops)
                    left, top = x0 / page_w, 1 - y1 / page_h
                    boxes.append(
                        _turned(left, top, (x1 - x0) / page_w, (y1 - y0) / page_h, turn,
                                m.group())
                    )  # fmt: skip
            finally:
                textpage.close()
                page.close()
        finally:
            pdf.close()
    return boxes


def _turned(left: float, top: float, w: float, h: float, turn: int, word: str) -> Box:
    """A box in the unturned page's fractions (top-left origin) as it shows on the page
    turned ``turn`` degrees clockwise (/Rotate): the rendered image is turned, so the
    highlight must be too."""
    if turn == 90:
        return Box(1 - top - h, left, h, w, word)
    if turn == 180:
        return Box(1 - left - w, 1 - top - h, w, h, word)
    if turn == 270:
        return Box(top, 1 - left - w, h, w, word)
    return Box(left, top, w, h, word)


def _rasterize(source: Path, media_type: str, width: int) -> Image.Image:
    kind = media_type.split(";")[0].strip().lower()
    if kind not in SOURCE_TYPES:
        raise RenderError(f"cannot render a {media_type!r} part")
    if kind == "application/pdf":
        return _render_pdf(source, width)
    return _render_image(source, width)


def _render_pdf(source: Path, width: int) -> Image.Image:
    import pypdfium2 as pdfium  # one importer in the server; the agent has its own use

    with _PDFIUM:
        try:
            pdf = pdfium.PdfDocument(source)
        except pdfium.PdfiumError as exc:
            raise RenderError(f"not a readable PDF: {exc}") from exc
        try:
            if len(pdf) < 1:
                raise RenderError("the PDF has no page")
            page = pdf[0]
            try:
                page_w, page_h = page.get_size()
                if page_w <= 0 or page_h <= 0:
                    raise RenderError("the page has no area")
                scale = min(width / page_w, width * MAX_ASPECT / page_h)
                bitmap = page.render(scale=scale, draw_annots=False)
                image: Image.Image = bitmap.to_pil().convert("RGB")
                bitmap.close()
                if image.width > width:  # pdfium rounds the bitmap up: drop the extra column
                    image = image.crop((0, 0, width, image.height))
            finally:
                page.close()
        finally:
            pdf.close()
    return image


def _render_image(source: Path, width: int) -> Image.Image:
    try:
        with Image.open(source) as opened:
            opened.draft("RGB", (width, int(width * MAX_ASPECT)))  # JPEG: decode at 1/2…1/8
            image = opened.convert("RGB")
    except (OSError, Image.DecompressionBombError) as exc:
        raise RenderError(f"not a readable image: {exc}") from exc
    image.thumbnail((width, int(width * MAX_ASPECT)), Image.Resampling.LANCZOS)
    return image


def _encode(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=False, progressive=True)
    return out.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".render-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)  # two renderers of the same key write the same bytes
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
