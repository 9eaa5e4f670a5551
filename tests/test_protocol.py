"""protocol/: topics, envelope framing, bounded zstd and byte-range chunking. Pure, fast."""

from __future__ import annotations

import io
import json
import random
import resource
import struct
import time
import uuid
import zlib

import pytest
import zstandard
from paho.mqtt.client import topic_matches_sub

from protocol import chunking, compression, envelope, topics
from protocol.messages import (
    MESSAGE_TYPES,
    PART_CODES,
    AssignedFonds,
    BatchState,
    ChunkHeader,
    Command,
    Envelope,
    FondsAssignment,
    Manifest,
    PageEntry,
    PartRef,
    PartState,
    Query,
    Receipt,
    Reject,
    Status,
    Telemetry,
)

DEVICE = "xa-tan-lap-01"

# 300 MiB of zeros, streamed through the compressor so that this process never holds them:
# the frame declares its content size (314,572,800) and is ~10 KB (docs/research/reliability.md
# §8.2).
BOMB_SIZE = 300 * 1024 * 1024
_bomb_buf = io.BytesIO()
with zstandard.ZstdCompressor(level=3).stream_writer(
    _bomb_buf, size=BOMB_SIZE, closefd=False
) as _writer:
    _zeros = bytes(1024 * 1024)
    for _ in range(BOMB_SIZE // len(_zeros)):
        _writer.write(_zeros)
BOMB = _bomb_buf.getvalue()
del _bomb_buf, _writer, _zeros


def uid() -> str:
    return uuid.uuid4().hex


def sha(data: bytes) -> str:
    return chunking.sha256_hex(data)


def base() -> dict[str, object]:
    return {"device_id": DEVICE, "msg_id": uid(), "sent_at": 1764060000.125}


def frame(
    header: bytes,
    *,
    body: bytes = b"",
    magic: bytes = b"SOH",
    version: int = 1,
    flags: int = 0,
    header_len: int | None = None,
) -> bytes:
    length = len(header) if header_len is None else header_len
    return struct.pack(">3sBBI", magic, version, flags, length) + header + body


def page_entry(page_no: int = 1, **overrides: object) -> PageEntry:
    fields: dict[str, object] = {
        "page_id": uid(),
        "page_no": page_no,
        "capture_sha256": sha(b"capture %d" % page_no),
        "capture_size": 26_000_000,
        "dpi": 300,
        "width_px": 2480,
        "height_px": 3508,
        "colour": True,
        "flags": ("blank_suspect",),
        "ocr_confidence": 87.5,
        "decisions": {"deskew_deg": -0.4, "crop": None, "rotate": {"angle": 0, "conf": 0.9}},
        "source_name": "Sổ hộ tịch 1998.pdf",
        "parts": (
            PartRef(name="text", sha256=sha(b"t"), size=1, media_type="text/plain; charset=utf-8"),
            PartRef(name="archival", sha256=sha(b"a"), size=171002, media_type="image/jpeg"),
        ),
    }
    fields.update(overrides)
    return PageEntry(**fields)  # type: ignore[arg-type]


def sample_messages() -> dict[str, Envelope]:
    """One message of every kind, with optional fields filled in."""
    batch_id, page_id = uid(), uid()
    part_state = PartState(
        page_id=page_id,
        part="archival",
        sha256=sha(b"a"),
        committed=False,
        missing=((0, 32768), (65536, 171002)),
    )
    return {
        "manifest": Manifest(
            **base(),
            batch_id=batch_id,
            created_at=1764050000.5,
            page_count=1,
            scanner="fujitsu:fi-7160",
            profile="fujitsu-fi-7160",
            agent_version="0.1.0",
            metadata={"ma_ho_so": "000.00.00.H01.2024.01"},
            pages=(page_entry(),),
        ),
        "chunk": ChunkHeader(
            **base(),
            batch_id=batch_id,
            page_id=page_id,
            part="archival",
            offset=98304,
            length=4,
            part_size=171002,
            part_sha256=sha(b"a"),
            chunk_sha256=sha(b"\x00\x01\xfe\xff"),
        ),
        "query": Query(**base(), batch_ids=(batch_id, uid())),
        "state": BatchState(
            **base(),
            correlation_id=uid(),
            batch_id=batch_id,
            known=True,
            pages_known=1,
            page_count=2,
            parts=(part_state,),
            complete=False,
        ),
        "receipt": Receipt(
            **base(),
            correlation_id=uid(),
            batch_id=batch_id,
            complete=True,
            committed=(PartState(page_id=page_id, part="text", sha256=sha(b"t"), committed=True),),
        ),
        "reject": Reject(
            **base(), ref_msg_id=uid(), batch_id=batch_id, reason="corrupt", detail="sha256"
        ),
        "status": Status(**base(), state="online", agent_version="0.1.0", boot_id=uid()),
        "telemetry": Telemetry(
            **base(),
            queue_pages=12,
            queue_bytes=3_000_000,
            batches_pending=2,
            disk_free_bytes=10**10,
            last_error="scanner jam",
            agent_state="idle",
        ),
        "command": Command(**base(), command="rescan", batch_id=batch_id, page_id=page_id),
        "fonds": FondsAssignment(
            **base(),
            assigned_at=1.0,
            fonds=(AssignedFonds(code="BK-PN.XL_1", name="UBND xã Xuân La"),),
            signature="ab" * 64,
        ),
    }


# -- topics -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", topics.UP_KINDS)
def test_up_topic_round_trip(kind: str) -> None:
    topic = topics.up(DEVICE, kind)  # type: ignore[arg-type]
    assert topic == f"sohoa/v1/up/{DEVICE}/{kind}"
    assert topics.parse(topic) == topics.ParsedTopic("up", DEVICE, kind)


@pytest.mark.parametrize("kind", topics.DOWN_KINDS)
def test_down_topic_round_trip(kind: str) -> None:
    topic = topics.down(DEVICE, kind)  # type: ignore[arg-type]
    assert topic == f"sohoa/v1/down/{DEVICE}/{kind}"
    assert topics.parse(topic) == topics.ParsedTopic("down", DEVICE, kind)


def test_status_device_names_the_device_of_a_status_topic_only() -> None:
    assert topics.status_device(topics.status(DEVICE)) == DEVICE
    assert topics.status_device(topics.up(DEVICE, "manifest")) is None
    assert topics.status_device(topics.down(DEVICE, "command")) is None
    for foreign in ("sohoa/v1/status/", "sohoa/v1/status/a/b", "sohoa/v0/status/x",
                    "other/v1/status/x", "sohoa/v1/status/A+B", "status/x", ""):  # fmt: skip
        assert topics.status_device(foreign) is None, foreign


def test_status_topic_round_trip() -> None:
    assert topics.status(DEVICE) == f"sohoa/v1/status/{DEVICE}"
    assert topics.parse(topics.status(DEVICE)) == topics.ParsedTopic("status", DEVICE, "status")


def test_longest_device_id_is_accepted() -> None:
    device = "a" * 64
    assert topics.parse(topics.up(device, "chunk")).device_id == device
    assert topics.check_device_id("0_-9") == "0_-9"


BAD_DEVICE_IDS = [
    "",
    "a+b",
    "+",
    "a#",
    "#",
    "a/b",
    "a\x00b",
    "Xa-tan-lap",
    "XA",
    "a" * 65,
    "-leading-dash",
    "_leading_underscore",
    "trailing-newline\n",
    "a b",
    "xã-tân-lập",
    "a.b",
    "$share",
]


@pytest.mark.parametrize("device", BAD_DEVICE_IDS)
def test_bad_device_ids_are_refused_everywhere(device: str) -> None:
    with pytest.raises(topics.TopicError):
        topics.check_device_id(device)
    for build in (
        lambda: topics.up(device, "manifest"),
        lambda: topics.down(device, "receipt"),
        lambda: topics.status(device),
        lambda: topics.down_filter(device),
    ):
        with pytest.raises(topics.TopicError):
            build()
    # Parsing a topic that carries it is refused too (a '/' changes the level count).
    for topic in (f"sohoa/v1/up/{device}/chunk", f"sohoa/v1/status/{device}"):
        with pytest.raises(topics.TopicError):
            topics.parse(topic)


@pytest.mark.parametrize(
    "topic",
    [
        "sohoa/v1/up/+/chunk",
        "sohoa/v1/up/#",
        "sohoa/v2/up/dev/chunk",
        "other/v1/up/dev/chunk",
        "sohoa/v1/up/dev/receipt",
        "sohoa/v1/down/dev/manifest",
        "sohoa/v1/up/dev/chunk/extra",
        "sohoa/v1/up/dev",
        "sohoa/v1/status/dev/extra",
        "sohoa/v1/sideways/dev/chunk",
        "$share/sohoa-ingest/sohoa/v1/up/dev/chunk",
        "/sohoa/v1/up/dev/chunk",
        "",
    ],
)
def test_parse_refuses_foreign_topics(topic: str) -> None:
    with pytest.raises(topics.TopicError):
        topics.parse(topic)


def test_shared_subscription_filters_route_every_up_topic_and_nothing_down() -> None:
    shared_up, status_filter = topics.ingest_filters()
    assert shared_up == "$share/sohoa-ingest/sohoa/v1/up/+/+"
    assert status_filter == "sohoa/v1/status/+"
    assert topics.ingest_filters(shared=False) == ["sohoa/v1/up/+/+", "sohoa/v1/status/+"]
    # The broker matches the part after "$share/<group>/" against topics.
    prefix = f"$share/{topics.SHARED_GROUP}/"
    assert shared_up.startswith(prefix)
    up_filter = shared_up.removeprefix(prefix)
    for device in (DEVICE, "b"):
        for kind in topics.UP_KINDS:
            assert topic_matches_sub(up_filter, topics.up(device, kind))
        for kind in topics.DOWN_KINDS:
            assert not topic_matches_sub(up_filter, topics.down(device, kind))
        assert topic_matches_sub(status_filter, topics.status(device))
        assert not topic_matches_sub(up_filter, topics.status(device))


def test_agent_down_filter_sees_only_its_own_down_topics() -> None:
    mine = topics.down_filter(DEVICE)
    for kind in topics.DOWN_KINDS:
        assert topic_matches_sub(mine, topics.down(DEVICE, kind))
        assert not topic_matches_sub(mine, topics.down("other-device", kind))
    for kind in topics.UP_KINDS:
        assert not topic_matches_sub(mine, topics.up(DEVICE, kind))


# -- envelope -----------------------------------------------------------------------------


def test_samples_cover_every_message_kind() -> None:
    samples = sample_messages()
    assert set(samples) == set(MESSAGE_TYPES)
    for kind, msg in samples.items():
        assert type(msg) is MESSAGE_TYPES[kind]
        assert msg.kind == kind


@pytest.mark.parametrize("kind", sorted(MESSAGE_TYPES))
def test_envelope_round_trip(kind: str) -> None:
    msg = sample_messages()[kind]
    body = b"\x00\x01\xfe\xff" if kind == "chunk" else b""
    decoded = envelope.decode(envelope.encode(msg, body))
    assert type(decoded.message) is type(msg)
    assert decoded.message == msg
    assert decoded.body == body


def test_chunk_body_travels_raw() -> None:
    body = bytes(range(256)) * 16  # every byte value, nothing a text encoding would survive
    msg = ChunkHeader(
        **base(),
        batch_id=uid(),
        page_id=uid(),
        part="capture",
        offset=0,
        length=len(body),
        part_size=len(body),
        part_sha256=sha(body),
        chunk_sha256=sha(body),
    )
    payload = envelope.encode(msg, body)
    _, _, flags, header_len = struct.unpack_from(">3sBBI", payload)
    assert flags == envelope.FLAG_HEADER_BINARY  # version 2: a binary chunk header
    # Fixed header + header + the body itself: no base64, no escaping.
    assert len(payload) == 9 + header_len + len(body)
    assert payload.endswith(body)
    decoded = envelope.decode(payload)
    assert decoded.body == body
    assert decoded.message == msg


def _reject_with_json_size(size: int) -> Reject:
    msg = Reject(device_id=DEVICE, msg_id="0" * 32, sent_at=1.5, reason="refused", detail="")
    pad = size - len(msg.model_dump_json(exclude_none=True))
    assert 0 <= pad <= 1000
    return msg.model_copy(update={"detail": "x" * pad})


def test_header_is_plain_json_up_to_512_bytes_and_zstd_above() -> None:
    at_limit = _reject_with_json_size(512)
    payload = envelope.encode(at_limit)
    magic, version, flags, header_len = struct.unpack_from(">3sBBI", payload)
    assert (magic, version, flags, header_len) == (b"SOH", 2, 0, 512)
    assert json.loads(payload[9:])["detail"] == at_limit.detail
    assert envelope.decode(payload).message == at_limit

    above = _reject_with_json_size(513)
    payload = envelope.encode(above)
    _, _, flags, header_len = struct.unpack_from(">3sBBI", payload)
    assert flags & envelope.FLAG_HEADER_ZSTD
    assert payload[9:].startswith(compression.MAGIC)
    assert header_len == len(payload) - 9 < 513
    assert envelope.decode(payload).message == above


def test_large_manifest_header_is_compressed_and_round_trips() -> None:
    pages = tuple(page_entry(n) for n in range(1, 201))
    msg = Manifest(
        **base(),
        batch_id=uid(),
        created_at=1.0,
        page_count=200,
        agent_version="0.1.0",
        pages=pages,
    )
    json_size = len(msg.model_dump_json(exclude_none=True))
    payload = envelope.encode(msg)
    assert payload[4] & envelope.FLAG_HEADER_ZSTD
    assert len(payload) < json_size / 2
    assert envelope.decode(payload).message == msg


def test_encode_refuses_a_header_too_large_for_the_wire() -> None:
    rng = random.Random(7)
    # Incompressible metadata: hex of random bytes compresses only ~2:1.
    metadata = {f"k{i}": rng.randbytes(4000).hex() for i in range(80)}
    msg = Manifest(
        **base(),
        batch_id=uid(),
        created_at=1.0,
        page_count=0,
        agent_version="0.1.0",
        metadata=metadata,
        pages=(),
    )
    with pytest.raises(envelope.EnvelopeError) as exc:
        envelope.encode(msg)
    assert exc.value.reason == "too_large"


def _query_json(**extra: object) -> dict[str, object]:
    obj = json.loads(Query(**base(), batch_ids=(uid(),)).model_dump_json(exclude_none=True))
    obj.update(extra)
    return obj


def _bad(payload: bytes, reason: str = "bad_message") -> envelope.EnvelopeError:
    with pytest.raises(envelope.EnvelopeError) as exc:
        envelope.decode(payload)
    assert exc.value.reason == reason, exc.value
    return exc.value


def test_refuses_wrong_magic() -> None:
    good = envelope.encode(sample_messages()["query"])
    _bad(b"SOX" + good[3:])
    _bad(b"\x28\xb5\x2f\xfd" + good)  # a bare zstd frame is not a sohoa frame


def test_refuses_wrong_version() -> None:
    good = envelope.encode(sample_messages()["query"])
    for version in (0, 3, 255):
        err = _bad(good[:3] + bytes([version]) + good[4:])
        assert "version" in err.detail


@pytest.mark.parametrize("cut", [0, 1, 3, 8])
def test_refuses_truncated_fixed_header(cut: int) -> None:
    good = envelope.encode(sample_messages()["query"])
    _bad(good[:cut])


def test_refuses_header_len_past_the_end() -> None:
    header = json.dumps(_query_json()).encode()
    assert envelope.decode(frame(header)).message.kind == "query"
    _bad(frame(header, header_len=len(header) + 1))
    _bad(frame(header[:-1], header_len=len(header)))  # truncated in transit
    _bad(frame(header, header_len=envelope.MAX_HEADER_WIRE + 1))
    _bad(frame(header, header_len=0xFFFFFFFF))


def test_refuses_oversize_payload_before_parsing_it() -> None:
    msg = sample_messages()["chunk"]
    body = bytes(envelope.MAX_PAYLOAD)
    _bad(envelope.encode(msg, body), reason="too_large")
    # The size check comes first: even garbage of that size is "too_large".
    _bad(b"\xff" * (envelope.MAX_PAYLOAD + 1), reason="too_large")
    # A caller may set a smaller limit (a broker with a small max_packet_size).
    with pytest.raises(envelope.EnvelopeError) as exc:
        envelope.decode(envelope.encode(msg, b"x" * 1000), max_payload=1000)
    assert exc.value.reason == "too_large"


@pytest.mark.parametrize("kind", sorted(set(MESSAGE_TYPES) - {"chunk"}))
def test_refuses_a_body_on_a_non_chunk_message(kind: str) -> None:
    payload = envelope.encode(sample_messages()[kind])
    err = _bad(payload + b"x")
    assert "body" in err.detail


@pytest.mark.parametrize(
    "header",
    [
        b"not json",
        b"\xff\xfe{}",
        b"[]",
        b'"chunk"',
        b"{}",
        json.dumps(_query_json(kind="nope")).encode(),
        json.dumps(_query_json(kind=None)).encode(),
        json.dumps(_query_json(kind=["query"])).encode(),
        json.dumps(_query_json(kind="Query")).encode(),
    ],
)
def test_refuses_unknown_kinds_and_non_objects(header: bytes) -> None:
    _bad(frame(header))


def test_refuses_unknown_fields() -> None:
    err = _bad(frame(json.dumps(_query_json(priority=1)).encode()))
    assert "priority" in err.detail
    # Also inside nested models.
    manifest = json.loads(sample_messages()["manifest"].model_dump_json(exclude_none=True))
    manifest["pages"][0]["parts"][0]["x_extra"] = True
    err = _bad(_zframe(manifest))
    assert "x_extra" in err.detail


def _zframe(obj: object) -> bytes:
    """A frame whose header is compressed the way encode() does it for big headers."""
    return frame(compression.compress(json.dumps(obj).encode()), flags=envelope.FLAG_HEADER_ZSTD)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("msg_id", "A" * 32),  # upper-case hex
        ("msg_id", "9bd02bc4-e33b-4a2e-a690-56321a85fc84"),  # dashed uuid
        ("msg_id", "0" * 31),
        ("msg_id", "0" * 33),
        ("msg_id", "g" * 32),
        ("correlation_id", "../" * 10 + "ab"),
        ("batch_id", "0" * 31 + "\n"),
        ("part_sha256", "A" * 64),
        ("part_sha256", "0" * 63),
        ("chunk_sha256", "0" * 65),
        ("chunk_sha256", "z" * 64),
        ("part", "../../etc/passwd"),
        ("offset", -1),
        ("length", (1 << 20) + 1),
        ("device_id", "d" * 65),
    ],
)
def test_refuses_invalid_ids_and_hashes(field: str, value: object) -> None:
    obj = json.loads(sample_messages()["chunk"].model_dump_json(exclude_none=True))
    obj[field] = value
    err = _bad(frame(json.dumps(obj).encode(), body=b"\x00\x01\xfe\xff"))
    assert field in err.detail


