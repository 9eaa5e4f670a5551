"""Store-and-forward: push ready batches to the archive until it has receipted every part.

The flow of one round (:meth:`Syncer.run` repeats it until done, stopped or out of time):

1. ``announce``  — publish the manifests of batches the server does not know (or knows only
   partly); they are idempotent upserts at the server.
2. ``reconcile`` — ask the server what it holds (``query`` → ``state``); record every part it
   has committed (after checking its sha256 against ours) and learn the missing byte ranges.
3. ``send``      — publish only what is missing, text first across all batches, a bounded
   window in flight.
4. ``finish``    — a batch whose every travelling part is receipted is done: its local files
   are released (the capture only if the capture itself was receipted).

Nothing here is trusted to the broker: what it drops shows up as missing in the next round.

Besides receipts, states and rejects, the server sends commands: a re-scan request
(``Command(command="rescan")``) is recorded in ``rescan.json`` (:mod:`agent.outbox.rescan`) and only
then acknowledged to the broker; ``status`` lists it for the technician.
"""

from __future__ import annotations

import logging
import math
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent import messages
from agent.config import AgentSettings
from agent.errors import StorageError
from agent.outbox import outbox as ob
from agent.outbox import rescan, storage
from agent.uplink import assignment, enrol, transfer
from agent.uplink.mqtt_link import Incoming, MqttLink
from protocol import chunking, envelope, topics
from protocol.messages import (
    PART_PRIORITY,
    BatchState,
    ChunkHeader,
    Command,
    FondsAssignment,
    Query,
    Receipt,
    Reject,
)

log = logging.getLogger(__name__)

QUERY_TIMEOUT = 30.0
QUERY_REPEAT = 8.0  # re-ask after this long without any answer (a ~300-byte publish)
# Batches asked about, announced and sent per round. The archive answers a query with one
# state per batch listing every part (~2 KB for 10 pages): 50 batches were 12 s of a
# 64 kbit/s link before a chunk could leave, and a station with a backlog spent each short
# run reconciling (the season soak: 500 pages never converged). A round of 8 batches asks
# ~16 KB; the next round takes the next ones.
QUERY_BATCHES = 8
# After the last chunk of a round, how long to wait for the receipts of what was sent before
# asking again: the broker PUBACKs a chunk when it has it, the server's receipt follows a
# commit later, one down-link delay behind. Waiting for it ends a batch without one more
# query round trip (~0.7 s on 2G); if it does not come, the next round's query finds out.
RECEIPT_WAIT = 5.0
# While sending, how long a cut link may take to come back before the round ends: paho
# reconnects by itself (0.3 s, doubling) and re-sends what was in flight, so the plan stays
# valid; ending the round instead costs a drained window and a query round trip per cut.
RECONNECT_WAIT = 30.0
MAX_ATTEMPTS = 20  # rounds in a row without progress before a batch is quarantined
MANIFEST_BUDGET = transfer.MANIFEST_BUDGET  # kept for importers of agent.uplink.sync


@dataclass
class SyncReport:
    batches_done: int = 0
    pages_done: int = 0
    parts_acked: int = 0
    chunks_sent: int = 0
    bytes_sent: int = 0
    rounds: int = 0
    pending_pages: int = 0
    rejects: list[str] = field(default_factory=list)
    forged: int = 0  # receipts/states refused for a bad signature
    chunk_lengths: list[int] = field(default_factory=list)  # bodies published, in order
    rescans: list[rescan.RescanRequest] = field(default_factory=list)  # new this run

    @property
    def finished(self) -> bool:
        return self.pending_pages == 0


@dataclass(frozen=True)
class _PartWork:
    """One part still missing at the server, and which byte ranges of it."""

    priority: tuple[int, float, int]
    batch_id: str
    page_id: str
    part: str
    path: Path
    part_size: int
    part_sha256: str
    gaps: tuple[tuple[int, int], ...]


