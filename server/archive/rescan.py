"""Re-scan requests: an archivist asks the commune to scan a page again.

A request is a row in ``rescan_requests`` written together with its ``reviews`` row and its
audit row (one transaction); the page and its files are never changed. The device learns of
it from a ``Command(command="rescan", batch_id, page_id, note)`` on
``sohoa/v1/down/{device}/command`` (QoS 1), published through the server's one broker client
(:meth:`server.ingest.mqtt.IngestWorker.publish`; the worker calls :class:`Resender` on its
connect and device-online events). Commands are not signed: a re-scan request only shows a
line to the technician, it never makes a device delete anything.

States, each change made only if the row is still in the state before it:

* ``requested`` — recorded, not yet accepted by the broker: the worker was not connected, or
  the broker answered "no matching subscribers" (0x10: the device has never connected with a
  persistent session, so nobody would receive it).
* ``sent`` — published, the broker's PUBACK not yet in.
* ``acknowledged`` — the broker PUBACKed it for the device's persistent session; the agent
  (paho ``manual_ack`` for commands) acknowledges it to the broker only after recording it
  durably, so a device that was offline gets it when it next connects. Protocol v1 has no
  device-to-server acknowledgement of a command; that would need a new message kind.

When they go (again): on every (re)connect of the ingest worker, everything not
``acknowledged`` (a ``sent`` row whose PUBACK was lost with the connection goes again; the
agent keeps one request per page, so a duplicate is harmless); when a device announces itself
online, its ``requested`` rows.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from protocol import envelope, topics
from protocol.messages import Command
from server.archive import audit
from server.store.db import Database

log = logging.getLogger(__name__)

STATES = ("requested", "sent", "acknowledged")
RESEND_ON_CONNECT = ("requested", "sent")


# on_puback(delivered, reason): delivered is False when the broker refused the message or had
# no subscriber for it.
PubackCallback = Callable[[bool, str], None]


class Publisher(Protocol):
    """What :func:`send_pending` needs: :class:`server.ingest.mqtt.IngestWorker` in service."""

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, on_puback: PubackCallback | None = None
    ) -> bool: ...


def request(db: Database, page_pk: int, note: str, actor: str, ip: str = "") -> int | None:
    """Record a request (and its review decision and audit row); None if no such page."""
    note = note.strip()[:500]
    with db.tx() as con:
        page = con.execute(
            "SELECT p.id, p.device_id, p.page_id, p.page_no, b.batch_id FROM pages p"
            " JOIN batches b ON b.id = p.batch_pk WHERE p.id = ?",
            (page_pk,),
        ).fetchone()
        if page is None:
            return None
        now = time.time()
        cur = con.execute(
            "INSERT INTO rescan_requests(page_pk, device_id, batch_id, page_id, note,"
            " requested_by, requested_at, msg_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (page_pk, page["device_id"], page["batch_id"], page["page_id"], note, actor, now,
             uuid.uuid4().hex),
        )  # fmt: skip
        request_id = int(cur.fetchall()[0][0])
        con.execute(
            "INSERT INTO reviews(page_pk, action, actor, at, note) VALUES (?, 'rescan', ?, ?, ?)",
            (page_pk, actor, now, note),
        )
        audit.append(
            con,
            actor,
            "review.rescan",
            str(page_pk),
            {"note": note, "request": request_id, "device": page["device_id"]},
            ip,
        )
    log.info(
        "re-scan requested: device %s batch %s page %d (%s) by %s",
        page["device_id"],
        page["batch_id"],
        page["page_no"],
        page["page_id"],
        actor,
    )
    return request_id


def command(row: Any) -> Command:
    return Command(
        device_id=row["device_id"],
        msg_id=row["msg_id"],
        sent_at=time.time(),
        command="rescan",
        batch_id=row["batch_id"],
        page_id=row["page_id"],
        note=row["note"],
    )


def listing(db: Database, limit: int = 200) -> list[dict[str, Any]]:
    rows = db.read().execute(
        "SELECT r.*, p.page_no, p.batch_pk FROM rescan_requests r"
        " JOIN pages p ON p.id = r.page_pk ORDER BY r.id DESC LIMIT ?",
        (limit,),
    )
    return [dict(r) for r in rows]


def for_page(db: Database, page_pk: int) -> list[dict[str, Any]]:
    rows = db.read().execute(
        "SELECT * FROM rescan_requests WHERE page_pk = ? ORDER BY id", (page_pk,)
    )
    return [dict(r) for r in rows]


def device_online(db: Database, device_id: str) -> bool:
    row = db.read().execute("SELECT status FROM devices WHERE device_id = ?", (device_id,))
    found = row.fetchone()
    return found is not None and found["status"] == "online"


def _move(db: Database, request_id: int, old: str, new: str) -> bool:
    stamp = {"sent": ", sends = sends + 1, sent_at = ?", "acknowledged": ", acknowledged_at = ?"}
    extra = stamp.get(new, "")
    args: tuple[Any, ...] = (new, time.time()) if extra else (new,)
    with db.tx() as con:
        changed = con.execute(
            # the SET clause comes from the constant above, never from input
            f"UPDATE rescan_requests SET state = ?{extra} WHERE id = ? AND state = ?",  # noqa: S608
            (*args, request_id, old),
        ).rowcount
    return bool(changed)


def send_pending(
    db: Database,
    publisher: Publisher | None,
    device_id: str | None = None,
    states: tuple[str, ...] = ("requested",),
) -> int:
    """Publish the requests in ``states`` (of one device, or all); return how many went to
    the broker. Safe to call from any thread and any number of times."""
    if publisher is None:
        return 0
    marks = ",".join("?" for _ in states)
    sql = f"SELECT * FROM rescan_requests WHERE state IN ({marks})"  # noqa: S608 - placeholders
    args: list[Any] = list(states)
    if device_id is not None:
        sql += " AND device_id = ?"
        args.append(device_id)
    sent = 0
    for row in db.read().execute(sql + " ORDER BY id", args).fetchall():
        request_id = int(row["id"])
        # Mark it sent before publishing: the PUBACK may come back before publish() returns.
        if row["state"] != "sent" and not _move(db, request_id, row["state"], "sent"):
            continue  # another thread took it meanwhile

        def on_puback(delivered: bool, reason: str, request_id: int = request_id) -> None:
            if delivered:
                _move(db, request_id, "sent", "acknowledged")
            else:
                log.info("re-scan request %d not taken by the broker (%s)", request_id, reason)
                _move(db, request_id, "sent", "requested")

        topic = topics.down(row["device_id"], "command")
        if publisher.publish(topic, envelope.encode(command(row)), 1, on_puback):
            sent += 1
        else:
            _move(db, request_id, "sent", "requested")
    return sent


class Resender:
    """The broker events re-scans care about, given to the ingest worker by ``server.app``
    (``IngestWorker(…, events=Resender(db))``): ingest tells, the archive side decides."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def connected(self, worker: Publisher) -> None:
        """On every (re)connect: everything not acknowledged goes (again)."""
        send_pending(self.db, worker, None, RESEND_ON_CONNECT)

    def device_online(self, worker: Publisher, device_id: str) -> None:
        """A device's status arrived: if it says online, its session now exists at the
        broker, so a request it could not get before can go."""
        if device_online(self.db, device_id):
            send_pending(self.db, worker, device_id, ("requested",))
