"""The byte framing of every MQTT payload in protocol v1.

::

    b"SOH" | version:u8 | flags:u8 | header_len:u32 BE | header | body

``header`` is the JSON of a :mod:`protocol.messages` model (zstd-compressed when flag bit 0
is set and the JSON is long enough to gain); ``body`` is raw bytes (chunks only: no base64).
Limits are checked before anything is decompressed or parsed.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from pydantic import ValidationError

from protocol import compression
from protocol.messages import MESSAGE_TYPES, Envelope
from protocol.version import PROTOCOL_VERSION

MAGIC = b"SOH"
_FIXED = struct.Struct(">3sBBI")
FLAG_HEADER_ZSTD = 0x01
COMPRESS_HEADER_ABOVE = 512  # bytes of JSON; below that zstd gains nothing worth the CPU
MAX_HEADER_WIRE = 256 * 1024
MAX_HEADER_JSON = 4 * 1024 * 1024
# A payload is never larger than a chunk plus its header; brokers we support accept 256 KiB.
MAX_PAYLOAD = 1024 * 1024 + MAX_HEADER_WIRE


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
    header = message.model_dump_json(exclude_none=True).encode()
    flags = 0
    if len(header) > COMPRESS_HEADER_ABOVE:
        header = compression.compress(header)
        flags |= FLAG_HEADER_ZSTD
    if len(header) > MAX_HEADER_WIRE:
        raise EnvelopeError("too_large", f"header of {len(header)} bytes")
    return _FIXED.pack(MAGIC, PROTOCOL_VERSION, flags, len(header)) + header + body


def decode(payload: bytes, max_payload: int = MAX_PAYLOAD) -> Frame:
    if len(payload) > max_payload:
        raise EnvelopeError("too_large", f"payload of {len(payload)} bytes > {max_payload}")
    if len(payload) < _FIXED.size:
        raise EnvelopeError("bad_message", "payload shorter than the frame header")
    magic, version, flags, header_len = _FIXED.unpack_from(payload)
    if magic != MAGIC:
        raise EnvelopeError("bad_message", "not a sohoa frame")
    if version != PROTOCOL_VERSION:
        raise EnvelopeError(
            "bad_message", f"protocol version {version}, expected {PROTOCOL_VERSION}"
        )
    if header_len > MAX_HEADER_WIRE or _FIXED.size + header_len > len(payload):
        raise EnvelopeError("bad_message", f"header length {header_len} out of bounds")
    header = payload[_FIXED.size : _FIXED.size + header_len]
    body = payload[_FIXED.size + header_len :]
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
    try:
        message = model.model_validate(obj)
    except ValidationError as exc:
        raise EnvelopeError("bad_message", _short(exc)) from exc
    if body and kind != "chunk":
        raise EnvelopeError("bad_message", f"a {kind} message carries no body")
    return Frame(message, body)


def _short(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(x) for x in first.get("loc", ()))
    return f"{exc.error_count()} invalid field(s), first {loc}: {first.get('msg')}"