def test_refuses_duplicate_parts_in_a_page() -> None:
    obj = json.loads(sample_messages()["manifest"].model_dump_json(exclude_none=True))
    parts = obj["pages"][0]["parts"]
    parts.append(dict(parts[0]))
    _bad(_zframe(obj))


def test_refuses_a_compressed_header_bomb() -> None:
    _bad(frame(BOMB, flags=envelope.FLAG_HEADER_ZSTD), reason="corrupt")


def test_refuses_a_compressed_header_flag_on_plain_json() -> None:
    header = json.dumps(_query_json()).encode()
    _bad(frame(header, flags=envelope.FLAG_HEADER_ZSTD), reason="corrupt")


def test_refuses_a_compressed_header_with_trailing_data() -> None:
    header = compression.compress(json.dumps(_query_json()).encode())
    assert envelope.decode(frame(header, flags=envelope.FLAG_HEADER_ZSTD)).message.kind == "query"
    _bad(frame(header + b"\x00", flags=envelope.FLAG_HEADER_ZSTD), reason="corrupt")


# -- version 2: the binary chunk header ---------------------------------------------------


def _chunk(**overrides: object) -> ChunkHeader:
    msg = sample_messages()["chunk"]
    return msg.model_copy(update=overrides)


def _binary_header(
    msg: ChunkHeader, *, kind: int = 1, part: int | None = None, device: bytes | None = None,
    sent_at: float | None = None, length: int | None = None, crc: bool = True,
) -> bytes:  # fmt: skip
    """A binary chunk header packed by hand (independently of encode), CRC recomputed."""
    dev = msg.device_id.encode() if device is None else device
    head = (
        envelope.CHUNK_HEADER.pack(
            kind,
            bytes.fromhex(msg.msg_id),
            msg.sent_at if sent_at is None else sent_at,
            bytes.fromhex(msg.batch_id),
            bytes.fromhex(msg.page_id),
            PART_CODES[msg.part] if part is None else part,
            msg.offset,
            msg.length if length is None else length,
            msg.part_size,
            bytes.fromhex(msg.part_sha256),
            bytes.fromhex(msg.chunk_sha256),
            len(dev),
        )
        + dev
    )
    return head + struct.pack(">I", zlib.crc32(head) if crc else 0)


