"""Benchmark: CER per page class, ours beside plain tesseract and OCRmyPDF (mean ± sd).

    python -m bench cer [--pages 3] [--classes sans,stamps] [--work DIR] [--per-page]
    python -m bench cer --corpus bench [--seeds 100-105] [--variants clean,200]
    python -m bench cer --corpus foreign [--pages 3] [--classes ink,fax] [--describe]

Default corpus: the commune-record classes of tests/records (fonts, record kinds and defects
named per class), `--pages` pages per class (seeds 0..N-1). On the same PNGs, in one run:
ours (`process_page`), plain `tesseract IMG - -l vie --dpi D` (OMP_THREAD_LIMIT=1), and
OCRmyPDF. Beside CER it reports what our pipeline flagged: pages over 5 % CER flagged for
review (all should be), pages under 1 % flagged (none should be), pages flagged blank.

`--corpus foreign` is bench/foreign.py: pages this project did not make (other text, Chromium
rendering, augraphy's defects), `--pages` pages per class; `--describe` prints its classes.

`--corpus bench` is the older set:

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

from bench import foreign
from bench.pipeline import ROOT, VARIANTS, ocrmypdf_command

sys.path.insert(0, str(ROOT / "tests"))  # the corpus generator lives with the tests

import records
from corpus import PageSpec, cer, render_page, save_png

CLEAN_FONT_PT = (10.5, 11.0, 11.5, 12.5, 13.0, 14.0)  # extra clean pages, in turn
BENCH_PAGES = 12  # bench/pipeline.py's default


@dataclass(frozen=True)
class Page:
    name: str
    variant: str  # the bench variant, or the records class
    spec: PageSpec | None  # None: a records (or foreign) class page (`seed`)
    seed: int = 0
    corpus: str = "records"

    @property
    def dpi(self) -> int:
        if self.spec:
            return self.spec.dpi
        if self.corpus == "foreign":
            return foreign.CLASSES[self.variant].dpi
        return records.CLASSES[self.variant].dpi


REVIEW_ABOVE = 0.05  # pages with a higher CER must be flagged for review (issue 15)
CLEAN_BELOW = 0.01  # pages with a lower CER must not be


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


def class_pages(
    classes: list[str], pages: int, first_seed: int = 0, corpus: str = "records"
) -> list[Page]:
    """`pages` pages (seeds first_seed.. first_seed + pages - 1) of each class."""
    seeds = range(first_seed, first_seed + pages)
    return [Page(f"{c}-{s}", c, None, s, corpus) for c in classes for s in seeds]


def _render(page: Page, work: Path) -> tuple[Path, str]:
    path = work / f"{page.name}.png"
    truth = work / f"{page.name}.txt"
    if not (path.exists() and truth.exists()):
        if page.corpus == "foreign":
            text = foreign.render(page.variant, page.seed, path)
        elif page.spec is None:
            made = records.render(page.variant, page.seed)
            records.save(made, path)
            text = made.text
        else:
            rendered = render_page(page.spec)
            save_png(rendered, path)
            text = rendered.text
        truth.write_text(text, encoding="utf-8")
    return path, truth.read_text(encoding="utf-8")


def _ours(item: tuple[Page, str, str]) -> Reading:
    """One page through our pipeline, in a pool process."""
    page, capture, truth = item
    import cv2

    from agent.pipeline.ocr import OcrFailed
    from agent.pipeline.process import PipelineSettings, process_page

    cv2.setNumThreads(1)
    out = Path(capture).with_suffix("") / "ours"
    try:
        # A long timeout: this measures text, not speed, and runs niced on a loaded machine
        # (a 5 s CPU tesseract run once took over 120 s of wall time there).
        settings = PipelineSettings(dpi=page.dpi, ocr_timeout_s=900.0)
        result = process_page(Path(capture), out, settings)
    except OcrFailed as error:  # the agent keeps such a page as failed: no text at all
        return Reading(page, "", 1.0, {"flags": ["ocr_failed"], "error": str(error)})
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
        cmd = ocrmypdf_command(path, folder / "out.pdf", sidecar, page.dpi, clean)
        subprocess.run(cmd, check=True, capture_output=True)
        key.write_text(digest)
    text = sidecar.read_text(encoding="utf-8").replace("\f", "")
    return Reading(page, text, cer(truth, text))


def _tesseract(item: tuple[Page, str, str]) -> Reading:
    """One page through plain `tesseract -l vie`: no cleanup at all, the baseline to beat."""
    page, capture, truth = item
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    cmd = ["tesseract", capture, "-", "-l", "vie", "--dpi", str(page.dpi)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    text = run.stdout.replace("\f", "")
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


def _flags(reading: Reading) -> list[str]:
    flags = reading.decisions.get("flags", [])
    return [str(f) for f in flags] if isinstance(flags, list) else []


def class_report(
    ours: list[Reading], plain: list[Reading], base: list[Reading], classes: list[str]
) -> str:
    """Markdown: per class, mean ± sd CER for the three systems, and what we flagged."""
    lines = [
        "| class | pages | CER sohoa | CER tesseract | CER OCRmyPDF "
        "| > 5 % flagged | < 1 % flagged | blank |",
        "|---|---|---|---|---|---|---|---|",
    ]
    plain_by, base_by = {r.page.name: r for r in plain}, {r.page.name: r for r in base}
    totals = [0, 0, 0, 0, 0]
    for name in [*classes, "all"]:
        mine = [r for r in ours if name in ("all", r.page.variant)]
        if name == "all":
            bad, good, blank = totals[0], totals[2], totals[4]
            bad_text = f"**{totals[1]} / {bad}**"
            good_text = f"**{totals[3]} / {good}**"
            blank_text = f"**{blank}**"
        else:
            bad = sum(r.cer > REVIEW_ABOVE for r in mine)
            bad_flagged = sum(r.cer > REVIEW_ABOVE and "review" in _flags(r) for r in mine)
            good = sum(r.cer < CLEAN_BELOW for r in mine)
            good_flagged = sum(r.cer < CLEAN_BELOW and "review" in _flags(r) for r in mine)
            blank = sum("blank" in _flags(r) for r in mine)
            for i, v in enumerate((bad, bad_flagged, good, good_flagged, blank)):
                totals[i] += v
            bad_text, good_text = f"{bad_flagged} / {bad}", f"{good_flagged} / {good}"
            blank_text = str(blank)
        lines.append(
            f"| {name} | {len(mine)} | {_stats([r.cer for r in mine])} | "
            f"{_stats([plain_by[r.page.name].cer for r in mine if r.page.name in plain_by])} | "
            f"{_stats([base_by[r.page.name].cer for r in mine if r.page.name in base_by])} | "
            f"{bad_text} | {good_text} | {blank_text} |"
        )
    return "\n".join(lines)


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
    parser.add_argument("--corpus", choices=("records", "bench", "foreign"), default="records")
    parser.add_argument("--describe", action="store_true", help="print the foreign classes")
    parser.add_argument("--pages", type=int, default=3, help="pages per class (records)")
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first page")
    parser.add_argument("--classes", default="", help="substrings of class names (all)")
    parser.add_argument("--skip-tesseract", action="store_true")
    parser.add_argument(
        "--skip-ours", action="store_true", help="only the baselines (fills --work's cache)"
    )
    parser.add_argument("--seeds", default="100-105", help="extra seeds (default 100-105)")
    parser.add_argument("--bench-pages", type=int, default=BENCH_PAGES)
    parser.add_argument("--variants", default="", help="substrings, e.g. clean,200 (all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, help="keep pages and OCRmyPDF results here")
    parser.add_argument("--skip-ocrmypdf", action="store_true")
    parser.add_argument("--per-page", action="store_true", help="print every page's misreads")
    parser.add_argument("--json", type=Path, help="write every reading here")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="sohoa-cer-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.describe:
        print(foreign.describe())
        return 0
    if args.corpus in ("records", "foreign"):
        known = list(records.CLASSES if args.corpus == "records" else foreign.CLASSES)
        wanted = [w.strip() for w in args.classes.split(",") if w.strip()]
        variants = [c for c in known if not wanted or any(w in c for w in wanted)]
        if not variants:
            raise SystemExit(f"no class matches {args.classes!r}; known: {known}")
        pages = class_pages(variants, args.pages, args.first_seed, args.corpus)
    else:
        variants = _pick_variants(args.variants)
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
        ours = [] if args.skip_ours else list(pool.map(_ours, items))
        plain = [] if args.skip_tesseract else list(pool.map(_tesseract, items))
        base = [] if args.skip_ocrmypdf else list(pool.map(_ocrmypdf, items))
    truths = {page.name: truth for page, _, truth in items}
    if args.per_page:
        for reading in ours:
            other = next((b for b in base if b.page.name == reading.page.name), None)
            theirs = f", OCRmyPDF {other.cer:.3%}" if other else ""
            bare = next((b for b in plain if b.page.name == reading.page.name), None)
            theirs += f", tesseract {bare.cer:.3%}" if bare else ""
            score = reading.decisions.get("quality", {})
            print(
                f"{reading.page.name} {reading.page.variant}: {reading.cer:.3%}{theirs}"
                f" flags={_flags(reading)} quality={score}"
            )
            for diff in _line_diffs(truths[reading.page.name], reading.text):
                print(diff)
    print(f"Command: `{' '.join(['python -m bench cer', *argv])}`")
    print()
    if args.corpus in ("records", "foreign"):
        print(class_report(ours, plain, base, variants))
    else:
        print(report(ours, base, variants))
    if args.json:
        rows = [
            {
                "system": system,
                "page": r.page.name,
                "variant": r.page.variant,
                "spec": dataclasses.asdict(r.page.spec) if r.page.spec else r.page.seed,
                "cer": r.cer,
                "text": r.text,
                "ocr_input": r.decisions.get("ocr_input"),
                "flags": _flags(r),
                "quality": r.decisions.get("quality"),
            }
            for system, readings in (("sohoa", ours), ("tesseract", plain), ("OCRmyPDF", base))
            for r in readings
        ]
        args.json.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0
