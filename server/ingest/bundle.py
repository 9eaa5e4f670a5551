"""Import a USB bundle: the frames a device could not publish, taken in without a broker.

A bundle (written by ``sohoa-agent export``, layout in ``agent/bundle.py`` and
``protocol/README.md`` § USB bundles) holds exactly the frames the agent would have published.
Each one goes through :meth:`server.ingest.Ingest.handle` with the topic the device would
have used (``protocol.topics.up(device, kind)``), so manifests, sha256 checks, UNIQUE dedupe,
conflicts and receipts are exactly those of the link. The answers ``handle`` gives (receipts,
rejects) plus a final ``state`` per batch (the same answer a ``query`` gets: every part
committed so far, also by an earlier import or over the link) are written back durably into
``<bundle>/receipts/`` for the agent to read when the disk comes home.

The flow of :func:`import_bundle`: read and check ``bundle.json`` (refuse the whole bundle if
it is missing — the export did not finish — or unreadable) → the station it names must be
enrolled and active, and ``bundle.json.sig`` its key's signature of ``bundle.json``, else
the whole bundle is refused and nothing written → for each listed frame, check
its name, size and sha256 and refuse it alone if any differs → ``Ingest.handle`` → query the
state of the bundle's batches → write receipt frames, then ``receipts.json`` last.

No MQTT here: importing works on a server with no broker at all. A device learns the same
over the link through its reconciliation ``query`` if a link appears first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from protocol import envelope, signing, topics
from protocol.messages import BatchState, Query, Receipt, Reject
from server.fleet import registry as stations
from server.ingest import Ingest, Outgoing
from server.store import keys
from server.store.db import Database

log = logging.getLogger(__name__)

INDEX_FILE = "bundle.json"
SIGNATURE_FILE = "bundle.json.sig"
RECEIPTS_DIR = "receipts"
RECEIPTS_INDEX = "receipts.json"
BUNDLE_FORMAT = "sohoa-bundle"
RECEIPTS_FORMAT = "sohoa-receipts"
FORMAT_VERSION = 1
MAX_INDEX_BYTES = 64 * 1024 * 1024
MAX_QUERY_BATCHES = 200  # protocol.messages.Query.batch_ids
TEMP_PREFIX = ".tmp-"
_FRAME_FILE_RE = re.compile(r"^frames/[0-9]{6,9}\.(manifest|chunk)$")
_RECEIPT_NAME_RE = re.compile(r"^r[0-9]+-[0-9a-f]{8}-[0-9]{6}\.(receipt|state|reject)$")


# -- the index the agent writes ------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FrameEntry(_Strict):
    file: str = Field(pattern=_FRAME_FILE_RE.pattern)
    kind: Literal["manifest", "chunk"]
    batch_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0, le=envelope.MAX_PAYLOAD)


class BatchEntry(_Strict):
    batch_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    pages: int = Field(ge=0)
    parts: int = Field(ge=0)
    bytes: int = Field(ge=0)


class BundleIndex(_Strict):
    format: Literal["sohoa-bundle"]
    format_version: int
    protocol_version: int
    device_id: str = Field(pattern=topics.DEVICE_ID_RE.pattern)
    created_at: float
    agent_version: str = Field(max_length=40)
    chunk_size: int = Field(ge=1)
    masters: bool
    page_count: int = Field(ge=0)
    part_count: int = Field(ge=0)
    bytes: int = Field(ge=0)
    batches: tuple[BatchEntry, ...]
    frames: tuple[FrameEntry, ...]


# -- results ----------------------------------------------------------------------------------


class BundleRefused(Exception):
    """The whole bundle cannot be imported; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class RefusedFrame:
    file: str
    reason: str
    detail: str


@dataclass
class ImportReport:
    bundle: Path
    device_id: str = ""
    frames_total: int = 0
    frames_imported: int = 0
    refused: list[RefusedFrame] = field(default_factory=list)
    parts_committed: int = 0  # committed by this import
    batches: dict[str, tuple[int, int, bool]] = field(default_factory=dict)  # committed, total
    receipts_dir: Path | None = None
    receipt_files: int = 0
    receipts_error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "bundle": str(self.bundle),
            "device_id": self.device_id,
            "frames_total": self.frames_total,
            "frames_imported": self.frames_imported,
            "refused": [r.__dict__ for r in self.refused],
            "parts_committed": self.parts_committed,
            "batches": [
                {"batch_id": b, "parts_committed": c, "parts_total": t, "complete": done}
                for b, (c, t, done) in self.batches.items()
            ],
            "receipts_dir": str(self.receipts_dir) if self.receipts_dir else None,
            "receipt_files": self.receipt_files,
            "receipts_error": self.receipts_error,
        }


# -- the flow ---------------------------------------------------------------------------------


