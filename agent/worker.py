"""Runs the page pipeline over everything captured, in processes of their own.

Scanning never waits on this: pages are already durable when they get here. One process per
core, each tesseract single-threaded (OMP_THREAD_LIMIT=1; 46 vs 4.6 pages/min on 2 cores,
docs/research/perf.md B2b), at a lower CPU priority than capture. Only this parent process writes
the
outbox; children get paths in and give paths back.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import shutil
import signal
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from agent import hardware
from agent.config import AgentSettings
from agent.errors import DiskFullError
from agent.outbox import outbox as ob
from agent.outbox import storage
from agent.pipeline.process import PageResult, PipelineSettings, process_page

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

PART_MEDIA_TYPES = {
    "archival": "application/pdf",
    "text": "text/plain; charset=utf-8",
    "thumb": "image/jpeg",
}


@dataclass(frozen=True)
class _Job:
    batch_id: str
    page_id: str
    page_no: int
    capture: Path
    work_dir: Path
    settings: PipelineSettings


def _init_child() -> None:
    # Die with the agent: a SIGKILLed `sync` must not leave OCR workers running for ever
    # (outside systemd nothing else reaps them; tests/test_faults.py).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.environ["OMP_THREAD_LIMIT"] = "1"
    with contextlib.suppress(OSError):
        os.nice(5)  # capture and sync come first
    import cv2

    # The parent set OpenCV sequential before forking (_run_pool): it stays so. Setting it
    # again here would rebuild the thread pool inherited without its threads, and wait for
    # ever (pthread_cond_destroy), whenever the parent had used OpenCV's pool before.
    if cv2.getNumThreads() > 1:
        cv2.setNumThreads(1)


def _run(job: _Job) -> PageResult:
    shutil.rmtree(job.work_dir, ignore_errors=True)  # a half-done run before a power cut
    job.work_dir.mkdir(parents=True, exist_ok=True)
    return process_page(job.capture, job.work_dir, job.settings)


def pipeline_settings(settings: AgentSettings, dpi: int) -> PipelineSettings:
    """A capture's dpi is what its source said (the scanner's read-back resolution, the
    file's own); 0 means the source did not say: the configured dpi is then used only to
    process the page, which is flagged ``dpi_unknown``."""
    return PipelineSettings(
        languages=settings.ocr_languages, dpi=dpi or settings.dpi, dpi_known=dpi > 0
    )


# What a page whose processing kills its worker process records (staff see it).
WORKER_DIED = (
    "the worker processing this page died (killed: out of memory, or a crash inside OpenCV or"
    " tesseract); read alone in a fresh worker it died again"
)


def process_pending(
    settings: AgentSettings,
    outbox: ob.Outbox,
    *,
    stop: threading.Event | None = None,
    on_page: Callable[[ob.PageRecord], None] = lambda page: None,
    keep_work: bool = False,
) -> int:
    """Process every captured page of every closed batch. Returns pages processed.

    A worker process that dies (the kernel's OOM killer under the unit's MemoryMax, a
    segfault in a library) breaks the whole pool: every page in flight fails with it, most
    of them innocent. None of them is recorded failed on that account: each is read again
    alone in a fresh one-worker pool, and only a page that kills its worker alone is
    recorded failed (its capture travels as it is, flagged for staff). The pool is then
    built again for what is left."""
    done = 0
    while not (stop and stop.is_set()):
        jobs = [_job(settings, outbox, page) for page in outbox.iter_pending_pages()]
        if not jobs:
            break
        # the board profile's count, capped by its memory budget, unless a setting says
        workers = hardware.resolve(settings).pipeline_workers
        log.info("pipeline: %d page(s) to process with %d worker(s)", len(jobs), workers)
        count, orphans = _run_pool(settings, outbox, jobs, workers, stop, on_page, keep_work)
        done += count
        if not orphans:
            break
        log.error(
            "pipeline: a worker process died with %d page(s) in flight; reading each alone",
            len(orphans),
        )
        for job in orphans:
            count, again = _run_pool(settings, outbox, [job], 1, None, on_page, keep_work)
            done += count
            if again:
                log.error("batch %s page %d: %s", job.batch_id, job.page_no, WORKER_DIED)
                outbox.record_failed(job.batch_id, job.page_id, WORKER_DIED)
                outbox.add_capture_part(job.batch_id, job.page_id)
                done += 1
                on_page(outbox.page(job.batch_id, job.page_id))
    promote_ready(settings, outbox)
    return done


def _job(settings: AgentSettings, outbox: ob.Outbox, page: ob.PageRecord) -> _Job:
    return _Job(
        page.batch_id,
        page.page_id,
        page.page_no,
        outbox.batch_dir(page.batch_id) / page.capture_file,
        outbox.batch_dir(page.batch_id) / "work" / f"{page.page_no:04d}",
        pipeline_settings(settings, page.dpi),
    )


def _run_pool(
    settings: AgentSettings,
    outbox: ob.Outbox,
    jobs: list[_Job],
    workers: int,
    stop: threading.Event | None,
    on_page: Callable[[ob.PageRecord], None],
    keep_work: bool,
) -> tuple[int, list[_Job]]:
    """Run ``jobs`` on a pool of ``workers``; returns the pages recorded and the jobs that
    were in flight when a worker died (not recorded; the rest stay captured)."""
    done = 0
    orphans: list[_Job] = []
    # A forked worker inherits an OpenCV thread pool of this process without its threads;
    # reconfiguring it there waits for ever (pthread_cond_destroy). So OpenCV runs
    # sequentially here (the daemon's enrolment-sheet reader; tests that ran cv2 in-process
    # before: tests/test_pipeline.py), and the workers inherit that and leave it alone.
    import cv2

    cv2.setNumThreads(0)
    with ProcessPoolExecutor(workers, initializer=_init_child) as pool:
        todo = iter(jobs)
        running: dict[Future[PageResult], _Job] = {}

        def submit(job: _Job) -> None:
            try:
                running[pool.submit(_run, job)] = job
            except BrokenProcessPool:  # a worker died since the last page finished
                orphans.append(job)

        # Submit a bounded number ahead so that a stop request is honoured quickly.
        for job in todo:
            submit(job)
            if len(running) + len(orphans) >= workers * 2:
                break
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                if isinstance(future.exception(), BrokenProcessPool):
                    orphans.append(job)
                    continue
                _record(settings, outbox, job, future, keep_work)
                done += 1
                on_page(outbox.page(job.batch_id, job.page_id))
                if not orphans and not (stop and stop.is_set()):
                    nxt = next(todo, None)
                    if nxt is not None:
                        submit(nxt)
    return done, orphans


def _out_of_space(settings: AgentSettings, exc: BaseException) -> bool:
    """A failure while the data disk is full is the disk's, not the page's. The errno does
    not always survive (OpenCV says only "could not write"; tesseract exits non-zero), so
    the free space decides too."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DiskFullError):
            return True
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    return storage.disk_free(settings.data_dir) < settings.min_free_mb * 1024 * 1024


