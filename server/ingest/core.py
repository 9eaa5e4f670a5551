"""The ingest facade: :class:`Ingest` takes a group of messages and runs the stages top to
bottom — decode and check, ONE write transaction (devices, manifests, parts), flush, COMMIT,
then receipts and query answers (the whole contract is in :mod:`server.ingest`).

Owns: the order of the stages and the group's transaction. Must not: speak MQTT (no broker
here; ``server.ingest.mqtt`` publishes and acknowledges), or know archive work (review,
re-scans, records).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import envelope, topics
from protocol.messages import (
    BatchState,
    ChunkHeader,
    Envelope,
    Manifest,
    Query,
    Status,
    Telemetry,
)
from server.config import ServerSettings
from server.ingest import devices, manifests, parts, replies
from server.ingest.grouping import Group, Handled, Rejected
from server.ingest.limits import StationLimits
from server.ingest.replies import Outgoing
from server.store import keys
from server.store.db import OPERATIONAL_ERRORS, Connection, Database
from server.store.files import Store
from server.store.objects import ObjectStoreError

log = logging.getLogger(__name__)


class Ingest:
    def __init__(
        self,
        db: Database,
        store: Store,
        max_part_bytes: int = 512 * 1024 * 1024,
        signing_key: Ed25519PrivateKey | None = None,
        station_limits: StationLimits | None = None,
        accept_unenrolled: bool = False,
        key_dir: Path | None = None,
    ) -> None:
        self.db = db
        # Where the receipt key lives: an announced next key takes over at its cut-over,
        # checked once per group (server.store.keys, protocol/keyrotation.py).
        self.key_dir = key_dir
        self._cutover = keys.cutover_due(key_dir) if key_dir is not None else None
        # Only enrolled, active stations are heard (devices.enrolled); True only for tests
        # and a lab broker (setting accept_unenrolled_devices).
        self.accept_unenrolled = accept_unenrolled
        self.store = store
        self.max_part_bytes = max_part_bytes
        self.signing_key = signing_key
        # What a station may send (server.ingest.limits); the settings' defaults, capped at
        # max_part_bytes, when the caller gives none.
        self.limits = station_limits or StationLimits.from_settings(
            ServerSettings(max_part_bytes=max_part_bytes)
        )

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
            # The object store refusing (its quota, its keys, its bucket) is not a bug: the
            # caller tells the device to retry later and logs the cause once while it lasts
            # (server.ingest.mqtt), not a traceback per message.
            expected = isinstance(exc, ObjectStoreError)
            if len(messages) == 1:
                if expected:
                    log.debug("ingest failed on %s: %s", messages[0][0], exc)
                else:
                    log.exception("ingest failed on %s", messages[0][0])
                return [Handled([], exc)]
            log.log(
                logging.DEBUG if expected else logging.WARNING,
                "a group of %d messages failed (%s); handling them one by one",
                len(messages),
                exc,
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

    def batch_state(
        self, con: Connection, device: str, batch_id: str, correlation_id: str
    ) -> BatchState:
        return replies.batch_state(con, device, batch_id, correlation_id)

    # -- the stages of a group -------------------------------------------------------------

    def _group(self, messages: Sequence[tuple[str, bytes]]) -> list[list[Outgoing]]:
        if self._cutover is not None and time.time() >= self._cutover:
            assert self.key_dir is not None
            self.signing_key = keys.current(self.key_dir)
            self._cutover = None
            log.warning("the announced receipt key signs from now on (cut-over reached)")
        group = Group(len(messages), self.signing_key)
        todo: list[tuple[int, Envelope, bytes]] = []
        self._refuse_unenrolled(group, messages)
        for index, (topic, payload) in enumerate(messages):
            if index in group.unenrolled:
                continue
            item = self._decode(group, index, topic, payload)
            if item is not None:
                todo.append((index, *item))
        writes = [t for t in todo if not isinstance(t[1], Query)]
        group.queries = [(i, m) for i, m, _ in todo if isinstance(m, Query)]
        if writes or group.alerts:
            self._write(group, writes)
        self._receipts(group)
        for index, query in group.queries:  # read after the COMMIT
            group.replies[index] += replies.answer_query(self.db.read(), query, self.signing_key)
        return group.replies

    def _write(self, group: Group, writes: list[tuple[int, Envelope, bytes]]) -> None:
        """The group's one write transaction: apply, receive the parts, record alerts and
        completeness, flush everything to disk, COMMIT."""
        try:
            with self.db.tx() as con:
                parts.prefetch(con, group, [m for _, m, _ in writes])
                for index, msg, body in writes:
                    self._apply(con, group, index, msg, body)
                parts.receive(con, self.db, self.store, group)
                for kind, detail, device in group.alerts:
                    con.execute(
                        "INSERT INTO alerts(at, device_id, kind, detail) VALUES (?, ?, ?, ?)",
                        (time.time(), device, kind, detail[:2000]),
                    )
                for batch in group.batches.values():
                    batch.complete = parts.batch_complete(con, batch.pk)
                # Everything written, placed or renamed reaches the disk before COMMIT.
                self.store.flush(group.pending)
        except BaseException:
            group.pending.close()
            parts.forget(self.db, self.store, group)
            raise
        self.store.committed(group.pending)  # e.g. staged copies of uploaded objects go
        group.pending.close()

    def _receipts(self, group: Group) -> None:
        """One receipt per batch the group committed parts of, with its last message."""
        for batch in group.batches.values():
            if not batch.committed:
                continue
            log.info(
                "device %s batch %s: %d part(s) committed%s",
                batch.device,
                batch.batch_id,
                len(batch.committed),
                ", batch complete" if batch.complete else "",
            )
            group.replies[batch.last].append(
                replies.receipt(
                    batch.device,
                    batch.batch_id,
                    tuple(batch.committed),
                    batch.complete,
                    self.signing_key,
                )
            )

    def _refuse_unenrolled(self, group: Group, messages: Sequence[tuple[str, bytes]]) -> None:
        """Mark the messages of devices the fleet registry does not have as active: nothing
        of theirs is stored. One log line per device and group (not one per chunk: a
        stranger's flood must not flood the journal too); one signed reject per device and
        group to its first up-message, so that a station enrolled under another archive or
        revoked here hears why."""
        if self.accept_unenrolled:
            return
        where: dict[int, topics.ParsedTopic] = {}
        for index, (topic, _) in enumerate(messages):
            try:
                where[index] = topics.parse(topic)
            except topics.TopicError:
                continue  # _decode logs it
        allowed = devices.enrolled(self.db, (t.device_id for t in where.values()))
        counted: dict[str, int] = {}
        for index, parsed in where.items():
            device = parsed.device_id
            if device in allowed:
                continue
            group.unenrolled.add(index)
            counted[device] = counted.get(device, 0) + 1
            if counted[device] == 1 and parsed.direction == "up":
                detail = f"station {device} is not enrolled in this archive"
                group.replies[index].append(
                    replies.reject(device, None, "refused", detail, None, self.signing_key)
                )
        for device, count in counted.items():
            log.warning(
                "refused %d message(s) from device %r: not an enrolled station of this archive"
                " (enrol it with `sohoa-server device add`, or it was revoked)",
                count,
                device,
            )

    def _decode(
        self, group: Group, index: int, topic: str, payload: bytes
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
                parts.check_chunk(msg, frame.body)
                return msg, frame.body
            raise Rejected("bad_message", f"a {msg.kind} message on {where.kind}")
        except envelope.EnvelopeError as exc:
            log.warning("device %s: rejected payload on %s: %s", device, topic, exc)
            refusal = replies.reject(device, None, exc.reason, exc.detail, None, self.signing_key)
            group.replies[index].append(refusal)
        except Rejected as exc:
            group.rejected(index, device, where.kind, msg, exc)
        return None

    def _apply(self, con: Connection, group: Group, index: int, msg: Envelope, body: bytes) -> None:
        """One decoded message inside the group's transaction."""
        if isinstance(msg, Status):
            devices.record_status(con, msg)
        elif isinstance(msg, Telemetry):
            devices.record_telemetry(con, msg)
        elif isinstance(msg, ChunkHeader):
            try:
                parts.collect_chunk(con, self.store, group, index, msg, body)
            except Rejected as exc:  # nothing recorded for it yet
                group.rejected(index, msg.device_id, "chunk", msg, exc)
        elif isinstance(msg, Manifest):
            # A refused manifest is rolled back alone; its empty files (if any) stay, unused.
            con.execute("SAVEPOINT manifest")
            try:
                manifests.apply(con, self.db, self.store, group, index, msg, self.limits)
            except Rejected as exc:
                con.execute("ROLLBACK TO manifest")
                con.execute("RELEASE manifest")
                group.rejected(index, msg.device_id, "manifest", msg, exc)
            else:
                con.execute("RELEASE manifest")
                group.manifests += 1
