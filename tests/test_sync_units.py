"""Fast tests of the sync policy with a fake link through the same seam (no broker)."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

from agent.config import AgentSettings
from agent.mqtt_link import _TokenBucket
from agent.outbox import Outbox
from agent.sync import Syncer
from protocol import chunking


class FakeLink:
    def __init__(self, rate: float | None = None, max_packet: int | None = None) -> None:
        self.connected = threading.Event()
        self.connected.set()
        self.inbox: queue.Queue[object] = queue.Queue()
        self._rate = rate
        self.max_packet = max_packet

    def upload_rate(self) -> float | None:
        return self._rate


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
    from agent.mqtt_link import MqttLink

    settings = AgentSettings(data_dir=tmp_path, device_id="xa-a", max_inflight=16)
    link = MqttLink(settings, boot_id="b", agent_version="t")
    assert link.window_limit(32768) == 16  # not measured yet: the configured window
    link._rate = 8000.0  # 64 kbit/s
    assert link.window_limit(32768) == 2  # 10 s of 64 kbit/s is ~2.4 chunks of 32 KiB
    link._rate = 1e6
    assert link.window_limit(32768) == 16
