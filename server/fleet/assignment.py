"""The fonds an admin assigns, sent to the station (issue 21).

The registry holds what each station may scan for (:func:`server.fleet.registry.assign_fonds`).
This module turns that into a signed :class:`protocol.messages.FondsAssignment` and publishes
it RETAINED on the station's own ``down/{device}/fonds``: the station hears it at once when
connected, or at its next subscription however long it was offline, and uses it as its choice
list without anyone editing its configuration. It is signed with the archive's receipt key
(protocol/signing.py), the key stations pinned at enrolment, so a forged list is refused.

Sent when an assignment changes (the web page and API, when this process runs the ingest
worker), for every active station when the ingest worker connects, and for one station when
its status says it came online (so a change made with the CLI, in another process, reaches it
at its next connection).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import envelope, signing, topics
from protocol.messages import AssignedFonds, FondsAssignment
from server.store.db import Connection, Database

log = logging.getLogger(__name__)


class RetainedPublisher(Protocol):
    """What :func:`send` needs: :class:`server.ingest.mqtt.IngestWorker` in service."""

    def publish_retained(self, topic: str, payload: bytes) -> bool: ...


def message(
    con: Connection, device_id: str, key: Ed25519PrivateKey, now: float | None = None
) -> bytes:
    """The signed, encoded assignment of one station as the registry holds it now."""
    row = con.execute(
        "SELECT fonds_codes FROM stations WHERE device_id = ?", (device_id,)
    ).fetchone()
    codes: list[str] = json.loads(row[0]) if row is not None and row[0] else []
    fonds = []
    for code in codes:
        named = con.execute("SELECT name FROM fonds WHERE code = ?", (code,)).fetchone()
        fonds.append(AssignedFonds(code=code, name=str(named[0]) if named else ""))
    now = time.time() if now is None else now
    msg = FondsAssignment(
        device_id=device_id,
        msg_id=uuid.uuid4().hex,
        sent_at=now,
        assigned_at=now,
        fonds=tuple(fonds),
    )
    signed = msg.model_copy(update={"signature": signing.sign(msg, key)})
    return envelope.encode(signed)


def send(
    db: Database,
    publisher: RetainedPublisher | None,
    key: Ed25519PrivateKey | None,
    device_id: str | None = None,
) -> int:
    """Publish the assignment of one station (or of every active one), signed with ``key``
    (the archive's receipt key; None: nothing is sent, a station would refuse it unsigned);
    return how many went to the broker. Safe to call any number of times (retained: the
    newest replaces)."""
    if publisher is None or key is None:
        return 0
    con = db.read()
    if device_id is None:
        rows = con.execute("SELECT device_id FROM stations WHERE state = 'active'").fetchall()
        devices = [str(r[0]) for r in rows]
    else:
        devices = [device_id]
    sent = 0
    for device in devices:
        try:
            payload = message(con, device, key)
        except (ValueError, topics.TopicError) as exc:
            log.error("could not build the fonds assignment of %s: %s", device, exc)
            continue
        if publisher.publish_retained(topics.down(device, "fonds"), payload):
            sent += 1
    return sent
