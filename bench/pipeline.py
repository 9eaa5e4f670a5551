"""Benchmark: our page pipeline (cleanup + OCR + archival PDF/A) beside OCRmyPDF.

    python -m bench pipeline [--pages N] [--workers 2] [--write docs/benchmarks.md]

Renders N synthetic pages (tests/corpus.py) spread over six variants, 300 dpi A4 (one
variant at 200 dpi), then on the same PNGs in the same run:

- ours: `agent.pipeline.process.process_page` in `--workers` processes, as agent/worker.py runs it
  (OMP_THREAD_LIMIT=1, OpenCV single-threaded, one process per core);
- OCRmyPDF: `ocrmypdf -l vie --deskew --rotate-pages --optimize 1 [--clean] --image-dpi D
  --sidecar TXT -j 1 IN OUT`, the same number of files at a time.

Measured: pages per minute (wall clock over all pages), peak RSS summed over the whole
process tree (sampled from /proc every 50 ms: workers, tesseract, ghostscript...), bytes per
archival page, and CER per variant against the rendered ground truth (ours: text.txt;
OCRmyPDF: its sidecar). Prints a Markdown table; `--write` replaces the "Pipeline" section of
the given Markdown file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the corpus generator lives with the tests

from corpus import PageSpec, cer, render_page, save_png  # noqa: E402

NOISY = {"paper": "gradient", "blur_sigma": 0.9, "speckles": 4350}
VARIANTS: dict[str, PageSpec] = {
    "clean": PageSpec(),
    "noisy σ2 skew 2.5°": PageSpec(noise_sigma=2.0, skew_deg=2.5, **NOISY),  # type: ignore[arg-type]
    "noisy σ6 skew −1.5°": PageSpec(noise_sigma=6.0, skew_deg=-1.5, **NOISY),  # type: ignore[arg-type]
    "tinted + seal": PageSpec(paper="tinted", seal=True, noise_sigma=2.0),
    "rotated 180°": PageSpec(turned_cw=180, noise_sigma=2.0),
    "200 dpi": PageSpec(dpi=200, noise_sigma=2.0, paper="gradient"),
}
SECTION = "## Pipeline"


@dataclass
class PageRun:
    variant: str
    seconds: float
    bytes: int
    cer: float
    cpu_s: float = 0.0  # CPU seconds of the page: the worker's and its tesseracts'


@dataclass
class Run:
    name: str
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    pages: list[PageRun] = field(default_factory=list)
    error: str = ""

    @property
    def pages_per_min(self) -> float:
        return 60 * len(self.pages) / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_s_per_page(self) -> float:
        """Median CPU seconds per page (0 when not measured: OCRmyPDF)."""
        cpu = [p.cpu_s for p in self.pages if p.cpu_s]
        return statistics.median(cpu) if cpu else 0.0


# ----------------------------------------------------------------------------- memory


class TreeRss:
    """Peak of the summed RSS of a process and all its descendants, sampled from /proc."""

    def __init__(self, root_pid: int, interval_s: float = 0.05) -> None:
        self.root, self.interval, self.peak_kb = root_pid, interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, sum(_rss_kb(p) for p in _descendants(self.root)))
            self._stop.wait(self.interval)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# ----------------------------------------------------------------------------- ours


def _worker(argv: list[str]) -> int:
    """Child process: process the given captures one by one, print one JSON line each."""
    os.environ["OMP_THREAD_LIMIT"] = "1"
    import cv2

    from agent.pipeline.process import PipelineSettings, process_page

    cv2.setNumThreads(1)
    out_dir = Path(argv[0])
    for item in argv[1:]:
        capture, dpi = item.rsplit(":", 1)
        started, cpu_started = time.perf_counter(), _cpu_s()
        result = process_page(
            Path(capture), out_dir / Path(capture).stem, PipelineSettings(dpi=int(dpi))
        )
        print(
            json.dumps(
                {
                    "capture": capture,
                    "seconds": time.perf_counter() - started,
                    "cpu_s": _cpu_s() - cpu_started,
                    "bytes": result.archival.stat().st_size,
                    "text": result.text.read_text(encoding="utf-8"),
                    "flags": list(result.flags),
                }
            ),
            flush=True,
        )
    return 0


def _cpu_s() -> float:
    """User + system CPU seconds of this process and its finished children (tesseract).

    On a shared machine the wall clock measures the other sessions as much as ours; CPU
    time per page does not (cache and memory contention aside), so `CPU s/page` is the
    figure to compare between versions there."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_ours(pages: list[tuple[Path, str, int, str]], work: Path, workers: int) -> Run:
    run = Run("sohoa")
    shares = [pages[i::workers] for i in range(workers)]
    truth = {str(p): (variant, text) for p, variant, _, text in pages}
    started = time.perf_counter()
    with TreeRss(os.getpid()) as rss:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.pipeline", "--worker", str(work)]
                + [f"{p}:{dpi}" for p, _, dpi, _ in share],
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
                env=dict(os.environ, OMP_THREAD_LIMIT="1"),
            )
            for share in shares
            if share
        ]
        outputs = [proc.communicate()[0] for proc in procs]
    run.wall_s = time.perf_counter() - started
    run.peak_rss_mb = rss.peak_kb / 1024
    if any(proc.returncode for proc in procs):
        run.error = "a worker failed"
    for line in "".join(outputs).splitlines():
        row = json.loads(line)
        variant, text = truth[row["capture"]]
        run.pages.append(
            PageRun(
                variant, row["seconds"], row["bytes"], cer(text, row["text"]), row.get("cpu_s", 0)
            )
        )
    return run