def _v2(header: bytes, body: bytes = b"\x00\x01\xfe\xff") -> bytes:
    return frame(header, body=body, version=2, flags=envelope.FLAG_HEADER_BINARY)


def test_chunk_header_is_binary_and_a_third_of_the_json_one() -> None:
    msg = _chunk(device_id="xa-tan-phu-01")
    body = b"\x00\x01\xfe\xff"
    payload = envelope.encode(msg, body)
    magic, version, flags, header_len = struct.unpack_from(">3sBBI", payload)
    assert (magic, version, flags) == (b"SOH", 2, envelope.FLAG_HEADER_BINARY)
    # 147 fixed bytes + the device id; the whole frame overhead is 169 bytes for this device.
    assert header_len == 147 + len("xa-tan-phu-01") == 160
    assert len(payload) - len(body) == 169
    json_header = len(msg.model_dump_json(exclude_none=True))
    assert json_header >= 420 and len(payload) - len(body) < json_header / 2.5
    assert payload[9 : 9 + header_len] == _binary_header(msg)  # the layout the README documents
    decoded = envelope.decode(payload)
    assert decoded.message == msg and decoded.body == body


@pytest.mark.parametrize("part", sorted(PART_CODES))
def test_binary_chunk_round_trip_at_the_bounds(part: str) -> None:
    for offset, length, part_size, sent_at in [
        (0, 0, 0, 0.0),
        ((1 << 40) + 3, 1 << 20, (1 << 41) + 5, 1764060000.123456),
        (5, 1, 6, -1.5),
    ]:
        msg = _chunk(part=part, offset=offset, length=length, part_size=part_size,
                     sent_at=sent_at, device_id="d" * 64)  # fmt: skip
        decoded = envelope.decode(envelope.encode(msg, b"x" * min(length, 3)))
        assert decoded.message == msg