def _record(
    settings: AgentSettings,
    outbox: ob.Outbox,
    job: _Job,
    future: Future[PageResult],
    keep_work: bool,
) -> None:
    try:
        result = future.result()
    except Exception as exc:
        if _out_of_space(settings, exc):
            # Not a failed page: it stays captured and is processed once there is room
            # (a page recorded failed would travel without its archival copy, for good).
            shutil.rmtree(job.work_dir, ignore_errors=True)
            log.error("batch %s page %d: no room to process: %s", job.batch_id, job.page_no, exc)
            raise DiskFullError("disk_full", f"processing page {job.page_no}: {exc}") from exc
        # The capture is kept and will travel as it is; staff see the page flagged.
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        log.error("batch %s page %d: processing failed: %s", job.batch_id, job.page_no, detail)
        outbox.record_failed(job.batch_id, job.page_id, detail[:500])
        outbox.add_capture_part(job.batch_id, job.page_id)
        return
    parts = {"archival": result.archival, "text": result.text, "thumb": result.thumb}
    outbox.record_processed(
        job.batch_id,
        job.page_id,
        parts=parts,
        media_types=PART_MEDIA_TYPES,
        flags=result.flags,
        decisions=dict(result.decisions),
        ocr_confidence=result.ocr_confidence,
    )
    if not keep_work:
        shutil.rmtree(job.work_dir, ignore_errors=True)
    log.info(
        "batch %s page %d processed flags=%s conf=%.0f",
        job.batch_id,
        job.page_no,
        ",".join(result.flags) or "-",
        result.ocr_confidence,
    )


def promote_ready(settings: AgentSettings, outbox: ob.Outbox) -> None:
    """A closed batch whose pages are all processed (or failed) is ready to travel."""
    for batch in outbox.batches((ob.CLOSED,)):
        pages = outbox.pages(batch.batch_id)
        if any(p.state == ob.CAPTURED for p in pages):
            continue
        shutil.rmtree(outbox.batch_dir(batch.batch_id) / "work", ignore_errors=True)
        outbox.update_batch(batch.batch_id, state=ob.READY, page_count=len(pages))
        log.info("batch %s ready to sync (%d pages)", batch.batch_id, len(pages))
