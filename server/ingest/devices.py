"""What a device says about itself: its retained status (online/offline, version, boot id)
and its telemetry, recorded on its ``devices`` row inside the group's transaction.

Owns: the ``devices`` row's liveness columns. Must not: act on a status (re-sending commands
is the archive side's, told by ``server.ingest.mqtt``'s events).
"""

from __future__ import annotations

import json
import time

from protocol.messages import Status, Telemetry
from server.store.db import Connection


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
