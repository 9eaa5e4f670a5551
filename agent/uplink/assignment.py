"""The fonds the archive's admin assigned to this station (issue 21), kept durably.

The archive publishes a signed :class:`protocol.messages.FondsAssignment` retained on the
station's ``down/{device}/fonds`` (server/fleet/assignment.py). :func:`record` keeps it in
``<data_dir>/fonds-assignment.json`` only when it carries the signature of an archive key this
station trusts (the key pinned at enrolment, or one announced since: protocol/keyrotation.py)
and is not older than the one held; anything else — unsigned, forged, for another station,
an old one replayed — changes nothing.

Precedence (:func:`choices`): once the archive has told the station, its list is the choice
list (the first its default; an empty list means none). Until then the station's own
``fonds`` setting is used: a fallback for a station that was never told (enrolled before
this, or never connected since). The file is verified again when read (a file on the
station's disk is not trusted either).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from protocol import signing
from protocol.messages import FondsAssignment

log = logging.getLogger(__name__)

FILE = "fonds-assignment.json"


class AssignmentRefused(ValueError):
    """An assignment this station must not use."""


def _verified(msg: FondsAssignment, device_id: str, trusted: set[str]) -> bool:
    if msg.device_id != device_id:
        return False
    return any(signing.verify(msg, msg.signature, key) for key in sorted(trusted))


def held(data_dir: Path, device_id: str, trusted: set[str]) -> FondsAssignment | None:
    """The assignment this station holds, verified again; None when it holds none (or the
    file no longer verifies: then the local setting applies, logged)."""
    path = data_dir / FILE
    try:
        msg = FondsAssignment.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.error("ignored %s: %s", path, exc)
        return None
    if not _verified(msg, device_id, trusted):
        log.error("ignored %s: not signed by an archive key this station trusts", path)
        return None
    return msg


def record(data_dir: Path, device_id: str, trusted: set[str], msg: FondsAssignment) -> bool:
    """Keep ``msg`` if it is authentic and not older than what is held; True when it changed
    the station's list. Raises :class:`AssignmentRefused` (nothing written) otherwise."""
    if not trusted:
        raise AssignmentRefused("no archive key is pinned on this station (enrol it)")
    if msg.device_id != device_id:
        raise AssignmentRefused(f"meant for station {msg.device_id}")
    if not _verified(msg, device_id, trusted):
        raise AssignmentRefused("bad or missing archive signature (forged?)")
    current = held(data_dir, device_id, trusted)
    if current is not None and msg.assigned_at < current.assigned_at:
        if msg.fonds == current.fonds:
            # The broker's retained copy, delivered at every (re)subscription, of what the
            # archive re-sent since on connect: the same list, nothing to change or report
            # (the season soak logged it as an error at every reconnection).
            return False
        raise AssignmentRefused("older than the assignment this station holds (replayed?)")
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / FILE
    tmp = path.with_name(f".tmp-{FILE}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, msg.model_dump_json().encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    changed = current is None or current.fonds != msg.fonds
    if changed:
        log.warning("the archive assigned this station the fonds %s", ", ".join(msg.codes) or "—")
    return changed


def choices(
    data_dir: Path, device_id: str, trusted: set[str], local: list[str]
) -> tuple[list[str], dict[str, str]]:
    """The station's fonds choice list (default first) and their names: the archive's
    assignment when it has told the station, else the local ``fonds`` setting."""
    msg = held(data_dir, device_id, trusted) if device_id else None
    if msg is None:
        return list(local), {}
    return list(msg.codes), {f.code: f.name for f in msg.fonds if f.name}
