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
OCRmyPDF: its sidecar). Prints a Markdown table; `--write` adds it, dated, as the last
subsection of the "Pipeline" section of the given Markdown file (earlier runs stay).
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
    peak_rss_mb: float = 0.0  # summed over the tree: shared pages counted once per process
    peak_pss_mb: float = 0.0  # summed over the tree: what it takes from RAM
    at_peak: str = ""  # each process's PSS/RSS at the PSS peak
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
    """Peaks of the summed RSS and of the summed PSS of a process tree, sampled from /proc.

    `include_root`: count the root process too (the station process; not this benchmark's
    own process, which renders the pages and is no part of a station). `at_peak`: the
    processes at the PSS peak, (name, RSS kB, PSS kB) each, largest first."""

    def __init__(self, root_pid: int, interval_s: float = 0.05, include_root: bool = False):
        self.root, self.interval, self.include_root = root_pid, interval_s, include_root
        self.peak_kb = self.peak_pss_kb = 0
        self.at_peak: list[tuple[str, int, int]] = []
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
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        pids = _descendants(self.root) + ([self.root] if self.include_root else [])
        rows = [("station" if pid == self.root else _name(pid), *_memory_kb(pid)) for pid in pids]
        self.peak_kb = max(self.peak_kb, sum(rss for _, rss, _ in rows))
        pss = sum(p for _, _, p in rows)
        if pss > self.peak_pss_kb:
            self.peak_pss_kb = pss
            self.at_peak = sorted((r for r in rows if r[1]), key=lambda r: -r[2])

    def describe_peak(self) -> str:
        """`worker 61/95 MB, tesseract 52/66 MB, ...`: PSS/RSS of each process at the peak."""
        return ", ".join(f"{n} {p / 1024:.0f}/{r / 1024:.0f}" for n, r, p in self.at_peak)


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


def _memory_kb(pid: int) -> tuple[int, int]:
    """RSS and PSS of a process in kB ((0, 0) once it is gone)."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
    except (OSError, ValueError, IndexError):
        pass
    return rss, pss


def _name(pid: int) -> str:
    """What a process is, for the peak's breakdown: station, worker, tesseract, gs..."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return "?"
    exe = Path(argv[0].decode(errors="replace")).name
    if exe.startswith("python") and len(argv) > 1:
        # `-m bench.pipeline --worker`, or a pool worker forked from the station
        return "worker" if argv[1] == b"-m" else Path(argv[1].decode(errors="replace")).name
    return exe


# ----------------------------------------------------------------------------- ours


def _worker(argv: list[str]) -> int:
    """Child process (`--layout spawn`): process the given captures one by one, print one
    JSON line each."""
    os.environ["OMP_THREAD_LIMIT"] = "1"
    import cv2

    cv2.setNumThreads(1)
    out_dir = Path(argv[0])
    for item in argv[1:]:
        capture, dpi = item.rsplit(":", 1)
        print(json.dumps(_page(capture, int(dpi), out_dir)), flush=True)
    return 0