def import_bundle(ingest: Ingest, bundle: Path, receipts_to: Path | None = None) -> ImportReport:
    raw, index = _read_index(bundle)
    try:
        check_station(ingest.db, bundle, raw, index)
    except BundleRefused as exc:  # someone may be forging records: staff see it
        ingest.db.alert(exc.reason, f"USB bundle {bundle.name}: {exc.detail}", index.device_id)
        raise
    report = ImportReport(bundle=bundle, device_id=index.device_id)
    report.frames_total = len(index.frames)
    replies: list[Outgoing] = []
    for entry in index.frames:
        try:
            payload = _read_frame(bundle, entry)
        except _FrameRefused as exc:
            _refuse(report, entry.file, exc.reason, exc.detail)
            continue
        out = ingest.handle(topics.up(index.device_id, entry.kind), payload)
        rejects = [_decode_reject(o) for o in out if o.topic.endswith("/reject")]
        if rejects:
            first = rejects[0]
            _refuse(report, entry.file, first.reason, first.detail)
        else:
            report.frames_imported += 1
        for o in out:
            msg = envelope.decode(o.payload).message
            if isinstance(msg, Receipt):
                report.parts_committed += len(msg.committed)
        replies.extend(out)
    replies.extend(_final_states(ingest, index, report))
    rdir = (receipts_to / bundle.name / RECEIPTS_DIR) if receipts_to else bundle / RECEIPTS_DIR
    report.receipts_dir = rdir
    try:
        announced = keys.rotation(ingest.key_dir) if ingest.key_dir is not None else None
        report.receipt_files = write_receipts(
            rdir, index, bundle.name, replies, report,
            archive_key=announced.encode() if announced is not None else None,
        )  # fmt: skip
    except OSError as exc:
        # The archive committed everything above; only the way back on this disk failed.
        report.receipts_error = f"{rdir}: {exc.strerror or exc}"
        log.error("bundle %s: receipts not written: %s", bundle, report.receipts_error)
    log.info(
        "bundle %s (device %s): %d of %d frame(s) imported, %d refused, %d part(s) committed",
        bundle,
        index.device_id,
        report.frames_imported,
        report.frames_total,
        len(report.refused),
        report.parts_committed,
    )
    return report


def check_station(db: Database, bundle: Path, raw: bytes, index: BundleIndex) -> None:
    """Only an enrolled, active station's bundle enters, and only signed by its key: the
    index names every frame's sha256, so its signature covers the whole bundle. A bundle
    naming another station than the one that signed it fails here (issue 14)."""
    device = index.device_id
    station = stations.get(db, device)
    if station is None:
        raise BundleRefused("unknown_station", f"station {device} is not enrolled in this archive")
    if station.state == "revoked":
        raise BundleRefused("revoked", f"station {device} is revoked: its bundles are refused")
    if station.state != "active" or not station.public_key:
        raise BundleRefused("not_enrolled", f"station {device} has not finished its enrolment")
    try:
        signature = _read_regular(bundle / SIGNATURE_FILE, 1024).decode("ascii").strip()
    except FileNotFoundError as exc:
        raise BundleRefused("unsigned", f"{bundle / SIGNATURE_FILE} is missing") from exc
    except (OSError, UnicodeDecodeError, _FrameRefused) as exc:
        raise BundleRefused("unsigned", f"{bundle / SIGNATURE_FILE}: {exc}") from exc
    if not signing.verify_bytes(raw, signature, station.public_key):
        raise BundleRefused(
            "bad_signature",
            f"bundle.json is not signed by station {device}'s key ({station.fingerprint})",
        )


def read_index(bundle: Path) -> BundleIndex:
    return _read_index(bundle)[1]


def _read_index(bundle: Path) -> tuple[bytes, BundleIndex]:
    if not bundle.is_dir():
        raise BundleRefused("not_found", f"{bundle} is not a directory")
    path = bundle / INDEX_FILE
    try:
        raw = _read_regular(path, MAX_INDEX_BYTES)
    except FileNotFoundError as exc:
        raise BundleRefused(
            "incomplete",
            f"{path} is missing: the export did not finish (disk removed too early?)",
        ) from exc
    except (OSError, _FrameRefused) as exc:
        raise BundleRefused("unreadable", f"{path}: {exc}") from exc
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleRefused("corrupt", f"{path} is not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("format") != BUNDLE_FORMAT:
        raise BundleRefused("corrupt", f"{path} is not a sohoa bundle index")
    if obj.get("format_version") != FORMAT_VERSION:
        raise BundleRefused(
            "unsupported",
            f"bundle format version {obj.get('format_version')!r}, this server reads "
            f"{FORMAT_VERSION}",
        )
    try:
        return raw, BundleIndex.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ()))
        raise BundleRefused("corrupt", f"{path}: {where}: {first.get('msg')}") from exc


