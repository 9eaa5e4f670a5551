"""What travels and what a receipt changes: shared by the MQTT sync and the USB bundle.

The two ways a batch leaves the edge (``agent.uplink.sync`` over MQTT,
``agent.uplink.bundle`` on a USB disk) must send the same manifests and apply the server's
answers the same way, or the archive would hold two versions of the truth. This module owns
those rules:

* :func:`sendable_batches` / :func:`add_masters` — which batches and parts travel
  (never a secret batch, độ mật, TT 02/2019; the capture only with ``SOHOA_SYNC_MASTERS``);
* :func:`build_manifests` / :func:`page_entry` — the manifest slices of a batch;
* :func:`authentic` — with the server's public key configured, a receipt or state must carry
  the server's signature (protocol/signing.py): it could make us delete pages;
* :func:`apply_committed` / :func:`apply_receipt` / :func:`apply_state` — record parts the
  server committed, each only after its sha256 matched ours (a receipt we cannot verify
  deletes nothing);
* :func:`finish_batches` — a batch whose every travelling part is receipted is done and its
  local files are released (the capture only when the capture itself was receipted);
* :func:`apply_reject` / :func:`quarantine` — what a refusal does to a batch.

No I/O of its own besides the outbox; no MQTT, no USB paths.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import AgentSettings
from agent.outbox import outbox as ob
from agent.uplink import enrol
from protocol import signing
from protocol.messages import (
    PART_PRIORITY,
    BatchState,
    Manifest,
    PageEntry,
    PartRef,
    PartState,
    Receipt,
    Reject,
)

log = logging.getLogger(__name__)

MANIFEST_BUDGET = 24 * 1024  # bytes of header per manifest slice (one publish on 2G)


@dataclass(frozen=True)
class FinishedBatch:
    batch_id: str
    pages: int
    bytes_freed: int


# -- what travels ------------------------------------------------------------------------------


def sendable_batches(outbox: ob.Outbox) -> list[ob.BatchRecord]:
    """Ready batches that may leave the device, oldest first. A secret (mật) batch never
    does, neither over a network nor on a USB disk (TT 02/2019, docs/design.md §4)."""
    return [b for b in outbox.batches((ob.READY,)) if not b.secret]


def masters_may_travel(settings: AgentSettings, hour: int, rate_bps: float | None) -> bool:
    """May captures (lossless masters) be sent now? Only inside `masters_hours` (local
    "22-6": from 22:00 to 06:00; empty: any hour) and when the link carried at least
    `masters_min_kbps` lately (unmeasured: yes, sending is how it gets measured). The archival
    page and text always may, and go first anyway (sync's PART_PRIORITY)."""
    window = settings.masters_hours
    if window:
        start, end = (int(x) for x in window.split("-"))
        inside = start <= hour < end if start < end else hour >= start or hour < end
        if not inside:
            return False
    floor = settings.masters_min_kbps
    return not floor or rate_bps is None or rate_bps * 8 / 1000 >= floor


def add_masters(outbox: ob.Outbox, batches: Iterable[ob.BatchRecord]) -> None:
    """Let the captures travel too (``SOHOA_SYNC_MASTERS=true``)."""
    for batch in batches:
        for page in outbox.pages(batch.batch_id):
            if "capture" not in page.parts:
                outbox.add_capture_part(batch.batch_id, page.page_id)


def page_entry(page: ob.PageRecord) -> PageEntry:
    return PageEntry(
        page_id=page.page_id,
        page_no=page.page_no,
        capture_sha256=page.capture_sha256,
        capture_size=page.capture_size,
        dpi=page.dpi,
        width_px=page.width_px,
        height_px=page.height_px,
        colour=page.colour,
        flags=page.flags + (("processing_failed",) if page.state == ob.FAILED else ()),
        ocr_confidence=page.ocr_confidence,
        decisions=page.decisions,
        source_name=page.source_name,
        parts=tuple(
            PartRef(name=p.name, sha256=p.sha256, size=p.size, media_type=p.media_type)
            for p in sorted(page.parts.values(), key=lambda p: PART_PRIORITY[p.name])
        ),
    )


def build_manifests(
    device_id: str,
    batch: ob.BatchRecord,
    pages: list[ob.PageRecord],
    agent_version: str,
    key: Ed25519PrivateKey | None = None,
) -> list[Manifest]:
    """The batch's manifest, cut into slices that each fit one small publish, each signed
    with the station's key when it has one (enrolment made it)."""
    entries = [page_entry(page) for page in pages]
    slices: list[list[PageEntry]] = [[]]
    size = 0
    for entry in entries:
        entry_size = len(entry.model_dump_json())
        if slices[-1] and size + entry_size > MANIFEST_BUDGET * 3:  # zstd gains ~3x on JSON
            slices.append([])
            size = 0
        slices[-1].append(entry)
        size += entry_size
    manifests = [
        Manifest(
            device_id=device_id,
            msg_id=uuid.uuid4().hex,
            sent_at=time.time(),
            batch_id=batch.batch_id,
            created_at=batch.created_at,
            page_count=len(pages),
            source="import" if batch.source == "import" else "scan",
            scanner=batch.scanner,
            profile=batch.profile,
            agent_version=agent_version,
            # The fonds chosen for the batch travels in its own field (protocol.messages).
            metadata={k: v for k, v in batch.metadata.items() if k != ob.FONDS_KEY},
            fonds=batch.metadata.get(ob.FONDS_KEY) or None,
            pages=tuple(part),
        )
        for part in slices
    ]
    if key is None:
        return manifests
    return [m.model_copy(update={"signature": signing.sign(m, key)}) for m in manifests]


# -- what the server said ----------------------------------------------------------------------


def archive_keys(settings: AgentSettings, now: float | None = None) -> set[str]:
    """The archive keys this station accepts now: the pinned one and those the archive
    announced while rotating its key (protocol/keyrotation.py), the old one dropped at the
    cut-over."""
    return enrol.archive_keys(settings.data_dir, settings.server_public_key, now)


def authentic(msg: Receipt | BatchState | Reject, server_public_key: str | set[str] | None) -> bool:
    """True only when the message carries the signature of the archive key pinned at
    enrolment (or, during and after a key rotation, of a key it announced: a set of keys,
    :func:`archive_keys`). With no key pinned NOTHING is authentic: a receipt could make us
    delete pages, a reject quarantine a batch, and the broker's ACL alone is not enough (a
    USB disk has none, issue 14)."""
    if isinstance(server_public_key, set):
        for key in sorted(server_public_key):
            if signing.verify(msg, msg.signature, key):
                return True
        server_public_key = None if not server_public_key else next(iter(server_public_key))
    if server_public_key is None:
        log.error(
            "ignored a %s for batch %s: no archive key is pinned on this station (enrol it:"
            " sohoa-agent enrol); nothing is deleted until then",
            msg.kind,
            msg.batch_id,
        )
        return False
    if signing.verify(msg, msg.signature, server_public_key):
        return True
    log.error("ignored a %s for batch %s: bad or missing server signature", msg.kind, msg.batch_id)
    return False


def apply_committed(outbox: ob.Outbox, batch_id: str, parts: Iterable[PartState]) -> int:
    """Mark acknowledged every committed part whose sha256 is the one we hold. Returns how
    many parts became acknowledged now (already acknowledged ones do not count)."""
    acked = 0
    for part in parts:
        if not part.committed:
            continue
        try:
            page = outbox.page(batch_id, part.page_id)
        except KeyError:
            continue
        held = page.parts.get(part.part)
        if held is None or held.acked:
            continue
        if outbox.mark_acked(batch_id, part.page_id, part.part, part.sha256):
            acked += 1
        else:
            log.error(
                "receipt for batch %s page %s part %s names sha256 %s, we hold %s: ignored",
                batch_id,
                part.page_id,
                part.part,
                part.sha256[:12],
                held.sha256[:12],
            )
    return acked


def apply_receipt(outbox: ob.Outbox, receipt: Receipt) -> int:
    return apply_committed(outbox, receipt.batch_id, receipt.committed)


def apply_state(outbox: ob.Outbox, state: BatchState) -> int:
    """A query answer lists committed parts too; they count exactly like a receipt."""
    return apply_committed(outbox, state.batch_id, state.parts)


def finish_batches(
    outbox: ob.Outbox, batches: Iterable[ob.BatchRecord], *, capture_with_page: bool = False
) -> list[FinishedBatch]:
    """Mark done every batch whose every travelling part is receipted; release its files
    (the captures too with `capture_with_page`: keep_captures = "until_page_receipted")."""
    done: list[FinishedBatch] = []
    for batch in batches:
        pages = outbox.pages(batch.batch_id)
        if all(p.parts and all(part.acked for part in p.parts.values()) for p in pages):
            freed = outbox.release_acked_files(batch.batch_id, capture_with_page=capture_with_page)
            outbox.update_batch(batch.batch_id, state=ob.DONE, last_error=None)
            done.append(FinishedBatch(batch.batch_id, len(pages), freed))
            log.info(
                "batch %s acknowledged by the archive (%d pages, %d bytes freed)",
                batch.batch_id,
                len(pages),
                freed,
            )
    return done


def quarantine(outbox: ob.Outbox, batch_id: str, reason: str) -> None:
    log.error("batch %s quarantined: %s", batch_id, reason)
    outbox.update_batch(batch_id, state=ob.QUARANTINED, last_error=reason)


def apply_reject(outbox: ob.Outbox, reject: Reject) -> str:
    """Log a refusal; a conflict (the server holds other bytes under one of our keys)
    quarantines the batch: a human must look. Returns ``"reason: detail"``."""
    text = f"{reject.reason}: {reject.detail}"
    log.error("server rejected a message (batch %s): %s", reject.batch_id, text)
    if reject.batch_id and reject.reason == "conflict":
        try:
            outbox.batch(reject.batch_id)
        except KeyError:
            return text
        quarantine(outbox, reject.batch_id, text)
    return text
