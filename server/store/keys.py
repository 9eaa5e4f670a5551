"""The server's receipt-signing key: made once, kept in the data directory (mode 0600).

Agents are given the public half at enrolment (``sohoa-server receipt-key``) so that they
delete pages only on receipts this server made (protocol/signing.py)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import keyrotation, signing
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


# -- rotation with an overlap (protocol/keyrotation.py) --------------------------------------

NEXT_KEY_FILE = "receipt-signing.next.key"
ROTATION_FILE = "receipt-key-rotation.json"


class RotationPending(Exception):
    """A rotation is already announced and its cut-over has not come."""


def _write_durably(path: Path, data: bytes, mode: int) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp_name, path)
    files.fsync_dir(path.parent)


def rotation(data_dir: Path) -> keyrotation.KeyRotation | None:
    """The announced rotation (kept after its cut-over: a station that was offline all
    through the overlap still learns the new key from it), or None."""
    try:
        return keyrotation.decode((data_dir / ROTATION_FILE).read_bytes())
    except FileNotFoundError:
        return None


def rotate(data_dir: Path, overlap_s: float, now: float | None = None) -> keyrotation.KeyRotation:
    """Make the next key and announce it, signed by the current one, with the cut-over
    ``overlap_s`` from now. The current key keeps signing until then."""
    now = time.time() if now is None else now
    current = load_or_create(data_dir)
    pending = rotation(data_dir)
    if pending is not None and (data_dir / NEXT_KEY_FILE).exists():
        raise RotationPending(
            f"a new key is already announced, cut-over {time.ctime(pending.cutover_at)}"
        )
    new = signing.new_key()
    _write_durably(data_dir / NEXT_KEY_FILE, signing.private_key_bytes(new), 0o600)
    announced = keyrotation.announce(
        current, signing.public_key_hex(new), now, now + max(overlap_s, 1.0)
    )
    _write_durably(data_dir / ROTATION_FILE, announced.encode().encode(), 0o644)
    return announced


def cutover_due(data_dir: Path) -> float | None:
    """When the waiting next key takes over (None: no key waiting)."""
    pending = rotation(data_dir)
    if pending is None or not (data_dir / NEXT_KEY_FILE).exists():
        return None
    return pending.cutover_at


def cut_over(data_dir: Path, now: float | None = None) -> bool:
    """Put the waiting key in place (the old one kept beside, renamed). False when no key
    is waiting."""
    now = time.time() if now is None else now
    waiting = data_dir / NEXT_KEY_FILE
    if not waiting.exists():
        return False
    os.replace(data_dir / KEY_FILE, data_dir / f"{KEY_FILE}.retired-{int(now)}")
    os.replace(waiting, data_dir / KEY_FILE)
    files.fsync_dir(data_dir)
    return True


def current(data_dir: Path, now: float | None = None) -> Ed25519PrivateKey:
    """The key to sign with now: the waiting one takes over once its cut-over has come."""
    now = time.time() if now is None else now
    due = cutover_due(data_dir)
    if due is not None and now >= due:
        cut_over(data_dir, now)
    return load_or_create(data_dir)
