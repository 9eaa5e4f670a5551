"""USB bundles: batches leave on a disk where a commune has no link at all.

A bundle holds exactly the protocol frames the agent would publish over MQTT, one file per
frame, so the server takes them in through the same ``Ingest.handle`` (same manifests, same
sha256 checks, same UNIQUE dedupe, same receipts)::

    <usb>/sohoa-bundle-<device>-<YYYYmmddTHHMMSSZ>/
        frames/000001.manifest      protocol.envelope frames, manifests first,
        frames/000002.chunk         then chunks of whole parts (text first, 1 MiB each)
        ...
        bundle.json.sig             the index's signature by the station's key (enrolment)
        bundle.json                 the index, written LAST: no bundle.json = incomplete
        receipts/                   written by `sohoa-server import-bundle`
            receipts.json           its index (device, files with sha256, refused frames)
            r<stamp>-000001.receipt / .state / .reject   frames from the server

Every file is written durably (temp, fsync, rename; the directory fsynced before the index
is written): USB sticks get yanked. Nothing on the device changes when a bundle is written —
only receipts (from the disk, or over the link, whichever comes first) let the outbox
release anything, after their sha256 matched ours (:mod:`agent.uplink.transfer`).

This module must not talk to the network.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import stat
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import AgentSettings, require_device_id
from agent.errors import DiskFullError, SohoaError
from agent.outbox import outbox as ob
from agent.outbox import storage
from agent.uplink import enrol, transfer
from protocol import envelope, signing
from protocol.messages import PART_PRIORITY, BatchState, ChunkHeader, Receipt, Reject
from protocol.version import PROTOCOL_VERSION

log = logging.getLogger(__name__)

BUNDLE_PREFIX = "sohoa-bundle-"
INDEX_FILE = "bundle.json"
SIGNATURE_FILE = "bundle.json.sig"  # hex Ed25519 signature of bundle.json, station key
FRAMES_DIR = "frames"
RECEIPTS_DIR = "receipts"
RECEIPTS_INDEX = "receipts.json"
BUNDLE_FORMAT = "sohoa-bundle"
RECEIPTS_FORMAT = "sohoa-receipts"
FORMAT_VERSION = 1
# Whole parts cut into the largest chunk a frame may carry (ChunkHeader.length <= 1 MiB):
# a disk has no keepalive to outlive, and fewer files fsync faster on a slow stick.
BUNDLE_CHUNK_SIZE = 1 << 20
# Space a frame may take beyond its bytes: the envelope header and the file system's last
# cluster (FAT32/exFAT sticks use clusters of up to 32 KiB).
FRAME_OVERHEAD = 64 * 1024
SPACE_MARGIN = 8 * 1024 * 1024
MAX_INDEX_BYTES = 64 * 1024 * 1024
_RECEIPT_FILE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\.(receipt|state|reject)$")


class BundleError(SohoaError):
    """The bundle could not be written or read; nothing on the device changed."""

    exit_code = 73  # EX_CANTCREAT


@dataclass
class ReceiptsReport:
    dirs: list[Path] = field(default_factory=list)
    parts_acked: int = 0
    finished: list[transfer.FinishedBatch] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (file, why)
    other_device: int = 0  # receipt folders of another device on the same disk
    server_refused: list[tuple[str, str]] = field(default_factory=list)  # frames the server refused
    rejects: list[str] = field(default_factory=list)

    @property
    def pages_done(self) -> int:
        return sum(f.pages for f in self.finished)


@dataclass
class ExportReport:
    bundle: Path | None = None
    batches: int = 0
    pages: int = 0
    parts: int = 0
    frames: int = 0
    bytes: int = 0
    secret_skipped: int = 0
    quarantined: list[str] = field(default_factory=list)
    receipts: ReceiptsReport = field(default_factory=ReceiptsReport)


@dataclass(frozen=True)
class _Part:
    batch_id: str
    page_id: str
    page_no: int
    created_at: float
    held: ob.PartFile
    path: Path

    @property
    def priority(self) -> tuple[int, float, int]:
        return (PART_PRIORITY[self.held.name], self.created_at, self.page_no)


# -- export ------------------------------------------------------------------------------------


def export(
    settings: AgentSettings,
    outbox: ob.Outbox,
    target: Path,
    agent_version: str,
    *,
    disk_free: Callable[[Path], int] | None = None,
) -> ExportReport:
    """Write every pending batch to a new bundle under ``target`` (the USB disk's root).

    First applies the receipts already on that disk (a round trip brings them back), so
    what the archive has is never written again. Refuses before writing anything when the
    disk cannot hold the bundle. On any write error the half-written bundle is removed (and
    without its bundle.json it could never be imported anyway)."""
    require_device_id(settings)  # a bundle names its station: never a shared hostname
    check_target(target)
    from agent.uplink import enrol

    key = enrol.station_key(settings.data_dir)
    if key is None:
        # The archive takes a bundle only signed by an enrolled station's key (issue 14).
        raise BundleError("export_not_enrolled", f"no station key in {settings.data_dir}")
    report = ExportReport()
    report.receipts = import_receipts(settings, outbox, target)
    batches = transfer.sendable_batches(outbox)
    report.secret_skipped = sum(1 for b in outbox.batches((ob.READY,)) if b.secret)
    if settings.sync_masters:
        transfer.add_masters(outbox, batches)
    parts, pages = _plan(outbox, batches, report)
    batches = [b for b in batches if b.batch_id not in report.quarantined]
    if not batches:
        return report
    need = _space_needed(parts, pages)
    free = (disk_free or _disk_free)(target)
    if need > free:
        raise BundleError(
            "export_no_space",
            f"{target}: need {need} bytes, {free} free",
            path=str(target),
            need_mb=_mb(need),
            free_mb=_mb(free),
        )
    bundle_dir = _new_bundle_dir(target, settings.device_id)
    try:
        _write_bundle(
            settings, outbox, bundle_dir, batches, pages, parts, agent_version, report, key
        )
    except (OSError, SohoaError) as exc:
        storage.remove_tree(bundle_dir)
        detail = exc.detail if isinstance(exc, SohoaError) else str(exc)
        full = isinstance(exc, DiskFullError) or (
            isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
        )
        if full:
            raise BundleError(
                "export_no_space",
                f"{bundle_dir}: {detail}",
                path=str(target),
                need_mb=_mb(need),
                free_mb=_mb((disk_free or _disk_free)(target)),
            ) from exc
        raise BundleError(
            "export_write_failed", f"{bundle_dir}: {detail}", path=str(target)
        ) from exc
    report.bundle = bundle_dir
    return report


def check_target(target: Path) -> None:
    """The disk must be there already: never create a mount point's folder on the SD card."""
    if not target.is_dir():
        raise BundleError("export_no_target", f"{target} is not a directory", path=str(target))


def _plan(
    outbox: ob.Outbox, batches: list[ob.BatchRecord], report: ExportReport
) -> tuple[list[_Part], dict[str, list[ob.PageRecord]]]:
    """Every part not yet receipted, re-hashed first: bit rot on an SD card must not travel
    as a valid page (a batch whose file changed is quarantined, exactly as sync does)."""
    parts: list[_Part] = []
    pages: dict[str, list[ob.PageRecord]] = {}
    for batch in batches:
        batch_parts: list[_Part] = []
        batch_pages = outbox.pages(batch.batch_id)
        bad = None
        for page in batch_pages:
            for held in page.parts.values():
                if held.acked:
                    continue
                path = outbox.batch_dir(batch.batch_id) / held.file
                try:
                    actual = storage.sha256_file(path)
                except OSError as exc:
                    actual = f"unreadable ({exc.strerror})"
                if actual != held.sha256:
                    bad = (
                        f"page {page.page_no} {held.name}: local file changed on disk "
                        f"(sha256 {actual[:12]}, recorded {held.sha256[:12]})"
                    )
                    break
                batch_parts.append(
                    _Part(batch.batch_id, page.page_id, page.page_no, batch.created_at, held, path)
                )
            if bad:
                break
        if bad:
            transfer.quarantine(outbox, batch.batch_id, bad)
            report.quarantined.append(batch.batch_id)
            continue
        parts.extend(batch_parts)
        pages[batch.batch_id] = batch_pages
    parts.sort(key=lambda p: p.priority)
    return parts, pages


def _write_bundle(
    settings: AgentSettings,
    outbox: ob.Outbox,
    bundle_dir: Path,
    batches: list[ob.BatchRecord],
    pages: dict[str, list[ob.PageRecord]],
    parts: list[_Part],
    agent_version: str,
    report: ExportReport,
    key: Ed25519PrivateKey,
) -> None:
    frames_dir = bundle_dir / FRAMES_DIR
    _make_dirs(bundle_dir)  # each new folder's name made durable in its parent
    frames_dir.mkdir()  # a bundle is written once: an existing one is an error
    frames: list[dict[str, Any]] = []

    def add(kind: str, batch_id: str, payload: bytes) -> None:
        name = f"{len(frames) + 1:06d}.{kind}"
        # The directory is fsynced once, before the index is written.
        sha256 = storage.write_bytes(frames_dir / name, payload, sync_dir=False)
        frames.append(
            {
                "file": f"{FRAMES_DIR}/{name}",
                "kind": kind,
                "batch_id": batch_id,
                "sha256": sha256,
                "size": len(payload),
            }
        )

    device = settings.device_id
    for batch in batches:
        for manifest in transfer.build_manifests(
            device, batch, pages[batch.batch_id], agent_version, key
        ):
            add("manifest", batch.batch_id, envelope.encode(manifest))
    for part in parts:
        with open(part.path, "rb") as fh:
            offset = 0
            while offset < part.held.size:
                body = fh.read(min(BUNDLE_CHUNK_SIZE, part.held.size - offset))
                if not body:
                    raise BundleError("export_write_failed", f"{part.path} shorter than recorded")
                header = ChunkHeader(
                    device_id=device,
                    msg_id=uuid.uuid4().hex,
                    sent_at=time.time(),
                    batch_id=part.batch_id,
                    page_id=part.page_id,
                    part=part.held.name,
                    offset=offset,
                    length=len(body),
                    part_size=part.held.size,
                    part_sha256=part.held.sha256,
                    chunk_sha256=hashlib.sha256(body).hexdigest(),
                )
                add("chunk", part.batch_id, envelope.encode(header, body))
                offset += len(body)
    _fsync_dir(frames_dir)
    summary: list[dict[str, Any]] = []
    page_count = sum(len(pages[b.batch_id]) for b in batches)
    for batch in batches:
        mine = [p for p in parts if p.batch_id == batch.batch_id]
        summary.append(
            {
                "batch_id": batch.batch_id,
                "pages": len(pages[batch.batch_id]),
                "parts": len(mine),
                "bytes": sum(p.held.size for p in mine),
            }
        )
    index = {
        "format": BUNDLE_FORMAT,
        "format_version": FORMAT_VERSION,
        "protocol_version": PROTOCOL_VERSION,
        "device_id": device,
        "created_at": time.time(),
        "agent_version": agent_version,
        "chunk_size": BUNDLE_CHUNK_SIZE,
        "masters": settings.sync_masters,
        "page_count": page_count,
        "part_count": len(parts),
        "bytes": sum(p.held.size for p in parts),
        "batches": summary,
        "frames": frames,
    }
    data = json.dumps(index, ensure_ascii=False, indent=1).encode()
    # The index lists every frame's sha256: its signature by the station's key covers the
    # whole bundle. Written before the index, so an index never lacks its signature.
    storage.write_bytes(bundle_dir / SIGNATURE_FILE, signing.sign_bytes(data, key).encode())
    storage.write_bytes(bundle_dir / INDEX_FILE, data)  # the commit point of the bundle
    _fsync_dir(bundle_dir.parent)
    report.batches = len(batches)
    report.pages = page_count
    report.parts = len(parts)
    report.frames = len(frames)
    report.bytes = sum(f["size"] for f in frames)
    log.info(
        "bundle %s: %d batch(es), %d page(s), %d part(s), %d frame(s), %d bytes",
        bundle_dir,
        report.batches,
        report.pages,
        report.parts,
        report.frames,
        report.bytes,
    )


def _space_needed(parts: list[_Part], pages: dict[str, list[ob.PageRecord]]) -> int:
    chunk_frames = sum(max(1, -(-p.held.size // BUNDLE_CHUNK_SIZE)) for p in parts)
    manifest_frames = sum(1 + len(v) // 50 for v in pages.values())  # generous
    return (
        SPACE_MARGIN
        + sum(p.held.size for p in parts)
        + FRAME_OVERHEAD * (chunk_frames + manifest_frames)
    )


def _new_bundle_dir(target: Path, device_id: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    base = f"{BUNDLE_PREFIX}{device_id}-{stamp}"
    candidate = target / base
    n = 1
    while candidate.exists():
        n += 1
        candidate = target / f"{base}-{n}"
    return candidate


def _make_dirs(path: Path) -> None:
    """``mkdir -p`` that fsyncs the parent of every folder it makes (as the outbox's
    ``storage.make_dirs``, but tolerant of FAT drivers like ``_fsync_dir``): a bundle's
    folders on a fresh stick must survive a power cut as its files do."""
    if path.is_dir():
        return
    _make_dirs(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        return
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        storage.fsync_dir(path)
    except OSError as exc:
        # Some FAT drivers refuse fsync on a directory; sync(2) flushes it all instead.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
        os.sync()


def _disk_free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _mb(n: int) -> float:
    return round(n / 1e6, 1)  # a float: messages.t writes it the reader's way (12,3 MB)


# -- receipts ----------------------------------------------------------------------------------


def find_receipt_dirs(path: Path) -> list[Path]:
    """Receipt folders at ``path``: a receipts folder itself, a bundle, or a disk's root
    holding bundles (or the folders ``import-bundle --receipts-to`` wrote)."""
    candidates = [path, path / RECEIPTS_DIR]
    if path.is_dir():
        for child in sorted(path.iterdir()):
            if child.is_dir() and not child.is_symlink():
                candidates += [child, child / RECEIPTS_DIR]
    seen: list[Path] = []
    for c in candidates:
        if (c / RECEIPTS_INDEX).is_file() and c not in seen:
            seen.append(c)
    return seen


def import_receipts(settings: AgentSettings, outbox: ob.Outbox, path: Path) -> ReceiptsReport:
    """Apply every receipt for this device found at ``path``, then finish the batches whose
    every travelling part is receipted (their local files are released)."""
    report = ReceiptsReport()
    for rdir in find_receipt_dirs(path):
        _apply_receipt_dir(settings, outbox, rdir, report)
    batches = transfer.sendable_batches(outbox)
    if settings.sync_masters:
        transfer.add_masters(outbox, batches)
    report.finished = transfer.finish_batches(
        outbox, batches, capture_with_page=settings.keep_captures == "until_page_receipted"
    )
    return report


def _apply_receipt_dir(
    settings: AgentSettings, outbox: ob.Outbox, rdir: Path, report: ReceiptsReport
) -> None:
    index_path = rdir / RECEIPTS_INDEX
    try:
        if index_path.stat().st_size > MAX_INDEX_BYTES:
            raise ValueError("too large")
        index = json.loads(index_path.read_bytes())
        if not isinstance(index, dict) or index.get("format") != RECEIPTS_FORMAT:
            raise ValueError("not a sohoa receipts index")
        if index.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format version {index.get('format_version')!r}")
        files = index["files"]
        device = index["device_id"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        report.refused.append((str(index_path), f"unreadable index: {exc}"))
        return
    if device != settings.device_id:
        report.other_device += 1
        log.info("%s: receipts of device %s, not ours; skipped", rdir, device)
        return
    report.dirs.append(rdir)
    if isinstance(index.get("archive_key"), str):
        # The archive's next receipt key, signed by its current one (protocol/keyrotation.py):
        # learnt before the receipts, which may already be signed by it.
        try:
            enrol.record_rotation(
                settings.data_dir, settings.server_public_key, index["archive_key"]
            )
        except enrol.EnrolError as exc:
            log.error("%s: ignored the archive key announcement: %s", rdir, exc.detail)
    for item in index.get("refused", []):
        if isinstance(item, dict):
            report.server_refused.append((str(item.get("file")), str(item.get("reason"))))
    for item in files:
        name = str(item.get("file", "")) if isinstance(item, dict) else ""
        why = _apply_receipt_file(settings, outbox, rdir, item, report)
        if why:
            report.refused.append((str(rdir / name) if name else str(rdir), why))
            log.warning("receipt %s/%s ignored: %s", rdir, name, why)


def _apply_receipt_file(
    settings: AgentSettings,
    outbox: ob.Outbox,
    rdir: Path,
    item: Any,
    report: ReceiptsReport,
) -> str | None:
    """Apply one receipt frame; return why it was refused, or None."""
    if not isinstance(item, dict):
        return "bad index entry"
    name = item.get("file")
    if not isinstance(name, str) or not _RECEIPT_FILE_RE.fullmatch(name):
        return f"bad file name {name!r}"
    try:
        payload = _read_regular(rdir / name, envelope.MAX_PAYLOAD)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    except ValueError as exc:
        return str(exc)
    if hashlib.sha256(payload).hexdigest() != item.get("sha256"):
        return "sha256 mismatch (damaged file)"
    try:
        msg = envelope.decode(payload).message
    except envelope.EnvelopeError as exc:
        return f"{exc.reason}: {exc.detail}"
    if msg.device_id != settings.device_id:
        return f"wrong_device: names {msg.device_id!r}"
    if isinstance(msg, Receipt | BatchState | Reject) and not transfer.authentic(
        msg, transfer.archive_keys(settings)
    ):
        return "bad or missing server signature"
    if isinstance(msg, Receipt):
        report.parts_acked += transfer.apply_receipt(outbox, msg)
    elif isinstance(msg, BatchState):
        report.parts_acked += transfer.apply_state(outbox, msg)
    elif isinstance(msg, Reject):
        report.rejects.append(transfer.apply_reject(outbox, msg))
    else:
        return f"unexpected {msg.kind} frame"
    return None


def _read_regular(path: Path, limit: int) -> bytes:
    """Read a regular file (never through a symlink a foreign disk may carry)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_size > limit:
            raise ValueError(f"{st.st_size} bytes, more than a frame may hold")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(limit + 1)
    finally:
        os.close(fd)
