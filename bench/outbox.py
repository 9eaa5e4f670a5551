"""The outbox's cost per update as the backlog grows, beside one TinyDB file for everything.

The outbox (agent/outbox.py) keeps an index of batches plus one TinyDB file per batch, so a
page update rewrites one batch's file whatever the backlog. The baseline is the design it
avoided: the *same* Outbox code with every table in one file (``_batch_db`` returns the
index database), so each update rewrites, and each lookup re-reads, every page of the
backlog. Both use the same AtomicJSONStorage (temp file, fsync, replace, fsync dir).

The backlog is written directly as files (batches of ``--batch-pages`` processed pages, not
yet synced) so that it can grow to 50,000 pages in seconds; at each level both stores then
time real calls:

* ``add_capture`` — a page into a fresh batch (16-byte captures: the disk cost is fsyncs);
* ``record_processed`` — the same pages, three tiny part files each;
* ``mark_acked`` — the text part of pages of the oldest backlog batch (a full batch file);
* ``update_batch`` — a batch row in the index.

Every write fsyncs, so absolute numbers depend on the disk: compare the columns. At the
largest level it also times ``sohoa-agent status --json`` (a process, as the technician
runs it) and, in process, ``status.collect`` (what the daemon's telemetry and the syncer pay:
per-batch counters from the index) beside the previous way (every page of every batch made
into a PageRecord and summed, kept here as ``collect_by_walking``), and profiles
``status.collect`` to say where its time goes.

    python -m bench outbox [--levels 1000,10000,25000,50000] [--batch-pages 500] [--ops 20]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent import status as agent_status  # noqa: E402
from agent.outbox import outbox as ob  # noqa: E402

BIN = Path(sys.executable).parent
MEDIA = {"text": "text/plain; charset=utf-8", "thumb": "image/jpeg", "archival": "application/pdf"}
EXT = {"text": ".txt", "thumb": ".jpg", "archival": ".pdf"}


class SingleFileOutbox(ob.Outbox):
    """The baseline: the same code, one TinyDB file (index and all pages), and no per-batch
    counters (they exist to avoid reading every page, which this design does anyway)."""

    def _batch_db(self, batch_id: str) -> Any:
        return self._index

    def _changing_pages(self, batch_id: str) -> Any:
        return contextlib.nullcontext()


def _sha() -> str:
    return os.urandom(32).hex()


def page_doc(batch_id: str, page_no: int, with_batch: bool) -> dict[str, Any]:
    """A processed, not yet receipted page as add_capture + record_processed leave it."""
    doc: dict[str, Any] = {
        "page_id": uuid.uuid4().hex,
        "page_no": page_no,
        "state": ob.PROCESSED,
        "capture_file": f"capture/{page_no:04d}.png",
        "capture_sha256": _sha(),
        "capture_size": 24_000_000,
        "capture_media_type": "image/png",
        "dpi": 300,
        "width_px": 2480,
        "height_px": 3508,
        "colour": True,
        "source_name": None,
        "parts": {
            name: {
                "file": f"{name}/{page_no:04d}{EXT[name]}",
                "sha256": _sha(),
                "size": size,
                "media_type": MEDIA[name],
                "acked": False,
            }
            for name, size in (("archival", 80_000), ("text", 2_000), ("thumb", 15_000))
        },
        "flags": [],
        "decisions": {"deskew_deg": 0.4, "crop": [12, 10, 2460, 3490], "blank": False},
        "ocr_confidence": 91.5,
        "error": None,
    }
    if with_batch:
        doc["batch_id"] = batch_id
    return doc


def batch_doc(
    batch_id: str, pages: int, created_at: float, docs: list[dict[str, Any]]
) -> dict[str, Any]:
    """An index row as the outbox leaves it, counters included."""
    return {
        "counts": dataclasses.asdict(ob.BatchCounts.of_docs(iter(docs))),
        "batch_id": batch_id,
        "state": ob.READY,
        "created_at": created_at,
        "source": "scan",
        "scanner": "fujitsu:fi-7160",
        "profile": "a4-colour-300",
        "page_count": pages,
        "metadata": {"ma_ho_so": "000.00.12.H01.2025.01"},
        "attempts": 0,
        "last_error": None,
        "secret": False,
    }


def _read_tinydb(path: Path) -> dict[str, dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else {}


def _write_tinydb(path: Path, data: dict[str, dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")))


def grow(root: Path, single: bool, batches: int, batch_pages: int) -> None:
    """Append ``batches`` backlog batches to a closed store, as files."""
    index_path = root / ob.INDEX_FILE
    data = _read_tinydb(index_path)
    rows = data.setdefault("_default", {})
    pages = data.setdefault("pages", {}) if single else {}
    next_row = max(map(int, rows), default=0) + 1
    next_page = max(map(int, pages), default=0) + 1
    for _ in range(batches):
        batch_id = uuid.uuid4().hex
        (root / "batches" / batch_id).mkdir(parents=True)
        docs = [page_doc(batch_id, n, single) for n in range(1, batch_pages + 1)]
        rows[str(next_row)] = batch_doc(batch_id, batch_pages, time.time(), docs)
        next_row += 1
        if single:
            for doc in docs:
                pages[str(next_page)] = doc
                next_page += 1
        else:
            table = {str(i): doc for i, doc in enumerate(docs, 1)}
            _write_tinydb(root / "batches" / batch_id / ob.BATCH_FILE, {"pages": table})
    _write_tinydb(index_path, data)


def count_pages(box: ob.Outbox) -> int:
    if isinstance(box, SingleFileOutbox):
        return len(box._index.table("pages"))
    return sum(len(box.pages(b.batch_id)) for b in box.batches())


def measure(box: ob.Outbox, ops: int, parts_dir: Path) -> dict[str, list[float]]:
    """Time ``ops`` calls of each kind; seconds per call."""
    times: dict[str, list[float]] = {
        "add_capture": [],
        "record_processed": [],
        "mark_acked": [],
        "update_batch": [],
    }

    def timed(kind: str, fn: Callable[[], object]) -> object:
        t = time.perf_counter()
        out = fn()
        times[kind].append(time.perf_counter() - t)
        return out

    oldest = box.batches((ob.READY,))[0]
    batch = box.new_batch(source="scan", scanner="bench")
    pages = []
    for _ in range(ops):
        page = timed(
            "add_capture",
            lambda: box.add_capture(
                batch.batch_id,
                os.urandom(16),
                extension="png",
                media_type="image/png",
                dpi=300,
                width_px=2480,
                height_px=3508,
                colour=True,
            ),
        )
        pages.append(page)
    parts = {name: parts_dir / f"p{EXT[name]}" for name in MEDIA}
    for page in pages:
        timed(
            "record_processed",
            lambda page=page: box.record_processed(
                batch.batch_id,
                page.page_id,
                parts=parts,
                media_types=MEDIA,
                flags=(),
                decisions={"deskew_deg": 0.1},
                ocr_confidence=90.0,
            ),
        )
    targets = [p for p in box.pages(oldest.batch_id) if not p.parts["text"].acked][:ops]
    for page in targets:
        sha = page.parts["text"].sha256
        ok = timed(
            "mark_acked",
            lambda page=page, sha=sha: box.mark_acked(oldest.batch_id, page.page_id, "text", sha),
        )
        assert ok
    for _ in range(ops):
        timed("update_batch", lambda: box.update_batch(batch.batch_id, attempts=1))
    box.close_batch(batch.batch_id)
    box.update_batch(batch.batch_id, state=ob.READY)
    return times


def _ms(xs: list[float], q: float) -> float:
    if q == 0.5:
        return statistics.median(xs) * 1000
    return statistics.quantiles(xs, n=100, method="inclusive")[int(q * 100) - 1] * 1000


def collect_by_walking(box: ob.Outbox) -> tuple[int, int, int]:
    """The previous status.collect's work: every page of every batch as a PageRecord."""
    waiting = unsent = parts_acked = 0
    for batch in box.batches():
        pages = box.pages(batch.batch_id)
        parts = [p for page in pages for p in page.parts.values()]
        parts_acked += sum(1 for p in parts if p.acked)
        waiting += sum(1 for p in pages if not all(x.acked for x in p.parts.values()))
        unsent += sum(p.size for p in parts if not p.acked)
    return waiting, unsent, parts_acked


