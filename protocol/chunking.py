"""Byte ranges: what a part is cut into, and what is still missing. Pure functions.

Chunks are ``[offset, offset+length)`` ranges of a part, each with its own sha256. The server
keeps the ranges it holds; what is missing is the complement, so a resend after a cut costs
at most the chunk that was in flight, whatever the chunk size was then or is now.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

Range = tuple[int, int]

DEFAULT_CHUNK_SIZE = 32 * 1024
MIN_CHUNK_SIZE = 4 * 1024
# Portable to brokers with small limits (AWS IoT: 128 KB) and well inside Mosquitto 2.1's
# default max_packet_size of 2,000,000 bytes (docs/research/reliability.md §2.3).
MAX_CHUNK_SIZE = 128 * 1024


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def merge(ranges: Iterable[Range]) -> tuple[Range, ...]:
    """Union of ranges, sorted, touching ranges joined: (0,4),(4,6),(8,9) → (0,6),(8,9)."""
    out: list[Range] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return tuple(out)


def missing(have: Iterable[Range], size: int) -> tuple[Range, ...]:
    """What of ``[0, size)`` is not covered by ``have``. An empty part misses nothing once
    announced; a part of size 0 still needs one (empty) chunk to be committed, see
    :func:`plan`."""
    gaps: list[Range] = []
    pos = 0
    for start, end in merge(have):
        if start > pos:
            gaps.append((pos, min(start, size)))
        pos = max(pos, end)
        if pos >= size:
            break
    if pos < size:
        gaps.append((pos, size))
    return tuple(g for g in gaps if g[1] > g[0])


def covered(have: Iterable[Range], size: int) -> bool:
    return not missing(have, size)


def plan(gaps: Iterable[Range], chunk_size: int) -> list[Range]:
    """Cut missing ranges into chunks of at most ``chunk_size`` bytes, as (offset, length)."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    out: list[Range] = []
    for start, end in gaps:
        pos = start
        while pos < end:
            length = min(chunk_size, end - pos)
            out.append((pos, length))
            pos += length
    return out


def full(size: int) -> tuple[Range, ...]:
    return ((0, size),) if size > 0 else ()
