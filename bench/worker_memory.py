"""Benchmark: a pipeline worker's memory, stage by stage, one page per fresh process.

    python -m bench worker_memory [--pages 6] [--json FILE]

Renders the pages `python -m bench pipeline` renders (its six variants, 300 dpi A4, one at
200 dpi), then runs `agent.pipeline.process.process_page` on each in a process of its own,
as a station's worker runs it: the daemon's imports (`agent.daemon`), OpenCV single-threaded,
`OMP_THREAD_LIMIT=1`, and one page processed first so that libraries and caches are warm.
Per stage of `process_page` (its `_timed` blocks):

- peak RSS: VmHWM, reset before the stage (`/proc/self/clear_refs` "5");
- peak anonymous memory: RssAnon sampled every millisecond by a thread (what the worker
  takes for itself; RSS also counts library pages, shared with the station in a forked
  worker);

and, at every tesseract run (`agent.pipeline.ocr._run`), the worker's RssAnon and RSS while
it waits for tesseract. These figures depend on the code, not on the machine's load (the
sampler's millisecond can miss a short peak; VmHWM never does). The station's summed PSS,
which also depends on which steps of two workers meet, is `bench pipeline`'s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MB = 1024  # kB


def _status() -> dict[str, int]:
    """VmRSS, VmHWM and RssAnon of this process, kB."""
    out = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon"):
                out[key] = int(value.split()[0])
    return out


class _AnonPeak:
    """The highest RssAnon seen since `reset`, sampled every millisecond."""

    def __init__(self) -> None:
        self.peak = 0
        self._lock = threading.Lock()
        self._generation = 0  # a reading taken before a reset is not kept after it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            generation = self._generation
            now = _status()["RssAnon"]
            with self._lock:
                if generation == self._generation:
                    self.peak = max(self.peak, now)
            time.sleep(0.001)

    def reset(self) -> int:
        with self._lock:
            self._generation += 1
            self.peak = now = _status()["RssAnon"]
        return now

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _child(capture: Path, dpi: int, warm: Path, work: Path) -> int:
    """One page in this process; prints one JSON line: stages and tesseract runs."""
    os.environ["OMP_THREAD_LIMIT"] = "1"
    import cv2

    import agent.daemon  # noqa: F401  (what a forked worker holds from the station)

    cv2.setNumThreads(1)
    from agent.pipeline import ocr, process

    process.process_page(warm, work / "warm", process.PipelineSettings())
    sampler = _AnonPeak()
    stages: list[dict[str, object]] = []
    runs: list[dict[str, object]] = []
    timed = process._timed

    @contextlib.contextmanager
    def measured(timings: dict[str, float], stage: str) -> Iterator[None]:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")  # VmHWM := VmRSS
        before = sampler.reset()
        try:
            with timed(timings, stage):
                yield
        finally:
            after = _status()
            stages.append(
                {
                    "stage": stage,
                    "anon_before_mb": round(before / MB, 1),
                    "anon_peak_mb": round(max(sampler.peak, after["RssAnon"]) / MB, 1),
                    "anon_after_mb": round(after["RssAnon"] / MB, 1),
                    "rss_peak_mb": round(after["VmHWM"] / MB, 1),
                }
            )

    run = ocr._run

    def watched(args: list[str], timeout_s: float):  # type: ignore[no-untyped-def]
        now = _status()
        psm = args[args.index("--psm") + 1] if "--psm" in args else "?"
        runs.append(
            {
                "psm": psm,
                "anon_mb": round(now["RssAnon"] / MB, 1),
                "rss_mb": round(now["VmRSS"] / MB, 1),
            }
        )
        return run(args, timeout_s)

    process._timed = measured  # type: ignore[assignment]
    ocr._run = watched  # type: ignore[assignment]
    rest = _status()["RssAnon"]
    process.process_page(capture, work / capture.stem, process.PipelineSettings(dpi=dpi))
    sampler.stop()
    row = {"page": capture.name, "anon_at_rest_mb": round(rest / MB, 1), "stages": stages}
    print(json.dumps(row | {"tesseract_runs": runs}), flush=True)
    return 0


def measure(pages: list[tuple[Path, str, int]], warm: Path, work: Path) -> list[dict[str, object]]:
    rows = []
    for capture, variant, dpi in pages:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.worker_memory",
                "--child",
                str(capture),
                str(dpi),
                str(warm),
                str(work),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row | {"variant": variant})
    return rows


def report(rows: list[dict[str, object]]) -> str:
    stages: list[str] = []
    for row in rows:
        for s in row["stages"]:  # type: ignore[attr-defined]
            if s["stage"] not in stages:
                stages.append(s["stage"])
    lines = [
        "Peak anonymous memory / peak RSS per stage, MB (one fresh process per page, warmed):",
        "",
        "| page | at rest | " + " | ".join(stages) + " | during tesseract (anon) |",
        "|---" * (len(stages) + 3) + "|",
    ]
    for row in rows:
        by = {s["stage"]: s for s in row["stages"]}  # type: ignore[attr-defined]
        cells = [
            f"{by[n]['anon_peak_mb']:.0f} / {by[n]['rss_peak_mb']:.0f}" if n in by else "–"
            for n in stages
        ]
        runs = row["tesseract_runs"]
        during = ", ".join(f"{r['anon_mb']:.0f}" for r in runs)  # type: ignore[attr-defined]
        lines.append(
            f"| {row['page']} {row['variant']} | {row['anon_at_rest_mb']:.0f} | "
            + " | ".join(cells)
            + f" | {during} |"
        )
    peak = max(
        (s["anon_peak_mb"], row["page"], s["stage"])
        for row in rows
        for s in row["stages"]  # type: ignore[attr-defined]
    )
    lines += ["", f"Highest anonymous peak: {peak[0]:.0f} MB ({peak[1]}, {peak[2]})."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        capture, dpi, warm, work = argv[1:5]
        return _child(Path(capture), int(dpi), Path(warm), Path(work))
    sys.path.insert(0, str(ROOT / "tests"))
    from corpus import PageSpec, render_page, save_png

    from bench.pipeline import render_pages

    parser = argparse.ArgumentParser(prog="python -m bench worker_memory", description=__doc__)
    parser.add_argument("--pages", type=int, default=6, help="pages (default 6: one a variant)")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sohoa-wmem-") as tmp:
        work = Path(tmp)
        pages = [(path, variant, dpi) for path, variant, dpi, _ in render_pages(args.pages, work)]
        warm = save_png(render_page(PageSpec(seed=99)), work / "warm.png")
        rows = measure(pages, warm, work)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
