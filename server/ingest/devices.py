"""Which devices may be heard at all, and what a device says about itself: its retained
status (online/offline, version, boot id) and its telemetry, recorded on its ``devices``
row inside the group's transaction.

Owns: the check that a message's device is an enrolled, active station of the fleet
registry (:func:`enrolled`) — whatever the broker let through: an anonymous test broker, a
legacy password file or a mis-made identity must not be a way in (issue #14); and the
``devices`` row's liveness columns. Must not: act on a status (re-sending commands is the
archive side's, told by ``server.ingest.mqtt``'s events).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from protocol.messages import Status, Telemetry
from server.store.db import Connection, Database


def enrolled(db: Database, device_ids: Iterable[str]) -> set[str]:
    """Those of ``device_ids`` that are active stations in the fleet registry (pending,
    revoked and unknown ones are not). One read for a whole group."""
    wanted = sorted(set(device_ids))
    if not wanted:
        return set()
    marks = ", ".join("?" * len(wanted))
    rows = db.read().execute(
        f"SELECT device_id FROM stations WHERE state = 'active' AND device_id IN ({marks})",  # noqa: S608 - placeholders
        wanted,
    )
    return {str(r[0]) for r in rows}


def touch(con: Connection, device_id: str) -> None:
    """The device exists and was heard from now."""
    now = time.time()
    con.execute(
        "INSERT INTO devices(device_id, first_seen, last_seen) VALUES (?, ?, ?) "
        "ON CONFLICT(device_id) DO UPDATE SET last_seen = excluded.last_seen",
        (device_id, now, now),
    )


def record_status(con: Connection, msg: Status) -> None:
    touch(con, msg.device_id)
    con.execute(
        "UPDATE devices SET status = ?, agent_version = ?, boot_id = ? WHERE device_id = ?",
        (msg.state, msg.agent_version, msg.boot_id, msg.device_id),
    )


def record_telemetry(con: Connection, msg: Telemetry) -> None:
    data = msg.model_dump(exclude={"kind", "device_id", "msg_id", "correlation_id"})
    touch(con, msg.device_id)
    con.execute(
        "UPDATE devices SET telemetry = ? WHERE device_id = ?",
        (json.dumps(data), msg.device_id),
    )
