"""server.ingest driven directly (no broker): messages built with protocol/ as the agent does,
a real SQLite database and a real file store under tmp_path."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
import unicodedata
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from protocol import chunking, envelope, topics
from protocol.messages import (
    BatchState,
    ChunkHeader,
    Envelope,
    Manifest,
    PageEntry,
    PartRef,
    Query,
    Receipt,
    Reject,
)
from server.archive.catalog import Catalog
from server.ingest import EMPTY_SHA256, Handled, Ingest, Outgoing
from server.ingest.limits import StationLimits
from server.store.db import Database, Row
from server.store.files import Pending, Store

DEVICE = "xa-tan-lap-01"
MEDIA = {
    "text": "text/plain; charset=utf-8",
    "words": "application/json",
    "thumb": "image/jpeg",
    "archival": "application/pdf",
    "capture": "image/png",
}


def uid() -> str:
    return uuid.uuid4().hex


def sha(data: bytes) -> str:
    return chunking.sha256_hex(data)


def env(device: str = DEVICE) -> dict[str, object]:
    return {"device_id": device, "msg_id": uid(), "sent_at": time.time()}


# -- building what the agent sends ---------------------------------------------------------


@dataclass
class PageSrc:
    page_no: int
    parts: dict[str, bytes]
    page_id: str = field(default_factory=uid)
    capture: bytes = b""

    def __post_init__(self) -> None:
        if not self.capture:
            self.capture = b"raw capture %d " % self.page_no + random.randbytes(64)

    def entry(self) -> PageEntry:
        return PageEntry(
            page_id=self.page_id,
            page_no=self.page_no,
            capture_sha256=sha(self.capture),
            capture_size=len(self.capture),
            dpi=300,
            width_px=2480,
            height_px=3508,
            colour=True,
            parts=tuple(
                PartRef(name=name, sha256=sha(data), size=len(data), media_type=MEDIA[name])
                for name, data in self.parts.items()
            ),
        )


@dataclass
class BatchSrc:
    pages: list[PageSrc]
    batch_id: str = field(default_factory=uid)
    device: str = DEVICE

    def manifest(self, pages: list[PageSrc] | None = None, page_count: int | None = None) -> bytes:
        chosen = self.pages if pages is None else pages
        msg = Manifest(
            **env(self.device),
            batch_id=self.batch_id,
            created_at=1764050000.0,
            page_count=len(self.pages) if page_count is None else page_count,
            agent_version="0.1.0",
            pages=tuple(p.entry() for p in chosen),
        )
        return envelope.encode(msg)

    def chunks(
        self,
        page: PageSrc,
        part: str,
        chunk_size: int,
        ranges: Iterable[chunking.Range] | None = None,
        data: bytes | None = None,
    ) -> list[bytes]:
        """The chunk payloads of one part cut at ``chunk_size`` (only ``ranges`` if given).
        ``data`` replaces the part's bytes (the header still names the real part)."""
        real = page.parts[part]
        body_source = real if data is None else data
        gaps = chunking.full(len(real)) if ranges is None else ranges
        out = []
        for offset, length in chunking.plan(gaps, chunk_size):
            body = body_source[offset : offset + length]
            header = ChunkHeader(
                **env(self.device),
                batch_id=self.batch_id,
                page_id=page.page_id,
                part=part,  # type: ignore[arg-type]
                offset=offset,
                length=length,
                part_size=len(real),
                part_sha256=sha(real),
                chunk_sha256=sha(body),
            )
            out.append(envelope.encode(header, body))
        return out

    def all_chunks(self, chunk_size: int) -> list[bytes]:
        return [
            payload
            for page in self.pages
            for part in page.parts
            for payload in self.chunks(page, part, chunk_size)
        ]


