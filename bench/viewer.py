"""First view of a page in the staff viewer: the archival PDF/A rendered to a JPEG at screen
width (server.archive.page_images), over HTTP from a real ``sohoa-server run``.

Pages: full A4 Vietnamese decisions (tests/corpus.py, 300 dpi, slight skew and noise) that
went through the real agent (``sohoa-agent import`` → pipeline → PDF/A) and a real sync over
Mosquitto, so the PDFs are what stations send (MRC: a 75-dpi JPEG background, a G4 mask at
300 dpi, an invisible text layer).

Measured per page and run, the render cache emptied before each run:

* **first view**: ``GET /api/v1/pages/{id}/render?w=W`` on a cold cache (pdfium renders,
  Pillow encodes, the file is cached, then sent);
* **cached view**: the same request again (a file response from the cache);
* **baseline**: ``GET /api/v1/pages/{id}/image`` — sending the archival PDF as stored, the
  cheapest thing the server can do for that page (what the first viewer did, and what a
  browser cannot show).

Reported: medians over pages × runs, and the first view as a ratio of the baseline measured
in the same run. Nothing here asserts a time.

    python -m bench viewer [--pages 3] [--runs 3] [--width 1200]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from corpus import PageSpec, render_page, save_png  # noqa: E402
from harness import Broker, ServerProcess, agent_env, run_agent  # noqa: E402


def _get(server: ServerProcess, path: str) -> tuple[float, int]:
    request = urllib.request.Request(server.url + path)
    request.add_header("Authorization", f"Bearer {server.token}")
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        size = len(response.read())
    return time.perf_counter() - start, size


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench viewer", description=__doc__)
    parser.add_argument("--pages", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--width", type=int, default=1200)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="sohoa-bench-viewer-"))
    broker = Broker(work / "broker").start()
    server = ServerProcess(work / "server", broker.url)
    try:
        server.start()
        incoming = work / "in"
        incoming.mkdir()
        for n in range(args.pages):
            page = render_page(PageSpec(dpi=300, skew_deg=0.8, noise_sigma=2.0, seed=n))
            save_png(page, incoming / f"{n + 1:03d}.png", dpi=300)
        env = agent_env(work / "agent", broker.url)
        run_agent(env, "import", str(incoming), check=True)
        run_agent(env, "sync", "--wait", "--timeout", "600", check=True)
        batch = server.get_json("/api/v1/batches")[0]
        pages = server.get_json(f"/api/v1/batches/{batch['id']}")["pages"]
        ids = [p["id"] for p in pages]
        pdf_sizes = [p["parts"]["archival"]["size"] for p in pages]

        first: list[float] = []
        cached: list[float] = []
        baseline: list[float] = []
        jpeg_sizes: list[int] = []
        for _ in range(args.runs):
            shutil.rmtree(work / "server" / "render-cache", ignore_errors=True)
            for page_id in ids:
                baseline.append(_get(server, f"/api/v1/pages/{page_id}/image")[0])
                took, size = _get(server, f"/api/v1/pages/{page_id}/render?w={args.width}")
                first.append(took)
                jpeg_sizes.append(size)
                cached.append(_get(server, f"/api/v1/pages/{page_id}/render?w={args.width}")[0])
    finally:
        server.stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.0f} ms"

    print(f"viewer: {platform.node()} {os.cpu_count()} cpu, python {platform.python_version()}")
    print(
        f"{args.pages} A4 pages × {args.runs} runs, width {args.width} px; archival PDF "
        f"{statistics.median(pdf_sizes) / 1024:.0f} KiB, rendered JPEG "
        f"{statistics.median(jpeg_sizes) / 1024:.0f} KiB (medians)"
    )
    print("| request | median |")
    print("|---|---|")
    print(f"| first view (render + cache + send) | {ms(first)} |")
    print(f"| cached view | {ms(cached)} |")
    print(f"| baseline: the archival PDF as stored | {ms(baseline)} |")
    ratio = statistics.median(first) / statistics.median(baseline)
    print(f"first view / baseline: {ratio:.1f}×; max first view {max(first) * 1000:.0f} ms")
    return 0