# ----------------------------------------------------------------------------- OCRmyPDF


def ocrmypdf_command(capture: Path, out: Path, sidecar: Path, dpi: int, clean: bool) -> list[str]:
    exe = shutil.which("ocrmypdf") or str(Path(sys.executable).with_name("ocrmypdf"))
    cmd = [exe, "-l", "vie", "--deskew", "--rotate-pages", "--optimize", "1"]
    if clean:
        cmd.append("--clean")
    return [
        *cmd,
        "--image-dpi",
        str(dpi),
        "--sidecar",
        str(sidecar),
        "-j",
        "1",
        "-q",
        str(capture),
        str(out),
    ]


def run_ocrmypdf(pages: list[tuple[Path, str, int, str]], work: Path, workers: int) -> Run:
    run = Run("OCRmyPDF")
    exe = shutil.which("ocrmypdf") or str(Path(sys.executable).with_name("ocrmypdf"))
    if not Path(exe).exists():
        run.error = "ocrmypdf not installed (pip install ocrmypdf; apt install ghostscript)"
        return run
    clean = shutil.which("unpaper") is not None
    todo = list(pages)
    running: list[tuple[subprocess.Popen[bytes], Path, Path, str, str, float]] = []
    started = time.perf_counter()
    with TreeRss(os.getpid()) as rss:
        while todo or running:
            while todo and len(running) < workers:
                capture, variant, dpi, text = todo.pop(0)
                out, side = work / f"{capture.stem}.pdf", work / f"{capture.stem}.txt"
                cmd = ocrmypdf_command(capture, out, side, dpi, clean)
                proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
                running.append((proc, out, side, variant, text, time.perf_counter()))
            time.sleep(0.05)
            for item in list(running):
                proc, out, side, variant, text, t0 = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                if proc.returncode != 0 or not out.exists():
                    run.error = f"exit {proc.returncode}: {stderr.strip()[-300:]}"
                    continue
                hyp = side.read_text(encoding="utf-8").replace("\f", "")
                run.pages.append(
                    PageRun(variant, time.perf_counter() - t0, out.stat().st_size, cer(text, hyp))
                )
    run.wall_s = time.perf_counter() - started
    run.peak_rss_mb = rss.peak_kb / 1024
    return run


# ----------------------------------------------------------------------------- report


def _by_variant(run: Run) -> dict[str, tuple[float, float]]:
    out = {}
    for variant in VARIANTS:
        rows = [p for p in run.pages if p.variant == variant]
        if rows:
            out[variant] = (
                statistics.mean(p.cer for p in rows),
                statistics.mean(p.bytes for p in rows),
            )
    return out


