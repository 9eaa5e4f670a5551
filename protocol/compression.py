"""zstd with a hard cap on what a frame may expand to.

python-zstandard's ``decompress(max_output_size=...)`` does NOT stop a frame that declares its
content size: 9.6 KB came back as 300 MiB with a 1 MiB limit (docs/research/reliability.md
§8.2). So: reject frames whose header does not declare a size or declares more than the cap,
then stream-decompress counting bytes anyway (the header could lie), with a bounded window and
no trailing data. Frames carry zstd's content checksum and frames without one are refused:
without it a flipped bit decodes silently to different bytes (25 of 43 single-bit flips of a
small frame did, tests/test_protocol.py).
"""

from __future__ import annotations

import zstandard

MAGIC = b"\x28\xb5\x2f\xfd"
# Window cap in BYTES (the library docstring says KiB; it is bytes, docs/research/reliability.md
# §8.2).
MAX_WINDOW = 8 * 1024 * 1024


class DecompressionError(ValueError):
    """A frame that is corrupt, too large, or not a single zstd frame."""


def compress(data: bytes, level: int = 3) -> bytes:
    """Level 3: text and JSON shrink ~60 %; higher levels buy ~1 % for 20x the time
    (docs/research/perf.md B4)."""
    cctx = zstandard.ZstdCompressor(level=level, write_content_size=True, write_checksum=True)
    return cctx.compress(data)


def decompress(data: bytes, max_size: int) -> bytes:
    if not data.startswith(MAGIC):
        raise DecompressionError("not a zstd frame")
    try:
        declared = zstandard.frame_content_size(data)
    except zstandard.ZstdError as exc:
        raise DecompressionError(f"bad zstd frame header: {exc}") from exc
    if declared < 0:
        raise DecompressionError("zstd frame does not declare its content size")
    if declared > max_size:
        raise DecompressionError(f"zstd frame declares {declared} bytes, limit is {max_size}")
    if not zstandard.get_frame_parameters(data).has_checksum:
        raise DecompressionError("zstd frame carries no content checksum")
    dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
    try:
        # The declared size is now known to be within the cap, and libzstd refuses a frame
        # whose content does not match its declared size, so the allocation is bounded.
        # allow_extra_data=False: trailing bytes after the frame are an error, not ignored.
        out = dctx.decompress(data, max_output_size=max_size, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise DecompressionError(f"corrupt zstd frame: {exc}") from exc
    if len(out) != declared:
        raise DecompressionError(f"zstd frame declared {declared} bytes, gave {len(out)}")
    return bytes(out)
