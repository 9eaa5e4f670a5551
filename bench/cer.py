"""Benchmark: CER per variant over many pages, ours beside OCRmyPDF (mean ± sd).

    python -m bench cer [--seeds 100-105] [--variants clean,200] [--work DIR] [--per-page]

`python -m bench pipeline` runs 2 pages per variant: one misread character moves a mean by
0.075 %. This runs more pages per variant and reports mean ± sd, for both systems, on the
same pages:

- the benchmark's own pages (seeds 0..11, variant = seed mod 6, as bench/pipeline.py makes
  them), then one page per `--seeds` value. Clean pages have no randomness, so the extra
  clean pages vary the type size instead (`CLEAN_FONT_PT`, 10.5–14 pt);
- ours: `agent.pipeline.process.process_page` in `--workers` processes (OMP_THREAD_LIMIT=1, OpenCV
  single-threaded), the CER of its text.txt;
- OCRmyPDF: bench/pipeline.py's command, its sidecar text. Its results do not depend on our
  code, so with `--work DIR` they are kept there (keyed by the page's sha256) and reused by
  the next run on the same pages.

Speed is not measured here (`bench pipeline` does that): pages are processed in a pool.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.pipeline import ROOT, VARIANTS, ocrmypdf_command

sys.path.insert(0, str(ROOT / "tests"))  # the corpus generator lives with the tests

from corpus import PageSpec, cer, render_page, save_png

CLEAN_FONT_PT = (10.5, 11.0, 11.5, 12.5, 13.0, 14.0)  # extra clean pages, in turn
BENCH_PAGES = 12  # bench/pipeline.py's default


@dataclass(frozen=True)
class Page:
    name: str
    variant: str
    spec: PageSpec


@dataclass
class Reading:
    page: Page
    text: str
    cer: float
    decisions: dict[str, object] = dataclasses.field(default_factory=dict)


def page_set(variants: list[str], seeds: list[int], bench_pages: int) -> list[Page]:
    """The benchmark's pages of these variants, then one more page per seed and variant."""
    names = list(VARIANTS)
    pages = []
    for i in range(bench_pages):
        variant = names[i % len(names)]
        if variant in variants:
            spec = dataclasses.replace(VARIANTS[variant], seed=i)
            pages.append(Page(f"p{i:03d}", variant, spec))
    for k, seed in enumerate(seeds):
        for variant in variants:
            extra: dict[str, object] = {"seed": seed}
            if variant == "clean":
                extra["font_pt"] = CLEAN_FONT_PT[k % len(CLEAN_FONT_PT)]
            spec = dataclasses.replace(VARIANTS[variant], **extra)
            pages.append(Page(f"v{names.index(variant)}_s{seed}", variant, spec))
    return pages


def _render(page: Page, work: Path) -> tuple[Path, str]:
    path = work / f"{page.name}.png"
    truth = work / f"{page.name}.txt"
    if not (path.exists() and truth.exists()):
        rendered = render_page(page.spec)
        save_png(rendered, path)
        truth.write_text(rendered.text, encoding="utf-8")
    return path, truth.read_text(encoding="utf-8")


def _ours(item: tuple[Page, str, str]) -> Reading:
    """One page through our pipeline, in a pool process."""
    page, capture, truth = item
    import cv2

    from agent.pipeline.process import PipelineSettings, process_page

    cv2.setNumThreads(1)
    out = Path(capture).with_suffix("") / "ours"
    result = process_page(Path(capture), out, PipelineSettings(dpi=page.spec.dpi))
    text = result.text.read_text(encoding="utf-8")
    return Reading(page, text, cer(truth, text), result.decisions)


def _ocrmypdf(item: tuple[Page, str, str]) -> Reading:
    """One page through OCRmyPDF, or its kept sidecar when the page has not changed."""
    page, capture, truth = item
    path = Path(capture)
    folder = path.with_suffix("") / "ocrmypdf"
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar, key = folder / "sidecar.txt", folder / "page.sha256"
    if not (sidecar.exists() and key.exists() and key.read_text() == digest):
        clean = subprocess.run(["which", "unpaper"], capture_output=True).returncode == 0
        cmd = ocrmypdf_command(path, folder / "out.pdf", sidecar, page.spec.dpi, clean)
        subprocess.run(cmd, check=True, capture_output=True)
        key.write_text(digest)
    text = sidecar.read_text(encoding="utf-8").replace("\f", "")
    return Reading(page, text, cer(truth, text))


