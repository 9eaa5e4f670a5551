"""The byte framing of every MQTT payload (protocol version 2; version 1 is still read).

::

    b"SOH" | version:u8 | flags:u8 | header_len:u32 BE | header | body

``header`` is either the JSON of a :mod:`protocol.messages` model (zstd-compressed when flag
bit 0 is set and the JSON is long enough to gain) or, for a chunk (flag bit 1, version 2),
the compact binary layout :data:`CHUNK_HEADER` below; ``body`` is raw bytes (chunks only:
no base64). Limits are checked before anything is decompressed or parsed. Both header forms
decode to the same :class:`~protocol.messages.ChunkHeader` model, so the server reads
version 1 and version 2 chunks through one code path.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from protocol import compression
from protocol.messages import MESSAGE_TYPES, PART_CODES, ChunkHeader, Envelope
from protocol.version import DECODABLE_VERSIONS, PROTOCOL_VERSION

MAGIC = b"SOH"
_FIXED = struct.Struct(">3sBBI")
FLAG_HEADER_ZSTD = 0x01
FLAG_HEADER_BINARY = 0x02  # version 2: the header is CHUNK_HEADER, not JSON
_KNOWN_FLAGS = FLAG_HEADER_ZSTD | FLAG_HEADER_BINARY
COMPRESS_HEADER_ABOVE = 512  # bytes of JSON; below that zstd gains nothing worth the CPU
MAX_HEADER_WIRE = 256 * 1024
MAX_HEADER_JSON = 4 * 1024 * 1024
# A payload is never larger than a chunk plus its header; brokers we support accept 256 KiB.
MAX_PAYLOAD = 1024 * 1024 + MAX_HEADER_WIRE

# The binary chunk header (version 2), big-endian, then ``device_len`` bytes of the device
# id (ASCII) and a CRC-32 of everything before it in the header:
#
#   kind u8 (=1: chunk) | msg_id 16 | sent_at f64 | batch_id 16 | page_id 16 | part u8 |
#   offset u64 | length u32 | part_size u64 | part_sha256 32 | chunk_sha256 32 |
#   device_len u8 | device_id | crc32 u32
#
# 147 bytes plus the device id, against ~440 bytes of JSON in version 1 (five ids and
# digests as hex, field names). Nothing is dropped: the server gets the same model, so it
# still checks the device against the topic, the part's size and sha256 against the
# manifest (a chunk of another version of a part is a conflict) and the body's sha256.
# The CRC-32 guards the header itself: a flipped bit in a binary field would otherwise
# decode to a valid but wrong value (in JSON it usually breaks the syntax or a pattern).
CHUNK_HEADER = struct.Struct(">B16sd16s16sBQIQ32s32sB")
_CRC = struct.Struct(">I")
BINARY_KIND_CHUNK = 1
_PART_NAMES = {code: name for name, code in PART_CODES.items()}


class EnvelopeError(ValueError):
    """A payload this protocol version cannot accept. ``reason`` is a Reject reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Frame:
    message: Envelope
    body: bytes


def encode(message: Envelope, body: bytes = b"") -> bytes:
    """A version 2 frame: a chunk gets the binary header, every other message JSON."""
    if isinstance(message, ChunkHeader) and message.correlation_id is None:
        header = chunk_header_bytes(message)
        flags = FLAG_HEADER_BINARY
    else:
        header = message.model_dump_json(exclude_none=True).encode()
        flags = 0
        if len(header) > COMPRESS_HEADER_ABOVE:
            header = compression.compress(header)
            flags |= FLAG_HEADER_ZSTD
    if len(header) > MAX_HEADER_WIRE:
        raise EnvelopeError("too_large", f"header of {len(header)} bytes")
    return _FIXED.pack(MAGIC, PROTOCOL_VERSION, flags, len(header)) + header + body


def chunk_frame_overhead(device_id: str) -> int:
    """Bytes a version 2 chunk frame adds to its body (fixed frame + binary header)."""
    return _FIXED.size + CHUNK_HEADER.size + len(device_id.encode("ascii")) + _CRC.size


def chunk_header_bytes(msg: ChunkHeader) -> bytes:
    """The binary header of a chunk (see :data:`CHUNK_HEADER`)."""
    device = msg.device_id.encode("ascii")
    fixed = CHUNK_HEADER.pack(
        BINARY_KIND_CHUNK,
        bytes.fromhex(msg.msg_id),
        msg.sent_at,
        bytes.fromhex(msg.batch_id),
        bytes.fromhex(msg.page_id),
        PART_CODES[msg.part],
        msg.offset,
        msg.length,
        msg.part_size,
        bytes.fromhex(msg.part_sha256),
        bytes.fromhex(msg.chunk_sha256),
        len(device),
    )
    head = fixed + device
    return head + _CRC.pack(zlib.crc32(head))


