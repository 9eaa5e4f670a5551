"""`python -m bench captures [--pages N]`: lossless encodings of a 300-dpi capture, compared.

What a station keeps until the archive holds a verified copy is the capture: its size decides
how many pages a disk holds and how long a master takes over the link; its CPU time is spent
while the feeder waits (capture.scan.encode_capture). For each encoding available here (Pillow's
PNG at several zlib levels and with optimize, lossless WebP at several efforts, lossless JPEG
2000 through OpenJPEG) it encodes the same synthetic A4 pages (tests/corpus.py: a clean page, a
tinted page with a seal, a noisy one — scanner noise is what lossless coders pay for), checks
the decoded pixels are identical, and prints bytes and CPU seconds per page (process time of
this single thread: a ratio between encoders, not a wall-clock promise).
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from tests.corpus import PageSpec, render_page

PAGES = (
    PageSpec(),
    PageSpec(paper="tinted", seal=True, speckles=40, seed=1),
    PageSpec(noise_sigma=4.0, blur_sigma=0.6, seed=2),
)

Encoder = Callable[[Image.Image, io.BytesIO], None]
ENCODERS: dict[str, Encoder] = {
    "png level 1 (today)": lambda im, b: im.save(b, "PNG", compress_level=1),
    "png level 3": lambda im, b: im.save(b, "PNG", compress_level=3),
    "png level 6": lambda im, b: im.save(b, "PNG", compress_level=6),
    "png level 9": lambda im, b: im.save(b, "PNG", compress_level=9),
    "png optimize": lambda im, b: im.save(b, "PNG", optimize=True),
    "webp lossless m0": lambda im, b: im.save(b, "WEBP", lossless=True, method=0, quality=0),
    "webp lossless m4": lambda im, b: im.save(b, "WEBP", lossless=True, method=4, quality=75),
    "webp lossless m6": lambda im, b: im.save(b, "WEBP", lossless=True, method=6, quality=100),
    "jpeg2000 lossless": lambda im, b: im.save(b, "JPEG2000", irreversible=False),
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench captures")
    parser.add_argument("--pages", type=int, default=len(PAGES), help="pages (1-3) to use")
    args = parser.parse_args(argv)
    images = [Image.fromarray(render_page(spec).image) for spec in PAGES[: args.pages]]
    print(f"{len(images)} page(s) of {images[0].width}x{images[0].height} RGB (300 dpi A4)")
    print(f"{'encoding':24} {'mean bytes/page':>16} {'vs png 1':>9} {'cpu s/page':>11} lossless")
    base: float | None = None
    for name, encode in ENCODERS.items():
        sizes, cpu, exact = [], [], True
        for image in images:
            buf = io.BytesIO()
            started = time.process_time()
            encode(image, buf)
            cpu.append(time.process_time() - started)
            sizes.append(buf.tell())
            buf.seek(0)
            with Image.open(buf) as back:
                exact &= np.array_equal(np.asarray(back.convert("RGB")), np.asarray(image))
        mean = sum(sizes) / len(sizes)
        base = base or mean
        print(
            f"{name:24} {mean:16,.0f} {mean / base:8.2f}x {sum(cpu) / len(cpu):11.2f} "
            f"{'yes' if exact else 'NO'}"
        )
    return 0