def report(ours: Run, base: Run, n_pages: int, workers: int, command: str) -> str:
    o, b = _by_variant(ours), _by_variant(base)
    lines = [
        f"Command: `{command}` ({n_pages} pages, {workers} worker processes, "
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}).",
        "",
        "| | sohoa | OCRmyPDF | ratio |",
        "|---|---|---|---|",
        f"| pages/min | {ours.pages_per_min:.1f} | {base.pages_per_min:.1f} | "
        f"{_ratio(ours.pages_per_min, base.pages_per_min)} |",
        f"| CPU s/page, median (worker + tesseract) | {ours.cpu_s_per_page:.2f} | – | – |",
        f"| peak RSS, all processes (MB) | {ours.peak_rss_mb:.0f} | {base.peak_rss_mb:.0f} | "
        f"{_ratio(ours.peak_rss_mb, base.peak_rss_mb)} |",
        f"| mean bytes/page | {_mean_bytes(ours):,.0f} | {_mean_bytes(base):,.0f} | "
        f"{_ratio(_mean_bytes(ours), _mean_bytes(base))} |",
        f"| max bytes/page | {_max_bytes(ours):,} | {_max_bytes(base):,} | |",
        "",
        "| variant | CER sohoa | CER OCRmyPDF | bytes sohoa | bytes OCRmyPDF |",
        "|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        oc, ob = o.get(variant, (float("nan"),) * 2)
        bc, bb = b.get(variant, (float("nan"),) * 2)
        lines.append(f"| {variant} | {oc:.2%} | {bc:.2%} | {ob:,.0f} | {bb:,.0f} |")
    for run in (ours, base):
        if run.error:
            lines.append(f"\n{run.name}: {run.error}")
    return "\n".join(lines)


def _mean_bytes(run: Run) -> float:
    return statistics.mean(p.bytes for p in run.pages) if run.pages else 0.0


def _max_bytes(run: Run) -> int:
    return max((p.bytes for p in run.pages), default=0)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "–"


def write_section(path: Path, body: str) -> None:
    """Replace (or append) the '## Pipeline' section of a Markdown file."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = text.find(SECTION + "\n")
    block = f"{SECTION}\n\n{body}\n"
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + block
    else:
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + block + (text[nxt:] if nxt >= 0 else "")
    path.write_text(text, encoding="utf-8")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        return _worker(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench pipeline", description=__doc__)
    parser.add_argument("--pages", type=int, default=12, help="pages in all (default 12)")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--skip-ocrmypdf", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the work folder here")
    parser.add_argument("--write", type=Path, help="Markdown file whose Pipeline section to set")
    args = parser.parse_args(argv)
    shown = [a for i, a in enumerate(argv) if "--write" not in (a, argv[i - 1] if i else "")]
    command = " ".join(["python -m bench pipeline", *shown])
    work = args.keep or Path(tempfile.mkdtemp(prefix="sohoa-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    names = list(VARIANTS)
    pages = []
    for i in range(args.pages):
        variant = names[i % len(names)]
        spec = VARIANTS[variant]
        page = render_page(PageSpec(**{**spec.__dict__, "seed": i}))
        path = save_png(page, work / f"p{i:03d}.png")
        pages.append((path, variant, spec.dpi, page.text))
    print(f"{len(pages)} pages rendered in {work}", file=sys.stderr)
    ours = run_ours(pages, work / "ours", args.workers)
    print(
        f"sohoa: {ours.pages_per_min:.1f} pages/min, {ours.cpu_s_per_page:.2f} CPU s/page",
        file=sys.stderr,
    )
    if args.skip_ocrmypdf:
        base = Run("OCRmyPDF", error="skipped (--skip-ocrmypdf)")
    else:
        (work / "ocrmypdf").mkdir(exist_ok=True)
        base = run_ocrmypdf(pages, work / "ocrmypdf", args.workers)
    body = report(ours, base, len(pages), args.workers, command.strip())
    print(body)
    if args.write:
        write_section(args.write, _doc_intro() + body)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if ours.error else 0


def _doc_intro() -> str:
    return (
        "Cleanup + OCR (tesseract `vie`) + archival page (MRC PDF/A-2b) per page, beside "
        "OCRmyPDF (`-l vie --deskew --rotate-pages --optimize 1 --clean`, one file per "
        "process, as many processes as ours) on the same synthetic pages "
        "(tests/corpus.py), in the same run. CER against the rendered text; bytes are the "
        "archival PDF. Goals (issue 4): ≥ 40 pages/min on 2 cores, lower CER than OCRmyPDF "
        "on every variant, ≤ 100 KB per page, ≤ 300 MB RSS in all.\n\n"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