def decode(payload: bytes, max_payload: int = MAX_PAYLOAD) -> Frame:
    if len(payload) > max_payload:
        raise EnvelopeError("too_large", f"payload of {len(payload)} bytes > {max_payload}")
    if len(payload) < _FIXED.size:
        raise EnvelopeError("bad_message", "payload shorter than the frame header")
    magic, version, flags, header_len = _FIXED.unpack_from(payload)
    if magic != MAGIC:
        raise EnvelopeError("bad_message", "not a sohoa frame")
    if version not in DECODABLE_VERSIONS:
        raise EnvelopeError(
            "bad_message", f"protocol version {version}, expected one of {DECODABLE_VERSIONS}"
        )
    if flags & ~_KNOWN_FLAGS or (
        flags & FLAG_HEADER_BINARY and (version < 2 or flags & FLAG_HEADER_ZSTD)
    ):
        raise EnvelopeError("bad_message", f"frame flags {flags:#04x} in version {version}")
    if header_len > MAX_HEADER_WIRE or _FIXED.size + header_len > len(payload):
        raise EnvelopeError("bad_message", f"header length {header_len} out of bounds")
    header = payload[_FIXED.size : _FIXED.size + header_len]
    body = payload[_FIXED.size + header_len :]
    if flags & FLAG_HEADER_BINARY:
        return Frame(_validate(ChunkHeader, _binary_chunk_fields(header)), body)
    if flags & FLAG_HEADER_ZSTD:
        try:
            header = compression.decompress(header, MAX_HEADER_JSON)
        except compression.DecompressionError as exc:
            raise EnvelopeError("corrupt", str(exc)) from exc
    try:
        obj = json.loads(header)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EnvelopeError("bad_message", f"header is not JSON: {exc}") from exc
    kind = obj.get("kind") if isinstance(obj, dict) else None
    model = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise EnvelopeError("bad_message", f"unknown message kind {kind!r}")
    message = _validate(model, obj)
    if body and kind != "chunk":
        raise EnvelopeError("bad_message", f"a {kind} message carries no body")
    return Frame(message, body)


def _binary_chunk_fields(header: bytes) -> dict[str, Any]:
    """The fields of a binary chunk header, checked for size and CRC; the model checks the
    rest (device id syntax, length bound)."""
    fixed = CHUNK_HEADER.size
    if len(header) < fixed + _CRC.size:
        raise EnvelopeError("bad_message", f"binary chunk header of {len(header)} bytes")
    (
        kind,
        msg_id,
        sent_at,
        batch_id,
        page_id,
        part,
        offset,
        length,
        part_size,
        part_sha256,
        chunk_sha256,
        device_len,
    ) = CHUNK_HEADER.unpack_from(header)
    if len(header) != fixed + device_len + _CRC.size:
        raise EnvelopeError(
            "bad_message", f"binary chunk header of {len(header)} bytes, device id {device_len}"
        )
    (crc,) = _CRC.unpack_from(header, fixed + device_len)
    if zlib.crc32(header[: fixed + device_len]) != crc:
        raise EnvelopeError("corrupt", "binary chunk header fails its CRC-32")
    if not math.isfinite(sent_at):
        raise EnvelopeError("bad_message", "sent_at is not a finite number")
    if kind != BINARY_KIND_CHUNK:
        raise EnvelopeError("bad_message", f"unknown binary header kind {kind}")
    if part not in _PART_NAMES:
        raise EnvelopeError("bad_message", f"unknown part code {part}")
    try:
        device_id = header[fixed : fixed + device_len].decode("ascii")
    except UnicodeDecodeError as exc:
        raise EnvelopeError("bad_message", "device id is not ASCII") from exc
    return {
        "kind": "chunk",
        "device_id": device_id,
        "msg_id": msg_id.hex(),
        "sent_at": sent_at,
        "batch_id": batch_id.hex(),
        "page_id": page_id.hex(),
        "part": _PART_NAMES[part],
        "offset": offset,
        "length": length,
        "part_size": part_size,
        "part_sha256": part_sha256.hex(),
        "chunk_sha256": chunk_sha256.hex(),
    }


def _validate(model: type[Envelope], obj: object) -> Envelope:
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise EnvelopeError("bad_message", _short(exc)) from exc


def _short(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(x) for x in first.get("loc", ()))
    return f"{exc.error_count()} invalid field(s), first {loc}: {first.get('msg')}"
