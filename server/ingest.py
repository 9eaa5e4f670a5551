"""Ingest: turn messages from devices into committed archive records. No MQTT in here.

:meth:`Ingest.handle_many` takes a group of (topic, payload) messages and returns, for each,
the messages to publish back; :meth:`Ingest.handle` is a group of one. The caller
(``server.mqtt_ingest``) publishes the replies and acknowledges the MQTT messages only after
``handle_many`` returned, i.e. after everything the group wrote is flushed and committed.

Group commit (why: each forced flush costs ~3–4 ms on our disks, and one message at a time
a page cost 17 of them in sequence: ~20 pages/s). A group is processed as one unit:

1. Decode and check every message (envelope, device, each chunk's own sha256) — no lock.
2. ONE write transaction (``BEGIN IMMEDIATE``) for the whole group: status, telemetry and
   manifests are applied in order (each manifest in a SAVEPOINT, so a refused one is rolled
   back alone); each chunk's part is looked up and its bytes collected per part.
3. Still inside that transaction, per part: the group's chunks are ``pwrite``n into the
   part's partial file. A part the recorded ranges plus the group's chunks cover (always the
   case for a part sent in one chunk: text and thumbnails) is re-hashed from the file and
   renamed into place — no chunk row is ever written for it; the others get their ranges
   recorded (``chunks`` rows). A part that fails its sha256 is forgotten (file and ranges)
   and refused (``corrupt``), the rest of the group is unaffected.
4. :meth:`Store.flush`: ``fdatasync`` of every file written or placed and ``fsync`` of every
   directory whose entries changed (once per directory per group), issued in parallel.
5. COMMIT — one WAL sync under ``synchronous=FULL`` for the whole group. Only now do the
   group's receipts (one per batch, listing every part the group committed) and query
   answers (read after the commit) exist, and only after ``handle_many`` returns are they
   published and the messages acknowledged.

So a chunk is PUBACKed, and a part receipted, only after its bytes and its row are durable,
and a part only after its sha256 was recomputed from the file. Per group: one parallel flush
round and one commit, whatever the number of pages in it.

Several workers (threads or processes over one database file and store, e.g. a shared
subscription): every store mutation happens inside the worker's write transaction, and
SQLite lets one writer at a time hold it; the conditional ``UPDATE ... WHERE state !=
'committed'`` that commits a part is the claim. A part is never written once its row says
committed, so a late duplicate can neither reopen nor touch an archived file.

Failures. A SIGKILL anywhere: nothing of the group was acknowledged, the broker redelivers
it, and what was left is harmless — bytes in a partial file without a committed range are
overwritten by the same verified bytes, and a part renamed into place but not committed is
taken over (re-hashed, flushed again) by the worker that next completes it. An exception in
a group (a full disk, an fsync error, a bug): the transaction rolls back, every part the
group touched that is not committed is forgotten (partial and placed files removed, ranges
deleted: after a failed fsync nothing the page cache says can be trusted, DESIGN §2), and
the messages are then handled one by one so that one bad message cannot sink the others;
one that fails alone is reported as failed (``Handled.error``) with no reply.

Every handler is idempotent: state lives only in the database and the files, and races are
settled by UNIQUE constraints and conditional updates.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
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
from server.db import OPERATIONAL_ERRORS, Connection, Database, Row
from server.store import Pending, Store, StoreError

log = logging.getLogger(__name__)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
CLAIM_LEASE = 300.0  # kept for old databases: a 'verifying' part is taken over after this
SERVER_ID = "sohoa-server"


_Signable = TypeVar("_Signable", BatchState, Receipt, Reject)


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


@dataclass
class Handled:
    """What :meth:`Ingest.handle_many` did with one message: the replies to publish, or the
    unexpected error that kept it from being handled (nothing of it was committed)."""

    replies: list[Outgoing]
    error: Exception | None = None


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


@dataclass
class _Part:
    """A part that receives bytes in this group."""

    pk: int
    device: str
    batch_id: str
    batch_pk: int
    page_pk: int
    page_no: int
    page_id: str
    name: str
    size: int
    sha256: str
    final: Path
    last: int  # the index of the group's last message with a chunk of it
    msg: ChunkHeader  # that message
    chunks: list[tuple[int, bytes]] = field(default_factory=list)


@dataclass
class _Batch:
    """A batch the group changed: its receipt goes out with its last message."""

    device: str
    batch_id: str
    pk: int
    last: int
    committed: list[PartState] = field(default_factory=list)
    complete: bool = False


_PART_SELECT = (
    "SELECT parts.id, parts.page_pk, parts.sha256, parts.size, parts.state, parts.name,"
    " parts.media_type, pages.page_no, pages.page_id, pages.batch_pk, batches.batch_id"
    " FROM parts JOIN pages ON pages.id = parts.page_pk"
    " JOIN batches ON batches.id = pages.batch_pk"
)


def _select_in(
    con: Connection, sql: str, args: list[object], values: list[object], per: int = 500
) -> list[Row]:
    """``sql`` ending in ``… IN`` with ``args`` then each slice of ``values`` as the list."""
    out: list[Row] = []
    for start in range(0, len(values), per):
        some = values[start : start + per]
        marks = ", ".join("?" * len(some))
        out += con.execute(f"{sql} ({marks})", [*args, *some]).fetchall()
    return out


class _Group:
    def __init__(self, size: int) -> None:
        self.replies: list[list[Outgoing]] = [[] for _ in range(size)]
        self.alerts: list[tuple[str, str, str]] = []  # (kind, detail, device)
        self.parts: dict[int, _Part] = {}
        self.batches: dict[tuple[str, str], _Batch] = {}
        self.queries: list[tuple[int, Query]] = []
        self.pending = Pending()
        # (device, page_id, part name) → its row, read for the whole group at once; read
        # again (once per manifest applied since) when a chunk names a part not in it
        self.known_parts: dict[tuple[str, str, str], Row] = {}
        self.wanted_pages: dict[str, set[str]] = {}
        self.manifests = 0
        self.prefetched_at: dict[str, int] = {}

    def touched(
        self, device: str, batch_id: str, batch_pk: int, index: int, committed: list[PartState]
    ) -> None:
        batch = self.batches.setdefault(
            (device, batch_id), _Batch(device, batch_id, batch_pk, index)
        )
        batch.last = max(batch.last, index)
        batch.committed += committed


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

    # -- entry points ----------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> list[Outgoing]:
        """One message, a group of one. Raises what kept it from being handled."""
        (result,) = self.handle_many([(topic, payload)])
        if result.error is not None:
            raise result.error
        return result.replies

    def handle_many(self, messages: Sequence[tuple[str, bytes]]) -> list[Handled]:
        """Handle a group of messages as one unit (module docstring); one result each, in
        order. Returns once everything the group committed is durable."""
        if not messages:
            return []
        try:
            return [Handled(replies) for replies in self._group(messages)]
        except Exception as exc:
            if len(messages) == 1:
                log.exception("ingest failed on %s", messages[0][0])
                return [Handled([], exc)]
            log.warning(
                "a group of %d messages failed (%s); handling them one by one", len(messages), exc
            )
        results: list[Handled] = []
        for message in messages:
            failed = results[-1].error if results else None
            if isinstance(failed, OPERATIONAL_ERRORS):
                # The database itself is unusable (locked past the busy timeout, I/O error):
                # do not wait that long once per message.
                results.append(Handled([], failed))
            else:
                results.append(self.handle_many([message])[0])
        return results

    def _group(self, messages: Sequence[tuple[str, bytes]]) -> list[list[Outgoing]]:
        group = _Group(len(messages))
        todo: list[tuple[int, Envelope, bytes]] = []
        for index, (topic, payload) in enumerate(messages):
            item = self._decode(group, index, topic, payload)
            if item is not None:
                todo.append((index, *item))
        writes = [t for t in todo if not isinstance(t[1], Query)]
        group.queries = [(i, m) for i, m, _ in todo if isinstance(m, Query)]
        if writes or group.alerts:
            try:
                with self.db.tx() as con:
                    self._prefetch_parts(con, group, [m for _, m, _ in writes])
                    for index, msg, body in writes:
                        self._apply(con, group, index, msg, body)
                    self._receive(con, group)
                    for kind, detail, device in group.alerts:
                        con.execute(
                            "INSERT INTO alerts(at, device_id, kind, detail) VALUES (?, ?, ?, ?)",
                            (time.time(), device, kind, detail[:2000]),
                        )
                    for batch in group.batches.values():
                        batch.complete = self._check_complete(con, batch.pk)
                    # Everything written, placed or renamed reaches the disk before COMMIT.
                    self.store.flush(group.pending)
            except BaseException:
                group.pending.close()
                self._forget(group)
                raise
            group.pending.close()
        for batch in group.batches.values():
            if batch.committed:
                log.info(
                    "device %s batch %s: %d part(s) committed%s",
                    batch.device,
                    batch.batch_id,
                    len(batch.committed),
                    ", batch complete" if batch.complete else "",
                )
                group.replies[batch.last].append(
                    self._receipt(
                        batch.device, batch.batch_id, tuple(batch.committed), batch.complete
                    )
                )
        for index, query in group.queries:
            group.replies[index] += self._query(query)
        return group.replies

    def _decode(
        self, group: _Group, index: int, topic: str, payload: bytes
    ) -> tuple[Envelope, bytes] | None:
        """The message and its body when there is work to do; else its reply (a reject, or
        nothing for a topic that is not ours) is in ``group.replies``."""
        try:
            where = topics.parse(topic)
        except topics.TopicError as exc:
            log.warning("ignored message on unknown topic %r: %s", topic, exc)
            return None
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
            if (
                (where.direction == "status" and isinstance(msg, Status))
                or (where.kind == "telemetry" and isinstance(msg, Telemetry))
                or (where.kind == "manifest" and isinstance(msg, Manifest))
                or (where.kind == "query" and isinstance(msg, Query))
            ):
                return msg, b""
            if where.kind == "chunk" and isinstance(msg, ChunkHeader):
                self._check_chunk(msg, frame.body)
                return msg, frame.body
            raise Rejected("bad_message", f"a {msg.kind} message on {where.kind}")
        except envelope.EnvelopeError as exc:
            log.warning("device %s: rejected payload on %s: %s", device, topic, exc)
            group.replies[index].append(self._reject(device, None, exc.reason, exc.detail, None))
        except Rejected as exc:
            self._rejected(group, index, device, where.kind, msg, exc)
        return None

    def _rejected(
        self,
        group: _Group,
        index: int,
        device: str,
        kind: str,
        msg: Envelope | None,
        exc: Rejected,
    ) -> None:
        log.warning("device %s: rejected %s: %s", device, kind, exc)
        if exc.alert:  # written with the group's transaction
            group.alerts.append((exc.reason, f"batch {exc.batch_id}: {exc.detail}", device))
        group.replies[index].append(self._reject(device, msg, exc.reason, exc.detail, exc.batch_id))

    def _apply(
        self, con: Connection, group: _Group, index: int, msg: Envelope, body: bytes
    ) -> None:
        """One decoded message inside the group's transaction."""
        if isinstance(msg, Status):
            self._status(con, msg)
        elif isinstance(msg, Telemetry):
            self._telemetry(con, msg)
        elif isinstance(msg, ChunkHeader):
            try:
                self._chunk(con, group, index, msg, body)
            except Rejected as exc:  # nothing recorded for it yet
                self._rejected(group, index, msg.device_id, "chunk", msg, exc)
        elif isinstance(msg, Manifest):
            # A refused manifest is rolled back alone; its empty files (if any) stay, unused.
            con.execute("SAVEPOINT manifest")
            try:
                self._manifest(con, group, index, msg)
            except Rejected as exc:
                con.execute("ROLLBACK TO manifest")
                con.execute("RELEASE manifest")
                self._rejected(group, index, msg.device_id, "manifest", msg, exc)
            else:
                con.execute("RELEASE manifest")
                group.manifests += 1

    # -- device status -----------------------------------------------------------------------

    def _touch_device(self, con: Connection, device_id: str) -> None:
        now = time.time()
        con.execute(
            "INSERT INTO devices(device_id, first_seen, last_seen) VALUES (?, ?, ?) "
            "ON CONFLICT(device_id) DO UPDATE SET last_seen = excluded.last_seen",
            (device_id, now, now),
        )

    def _status(self, con: Connection, msg: Status) -> None:
        self._touch_device(con, msg.device_id)
        con.execute(
            "UPDATE devices SET status = ?, agent_version = ?, boot_id = ? WHERE device_id = ?",
            (msg.state, msg.agent_version, msg.boot_id, msg.device_id),
        )

    def _telemetry(self, con: Connection, msg: Telemetry) -> None:
        data = msg.model_dump(exclude={"kind", "device_id", "msg_id", "correlation_id"})
        self._touch_device(con, msg.device_id)
        con.execute(
            "UPDATE devices SET telemetry = ? WHERE device_id = ?",
            (json.dumps(data), msg.device_id),
        )

    # -- manifest ---------------------------------------------------------------------------

    @staticmethod
    def _check_station(con: Connection, msg: Manifest) -> None:
        """A station in the fleet registry (server/fleet.py) must be active and must have
        signed the manifest with its enrolled key; a revoked one is refused outright. A
        device the registry does not know has no broker identity under dynamic security;
        it can only come through a broker that authenticates without it (the embedded test
        broker, a legacy password file), and over USB it never gets this far
        (server/bundle.check_station)."""
        row = con.execute(
            "SELECT state, public_key FROM stations WHERE device_id = ?", (msg.device_id,)
        ).fetchone()
        if row is None:
            return
        if row[0] != "active":
            raise Rejected("refused", f"station {msg.device_id} is {row[0]}", msg.batch_id, True)
        if not signing.verify(msg, msg.signature, str(row[1])):
            raise Rejected(
                "refused", "manifest not signed by the station's enrolled key", msg.batch_id, True
            )

    def _manifest(self, con: Connection, group: _Group, index: int, msg: Manifest) -> None:
        """Upsert the batch, its pages and parts; commit (and receipt) empty parts."""
        device = msg.device_id
        self._check_station(con, msg)
        committed_now: list[PartState] = []
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
            for part in page.parts:
                if part.size > self.max_part_bytes:
                    raise Rejected(
                        "too_large", f"part {part.name} of {part.size} bytes", msg.batch_id
                    )
        # Every page, then every part, in one batch and one read each (a round trip per
        # statement on PostgreSQL); a conflict anywhere rolls the whole manifest back.
        con.executemany(
            "INSERT INTO pages(batch_pk, device_id, page_id, page_no, capture_sha256,"
            " capture_size, dpi, width_px, height_px, colour, flags, ocr_confidence,"
            " decisions, source_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            [
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
                )
                for page in msg.pages
            ],
        )
        rows = {
            r["page_id"]: r
            for r in _select_in(
                con,
                "SELECT id, page_id, batch_pk, capture_sha256 FROM pages"
                " WHERE device_id = ? AND page_id IN",
                [device],
                [page.page_id for page in msg.pages],
            )
        }
        for page in msg.pages:
            row = rows[page.page_id]
            if row["capture_sha256"] != page.capture_sha256 or row["batch_pk"] != batch["id"]:
                self._conflict(device, msg.batch_id, f"page {page.page_id} capture differs")
        con.executemany(
            "INSERT INTO parts(page_pk, name, sha256, size, media_type)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [
                (rows[page.page_id]["id"], p.name, p.sha256, p.size, p.media_type)
                for page in msg.pages
                for p in page.parts
            ],
        )
        held_parts = {
            (r["page_pk"], r["name"]): r
            for r in _select_in(
                con,
                "SELECT id, page_pk, name, sha256, size, state FROM parts WHERE page_pk IN",
                [],
                [rows[page.page_id]["id"] for page in msg.pages],
            )
        }
        for page in msg.pages:
            row = rows[page.page_id]
            for part in page.parts:
                held = held_parts[(row["id"], part.name)]
                if held["sha256"] != part.sha256 or held["size"] != part.size:
                    self._conflict(
                        device, msg.batch_id, f"page {page.page_id} part {part.name} differs"
                    )
                if part.size == 0 and held["state"] != "committed":
                    if part.sha256 != EMPTY_SHA256:
                        raise Rejected(
                            "corrupt", "empty part with a non-empty sha256", msg.batch_id
                        )
                    path = self.store.part_path(
                        device,
                        msg.batch_id,
                        page.page_no,
                        page.page_id,
                        part.name,
                        part.media_type,
                    )
                    if not self.store.place(path, EMPTY_SHA256, 0, group.pending):
                        raise StoreError(f"an empty file at {path} does not verify")
                    state = self._commit_part(
                        con, held["id"], page.page_id, part.name, part.sha256, path, row["id"], b""
                    )
                    if state is not None:
                        committed_now.append(state)
        group.touched(device, msg.batch_id, batch["id"], index, committed_now)
        log.info(
            "device %s batch %s: manifest with %d page(s)", device, msg.batch_id, len(msg.pages)
        )

    def _conflict(self, device: str, batch_id: str, detail: str) -> None:
        # Same key, different bytes: never overwrite an archived record. A human must look.
        raise Rejected("conflict", detail, batch_id, alert=True)

    # -- chunk ------------------------------------------------------------------------------

    @staticmethod
    def _check_chunk(msg: ChunkHeader, body: bytes) -> None:
        if len(body) != msg.length:
            raise Rejected(
                "corrupt", f"chunk body {len(body)} bytes, header {msg.length}", msg.batch_id
            )
        if chunking.sha256_hex(body) != msg.chunk_sha256:
            raise Rejected("corrupt", f"chunk at {msg.offset} fails its sha256", msg.batch_id)

    @staticmethod
    def _prefetch_parts(con: Connection, group: _Group, messages: list[Envelope]) -> None:
        """The parts the group's chunks name, in one query per device (instead of one per
        chunk: a round trip each on PostgreSQL). Parts announced by a manifest of this very
        group are read again by :meth:`_chunk` (:meth:`_read_parts`)."""
        for msg in messages:
            if isinstance(msg, ChunkHeader):
                group.wanted_pages.setdefault(msg.device_id, set()).add(msg.page_id)
        for device in group.wanted_pages:
            Ingest._read_parts(con, group, device)

    @staticmethod
    def _read_parts(con: Connection, group: _Group, device: str) -> None:
        ids = sorted(group.wanted_pages.get(device, ()))
        for start in range(0, len(ids), 500):
            some = ids[start : start + 500]
            sql = (
                f"{_PART_SELECT} WHERE pages.device_id = ?"  # placeholders only
                f" AND pages.page_id IN ({', '.join('?' * len(some))})"
            )
            for row in con.execute(sql, (device, *some)):
                group.known_parts[(device, row["page_id"], row["name"])] = row
        group.prefetched_at[device] = group.manifests

    def _chunk(
        self, con: Connection, group: _Group, index: int, msg: ChunkHeader, body: bytes
    ) -> None:
        """Collect a (checked) chunk for its part; written by :meth:`_receive`."""
        device = msg.device_id
        key = (device, msg.page_id, msg.part)
        part = group.known_parts.get(key)
        if part is None and group.prefetched_at.get(device, -1) < group.manifests:
            self._read_parts(con, group, device)  # announced by a manifest of this group?
            part = group.known_parts.get(key)
        if part is None:  # unknown (or not among the group's wanted pages)
            part = con.execute(
                f"{_PART_SELECT} WHERE pages.device_id = ? AND pages.page_id = ?"
                " AND parts.name = ?",
                (device, msg.page_id, msg.part),
            ).fetchone()
        if part is None or part["batch_id"] != msg.batch_id:
            raise Rejected("unknown_part", f"page {msg.page_id} part {msg.part}", msg.batch_id)
        if part["sha256"] != msg.part_sha256 or part["size"] != msg.part_size:
            raise Rejected("conflict", f"chunk names another version of {msg.part}", msg.batch_id)
        if part["state"] == "committed":
            return  # a duplicate after the commit: the receipt already went out
        if msg.offset + msg.length > part["size"]:
            raise Rejected("bad_message", "chunk runs past the end of its part", msg.batch_id)
        held = group.parts.get(part["id"])
        if held is None:
            final = self.store.part_path(
                device, msg.batch_id, part["page_no"], msg.page_id, msg.part, part["media_type"]
            )
            held = group.parts[part["id"]] = _Part(
                pk=part["id"],
                device=device,
                batch_id=msg.batch_id,
                batch_pk=part["batch_pk"],
                page_pk=part["page_pk"],
                page_no=part["page_no"],
                page_id=msg.page_id,
                name=msg.part,
                size=part["size"],
                sha256=part["sha256"],
                final=final,
                last=index,
                msg=msg,
            )
        held.chunks.append((msg.offset, body))
        held.last, held.msg = index, msg

    def _receive(self, con: Connection, group: _Group) -> None:
        """Write the group's chunks; place and commit the parts they complete; record the
        ranges of the others. Flushed by the caller before its COMMIT."""
        parts = list(group.parts.values())
        complete = []
        for part in parts:
            ranges = [(offset, offset + len(body)) for offset, body in part.chunks]
            if not chunking.covered(ranges, part.size):  # else: no need to ask
                have = con.execute(
                    'SELECT "offset", "offset" + length FROM chunks WHERE part_pk = ?', (part.pk,)
                ).fetchall()
                ranges += [(r[0], r[1]) for r in have]
            complete.append(chunking.covered(ranges, part.size))
        # The file work, in this thread: creating files in one directory serializes in the
        # kernel anyway, and I/O threads here only fought over the GIL (measured: no gain
        # with 2-4 threads, a loss with 16).
        placed = self._write_parts(parts, complete, group.pending)
        ranges_of: list[tuple[int, int, int]] = []
        committed: list[int] = []
        texts: list[tuple[int, str]] = []
        claimed = self._claim(
            con,
            [
                (part.pk, part.final)
                for part, done, ok in zip(parts, complete, placed, strict=True)
                if done and ok
            ],
        )
        for part, done, ok in zip(parts, complete, placed, strict=True):
            if not done:
                ranges_of += [(part.pk, offset, len(body)) for offset, body in part.chunks]
            elif ok:
                text = None
                if part.name == "text":
                    text = next((b for o, b in part.chunks if o == 0 and len(b) == part.size), None)
                if part.pk in claimed:
                    state = self._committed(
                        con,
                        part.page_id,
                        part.name,
                        part.sha256,
                        part.final,
                        part.page_pk,
                        text,
                        texts,
                    )
                    committed.append(part.pk)
                    group.touched(part.device, part.batch_id, part.batch_pk, part.last, [state])
                    log.debug(
                        "device %s batch %s page %d: %s committed (%d bytes)",
                        part.device,
                        part.batch_id,
                        part.page_no,
                        part.name,
                        part.size,
                    )
            else:
                con.execute("DELETE FROM chunks WHERE part_pk = ?", (part.pk,))
                where = f"{part.batch_id}/{part.page_id}/{part.name}"
                group.alerts.append(("corrupt_part", where, part.device))
                detail = f"{part.name} of page {part.page_id} fails its sha256; send it again"
                self._rejected(
                    group,
                    part.last,
                    part.device,
                    "chunk",
                    part.msg,
                    Rejected("corrupt", detail, part.batch_id),
                )
        if texts:
            self.db.index_texts(con, texts)
        if ranges_of:
            con.executemany(
                'INSERT INTO chunks(part_pk, "offset", length) VALUES (?, ?, ?)'
                " ON CONFLICT DO NOTHING",
                ranges_of,
            )
        if committed:  # ranges recorded by earlier groups
            con.executemany("DELETE FROM chunks WHERE part_pk = ?", [(pk,) for pk in committed])

    def _write_parts(
        self, parts: list[_Part], complete: list[bool], pending: Pending
    ) -> list[bool]:
        """Write each part's chunks of this group; verify and place those they complete
        (False: it fails its sha256, and its partial file is gone)."""
        placed = []
        for part, done in zip(parts, complete, strict=True):
            self.store.write(part.final, part.size, part.chunks, pending)
            placed.append(done and self.store.place(part.final, part.sha256, part.size, pending))
        return placed

    def _commit_part(
        self,
        con: Connection,
        part_pk: int,
        page_id: str,
        name: str,
        sha256: str,
        final: Path,
        page_pk: int,
        text: bytes | None = None,
    ) -> PartState | None:
        """Mark a verified, placed part committed (with the group's COMMIT); its ranges are
        the caller's to delete. The conditional UPDATE is the claim: None when the part
        already was committed. ``text``: the verified bytes of a text part, if at hand."""
        if part_pk not in self._claim(con, [(part_pk, final)]):
            return None
        return self._committed(con, page_id, name, sha256, final, page_pk, text)

    @staticmethod
    def _claim(con: Connection, parts: list[tuple[int, Path]]) -> set[int]:
        """Mark parts (id, final path) committed unless they already are, in one statement
        per 300 parts (round trips on PostgreSQL); the ids this call claimed."""
        claimed: set[int] = set()
        now = time.time()
        for start in range(0, len(parts), 300):
            some = parts[start : start + 300]
            cases = " ".join("WHEN ? THEN ?" for _ in some)
            marks = ", ".join("?" * len(some))
            sql = (
                f"UPDATE parts SET state = 'committed', path = CASE id {cases} END,"  # noqa: S608
                f" committed_at = ?, claimed_at = NULL WHERE id IN ({marks})"  # (placeholders)
                " AND state != 'committed' RETURNING id"
            )
            args: list[object] = [v for pk, final in some for v in (pk, str(final))]
            rows = con.execute(sql, [*args, now, *(pk for pk, _ in some)]).fetchall()
            claimed |= {int(r[0]) for r in rows}
        return claimed

    def _committed(
        self,
        con: Connection,
        page_id: str,
        name: str,
        sha256: str,
        final: Path,
        page_pk: int,
        text: bytes | None,
        texts: list[tuple[int, str]] | None = None,
    ) -> PartState:
        """A claimed part's receipt line; a text part's text is indexed now, or added to
        ``texts`` for the caller to index with the others (one batch)."""
        if name == "text":
            data = final.read_bytes() if text is None else text
            decoded = data.decode("utf-8", errors="replace")
            if texts is None:
                self.db.index_text(con, page_pk, decoded)
            else:
                texts.append((page_pk, decoded))
        return PartState(page_id=page_id, part=name, sha256=sha256, committed=True)

    def _forget(self, group: _Group) -> None:
        """After a failed group: every part it touched that is not committed loses its files
        and ranges (the device sends it again). Never raises: the group's error matters."""
        if not group.parts:
            return
        try:
            with self.db.tx() as con:
                for part in group.parts.values():
                    row = con.execute("SELECT state FROM parts WHERE id = ?", (part.pk,)).fetchone()
                    if row is None or row["state"] == "committed":
                        continue
                    con.execute("DELETE FROM chunks WHERE part_pk = ?", (part.pk,))
                    self.store.discard(part.final)
        except Exception:
            log.exception("could not forget the parts of a failed group")

    def _check_complete(self, con: Connection, batch_pk: int) -> bool:
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
        self, con: Connection, device: str, batch_id: str, correlation_id: str
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
                    'SELECT "offset", "offset" + length FROM chunks WHERE part_pk = ?', (r["id"],)
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
        return Outgoing(topics.down(device, "reject"), envelope.encode(self._signed(reject)))
