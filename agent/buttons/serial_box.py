"""(a) The serial button box: a small Arduino/CH340-class box speaking text lines.

This module owns the box line protocol of `docs/button-box.md` (HELLO, BTN, PING/PONG, LED,
BEEP), reading presses from it and sending LED/buzzer commands (for
`agent.buttons.feedback`), and reconnecting after a USB unplug. It must not decide what the
LEDs mean (`feedback`) or start a scan (`trigger`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import serial

from agent.buttons.events import DEFAULT_LONG_S, ButtonError, ButtonEvent, PressTracker, _Reconnect
from agent.buttons.serial_port import SerialPort, _open_error, _open_serial

log = logging.getLogger(__name__)

BOX_PROTOCOL = 1
"""Major version of the box line protocol (docs/button-box.md). A box says it in HELLO."""

MAX_LINE_BYTES = 128
"""Longer box lines are discarded whole: a firmware gone wrong or line noise, never a command."""


@dataclass(frozen=True)
class BoxHello:
    """What the box said in `HELLO sohoa-box <protocol> <firmware>`."""

    protocol: int
    firmware: str


class BoxLineReader:
    """Splits the byte stream from the box into ASCII lines.

    Lines end in `\\n` (a `\\r` before it is dropped, Arduino's `println` sends both). A line
    longer than `MAX_LINE_BYTES` is discarded up to and including its end; a line that is not
    ASCII is dropped. Both are logged, never raised: noise on a cheap USB cable must not stop
    the agent.
    """

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[str]:
        """Add bytes read from the port; return the complete lines they finish."""
        lines: list[str] = []
        *ended, tail = data.split(b"\n")
        for part in ended:  # each of these was ended by a "\n"
            self._append(part)
            if self._discarding:
                self._discarding = False  # the over-long line is over; resync here
                continue
            line = self._take_line()
            if line:
                lines.append(line)
        self._append(tail)
        return lines

    def _append(self, part: bytes) -> None:
        if self._discarding:
            return
        self._buf += part
        if len(self._buf) > self.max_bytes:
            log.warning("box line over %d bytes discarded", self.max_bytes)
            self._buf.clear()
            self._discarding = True

    def _take_line(self) -> str:
        raw = bytes(self._buf).rstrip(b"\r")
        self._buf.clear()
        try:
            return raw.decode("ascii").strip()
        except UnicodeDecodeError:
            log.warning("box line not ASCII, ignored: %r", raw[:40])
            return ""


class SerialBoxButton:
    """A button box on a serial port speaking the line protocol of docs/button-box.md.

    `port` is a path (`/dev/serial/by-id/usb-1a86_USB_Serial-if00-port0`, stable across
    reboots, unlike ttyUSB0) which this class opens with pyserial, or an already open
    pyserial-like object (it must have a read timeout ≤ 0.2 s). Presses come from `events`;
    LED/BEEP commands go out through `send`, which is thread-safe and never blocks long.

    On a read error (USB unplugged) the port is closed and reopened with backoff; LED commands
    sent meanwhile are remembered and replayed once the box is back (or after it rebooted,
    which it tells us with a new HELLO). An Arduino resets when the port opens and its
    bootloader needs ~1.6 s: if no HELLO arrives within `hello_timeout_s` we send PING, and a
    PONG is enough to know the box is alive.
    """

    def __init__(
        self,
        port: str | SerialPort,
        baud: int = 9600,
        *,
        long_s: float = DEFAULT_LONG_S,
        hello_timeout_s: float = 2.5,
        retry_first_s: float = 0.5,
        retry_max_s: float = 10.0,
        give_up_s: float | None = None,
        wait_for_port: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = port if isinstance(port, str) else str(getattr(port, "port", "<serial>"))
        self.baud = baud
        self.hello: BoxHello | None = None
        self.alive = False  # HELLO or PONG seen on the current connection
        self._tracker = PressTracker(long_s)
        self._reader = BoxLineReader()
        self._clock = clock
        self._hello_timeout_s = hello_timeout_s
        self._reconnect = _Reconnect(self.path, retry_first_s, retry_max_s, give_up_s)
        self._lock = threading.Lock()  # guards _port and writes
        self._leds: dict[str, str] = {}  # colour → last LED line, replayed after reconnect
        self._opened_at = clock()
        self._pinged = False
        self._closed = threading.Event()  # close() called; set from any thread
        self._reopen: Callable[[], SerialPort]
        self._port: SerialPort | None
        if isinstance(port, str):
            path = port
            self._reopen = lambda: _open_serial(path, baud)
            try:
                self._port = self._reopen()
            except ButtonError:
                if not wait_for_port:
                    raise
                log.warning("button box not there yet, will keep trying device=%s", path)
                self._port = None
        else:
            given = port
            self._port = given
            self._reopen = lambda: self._reopen_object(given)

    @property
    def connected(self) -> bool:
        return self._port is not None

    def _reopen_object(self, port: SerialPort) -> SerialPort:
        opener = getattr(port, "open", None)
        if opener is None:
            raise ButtonError("button.port_missing", f"{self.path}: cannot reopen this port")
        try:
            port.close()
            opener()
        except (serial.SerialException, OSError) as exc:
            raise _open_error(self.path, exc) from exc
        return port

    # -- host → box ---------------------------------------------------------------------

    def send(self, line: str) -> bool:
        """Send one command line (no newline). False if the box is not connected right now.

        LED lines are remembered per colour and replayed after a reconnect, so the box shows
        the agent's state again as soon as it is plugged back in.
        """
        if "\n" in line or len(line) + 1 > MAX_LINE_BYTES or not line.isascii():
            raise ValueError(f"not a box command line: {line!r}")
        words = line.split()
        if len(words) >= 2 and words[0] == "LED":
            self._leds[words[1]] = line
        with self._lock:
            return self._write_locked(line)

    def _write_locked(self, line: str) -> bool:
        port = self._port
        if port is None:
            log.debug("box not connected, not sent: %s", line)
            return False
        try:
            port.write(line.encode("ascii") + b"\n")
        except serial.SerialTimeoutException:
            log.warning("box not reading, dropped: %s device=%s", line, self.path)
            return False
        except (serial.SerialException, OSError) as exc:
            # the reader thread sees the same failure and reconnects; do not race it here
            log.debug("box write failed device=%s: %s", self.path, exc)
            return False
        return True

    def _replay_leds(self) -> None:
        with self._lock:
            for line in list(self._leds.values()):
                self._write_locked(line)

    # -- box → host ---------------------------------------------------------------------

    def events(self, stop: threading.Event) -> Iterator[ButtonEvent]:
        while not stop.is_set() and not self._closed.is_set():
            port = self._port
            if port is None:
                port = self._reconnect.retry(self._reopen, stop, self._clock)
                if port is None:
                    return
                self._connected(port)
            try:
                data = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError, TypeError) as exc:
                if self._closed.is_set():  # close() from another thread: pyserial's fd is gone
                    return
                if isinstance(exc, TypeError):
                    raise
                self._lost(exc)
                continue
            now = self._clock()
            if data:
                for line in self._reader.feed(data):
                    event = self._handle_line(line, now)
                    if event is not None:
                        yield event
            yield from self._tracker.tick(now)
            self._handshake(now)

    def _connected(self, port: SerialPort) -> None:
        with self._lock:
            self._port = port
        self._reader = BoxLineReader()
        self._tracker.reset()
        self._opened_at = self._clock()
        self._pinged = False
        self.alive = False
        self._replay_leds()

    def _lost(self, exc: BaseException) -> None:
        log.warning("button box lost device=%s: %s", self.path, exc)
        with self._lock:
            port, self._port = self._port, None
        self._tracker.reset()
        self.alive = False
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError) as close_exc:
                log.debug("closing a lost port failed: %s", close_exc)

    def _handshake(self, now: float) -> None:
        if self.alive or self._pinged or now - self._opened_at < self._hello_timeout_s:
            return
        self._pinged = True
        log.info("no HELLO from box, sending PING device=%s", self.path)
        self.send("PING")

    def _handle_line(self, line: str, now: float) -> ButtonEvent | None:
        words = line.split()
        head = words[0].upper()
        if head == "BTN" and len(words) == 3 and words[1] in ("1", "2"):
            button, what = int(words[1]), words[2].upper()
            if what == "DOWN":
                self._tracker.down(button, now)
                return None
            if what == "UP":
                return self._tracker.up(button, now)
            if what in ("SHORT", "LONG"):  # the box measured the press itself
                return ButtonEvent(button, "short" if what == "SHORT" else "long", now)
        elif head == "HELLO" and len(words) >= 3 and words[1] == "sohoa-box":
            self._on_hello(words, line)
            return None
        elif head == "PONG" and len(words) == 1:
            if not self.alive:
                log.info("box answered PING device=%s", self.path)
            self.alive = True
            return None
        elif head == "ERR":
            log.warning("box reported an error device=%s: %s", self.path, line)
            return None
        log.warning("unknown box line ignored device=%s: %r", self.path, line)
        return None

    def _on_hello(self, words: list[str], line: str) -> None:
        try:
            protocol = int(words[2])
        except ValueError:
            log.warning("bad HELLO from box ignored device=%s: %r", self.path, line)
            return
        firmware = words[3] if len(words) > 3 else "?"
        rebooted = self.alive
        self.hello = BoxHello(protocol, firmware)
        self.alive = True
        if protocol != BOX_PROTOCOL:
            log.error(
                "box speaks protocol %d, this agent speaks %d: update the firmware device=%s",
                protocol,
                BOX_PROTOCOL,
                self.path,
            )
        log.info("box says hello device=%s protocol=%d firmware=%s", self.path, protocol, firmware)
        if rebooted:  # brown-out or watchdog reset: it lost its LEDs and any held button
            self._tracker.reset()
        self._replay_leds()

    def close(self) -> None:
        with self._lock:
            port, self._port = self._port, None
            self._closed.set()
        if port is not None:
            port.close()
