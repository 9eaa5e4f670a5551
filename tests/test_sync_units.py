"""Fast tests of the sync policy with a fake link through the same seam (no broker)."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

from harness import Broker

from agent.config import AgentSettings
from agent.outbox.outbox import Outbox
from agent.uplink.mqtt_link import _TokenBucket
from agent.uplink.sync import Syncer
from protocol import chunking, envelope


class FakeLink:
    def __init__(self, rate: float | None = None, max_packet: int | None = None) -> None:
        self.connected = threading.Event()
        self.connected.set()
        self.inbox: queue.Queue[object] = queue.Queue()
        self._rate = rate
        self.max_packet = max_packet
        self.between_cuts: float | None = None

    def upload_rate(self) -> float | None:
        return self._rate

    def mean_time_between_cuts(self) -> float | None:
        return self.between_cuts


def _syncer(tmp_path: Path, link: FakeLink, **settings: object) -> Syncer:
    s = AgentSettings(data_dir=tmp_path, device_id="xa-a", **settings)  # type: ignore[arg-type]
    return Syncer(s, Outbox(tmp_path), link, "test")  # type: ignore[arg-type]


def test_chunks_shrink_on_a_slow_link_so_a_publish_fits_the_keepalive(tmp_path: Path) -> None:
    # 20 kbit/s = 2,500 B/s; keepalive 60 s: a publish should take <= 7.5 s -> <= 18,750 B.
    syncer = _syncer(tmp_path, FakeLink(rate=2500.0), mqtt_keepalive=60, chunk_size=131072)
    size = syncer.chunk_size()
    assert size <= 18_750
    assert size >= chunking.MIN_CHUNK_SIZE
    assert size % 1024 == 0


def test_fast_links_use_the_configured_size_and_never_exceed_the_broker_limit(
    tmp_path: Path,
) -> None:
    fast = _syncer(tmp_path / "a", FakeLink(rate=10e6), chunk_size=65536)
    assert fast.chunk_size() == 65536
    limited = _syncer(tmp_path / "b", FakeLink(rate=None, max_packet=20_000), chunk_size=65536)
    assert limited.chunk_size() <= 20_000 - 4096


def test_chunks_shrink_with_frequent_cuts_and_grow_back_as_the_link_holds(
    tmp_path: Path,
) -> None:
    link = FakeLink(rate=8000.0)  # 64 kbit/s
    syncer = _syncer(tmp_path, link, chunk_size=32768)
    assert syncer.chunk_size() == 32768  # no cut seen: the setting
    link.between_cuts = 60.0
    size = syncer.chunk_size()
    # sqrt(2 * ~210 B * 8000 B/s * 60 s) ~ 14.2 KB: header + expected loss per byte is least
    assert 12 * 1024 <= size <= 15 * 1024
    link.between_cuts = 600.0
    assert syncer.chunk_size() == 32768  # ~45 KB optimum, capped by the setting
    link.between_cuts = 1.0
    assert syncer.chunk_size() == chunking.MIN_CHUNK_SIZE


def test_the_link_counts_cuts_not_its_own_close(tmp_path: Path, broker: Broker) -> None:
    from agent.uplink.mqtt_link import MqttLink

    settings = AgentSettings(data_dir=tmp_path, device_id="xa-cut-01", mqtt_url=broker.url)  # type: ignore[arg-type]
    link = MqttLink(settings, boot_id="b", agent_version="t")
    link.connect()
    assert link.mean_time_between_cuts() is None
    link.close()
    assert link.cuts == 0 and link.mean_time_between_cuts() is None


def test_the_link_counts_a_real_cut_and_the_time_connected(tmp_path: Path, broker: Broker) -> None:
    from linkproxy import LinkProxy

    from agent.uplink.mqtt_link import MqttLink

    with LinkProxy(broker.port) as proxy:
        url = f"mqtt://127.0.0.1:{proxy.port}"
        settings = AgentSettings(data_dir=tmp_path, device_id="xa-cut-02", mqtt_url=url)  # type: ignore[arg-type]
        link = MqttLink(settings, boot_id="b", agent_version="t")
        link.connect()
        time.sleep(1.0)
        proxy.cut()
        deadline = time.monotonic() + 10
        while link.cuts == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert link.cuts == 1
        assert link.connected.wait(10)  # paho reconnects by itself
        between = link.mean_time_between_cuts()
        assert between is not None and 0.9 <= between <= 5.0
        link.close()
        assert link.cuts == 1


def test_unmeasured_link_starts_at_the_setting(tmp_path: Path) -> None:
    assert _syncer(tmp_path, FakeLink(), chunk_size=32768).chunk_size() == 32768


def test_token_bucket_caps_the_average_rate() -> None:
    bucket = _TokenBucket(50_000)  # 400 kbit/s
    start = time.monotonic()
    for _ in range(10):
        bucket.take(10_000)  # 100 KB: the first 50 KB are the burst allowance
    elapsed = time.monotonic() - start
    assert 0.8 <= elapsed <= 1.6
    unlimited = _TokenBucket(0)
    start = time.monotonic()
    unlimited.take(10**9)
    assert time.monotonic() - start < 0.05


def test_the_in_flight_window_holds_about_ten_seconds_of_link_time(tmp_path: Path) -> None:
    from agent.uplink.mqtt_link import MqttLink

    settings = AgentSettings(data_dir=tmp_path, device_id="xa-a", max_inflight=16)
    link = MqttLink(settings, boot_id="b", agent_version="t")
    assert link.window_limit(32768) == 16  # not measured yet: the configured window
    link._rate = 8000.0  # 64 kbit/s
    assert link.window_limit(32768) == 2  # 10 s of 64 kbit/s is ~2.4 chunks of 32 KiB
    link._rate = 1e6
    assert link.window_limit(32768) == 16


# -- riding out a cut, waiting for receipts, closing with the will -----------------------------


class PublishingLink(FakeLink):
    """Records publishes; a cut clears ``connected`` until a timer sets it again."""

    def __init__(self) -> None:
        super().__init__(rate=None)
        self.published: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout: float = 60.0) -> bool:
        assert self.connected.is_set(), "published while the link was down"
        self.published.append((topic, payload))
        return True

    def cut_for(self, seconds: float) -> None:
        self.connected.clear()
        threading.Timer(seconds, self.connected.set).start()


def _work(tmp_path: Path, size: int) -> list[object]:
    from agent.uplink.sync import _PartWork

    path = tmp_path / "part.bin"
    path.write_bytes(bytes(size))
    sha = chunking.sha256_hex(path.read_bytes())
    return [_PartWork((0, 0.0, 1), "a" * 32, "b" * 32, "archival", path, size, sha, ((0, size),))]


def test_a_short_cut_mid_send_is_ridden_out_not_a_new_round(tmp_path: Path) -> None:
    from agent.uplink.sync import SyncReport

    link = PublishingLink()
    syncer = _syncer(tmp_path / "box", link, chunk_size=4096)  # type: ignore[arg-type]
    work = _work(tmp_path, 5 * 4096)
    real_publish = link.publish

    def publish_and_cut(topic: str, payload: bytes, qos: int = 1, timeout: float = 60.0) -> bool:
        ok = real_publish(topic, payload, qos, timeout)
        if len(link.published) == 2:
            link.cut_for(0.5)  # paho reconnects and re-sends what was in flight
        return ok

    link.publish = publish_and_cut  # type: ignore[method-assign]
    report = SyncReport()
    assert syncer._send(work, report, time.monotonic() + 30, None) is True  # type: ignore[arg-type]
    offsets = [envelope.decode(p).message.offset for _, p in link.published]  # type: ignore[attr-defined]
    assert offsets == [0, 4096, 8192, 12288, 16384]  # each range once, none skipped


def test_a_link_down_for_long_ends_the_round(tmp_path: Path) -> None:
    from agent.uplink import sync
    from agent.uplink.sync import SyncReport

    link = PublishingLink()
    now = [0.0]
    s = AgentSettings(data_dir=tmp_path / "box", device_id="xa-a", chunk_size=4096)  # type: ignore[arg-type]
    syncer = Syncer(s, Outbox(tmp_path / "box"), link, "test", clock=lambda: now[0])  # type: ignore[arg-type]
    link.connected.clear()

    def later() -> None:  # the fake clock runs past RECONNECT_WAIT while the link is down
        while now[0] <= sync.RECONNECT_WAIT:
            now[0] += 1.0
            time.sleep(0.005)

    threading.Thread(target=later, daemon=True).start()
    assert syncer._send(_work(tmp_path, 8192), SyncReport(), 1e9, None) is False  # type: ignore[arg-type]
    assert link.published == []


def test_receipts_of_the_last_chunks_end_the_batch_without_another_query(tmp_path: Path) -> None:
    from agent.uplink.mqtt_link import Incoming
    from agent.uplink.sync import SyncReport
    from protocol import signing, topics
    from protocol.messages import PartState, Receipt

    archive = signing.new_key()
    link = PublishingLink()
    syncer = _syncer(tmp_path / "box", link, server_public_key=signing.public_key_hex(archive))  # type: ignore[arg-type]
    box = syncer.outbox
    batch = box.new_batch(source="scan")
    page = box.add_capture(batch.batch_id, b"x", extension="png", media_type="image/png",
                           dpi=300, width_px=1, height_px=1, colour=False)  # fmt: skip
    (tmp_path / "t.txt").write_text("trang một")
    page = box.record_processed(batch.batch_id, page.page_id, parts={"text": tmp_path / "t.txt"},
                                media_types={"text": "text/plain"}, flags=(), decisions={},
                                ocr_confidence=None)  # fmt: skip
    held = page.parts["text"]
    from agent.uplink.sync import _PartWork

    work = [_PartWork((0, 0.0, 1), batch.batch_id, page.page_id, "text", tmp_path / "t.txt",
                      held.size, held.sha256, ((0, held.size),))]  # fmt: skip
    receipt = Receipt(device_id="xa-a", msg_id="c" * 32, sent_at=1.0, batch_id=batch.batch_id,
                      committed=(PartState(page_id=page.page_id, part="text", sha256=held.sha256,
                                           committed=True),))  # fmt: skip
    receipt = receipt.model_copy(update={"signature": signing.sign(receipt, archive)})
    payload = envelope.encode(receipt)
    threading.Timer(
        0.3, lambda: link.inbox.put(Incoming(topics.down("xa-a", "receipt"), payload))
    ).start()
    start = time.monotonic()
    syncer._await_receipts(work, SyncReport(), time.monotonic() + 30)  # type: ignore[arg-type]
    assert 0.25 < time.monotonic() - start < 2.0  # returned on the receipt, not the timeout
    assert box.page(batch.batch_id, page.page_id).parts["text"].acked


def test_a_graceful_close_leaves_the_retained_status_offline(
    tmp_path: Path, broker: Broker
) -> None:
    """The broker publishes our will on a DISCONNECT with reason 0x04: no status publish and
    no PUBACK to wait for at the end of every sync."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from agent.uplink.mqtt_link import MqttLink
    from protocol import topics

    settings = AgentSettings(data_dir=tmp_path, device_id="xa-will-02", mqtt_url=broker.url)  # type: ignore[arg-type]
    link = MqttLink(settings, boot_id="b", agent_version="t")
    link.connect()
    link.close()
    seen: queue.Queue[bytes] = queue.Queue()
    sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_message = lambda c, u, m: seen.put(bytes(m.payload))
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe(topics.status("xa-will-02"), qos=1)
    sub.loop_start()
    try:
        status = envelope.decode(seen.get(timeout=10)).message
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert status.state == "offline"  # type: ignore[attr-defined]