class _FrameRefused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _read_frame(bundle: Path, entry: FrameEntry) -> bytes:
    try:
        payload = _read_regular(bundle / entry.file, envelope.MAX_PAYLOAD)
    except FileNotFoundError as exc:
        raise _FrameRefused("missing", "listed in bundle.json but not on the disk") from exc
    except OSError as exc:
        raise _FrameRefused("unreadable", str(exc.strerror or exc)) from exc
    if len(payload) != entry.size:
        raise _FrameRefused("size_mismatch", f"{len(payload)} bytes, bundle.json says {entry.size}")
    if hashlib.sha256(payload).hexdigest() != entry.sha256:
        raise _FrameRefused("sha256_mismatch", "the file was damaged after the export")
    return payload


def _read_regular(path: Path, limit: int) -> bytes:
    """Read a regular file, never through a symlink a foreign disk may carry."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _FrameRefused("not_a_file", f"{path} is not a regular file")
        if st.st_size > limit:
            raise _FrameRefused("too_large", f"{st.st_size} bytes, at most {limit}")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(limit + 1)
    finally:
        os.close(fd)


def _refuse(report: ImportReport, file: str, reason: str, detail: str) -> None:
    report.refused.append(RefusedFrame(file, reason, detail))
    log.warning("bundle %s: %s refused: %s: %s", report.bundle, file, reason, detail)


def _decode_reject(out: Outgoing) -> Reject:
    msg = envelope.decode(out.payload).message
    assert isinstance(msg, Reject)
    return msg


def _final_states(ingest: Ingest, index: BundleIndex, report: ImportReport) -> list[Outgoing]:
    """Ask the archive, as a device's query would, what it now holds of the bundle's
    batches: a second import of the same bundle (every chunk "already have") still sends
    every receipt home, and so do parts committed earlier over the link."""
    ids = list(dict.fromkeys(b.batch_id for b in index.batches))
    out: list[Outgoing] = []
    for start in range(0, len(ids), MAX_QUERY_BATCHES):
        query = Query(
            device_id=index.device_id,
            msg_id=uuid.uuid4().hex,
            sent_at=time.time(),
            batch_ids=tuple(ids[start : start + MAX_QUERY_BATCHES]),
        )
        out.extend(ingest.handle(topics.up(index.device_id, "query"), envelope.encode(query)))
    for o in out:
        state = envelope.decode(o.payload).message
        if isinstance(state, BatchState):
            report.batches[state.batch_id] = (
                sum(1 for p in state.parts if p.committed),
                len(state.parts),
                state.complete,
            )
    return out


# -- the way back -----------------------------------------------------------------------------


def write_receipts(
    rdir: Path,
    index: BundleIndex,
    bundle_name: str,
    replies: list[Outgoing],
    report: ImportReport,
    archive_key: str | None = None,
) -> int:
    """Write each reply frame durably, then ``receipts.json`` listing them (last, replacing
    the index of an earlier import atomically), then remove the files no index names.
    ``archive_key``: the announcement of the archive's next receipt key, if one was made
    (protocol/keyrotation.py): a station that only exchanges disks learns it from here."""
    rdir.mkdir(parents=True, exist_ok=True)
    stamp = f"r{int(time.time())}-{uuid.uuid4().hex[:8]}"
    files = []
    for n, out in enumerate(replies, start=1):
        parsed = topics.parse(out.topic)
        name = f"{stamp}-{n:06d}.{parsed.kind}"
        _write_durably(rdir / name, out.payload, fsync_dir=False)
        msg = envelope.decode(out.payload).message
        files.append(
            {
                "file": name,
                "kind": parsed.kind,
                "batch_id": getattr(msg, "batch_id", None),
                "sha256": hashlib.sha256(out.payload).hexdigest(),
                "size": len(out.payload),
            }
        )
    _fsync_dir(rdir)
    body = {
        "format": RECEIPTS_FORMAT,
        "format_version": FORMAT_VERSION,
        "device_id": index.device_id,
        "bundle": bundle_name,
        "bundle_created_at": index.created_at,
        "imported_at": time.time(),
        "frames_total": report.frames_total,
        "frames_imported": report.frames_imported,
        "refused": [r.__dict__ for r in report.refused],
        "batches": report.as_dict()["batches"],
        "files": files,
    }
    if archive_key is not None:
        body["archive_key"] = archive_key
    data = json.dumps(body, ensure_ascii=False, indent=1).encode()
    _write_durably(rdir / RECEIPTS_INDEX, data, fsync_dir=True)
    keep = {f["file"] for f in files}
    for old in rdir.iterdir():
        if _RECEIPT_NAME_RE.fullmatch(old.name) and old.name not in keep:
            old.unlink(missing_ok=True)
    return len(files)


def _write_durably(path: Path, data: bytes, *, fsync_dir: bool) -> None:
    tmp = path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    if fsync_dir:
        _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError:
        os.sync()  # some FAT drivers refuse fsync on a directory
    finally:
        os.close(fd)
