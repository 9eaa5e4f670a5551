"""The bad-link proxy the fault tests and benchmarks stand on: rate, back-pressure, delay,
cuts, a link that is down, and payload corruption that respects MQTT framing."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from linkproxy import LinkProxy


class Target:
    """A TCP server on loopback that records what it receives and optionally echoes it."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytearray] = []
        self.last_byte_at = 0.0
        self.resets = 0
        self._stop = threading.Event()
        self.sock.settimeout(0.1)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            buf = bytearray()
            self.received.append(buf)
            threading.Thread(target=self._serve, args=(conn, buf), daemon=True).start()

    def _serve(self, conn: socket.socket, buf: bytearray) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except ConnectionResetError:
                    self.resets += 1
                    return
                if not data:
                    return
                buf += data
                self.last_byte_at = time.monotonic()
                if self.echo:
                    with contextlib.suppress(OSError):
                        conn.sendall(data)

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.fixture
def sink() -> Iterator[Target]:
    t = Target()
    yield t
    t.close()


@pytest.fixture
def echo() -> Iterator[Target]:
    t = Target(echo=True)
    yield t
    t.close()


def _wait(cond: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def _reset(sock: socket.socket) -> bool:
    """True when the peer reset the connection (an RST, not an orderly FIN)."""
    sock.settimeout(2)
    try:
        sock.recv(16)
    except ConnectionResetError:
        return True
    return False


def _publish(payload: bytes, topic: bytes = b"t/x") -> bytes:
    """An MQTT 3.1.1 QoS 0 PUBLISH packet (the proxy only reads the fixed header)."""
    body = len(topic).to_bytes(2, "big") + topic + payload
    n = len(body)
    length = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        length.append(byte | (0x80 if n else 0))
        if not n:
            break
    return bytes([0x30]) + bytes(length) + body


def test_rate_16_kib_at_32_kbit_takes_4_seconds(sink: Target) -> None:
    with LinkProxy(sink.port, rate_bps=32_000) as proxy:
        data = bytes(range(256)) * 64  # 16 KiB
        with socket.create_connection(("127.0.0.1", proxy.port)) as client:
            start = time.monotonic()
            client.sendall(data)
            assert _wait(lambda: sink.received and len(sink.received[0]) == len(data), 10)
            elapsed = sink.last_byte_at - start
    expected = len(data) * 8 / 32_000  # 4.1 s
    print(f"16 KiB at 32 kbit/s: {elapsed:.2f} s (expected {expected:.2f} s)")
    assert expected * 0.85 <= elapsed <= expected * 1.15
    assert bytes(sink.received[0]) == data
    assert proxy.bytes_up == len(data)
    assert proxy.connections == 1


def test_slow_link_back_pressures_the_sender(sink: Target) -> None:
    """The proxy does not swallow data faster than the rate: the sender's send() blocks."""
    with LinkProxy(sink.port, rate_bps=16_000) as proxy:
        client = socket.create_connection(("127.0.0.1", proxy.port))
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
        client.setblocking(False)
        accepted = 0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            try:
                accepted += client.send(b"x" * 4096)
            except BlockingIOError:
                time.sleep(0.01)
        client.close()
    # 1.5 s at 2 KB/s is 3 KB on the line; the rest sits in (small) buffers: the client's
    # send buffer, the proxy's receive window and its 16 KiB — nowhere near unbounded.
    print(f"sender got rid of {accepted} bytes in 1.5 s at 16 kbit/s")
    assert accepted < 160 * 1024


def test_delay_is_one_way(echo: Target) -> None:
    with (
        LinkProxy(echo.port, delay_s=0.2) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as client,
    ):
        start = time.monotonic()
        client.sendall(b"ping")
        assert client.recv(16) == b"ping"
        rtt = time.monotonic() - start
    assert 0.38 <= rtt <= 0.7
    assert proxy.bytes_up == 4 and proxy.bytes_down == 4


def test_cut_resets_both_ends_and_new_connections_work(echo: Target) -> None:
    with LinkProxy(echo.port) as proxy:
        client = socket.create_connection(("127.0.0.1", proxy.port))
        client.sendall(b"hello")
        assert client.recv(16) == b"hello"
        proxy.cut()
        assert _reset(client)
        client.close()
        assert _wait(lambda: echo.resets == 1)
        assert _wait(lambda: proxy.open_connections == 0)
        with socket.create_connection(("127.0.0.1", proxy.port)) as again:
            again.sendall(b"again")
            assert again.recv(16) == b"again"
        assert proxy.connections == 2
        assert proxy.cuts == 1


def test_down_refuses_then_recovers(echo: Target) -> None:
    with LinkProxy(echo.port) as proxy:
        live = socket.create_connection(("127.0.0.1", proxy.port))
        live.sendall(b"a")
        assert live.recv(4) == b"a"
        proxy.set_down(True)
        assert _reset(live)
        live.close()
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", proxy.port)) as refused:
                refused.settimeout(2)
                with contextlib.suppress(ConnectionResetError):
                    assert refused.recv(4) == b""
        assert proxy.refused == 3
        proxy.set_down(False)
        with socket.create_connection(("127.0.0.1", proxy.port)) as back:
            back.sendall(b"c")
            assert back.recv(4) == b"c"
        assert proxy.connections == 2


def test_corruption_hits_only_the_payload_of_the_next_big_publishes(sink: Target) -> None:
    small = _publish(b"s" * 40)
    big = [_publish(bytes([i]) * 2000) for i in range(3)]
    ping = bytes([0xC0, 0x00])  # PINGREQ
    connect_like = bytes([0x10, 100]) + b"c" * 100  # a non-PUBLISH packet over the threshold
    stream = small + ping + connect_like + big[0] + big[1] + big[2]
    with LinkProxy(sink.port, rate_bps=400_000) as proxy:  # arrives in many small reads
        proxy.corrupt_next_up(2)
        with socket.create_connection(("127.0.0.1", proxy.port)) as client:
            client.sendall(stream)
            assert _wait(lambda: sink.received and len(sink.received[0]) == len(stream))
    got = bytes(sink.received[0])
    diffs = [i for i in range(len(stream)) if got[i] != stream[i]]
    assert len(diffs) == 2, diffs
    start = len(small + ping + connect_like)
    for i, packet in zip(diffs, big[:2], strict=True):
        # In the last quarter of that publish (its payload), never in its framing.
        assert start + len(packet) * 3 // 4 - 4 <= i < start + len(packet)
        start += len(packet)
    assert proxy.corrupted == 2