def test_version_1_json_chunks_still_decode_to_the_same_model() -> None:
    """Bundles written before version 2, and agents not yet upgraded, send JSON chunks."""
    msg = _chunk()
    body = b"\x00\x01\xfe\xff"
    v1 = frame(msg.model_dump_json(exclude_none=True).encode(), body=body, version=1)
    assert envelope.decode(v1) == envelope.decode(envelope.encode(msg, body))
    # A JSON chunk is still valid in version 2 (encode uses it only with a correlation id).
    with_corr = _chunk(correlation_id=uid())
    payload = envelope.encode(with_corr, body)
    assert payload[4] == 0 and envelope.decode(payload).message == with_corr


def test_binary_header_needs_version_2_and_excludes_zstd_and_unknown_flags() -> None:
    msg = _chunk()
    header = _binary_header(msg)
    assert envelope.decode(_v2(header)).message == msg
    _bad(frame(header, body=b"\x00\x01\xfe\xff", version=1, flags=envelope.FLAG_HEADER_BINARY))
    both = envelope.FLAG_HEADER_BINARY | envelope.FLAG_HEADER_ZSTD
    _bad(frame(header, body=b"\x00\x01\xfe\xff", version=2, flags=both))
    for flag in (0x04, 0x80):
        _bad(frame(header, version=2, flags=envelope.FLAG_HEADER_BINARY | flag))
        _bad(frame(json.dumps(_query_json()).encode(), version=2, flags=flag))