def collect_cost(root: Path) -> tuple[float, float]:
    """Median seconds (5 runs each, read-only outbox) of status.collect and of walking."""
    now, walk = [], []
    with ob.Outbox(root, read_only=True) as box:
        for _ in range(5):
            t = time.perf_counter()
            st = agent_status.collect(box, "xa-bench-01", root)
            now.append(time.perf_counter() - t)
            t = time.perf_counter()
            waiting, unsent, _ = collect_by_walking(box)
            walk.append(time.perf_counter() - t)
            assert (st.pages_waiting_sync, st.bytes_waiting_sync) == (waiting, unsent)
    return statistics.median(now), statistics.median(walk)


def status_cost(root: Path) -> tuple[float, str]:
    """Median seconds of ``sohoa-agent status --json`` (3 runs) and a profile of collect()."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
    env.update(SOHOA_DATA_DIR=str(root), SOHOA_DEVICE_ID="xa-bench-01")
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run(
            [str(BIN / "sohoa-agent"), "status", "--json"],
            env=env,
            check=True,
            capture_output=True,
        )
        runs.append(time.perf_counter() - t)
    prof = cProfile.Profile()
    with ob.Outbox(root, read_only=True) as box:
        prof.enable()
        agent_status.collect(box, "xa-bench-01", root)
        prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(8)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
    return statistics.median(runs), "\n".join(lines[start - 1 : start + 9])


def machine() -> str:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} CPU, {model}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench outbox", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--levels", default="1000,10000,25000,50000", help="backlog, pages")
    parser.add_argument("--batch-pages", type=int, default=500)
    parser.add_argument("--ops", type=int, default=20, help="calls timed per kind and level")
    parser.add_argument("--dir", type=Path, help="work directory (default: a temp dir)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)  # fmt: skip
    levels = [int(x) for x in args.levels.split(",")]

    tmp = args.dir or Path(tempfile.mkdtemp(prefix="sohoa-bench-outbox-"))
    tmp.mkdir(parents=True, exist_ok=True)
    parts_dir = tmp / "parts"
    parts_dir.mkdir(exist_ok=True)
    for name in MEDIA:
        (parts_dir / f"p{EXT[name]}").write_bytes(os.urandom(16))
    stores = {
        "ours": (tmp / "ours", ob.Outbox, False),
        "single": (tmp / "single", SingleFileOutbox, True),
    }
    print(f"machine: {machine()}; work dir {tmp}", flush=True)
    results: dict[tuple[str, int], dict[str, list[float]]] = {}
    sizes: dict[tuple[str, int], int] = {}
    files: dict[tuple[str, int], int] = {}
    try:
        for level in levels:
            for name, (root, cls, single) in stores.items():
                root.mkdir(exist_ok=True)
                with cls(root) as box:
                    have = count_pages(box)
                missing = max(0, level - have)
                grow(root, single, -(-missing // args.batch_pages), args.batch_pages)
                t = time.perf_counter()
                with cls(root) as box:
                    backlog = count_pages(box)
                    results[name, level] = measure(box, args.ops, parts_dir)
                jsons = [f for f in root.rglob("*.json") if f.is_file()]
                sizes[name, level] = sum(f.stat().st_size for f in jsons)
                files[name, level] = len(jsons)
                print(f"  {name:6} backlog {backlog:6,} pages: {time.perf_counter() - t:6.1f} s",
                      flush=True)  # fmt: skip
        status_s, profile = status_cost(stores["ours"][0])
        collect_s, walk_s = collect_cost(stores["ours"][0])
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(tmp, ignore_errors=True)

    kinds = list(results["ours", levels[0]])
    print()
    print(f"median / p95 ms per call, {args.ops} calls per kind and level; "
          f"batches of {args.batch_pages} pages")  # fmt: skip
    print()
    print("| backlog (pages) | call | ours median | ours p95 | one file median | one file p95 "
          "| one file / ours (median) |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|---:|")
    for level in levels:
        for kind in kinds:
            a, b = results["ours", level][kind], results["single", level][kind]
            cells = [_ms(a, 0.5), _ms(a, 0.95), _ms(b, 0.5), _ms(b, 0.95)]
            ratio = cells[2] / cells[0]
            print(
                f"| {level:,} | {kind} | "
                + " | ".join(f"{c:.1f}" for c in cells)
                + f" | {ratio:.1f} |"
            )
    print()
    first, last = levels[0], levels[-1]
    print(f"growth {first:,} → {last:,} pages (median, last / first):")
    for kind in kinds:
        ours = _ms(results["ours", last][kind], 0.5) / _ms(results["ours", first][kind], 0.5)
        one = _ms(results["single", last][kind], 0.5) / _ms(results["single", first][kind], 0.5)
        print(f"  {kind:17} ours ×{ours:.2f}   one file ×{one:.1f}")
    print()
    print(f"JSON on disk at {last:,}: ours {sizes['ours', last] / 1e6:.1f} MB in "
          f"{files['ours', last]} files (index + one per batch); one file "
          f"{sizes['single', last] / 1e6:.1f} MB")  # fmt: skip
    print()
    print(f"`sohoa-agent status --json` at {last:,} pages: {status_s:.2f} s (median of 3)")
    print(f"status.collect in process at {last:,} pages: {collect_s * 1000:.1f} ms; walking "
          f"every page as before: {walk_s * 1000:.0f} ms (medians of 5, same outbox)")  # fmt: skip
    print("status.collect profile (top by own time):")
    print(profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
