"""`sohoa-agent import` formats: every kind a copier or a phone produces becomes pages the
pipeline can read; every broken or hostile file is refused by name with a reason, and the
rest of the folder is kept."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.capture.importer import ImportOutcome, import_files
from agent.config import AgentSettings
from agent.outbox import outbox as ob
from agent.pipeline.imaging import load_capture

W, H = 240, 160  # small pages: formats, not pixels, are under test


def _rgb() -> Image.Image:
    rng = np.random.default_rng(1)
    a = np.full((H, W, 3), 240, np.uint8)
    a[40:60, 20:200] = (30, 30, 90)  # a "line" of dark blue ink
    a[90:130, 150:200] = (200, 40, 50)  # a red seal corner
    a += rng.integers(0, 5, a.shape, dtype=np.uint8)
    return Image.fromarray(a)


def _save(im: Image.Image, path: Path, fmt: str, **kw: object) -> Path:
    im.save(path, fmt, **kw)
    return path


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _bomb_png(path: Path) -> Path:
    """A valid PNG header declaring 100,000 × 100,000 px (10 G pixels) and a few bytes of
    data: what a decompression bomb looks like to a decoder. Nothing big is allocated."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )
    return path


def _pdf(path: Path, pages: int) -> Path:
    frames = [_rgb().rotate(180 * i) for i in range(pages)]
    frames[0].save(path, "PDF", resolution=150, save_all=True, append_images=frames[1:])
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    rgb = _rgb()
    _save(rgb, d / "01-rgb.png", "PNG", dpi=(300, 300))
    _save(
        Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257), d / "02-grey16.png", "PNG"
    )
    rgb16 = io.BytesIO()  # 16-bit RGB PNG: Pillow cannot write it, OpenCV can
    import cv2

    ok, enc = cv2.imencode(".png", np.asarray(rgb, np.uint16)[:, :, ::-1] * 257)
    assert ok
    rgb16.write(enc.tobytes())
    (d / "03-rgb16.png").write_bytes(rgb16.getvalue())
    _save(rgb.quantize(16), d / "04-palette.png", "PNG")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((W, H)))
    _save(rgba, d / "05-alpha.png", "PNG")
    _save(rgb, d / "06-rgb.jpg", "JPEG", quality=85, dpi=(300, 300))
    _save(rgb.convert("L"), d / "07-grey.jpg", "JPEG", quality=85)
    _save(rgb.convert("CMYK"), d / "08-cmyk.jpg", "JPEG", quality=85)
    bilevel = rgb.convert("L").point(lambda v: 255 if v > 128 else 0).convert("1")
    _save(bilevel, d / "09-g4.tif", "TIFF", compression="group4", dpi=(300, 300))
    _save(
        rgb,
        d / "10-multi.tif",
        "TIFF",
        save_all=True,
        append_images=[bilevel, rgb.convert("L")],
        compression="tiff_lzw",
    )
    _pdf(d / "11-two-pages.pdf", 2)
    good = (d / "01-rgb.png").read_bytes()
    (d / "20-truncated.png").write_bytes(good[: len(good) // 2])
    _bomb_png(d / "21-bomb.png")
    (d / "22-empty.png").write_bytes(b"")
    (d / "23-text.jpg").write_text("Đây không phải là ảnh\n", encoding="utf-8")
    return d


GOOD = {
    "01-rgb.png": 1,
    "02-grey16.png": 1,
    "03-rgb16.png": 1,
    "04-palette.png": 1,
    "05-alpha.png": 1,
    "06-rgb.jpg": 1,
    "07-grey.jpg": 1,
    "08-cmyk.jpg": 1,
    "09-g4.tif": 1,
    "10-multi.tif": 3,
    "11-two-pages.pdf": 2,
}
BAD = {
    "20-truncated.png": "truncated",
    "21-bomb.png": "too large",
    "22-empty.png": "empty",
    "23-text.jpg": "not a PNG, JPEG, TIFF or PDF",
}


def _import(tmp_path: Path, folder: Path) -> tuple[ImportOutcome, list[ob.PageRecord], Path]:
    settings = AgentSettings(data_dir=tmp_path / "agent", device_id="xa-test", min_free_mb=10)
    with ob.Outbox(settings.data_dir) as outbox:
        outcome = import_files(settings, outbox, [folder])
        assert outcome.batch is not None
        pages = outbox.pages(outcome.batch.batch_id)
        return outcome, pages, outbox.batch_dir(outcome.batch.batch_id)


def test_every_good_format_becomes_pages_and_every_bad_file_is_refused_by_name(
    tmp_path: Path, folder: Path
) -> None:
    outcome, pages, batch_dir = _import(tmp_path, folder)

    refused = dict(outcome.refused)
    assert set(refused) == set(BAD), refused
    for name, reason in BAD.items():
        assert reason in refused[name], (name, refused[name])
    assert outcome.pages == sum(GOOD.values()) == len(pages)

    by_source: dict[str, list[ob.PageRecord]] = {}
    for page in pages:
        assert page.source_name is not None
        by_source.setdefault(page.source_name.split("#")[0], []).append(page)
    assert {k: len(v) for k, v in by_source.items()} == GOOD

    for page in pages:
        # What the pipeline will do with it: decode with its loader, at the recorded size.
        loaded = load_capture(batch_dir / page.capture_file)
        assert (loaded.width, loaded.height) == (page.width_px, page.height_px), page
        assert loaded.image.dtype == np.uint8

    # Colour is what the law asks about: recorded per page from the file's content.
    colour = {p.source_name: p.colour for p in pages}
    assert colour["01-rgb.png"] and colour["04-palette.png"] and colour["08-cmyk.jpg"]
    assert not colour["02-grey16.png"] and not colour["07-grey.jpg"]
    assert not colour["09-g4.tif"] and not colour["10-multi.tif#2"]
    assert colour["11-two-pages.pdf#1"]

    # A single-image file is kept byte for byte; its recorded dpi comes from the file.
    first = next(p for p in pages if p.source_name == "01-rgb.png")
    assert (batch_dir / first.capture_file).read_bytes() == (folder / "01-rgb.png").read_bytes()
    assert first.dpi == 300


def test_cmyk_jpeg_and_alpha_png_decode_to_sensible_colours(tmp_path: Path, folder: Path) -> None:
    _, pages, batch_dir = _import(tmp_path, folder)
    by_name = {p.source_name: p for p in pages}
    reference = np.asarray(_rgb())[:, :, ::-1].astype(int)  # BGR, as OpenCV holds it
    cmyk = load_capture(batch_dir / by_name["08-cmyk.jpg"].capture_file).image.astype(int)
    assert cmyk.shape == reference.shape
    # Adobe CMYK JPEGs are stored inverted; a decoder that forgets gets a negative.
    assert np.abs(cmyk - reference).mean() < 12
    alpha = load_capture(batch_dir / by_name["05-alpha.png"].capture_file).image
    assert alpha.shape == (H, W, 3)
    assert alpha[0].mean() > 250  # the fully transparent top row is paper (white)


def test_only_bad_files_make_no_batch(tmp_path: Path, folder: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in BAD:
        (bad / name).write_bytes((folder / name).read_bytes())
    settings = AgentSettings(data_dir=tmp_path / "agent", device_id="xa-test", min_free_mb=10)
    with ob.Outbox(settings.data_dir) as outbox:
        outcome = import_files(settings, outbox, [bad])
        assert outcome.batch is None and outcome.pages == 0
        assert {name for name, _ in outcome.refused} == set(BAD)
        assert outbox.batches() == []


def test_a_pdf_scan_keeps_its_native_dpi_and_a_born_digital_page_has_none(
    tmp_path: Path, folder: Path
) -> None:
    """Issue 17: a 150-dpi scan saved as PDF is not re-rendered at the configured 300 dpi
    (which would pass the 200-dpi check it fails); a PDF page with no scan image in it has no
    dpi at all."""
    import pikepdf

    src = tmp_path / "src"
    src.mkdir()
    (src / "scan-150.pdf").write_bytes((folder / "11-two-pages.pdf").read_bytes())
    digital = pikepdf.new()
    digital.add_blank_page(page_size=(595, 842))
    digital.save(src / "digital.pdf")
    outcome, pages, _ = _import(tmp_path, src)
    assert outcome.pages == 3
    by_name = {p.source_name: p for p in pages}
    for n in (1, 2):
        scan = by_name[f"scan-150.pdf#{n}"]
        assert scan.dpi == 150
        assert (scan.width_px, scan.height_px) == (W, H)  # the scan's own pixels, not 2x
    born = by_name["digital.pdf#1"]
    assert born.dpi == 0  # unknown: the pipeline flags it dpi_unknown
    assert born.width_px == 2480  # 595 pt at the configured 300 dpi (2479.2, rounded up)