def test_malformed_binary_chunk_headers_are_refused() -> None:
    msg = _chunk()
    good = _binary_header(msg)
    for cut in range(len(good)):  # truncated anywhere
        _bad(_v2(good[:cut], body=b""))
    _bad(_v2(good + b"\x00"))  # one byte too many
    _bad(_v2(_binary_header(msg, crc=False)), reason="corrupt")
    err = _bad(_v2(_binary_header(msg, kind=2)))
    assert "kind" in err.detail
    for part in (0, 6, 255):
        assert "part" in _bad(_v2(_binary_header(msg, part=part))).detail
    assert "device_id" in _bad(_v2(_binary_header(msg, device=b"XA/+#"))).detail
    assert "device_id" in _bad(_v2(_binary_header(msg, device=b""))).detail
    assert "ASCII" in _bad(_v2(_binary_header(msg, device="xã".encode()))).detail
    assert "length" in _bad(_v2(_binary_header(msg, length=(1 << 20) + 1))).detail
    for bad_time in (float("nan"), float("inf")):
        assert "sent_at" in _bad(_v2(_binary_header(msg, sent_at=bad_time))).detail
    # The device length byte pointing past the header is a size mismatch, not a read past it.
    forged = bytearray(good)
    forged[envelope.CHUNK_HEADER.size - 1] = 200
    _bad(_v2(bytes(forged)))