def _station(argv: list[str]) -> int:
    """Child process (`--layout station`): what `sohoa-agent run` imports, then the pages
    through a pool of forked workers built as `agent.worker.process_pending` builds it; one
    JSON line per page, in the order they finish."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import agent.daemon  # noqa: F401  (what the daemon holds before it forks its workers)
    from agent import worker

    out_dir, workers, items = Path(argv[0]), int(argv[1]), argv[2:]
    with ProcessPoolExecutor(workers, initializer=worker._init_child) as pool:
        futures = []
        for item in items:
            capture, dpi = item.rsplit(":", 1)
            futures.append(pool.submit(_page, capture, int(dpi), out_dir))
        for future in as_completed(futures):
            print(json.dumps(future.result()), flush=True)
    return 0


def _page(capture: str, dpi: int, out_dir: Path) -> dict[str, object]:
    from agent.pipeline.process import PipelineSettings, process_page

    started, cpu_started = time.perf_counter(), _cpu_s()
    result = process_page(Path(capture), out_dir / Path(capture).stem, PipelineSettings(dpi=dpi))
    return {
        "capture": capture,
        "seconds": time.perf_counter() - started,
        "cpu_s": _cpu_s() - cpu_started,
        "bytes": result.archival.stat().st_size,
        "text": result.text.read_text(encoding="utf-8"),
        "flags": list(result.flags),
    }


def _cpu_s() -> float:
    """User + system CPU seconds of this process and its finished children (tesseract).

    On a shared machine the wall clock measures the other sessions as much as ours; CPU
    time per page does not (cache and memory contention aside), so `CPU s/page` is the
    figure to compare between versions there."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_ours(
    pages: list[tuple[Path, str, int, str]], work: Path, workers: int, layout: str = "station"
) -> Run:
    run = Run("sohoa")
    truth = {str(p): (variant, text) for p, variant, _, text in pages}
    command = [sys.executable, "-m", "bench.pipeline"]
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    started = time.perf_counter()
    if layout == "station":
        items = [f"{p}:{dpi}" for p, _, dpi, _ in pages]
        station = subprocess.Popen(
            [*command, "--station", str(work), str(workers), *items],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        with TreeRss(station.pid, include_root=True) as rss:
            outputs = [station.communicate()[0]]
        procs = [station]
    else:
        shares = [pages[i::workers] for i in range(workers)]
        with TreeRss(os.getpid()) as rss:
            procs = [
                subprocess.Popen(
                    [*command, "--worker", str(work)] + [f"{p}:{dpi}" for p, _, dpi, _ in share],
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                    env=env,
                )
                for share in shares
                if share
            ]
            outputs = [proc.communicate()[0] for proc in procs]
    run.wall_s = time.perf_counter() - started
    run.peak_rss_mb, run.peak_pss_mb = rss.peak_kb / 1024, rss.peak_pss_kb / 1024
    run.at_peak = rss.describe_peak()
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
    run.peak_rss_mb, run.peak_pss_mb = rss.peak_kb / 1024, rss.peak_pss_kb / 1024
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
        f"sohoa at its PSS peak, PSS/RSS MB: {ours.at_peak or '–'}.",
        "",
        "| | sohoa | OCRmyPDF | ratio |",
        "|---|---|---|---|",
        f"| pages/min | {ours.pages_per_min:.1f} | {base.pages_per_min:.1f} | "
        f"{_ratio(ours.pages_per_min, base.pages_per_min)} |",
        f"| CPU s/page, median (worker + tesseract) | {ours.cpu_s_per_page:.2f} | – | – |",
        f"| peak PSS, all processes (MB) | {ours.peak_pss_mb:.0f} | {base.peak_pss_mb:.0f} | "
        f"{_ratio(ours.peak_pss_mb, base.peak_pss_mb)} |",
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


def write_section(path: Path, body: str, title: str) -> None:
    """Add ``body`` under ``### title`` at the end of the '## Pipeline' section of a Markdown
    file (the section is made if missing). Earlier runs recorded there are never touched:
    figures are added, dated, not replaced."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    block = f"### {title}\n\n{body.rstrip()}\n"
    start = text.find(SECTION + "\n")
    if start < 0:
        path.write_text(text.rstrip("\n") + f"\n\n{SECTION}\n\n{_doc_intro()}{block}", "utf-8")
        return
    nxt = text.find("\n## ", start + len(SECTION))
    end = nxt + 1 if nxt >= 0 else len(text)
    head = text[:end].rstrip("\n") + "\n\n"
    path.write_text(head + block + ("\n" + text[end:] if nxt >= 0 else ""), encoding="utf-8")


def render_pages(count: int, work: Path) -> list[tuple[Path, str, int, str]]:
    """``count`` pages spread over VARIANTS (seed = index), saved as PNG in ``work``: each
    page's path, variant, dpi and rendered text."""
    names = list(VARIANTS)
    pages = []
    for i in range(count):
        variant = names[i % len(names)]
        spec = VARIANTS[variant]
        page = render_page(PageSpec(**{**spec.__dict__, "seed": i}))
        pages.append((save_png(page, work / f"p{i:03d}.png"), variant, spec.dpi, page.text))
    return pages


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        return _worker(argv[1:])
    if argv[:1] == ["--station"]:
        return _station(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench pipeline", description=__doc__)
    parser.add_argument("--pages", type=int, default=12, help="pages in all (default 12)")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument(
        "--layout",
        choices=("station", "spawn"),
        default="station",
        help="station: forked workers under a process holding the daemon's imports, all "
        "measured (default); spawn: one fresh interpreter per worker (earlier sittings)",
    )
    parser.add_argument("--skip-ocrmypdf", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the work folder here")
    parser.add_argument(
        "--write", type=Path, help="Markdown file to add this run to (its Pipeline section)"
    )
    args = parser.parse_args(argv)
    shown = [a for i, a in enumerate(argv) if "--write" not in (a, argv[i - 1] if i else "")]
    command = " ".join(["python -m bench pipeline", *shown])
    work = args.keep or Path(tempfile.mkdtemp(prefix="sohoa-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    pages = render_pages(args.pages, work)
    print(f"{len(pages)} pages rendered in {work}", file=sys.stderr)
    ours = run_ours(pages, work / "ours", args.workers, args.layout)
    print(
        f"sohoa: {ours.pages_per_min:.1f} pages/min, {ours.cpu_s_per_page:.2f} CPU s/page, "
        f"peak PSS {ours.peak_pss_mb:.0f} MB, peak RSS {ours.peak_rss_mb:.0f} MB",
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
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        title = f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}" + (
            f" at {commit}" if commit else ""
        )
        write_section(args.write, body, title)
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
        "on every variant, ≤ 100 KB per page, ≤ 300 MB in all (summed PSS of the station's "
        "tree, issue 15).\n\n"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
