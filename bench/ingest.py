"""Benchmark: archive ingest throughput, pages per second (issue 6: ≥ 500 pages/s, 2 cores).

    python -m bench ingest [--pages 400] [--batch 50]

Realistic pages (text 2 KB of Vietnamese, thumbnail 15 KB, archival image 50 KB; random bytes
for the images, which do not compress) go through ``server.ingest.Ingest.handle`` exactly as
the broker feeds it — manifest, then chunks — into a real SQLite archive and file store under
a temporary directory on the same disk as the data would be. No broker: this is the
server's own cost. In the same run:

- 1 worker, default 32 KiB chunks (the agent's default) and one chunk per part (the fewest
  messages: 3 per page);
- 2 workers over the same archive, as threads and as processes (each worker its own batches,
  like a shared subscription splits devices);
- where the time goes: fsync/fdatasync calls and SQLite commits per page, counted, and the
  same 1-worker run with durability switched off *in this process only* (``os.fsync`` and
  ``os.fdatasync`` made no-ops, ``PRAGMA synchronous=OFF``) as the upper bound of what any
  batching of syncs could win. Nothing of server/ is changed by this benchmark.
"""

from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import os
import platform
import pstats
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the message builders live with the ingest tests

from test_ingest import DEVICE, BatchSrc, PageSrc  # noqa: E402

from bench.search import _vocabulary, page_text  # noqa: E402
from protocol import topics  # noqa: E402
from server.db import Database  # noqa: E402
from server.ingest import Ingest  # noqa: E402
from server.store import Store  # noqa: E402

SIZES = {"text": 2048, "thumb": 15 * 1024, "archival": 50 * 1024}
DEFAULT_CHUNK = 32 * 1024
ONE_CHUNK = 1 << 20  # ChunkHeader.length max: every part here is one chunk


def make_batches(pages: int, per_batch: int, seed: int = 7) -> list[BatchSrc]:
    rng = random.Random(seed)
    words, weights = _vocabulary(seed)
    out = []
    for first in range(0, pages, per_batch):
        batch_pages = []
        for n in range(min(per_batch, pages - first)):
            text = page_text(rng, words, weights).encode()[: SIZES["text"]]
            text = text.decode("utf-8", errors="ignore").encode()
            parts = {
                "text": text,
                "thumb": rng.randbytes(SIZES["thumb"]),
                "archival": rng.randbytes(SIZES["archival"]),
            }
            batch_pages.append(PageSrc(page_no=n + 1, parts=parts))
        out.append(BatchSrc(pages=batch_pages, device=DEVICE))
    return out


def messages(batch: BatchSrc, chunk_size: int) -> list[tuple[str, bytes]]:
    out = [(topics.up(batch.device, "manifest"), batch.manifest())]
    out += [(topics.up(batch.device, "chunk"), p) for p in batch.all_chunks(chunk_size)]
    return out


def feed(data_dir: Path, streams: list[list[tuple[str, bytes]]]) -> int:
    """One worker: its own Database connection and Ingest, as a server process has."""
    db = Database(data_dir / "archive.sqlite3")
    ingest = Ingest(db, Store(data_dir / "store"))
    replies = 0
    for stream in streams:
        for topic, payload in stream:
            replies += len(ingest.handle(topic, payload))
    db.close()
    return replies


@dataclass
class Run:
    name: str
    pages: int
    messages: int
    seconds: float
    fsyncs: int = 0
    commits: int = 0

    @property
    def rate(self) -> float:
        return self.pages / self.seconds


def run(
    name: str,
    batches: list[BatchSrc],
    chunk_size: int,
    workers: int = 1,
    mode: str = "thread",
    profile: Path | None = None,
) -> Run:
    work = Path(tempfile.mkdtemp(prefix="sohoa-bench-ingest-", dir=ROOT / ".bench-tmp"))
    Database(work / "archive.sqlite3").close()  # schema made before the clock starts
    streams = [messages(b, chunk_size) for b in batches]
    shares = [streams[i::workers] for i in range(workers)]
    count = sum(len(s) for s in streams)
    pages = sum(len(b.pages) for b in batches)
    started = time.perf_counter()
    if workers == 1 and profile is not None:
        prof = cProfile.Profile()
        prof.runcall(feed, work, shares[0])
        prof.dump_stats(profile)
    elif workers == 1:
        feed(work, shares[0])
    elif mode == "thread":
        threads = [threading.Thread(target=feed, args=(work, share)) for share in shares]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=feed, args=(work, share)) for share in shares]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
            assert p.exitcode == 0
    seconds = time.perf_counter() - started
    db = Database(work / "archive.sqlite3")
    committed = db.read().execute("SELECT COUNT(*) FROM parts WHERE state = 'committed'")
    assert committed.fetchone()[0] == pages * len(SIZES), "not every part was committed"
    db.close()
    shutil.rmtree(work, ignore_errors=True)
    return Run(name, pages, count, seconds)