def test_every_bit_flip_in_a_binary_chunk_header_is_refused() -> None:
    """A flipped bit must never decode to another chunk (a flipped part_sha256 would look
    like a conflict and quarantine the batch): the CRC-32 catches every one."""
    good = _binary_header(_chunk())
    for pos in range(len(good)):
        for bit in range(8):
            bad = bytearray(good)
            bad[pos] ^= 1 << bit
            with pytest.raises(envelope.EnvelopeError):
                envelope.decode(_v2(bytes(bad)))


# -- compression --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"x",
        "Khai thác khoáng sản trái phép. ".encode() * 300,
        random.Random(3).randbytes(100_000),
    ],
)
def test_compression_round_trip(data: bytes) -> None:
    frame_ = compression.compress(data)
    assert frame_.startswith(compression.MAGIC)
    assert zstandard.frame_content_size(frame_) == len(data)
    assert compression.decompress(frame_, max_size=len(data)) == data


def test_decompress_limit_is_inclusive() -> None:
    data = b"abc" * 1000
    assert compression.decompress(compression.compress(data), max_size=3000) == data
    with pytest.raises(compression.DecompressionError):
        compression.decompress(compression.compress(data), max_size=2999)


def test_bomb_is_refused_by_its_declared_size_without_allocating() -> None:
    assert len(BOMB) < 64 * 1024
    assert zstandard.frame_content_size(BOMB) == BOMB_SIZE
    # ru_maxrss (KiB on Linux) is a high-water mark: had the 300 MiB been allocated and filled,
    # it would have risen by about that much.
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(compression.DecompressionError, match="declares 314572800"):
        compression.decompress(BOMB, max_size=4 * 1024 * 1024)
    assert time.monotonic() - started < 0.5
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 32 * 1024


