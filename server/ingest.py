"""Ingest: turn messages from devices into committed archive records. No MQTT in here.

:meth:`Ingest.handle` takes one (topic, payload) and returns the messages to publish back.
The caller (``server.mqtt_ingest``) acknowledges the MQTT message only after ``handle``
returned, i.e. after everything it wrote is fsynced and committed. Every handler is
idempotent and safe with several workers on one shared subscription: state lives only in the
database and the files, and races are settled by UNIQUE constraints and conditional updates.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
import uuid
from dataclasses import dataclass
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import chunking, envelope, signing, topics
from protocol.messages import (
    BatchState,
    ChunkHeader,
    Envelope,
    Manifest,
    PartState,
    Query,
    Receipt,
    Reject,
    Status,
    Telemetry,
)
from server.db import Database
from server.store import Store

log = logging.getLogger(__name__)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
CLAIM_LEASE = 300.0  # seconds before another worker may retry a part a dead worker claimed
SERVER_ID = "sohoa-server"


_Signable = TypeVar("_Signable", BatchState, Receipt)


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


class Rejected(Exception):
    """A message refused with a reason the device logs; ``alert`` also raises it to staff."""

    def __init__(
        self, reason: str, detail: str, batch_id: str | None = None, alert: bool = False
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.batch_id = batch_id
        self.alert = alert


class Ingest:
    def __init__(
        self,
        db: Database,
        store: Store,
        max_part_bytes: int = 512 * 1024 * 1024,
        signing_key: Ed25519PrivateKey | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.max_part_bytes = max_part_bytes
        self.signing_key = signing_key

    def _signed(self, msg: _Signable) -> _Signable:
        """Receipts and states make devices delete pages: sign them (protocol/signing.py)."""
        if self.signing_key is None:
            return msg
        return msg.model_copy(update={"signature": signing.sign(msg, self.signing_key)})

    # -- entry point -----------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> list[Outgoing]:
        try:
            where = topics.parse(topic)
        except topics.TopicError as exc:
            log.warning("ignored message on unknown topic %r: %s", topic, exc)
            return []
        device = where.device_id
        msg: Envelope | None = None
        try:
            frame = envelope.decode(payload)
            msg = frame.message
            # The ACL binds the topic to the authenticated user; the envelope must agree.
            if msg.device_id != device:
                raise Rejected(
                    "wrong_device",
                    f"topic names {device!r}, envelope {msg.device_id!r}",
                    alert=True,
                )
            if where.direction == "status" and isinstance(msg, Status):
                self._status(msg)
                return []
            if where.kind == "telemetry" and isinstance(msg, Telemetry):
                self._telemetry(msg)
                return []
            if where.kind == "manifest" and isinstance(msg, Manifest):
                return self._manifest(msg)
            if where.kind == "chunk" and isinstance(msg, ChunkHeader):
                return self._chunk(msg, frame.body)
            if where.kind == "query" and isinstance(msg, Query):
                return self._query(msg)
            raise Rejected("bad_message", f"a {msg.kind} message on {where.kind}")
        except envelope.EnvelopeError as exc:
            log.warning("device %s: rejected payload on %s: %s", device, topic, exc)
            return [self._reject(device, None, exc.reason, exc.detail, None)]
        except Rejected as exc:
            log.warning("device %s: rejected %s: %s", device, where.kind, exc)
            if exc.alert:  # after the failed transaction rolled back, in one of its own
                self.db.alert(exc.reason, f"batch {exc.batch_id}: {exc.detail}", device)
            return [self._reject(device, msg, exc.reason, exc.detail, exc.batch_id)]

    # -- device status -----------------------------------------------------------------------

    def _touch_device(self, con: sqlite3.Connection, device_id: str) -> None:
        now = time.time()
        con.execute(
            "INSERT INTO devices(device_id, first_seen, last_seen) VALUES (?, ?, ?) "
            "ON CONFLICT(device_id) DO UPDATE SET last_seen = excluded.last_seen",
            (device_id, now, now),
        )

    def _status(self, msg: Status) -> None:
        with self.db.tx() as con:
            self._touch_device(con, msg.device_id)
            con.execute(
                "UPDATE devices SET status = ?, agent_version = ?, boot_id = ? WHERE device_id = ?",
                (msg.state, msg.agent_version, msg.boot_id, msg.device_id),
            )

    def _telemetry(self, msg: Telemetry) -> None:
        data = msg.model_dump(exclude={"kind", "device_id", "msg_id", "correlation_id"})
        with self.db.tx() as con:
            self._touch_device(con, msg.device_id)
            con.execute(
                "UPDATE devices SET telemetry = ? WHERE device_id = ?",
                (json.dumps(data), msg.device_id),
            )

    # -- manifest ---------------------------------------------------------------------------

    def _manifest(self, msg: Manifest) -> list[Outgoing]:
        device = msg.device_id
        committed_now: list[PartState] = []
        with self.db.tx() as con:
            self._touch_device(con, device)
            con.execute(
                "INSERT INTO batches(device_id, batch_id, created_at, received_at, page_count,"
                " source, scanner, profile, agent_version, metadata)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    device,
                    msg.batch_id,
                    msg.created_at,
                    time.time(),
                    msg.page_count,
                    msg.source,
                    msg.scanner,
                    msg.profile,
                    msg.agent_version,
                    json.dumps(msg.metadata, ensure_ascii=False),
                ),
            )
            batch = con.execute(
                "SELECT id, page_count FROM batches WHERE device_id = ? AND batch_id = ?",
                (device, msg.batch_id),
            ).fetchone()
            if msg.page_count > batch["page_count"]:
                con.execute(
                    "UPDATE batches SET page_count = ? WHERE id = ?", (msg.page_count, batch["id"])
                )
            for page in msg.pages:
                con.execute(
                    "INSERT INTO pages(batch_pk, device_id, page_id, page_no, capture_sha256,"
                    " capture_size, dpi, width_px, height_px, colour, flags, ocr_confidence,"
                    " decisions, source_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT DO NOTHING",
                    (
                        batch["id"],
                        device,
                        page.page_id,
                        page.page_no,
                        page.capture_sha256,
                        page.capture_size,
                        page.dpi,
                        page.width_px,
                        page.height_px,
                        int(page.colour),
                        json.dumps(list(page.flags)),
                        page.ocr_confidence,
                        json.dumps(page.decisions, ensure_ascii=False),
                        page.source_name,
                    ),
                )
                row = con.execute(
                    "SELECT id, batch_pk, capture_sha256 FROM pages"
                    " WHERE device_id = ? AND page_id = ?",
                    (device, page.page_id),
                ).fetchone()
                if row["capture_sha256"] != page.capture_sha256 or row["batch_pk"] != batch["id"]:
                    self._conflict(device, msg.batch_id, f"page {page.page_id} capture differs")
                for part in page.parts:
                    if part.size > self.max_part_bytes:
                        raise Rejected(
                            "too_large", f"part {part.name} of {part.size} bytes", msg.batch_id
                        )
                    con.execute(
                        "INSERT INTO parts(page_pk, name, sha256, size, media_type)"
                        " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (row["id"], part.name, part.sha256, part.size, part.media_type),
                    )
                    held = con.execute(
                        "SELECT id, sha256, size, state FROM parts WHERE page_pk = ? AND name = ?",
                        (row["id"], part.name),
                    ).fetchone()
                    if held["sha256"] != part.sha256 or held["size"] != part.size:
                        self._conflict(
                            device, msg.batch_id, f"page {page.page_id} part {part.name} differs"
                        )
                    if part.size == 0 and held["state"] != "committed":
                        if part.sha256 != EMPTY_SHA256:
                            raise Rejected(
                                "corrupt", "empty part with a non-empty sha256", msg.batch_id
                            )
                        committed_now.append(
                            self._commit_part(
                                con,
                                held["id"],
                                device,
                                msg.batch_id,
                                page.page_no,
                                page.page_id,
                                part.name,
                                part.media_type,
                                0,
                                part.sha256,
                            )
                        )
            complete = self._check_complete(con, batch["id"])
        log.info(
            "device %s batch %s: manifest with %d page(s)", device, msg.batch_id, len(msg.pages)
        )
        if committed_now:
            return [self._receipt(device, msg.batch_id, tuple(committed_now), complete)]
        return []

    def _conflict(self, device: str, batch_id: str, detail: str) -> None:
        # Same key, different bytes: never overwrite an archived record. A human must look.
        raise Rejected("conflict", detail, batch_id, alert=True)

    # -- chunk ------------------------------------------------------------------------------

    def _chunk(self, msg: ChunkHeader, body: bytes) -> list[Outgoing]:
        device = msg.device_id
        if len(body) != msg.length:
            raise Rejected(
                "corrupt", f"chunk body {len(body)} bytes, header {msg.length}", msg.batch_id
            )
        if chunking.sha256_hex(body) != msg.chunk_sha256:
            raise Rejected("corrupt", f"chunk at {msg.offset} fails its sha256", msg.batch_id)
        con = self.db.read()
        part = con.execute(
            "SELECT parts.id, parts.sha256, parts.size, parts.state, parts.media_type,"
            " pages.page_no, pages.page_id, batches.batch_id"
            " FROM parts JOIN pages ON pages.id = parts.page_pk"
            " JOIN batches ON batches.id = pages.batch_pk"
            " WHERE pages.device_id = ? AND pages.page_id = ? AND parts.name = ?",
            (device, msg.page_id, msg.part),
        ).fetchone()
        if part is None or part["batch_id"] != msg.batch_id:
            raise Rejected("unknown_part", f"page {msg.page_id} part {msg.part}", msg.batch_id)
        if part["sha256"] != msg.part_sha256 or part["size"] != msg.part_size:
            raise Rejected("conflict", f"chunk names another version of {msg.part}", msg.batch_id)
        if part["state"] == "committed":
            return []  # a duplicate after the commit: the receipt already went out
        if msg.offset + msg.length > part["size"]:
            raise Rejected("bad_message", "chunk runs past the end of its part", msg.batch_id)
        final = self.store.part_path(
            device, msg.batch_id, part["page_no"], msg.page_id, msg.part, part["media_type"]
        )
        if not self.store.write_at(final, msg.offset, body, part["size"]):
            return []  # committed by another worker meanwhile
        with self.db.tx() as con:
            now = con.execute("SELECT state FROM parts WHERE id = ?", (part["id"],)).fetchone()
            if now["state"] == "committed":
                # Another worker committed the part since the read above: this chunk came
                # late. Record nothing, and drop the partial file its write re-created.
                self.store.discard_partial(final)
                return []
            con.execute(
                "INSERT OR IGNORE INTO chunks(part_pk, offset, length) VALUES (?, ?, ?)",
                (part["id"], msg.offset, msg.length),
            )
            have = con.execute(
                "SELECT offset, offset + length FROM chunks WHERE part_pk = ?", (part["id"],)
            ).fetchall()
            if not chunking.covered([(r[0], r[1]) for r in have], part["size"]):
                return []
            # Claim the part: with several workers exactly one verifies and commits it.
            claimed = con.execute(
                "UPDATE parts SET state = 'verifying', claimed_at = ? WHERE id = ? AND"
                " (state = 'receiving' OR (state = 'verifying' AND claimed_at < ?))",
                (time.time(), part["id"], time.time() - CLAIM_LEASE),
            ).rowcount
        if not claimed:
            return []
        if not self.store.finalize(final, part["sha256"], part["size"]):
            with self.db.tx() as con:
                con.execute("DELETE FROM chunks WHERE part_pk = ?", (part["id"],))
                con.execute("UPDATE parts SET state = 'receiving' WHERE id = ?", (part["id"],))
            self.db.alert("corrupt_part", f"{msg.batch_id}/{msg.page_id}/{msg.part}", device)
            raise Rejected(
                "corrupt",
                f"{msg.part} of page {msg.page_id} fails its sha256; send it again",
                msg.batch_id,
            )
        with self.db.tx() as con:
            state = self._commit_part(
                con,
                part["id"],
                device,
                msg.batch_id,
                part["page_no"],
                msg.page_id,
                msg.part,
                part["media_type"],
                part["size"],
                part["sha256"],
                final=str(final),
            )
            page_batch = con.execute(
                "SELECT batch_pk FROM pages JOIN parts ON parts.page_pk = pages.id"
                " WHERE parts.id = ?",
                (part["id"],),
            ).fetchone()
            complete = self._check_complete(con, page_batch["batch_pk"])
        # A late duplicate handled by another worker while this one was verifying may have
        # re-created the partial file after the rename; nothing needs it any more.
        self.store.discard_partial(final)
        log.info(
            "device %s batch %s page %d: %s committed (%d bytes)",
            device,
            msg.batch_id,
            part["page_no"],
            msg.part,
            part["size"],
        )
        return [self._receipt(device, msg.batch_id, (state,), complete)]

    def _commit_part(
        self,
        con: sqlite3.Connection,
        part_pk: int,
        device: str,
        batch_id: str,
        page_no: int,
        page_id: str,
        name: str,
        media_type: str,
        size: int,
        sha256: str,
        final: str | None = None,
    ) -> PartState:
        if final is None:  # an empty part: nothing travelled, write it here
            path = self.store.part_path(device, batch_id, page_no, page_id, name, media_type)
            if not self.store.finalize(path, sha256, size):
                raise Rejected("corrupt", f"empty {name} does not hash to {sha256}", batch_id)
            final = str(path)
        con.execute(
            "UPDATE parts SET state = 'committed', path = ?, committed_at = ? WHERE id = ?",
            (final, time.time(), part_pk),
        )
        con.execute("DELETE FROM chunks WHERE part_pk = ?", (part_pk,))
        if name == "text":
            with open(final, "rb") as fh:
                text = fh.read().decode("utf-8", errors="replace")
            page_pk = con.execute("SELECT page_pk FROM parts WHERE id = ?", (part_pk,)).fetchone()
            self.db.index_text(con, page_pk[0], text)
        return PartState(page_id=page_id, part=name, sha256=sha256, committed=True)

    def _check_complete(self, con: sqlite3.Connection, batch_pk: int) -> bool:
        row = con.execute(
            "SELECT b.page_count, b.complete_at,"
            " (SELECT COUNT(*) FROM pages p WHERE p.batch_pk = b.id) AS pages,"
            " (SELECT COUNT(*) FROM parts t JOIN pages p ON p.id = t.page_pk"
            "   WHERE p.batch_pk = b.id AND t.state != 'committed') AS open_parts"
            " FROM batches b WHERE b.id = ?",
            (batch_pk,),
        ).fetchone()
        complete = row["pages"] >= row["page_count"] and row["open_parts"] == 0
        if complete and row["complete_at"] is None:
            con.execute("UPDATE batches SET complete_at = ? WHERE id = ?", (time.time(), batch_pk))
        return bool(complete)

    # -- query ------------------------------------------------------------------------------

    def _query(self, msg: Query) -> list[Outgoing]:
        out = []
        con = self.db.read()
        for batch_id in msg.batch_ids:
            state = self.batch_state(con, msg.device_id, batch_id, msg.msg_id)
            state = self._signed(state)
            out.append(Outgoing(topics.down(msg.device_id, "state"), envelope.encode(state)))
        return out

    def batch_state(
        self, con: sqlite3.Connection, device: str, batch_id: str, correlation_id: str
    ) -> BatchState:
        base = {
            "device_id": device,
            "msg_id": uuid.uuid4().hex,
            "sent_at": time.time(),
            "correlation_id": correlation_id,
            "batch_id": batch_id,
        }
        batch = con.execute(
            "SELECT id, page_count, complete_at FROM batches WHERE device_id = ? AND batch_id = ?",
            (device, batch_id),
        ).fetchone()
        if batch is None:
            return BatchState(known=False, **base)
        rows = con.execute(
            "SELECT pages.page_id, parts.id, parts.name, parts.sha256, parts.size, parts.state"
            " FROM pages JOIN parts ON parts.page_pk = pages.id WHERE pages.batch_pk = ?",
            (batch["id"],),
        ).fetchall()
        pages_known = con.execute(
            "SELECT COUNT(*) FROM pages WHERE batch_pk = ?", (batch["id"],)
        ).fetchone()[0]
        parts = []
        for r in rows:
            committed = r["state"] == "committed"
            gaps: tuple[tuple[int, int], ...] = ()
            if not committed:
                have = con.execute(
                    "SELECT offset, offset + length FROM chunks WHERE part_pk = ?", (r["id"],)
                ).fetchall()
                # Empty when all bytes are in but a worker is still verifying the part.
                gaps = chunking.missing([(h[0], h[1]) for h in have], r["size"])
            parts.append(
                PartState(
                    page_id=r["page_id"],
                    part=r["name"],
                    sha256=r["sha256"],
                    committed=committed,
                    missing=gaps,
                )
            )
        return BatchState(
            known=True,
            pages_known=pages_known,
            page_count=batch["page_count"],
            parts=tuple(parts),
            complete=batch["complete_at"] is not None,
            **base,
        )

    # -- replies ----------------------------------------------------------------------------

    def _receipt(
        self, device: str, batch_id: str, parts: tuple[PartState, ...], complete: bool
    ) -> Outgoing:
        receipt = Receipt(
            device_id=device,
            msg_id=uuid.uuid4().hex,
            sent_at=time.time(),
            batch_id=batch_id,
            committed=parts,
            complete=complete,
        )
        return Outgoing(topics.down(device, "receipt"), envelope.encode(self._signed(receipt)))

    def _reject(
        self, device: str, msg: Envelope | None, reason: str, detail: str, batch_id: str | None
    ) -> Outgoing:
        reject = Reject(
            device_id=device,
            msg_id=uuid.uuid4().hex,
            sent_at=time.time(),
            ref_msg_id=msg.msg_id if msg else None,
            batch_id=batch_id,
            reason=reason,
            detail=detail[:1000],
        )
        return Outgoing(topics.down(device, "reject"), envelope.encode(reject))
