"""Signatures on the messages that make a device delete pages (receipts and batch states).

The broker ACL already lets only the server write ``down/#``; a signature is a second,
independent binding (docs/research/reliability.md §0 item 9: a forged receipt is data loss). The
server signs with an Ed25519 key it keeps; each agent is given the server's public key at
enrolment and ignores any receipt or state that does not verify. Pure functions, no I/O.
"""

from __future__ import annotations

import json

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.messages import Envelope


def canonical(message: Envelope) -> bytes:
    """The signed bytes: the message without its signature, keys sorted, no whitespace."""
    data = message.model_dump(mode="json", exclude={"signature"}, exclude_none=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def new_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_from_bytes(raw: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(raw)


def private_key_bytes(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def public_key_hex(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def sign(message: Envelope, key: Ed25519PrivateKey) -> str:
    return key.sign(canonical(message)).hex()


def sign_bytes(data: bytes, key: Ed25519PrivateKey) -> str:
    return key.sign(data).hex()


def verify_bytes(data: bytes, signature: str | None, public_key_hex_: str) -> bool:
    if not signature:
        return False
    try:
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex_))
        public.verify(bytes.fromhex(signature), data)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify(message: Envelope, signature: str | None, public_key_hex_: str) -> bool:
    if not signature:
        return False
    try:
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex_))
        public.verify(bytes.fromhex(signature), canonical(message))
    except (InvalidSignature, ValueError):
        return False
    return True