def test_frame_without_declared_size_is_refused() -> None:
    unknown = zstandard.ZstdCompressor(write_content_size=False).compress(b"x" * 1000)
    assert zstandard.frame_content_size(unknown) == -1
    with pytest.raises(compression.DecompressionError, match="declare"):
        compression.decompress(unknown, max_size=1 << 20)
    # A streamed frame of unknown size (the 1 KB -> 1 GB stream case) likewise.
    buf = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(buf, closefd=False) as writer:
        writer.write(bytes(4 * 1024 * 1024))
    with pytest.raises(compression.DecompressionError):
        compression.decompress(buf.getvalue(), max_size=64 * 1024 * 1024)


def test_frame_without_checksum_is_refused() -> None:
    data = b"x" * 1000
    assert zstandard.get_frame_parameters(compression.compress(data)).has_checksum
    plain = zstandard.ZstdCompressor(write_content_size=True).compress(data)
    assert zstandard.frame_content_size(plain) == len(data)
    with pytest.raises(compression.DecompressionError, match="checksum"):
        compression.decompress(plain, max_size=1 << 20)


def test_trailing_data_is_refused() -> None:
    good = compression.compress(b"hello " * 100)
    for tail in (b"\x00", b"junk", good):  # garbage, or a second frame
        with pytest.raises(compression.DecompressionError):
            compression.decompress(good + tail, max_size=1 << 20)


def test_not_a_frame_is_refused() -> None:
    for data in (b"", b"hello", b"\x28\xb5\x2f", b"\x28\xb5\x2f\xfd"):
        with pytest.raises(compression.DecompressionError):
            compression.decompress(data, max_size=1 << 20)


def test_truncated_frame_is_refused() -> None:
    good = compression.compress("Nghị định 30/2020/NĐ-CP ".encode() * 50)
    for cut in range(4, len(good)):
        with pytest.raises(compression.DecompressionError):
            compression.decompress(good[:cut], max_size=1 << 20)


def test_every_single_bit_flip_is_refused() -> None:
    """A corrupt frame never decodes to different bytes (the header JSON is trusted after)."""
    data = "Khai thác khoáng sản trái phép tại xã Tân Lập. ".encode() * 40
    good = compression.compress(data)
    rng = random.Random(11)
    for pos in range(len(good)):
        bad = bytearray(good)
        bad[pos] ^= 1 << rng.randrange(8)
        with pytest.raises(compression.DecompressionError):
            compression.decompress(bytes(bad), max_size=1 << 20)


