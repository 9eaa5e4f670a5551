"""``sohoa-agent``: the technician's and the service's entry point.

Every command prints one clear operator line (Vietnamese by default, ``SOHOA_LANGUAGE=en``
for English) and logs the technical detail in English to stderr. Expected failures exit
non-zero with that line; no traceback reaches an operator (unexpected errors are logged in
full and summarised in one line).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import __version__, config, messages, preflight
from agent.errors import ConfigError, ScannerError, SohoaError, SyncError, WrongUser
from agent.messages import REVIEW_REASONS
from agent.outbox import outbox as ob
from protocol.version import PROTOCOL_VERSION, TOPIC_LEVEL

if TYPE_CHECKING:
    from agent.outbox.rescan import RescanRequest
    from agent.status import PageReview
    from agent.uplink.bundle import ReceiptsReport
    from agent.uplink.mqtt_link import MqttLink
    from agent.uplink.sync import Syncer

log = logging.getLogger("sohoa.agent")
# Exit codes (sysexits.h where one fits); README "Using it" and docs/operations.md list them.
EXIT_CODES = {
    0: "done",
    1: "no scanner found (devices), disk full or a write failed",
    2: "nothing to do, no paper, bad command line or input refused",
    3: "the scanner stopped (pages so far are kept)",
    4: "some files refused (the rest kept)",
    65: "enrolment refused: a bad code or answer (enrol)",
    70: "unexpected error (run again with -v for the details; data is safe)",
    73: "the USB disk cannot be written (export)",
    74: "a file or the data folder cannot be read or written",
    75: "not finished yet: try again later, nothing lost",
    77: "wrong user: run as the service user (sudo -u sohoa sohoa-agent ...)",
    78: "bad configuration, or the station is not enrolled",
    130: "interrupted",
}
VERSION = f"sohoa-agent {__version__} (protocol {PROTOCOL_VERSION}, topics {TOPIC_LEVEL})"


class Context:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.settings = config.load(args.config)
        self.lang: messages.Lang = self.settings.language
        _check_user(self.settings.data_dir)

    def say(self, key: str, **params: object) -> None:
        print(messages.t(key, self.lang, **params), flush=True)

    def open_outbox(self, read_only: bool = False) -> ob.Outbox:
        return ob.Outbox(self.settings.data_dir, read_only=read_only)


def _check_user(data_dir: Path) -> None:
    """Root must not leave root-owned files in the service's outbox (the service could no
    longer write them); a user who cannot enter it gets one line, not a traceback."""
    try:
        owner = data_dir.stat().st_uid
    except PermissionError as exc:
        raise WrongUser("wrong_user", f"{data_dir}: {exc.strerror}", owner="sohoa") from exc
    except OSError:
        return  # created on first use
    if not data_dir.is_dir():
        raise ConfigError("config_invalid", f"data_dir {data_dir} is not a folder")
    import pwd

    try:
        name = pwd.getpwuid(owner).pw_name
    except KeyError:
        name = str(owner)
    if os.geteuid() == 0 and owner != 0:
        raise WrongUser("wrong_user", f"{data_dir} belongs to {name}; running as root", owner=name)
    if data_dir.is_dir() and not os.access(data_dir, os.R_OK | os.W_OK | os.X_OK):
        raise WrongUser("wrong_user", f"{data_dir}: no access for uid {os.geteuid()}", owner=name)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return uuid.uuid4().hex


# -- commands --------------------------------------------------------------------------------


def cmd_scan(ctx: Context) -> int:
    preflight.check(ctx.settings, sane=True)  # before anything imports python-sane
    from agent.capture import scan as capture
    from agent.outbox.outbox import BatchRecord
    from agent.profiles import SaneDeviceInfo

    def started(scanner: SaneDeviceInfo, previous: BatchRecord | None) -> None:
        ctx.say("scan_started", scanner=scanner.name)
        if previous is not None:
            ctx.say("scan_continues", batch=previous.batch_id[:8], pages=previous.page_count)

    from agent import enrolsheet

    with ctx.open_outbox() as outbox:
        outcome = capture.scan_now(
            ctx.settings,
            outbox,
            source=ctx.args.source,
            scanner=ctx.args.scanner,
            resume=not ctx.args.new,
            on_start=started,
            on_page=lambda page: ctx.say("scan_page", page_no=page.page_no),
            first_sheet=enrolsheet.code_on,
        )
    if outcome.enrolment_code is not None:  # the enrolment sheet, not a page: enrol
        done = enrolsheet.enrol_from_sheet(ctx.settings, outcome.enrolment_code)
        ctx.say("enrol_done", device=done.device_id, fingerprint=enrolsheet.fingerprint(done))
        return 0
    ctx.say("scan_done", pages=outcome.pages, batch=outcome.batch.batch_id[:8])
    if outcome.error is not None:
        _report(ctx, outcome.error)
        return 3
    return 0


def cmd_import(ctx: Context) -> int:
    from agent.capture import importer

    metadata = None
    if ctx.args.replaces:
        metadata = _replaces(ctx, ctx.args.replaces)
        if metadata is None:
            return 2
    with ctx.open_outbox() as outbox:
        outcome = importer.import_files(ctx.settings, outbox, list(ctx.args.paths), metadata)
    for name, reason in outcome.refused:
        log.warning("import: %s refused: %s", name, reason)
        print(messages.t("import_refused", ctx.lang, name=name, reason=reason), file=sys.stderr)
    if outcome.batch is None:
        ctx.say("import_nothing")
        return 2
    ctx.say("import_done", pages=outcome.pages, batch=outcome.batch.batch_id[:8])
    return 4 if outcome.refused else 0


def _replaces(ctx: Context, key: str) -> dict[str, str] | None:
    """``--replaces PAGE``: the re-scan request (page id or the prefix status shows) this
    import answers, as the batch metadata the archive places it by."""
    from agent.outbox import rescan

    found = rescan.find(rescan.load(ctx.settings.data_dir), key)
    if len(found) != 1 or found[0].page_no is None:
        which = "rescan_ambiguous" if len(found) > 1 else "rescan_not_found"
        print(messages.t(which, ctx.lang, key=key, count=len(found)), file=sys.stderr)
        return None
    request = found[0]
    return {"replaces_batch": request.batch_id, "replaces_page_no": str(request.page_no)}


def cmd_process(ctx: Context) -> int:
    from agent import worker

    with ctx.open_outbox() as outbox:
        pending = sum(1 for _ in outbox.iter_pending_pages())
        if pending:
            preflight.check(ctx.settings, tesseract=True)
            ctx.say("processing", pending=pending)
        worker.process_pending(ctx.settings, outbox, keep_work=ctx.args.keep_work)
    return 0


def cmd_sync(ctx: Context) -> int:
    from agent import worker
    from agent.uplink import transfer
    from agent.uplink.mqtt_link import MqttLink
    from agent.uplink.sync import Syncer

    s = ctx.settings
    config.require_device_id(s)  # before minutes of OCR, not after
    from agent.uplink import enrol

    # Enrolled from a USB disk with the link down: the first connection registers the key.
    if enrol.complete_pending(
        s.data_dir, allow_plain=s.allow_plain_mqtt, agent_version=__version__
    ):
        log.info("enrolment completed: the archive registered this station's key")
    preflight.check(s, broker=True)
    _warn_unpinned(ctx)
    with ctx.open_outbox() as outbox:
        pending = sum(1 for _ in outbox.iter_pending_pages())
        if pending:
            preflight.check(s, tesseract=True)
            ctx.say("processing", pending=pending)
        worker.process_pending(s, outbox)
        link = MqttLink(s, _boot_id(), __version__)
        syncer = Syncer(s, outbox, link, __version__)
        if not transfer.sendable_batches(outbox):
            _collect_commands(ctx, link, syncer)
            ctx.say("sync_nothing")
            return 0
        timeout = ctx.args.timeout if ctx.args.wait else min(ctx.args.timeout, 60.0)
        _hard_deadline(timeout + 60.0)
        link.connect()
        try:
            report = syncer.run(timeout)
        finally:
            link.close()
        _say_rescans(ctx, report.rescans)
        log.info(
            "sync: %d batch(es) done, %d part receipts, %d chunks (%d bytes) sent, %d rounds",
            report.batches_done,
            report.parts_acked,
            report.chunks_sent,
            report.bytes_sent,
            report.rounds,
        )
        if report.finished:
            ctx.say("sync_done", pages=report.pages_done)
            return 0
        if ctx.args.wait:
            ctx.say("sync_timeout", seconds=int(timeout), pending=report.pending_pages)
            return 75
        return 0


COMMAND_WAIT = 2.0  # seconds the broker gets to deliver what it queued while we were away


def _collect_commands(ctx: Context, link: MqttLink, syncer: Syncer) -> None:
    """Nothing to send, but the archive may have asked for something (a re-scan) while we
    were offline: connect briefly to receive it. A broker out of reach changes nothing."""
    from agent.errors import SyncError

    _hard_deadline(COMMAND_WAIT + 60.0)
    try:
        link.connect(timeout=10.0)
    except SyncError as exc:
        log.info("no broker to collect commands from: %s", exc.detail)
        return
    try:
        report = syncer.collect_commands(COMMAND_WAIT)
    finally:
        link.close()
    _say_rescans(ctx, report.rescans)


def _say_rescans(ctx: Context, requests: list[RescanRequest]) -> None:
    from agent.uplink.sync import describe

    for request in requests:
        print(describe(request, ctx.lang), flush=True)


def cmd_rescan_done(ctx: Context) -> int:
    from agent.outbox import rescan

    removed, matches = rescan.remove(ctx.settings.data_dir, ctx.args.page_id)
    if removed is None:
        key = "rescan_ambiguous" if matches > 1 else "rescan_not_found"
        print(messages.t(key, ctx.lang, key=ctx.args.page_id, count=matches), file=sys.stderr)
        return 2
    page = str(removed.page_no) if removed.page_no is not None else removed.page_id[:8]
    log.info("re-scan request for page %s cleared by the technician", removed.page_id)
    ctx.say("rescan_cleared", batch=removed.batch_id[:8], page=page)
    return 0


def cmd_export(ctx: Context) -> int:
    from agent import worker
    from agent.uplink import bundle

    s = ctx.settings
    config.require_device_id(s)
    bundle.check_target(ctx.args.path)  # before minutes of OCR, not after
    with ctx.open_outbox() as outbox:
        pending = sum(1 for _ in outbox.iter_pending_pages())
        if pending:
            ctx.say("processing", pending=pending)
        worker.process_pending(s, outbox)
        report = bundle.export(s, outbox, ctx.args.path, __version__)
    back = report.receipts
    if back.parts_acked or back.finished or back.refused or back.server_refused:
        _say_receipts(ctx, back)
    for batch_id in report.quarantined:
        print(
            messages.t("export_quarantined", ctx.lang, batch=batch_id[:8], detail="sha256"),
            file=sys.stderr,
        )
    if report.secret_skipped:
        ctx.say("export_secret_skipped", batches=report.secret_skipped)
    if report.bundle is None:
        ctx.say("export_nothing")
        return 0
    ctx.say(
        "export_done",
        pages=report.pages,
        batches=report.batches,
        mb=report.bytes / 1e6,
        path=str(report.bundle),
    )
    return 0


def cmd_import_receipts(ctx: Context) -> int:
    from agent.uplink import bundle, transfer

    with ctx.open_outbox() as outbox:
        report = bundle.import_receipts(ctx.settings, outbox, ctx.args.path)
        waiting = sum(len(outbox.pages(b.batch_id)) for b in transfer.sendable_batches(outbox))
    if not report.dirs:
        ctx.say("receipts_none", path=str(ctx.args.path))
        return 2
    _say_receipts(ctx, report)
    if waiting:
        ctx.say("receipts_pending", pages=waiting)
    return 4 if report.refused else 0


def _warn_unpinned(ctx: Context) -> None:
    """No archive key pinned: receipts are ignored, nothing will be deleted. Say so."""
    if ctx.settings.server_public_key is None:
        print(messages.t("no_archive_key", ctx.lang), file=sys.stderr)


def _say_receipts(ctx: Context, report: ReceiptsReport) -> None:
    _warn_unpinned(ctx)
    for name, reason in report.refused:
        log.warning("receipt %s refused: %s", name, reason)
        print(messages.t("receipts_refused", ctx.lang, name=name, reason=reason), file=sys.stderr)
    if report.server_refused:
        print(
            messages.t("receipts_server_refused", ctx.lang, count=len(report.server_refused)),
            file=sys.stderr,
        )
    ctx.say(
        "receipts_applied",
        parts=report.parts_acked,
        batches=len(report.finished),
        pages=report.pages_done,
    )


def cmd_coversheet(ctx: Context) -> int:
    from agent.pipeline import coversheet

    numbers: list[int | None] = list(range(ctx.args.first, ctx.args.first + ctx.args.count))
    if ctx.args.count == 0:
        numbers = [None]  # one sheet for the whole hồ sơ
    try:
        sheets = [
            coversheet.CoverSheet(ctx.args.ma_ho_so, n, ctx.args.title or "") for n in numbers
        ]
        for sheet in sheets:
            sheet.payload()  # validate before writing anything
        path = coversheet.write_pdf(sheets, ctx.args.out)
    except coversheet.CoverSheetError as exc:
        print(messages.t("coversheet_invalid", ctx.lang, detail=str(exc)), file=sys.stderr)
        return 2
    ctx.say("coversheet_done", count=len(sheets), path=str(path))
    return 0


def cmd_status(ctx: Context) -> int:
    from agent import retention, status

    if getattr(ctx.args, "watch", False):
        return _watch_status(ctx)
    with ctx.open_outbox(read_only=True) as outbox:
        st = status.collect(outbox, ctx.settings.device_id, ctx.settings.data_dir)
        review = status.pages_to_review(outbox)
        disk = retention.forecast(ctx.settings, outbox)
    if ctx.args.json:
        doc = st.as_dict() | {
            "agent_version": __version__,
            "review": [dataclasses.asdict(r) for r in review],
            "disk_forecast": disk.as_dict(),
        }
        print(json.dumps(doc, ensure_ascii=False, indent=2))
        return 0
    vi = ctx.lang == "vi"
    print(
        f"{'Thiết bị' if vi else 'Device'}: "
        f"{st.device_id or ('(chưa đăng ký)' if vi else '(not enrolled)')}   "
        f"{'Ổ đĩa trống' if vi else 'Disk free'}: "
        f"{messages.number(st.disk_free_bytes / 2**30, ctx.lang)} GiB"
    )
    if disk.days_left is not None:
        days = f"{disk.days_left:.0f}"
        print(
            ("! " if disk.warn else "")
            + (
                f"Ổ đĩa còn đủ cho khoảng {days} ngày quét"
                if vi
                else f"Disk holds about {days} days of scanning"
            )
            + (f" ({disk.bytes_per_day / 2**20:.0f} MB/{'ngày' if vi else 'day'})")
        )
        if disk.warn:
            print(messages.t("disk_low", ctx.lang, days=days))
    print(
        f"{'Chờ xử lý' if vi else 'Waiting for processing'}: {st.pages_waiting_processing} "
        f"{'trang' if vi else 'page(s)'}"
    )
    waiting_mb = messages.number(st.bytes_waiting_sync / 1e6, ctx.lang)
    print(
        f"{'Chờ gửi' if vi else 'Waiting to sync'}: {st.pages_waiting_sync} "
        f"{'trang' if vi else 'page(s)'} ({waiting_mb} MB)"
    )
    for b in st.pending:
        print(
            f"  {b.batch_id[:8]} {b.state:<10} {b.pages:>4} p  "
            f"{b.parts_acked}/{b.parts_total} {'đã xác nhận' if vi else 'receipted'}"
            + (f"  ! {b.last_error}" if b.last_error else "")
        )
    for b in st.quarantined:
        print(f"  {b.batch_id[:8]} {'CÁCH LY' if vi else 'QUARANTINED'}: {b.last_error}")
    _say_reviews(vi, review)
    _say_rescans(ctx, st.rescan_requests)
    return 0


def _say_reviews(vi: bool, review: list[PageReview]) -> None:
    """Pages whose text is likely wrong: the operator may rescan them while still at the
    scanner (the score is agent.pipeline.quality's, 0–100)."""
    if not review:
        return
    pages = "trang" if vi else "page(s)"
    print(f"{'Cần xem lại' if vi else 'Needs review'}: {len(review)} {pages}")
    for r in review:
        why = ", ".join(REVIEW_REASONS.get(x, (x, x))[0 if vi else 1] for x in r.reasons)
        # One decimal, as the cuts are (88 for the type's score: 87.5 is under it).
        score = "–" if r.score is None else f"{r.score:.1f}"
        score = score.replace(".", ",") if vi else score
        print(
            f"  {r.batch_id[:8]} {'trang' if vi else 'page'} {r.page_no:>3}  "
            f"{'điểm' if vi else 'score'} {score:>5}  {why}"
        )


def _watch_status(ctx: Context) -> int:
    """A live view for a terminal beside the scanner: redraw every 2 s until Ctrl-C."""
    ctx.args.watch = False
    ctx.args.json = False
    try:
        while True:
            sys.stdout.write("\x1b[H\x1b[2J")  # home + clear
            print(time.strftime("%H:%M:%S"), "— sohoa-agent status --watch (Ctrl-C)")
            cmd_status(ctx)
            sys.stdout.flush()
            time.sleep(2.0)
    except KeyboardInterrupt:
        return 0


def cmd_reprocess(ctx: Context) -> int:
    """Run the page pipeline on one capture file into a folder: what the archive calls to
    redo a page's decisions with the same code (server/archive/redo.py), and a technician's
    tool. Prints the result as JSON (paths, flags, OCR confidence); touches no outbox."""
    from agent import worker
    from agent.capture.scan import image_info
    from agent.pipeline.process import process_page

    capture: Path = ctx.args.capture
    # --dpi, else the file's own; 0 (none) is processed at the configured dpi but flagged
    # dpi_unknown (worker.pipeline_settings): never given the configured value as its own.
    dpi = ctx.args.dpi or image_info(capture.read_bytes())[3]
    result = process_page(capture, ctx.args.out, worker.pipeline_settings(ctx.settings, dpi))
    print(
        json.dumps(
            {
                "capture": str(capture),
                "dpi": dpi,
                "archival": str(result.archival),
                "text": str(result.text),
                "thumb": str(result.thumb),
                "decisions": str(result.decisions_path),
                "flags": list(result.flags),
                "ocr_confidence": result.ocr_confidence,
            },
            ensure_ascii=False,
        )
    )
    return 0


def cmd_devices(ctx: Context) -> int:
    from agent import profiles
    from agent.capture import sane_device

    known = profiles.load_scanner_profiles(ctx.settings.hw_profiles_dir)
    found = sane_device.list_devices()
    rows = [(d, profiles.match_scanner(d, known)) for d in found]
    if ctx.args.json:
        listing = [
            {
                "name": d.name,
                "vendor": d.vendor,
                "model": d.model,
                "type": d.type,
                "usb_id": d.usb_id,
                "id": sane_device.stable_id(d),
                "profile": p.id,
            }
            for d, p in rows
        ]
        print(json.dumps(listing, ensure_ascii=False, indent=2))
        return 0
    if not rows:
        ctx.say("scanner_not_found", scanner="auto")
        print("(SANE test backend: SOHOA_SCANNER=test:0)", file=sys.stderr)
        return 1
    for d, p in rows:
        print(f"{sane_device.stable_id(d)}\t{d.name}\t{d.vendor} {d.model}\t→ {p.id}")
    return 0


def cmd_run(ctx: Context) -> int:
    # Before the daemon (and SANE) is even imported: systemd must never hear READY=1 from a
    # station that cannot scan, read Vietnamese or address its broker.
    preflight.check(ctx.settings, tesseract=True, sane=True, broker=True)
    from agent.daemon import Daemon

    return Daemon(ctx.settings, boot_id=_boot_id()).run()


# -- plumbing -------------------------------------------------------------------------------


def _hard_deadline(seconds: float) -> None:
    """A last resort so that `sync --timeout S` always returns (cron and scripts rely on it):
    if anything below ever hangs, exit with "try again later". Safe because every state
    change is already durable in the outbox."""

    def expire() -> None:
        log.error("sync exceeded its deadline by 60 s; exiting (nothing is lost)")
        os._exit(75)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()


def read_enrolment_sheet(scanner: Any) -> str:
    """The enrolment code on the sheet in ``scanner`` (an open capture.sane_device.Scanner):
    one page read (not archived), its QR code, checked as an enrolment code."""
    import numpy as np

    from agent.pipeline import coversheet
    from agent.profiles import ScanRequest
    from agent.uplink import enrol
    from protocol import enrolment

    page = scanner.read_sheet(ScanRequest(source="flatbed", mode="gray", dpi=200))
    text = coversheet.qr_text(np.asarray(page.image.convert("L")), 1600)
    try:
        return enrolment.EnrolCode.parse(text or "").text()
    except enrolment.EnrolmentError as exc:
        raise enrol.EnrolError("enrol_no_sheet", f"no enrolment QR code: {exc}") from exc


def cmd_enrol(ctx: Context) -> int:
    """Enrol this station from a one-time code (or a file holding one, e.g. on a USB disk)."""
    from agent.uplink import enrol

    text = ctx.args.code
    if ctx.args.usb is not None:
        if text is not None or ctx.args.scan:
            raise enrol.EnrolError("enrol_bad_code", "--usb needs no code and no --scan")
        done = enrol.enrol_from_bundle(
            ctx.args.usb,
            ctx.settings.data_dir,
            pinned_key=ctx.settings.server_public_key,
            fingerprint=ctx.args.fingerprint,
            allow_plain=ctx.settings.allow_plain_mqtt,
            force=ctx.args.force,
        )
        fp = " ".join(done.fingerprint[i : i + 4] for i in range(0, len(done.fingerprint), 4))
        ctx.say("enrol_usb_done", device=done.device_id, fingerprint=fp)
        return 0
    if (text is None) == (not ctx.args.scan):
        raise enrol.EnrolError("enrol_bad_code", "give the code, or --scan (not both)")
    if text is None:  # --scan: the sheet through the station's own scanner
        from agent import profiles
        from agent.capture import sane_device

        known = profiles.load_scanner_profiles(ctx.settings.hw_profiles_dir)
        with sane_device.open_scanner(ctx.settings.scanner, known) as scanner:
            text = read_enrolment_sheet(scanner)
    elif not text.startswith(("mqtt://", "mqtts://")) and Path(text).is_file():
        text = Path(text).read_text(encoding="utf-8").strip().splitlines()[-1]
    done = enrol.enrol(
        text,
        ctx.settings.data_dir,
        ca_file=ctx.args.ca,
        allow_plain=ctx.settings.allow_plain_mqtt,
        force=ctx.args.force,
        timeout=ctx.args.timeout,
        agent_version=__version__,
    )
    fp = " ".join(done.fingerprint[i : i + 4] for i in range(0, len(done.fingerprint), 4))
    ctx.say("enrol_done", device=done.device_id, fingerprint=fp)
    return 0


def _report(ctx: Context, exc: SohoaError) -> None:
    log.error("%s: %s", exc.key, exc.detail or exc)
    params = dict(exc.params)
    params.setdefault("detail", exc.detail)
    params.setdefault("pages", 0)
    params.setdefault("scanner", ctx.settings.scanner)
    params.setdefault("broker", _broker_label(ctx.settings))
    params.setdefault("device", ctx.settings.device_id)
    print(messages.t(exc.key, ctx.lang, **params), file=sys.stderr)


def _broker_label(settings: config.AgentSettings) -> str:
    """host:port for an operator line; a malformed address must not fail the report of it."""
    try:
        return str(settings.broker())
    except (ValueError, SohoaError):
        return "?"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sohoa-agent",
        description="Scan station agent: scan, clean up, OCR, and send pages to the archive.",
        epilog="Exit codes: "
        + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items())
        + ".",
    )
    parser.add_argument("--config", type=Path, help="TOML settings file")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (English)")
    parser.add_argument("--version", action="version", version=VERSION)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[Context], int], text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text)
        p.set_defaults(func=func)
        return p

    scan = add("scan", cmd_scan, "scan one batch now (like pressing the button)")
    scan.add_argument("--scanner", help="SANE device name (default: SOHOA_SCANNER)")
    scan.add_argument("--source", choices=["flatbed", "adf", "adf_duplex"])
    scan.add_argument(
        "--new",
        action="store_true",
        help="start a new batch even if the last one was cut short by a jam",
    )
    imp = add("import", cmd_import, "import PNG/JPEG/TIFF/PDF files or folders as one batch")
    imp.add_argument("paths", nargs="+", type=Path)
    imp.add_argument(
        "--replaces",
        metavar="PAGE",
        help="the page the archive asked to scan again (the id status shows): the archive puts"
        " the new scan in its place",
    )
    proc = add("process", cmd_process, "clean up and OCR every page waiting for it")
    proc.add_argument("--keep-work", action="store_true", help="keep the pipeline work folders")
    sync = add("sync", cmd_sync, "process and send pending batches to the archive")
    sync.add_argument(
        "--wait", action="store_true", help="exit 0 only once the server acknowledged everything"
    )
    sync.add_argument("--timeout", type=float, default=3600.0, help="seconds (default 3600)")
    status = add("status", cmd_status, "what is waiting, what failed, disk space")
    status.add_argument("--json", action="store_true")
    status.add_argument("--watch", action="store_true", help="redraw every 2 s (live view)")
    cover = add("coversheet", cmd_coversheet, "print QR cover sheets that split a batch")
    cover.add_argument("--ma-ho-so", required=True, help="mã hồ sơ the documents belong to")
    cover.add_argument("--first", type=int, default=1, help="first số thứ tự văn bản")
    cover.add_argument("--count", type=int, default=1, help="sheets (0: one for the hồ sơ)")
    cover.add_argument("--title", help="optional title printed on the sheet")
    cover.add_argument("--out", type=Path, default=Path("coversheets.pdf"), help="PDF to write")
    export = add("export", cmd_export, "copy pending batches to a USB disk (no link at all)")
    export.add_argument("path", type=Path, help="the USB disk's folder, e.g. /media/usb")
    receipts = add(
        "import-receipts", cmd_import_receipts, "read the archive's receipts from a USB disk"
    )
    receipts.add_argument("path", type=Path, help="the USB disk, a bundle or a receipts folder")
    done = add(
        "rescan-done", cmd_rescan_done, "clear a re-scan request once the page is scanned again"
    )
    done.add_argument("page_id", help="the page id status shows (its first 8 characters do)")
    redo = add("reprocess", cmd_reprocess, "run cleanup and OCR on one capture file again")
    redo.add_argument("capture", type=Path, help="the capture (PNG/TIFF/JPEG) to process")
    redo.add_argument("--out", type=Path, required=True, help="folder for the new results")
    redo.add_argument("--dpi", type=int, default=0, help="the capture's dpi (default: its own)")
    devices = add("devices", cmd_devices, "scanners SANE finds and the profile each matched")
    devices.add_argument("--json", action="store_true")
    add("run", cmd_run, "the service: button, pipeline and sync (systemd runs this)")
    enrol = add("enrol", cmd_enrol, "enrol this station with the archive (one-time code)")
    enrol.add_argument(
        "code", nargs="?", help="the code printed on the enrolment sheet, or a file with it"
    )
    enrol.add_argument(
        "--scan", action="store_true", help="read the sheet with this station's scanner instead"
    )
    enrol.add_argument("--ca", type=Path, help="CA certificate of the broker (mqtts://)")
    enrol.add_argument("--force", action="store_true", help="enrol again (a new code)")
    enrol.add_argument(
        "--usb", type=Path, metavar="FILE",
        help="enrol from a USB enrolment file (sohoa-server device add --usb-file), link down",
    )  # fmt: skip
    enrol.add_argument(
        "--fingerprint", metavar="KEY",
        help="with --usb: the archive key fingerprint printed on the sheet",
    )  # fmt: skip
    enrol.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (60)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.INFO if (args.verbose or args.command == "run") else logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        ctx = Context(args)
    except SohoaError as exc:
        log.error("%s: %s", exc.key, exc.detail)
        print(messages.t(exc.key, "vi", detail=exc.detail, **exc.params), file=sys.stderr)
        return exc.exit_code
    try:
        return int(args.func(ctx))
    except ScannerError as exc:
        _report(ctx, exc)
        return 3 if exc.key != "scan_no_paper" else 2
    except SyncError as exc:
        _report(ctx, exc)
        return exc.exit_code
    except SohoaError as exc:
        _report(ctx, exc)
        return exc.exit_code
    except KeyboardInterrupt:
        ctx.say("interrupted")
        return 130
    except PermissionError as exc:
        log.error("permission denied: %s", exc)
        print(messages.t("wrong_user", ctx.lang, owner="sohoa"), file=sys.stderr)
        return 77
    except OSError as exc:
        log.error("%s: %s", args.command, exc)
        print(messages.t("file_error", ctx.lang), file=sys.stderr)
        return 74
    except Exception as exc:
        # The service's journal keeps the full trace; a terminal gets one line (-v: the trace).
        full = args.command == "run" or args.verbose
        log.error("unexpected error in %s: %s: %s", args.command, type(exc).__name__, exc)
        if full:
            log.error("details", exc_info=True)
        print(messages.t("internal_error", ctx.lang), file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