class Syncer:
    def __init__(
        self,
        settings: AgentSettings,
        outbox: ob.Outbox,
        link: MqttLink,
        agent_version: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.link = link
        self.agent_version = agent_version
        self.clock = clock
        self.device_id = settings.device_id
        self._states: dict[str, BatchState] = {}
        self._verified: set[tuple[str, str, str]] = set()
        self._no_progress: dict[str, int] = {}
        self._cap = chunking.MAX_CHUNK_SIZE  # lowered when the broker refuses a size
        self._pause_until = 0.0  # the archive said "retry later" (Reject retry_after)
        # Bytes a chunk costs besides its body: our frame and binary header, and MQTT's
        # PUBLISH header (fixed header, topic, packet id, properties length).
        self._chunk_overhead = (
            envelope.chunk_frame_overhead(self.device_id)
            + 9
            + len(topics.up(self.device_id, "chunk"))
        )

    # -- what is pending -----------------------------------------------------------------

    def pending_pages(self) -> int:
        """Pages of the batches still to send, from the index's counters (O(batches))."""
        pending = {b.batch_id for b in transfer.sendable_batches(self.outbox)}
        return sum(c.pages for b, c in self.outbox.batches_with_counts() if b.batch_id in pending)

    # -- the loop ----------------------------------------------------------------------------

    def run(self, timeout: float, stop: threading.Event | None = None) -> SyncReport:
        report = SyncReport()
        deadline = self.clock() + timeout
        backoff = 1.0
        while self.clock() < deadline and not (stop and stop.is_set()):
            batches = transfer.sendable_batches(self.outbox)  # never a secret (mật) batch
            if self.settings.sync_masters:
                transfer.add_masters(self.outbox, batches)
            if not batches:
                break
            if self._paused():
                self._drain_inbox(report, wait=min(1.0, max(0.01, deadline - self.clock())))
                continue
            if not self.link.connected.wait(min(5.0, max(0.0, deadline - self.clock()))):
                continue  # paho reconnects on its own; the outbox keeps everything meanwhile
            report.rounds += 1
            before = report.parts_acked + report.chunks_sent
            # Ask first, then announce only what the archive lacks. A new process (after a
            # restart or a power cut) holds no batch state: announcing its whole backlog
            # again cost the link every manifest and the archive a write each, and a slow
            # archive then fell behind the station's repeats for good (the season soak: 49
            # manifests per run, the query behind them never answered in time).
            batches = self._working_set(batches)
            states = self._reconcile(batches, report, deadline, stop)
            announced = self._announce(batches, states)
            if announced:
                states.update(self._reconcile(announced, report, deadline, stop))
            if states:
                work = self._plan(batches, states)
                complete = self._send(work, report, deadline, stop)
                self.link.drain(min(QUERY_TIMEOUT, max(0.0, deadline - self.clock())))
                if complete:
                    self._await_receipts(work, report, deadline)
            self._finish(batches, report)
            if report.parts_acked + report.chunks_sent == before:
                # Only a batch the server answered for can be blamed for not moving; a
                # server or link that is down is waited out, never a reason to quarantine.
                self._count_no_progress([b for b in batches if b.batch_id in states])
                # Backoff with jitter: many communes reconnect when the tower comes back.
                jitter = random.uniform(0.5, 1.0)  # noqa: S311 - timing, not security
                time.sleep(min(backoff, max(0.0, deadline - self.clock())) * jitter)
                backoff = min(backoff * 2, 30.0)
            else:
                backoff = 1.0
                # "In a row": the daemon keeps one Syncer for days, and a cut now and then
                # must not add up to a quarantine.
                self._no_progress.clear()
        self._drain_inbox(report)
        report.pending_pages = self.pending_pages()
        if report.chunk_lengths:
            between = self.link.mean_time_between_cuts()
            log.info(
                "sync run: %d chunks, bodies %d-%d bytes (median %d); %d link cut(s)%s",
                len(report.chunk_lengths),
                min(report.chunk_lengths),
                max(report.chunk_lengths),
                sorted(report.chunk_lengths)[len(report.chunk_lengths) // 2],
                getattr(self.link, "cuts", 0),
                f", {between:.0f} s connected per cut" if between else "",
            )
        return report

    def _working_set(self, batches: list[ob.BatchRecord]) -> list[ob.BatchRecord]:
        """This round's batches, at most QUERY_BATCHES: those with a page, thumbnail or text
        not yet receipted first (they travel before any master), each group oldest first."""
        if len(batches) <= QUERY_BATCHES:
            return batches

        def masters_only(batch: ob.BatchRecord) -> bool:
            return all(
                held.acked
                for page in self.outbox.pages(batch.batch_id)
                for name, held in page.parts.items()
                if name != "capture"
            )

        return sorted(batches, key=masters_only)[:QUERY_BATCHES]  # stable: oldest first

    # -- 1. announce -------------------------------------------------------------------------

    def _announce(
        self, batches: list[ob.BatchRecord], answered: dict[str, BatchState]
    ) -> list[ob.BatchRecord]:
        """Send the manifests of the batches the archive just said it does not know, or
        knows without some of their parts; the batches announced. A batch it did not answer
        for is asked about again next round, not announced blind."""
        announced = []
        for batch in batches:
            state = answered.get(batch.batch_id)
            if state is None:
                continue
            pages = self.outbox.pages(batch.batch_id)
            if state.known and not self._server_lacks_parts(state, pages):
                continue
            announced.append(batch)
            key = enrol.station_key(self.settings.data_dir)  # signs every manifest
            for manifest in transfer.build_manifests(
                self.device_id, batch, pages, self.agent_version, key
            ):
                payload = envelope.encode(manifest)
                self.link.publish(topics.up(self.device_id, "manifest"), payload)
        return announced

    def _server_lacks_parts(self, state: BatchState, pages: list[ob.PageRecord]) -> bool:
        if state.pages_known < len(pages):
            return True
        known = {(p.page_id, p.part) for p in state.parts}
        return any((page.page_id, name) not in known for page in pages for name in page.parts)

    # -- 2. reconcile ------------------------------------------------------------------------

    def _reconcile(
        self,
        batches: list[ob.BatchRecord],
        report: SyncReport,
        deadline: float,
        stop: threading.Event | None = None,
    ) -> dict[str, BatchState]:
        ids = [b.batch_id for b in batches][:QUERY_BATCHES]
        query = Query(
            device_id=self.device_id,
            msg_id=uuid.uuid4().hex,
            sent_at=time.time(),
            batch_ids=tuple(ids),
        )
        payload = envelope.encode(query)
        if not self.link.publish(topics.up(self.device_id, "query"), payload):
            return {}
        answers: dict[str, BatchState] = {}
        until = min(deadline, self.clock() + QUERY_TIMEOUT)
        ask_again = self.clock() + QUERY_REPEAT
        while len(answers) < len(ids) and self.clock() < until and not (stop and stop.is_set()):
            if not answers and self.clock() >= ask_again:
                # The broker may have dropped the question (Mosquitto 2.0 loses messages for
                # an offline shared subscription after its own restart): ask once more
                # rather than sit out the whole timeout. Answers are idempotent.
                self.link.publish(topics.up(self.device_id, "query"), payload, timeout=5.0)
                ask_again = self.clock() + QUERY_REPEAT
            for msg in self._drain_inbox(report, wait=0.2):
                if (
                    isinstance(msg, BatchState)
                    and msg.correlation_id == query.msg_id
                    and self._authentic(msg, report)
                ):
                    answers[msg.batch_id] = msg
        self._states.update(answers)
        for state in answers.values():
            report.parts_acked += transfer.apply_committed(self.outbox, state.batch_id, state.parts)
        return answers

    def _drain_inbox(self, report: SyncReport, wait: float = 0.0) -> list[object]:
        """Handle everything the server sent; return the decoded messages."""
        out: list[object] = []
        try:
            first = self.link.inbox.get(timeout=wait) if wait else self.link.inbox.get_nowait()
        except queue.Empty:
            return out
        items = [first]
        while True:
            try:
                items.append(self.link.inbox.get_nowait())
            except queue.Empty:
                break
        for item in items:
            try:
                parsed = topics.parse(item.topic)
                frame = envelope.decode(item.payload)
            except (topics.TopicError, envelope.EnvelopeError) as exc:
                log.warning("ignored a message on %s: %s", item.topic, exc)
                self._ack(item)  # it will never decode: do not have it redelivered for ever
                continue
            msg = frame.message
            if parsed.direction != "down" or parsed.device_id != self.device_id:
                self._ack(item)
                continue
            if isinstance(msg, Command):
                if self._on_command(msg, report):
                    self._ack(item)
            elif isinstance(msg, Receipt):
                if self._authentic(msg, report):
                    report.parts_acked += transfer.apply_committed(
                        self.outbox, msg.batch_id, msg.committed
                    )
            elif isinstance(msg, Reject) and self._authentic(msg, report):
                self._on_reject(msg, report)
            elif isinstance(msg, FondsAssignment):
                self._on_assignment(msg, report)
                self._ack(item)
            out.append(msg)
        return out

    def handle_inbox(self) -> SyncReport:
        """Handle what the server sent while nothing was being synced (the daemon, idle)."""
        report = SyncReport()
        self._drain_inbox(report)
        return report

    def collect_commands(self, wait: float) -> SyncReport:
        """Connected with nothing to send: give the broker ``wait`` seconds to deliver what
        it queued for us while we were offline (commands), and handle it."""
        report = SyncReport()
        deadline = self.clock() + wait
        while self.clock() < deadline:
            self._drain_inbox(report, wait=min(0.2, max(0.01, deadline - self.clock())))
        return report

    def _ack(self, item: object) -> None:
        if isinstance(item, Incoming) and item.mid:
            self.link.ack(item)

    def _on_command(self, msg: Command, report: SyncReport) -> bool:
        """Handle one command; True once it may be acknowledged to the broker (recorded, or
        of no use to keep). Commands are not signed: a re-scan request only shows a line to
        the technician, it never makes the agent delete anything."""
        if msg.command == "ping":
            log.info("ping from the server (msg %s)", msg.msg_id)
            return True
        if msg.command == "archive_key":
            # The archive's next receipt key, signed by its current one: trusted beside it
            # until the cut-over, then alone. A forged one is refused and changes nothing.
            try:
                enrol.record_rotation(
                    self.settings.data_dir, self.settings.server_public_key, msg.note
                )
            except enrol.EnrolError as exc:
                log.error("ignored an archive key announcement: %s", exc.detail)
            return True
        if msg.page_id is None:
            log.warning("re-scan command %s names no page; ignored", msg.msg_id)
            return True
        page_no: int | None = None
        source_name: str | None = None
        if msg.batch_id is not None:
            try:
                self.outbox.batch(msg.batch_id)  # KeyError first: never open an unknown batch
                page = self.outbox.page(msg.batch_id, msg.page_id)
                page_no, source_name = page.page_no, page.source_name
            except (KeyError, OSError, ValueError):
                pass  # a batch this outbox no longer knows: the ids are still shown
        request = rescan.RescanRequest(
            page_id=msg.page_id,
            batch_id=msg.batch_id or "",
            note=msg.note,
            received_at=time.time(),
            msg_id=msg.msg_id,
            page_no=page_no,
            source_name=source_name,
        )
        try:
            added = rescan.add(self.settings.data_dir, request)
        except (StorageError, OSError, ValueError) as exc:
            # Not acknowledged: the broker delivers it again at the next connect.
            log.error("could not record re-scan request %s: %s", msg.msg_id, exc)
            return False
        if added:
            report.rescans.append(request)
            log.warning(
                "device %s batch %s page %s: %s",
                self.device_id,
                request.batch_id,
                request.page_id,
                describe(request, "en"),
            )
        return True

    def _authentic(self, msg: Receipt | BatchState | Reject, report: SyncReport) -> bool:
        """A receipt, state or reject that does not carry the pinned archive key's
        signature is ignored: it could make us delete pages or quarantine a batch."""
        if transfer.authentic(msg, transfer.archive_keys(self.settings)):
            return True
        report.forged += 1
        return False

    def _on_assignment(self, msg: FondsAssignment, report: SyncReport) -> None:
        """The fonds the archive's admin assigned this station (agent.uplink.assignment):
        kept only when signed by a key this station trusts; a forged one changes nothing."""
        try:
            assignment.record(
                self.settings.data_dir, self.device_id, transfer.archive_keys(self.settings), msg
            )
        except assignment.AssignmentRefused as exc:
            report.forged += 1
            log.error("ignored a fonds assignment: %s", exc)
        except OSError as exc:
            log.error("could not keep the fonds assignment: %s", exc)

    def _on_reject(self, msg: Reject, report: SyncReport) -> None:
        report.rejects.append(transfer.apply_reject(self.outbox, msg))  # conflict: quarantine
        if msg.reason == "too_large":
            self._cap = max(chunking.MIN_CHUNK_SIZE, self.chunk_size() // 2)
        elif msg.reason == "retry_later":
            # The archive could not store (its disk is full): stop sending and wait, rather
            # than send the same parts into it round after round.
            until = self.clock() + max(1.0, msg.retry_after)
            if until > self._pause_until:
                log.warning("the archive asks to wait %.0f s: %s", msg.retry_after, msg.detail)
            self._pause_until = max(self._pause_until, until)

    def _paused(self) -> bool:
        return self.clock() < self._pause_until

    # -- 3. send ---------------------------------------------------------------------------

    def _plan(
        self, batches: list[ob.BatchRecord], states: dict[str, BatchState]
    ) -> list[_PartWork]:
        """What the server lacks, text first across all batches (PART_PRIORITY)."""
        work: list[_PartWork] = []
        masters = transfer.masters_may_travel(
            self.settings, time.localtime().tm_hour, self.link.upload_rate()
        )
        for batch in batches:
            state = states.get(batch.batch_id)
            if state is None or not state.known:
                continue
            pages = {p.page_id: p for p in self.outbox.pages(batch.batch_id)}
            for ps in state.parts:
                page = pages.get(ps.page_id)
                held = page.parts.get(ps.part) if page else None
                if page is None or held is None or held.acked or ps.committed or not ps.missing:
                    continue
                if ps.part == "capture" and not masters:
                    continue  # outside the masters' hours or on a slow link: they wait
                path = self.outbox.batch_dir(batch.batch_id) / held.file
                if not self._verify(batch.batch_id, page, held, path):
                    break
                prio = (PART_PRIORITY[ps.part], batch.created_at, page.page_no)
                work.append(
                    _PartWork(
                        prio,
                        batch.batch_id,
                        page.page_id,
                        ps.part,
                        path,
                        held.size,
                        held.sha256,
                        ps.missing,
                    )
                )
        work.sort(key=lambda w: w.priority)
        return work

    def chunk_size(self) -> int:
        """The chunk size for the next publishes: at most the setting, at most what the broker
        accepts, and small enough that one publish takes at most 1/8 of the keepalive at the
        rate the link has been carrying (one 60 KB publish at 20 kbit/s with a 10 s keepalive
        never completed; 4 KB ones did — docs/research/reliability.md §8.5)."""
        size = min(self.settings.chunk_size, self._cap)
        if self.link.max_packet:
            size = min(size, self.link.max_packet - 4096)
        rate = self.link.upload_rate()
        if rate:
            size = min(size, int(rate * self.settings.mqtt_keepalive / 8))
        between_cuts = self.link.mean_time_between_cuts()
        if rate and between_cuts:
            # A cut loses on average half the chunk in flight (paho re-sends it whole) and
            # every chunk costs its header: per byte, header/size + size/(2·rate·T) for a
            # cut every T seconds, least at size = sqrt(2·header·rate·T) — 14 KB at
            # 64 kbit/s with a cut a minute, 44 KB with one every ten minutes.
            size = min(size, int(math.sqrt(2 * self._chunk_overhead * rate * between_cuts)))
        size = max(chunking.MIN_CHUNK_SIZE, size)
        return size - size % 1024

    def _verify(self, batch_id: str, page: ob.PageRecord, held: ob.PartFile, path: Path) -> bool:
        """Re-hash a local file before its first byte leaves: bit rot on an SD card must not
        travel as a valid page."""
        key = (batch_id, page.page_id, held.name)
        if key in self._verified:
            return True
        try:
            actual = storage.sha256_file(path)
        except OSError as exc:
            actual = f"unreadable ({exc.strerror})"
        if actual != held.sha256:
            transfer.quarantine(
                self.outbox,
                batch_id,
                f"page {page.page_no} {held.name}: local file changed on disk "
                f"(sha256 {actual[:12]}, recorded {held.sha256[:12]})",
            )
            return False
        self._verified.add(key)
        return True

    def _send(
        self,
        work: list[_PartWork],
        report: SyncReport,
        deadline: float,
        stop: threading.Event | None,
    ) -> bool:
        """Publish the missing ranges, cutting each next chunk at the size the link allows
        now (the rate is measured while sending, so the size follows the link). True when
        every range was published; False when the round was cut short (deadline, stop, a
        link down for longer than RECONNECT_WAIT): the next round asks what is missing."""
        quarantined = {b.batch_id for b in self.outbox.batches((ob.QUARANTINED,))}
        for item in work:
            if item.batch_id in quarantined:
                continue
            with open(item.path, "rb") as fh:
                for start, end in item.gaps:
                    offset = start
                    while offset < end:
                        if self.clock() >= deadline or (stop and stop.is_set()):
                            return False
                        if not self._wait_connected(deadline, stop):
                            return False
                        self._drain_inbox(report)  # a "retry later" stops the round
                        if self._paused():
                            return False
                        fh.seek(offset)
                        body = fh.read(min(self.chunk_size(), end - offset))
                        if not self._publish_chunk(item, offset, body, report, deadline):
                            return False  # no window slot freed up: the link is down
                        offset += len(body)
        return True

    def _wait_connected(self, deadline: float, stop: threading.Event | None) -> bool:
        """Ride out a short cut: paho reconnects and re-sends what was in flight."""
        until = min(deadline, self.clock() + RECONNECT_WAIT)
        while not self.link.connected.wait(0.1):
            if self.clock() >= until or (stop and stop.is_set()):
                return False
        return True

    def _await_receipts(self, work: list[_PartWork], report: SyncReport, deadline: float) -> None:
        """Give the receipts of what this round sent RECEIPT_WAIT seconds to arrive (a part
        counts once the outbox holds it acknowledged: a receipt that is forged or names other
        bytes does not end the wait)."""
        waiting = self._unreceipted({(w.batch_id, w.page_id, w.part) for w in work})
        until = min(deadline, self.clock() + RECEIPT_WAIT)
        while waiting and self.clock() < until:
            if self._drain_inbox(report, wait=0.1):
                waiting = self._unreceipted(waiting)

    def _unreceipted(self, parts: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
        out: set[tuple[str, str, str]] = set()
        for batch_id in {b for b, _, _ in parts}:
            pages = {p.page_id: p for p in self.outbox.pages(batch_id)}
            for key in parts:
                page = pages.get(key[1]) if key[0] == batch_id else None
                held = page.parts.get(key[2]) if page else None
                if held is not None and not held.acked:
                    out.add(key)
        return out

    def _publish_chunk(
        self, item: _PartWork, offset: int, body: bytes, report: SyncReport, deadline: float
    ) -> bool:
        header = ChunkHeader(
            device_id=self.device_id,
            msg_id=uuid.uuid4().hex,
            sent_at=time.time(),
            batch_id=item.batch_id,
            page_id=item.page_id,
            part=item.part,
            offset=offset,
            length=len(body),
            part_size=item.part_size,
            part_sha256=item.part_sha256,
            chunk_sha256=chunking.sha256_hex(body),
        )
        payload = envelope.encode(header, body)
        timeout = max(1.0, min(60.0, deadline - self.clock()))
        if not self.link.publish(topics.up(self.device_id, "chunk"), payload, timeout=timeout):
            return False
        report.chunks_sent += 1
        report.bytes_sent += len(payload)
        report.chunk_lengths.append(len(body))
        if report.chunks_sent % 64 == 0:
            self._drain_inbox(report)
        return True

    # -- 4. finish ---------------------------------------------------------------------------

    def _finish(self, batches: list[ob.BatchRecord], report: SyncReport) -> None:
        self._drain_inbox(report)
        for done in transfer.finish_batches(
            self.outbox,
            batches,
            capture_with_page=self.settings.keep_captures == "until_page_receipted",
        ):
            report.batches_done += 1
            report.pages_done += done.pages

    def _count_no_progress(self, batches: list[ob.BatchRecord]) -> None:
        for batch in batches:
            n = self._no_progress.get(batch.batch_id, 0) + 1
            self._no_progress[batch.batch_id] = n
            if n >= MAX_ATTEMPTS:
                transfer.quarantine(self.outbox, batch.batch_id, f"no progress in {n} rounds")


def describe(request: rescan.RescanRequest, lang: messages.Lang = "vi") -> str:
    """The technician's line for one re-scan request."""
    page = str(request.page_no) if request.page_no is not None else "?"
    if request.source_name:
        page += f" ({request.source_name})"
    return messages.t(
        "rescan_requested",
        lang,
        batch=request.batch_id[:8] or "?",
        page=page,
        page_id=request.page_id[:8],
        note=request.note or "—",
    )
