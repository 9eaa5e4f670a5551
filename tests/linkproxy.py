"""A bad 2G/3G link in user space: a TCP proxy on loopback that throttles, delays and cuts.

The kernel's ``netem`` is not available on our machines (docs/design.md §8), so tests and benchmarks
put this proxy between a client (the agent) and its target (Mosquitto)::

    proxy = LinkProxy(broker.port, rate_bps=256_000, delay_s=0.3).start()
    env = agent_env(..., f"mqtt://127.0.0.1:{proxy.port}")
    ...
    proxy.cut()            # every open connection dies now (RST to both ends)
    proxy.set_down(True)   # the tower is gone: connections refused until set_down(False)
    proxy.stop()

What it models, per connection and per direction:

* **rate** (``rate_bps``, bits/s): a paced serial line with no burst credit. The proxy never
  reads from the source faster than the rate allows and holds at most :data:`BUFFER` bytes
  (plus the bandwidth-delay product) itself; its socket buffers are small too, so a slow link
  back-pressures the sender the way a real modem does (the sender's ``send`` blocks).
* **delay** (``delay_s``): one-way latency added to every byte.
* **cut / down**: the proxy closes both sockets with ``SO_LINGER 0`` (an RST: both ends see
  "connection reset" at once, nothing of what was still buffered is delivered).
* **corruption** (:meth:`LinkProxy.corrupt_next_up`): the client→target stream is followed
  packet by packet with MQTT's fixed header (type nibble + variable-length "remaining
  length", the same in MQTT 3.1.1 and 5), so a flipped byte lands in a PUBLISH packet's
  payload — for a chunk, in its body — and never in framing that would just make the broker
  drop the connection.

Counters (``bytes_up``, ``bytes_down``, ``connections``) say what actually crossed the
"air": bytes written to the other side, not bytes read and then lost in a cut.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections import deque

BUFFER = 16 * 1024  # bytes the proxy itself may hold per direction (a modem's buffer)
_POLL = 0.05  # seconds: how often blocked threads look at the connection's state
_MQTT_PUBLISH = 3


def _rst_close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _MqttTracker:
    """Follows MQTT packet boundaries in one direction of a stream, to corrupt payloads."""

    def __init__(self, proxy: LinkProxy) -> None:
        self.proxy = proxy
        self.state = "type"  # type -> length -> body
        self.ptype = 0
        self.length = 0
        self.shift = 0
        self.pos = 0  # offset inside the current packet's body
        self.flip_at = -1  # body offset to flip in the current packet, -1: none

    def feed(self, data: bytearray) -> bool:
        """Follow ``data`` through the stream; True when a byte of it was flipped."""
        flipped = False
        i = 0
        n = len(data)
        while i < n:
            if self.state == "type":
                self.ptype = data[i] >> 4
                self.length = 0
                self.shift = 0
                self.state = "length"
                i += 1
            elif self.state == "length":
                byte = data[i]
                self.length |= (byte & 0x7F) << self.shift
                self.shift += 7
                i += 1
                if not byte & 0x80:
                    self.pos = 0
                    self.flip_at = -1
                    if self.ptype == _MQTT_PUBLISH:
                        self.flip_at = self.proxy._take_corruption(self.length)
                    self.state = "body" if self.length else "type"
            else:
                take = min(self.length - self.pos, n - i)
                if self.pos <= self.flip_at < self.pos + take:
                    data[i + self.flip_at - self.pos] ^= 0xFF
                    self.proxy.corrupted += 1
                    flipped = True
                self.pos += take
                i += take
                if self.pos >= self.length:
                    self.state = "type"
        return flipped


class _Connection:
    def __init__(self, proxy: LinkProxy, client: socket.socket, target: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.target = target
        self.dead = threading.Event()
        self.reset = False  # close with RST (a cut) rather than FIN (a peer closed)
        self._lock = threading.Lock()
        self._alive_threads = 0
        self._threads: list[threading.Thread] = []
        for src, dst, up in ((client, target, True), (target, client, False)):
            pipe = _Pipe(self, src, dst, up)
            self._threads += [
                threading.Thread(target=pipe.read_loop, daemon=True, name="linkproxy-read"),
                threading.Thread(target=pipe.write_loop, daemon=True, name="linkproxy-write"),
            ]

    def start(self) -> None:
        self._alive_threads = len(self._threads)
        for t in self._threads:
            t.start()

    def kill(self, reset: bool) -> None:
        """Tear the connection down. The last of its threads closes the sockets, so no thread
        ever uses a descriptor number that may have been reused."""
        with self._lock:
            if self.dead.is_set():
                return
            self.reset = reset
            self.dead.set()
        for sock in (self.client, self.target):
            # Wakes a thread blocked in recv (it returns b"") without putting anything on the
            # wire; the RST goes out when the socket is closed with SO_LINGER 0.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)

    def thread_done(self) -> None:
        with self._lock:
            self._alive_threads -= 1
            last = self._alive_threads == 0
        if last:
            for sock in (self.client, self.target):
                if self.reset:
                    _rst_close(sock)
                else:
                    with contextlib.suppress(OSError):
                        sock.close()
            self.proxy._forget(self)

    def join(self, timeout: float) -> None:
        for t in self._threads:
            t.join(timeout)


class _Pipe:
    """One direction of one connection: a paced reader and a (delayed) writer."""

    def __init__(self, conn: _Connection, src: socket.socket, dst: socket.socket, up: bool):
        self.conn = conn
        self.proxy = conn.proxy
        self.src = src
        self.dst = dst
        self.up = up
        self.queue: deque[tuple[float, bytes]] = deque()
        self.queued = 0
        self.eof = False
        self.cond = threading.Condition()
        self.tracker = _MqttTracker(self.proxy) if up else None

    def _limit(self) -> int:
        rate = self.proxy._rate_bytes()
        bdp = int(rate * self.proxy.delay_s) if rate else (1 << 20 if self.proxy.delay_s else 0)
        return BUFFER + bdp

    def read_loop(self) -> None:
        next_at = time.monotonic()
        try:
            while not self.conn.dead.is_set():
                rate = self.proxy._rate_bytes()
                if rate:
                    now = time.monotonic()
                    if now < next_at:  # the line is still busy with what we read last
                        time.sleep(min(_POLL, next_at - now))
                        continue
                    size = max(64, min(4096, int(rate / 20)))
                else:
                    size = 64 * 1024
                with self.cond:
                    while self.queued >= self._limit() and not self.conn.dead.is_set():
                        self.cond.wait(_POLL)
                if self.conn.dead.is_set():
                    break
                try:
                    data = self.src.recv(size)
                except TimeoutError:
                    continue
                except OSError:
                    self.conn.kill(reset=True)
                    break
                if not data:
                    if not self.conn.dead.is_set():
                        with self.cond:
                            self.eof = True  # the writer flushes, then closes everything
                            self.cond.notify_all()
                    break
                now = time.monotonic()
                if rate:
                    next_at = max(next_at, now) + len(data) / rate
                if self.tracker is not None:
                    buf = bytearray(data)
                    if self.tracker.feed(buf):
                        data = bytes(buf)
                with self.cond:
                    self.queue.append((now + self.proxy.delay_s, data))
                    self.queued += len(data)
                    self.cond.notify_all()
        finally:
            self.conn.thread_done()

    def write_loop(self) -> None:
        try:
            while not self.conn.dead.is_set():
                with self.cond:
                    if not self.queue:
                        if self.eof:
                            self.conn.kill(reset=False)
                            break
                        self.cond.wait(_POLL)
                        continue
                    due, data = self.queue[0]
                now = time.monotonic()
                if now < due:
                    time.sleep(min(_POLL, due - now))
                    continue
                sent = self._send_all(data)
                with self.cond:
                    self.queue.popleft()
                    self.queued -= len(data)
                    self.cond.notify_all()
                self.proxy._count(self.up, sent)
                if sent < len(data):
                    break
        finally:
            self.conn.thread_done()

    def _send_all(self, data: bytes) -> int:
        view = memoryview(data)
        sent = 0
        while sent < len(data):
            if self.conn.dead.is_set():
                return sent
            try:
                sent += self.dst.send(view[sent:])
            except TimeoutError:
                continue
            except OSError:
                self.conn.kill(reset=True)
                return sent
        return sent


class LinkProxy:
    """See the module docstring. Thread-safe; counters are plain ints (read them any time)."""

    def __init__(
        self,
        target_port: int,
        *,
        rate_bps: int | None = None,
        delay_s: float = 0.0,
        listen_port: int | None = None,
        target_host: str = "127.0.0.1",
    ) -> None:
        self.target = (target_host, target_port)
        self.delay_s = float(delay_s)
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0  # accepted and forwarded to the target
        self.refused = 0  # accepted while down (or the target refused): closed at once
        self.cuts = 0  # connections killed by cut() / set_down(True)
        self.corrupted = 0  # bytes flipped so far
        self._rate: int | None = None
        self._down = False
        self._corrupt_budget = 0
        self._corrupt_min = 64
        self._lock = threading.Lock()
        self._conns: set[_Connection] = set()
        self._stopping = threading.Event()
        self._accept_thread: threading.Thread | None = None
        self.set_rate(rate_bps)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Inherited by accepted sockets: a small receive window, so the sender's own buffers
        # fill and its send() blocks, like on a real slow link.
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
        self._listener.bind(("127.0.0.1", listen_port or 0))
        self._listener.listen(64)
        self._listener.settimeout(_POLL * 2)
        self.port: int = self._listener.getsockname()[1]

    # -- control -------------------------------------------------------------------------------

    def start(self) -> LinkProxy:
        self._accept_thread = threading.Thread(
            target=self._accept_loop, daemon=True, name="linkproxy-accept"
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
        with contextlib.suppress(OSError):
            self._listener.close()
        conns = self._kill_all(reset=True, count=False)
        for conn in conns:
            conn.join(2)

    def __enter__(self) -> LinkProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def cut(self) -> None:
        """Drop every open connection now; clients reconnect through the proxy at once."""
        self._kill_all(reset=True)

    def set_down(self, down: bool) -> None:
        """While down, existing connections are cut and new ones are closed on accept."""
        with self._lock:
            self._down = down
        if down:
            self._kill_all(reset=True)

    def set_rate(self, rate_bps: int | None) -> None:
        """Bits per second in each direction; None or 0: unlimited."""
        if rate_bps is not None and rate_bps < 0:
            raise ValueError("rate_bps must be positive")
        with self._lock:
            self._rate = rate_bps or None

    def corrupt_next_up(self, n: int = 1, *, min_size: int = 64) -> None:
        """Flip one byte in the payload of each of the next ``n`` client→target MQTT PUBLISH
        packets whose remaining length exceeds ``min_size`` bytes. The byte is taken from the
        packet's last quarter: for a chunk, its body (the server's chunk sha256 catches it)."""
        with self._lock:
            self._corrupt_budget += n
            self._corrupt_min = min_size

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    # -- internals -----------------------------------------------------------------------------

    def _rate_bytes(self) -> float:
        rate = self._rate
        return rate / 8.0 if rate else 0.0

    def _take_corruption(self, length: int) -> int:
        with self._lock:
            if self._corrupt_budget <= 0 or length <= self._corrupt_min:
                return -1
            self._corrupt_budget -= 1
        quarter = max(1, length // 4)
        return length - 1 - random.randrange(quarter)

    def _count(self, up: bool, n: int) -> None:
        with self._lock:
            if up:
                self.bytes_up += n
            else:
                self.bytes_down += n

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._conns.discard(conn)

    def _kill_all(self, reset: bool, count: bool = True) -> list[_Connection]:
        with self._lock:
            conns = list(self._conns)
            if count:
                self.cuts += len(conns)
        for conn in conns:
            conn.kill(reset=reset)
        return conns

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(_POLL)
                continue
            with self._lock:
                down = self._down
            if down:
                with self._lock:
                    self.refused += 1
                _rst_close(client)
                continue
            try:
                target = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                target.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
                target.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
                target.settimeout(5)
                target.connect(self.target)
            except OSError:
                _rst_close(target)
                with self._lock:
                    self.refused += 1
                _rst_close(client)
                continue
            for sock in (client, target):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(_POLL * 2)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
            conn = _Connection(self, client, target)
            with self._lock:
                self.connections += 1
                self._conns.add(conn)
            conn.start()