def count_syncs(batches: list[BatchSrc], chunk_size: int) -> tuple[int, int]:
    """(fsync + fdatasync calls, SQLite COMMITs) for ingesting ``batches`` once."""
    calls = {"sync": 0, "commit": 0}
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def counted(real: Callable[[int], None]) -> Callable[[int], None]:
        def wrapper(fd: int) -> None:
            calls["sync"] += 1
            real(fd)

        return wrapper

    def trace(statement: str) -> None:
        if statement.strip().upper() == "COMMIT":
            calls["commit"] += 1

    real_connect = Database.connect

    def connect(self: Database) -> sqlite3.Connection:
        con = real_connect(self)
        con.set_trace_callback(trace)
        return con

    os.fsync, os.fdatasync = counted(real_fsync), counted(real_fdatasync)  # type: ignore[assignment]
    Database.connect = connect  # type: ignore[method-assign]
    try:
        run("count", batches, chunk_size)
    finally:
        os.fsync, os.fdatasync = real_fsync, real_fdatasync
        Database.connect = real_connect  # type: ignore[method-assign]
    return calls["sync"], calls["commit"]


def without_durability(batches: list[BatchSrc], chunk_size: int) -> Run:
    real_fsync, real_fdatasync = os.fsync, os.fdatasync
    real_connect = Database.connect

    def connect(self: Database) -> sqlite3.Connection:
        con = real_connect(self)
        con.execute("PRAGMA synchronous=OFF")
        return con

    os.fsync = os.fdatasync = lambda fd: None  # type: ignore[assignment]
    Database.connect = connect  # type: ignore[method-assign]
    try:
        return run("1 worker, 32 KiB, no fsync (upper bound)", batches, chunk_size)
    finally:
        os.fsync, os.fdatasync = real_fsync, real_fdatasync
        Database.connect = real_connect  # type: ignore[method-assign]


def top_costs(profile: Path, n: int = 8) -> list[tuple[str, float, int]]:
    stats = pstats.Stats(str(profile))
    rows = []
    for (file, line, func), (_cc, calls, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = func if file == "~" else f"{Path(file).name}:{line}({func})"
        rows.append((where, tottime, calls))
    rows.sort(key=lambda r: r[1], reverse=True)
    return rows[:n]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench ingest", description=__doc__)
    parser.add_argument("--pages", type=int, default=400)
    parser.add_argument("--batch", type=int, default=50, help="pages per batch")
    args = parser.parse_args(argv)
    (ROOT / ".bench-tmp").mkdir(exist_ok=True)
    batches = make_batches(args.pages, args.batch)
    profile = ROOT / ".bench-tmp" / "ingest.prof"
    runs = [
        run("1 worker, 32 KiB chunks", batches, DEFAULT_CHUNK, profile=None),
        run("1 worker, one chunk per part", batches, ONE_CHUNK),
        run("2 workers (threads), 32 KiB", batches, DEFAULT_CHUNK, 2, "thread"),
        run("2 workers (processes), 32 KiB", batches, DEFAULT_CHUNK, 2, "process"),
        run("2 workers (processes), one chunk per part", batches, ONE_CHUNK, 2, "process"),
        without_durability(batches, DEFAULT_CHUNK),
    ]
    profiled = run("profiled", batches, DEFAULT_CHUNK, profile=profile)
    syncs = {c: count_syncs(batches[:2], c) for c in (DEFAULT_CHUNK, ONE_CHUNK)}
    sample = sum(len(b.pages) for b in batches[:2])

    print(
        f"\n{args.pages} pages (text {SIZES['text']} B, thumb {SIZES['thumb']} B, archival"
        f" {SIZES['archival']} B), batches of {args.batch}; {platform.machine()},"
        f" {os.cpu_count()} cores, SQLite {sqlite3.sqlite_version}, Python"
        f" {platform.python_version()}\n"
    )
    print("| run | messages | seconds | pages/s | messages/s |")
    print("|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {r.name} | {r.messages:,} | {r.seconds:.2f} | {r.rate:.0f} |"
            f" {r.messages / r.seconds:,.0f} |"
        )
    print("\nper page: ", end="")
    for c, (s, k) in syncs.items():
        label = "32 KiB" if c == DEFAULT_CHUNK else "one chunk per part"
        print(
            f"{label}: {s / sample:.1f} fsync/fdatasync, {k / sample:.1f} SQLite commits; ", end=""
        )
    print(f"\n\nprofile of the 1-worker 32 KiB run ({profiled.seconds:.2f} s), top self time:")
    for where, tottime, calls in top_costs(profile):
        print(f"  {tottime:6.2f} s {calls:>8,}  {where}")
    shutil.rmtree(ROOT / ".bench-tmp", ignore_errors=True)
    return 0
