"""The server's receipt-signing key: made once, kept in the data directory (mode 0600).

Agents are given the public half at enrolment (``sohoa-server receipt-key``) so that they
delete pages only on receipts this server made (protocol/signing.py)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import signing
from server.store import files

KEY_FILE = "receipt-signing.key"


def load_or_create(data_dir: Path) -> Ed25519PrivateKey:
    path = data_dir / KEY_FILE
    if path.exists():
        return signing.private_key_from_bytes(path.read_bytes())
    files.make_dirs(data_dir)
    key = signing.new_key()
    tmp = path.with_name(f".tmp-{KEY_FILE}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, signing.private_key_bytes(key))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    # The new name must be durable before the key is used: stations pin its public half at
    # enrolment, and a key made again after a power cut would void every receipt.
    files.fsync_dir(data_dir)
    return key