def make_batch(
    n_pages: int, rng: random.Random, *, sizes: dict[str, int] | None = None
) -> BatchSrc:
    sizes = sizes or {"text": 700, "thumb": 5000, "archival": 60_000}
    pages = []
    for n in range(1, n_pages + 1):
        parts = {}
        for name, size in sizes.items():
            if name == "text":
                words = "Ủy ban nhân dân xã Tân Lập, sổ hộ tịch năm 1998. "
                parts[name] = (f"Trang {n}. " + words * (size // 50 + 1)).encode()[:size]
                # Cut on a character boundary: the text part is UTF-8.
                parts[name] = parts[name].decode("utf-8", "ignore").encode()
            else:
                parts[name] = rng.randbytes(rng.randint(size // 2, size))
        pages.append(PageSrc(page_no=n, parts=parts))
    return BatchSrc(pages=pages)


def query(batch_ids: Iterable[str], device: str = DEVICE) -> tuple[str, bytes, str]:
    msg = Query(**env(device), batch_ids=tuple(batch_ids))
    return topics.up(device, "query"), envelope.encode(msg), msg.msg_id


# -- reading what the server answers ----------------------------------------------------


def decoded(out: list[Outgoing]) -> list[Envelope]:
    msgs = []
    for o in out:
        where = topics.parse(o.topic)
        assert where.direction == "down"
        msg = envelope.decode(o.payload).message
        assert msg.kind == where.kind
        assert o.qos == 1
        assert not o.retain
        msgs.append(msg)
    return msgs


def rejects(out: list[Outgoing]) -> list[Reject]:
    return [m for m in decoded(out) if isinstance(m, Reject)]


def receipts(out: list[Outgoing]) -> list[Receipt]:
    return [m for m in decoded(out) if isinstance(m, Receipt)]


def one_reject(out: list[Outgoing]) -> Reject:
    msgs = decoded(out)
    assert len(msgs) == 1, msgs
    assert isinstance(msgs[0], Reject), msgs
    return msgs[0]


class Server:
    """Ingest plus a few read helpers over the same database and store."""

    def __init__(self, root: Path, database: Path | str) -> None:
        self.root = root
        self.db = Database(database)
        self.store = Store(root / "store")
        self.ingest = Ingest(self.db, self.store)
        self.catalog = Catalog(self.db)

    def manifest(self, batch: BatchSrc, **kw: object) -> list[Outgoing]:
        return self.ingest.handle(topics.up(batch.device, "manifest"), batch.manifest(**kw))  # type: ignore[arg-type]

    def chunk(self, payload: bytes, device: str = DEVICE) -> list[Outgoing]:
        return self.ingest.handle(topics.up(device, "chunk"), payload)

    def state(self, batch_id: str) -> BatchState:
        topic, payload, msg_id = query([batch_id])
        msgs = decoded(self.ingest.handle(topic, payload))
        assert len(msgs) == 1
        assert isinstance(msgs[0], BatchState)
        assert msgs[0].correlation_id == msg_id
        assert msgs[0].batch_id == batch_id
        return msgs[0]

    def sql(self, query_: str, *args: object) -> list[Row]:
        return self.db.read().execute(query_, args).fetchall()

    def part_row(self, page: PageSrc, part: str) -> Row:
        rows = self.sql(
            "SELECT parts.* FROM parts JOIN pages ON pages.id = parts.page_pk"
            " WHERE pages.page_id = ? AND parts.name = ?",
            page.page_id,
            part,
        )
        assert len(rows) == 1
        return rows[0]

    def stored_bytes(self, page: PageSrc, part: str) -> bytes:
        row = self.part_row(page, part)
        assert row["state"] == "committed"
        return Path(row["path"]).read_bytes()

    def alerts(self) -> list[Row]:
        return self.sql("SELECT * FROM alerts ORDER BY id")

    def partials(self) -> list[Path]:
        return list((self.root / "store").rglob("*.partial"))

    def assert_batch_archived(self, batch: BatchSrc) -> None:
        """The global invariant: every part committed with the source bytes, batch complete,
        no chunk rows or partial files left."""
        for page in batch.pages:
            for name, data in page.parts.items():
                assert self.stored_bytes(page, name) == data, (page.page_no, name)
                assert self.part_row(page, name)["sha256"] == sha(data)
        state = self.state(batch.batch_id)
        assert state.known
        assert state.complete
        assert state.pages_known == state.page_count == len(batch.pages)
        assert all(p.committed and p.missing == () for p in state.parts)
        assert len(state.parts) == sum(len(p.parts) for p in batch.pages)
        assert self.sql("SELECT * FROM chunks") == []
        assert self.partials() == []


@pytest.fixture
def server(tmp_path: Path, database: Path | str) -> Iterator[Server]:
    s = Server(tmp_path, database)
    yield s
    s.db.close()


def committed_parts(rcpts: Iterable[Receipt]) -> Counter[tuple[str, str, str]]:
    return Counter((p.page_id, p.part, p.sha256) for r in rcpts for p in r.committed)


def expected_parts(batch: BatchSrc) -> Counter[tuple[str, str, str]]:
    return Counter(
        (page.page_id, name, sha(data)) for page in batch.pages for name, data in page.parts.items()
    )


# -- the happy path, out of order and twice -------------------------------------------------


def test_chunks_in_random_order_with_duplicates_commit_each_part_once(server: Server) -> None:
    rng = random.Random(1)
    batch = make_batch(4, rng)
    assert server.manifest(batch) == []  # nothing is committed by a manifest of non-empty parts
    stream = batch.all_chunks(8 * 1024)
    stream += rng.sample(stream, len(stream) // 2)  # redeliveries
    rng.shuffle(stream)
    out: list[Outgoing] = []
    for payload in stream:
        out += server.chunk(payload)
    assert rejects(out) == []
    rcpts = receipts(out)
    # Exactly one receipt line per part, each with the part's sha256, all marked committed.
    assert committed_parts(rcpts) == expected_parts(batch)
    assert all(p.committed for r in rcpts for p in r.committed)
    assert all(r.batch_id == batch.batch_id for r in rcpts)
    assert [r.complete for r in rcpts] == [False] * (len(rcpts) - 1) + [True]
    server.assert_batch_archived(batch)
    # A replay of the whole batch afterwards changes nothing and answers nothing.
    assert server.manifest(batch) == []
    for payload in stream[:10]:
        assert server.chunk(payload) == []
    server.assert_batch_archived(batch)
    assert len(server.sql("SELECT * FROM pages")) == len(batch.pages)
    assert server.alerts() == []


def test_one_part_sent_at_two_chunk_sizes_commits(server: Server) -> None:
    rng = random.Random(2)
    batch = make_batch(1, rng, sizes={"archival": 50_000})
    page = batch.pages[0]
    size = len(page.parts["archival"])
    half = size // 2
    server.manifest(batch)
    out: list[Outgoing] = []
    for payload in batch.chunks(page, "archival", 8 * 1024, [(0, half)]):
        out += server.chunk(payload)
    assert out == []
    # The link got worse: the agent asks what is missing and cuts it at 3 KiB.
    (part,) = server.state(batch.batch_id).parts
    assert part.missing == ((half, size),)
    for payload in batch.chunks(page, "archival", 3 * 1024, part.missing):
        out += server.chunk(payload)
    (receipt,) = receipts(out)
    assert committed_parts([receipt]) == expected_parts(batch)
    server.assert_batch_archived(batch)


def test_overlapping_chunks_from_a_changed_chunk_size_commit(server: Server) -> None:
    rng = random.Random(3)
    batch = make_batch(1, rng, sizes={"archival": 40_000})
    page = batch.pages[0]
    server.manifest(batch)
    stream = batch.chunks(page, "archival", 4096)[::2] + batch.chunks(page, "archival", 7000)
    rng.shuffle(stream)
    out: list[Outgoing] = []
    for payload in stream:
        out += server.chunk(payload)
    assert len(receipts(out)) == 1
    server.assert_batch_archived(batch)


def test_query_reports_missing_ranges_that_shrink(server: Server) -> None:
    rng = random.Random(4)
    batch = make_batch(2, rng, sizes={"text": 300, "archival": 30_000})
    unknown = server.state(batch.batch_id)
    assert not unknown.known
    assert unknown.parts == ()
    assert not unknown.complete

    server.manifest(batch)
    state = server.state(batch.batch_id)
    assert state.known
    assert not state.complete
    assert (state.pages_known, state.page_count) == (2, 2)
    assert {(p.page_id, p.part): p.missing for p in state.parts} == {
        (page.page_id, name): ((0, len(data)),)
        for page in batch.pages
        for name, data in page.parts.items()
    }
    assert all(not p.committed for p in state.parts)
    assert {p.sha256 for p in state.parts} == {
        sha(d) for page in batch.pages for d in page.parts.values()
    }

    page = batch.pages[0]
    size = len(page.parts["archival"])
    chunks = batch.chunks(page, "archival", 4096)
    order = list(range(len(chunks)))
    rng.shuffle(order)
    sent: list[chunking.Range] = []
    previous = size
    for i in order[:-1]:
        server.chunk(chunks[i])
        sent.append((i * 4096, min((i + 1) * 4096, size)))
        part = next(
            p
            for p in server.state(batch.batch_id).parts
            if (p.page_id, p.part) == (page.page_id, "archival")
        )
        assert part.missing == chunking.missing(sent, size)
        remaining = sum(e - s for s, e in part.missing)
        assert remaining < previous
        previous = remaining
    server.chunk(chunks[order[-1]])
    after = {(p.page_id, p.part): p for p in server.state(batch.batch_id).parts}
    assert after[(page.page_id, "archival")].committed
    assert after[(page.page_id, "archival")].missing == ()
    assert not after[(page.page_id, "text")].committed

    # A query about several batches answers each, unknown ones included.
    topic, payload, msg_id = query([batch.batch_id, uid()])
    states = decoded(server.ingest.handle(topic, payload))
    assert [s.known for s in states] == [True, False]  # type: ignore[attr-defined]
    assert all(s.correlation_id == msg_id for s in states)


def test_another_devices_batch_is_unknown(server: Server) -> None:
    batch = make_batch(1, random.Random(5))
    server.manifest(batch)
    topic, payload, _ = query([batch.batch_id], device="xa-khac-02")
    (state,) = decoded(server.ingest.handle(topic, payload))
    assert isinstance(state, BatchState)
    assert not state.known
    assert state.device_id == "xa-khac-02"


# -- refusals ---------------------------------------------------------------------------


def test_flipped_byte_in_a_chunk_body_is_corrupt_and_nothing_is_recorded(server: Server) -> None:
    batch = make_batch(1, random.Random(6), sizes={"archival": 20_000})
    page = batch.pages[0]
    server.manifest(batch)
    payload = bytearray(batch.chunks(page, "archival", 8192)[1])
    payload[-100] ^= 0x01
    reject = one_reject(server.chunk(bytes(payload)))
    assert reject.reason == "corrupt"
    assert reject.batch_id == batch.batch_id
    assert reject.ref_msg_id == envelope.decode(bytes(payload)).message.msg_id
    assert server.sql("SELECT * FROM chunks") == []
    assert server.partials() == []
    assert server.part_row(page, "archival")["state"] == "receiving"
    (part,) = server.state(batch.batch_id).parts
    assert part.missing == ((0, len(page.parts["archival"])),)
    # A body shorter than its header says is corrupt too.
    cut = batch.chunks(page, "archival", 8192)[0][:-1]
    assert one_reject(server.chunk(cut)).reason == "corrupt"
    assert server.sql("SELECT * FROM chunks") == []


def test_envelope_device_must_match_the_topic(server: Server) -> None:
    batch = make_batch(1, random.Random(7))
    batch.device = "xa-khac-02"  # the envelope names another device...
    out = server.ingest.handle(topics.up(DEVICE, "manifest"), batch.manifest())  # ...the topic us
    reject = one_reject(out)
    assert reject.reason == "wrong_device"
    assert out[0].topic == topics.down(DEVICE, "reject")  # answered to the topic's device
    (alert,) = server.alerts()
    assert (alert["kind"], alert["device_id"]) == ("wrong_device", DEVICE)
    assert server.sql("SELECT * FROM batches") == []
    assert server.sql("SELECT * FROM pages") == []
    # Same for a chunk.
    payload = batch.chunks(batch.pages[0], "thumb", 4096)[0]
    assert one_reject(server.chunk(payload, device=DEVICE)).reason == "wrong_device"
    assert len(server.alerts()) == 2


def test_chunk_for_an_unknown_part_is_refused(server: Server) -> None:
    rng = random.Random(8)
    batch = make_batch(1, rng, sizes={"text": 200, "archival": 5000})
    page = batch.pages[0]
    # Before any manifest.
    payload = batch.chunks(page, "archival", 4096)[0]
    assert one_reject(server.chunk(payload)).reason == "unknown_part"
    server.manifest(batch)
    # A part the manifest did not announce.
    ghost = PageSrc(page_no=1, parts={"thumb": b"jpeg"}, page_id=page.page_id)
    ghost_batch = BatchSrc(pages=[ghost], batch_id=batch.batch_id)
    assert one_reject(server.chunk(ghost_batch.chunks(ghost, "thumb", 4096)[0])).reason == (
        "unknown_part"
    )
    # The right page and part named under another batch.
    other = BatchSrc(pages=batch.pages)
    assert one_reject(server.chunk(other.chunks(page, "archival", 4096)[0])).reason == (
        "unknown_part"
    )
    # Another device's page.
    thief = BatchSrc(pages=batch.pages, batch_id=batch.batch_id, device="xa-khac-02")
    out = server.chunk(thief.chunks(page, "archival", 4096)[0], device="xa-khac-02")
    assert one_reject(out).reason == "unknown_part"
    assert server.sql("SELECT * FROM chunks") == []
    assert server.partials() == []


def test_chunk_past_the_end_of_its_part_is_a_bad_message(server: Server) -> None:
    batch = make_batch(1, random.Random(9), sizes={"archival": 10_000})
    page = batch.pages[0]
    size = len(page.parts["archival"])
    server.manifest(batch)
    for offset, length in ((size - 10, 11), (size, 1), (size + 4096, 100)):
        body = b"\x00" * length
        header = ChunkHeader(
            **env(),
            batch_id=batch.batch_id,
            page_id=page.page_id,
            part="archival",
            offset=offset,
            length=length,
            part_size=size,
            part_sha256=sha(page.parts["archival"]),
            chunk_sha256=sha(body),
        )
        assert one_reject(server.chunk(envelope.encode(header, body))).reason == "bad_message"
    assert server.sql("SELECT * FROM chunks") == []
    assert server.partials() == []


def test_chunk_naming_another_version_of_the_part_is_a_conflict(server: Server) -> None:
    batch = make_batch(1, random.Random(10), sizes={"archival": 10_000})
    page = batch.pages[0]
    server.manifest(batch)
    other_version = PageSrc(page_no=1, parts={"archival": b"v2" * 3000}, page_id=page.page_id)
    payload = BatchSrc(pages=[other_version], batch_id=batch.batch_id).chunks(
        other_version, "archival", 4096
    )[0]
    assert one_reject(server.chunk(payload)).reason == "conflict"
    assert server.sql("SELECT * FROM chunks") == []


def test_page_reannounced_with_other_bytes_is_a_conflict(server: Server) -> None:
    rng = random.Random(11)
    batch = make_batch(2, rng, sizes={"text": 200, "archival": 5000})
    server.manifest(batch)
    for payload in batch.all_chunks(4096):
        server.chunk(payload)
    server.assert_batch_archived(batch)
    before = {
        t: [tuple(r) for r in server.sql(f"SELECT * FROM {t} ORDER BY 1")]
        for t in ("batches", "pages", "parts", "page_text")
    }
    files = {p: p.read_bytes() for p in (server.root / "store").rglob("*") if p.is_file()}

    first = batch.pages[0]
    new_capture = PageSrc(
        page_no=1, parts=dict(first.parts), page_id=first.page_id, capture=b"another scan"
    )
    new_text = PageSrc(
        page_no=1,
        parts={**first.parts, "text": b"a different text"},
        page_id=first.page_id,
        capture=first.capture,
    )
    new_size = PageSrc(
        page_no=1,
        parts={**first.parts, "archival": first.parts["archival"] + b"\x00"},
        page_id=first.page_id,
        capture=first.capture,
    )
    moved = BatchSrc(pages=[first])  # the same page under another batch id
    cases = [
        BatchSrc(pages=[new_capture], batch_id=batch.batch_id),
        BatchSrc(pages=[new_text], batch_id=batch.batch_id),
        BatchSrc(pages=[new_size], batch_id=batch.batch_id),
        moved,
        # A new page together with a conflicting one: the manifest is refused as a whole.
        BatchSrc(
            pages=[PageSrc(page_no=3, parts={"text": b"new"}), new_capture], batch_id=batch.batch_id
        ),
    ]
    for n, case in enumerate(cases, start=1):
        reject = one_reject(server.manifest(case, page_count=2))
        assert reject.reason == "conflict", n
        assert reject.batch_id == case.batch_id
        assert len(server.alerts()) == n
        assert server.alerts()[-1]["kind"] == "conflict"
        assert server.alerts()[-1]["device_id"] == DEVICE
    after = {
        t: [tuple(r) for r in server.sql(f"SELECT * FROM {t} ORDER BY 1")]
        for t in ("batches", "pages", "parts", "page_text")
    }
    assert after == before
    assert {p: p.read_bytes() for p in (server.root / "store").rglob("*") if p.is_file()} == files
    server.assert_batch_archived(batch)
    # The same page with the same bytes is "already have", not a conflict.
    assert server.manifest(batch) == []


def test_zero_size_text_part_commits_with_the_manifest(server: Server) -> None:
    rng = random.Random(12)
    page = PageSrc(page_no=1, parts={"text": b"", "archival": rng.randbytes(3000)})
    batch = BatchSrc(pages=[page])
    (receipt,) = receipts(server.manifest(batch))
    assert [(p.page_id, p.part, p.sha256, p.committed) for p in receipt.committed] == [
        (page.page_id, "text", EMPTY_SHA256, True)
    ]
    assert not receipt.complete
    assert server.stored_bytes(page, "text") == b""
    assert server.manifest(batch) == []  # no second receipt
    for payload in batch.chunks(page, "archival", 4096):
        server.chunk(payload)
    server.assert_batch_archived(batch)


def test_zero_size_part_with_a_non_empty_sha256_is_refused(server: Server) -> None:
    page = PageSrc(page_no=1, parts={"text": b""})
    entry = page.entry()
    bad_part = entry.parts[0].model_copy(update={"sha256": sha(b"not empty")})
    bad_entry = entry.model_copy(update={"parts": (bad_part,)})
    batch_id = uid()
    msg = Manifest(
        **env(),
        batch_id=batch_id,
        created_at=1.0,
        page_count=1,
        agent_version="0.1.0",
        pages=(bad_entry,),
    )
    reject = one_reject(server.ingest.handle(topics.up(DEVICE, "manifest"), envelope.encode(msg)))
    assert reject.reason == "corrupt"
    assert server.sql("SELECT * FROM parts") == []


def _manifest_with(page: PageSrc, **part_updates: dict[str, object]) -> bytes:
    entry = page.entry()
    parts = tuple(p.model_copy(update=part_updates.get(p.name, {})) for p in entry.parts)
    msg = Manifest(**env(), batch_id=uid(), created_at=1.0, page_count=1, agent_version="0.1.0",
                   pages=(entry.model_copy(update={"parts": parts}),))  # fmt: skip
    return envelope.encode(msg)


def test_a_part_of_a_type_the_station_may_not_send_is_refused(server: Server) -> None:
    # The attack: a capture declared text/html was stored and served as such (script in the
    # archive's origin, one click from an admin). Now the manifest is refused, whole.
    page = PageSrc(page_no=1, parts={"text": b"x", "capture": b"<script>alert(1)</script>"})
    for name, kind in (("capture", "text/html"), ("text", "text/html; charset=utf-8"),
                       ("capture", "image/svg+xml")):  # fmt: skip
        payload = _manifest_with(page, **{name: {"media_type": kind}})
        reject = one_reject(server.ingest.handle(topics.up(DEVICE, "manifest"), payload))
        assert reject.reason == "refused" and kind in reject.detail
    assert server.sql("SELECT * FROM parts") == [] and server.sql("SELECT * FROM pages") == []


def test_station_limits_part_size_pages_per_batch_bytes_per_day(
    server: Server, tmp_path: Path
) -> None:
    small = StationLimits(
        part_bytes={"text": 1000, "thumb": 5000, "archival": 50_000, "capture": 100_000,
                    "words": 1000},
        pages_per_batch=3,
        bytes_per_day=60_000,
    )  # fmt: skip
    server.ingest = Ingest(server.db, server.store, station_limits=small)
    # A 512 MiB "text" used to be taken and indexed in memory; the size is by kind now.
    big = PageSrc(page_no=1, parts={"text": b"x" * 1001})
    reject = one_reject(server.manifest(BatchSrc(pages=[big])))
    assert reject.reason == "too_large" and "text" in reject.detail
    many = BatchSrc(pages=[PageSrc(page_no=n, parts={"text": b"x"}) for n in range(1, 5)])
    reject = one_reject(server.manifest(many))
    assert reject.reason == "refused" and "4 pages" in reject.detail
    # Bytes per day: 40 KB, then another 40 KB is past 60 KB; the same manifest again is not
    # new bytes and is still answered.
    first = BatchSrc(pages=[PageSrc(page_no=1, parts={"archival": random.randbytes(40_000)})])
    assert not [m for m in decoded(server.manifest(first)) if isinstance(m, Reject)]
    assert not [m for m in decoded(server.manifest(first)) if isinstance(m, Reject)]
    second = BatchSrc(pages=[PageSrc(page_no=1, parts={"archival": random.randbytes(40_000)})])
    reject = one_reject(server.manifest(second))
    assert reject.reason == "refused" and "24 hours" in reject.detail
    assert len(server.sql("SELECT * FROM batches")) == 1


def test_reassembled_part_that_fails_its_sha256_is_forgotten_then_resent(server: Server) -> None:
    rng = random.Random(13)
    batch = make_batch(1, rng, sizes={"archival": 20_000})
    page = batch.pages[0]
    real = page.parts["archival"]
    server.manifest(batch)
    # Each chunk's own sha256 is right, but the bytes are not the part's.
    wrong = bytes(b ^ 0xFF for b in real[:5000]) + real[5000:]
    out: list[Outgoing] = []
    for payload in batch.chunks(page, "archival", 4096, data=wrong):
        out += server.chunk(payload)
    reject = one_reject(out)
    assert reject.reason == "corrupt"
    assert server.sql("SELECT * FROM chunks") == []  # forgotten: all must come again
    assert server.partials() == []
    row = server.part_row(page, "archival")
    assert (row["state"], row["path"]) == ("receiving", None)
    assert [a["kind"] for a in server.alerts()] == ["corrupt_part"]
    (part,) = server.state(batch.batch_id).parts
    assert not part.committed
    assert part.missing == ((0, len(real)),)
    out = []
    for payload in batch.chunks(page, "archival", 4096):
        out += server.chunk(payload)
    assert committed_parts(receipts(out)) == expected_parts(batch)
    server.assert_batch_archived(batch)


def test_malformed_payloads_are_rejected_with_their_reason(server: Server) -> None:
    assert one_reject(server.chunk(b"garbage")).reason == "bad_message"
    assert one_reject(server.chunk(b"\xff" * (envelope.MAX_PAYLOAD + 1))).reason == "too_large"
    # A query sent on the chunk topic.
    _, payload, _ = query([uid()])
    assert one_reject(server.chunk(payload)).reason == "bad_message"
    # Topics that are not ours are ignored without an answer.
    assert server.ingest.handle("sohoa/v1/up/+/chunk", payload) == []
    assert server.ingest.handle("other/topic", payload) == []


# -- two shared-subscription workers ------------------------------------------------------


def test_two_workers_on_one_database_commit_each_part_exactly_once(
    tmp_path: Path, database: Path | str
) -> None:
    """The broker may deliver a message to both workers of a shared subscription (redelivery
    after a lost PUBACK). Both handle the whole stream at once, each in its own order."""
    rng = random.Random(14)
    Database(database).close()  # create the schema before the race
    batches = [
        make_batch(3, rng, sizes={"text": 300, "thumb": 3000, "archival": 20_000}) for _ in range(3)
    ]
    # Every batch also has a page with an empty text part (committed by the manifest).
    for batch in batches:
        batch.pages.append(PageSrc(page_no=4, parts={"text": b"", "thumb": rng.randbytes(100)}))
    streams = []
    for worker in range(2):
        stream = [b.manifest() for b in batches]
        chunks = [p for b in batches for p in b.all_chunks(4096)]
        random.Random(worker).shuffle(chunks)
        streams.append(stream + chunks)

    barrier = threading.Barrier(2)
    outs: list[list[Outgoing]] = [[], []]
    errors: list[BaseException] = []

    def work(n: int) -> None:
        db = Database(database)
        ingest = Ingest(db, Store(tmp_path / "store"))
        try:
            barrier.wait()
            for payload in streams[n]:
                kind = (
                    "manifest" if envelope.decode(payload).message.kind == "manifest" else "chunk"
                )
                outs[n] += ingest.handle(topics.up(DEVICE, kind), payload)
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    all_out = outs[0] + outs[1]
    assert rejects(all_out) == []
    # The claim (a conditional UPDATE) lets exactly one worker verify and commit a part, and
    # only that worker sends its receipt: exactly one receipt line per part in total.
    expected: Counter[tuple[str, str, str]] = Counter()
    for batch in batches:
        expected += expected_parts(batch)
    assert committed_parts(receipts(all_out)) == expected
    server = Server(tmp_path, database)
    for batch in batches:
        server.assert_batch_archived(batch)
    assert len(server.sql("SELECT * FROM pages")) == sum(len(b.pages) for b in batches)
    assert len(server.sql("SELECT * FROM batches")) == len(batches)
    assert server.alerts() == []


# -- text and search --------------------------------------------------------------------


def test_text_part_is_indexed_in_nfc_and_searchable(server: Server) -> None:
    text = "Khai thác khoáng sản trái phép tại Đà Nẵng"
    nfd = unicodedata.normalize("NFD", text)
    assert nfd != text
    found = PageSrc(page_no=1, parts={"text": nfd.encode()})  # a device that sent NFD
    other = PageSrc(page_no=2, parts={"text": "Sổ hộ tịch năm 1998".encode()})
    batch = BatchSrc(pages=[found, other])
    server.manifest(batch)
    for payload in batch.all_chunks(4096):
        server.chunk(payload)
    server.assert_batch_archived(batch)  # the archived bytes are the device's, unchanged

    (row,) = server.sql(
        "SELECT t.text FROM page_text t JOIN pages p ON p.id = t.page_pk WHERE p.page_id = ?",
        found.page_id,
    )
    assert row["text"] == text
    assert unicodedata.is_normalized("NFC", row["text"])

    def hits(q: str) -> list[int]:
        return [h["page_no"] for h in server.catalog.search(q)]

    assert hits("khoang san") == [1]  # without diacritics: matches with or without
    assert hits("khoáng sản") == [1]  # with diacritics: exact
    assert hits(unicodedata.normalize("NFD", "khoáng sản")) == [1]
    assert hits("KHOÁNG SẢN") == [1]
    assert hits("da nang") == [1]
    assert hits("khoàng") == []  # another tone is another word
    assert hits("ho tich") == [2]
    assert hits("hộ tịch") == [2]
    assert hits("") == []
    (hit,) = server.catalog.search("khoang san")
    assert "khoáng sản" in hit["snippet"]
    page = server.catalog.page(hit["page"])
    assert page is not None
    assert page["text"] == text


# -- groups (handle_many): what server.ingest.mqtt feeds ---------------------------------


def as_messages(batch: BatchSrc, payloads: Iterable[bytes]) -> list[tuple[str, bytes]]:
    """(topic, payload) pairs as the broker delivers them; the kind read from the frame."""
    out = []
    for payload in payloads:
        kind = envelope.decode(payload).message.kind
        out.append((topics.up(batch.device, kind), payload))
    return out


def count_commits(db: Database) -> list[str]:
    """The COMMITs this thread's connection runs from now on, as a growing list."""
    seen: list[str] = []

    def trace(statement: str) -> None:
        if statement.strip().upper() == "COMMIT":
            seen.append(statement)

    con = db.connect()
    if isinstance(con, sqlite3.Connection):
        con.set_trace_callback(trace)
    else:  # PostgreSQL: every statement goes through PgConnection.execute
        execute = con.execute

        def traced(sql: str, parameters: Sequence[Any] = (), /) -> Any:
            trace(sql)
            return execute(sql, parameters)

        con.execute = traced  # type: ignore[method-assign]
    return seen


def test_group_with_several_parts_duplicates_and_corrupt_ones(server: Server) -> None:
    rng = random.Random(20)
    batch = make_batch(3, rng, sizes={"text": 500, "thumb": 4000, "archival": 30_000})
    bad_page = batch.pages[1]
    real = bad_page.parts["archival"]
    wrong = bytes(b ^ 0xFF for b in real[:3000]) + real[3000:]
    good = [
        p
        for page in batch.pages
        for name in page.parts
        if (page, name) != (bad_page, "archival")
        for p in batch.chunks(page, name, 8 * 1024)
    ]
    flipped = bytearray(good[3])
    flipped[-10] ^= 0x01  # this chunk fails its own sha256
    # Each chunk's own sha256 is right, but the reassembled part is not the announced one.
    corrupt_part = batch.chunks(bad_page, "archival", 8 * 1024, data=wrong)
    payloads = [batch.manifest(), *good, *good[:5], bytes(flipped), *corrupt_part]
    order = list(range(1, len(payloads)))
    rng.shuffle(order)
    payloads = [payloads[0]] + [payloads[i] for i in order]
    messages = as_messages(batch, payloads)
    commits = count_commits(server.db)
    results = server.ingest.handle_many(messages)
    assert len(commits) == 1  # the whole group: one transaction
    assert len(results) == len(messages)
    assert all(r.error is None for r in results)
    out = [o for r in results for o in r.replies]
    reasons = Counter(r.reason for r in rejects(out))
    assert reasons == Counter({"corrupt": 2})  # the flipped chunk and the corrupt part
    flipped_result = results[payloads.index(bytes(flipped))]
    assert [r.reason for r in rejects(flipped_result.replies)] == ["corrupt"]
    expected = expected_parts(batch)
    del expected[(bad_page.page_id, "archival", sha(real))]
    assert committed_parts(receipts(out)) == expected  # each good part once, the bad one not
    (receipt,) = receipts(out)  # one receipt for the batch, sent with its last message
    assert not receipt.complete
    assert [a["kind"] for a in server.alerts()] == ["corrupt_part"]
    assert server.sql("SELECT * FROM chunks") == []
    assert server.partials() == []
    state = {(p.page_id, p.part): p for p in server.state(batch.batch_id).parts}
    assert state[(bad_page.page_id, "archival")].missing == ((0, len(real)),)
    assert sum(p.committed for p in state.values()) == len(expected)
    # The device sends the part again, right this time: the batch is complete.
    again = server.ingest.handle_many(
        as_messages(batch, batch.chunks(bad_page, "archival", 8 * 1024))
    )
    (last,) = receipts([o for r in again for o in r.replies])
    assert last.complete
    server.assert_batch_archived(batch)


def test_parts_completed_across_groups_are_committed_by_the_group_that_completes_them(
    server: Server,
) -> None:
    rng = random.Random(21)
    batch = make_batch(4, rng, sizes={"text": 600, "thumb": 5000, "archival": 40_000})
    server.ingest.handle_many(as_messages(batch, [batch.manifest()]))
    first: list[bytes] = []
    rest: list[bytes] = []
    for page in batch.pages:
        for name in page.parts:
            chunks = batch.chunks(page, name, 16 * 1024)
            if name == "archival":
                first += chunks[:1]
                rest += chunks[1:]
            else:
                first += chunks  # one chunk each: placed at once, no range recorded
    results = server.ingest.handle_many(as_messages(batch, first))
    (receipt,) = receipts([o for r in results for o in r.replies])
    assert {(p.part, p.committed) for p in receipt.committed} == {
        ("text", True),
        ("thumb", True),
    }
    assert len(receipt.committed) == 8
    assert not receipt.complete
    # Only the archival parts have ranges recorded (one chunk row each).
    rows = server.sql(
        "SELECT parts.name FROM chunks JOIN parts ON parts.id = chunks.part_pk ORDER BY 1"
    )
    assert [r["name"] for r in rows] == ["archival"] * 4
    assert len(server.partials()) == 4
    rng.shuffle(rest)
    commits = count_commits(server.db)
    results = server.ingest.handle_many(as_messages(batch, rest))
    assert len(commits) == 1
    (receipt,) = receipts([o for r in results for o in r.replies])
    assert {p.part for p in receipt.committed} == {"archival"}
    assert len(receipt.committed) == 4
    assert receipt.complete
    assert results[-1].replies[-1].topic == topics.down(DEVICE, "receipt")  # its last message
    server.assert_batch_archived(batch)
    # Re-delivered whole, as a group: nothing changes, nothing is answered.
    again = server.ingest.handle_many(as_messages(batch, [batch.manifest(), *first, *rest]))
    assert all(r.replies == [] and r.error is None for r in again)
    server.assert_batch_archived(batch)


def test_group_mixes_queries_status_and_chunks_and_answers_after_its_commit(
    server: Server,
) -> None:
    batch = make_batch(1, random.Random(22), sizes={"text": 300, "archival": 9000})
    topic, payload, msg_id = query([batch.batch_id])
    messages = [
        (topic, payload),  # before the manifest in the group, answered after the commit
        *as_messages(batch, [batch.manifest(), *batch.all_chunks(4096)]),
        ("other/topic", b"ignored"),
    ]
    results = server.ingest.handle_many(messages)
    (state,) = decoded(results[0].replies)
    assert isinstance(state, BatchState)
    assert state.correlation_id == msg_id
    assert state.complete
    assert results[-1].replies == []
    server.assert_batch_archived(batch)


class FailingStore(Store):
    """A store whose ``place`` (the re-hash and rename) fails for one part."""

    def __init__(self, root: Path, fail_name: str) -> None:
        super().__init__(root)
        self.fail_name = fail_name
        self.failures = 0

    def place(self, final: Path, sha256: str, size: int, pending: Pending) -> bool:
        if self.fail_name in final.name:
            self.failures += 1
            raise OSError(5, "injected I/O error")
        return super().place(final, sha256, size, pending)


class FailingFlush(Store):
    """A store whose flush (fdatasync/fsync) fails ``times`` times."""

    def __init__(self, root: Path, times: int) -> None:
        super().__init__(root)
        self.times = times

    def flush(self, pending: Pending) -> None:
        if self.times > 0:
            self.times -= 1
            raise OSError(5, "injected fsync error")
        super().flush(pending)


def assert_only_durable_answers(server: Server, batch: BatchSrc, results: list[Handled]) -> None:
    """Every part receipted is committed with its bytes in place; every range recorded for a
    part not committed holds the part's bytes in its partial file; no file without a row."""
    for part in receipts([o for r in results for o in r.replies]):
        for p in part.committed:
            page = next(pg for pg in batch.pages if pg.page_id == p.page_id)
            assert server.stored_bytes(page, p.part) == page.parts[p.part]
    for page in batch.pages:
        for name, data in page.parts.items():
            row = server.part_row(page, name)
            final = server.store.part_path(
                DEVICE, batch.batch_id, page.page_no, page.page_id, name, MEDIA[name]
            )
            if row["state"] == "committed":
                continue
            assert not final.exists(), (page.page_no, name)
            ranges = server.sql('SELECT "offset", length FROM chunks WHERE part_pk = ?', row["id"])
            if ranges:
                held = Store.partial(final).read_bytes()
                for r in ranges:
                    start, end = r["offset"], r["offset"] + r["length"]
                    assert held[start:end] == data[start:end]


def test_failure_inside_a_group_answers_nothing_that_is_not_durable(
    tmp_path: Path, database: Path | str
) -> None:
    rng = random.Random(23)
    batch = make_batch(3, rng, sizes={"text": 400, "thumb": 3000, "archival": 20_000})
    server = Server(tmp_path, database)
    bad = batch.pages[1]
    server.store = FailingStore(tmp_path / "store", f"{bad.page_id}.archival")
    server.ingest = Ingest(server.db, server.store)
    messages = as_messages(batch, [batch.manifest(), *batch.all_chunks(8 * 1024)])
    results = server.ingest.handle_many(messages)
    # The group failed as a whole (rolled back), then each message was handled alone: only
    # the one that completes the failing part fails, without an answer.
    failed = [i for i, r in enumerate(results) if r.error is not None]
    assert len(failed) == 1
    assert results[failed[0]].replies == []
    assert server.store.failures == 2  # in the group, then alone
    out = [o for r in results for o in r.replies]
    assert rejects(out) == []
    expected = expected_parts(batch)
    del expected[(bad.page_id, "archival", sha(bad.parts["archival"]))]
    assert committed_parts(receipts(out)) == expected
    assert_only_durable_answers(server, batch, results)
    row = server.part_row(bad, "archival")
    assert row["state"] == "receiving"
    # The part is forgotten (ranges and files): the device's next query shows it all missing.
    state = {(p.page_id, p.part): p for p in server.state(batch.batch_id).parts}
    assert state[(bad.page_id, "archival")].missing == ((0, len(bad.parts["archival"])),)
    # With a healthy store, the re-sent part commits and the batch is complete.
    healthy = Ingest(server.db, Store(tmp_path / "store"))
    healthy.handle_many(as_messages(batch, batch.chunks(bad, "archival", 8 * 1024)))
    server.assert_batch_archived(batch)
    server.db.close()


@pytest.mark.parametrize("times", [1, 1000])
def test_fsync_error_in_a_group_commits_nothing_it_flushed(
    tmp_path: Path, database: Path | str, times: int
) -> None:
    """An fsync error: the group's transaction is rolled back and every part it touched is
    forgotten (after a failed fsync the page cache cannot be trusted, docs/design.md §2). Retried
    alone, each message writes its bytes again and flushes them anew."""
    rng = random.Random(24)
    batch = make_batch(2, rng, sizes={"text": 400, "thumb": 3000, "archival": 20_000})
    server = Server(tmp_path, database)
    server.manifest(batch)
    half = [p for page in batch.pages for p in batch.chunks(page, "archival", 8 * 1024)[:1]]
    server.ingest.handle_many(as_messages(batch, half))  # ranges recorded before the failure
    server.store = FailingFlush(tmp_path / "store", times)
    server.ingest = Ingest(server.db, server.store)
    rest = [
        p
        for page in batch.pages
        for name in page.parts
        for p in batch.chunks(page, name, 8 * 1024)[1 if name == "archival" else 0 :]
    ]
    results = server.ingest.handle_many(as_messages(batch, rest))
    assert_only_durable_answers(server, batch, results)
    if times == 1:  # the group failed, each message then succeeded alone
        assert all(r.error is None for r in results)
        out = [o for r in results for o in r.replies]
        # The archival parts lost their first ranges with the failed group: not complete.
        assert {p.part for r in receipts(out) for p in r.committed} == {"text", "thumb"}
        missing = [p for p in server.state(batch.batch_id).parts if not p.committed]
        assert {p.part for p in missing} == {"archival"}
    else:  # the disk keeps failing: nothing is committed, nothing is answered
        assert all(r.error is not None and r.replies == [] for r in results)
        assert server.sql("SELECT * FROM parts WHERE state = 'committed'") == []
        assert server.sql("SELECT * FROM chunks") == []
        assert server.partials() == []
        assert [p for p in (tmp_path / "store").rglob("*") if p.is_file()] == []
    healthy = Ingest(server.db, Store(tmp_path / "store"))
    for p in server.state(batch.batch_id).parts:
        page = next(pg for pg in batch.pages if pg.page_id == p.page_id)
        healthy.handle_many(as_messages(batch, batch.chunks(page, p.part, 8 * 1024, p.missing)))
    server.assert_batch_archived(batch)
    server.db.close()


def _die_in_group(
    database: Path | str, store_root: Path, messages: list[tuple[str, bytes]], at: str
) -> None:
    """In a forked child: handle ``messages`` as one group and die by SIGKILL at ``at``."""
    import os
    import signal

    class Dying(Store):
        def place(self, final: Path, sha256: str, size: int, pending: Pending) -> bool:
            placed = super().place(final, sha256, size, pending)
            if at == "place":  # after the first rename into place
                os.kill(os.getpid(), signal.SIGKILL)
            return placed

        def flush(self, pending: Pending) -> None:
            super().flush(pending)
            if at == "flush":  # everything flushed, nothing committed
                os.kill(os.getpid(), signal.SIGKILL)

    db = Database(database)
    Ingest(db, Dying(store_root)).handle_many(messages)
    os._exit(0)  # not reached


@pytest.mark.parametrize("at", ["place", "flush"])
def test_worker_killed_inside_a_group_leaves_nothing_harmful(
    tmp_path: Path, database: Path | str, at: str
) -> None:
    import multiprocessing

    rng = random.Random(25)
    batch = make_batch(3, rng, sizes={"text": 400, "thumb": 3000, "archival": 30_000})
    server = Server(tmp_path, database)
    server.manifest(batch)
    first = [p for page in batch.pages for p in batch.chunks(page, "archival", 8 * 1024)[:2]]
    server.ingest.handle_many(as_messages(batch, first))
    rest = [
        p
        for page in batch.pages
        for name in page.parts
        for p in batch.chunks(page, name, 8 * 1024)[2 if name == "archival" else 0 :]
    ]
    group = as_messages(batch, rest)
    child = multiprocessing.get_context("fork").Process(
        target=_die_in_group, args=(database, tmp_path / "store", group, at)
    )
    child.start()
    child.join(60)
    assert child.exitcode == -9
    # Nothing of the group was committed, so nothing was acknowledged: the broker delivers
    # the whole group again, to this worker.
    assert server.sql("SELECT * FROM parts WHERE state = 'committed'") == []
    results = server.ingest.handle_many(group)
    assert all(r.error is None for r in results)
    out = [o for r in results for o in r.replies]
    assert rejects(out) == []
    assert committed_parts(receipts(out)) == expected_parts(batch)
    assert server.alerts() == []  # no part was taken for corrupt
    server.assert_batch_archived(batch)
    server.db.close()


def test_two_workers_with_groups_commit_each_part_exactly_once(
    tmp_path: Path, database: Path | str
) -> None:
    """Two workers (threads, one database file) take the same stream in groups of random
    sizes, each in its own order, as two shared-subscription workers with redeliveries."""
    rng = random.Random(26)
    Database(database).close()
    batches = [
        make_batch(4, rng, sizes={"text": 300, "thumb": 3000, "archival": 20_000}) for _ in range(3)
    ]
    for batch in batches:
        batch.pages.append(PageSrc(page_no=5, parts={"text": b"", "thumb": rng.randbytes(100)}))
    streams = []
    for worker in range(2):
        chunks = [m for b in batches for m in as_messages(b, b.all_chunks(4096))]
        random.Random(worker).shuffle(chunks)
        streams.append([m for b in batches for m in as_messages(b, [b.manifest()])] + chunks)
    barrier = threading.Barrier(2)
    outs: list[list[Outgoing]] = [[], []]
    errors: list[BaseException] = []

    def work(n: int) -> None:
        db = Database(database)
        ingest = Ingest(db, Store(tmp_path / "store"))
        sizes = random.Random(100 + n)
        try:
            barrier.wait()
            stream = streams[n]
            i = 0
            while i < len(stream):
                size = sizes.randint(1, 40)
                for result in ingest.handle_many(stream[i : i + size]):
                    if result.error is not None:
                        errors.append(result.error)
                    outs[n] += result.replies
                i += size
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    all_out = outs[0] + outs[1]
    assert rejects(all_out) == []
    expected: Counter[tuple[str, str, str]] = Counter()
    for batch in batches:
        expected += expected_parts(batch)
    assert committed_parts(receipts(all_out)) == expected
    server = Server(tmp_path, database)
    for batch in batches:
        server.assert_batch_archived(batch)
    assert server.alerts() == []
    server.db.close()


class RecordingClient:
    """Stands in for paho's client in IngestWorker: records publishes and acks in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, object]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.log.append(("publish", topic))

    def ack(self, mid: int, qos: int) -> None:
        self.log.append(("ack", mid))


def test_worker_acks_a_group_only_after_it_is_handled_and_answered(
    tmp_path: Path, database: Path | str
) -> None:
    from server.config import ServerSettings
    from server.ingest.mqtt import Delivery, IngestWorker

    server = Server(tmp_path, database)
    batch = make_batch(2, random.Random(27), sizes={"text": 300, "archival": 9000})
    worker = IngestWorker(ServerSettings(data_dir=tmp_path, ingest=False), server.ingest)
    client = RecordingClient()
    worker._client = client  # type: ignore[assignment]
    seen_at_handle: list[list[tuple[str, object]]] = []
    real = server.ingest.handle_many

    def handle_many(messages: list[tuple[str, bytes]]) -> list[Handled]:
        seen_at_handle.append(list(client.log))
        results = real(messages)
        results[1] = Handled([], RuntimeError("injected"))  # one message failed
        return results

    server.ingest.handle_many = handle_many  # type: ignore[method-assign]
    messages = as_messages(batch, [batch.manifest(), *batch.all_chunks(4096)])
    for mid, (topic, payload) in enumerate(messages, start=1):
        worker._on_message(client, None, _FakeMessage(topic, payload, mid))  # type: ignore[arg-type]
    group = worker._take()
    assert [d.mid for d in group] == list(range(1, len(messages) + 1))
    assert isinstance(group[0], Delivery)
    worker._process(group)
    server.ingest.handle_many = real  # type: ignore[method-assign]
    assert seen_at_handle == [[]]  # nothing published or acknowledged before handle_many
    kinds = [k for k, _ in client.log]
    assert kinds.count("ack") == len(messages)  # every message, the failed one too
    first_ack = kinds.index("ack")
    assert "publish" not in kinds[first_ack:]  # answers go out before any acknowledgement
    # The batch's one receipt, and a Reject retry_later to the device of the failed message
    # (it waits and sends again instead of re-sending round after round: test_fulldisk.py).
    assert kinds[:first_ack] == ["publish", "publish"]
    assert (worker.messages, worker.errors, worker.groups) == (len(messages) - 1, 1, 1)
    server.assert_batch_archived(batch)
    server.db.close()


@dataclass
class _FakeMessage:
    topic: str
    payload: bytes
    mid: int
    qos: int = 1


@pytest.mark.mqtt
def test_worker_health_is_a_public_question_the_watchdog_asks(tmp_path: Path, broker: Any) -> None:
    """server.app's watchdog pings systemd only while ``healthy()``: false before start and
    after stop, true while both threads run against a real broker."""
    from server.config import ServerSettings
    from server.ingest.mqtt import IngestWorker

    server = Server(tmp_path, tmp_path / "archive.db")
    settings = ServerSettings(data_dir=tmp_path, mqtt_url=broker.url)
    worker = IngestWorker(settings, server.ingest)
    assert not worker.healthy()
    worker.start()
    try:
        assert worker.connected.wait(30)
        assert worker.healthy()
    finally:
        worker.stop()
    assert not worker.healthy()


def _enrol(db: Database, device: str) -> object:
    """The station's key, registered through the registry's own rules."""
    from protocol import enrolment, signing
    from server.fleet import registry as stations

    secret = stations.issue_code(db, device, "Xã Tân Lập", "", hours=1)
    key = signing.new_key()
    req = enrolment.EnrolRequest(
        device_id=device, msg_id=uid(), secret=secret, public_key=signing.public_key_hex(key),
        box_key="b" * 64,
    )  # fmt: skip
    stations.redeem(
        db, req.model_copy(update={"signature": signing.sign_bytes(req.signed_bytes(), key)})
    )
    return key


def test_an_enrolled_station_signs_its_manifests_and_a_revoked_one_is_refused(
    server: Server,
) -> None:
    from protocol import signing
    from server.fleet import registry as stations

    key = _enrol(server.db, DEVICE)
    batch = make_batch(1, random.Random(14))
    thief = signing.new_key()
    for signer in (None, thief):  # unsigned, or signed by a key that is not the station's
        msg = envelope.decode(batch.manifest()).message
        if signer is not None:
            msg = msg.model_copy(update={"signature": signing.sign(msg, signer)})  # type: ignore[arg-type]
        out = server.ingest.handle(topics.up(DEVICE, "manifest"), envelope.encode(msg))
        reject = one_reject(out)
        assert reject.reason == "refused" and "signed" in reject.detail
        assert not server.state(batch.batch_id).known  # nothing written
    msg = envelope.decode(batch.manifest()).message
    signed = msg.model_copy(update={"signature": signing.sign(msg, key)})  # type: ignore[arg-type]
    assert (
        rejects(server.ingest.handle(topics.up(DEVICE, "manifest"), envelope.encode(signed))) == []
    )
    for payload in batch.all_chunks(16_384):
        server.chunk(payload)
    server.assert_batch_archived(batch)

    stations.revoke(server.db, DEVICE)
    later = make_batch(1, random.Random(15))
    msg = envelope.decode(later.manifest()).message
    signed = msg.model_copy(update={"signature": signing.sign(msg, key)})  # type: ignore[arg-type]
    reject = one_reject(
        server.ingest.handle(topics.up(DEVICE, "manifest"), envelope.encode(signed))
    )
    assert reject.reason == "refused" and "revoked" in reject.detail
    assert not server.state(later.batch_id).known
    server.assert_batch_archived(batch)  # what was received before stays
    assert any("revoked" in a["detail"] for a in server.alerts())


def test_a_batch_names_only_a_fonds_its_station_is_assigned(server: Server) -> None:
    """Issue 21: the manifest's optional ``fonds`` (the technician's choice) must be one the
    admin assigned the station; a batch without one (an older agent) is filed under the
    station's default; a refused fonds writes nothing and raises an alert."""
    from protocol import signing
    from server.archive import fonds
    from server.fleet import registry as stations

    key = _enrol(server.db, DEVICE)
    fonds.create(server.db, "NL", "UBND xã Nghiên Loan", unit_code="new:01882")
    fonds.create(server.db, "XL", "UBND xã Xuân La", unit_code="old:01873", status="closed")
    fonds.create(server.db, "OTHER", "UBND xã khác")
    stations.assign_fonds(server.db, DEVICE, ["NL", "XL"])
    assert stations.get(server.db, DEVICE).fonds_codes == ("NL", "XL")  # type: ignore[union-attr]

    def send(batch: BatchSrc, chosen: str | None) -> list[Outgoing]:
        msg = envelope.decode(batch.manifest()).message
        msg = msg.model_copy(update={"fonds": chosen})
        signed = msg.model_copy(update={"signature": signing.sign(msg, key)})  # type: ignore[arg-type]
        return server.ingest.handle(topics.up(DEVICE, "manifest"), envelope.encode(signed))

    refused = make_batch(1, random.Random(21))
    reject = one_reject(send(refused, "OTHER"))
    assert reject.reason == "refused" and "not assigned fonds OTHER" in reject.detail
    assert not server.state(refused.batch_id).known
    assert any("fonds OTHER" in a["detail"] for a in server.alerts())

    closed = make_batch(1, random.Random(22))
    assert rejects(send(closed, "XL")) == []  # the closed fonds of the former commune
    old_agent = make_batch(1, random.Random(23))
    assert rejects(send(old_agent, None)) == []
    # No choice sent, but a cover sheet whose mã hồ sơ names Xuân La's organisation.
    fonds.update(server.db, "XL", organ_id="H06.XL")
    sheet = make_batch(1, random.Random(24))
    msg = envelope.decode(sheet.manifest()).message
    first = msg.pages[0].model_copy(  # type: ignore[attr-defined]
        update={"decisions": {"cover_sheet": {"found": True, "ma_ho_so": "H06.XL.2024.01.TP"}}}
    )
    msg = msg.model_copy(update={"pages": (first, *msg.pages[1:])})  # type: ignore[attr-defined]
    signed = msg.model_copy(update={"signature": signing.sign(msg, key)})  # type: ignore[arg-type]
    out = server.ingest.handle(topics.up(DEVICE, "manifest"), envelope.encode(signed))
    assert rejects(out) == []
    rows = server.db.read().execute("SELECT batch_id, fonds_code FROM batches").fetchall()
    assert {r[0]: r[1] for r in rows} == {
        closed.batch_id: "XL", old_agent.batch_id: "NL", sheet.batch_id: "XL"
    }  # fmt: skip
    with pytest.raises(stations.FleetError):
        stations.assign_fonds(server.db, DEVICE, ["NOPE"])
