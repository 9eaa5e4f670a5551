"""Message models of the protocol (pydantic, no I/O).

Every message is one :mod:`protocol.envelope` frame: a header (this model: JSON, or for a
chunk a compact binary form of it) and, for chunks only, raw bytes after it. Ids that must
survive restarts (``batch_id``, ``page_id``) are made and persisted at capture time; MQTT
message ids are never used as keys.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
ID_RE = re.compile(r"^[0-9a-f]{32}$")  # uuid4().hex

PartName = Literal["archival", "text", "thumb", "capture", "words"]
# What travels first: the text of a batch (and its thumbnails) before its images, so that
# staff can search a batch while its images still trickle over 2G.
PART_PRIORITY: dict[str, int] = {"text": 0, "words": 1, "thumb": 2, "archival": 3, "capture": 4}
# A part's code in the binary chunk header (protocol/envelope.py); 0 is never a part. Codes
# are wire format: never renumber, only add.
PART_CODES: dict[str, int] = {"text": 1, "words": 2, "thumb": 3, "archival": 4, "capture": 5}

Sha256 = Annotated[str, Field(pattern=SHA256_RE.pattern, description="lower-case hex sha256")]
Id32 = Annotated[str, Field(pattern=ID_RE.pattern, description="uuid4 as 32 lower-case hex")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PartRef(_Model):
    """One file of a page. It travels as chunks: byte ranges of any size up to the limit, so
    that the agent can change the chunk size with the link without re-announcing the part."""

    name: PartName
    sha256: Sha256
    size: int = Field(ge=0, le=1 << 31)
    media_type: str = Field(max_length=100)


class PageEntry(_Model):
    page_id: Id32
    page_no: int = Field(ge=1, le=100_000)
    capture_sha256: Sha256 = Field(description="sha256 of the raw capture, made on the device")
    capture_size: int = Field(ge=0)
    dpi: int = Field(ge=0, le=4800)
    width_px: int = Field(ge=0)
    height_px: int = Field(ge=0)
    colour: bool
    flags: tuple[str, ...] = ()
    ocr_confidence: float | None = None
    decisions: dict[str, Any] = Field(default_factory=dict)
    source_name: str | None = Field(default=None, max_length=255)
    parts: tuple[PartRef, ...]

    @field_validator("parts")
    @classmethod
    def _unique_parts(cls, parts: tuple[PartRef, ...]) -> tuple[PartRef, ...]:
        names = [p.name for p in parts]
        if len(set(names)) != len(names):
            raise ValueError("a page lists the same part twice")
        return parts


class Envelope(_Model):
    """Fields every message carries. MQTT 5 properties (correlation data, response topic) are
    mirrored here so that a v3.1.1 bridge loses nothing."""

    kind: str
    device_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    msg_id: Id32
    sent_at: float = Field(description="device clock, informative only (a Pi has no RTC)")
    correlation_id: Id32 | None = None


class Manifest(Envelope):
    """A batch and (some of) its pages. A large batch is described by several manifest
    messages, each a slice of ``pages``; the server upserts pages by their ``page_id``."""

    kind: Literal["manifest"] = "manifest"
    batch_id: Id32
    created_at: float
    page_count: int = Field(ge=0, le=100_000)
    source: Literal["scan", "import", "bundle"] = "scan"
    scanner: str | None = Field(default=None, max_length=200)
    profile: str | None = Field(default=None, max_length=100)
    agent_version: str = Field(max_length=40)
    metadata: dict[str, str] = Field(default_factory=dict)
    # The phông lưu trữ the batch was scanned for, as the technician chose it (screen, cover
    # sheet, long press). Optional: an agent that predates it sends none and the archive
    # files the batch under the station's default fonds; the archive refuses a fonds the
    # station is not assigned. Left out of the signed bytes when absent (exclude_none).
    fonds: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
    pages: tuple[PageEntry, ...]
    # By the station's own Ed25519 key (registered at enrolment): the archive accepts a
    # manifest of an enrolled station only with it (server/fleet.py, protocol/signing.py).
    signature: str | None = Field(default=None, description="Ed25519, see protocol/signing.py")


class ChunkHeader(Envelope):
    """A byte range of a part. On the wire (version 2) it is the binary
    ``protocol.envelope.CHUNK_HEADER``, not JSON; this model is what both forms decode to."""

    kind: Literal["chunk"] = "chunk"
    batch_id: Id32
    page_id: Id32
    part: PartName
    offset: int = Field(ge=0)
    length: int = Field(ge=0, le=1 << 20, description="must equal the body's length")
    part_size: int = Field(ge=0)
    part_sha256: Sha256
    chunk_sha256: Sha256


class Query(Envelope):
    """ "What do you hold of these batches?" The answer is a :class:`BatchState` per batch."""

    kind: Literal["query"] = "query"
    batch_ids: tuple[Id32, ...] = Field(max_length=200)


class PartState(_Model):
    page_id: Id32
    part: PartName
    sha256: Sha256
    committed: bool
    # Byte ranges [start, end) the server does not hold yet (empty when committed).
    missing: tuple[tuple[int, int], ...] = ()


class BatchState(Envelope):
    kind: Literal["state"] = "state"
    batch_id: Id32
    known: bool = Field(description="false: the server has no manifest for this batch")
    pages_known: int = 0
    page_count: int = 0
    parts: tuple[PartState, ...] = ()
    complete: bool = False
    signature: str | None = Field(default=None, description="Ed25519, see protocol/signing.py")


class Receipt(Envelope):
    """Parts the server has verified (sha256 recomputed), fsynced and committed. Only the
    server can write ``down/{device}/receipt`` (broker ACL); the agent also checks that each
    sha256 equals the one it holds before it deletes anything."""

    kind: Literal["receipt"] = "receipt"
    batch_id: Id32
    committed: tuple[PartState, ...]
    complete: bool = False
    signature: str | None = Field(default=None, description="Ed25519, see protocol/signing.py")


class Reject(Envelope):
    kind: Literal["reject"] = "reject"
    ref_msg_id: Id32 | None = None
    batch_id: Id32 | None = None
    reason: Literal[
        "corrupt",
        "too_large",
        "unknown_batch",
        "unknown_part",
        "wrong_device",
        "conflict",
        "bad_message",
        "refused",
        "retry_later",
    ]
    detail: str = Field(default="", max_length=1000)
    # With ``retry_later`` (the archive cannot store now: a full disk, an fsync error): how
    # long the device waits before sending to the archive again. Nothing was committed.
    retry_after: float = Field(default=0.0, ge=0.0, le=86400.0)
    # A reject can quarantine a batch: signed like a receipt (protocol/signing.py).
    signature: str | None = Field(default=None, description="Ed25519, see protocol/signing.py")


class Status(Envelope):
    """Retained on ``status/{device}``; the broker publishes the ``offline`` form as the last
    will when the agent vanishes."""

    kind: Literal["status"] = "status"
    state: Literal["online", "offline"]
    agent_version: str = ""
    boot_id: str = ""


class Telemetry(Envelope):
    kind: Literal["telemetry"] = "telemetry"
    queue_pages: int = 0
    queue_bytes: int = 0
    batches_pending: int = 0
    batches_quarantined: int = 0
    disk_free_bytes: int = 0
    last_error: str = Field(default="", max_length=500)
    agent_state: str = ""


class Command(Envelope):
    """Server → agent instructions: a re-scan request, a ping, or ``archive_key``: the
    archive's next receipt key, announced in ``note`` (protocol/keyrotation.py; signed on
    its own, so the command itself needs no signature)."""

    kind: Literal["command"] = "command"
    command: Literal["rescan", "ping", "archive_key"]
    batch_id: Id32 | None = None
    page_id: Id32 | None = None
    note: str = Field(default="", max_length=2000)


FONDS_CODE_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_ASSIGNED_FONDS = 50  # as many as the API takes


class AssignedFonds(_Model):
    """One fonds a station may scan for: its code (what a batch carries) and, for the
    screen, its name."""

    code: str = Field(pattern=FONDS_CODE_RE.pattern)
    name: str = Field(default="", max_length=300)


class FondsAssignment(Envelope):
    """Server → agent: the fonds the station's admin assigned (``sohoa-server fonds assign``,
    ``PUT /api/v1/stations/{id}/fonds``), the first its default; empty: none. Retained on
    ``down/{device}/fonds`` so that a station offline at the time hears it at its next
    subscription. Signed with the archive's receipt key like a receipt (protocol/signing.py):
    a station uses it only when the signature verifies against a key it trusts, and only
    when ``assigned_at`` is not older than the assignment it holds (no replay of an old
    one)."""

    kind: Literal["fonds"] = "fonds"
    assigned_at: float = Field(description="archive clock when this was sent (newest wins)")
    fonds: tuple[AssignedFonds, ...] = Field(default=(), max_length=MAX_ASSIGNED_FONDS)
    signature: str | None = Field(default=None, description="Ed25519, see protocol/signing.py")

    @field_validator("fonds")
    @classmethod
    def _unique_codes(cls, fonds: tuple[AssignedFonds, ...]) -> tuple[AssignedFonds, ...]:
        codes = [f.code for f in fonds]
        if len(set(codes)) != len(codes):
            raise ValueError("an assignment lists the same fonds twice")
        return fonds

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(f.code for f in self.fonds)


Message = (
    Manifest
    | ChunkHeader
    | Query
    | BatchState
    | Receipt
    | Reject
    | Status
    | Telemetry
    | Command
    | FondsAssignment
)
MESSAGE_TYPES: dict[str, type[Envelope]] = {
    "manifest": Manifest,
    "chunk": ChunkHeader,
    "query": Query,
    "state": BatchState,
    "receipt": Receipt,
    "reject": Reject,
    "status": Status,
    "telemetry": Telemetry,
    "command": Command,
    "fonds": FondsAssignment,
}
