"""The server's receipt-signing key: made once, kept in the data directory (mode 0600).

Agents are given the public half at enrolment (``sohoa-server receipt-key``) so that they
delete pages only on receipts this server made (protocol/signing.py)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import signing
from server.store import files

KEY_FILE = "receipt-signing.key"


def load_or_create(data_dir: Path) -> Ed25519PrivateKey:
    """The key, made on first use. Each process writes its candidate to a temp file of its own
    (a shared temp name opened with ``O_TRUNC`` let one process truncate the file another had
    just fsynced and renamed into place: a power cut then left a 0-byte key), fsyncs it,
    renames it into place, fsyncs the directory, and returns what the name now holds, so two
    processes starting at once end up with the same key."""
    path = data_dir / KEY_FILE
    if path.exists():
        return signing.private_key_from_bytes(path.read_bytes())
    files.make_dirs(data_dir)
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{KEY_FILE}-", dir=data_dir)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, signing.private_key_bytes(signing.new_key()))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp_name, path)
    # The new name must be durable before the key is used: stations pin its public half at
    # enrolment, and a key made again after a power cut would void every receipt.
    files.fsync_dir(data_dir)
    return signing.private_key_from_bytes(path.read_bytes())