def _parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part:
            low, high = part.split("-")
            seeds.extend(range(int(low), int(high) + 1))
        elif part:
            seeds.append(int(part))
    return seeds


def _pick_variants(text: str) -> list[str]:
    if not text:
        return list(VARIANTS)
    wanted = [w.strip() for w in text.split(",")]
    picked = [v for v in VARIANTS if any(w and w in v for w in wanted)]
    if not picked:
        raise SystemExit(f"no variant matches {text!r}; known: {', '.join(VARIANTS)}")
    return picked


def _stats(values: list[float]) -> str:
    if not values:
        return "–"
    sd = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3%} ± {sd:.3%}"


def report(ours: list[Reading], base: list[Reading], variants: list[str]) -> str:
    """Markdown: per variant, mean ± sd (population) for both, and per-page wins."""
    lines = [
        "| variant | pages | CER sohoa | CER OCRmyPDF | pages lower / equal / higher |",
        "|---|---|---|---|---|",
    ]
    by_name = {r.page.name: r for r in base}
    for variant in variants:
        mine = [r for r in ours if r.page.variant == variant]
        theirs = [by_name[r.page.name] for r in mine if r.page.name in by_name]
        pairs = [(r.cer, by_name[r.page.name].cer) for r in mine if r.page.name in by_name]
        wins = sum(a < b - 1e-12 for a, b in pairs)
        ties = sum(abs(a - b) <= 1e-12 for a, b in pairs)
        losses = len(pairs) - wins - ties
        lines.append(
            f"| {variant} | {len(mine)} | {_stats([r.cer for r in mine])} | "
            f"{_stats([r.cer for r in theirs])} | "
            + (f"{wins} / {ties} / {losses} |" if pairs else "– |")
        )
    return "\n".join(lines)


def _line_diffs(truth: str, text: str) -> Iterator[str]:
    want = [line for line in truth.splitlines() if line.strip()]
    got = [line for line in text.splitlines() if line.strip()]
    if len(want) != len(got):
        yield f"    lines {len(got)} of {len(want)}"
        return
    for a, b in zip(want, got, strict=True):
        if a != b:
            yield f"    {a!r} → {b!r}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench cer", description=__doc__)
    parser.add_argument("--seeds", default="100-105", help="extra seeds (default 100-105)")
    parser.add_argument("--bench-pages", type=int, default=BENCH_PAGES)
    parser.add_argument("--variants", default="", help="substrings, e.g. clean,200 (all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, help="keep pages and OCRmyPDF results here")
    parser.add_argument("--skip-ocrmypdf", action="store_true")
    parser.add_argument("--per-page", action="store_true", help="print every page's misreads")
    parser.add_argument("--json", type=Path, help="write every reading here")
    args = parser.parse_args(argv)
    variants = _pick_variants(args.variants)
    work = args.work or Path(tempfile.mkdtemp(prefix="sohoa-cer-"))
    work.mkdir(parents=True, exist_ok=True)
    pages = page_set(variants, _parse_seeds(args.seeds), args.bench_pages)
    items = []
    for page in pages:
        path, truth = _render(page, work)
        items.append((page, str(path), truth))
    print(f"{len(items)} pages in {work}", file=sys.stderr)
    os.environ["OMP_THREAD_LIMIT"] = "1"
    # spawn, not fork: a child forked from a process whose OpenCV thread pool is running
    # can hang on a lock that thread held.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=context) as pool:
        ours = list(pool.map(_ours, items))
        base = [] if args.skip_ocrmypdf else list(pool.map(_ocrmypdf, items))
    truths = {page.name: truth for page, _, truth in items}
    if args.per_page:
        for reading in ours:
            other = next((b for b in base if b.page.name == reading.page.name), None)
            theirs = f", OCRmyPDF {other.cer:.3%}" if other else ""
            print(f"{reading.page.name} {reading.page.variant}: {reading.cer:.3%}{theirs}")
            for diff in _line_diffs(truths[reading.page.name], reading.text):
                print(diff)
    print(f"Command: `{' '.join(['python -m bench cer', *argv])}`")
    print()
    print(report(ours, base, variants))
    if args.json:
        rows = [
            {
                "system": system,
                "page": r.page.name,
                "variant": r.page.variant,
                "spec": dataclasses.asdict(r.page.spec),
                "cer": r.cer,
                "text": r.text,
                "ocr_input": r.decisions.get("ocr_input"),
            }
            for system, readings in (("sohoa", ours), ("OCRmyPDF", base))
            for r in readings
        ]
        args.json.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0
