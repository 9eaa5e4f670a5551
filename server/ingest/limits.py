"""What a scan station may send (issue 13): the media type of each part, its size by kind,
pages per batch, bytes per day. The ingest asks here when a manifest arrives, before it
records anything; a refusal becomes a ``Reject`` whose reason and detail the station logs
(agent.transfer.apply_reject).

Why: the archive serves stored parts back to staff, so a station must not be able to store
a part as ``text/html`` (stored script in the archive's origin), a 512 MiB "text" (indexed in
memory), or fill the disk in a day. Types per part:

- ``archival``: ``application/pdf`` (the PDF/A the pipeline writes, agent.archival);
- ``thumb``: ``image/jpeg`` or ``image/webp``;
- ``capture``: what the scanner and the importer produce (agent.importer sniffs PNG, JPEG,
  TIFF; a PDF import is rasterised to PNG);
- ``text``: ``text/plain; charset=utf-8``;
- ``words``: ``application/json`` (reserved by the protocol for word boxes).

It must not write to the catalogue or the store, nor know about MQTT.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from protocol.messages import Manifest, PartRef
from server.config import ServerSettings
from server.store.db import Connection

PART_TYPES: Mapping[str, tuple[str, ...]] = {
    "archival": ("application/pdf",),
    "thumb": ("image/jpeg", "image/webp"),
    "capture": ("image/png", "image/jpeg", "image/tiff"),
    "text": ("text/plain; charset=utf-8",),
    "words": ("application/json",),
}
DAY = 24 * 3600.0


def normal_type(media_type: str) -> str:
    """``Text/Plain;charset=UTF-8`` → ``text/plain; charset=utf-8`` (one spelling to compare)."""
    kind, _, params = media_type.partition(";")
    out = kind.strip().lower()
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip():
            bare = value.strip().strip('"').lower()
            out += f"; {key.strip().lower()}={bare}"
    return out


@dataclass(frozen=True)
class Refusal:
    reason: str  # a protocol Reject reason
    detail: str


@dataclass(frozen=True)
class StationLimits:
    part_bytes: Mapping[str, int]
    pages_per_batch: int
    bytes_per_day: int

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> StationLimits:
        cap = settings.max_part_bytes
        return cls(
            part_bytes={
                "archival": min(cap, settings.max_archival_bytes),
                "thumb": min(cap, settings.max_thumb_bytes),
                "capture": min(cap, settings.max_capture_bytes),
                "text": min(cap, settings.max_text_bytes),
                "words": min(cap, settings.max_text_bytes * 8),
            },
            pages_per_batch=settings.max_pages_per_batch,
            bytes_per_day=settings.max_bytes_per_day,
        )


def check_part(part: PartRef, limits: StationLimits) -> Refusal | None:
    allowed = PART_TYPES.get(part.name, ())
    if normal_type(part.media_type) not in allowed:
        return Refusal(
            "refused",
            f"part {part.name} of type {part.media_type!r}: this archive takes "
            f"{' or '.join(allowed)}",
        )
    largest = limits.part_bytes.get(part.name, 0)
    if part.size > largest:
        return Refusal("too_large", f"part {part.name} of {part.size} bytes (at most {largest})")
    return None


def check_manifest(msg: Manifest, limits: StationLimits) -> Refusal | None:
    """Types, sizes and page count of a manifest (no database needed)."""
    if msg.page_count > limits.pages_per_batch or len(msg.pages) > limits.pages_per_batch:
        return Refusal(
            "refused",
            f"a batch of {max(msg.page_count, len(msg.pages))} pages "
            f"(at most {limits.pages_per_batch}); split it",
        )
    for page in msg.pages:
        for part in page.parts:
            refusal = check_part(part, limits)
            if refusal is not None:
                return Refusal(refusal.reason, f"page {page.page_no}: {refusal.detail}")
    return None


def bytes_today(con: Connection, device: str, now: float | None = None) -> int:
    """Bytes of parts the station announced in the last 24 hours (by its batches' arrival)."""
    since = (now or time.time()) - DAY
    row = con.execute(
        "SELECT COALESCE(SUM(t.size), 0) FROM parts t JOIN pages p ON p.id = t.page_pk"
        " JOIN batches b ON b.id = p.batch_pk WHERE p.device_id = ? AND b.received_at > ?",
        (device, since),
    ).fetchone()
    return int(row[0])


def check_daily(
    con: Connection, device: str, new_parts: Iterable[PartRef], limits: StationLimits
) -> Refusal | None:
    """Whether parts not yet recorded fit in the station's day."""
    adding = sum(p.size for p in new_parts)
    if not adding:
        return None
    used = bytes_today(con, device)
    if used + adding > limits.bytes_per_day:
        return Refusal(
            "refused",
            f"{used + adding} bytes in 24 hours (at most {limits.bytes_per_day}); "
            "the rest is taken tomorrow",
        )
    return None