# -- chunking -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ranges", "merged"),
    [
        ([], ()),
        ([(0, 4), (4, 6), (8, 9)], ((0, 6), (8, 9))),  # touching joined, gap kept
        ([(8, 9), (0, 4), (4, 6)], ((0, 6), (8, 9))),  # order does not matter
        ([(0, 10), (2, 5)], ((0, 10),)),  # nested
        ([(0, 5), (3, 8), (7, 12)], ((0, 12),)),  # overlapping chain
        ([(5, 5), (7, 7)], ()),  # empty ranges vanish
        ([(0, 3), (3, 3), (3, 6)], ((0, 6),)),
        ([(0, 2), (0, 2), (0, 2)], ((0, 2),)),  # duplicates
        ([(10, 20), (0, 5), (5, 10)], ((0, 20),)),
        ([(0, 1), (2, 3)], ((0, 1), (2, 3))),  # one byte apart is not touching
    ],
)
def test_merge(ranges: list[chunking.Range], merged: tuple[chunking.Range, ...]) -> None:
    assert chunking.merge(ranges) == merged


@pytest.mark.parametrize(
    ("have", "size", "gaps"),
    [
        ([], 10, ((0, 10),)),
        ([], 0, ()),
        ([(0, 10)], 10, ()),
        ([(0, 4), (4, 10)], 10, ()),  # touching chunks cover
        ([(0, 4)], 10, ((4, 10),)),
        ([(6, 10)], 10, ((0, 6),)),
        ([(2, 4), (6, 8)], 10, ((0, 2), (4, 6), (8, 10))),
        ([(0, 5), (3, 7)], 10, ((7, 10),)),  # overlapping chunks (two chunk sizes)
        ([(0, 20)], 10, ()),  # past the end
        ([(12, 20)], 10, ((0, 10),)),  # wholly past the end
        ([(3, 3)], 5, ((0, 5),)),  # an empty chunk covers nothing
    ],
)
def test_missing_and_covered(
    have: list[chunking.Range], size: int, gaps: tuple[chunking.Range, ...]
) -> None:
    assert chunking.missing(have, size) == gaps
    assert chunking.covered(have, size) is (gaps == ())


def test_plan() -> None:
    assert chunking.plan([], 4) == []
    assert chunking.plan([(5, 5)], 4) == []  # an empty range needs no chunk
    assert chunking.plan([(0, 8)], 4) == [(0, 4), (4, 4)]
    assert chunking.plan([(0, 10)], 4) == [(0, 4), (4, 4), (8, 2)]
    assert chunking.plan([(3, 5), (10, 19)], 4) == [(3, 2), (10, 4), (14, 4), (18, 1)]
    assert chunking.plan(chunking.full(3), 32768) == [(0, 3)]
    for bad in (0, -1):
        with pytest.raises(ValueError, match="chunk_size"):
            chunking.plan([(0, 1)], bad)


def test_full() -> None:
    assert chunking.full(0) == ()
    assert chunking.full(171002) == ((0, 171002),)
    assert chunking.missing((), 171002) == chunking.full(171002)


def test_chunk_size_bounds_fit_the_envelope() -> None:
    assert chunking.MIN_CHUNK_SIZE <= chunking.DEFAULT_CHUNK_SIZE <= chunking.MAX_CHUNK_SIZE
    assert ChunkHeader.model_fields["length"].metadata[-1].le >= chunking.MAX_CHUNK_SIZE
    assert chunking.MAX_CHUNK_SIZE + envelope.MAX_HEADER_WIRE <= envelope.MAX_PAYLOAD


def test_plan_of_missing_fills_exactly_the_holes_random() -> None:
    """Property: for random held ranges (any chunk sizes, overlapping, unsorted, past the end),
    plan(missing(have)) and have together cover [0, size) exactly, the planned chunks overlap
    neither each other nor what is held, and none is longer than chunk_size."""
    rng = random.Random(20251125)
    for _ in range(400):
        size = rng.choice([0, 1, rng.randrange(1, 64), rng.randrange(64, 5000)])
        have = []
        for _ in range(rng.randrange(0, 12)):
            start = rng.randrange(0, size + 10)
            have.append((start, start + rng.randrange(0, 300)))
        chunk_size = rng.randrange(1, 700)
        planned = chunking.plan(chunking.missing(have, size), chunk_size)

        held = bytearray(size)
        for start, end in have:
            for i in range(start, min(end, size)):
                held[i] = 1
        sent = bytearray(size)
        for offset, length in planned:
            assert 0 < length <= chunk_size
            assert offset >= 0
            assert offset + length <= size
            for i in range(offset, offset + length):
                assert not held[i], "re-sends a byte the server holds"
                assert not sent[i], "plans a byte twice"
                sent[i] = 1
        assert all(h or s for h, s in zip(held, sent, strict=True))
        assert chunking.covered([*have, *((o, o + n) for o, n in planned)], size)
        assert chunking.covered(have, size) is (planned == [])
