"""What a station may send (server.ingest.limits), as pure checks on manifests: the part types the
audit found unchecked (a capture declared text/html was stored and served as such), sizes by
kind, pages per batch. The ingest's use of them is tested in test_ingest.py."""

from __future__ import annotations

from protocol.messages import Manifest, PageEntry, PartRef
from server.config import ServerSettings
from server.ingest.limits import StationLimits, check_manifest, check_part, normal_type

SHA = "0" * 64
LIMITS = StationLimits.from_settings(ServerSettings())


def part(name: str, media_type: str, size: int = 1000) -> PartRef:
    return PartRef(name=name, sha256=SHA, size=size, media_type=media_type)  # type: ignore[arg-type]


def manifest(parts: tuple[PartRef, ...], pages: int = 1) -> Manifest:
    entries = tuple(
        PageEntry(
            page_id=f"{n:032x}",
            page_no=n,
            capture_sha256=SHA,
            capture_size=1,
            dpi=300,
            width_px=10,
            height_px=10,
            colour=True,
            parts=parts,
        )
        for n in range(1, pages + 1)
    )
    return Manifest(device_id="xa-a", msg_id="1" * 32, sent_at=0.0, batch_id="2" * 32,
                    created_at=0.0, page_count=pages, agent_version="t", pages=entries)  # fmt: skip


def test_what_the_pipeline_sends_is_taken() -> None:
    parts = (
        part("text", "text/plain; charset=utf-8"),
        part("thumb", "image/jpeg"),
        part("archival", "application/pdf"),
        part("capture", "image/png"),
    )
    assert check_manifest(manifest(parts), LIMITS) is None
    assert check_part(part("text", "Text/Plain;Charset=UTF-8"), LIMITS) is None
    assert check_part(part("thumb", "image/webp"), LIMITS) is None
    for kind in ("image/jpeg", "image/tiff"):
        assert check_part(part("capture", kind), LIMITS) is None


def test_any_other_type_is_refused() -> None:
    for name, kind in (
        ("capture", "text/html"),
        ("archival", "text/html; charset=utf-8"),
        ("archival", "image/svg+xml"),
        ("thumb", "image/svg+xml"),
        ("thumb", "application/pdf"),
        ("text", "text/html"),
        ("text", "text/plain"),  # no charset: not what the pipeline writes
        ("text", "text/plain; charset=latin-1"),
        ("capture", "application/octet-stream"),
    ):
        refusal = check_part(part(name, kind), LIMITS)
        assert refusal is not None and refusal.reason == "refused", (name, kind)
        assert kind in refusal.detail
    refusal = check_manifest(manifest((part("capture", "text/html"),), pages=2), LIMITS)
    assert refusal is not None and refusal.detail.startswith("page 1: part capture")


def test_sizes_by_kind_and_pages_per_batch() -> None:
    big_text = part("text", "text/plain; charset=utf-8", LIMITS.part_bytes["text"] + 1)
    refusal = check_part(big_text, LIMITS)
    assert refusal is not None and refusal.reason == "too_large"
    assert check_part(part("capture", "image/png", LIMITS.part_bytes["text"] + 1), LIMITS) is None
    small = StationLimits(LIMITS.part_bytes, pages_per_batch=3, bytes_per_day=10**9)
    refusal = check_manifest(manifest((part("thumb", "image/jpeg"),), pages=4), small)
    assert refusal is not None and "4 pages" in refusal.detail


def test_normal_type() -> None:
    assert normal_type(' TEXT/plain ; charset="UTF-8" ') == "text/plain; charset=utf-8"
