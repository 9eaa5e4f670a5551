"""Rotating the archive's receipt-signing key without re-enrolling any station. No I/O.

The archive announces its next key in a :class:`KeyRotation` signed by the key stations
trust now, with a cut-over date. A station that verifies it trusts both keys until the
cut-over, then only the new one (:func:`trusted_keys`): receipts, batch states and rejects
signed by either are accepted during the overlap, so pages in flight at the rotation are
neither lost nor left waiting; after it, the old key is refused (a leaked old key can no
longer make a station delete anything). An announcement not signed by a key the station
trusts — a forger's "new key" — is refused, and so is one that would replace a key the
station does not hold. Rotations chain: each must be signed by a key trusted at the time.

The announcement travels as a retained ``command`` (``archive_key``, the announcement in its
``note``) on each station's down topic, and in the index of USB receipts (``archive_key`` in
``receipts.json``) for a station that only exchanges disks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field

from protocol import signing

HEX64 = r"^[0-9a-f]{64}$"
MAX_ANNOUNCEMENT = 4096


class RotationError(ValueError):
    """An announcement that must not be used."""


class KeyRotation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["key_rotation"] = "key_rotation"
    old_key: str = Field(pattern=HEX64, description="the key that signs this announcement")
    new_key: str = Field(pattern=HEX64)
    announced_at: float
    cutover_at: float = Field(description="from then on only new_key is trusted")
    signature: str = Field(default="", max_length=128)

    def signed_bytes(self) -> bytes:
        data = self.model_dump(mode="json", exclude={"signature"})
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def encode(self) -> str:
        return self.model_dump_json()


def announce(
    old: Ed25519PrivateKey, new_key_hex: str, announced_at: float, cutover_at: float
) -> KeyRotation:
    rotation = KeyRotation(
        old_key=signing.public_key_hex(old),
        new_key=new_key_hex,
        announced_at=announced_at,
        cutover_at=cutover_at,
    )
    return rotation.model_copy(
        update={"signature": signing.sign_bytes(rotation.signed_bytes(), old)}
    )


def decode(text: str | bytes) -> KeyRotation:
    if len(text) > MAX_ANNOUNCEMENT:
        raise RotationError("key announcement too large")
    try:
        rotation = KeyRotation.model_validate_json(text)
    except ValueError as exc:
        raise RotationError(f"not a key announcement: {exc}") from exc
    if rotation.new_key == rotation.old_key or rotation.cutover_at <= rotation.announced_at:
        raise RotationError("a key announcement must name a new key and a later cut-over")
    if not signing.verify_bytes(rotation.signed_bytes(), rotation.signature, rotation.old_key):
        raise RotationError("the key announcement's signature does not verify")
    return rotation


def trusted_keys(pinned: str | None, rotations: Iterable[KeyRotation], now: float) -> set[str]:
    """The archive keys a station accepts at ``now``: its pinned key, extended by every
    announcement a trusted key signed (in cut-over order), the old key dropped once its
    cut-over has passed. Announcements are checked again here (a file on the station's
    disk is not trusted either)."""
    keys = {pinned} if pinned else set()
    for rotation in sorted(rotations, key=lambda r: (r.cutover_at, r.announced_at)):
        if rotation.old_key not in keys:
            continue  # signed by a key this station does not trust: a forgery, or stale
        if not signing.verify_bytes(rotation.signed_bytes(), rotation.signature, rotation.old_key):
            continue
        keys.add(rotation.new_key)
        if now >= rotation.cutover_at:
            keys.discard(rotation.old_key)
    return keys