def test_a_round_works_on_a_few_batches_text_and_pages_before_masters(tmp_path: Path) -> None:
    """A backlog is reconciled a few batches a round (the archive's answer lists every part of
    each batch asked about: ~2 KB a batch, seconds of a 2G link for fifty), and batches whose
    pages, thumbnails or texts are not yet receipted come before those waiting only for their
    masters, oldest first within each."""
    from test_bundle import _ready_batch

    from agent.uplink import sync, transfer

    syncer = _syncer(tmp_path / "agent", FakeLink(), sync_masters=True)
    outbox = syncer.outbox
    ids = [_ready_batch(outbox, tmp_path / "work", pages=1) for _ in range(sync.QUERY_BATCHES + 3)]
    batches = transfer.sendable_batches(outbox)
    transfer.add_masters(outbox, batches)
    for batch_id in ids[:2]:  # the two oldest: everything receipted but the master
        for page in outbox.pages(batch_id):
            for name, held in page.parts.items():
                if name != "capture":
                    assert outbox.mark_acked(batch_id, page.page_id, name, held.sha256)
    chosen = [b.batch_id for b in syncer._working_set(transfer.sendable_batches(outbox))]
    assert chosen == ids[2 : 2 + sync.QUERY_BATCHES]
    # A short backlog is taken whole.
    few = transfer.sendable_batches(outbox)[:3]
    assert syncer._working_set(few) == few
