"""The one scan button, whatever it is wired to.

This module owns every way an operator can say "scan now" without a screen, and it is the only
module that imports pyserial (`serial`). Four sources sit behind one interface,
`ButtonSource.events(stop)`, which yields `ButtonEvent`s:

* `SerialBoxButton` — a small Arduino/CH340-class box speaking the text protocol in
  `docs/button-box.md`; it also carries the LED and buzzer commands of `agent.feedback`.
* `ModemLineButton` — a bare push button across DTR and CTS (or DSR) of a USB–RS-232 adapter.
* `InputKeyButton` — a USB key or foot pedal that Linux sees as an input device.
* `SaneSensorButton` — the scanner's own button, read through a callable from
  `agent.sane_device` (this module never touches SANE).

`PressTracker` (durations → short/long) is shared by all four, `Debouncer` by the two polled
ones. `Trigger` turns events into at most one running scan at a time and picks the profile
(`ScanChoice`): button 1 short → "primary"; a long press or button 2 → "alternate".

This module must not: run a scan itself, talk to SANE, or decide what the LEDs mean (that table
lives in `agent.feedback`). It never lets a USB unplug crash the agent: the serial and input
sources reconnect with backoff; only a port that cannot be opened at start-up raises
`ButtonError` (unless `wait_for_port=True`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import select
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import serial

from agent.errors import SohoaError
from agent.profiles import ButtonProfile

log = logging.getLogger(__name__)

PressKind = Literal["short", "long"]
ScanChoice = Literal["primary", "alternate"]
ModemInput = Literal["cts", "dsr"]

DEFAULT_LONG_S = 1.5
"""A press held this long is "long". 1.5 s is long enough that nobody does it by accident."""

STOP_CHECK_S = 0.1
"""Every blocking wait in this module is at most this long, so `stop` is seen within 0.2 s."""

BOX_PROTOCOL = 1
"""Major version of the box line protocol (docs/button-box.md). A box says it in HELLO."""

MAX_LINE_BYTES = 128
"""Longer box lines are discarded whole: a firmware gone wrong or line noise, never a command."""


class ButtonError(SohoaError):
    """The button device cannot be opened or used. `key` names the operator message."""


# --------------------------------------------------------------------------------------------
# Events and the source interface


@dataclass(frozen=True)
class ButtonEvent:
    """One finished press: which button, short or long, and when (`time.monotonic()` clock)."""

    button: int
    kind: PressKind
    at: float

    def __post_init__(self) -> None:
        if self.button not in (1, 2):
            raise ValueError(f"button must be 1 or 2, not {self.button!r}")
        if self.kind not in ("short", "long"):
            raise ValueError(f"kind must be 'short' or 'long', not {self.kind!r}")


@runtime_checkable
class ButtonSource(Protocol):
    """Anything that produces presses.

    `events` is a blocking generator; it MUST return soon (≤ 0.2 s) after `stop` is set and
    MUST NOT raise on a transient device loss (it reconnects instead). `close` releases the
    device and may be called from another thread after `stop` is set.
    """

    def events(self, stop: threading.Event) -> Iterator[ButtonEvent]: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------
# Shared press logic


class Debouncer:
    """Turns a bouncing sampled level into clean level changes.

    A new level is accepted only once it has been read unchanged for `debounce_s`; a glitch of
    a single sample is therefore never accepted, however slowly the samples come. With
    `debounce_s=0` the first differing sample is accepted (for slow, already clean sources).
    """

    def __init__(self, debounce_s: float = 0.03, initial: bool = False) -> None:
        self.debounce_s = debounce_s
        self.level = initial
        self._candidate = initial
        self._since = 0.0

    def update(self, raw: bool, now: float) -> bool | None:
        """Feed one sample; return the new stable level when it changes, else None."""
        if raw != self._candidate:
            self._candidate = raw
            self._since = now
        if self._candidate != self.level and now - self._since >= self.debounce_s:
            self.level = self._candidate
            return self.level
        return None


class PressTracker:
    """Measures presses: DOWN/UP (already debounced) → one short or one long `ButtonEvent`.

    A long press fires as soon as the hold reaches `long_s` (checked by `tick`), so the operator
    gets feedback while still holding; the release then fires nothing. A second DOWN while a
    button is held (key auto-repeat, a box repeating itself) is ignored, so one physical press
    never fires twice. `at` is always the source's monotonic clock; a source with its own
    hardware timestamps (evdev) may pass `stamp` to measure the duration with those instead.
    """

    def __init__(self, long_s: float = DEFAULT_LONG_S) -> None:
        self.long_s = long_s
        self._held: dict[int, tuple[float, float | None, bool]] = {}  # button → (at, stamp, fired)

    def down(self, button: int, at: float, stamp: float | None = None) -> None:
        if button in self._held:
            return
        self._held[button] = (at, stamp, False)

    def up(self, button: int, at: float, stamp: float | None = None) -> ButtonEvent | None:
        held = self._held.pop(button, None)
        if held is None:
            return None  # UP without DOWN: we connected mid-press, or a DOWN line was lost
        down_at, down_stamp, fired = held
        if fired:
            return None
        if stamp is not None and down_stamp is not None:
            duration = stamp - down_stamp
        else:
            duration = at - down_at
        return ButtonEvent(button, "long" if duration >= self.long_s else "short", at)

    def tick(self, now: float) -> list[ButtonEvent]:
        """Fire the long presses whose hold has just reached `long_s`."""
        fired: list[ButtonEvent] = []
        for button, (down_at, stamp, done) in self._held.items():
            if not done and now - down_at >= self.long_s:
                self._held[button] = (down_at, stamp, True)
                fired.append(ButtonEvent(button, "long", now))
        return fired

    def reset(self) -> None:
        """Forget held buttons (device lost: their UP will never come)."""
        self._held.clear()


def _backoff(first_s: float, max_s: float) -> Iterator[float]:
    delay = first_s
    while True:
        yield delay
        delay = min(delay * 2, max_s)


# --------------------------------------------------------------------------------------------
# Opening serial ports (the only place pyserial is constructed)


class SerialPort(Protocol):
    """What `SerialBoxButton` needs of a port: pyserial's `Serial` has all of it."""

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1, /) -> bytes: ...

    def write(self, data: bytes, /) -> int | None: ...

    def close(self) -> None: ...


class ModemLines(Protocol):
    """What `ModemLineButton` needs of a port: the modem control lines and `close`."""

    dtr: bool

    @property
    def cts(self) -> bool: ...

    @property
    def dsr(self) -> bool: ...

    def close(self) -> None: ...


_OPEN_ERRORS = {
    errno.ENOENT: ("button.port_missing", "is the box plugged in? use /dev/serial/by-id/..."),
    errno.ENODEV: ("button.port_missing", "is the box plugged in? use /dev/serial/by-id/..."),
    errno.EACCES: ("button.port_permission", "add the agent user to the 'dialout' group"),
    errno.EPERM: ("button.port_permission", "add the agent user to the 'dialout' group"),
    errno.EBUSY: ("button.port_busy", "another program holds the port (ModemManager? brltty?)"),
    errno.EAGAIN: ("button.port_busy", "another sohoa agent holds the port"),
}


def _open_error(path: str, exc: BaseException) -> ButtonError:
    code = getattr(exc, "errno", None)
    key, hint = _OPEN_ERRORS.get(code or 0, ("button.port_open_failed", "check the port path"))
    return ButtonError(key, f"cannot open {path}: {exc} ({hint})", port=path)


PYSERIAL_MIN = (3, 3)  # `exclusive=` (flock on POSIX) arrived in pyserial 3.3


def check_pyserial() -> str:
    """Return pyserial's version; ButtonError with an install hint if it is too old."""
    version = str(getattr(serial, "__version__", "0"))
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < PYSERIAL_MIN:
        raise ButtonError(
            "button.pyserial_too_old",
            f"pyserial {version} < 3.3: pip install 'pyserial>=3.5' or apt install python3-serial",
        )
    return version


def _open_serial(path: str, baud: int) -> serial.Serial:
    """Open `path` for a button. Raises ButtonError with an install/wiring hint."""
    check_pyserial()
    try:
        # exclusive=True: flock(), so two agents never share one box.
        # write_timeout: a box that stops reading must never hang the thread showing feedback.
        return serial.Serial(path, baud, timeout=STOP_CHECK_S, write_timeout=1.0, exclusive=True)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise _open_error(path, exc) from exc


class _Reconnect:
    """Backoff bookkeeping for a device that may vanish (USB unplug) and come back."""

    def __init__(self, what: str, first_s: float, max_s: float, give_up_s: float | None) -> None:
        self.what = what
        self.first_s = first_s
        self.max_s = max_s
        self.give_up_s = give_up_s

    def retry(
        self, open_fn: Callable[[], Any], stop: threading.Event, clock: Callable[[], float]
    ) -> Any:
        """Call `open_fn` until it succeeds; None if `stop` was set.

        Raises the last ButtonError once `give_up_s` has passed (None: keep trying forever —
        a box can be plugged back in hours later and the agent must pick it up).
        """
        started = clock()
        delays = _backoff(self.first_s, self.max_s)
        attempt = 0
        while not stop.is_set():
            attempt += 1
            try:
                device = open_fn()
            except ButtonError as exc:
                waited = clock() - started
                if self.give_up_s is not None and waited >= self.give_up_s:
                    log.error("button gone for good device=%s waited_s=%.1f", self.what, waited)
                    raise
                level = logging.WARNING if attempt in (1, 10, 100) else logging.DEBUG
                log.log(
                    level,
                    "button reconnect failed device=%s attempt=%d: %s",
                    self.what,
                    attempt,
                    exc.detail,
                )
                stop.wait(next(delays))
                continue
            log.info("button reconnected device=%s attempt=%d", self.what, attempt)
            return device
        return None


# --------------------------------------------------------------------------------------------
# (a) The serial button box


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


# --------------------------------------------------------------------------------------------
# Polled level sources: (b) modem line and (d) scanner sensor


def _poll_presses(
    read_level: Callable[[], bool],
    stop: threading.Event,
    interval_s: float,
    debouncer: Debouncer,
    tracker: PressTracker,
    clock: Callable[[], float],
    button: int = 1,
) -> Iterator[ButtonEvent]:
    """Sample `read_level` every `interval_s` and yield presses. Exceptions propagate."""
    while not stop.is_set():
        level = read_level()
        now = clock()
        change = debouncer.update(level, now)
        if change is True:
            tracker.down(button, now)
        elif change is False:
            event = tracker.up(button, now)
            if event is not None:
                yield event
        yield from tracker.tick(now)
        stop.wait(min(interval_s, STOP_CHECK_S))


class ModemLineButton:
    """A bare push button on an RS-232 adapter: DTR is held high, the button shorts it to CTS.

    No firmware, no soldering beyond two wires (DE-9: DTR pin 4 → button → CTS pin 8, or DSR
    pin 6 with `line="dsr"`). The line is sampled at `1 / poll_interval_s` (100 Hz), debounced
    (`debounce_s`, a cheap switch bounces for 5–20 ms) and measured for a long press.

    `port` is a path, opened with pyserial, or any object with a settable `dtr`, readable `cts`
    and `dsr` and `close()` — tests pass a fake through this same argument. A read error
    (adapter unplugged) reopens a path with backoff; an object is reopened with its `open()`
    if it has one.
    """

    def __init__(
        self,
        port: str | ModemLines,
        line: ModemInput = "cts",
        *,
        debounce_s: float = 0.03,
        long_s: float = DEFAULT_LONG_S,
        poll_interval_s: float = 0.01,
        retry_first_s: float = 0.5,
        retry_max_s: float = 10.0,
        give_up_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if line not in ("cts", "dsr"):
            raise ButtonError("button.bad_settings", f"line must be 'cts' or 'dsr', not {line!r}")
        self.line: ModemInput = line
        self.path = port if isinstance(port, str) else str(getattr(port, "port", "<serial>"))
        self._debounce_s = debounce_s
        self._tracker = PressTracker(long_s)
        self._interval_s = poll_interval_s
        self._clock = clock
        self._reconnect = _Reconnect(self.path, retry_first_s, retry_max_s, give_up_s)
        self._reopen: Callable[[], ModemLines]
        if isinstance(port, str):
            path = port
            self._reopen = lambda: self._raise_dtr(_open_serial(path, 9600))
        else:
            given = port
            self._reopen = lambda: self._reopen_object(given)
        self._port: ModemLines | None = (
            self._reopen() if isinstance(port, str) else self._raise_dtr(port)
        )

    def _raise_dtr(self, port: ModemLines) -> ModemLines:
        port.dtr = True  # the button returns DTR's voltage on CTS/DSR while pressed
        return port

    def _reopen_object(self, port: ModemLines) -> ModemLines:
        opener = getattr(port, "open", None)
        if opener is None:
            raise ButtonError("button.port_missing", f"{self.path}: cannot reopen this port")
        try:
            port.close()
            opener()
        except (serial.SerialException, OSError) as exc:
            raise _open_error(self.path, exc) from exc
        return self._raise_dtr(port)

    def _read_level(self) -> bool:
        port = self._port
        assert port is not None
        return bool(port.cts if self.line == "cts" else port.dsr)

    def events(self, stop: threading.Event) -> Iterator[ButtonEvent]:
        while not stop.is_set():
            if self._port is None:
                self._port = self._reconnect.retry(self._reopen, stop, self._clock)
                if self._port is None:
                    return
            # fresh state each (re)connection: a press in flight at unplug is dropped
            debouncer = Debouncer(self._debounce_s)
            self._tracker.reset()
            try:
                yield from _poll_presses(
                    self._read_level, stop, self._interval_s, debouncer, self._tracker, self._clock
                )
            except (serial.SerialException, OSError) as exc:
                log.warning("modem-line button lost device=%s: %s", self.path, exc)
                port, self._port = self._port, None
                if port is not None:
                    with contextlib.suppress(serial.SerialException, OSError):
                        port.close()

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            port.close()


class SaneSensorButton:
    """The scanner's own button, read through a SANE sensor option.

    `poll` comes from `agent.sane_device`; it MUST NOT keep the device open between calls
    (holding it is what breaks other front-ends under scanbd, AirSane#54), and it may raise
    while a scan holds the device — a failed poll counts as "no change". Many backends latch
    the button until it is read, so one True sample must count as a press: `debounce_s`
    defaults to 0 and long presses are only as precise as `interval_s`.
    """

    def __init__(
        self,
        poll: Callable[[], bool],
        interval: float = 0.5,
        *,
        debounce_s: float = 0.0,
        long_s: float = DEFAULT_LONG_S,
        button: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._poll = poll
        self._interval_s = interval
        self._debouncer = Debouncer(debounce_s)
        self._tracker = PressTracker(long_s)
        self._button = button
        self._clock = clock
        self._failing = False

    def _read_level(self) -> bool:
        try:
            level = bool(self._poll())
        except Exception as exc:  # the SANE module's failure is not ours to crash on
            if not self._failing:
                log.warning("scanner button poll failed, treating as not pressed: %s", exc)
            self._failing = True
            return self._debouncer.level
        self._failing = False
        return level

    def events(self, stop: threading.Event) -> Iterator[ButtonEvent]:
        # the interval may exceed STOP_CHECK_S: wait in small steps so stop is seen in time
        last = -float("inf")
        while not stop.is_set():
            now = self._clock()
            if now - last >= self._interval_s:
                last = now
                change = self._debouncer.update(self._read_level(), now)
                if change is True:
                    self._tracker.down(self._button, now)
                elif change is False:
                    event = self._tracker.up(self._button, now)
                    if event is not None:
                        yield event
            yield from self._tracker.tick(now)
            stop.wait(min(self._interval_s, STOP_CHECK_S))

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------------------------
# (c) A USB key or foot pedal seen as a Linux input device

EV_KEY = 1
KEY_UP, KEY_DOWN, KEY_REPEAT = 0, 1, 2
INPUT_EVENT = struct.Struct("llHHi")
"""`struct input_event`: the timeval is two C longs (also on 32-bit time64 userlands, where the
kernel header switches to `__kernel_ulong_t __sec, __usec`), then type, code, value. Native
layout: 24 bytes on arm64/x86-64, 16 on armhf."""
assert INPUT_EVENT.size == 2 * struct.calcsize("l") + 8
EVIOCGRAB = 0x40044590  # _IOW('E', 0x90, int): keep the pedal's key away from the console


# Linux key names a button profile may list (<linux/input-event-codes.h>).
KEY_CODES: dict[str, int] = {
    "KEY_ENTER": 28,
    "KEY_SPACE": 57,
    "KEY_KPENTER": 96,
    **{f"KEY_F{n}": 58 + n for n in range(1, 11)},
    "KEY_F11": 87,
    "KEY_F12": 88,
    **{f"KEY_F{n}": 170 + n for n in range(13, 25)},
}


def key_code(name: str) -> int:
    """The Linux code of a key name from a button profile (`KEY_F13` → 183)."""
    try:
        return KEY_CODES[name]
    except KeyError:
        known = ", ".join(sorted(KEY_CODES))
        raise ButtonError(
            "button.bad_settings", f"key {name!r} unknown; use one of {known}"
        ) from None


def pack_input_event(sec: int, usec: int, type_: int, code: int, value: int) -> bytes:
    """Build one raw input event (for replay files and tests)."""
    return INPUT_EVENT.pack(sec, usec, type_, code, value)


class InputKeyButton:
    """A USB key, keypad or foot pedal read from `/dev/input/eventN`, no extra dependency.

    Use the stable `/dev/input/by-id/...-event-kbd` path. The device is grabbed (EVIOCGRAB) so
    the key does not also type into a console. `key_code` is the Linux key code
    (`evtest` shows it, e.g. 28 KEY_ENTER, 183 KEY_F13) for button 1, or several (any of them
    is button 1: the device is grabbed, so its keys mean nothing else); `alt_key_code` optional
    for button 2 (a two-pedal device). Durations use the kernel's event timestamps, so a slow
    reader never turns a short press into a long one. End of file (a replay file or a pipe
    whose writer closed) ends `events`; a vanished device (ENODEV) is reopened with backoff.
    """

    def __init__(
        self,
        device_path: str | os.PathLike[str],
        key_code: int | Sequence[int],
        *,
        alt_key_code: int | None = None,
        long_s: float = DEFAULT_LONG_S,
        grab: bool = True,
        retry_first_s: float = 0.5,
        retry_max_s: float = 10.0,
        give_up_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = os.fspath(device_path)
        codes = (key_code,) if isinstance(key_code, int) else tuple(key_code)
        if not codes:
            raise ButtonError("button.bad_settings", "usb-key needs at least one key code")
        self._buttons = dict.fromkeys(codes, 1)
        if alt_key_code is not None:
            self._buttons[alt_key_code] = 2
        self._grab = grab
        self._tracker = PressTracker(long_s)
        self._clock = clock
        self._reconnect = _Reconnect(self.path, retry_first_s, retry_max_s, give_up_s)
        self._fd: int | None = self._open()

    def _open(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                hint = "add the agent user to the 'input' group"
                raise ButtonError("button.port_permission", f"{self.path}: {exc} ({hint})") from exc
            raise ButtonError("button.port_missing", f"{self.path}: {exc}") from exc
        if self._grab:
            try:
                fcntl.ioctl(fd, EVIOCGRAB, 1)
            except OSError as exc:  # a plain file or pipe (replay, tests): nothing to grab
                log.debug("input device not grabbed device=%s: %s", self.path, exc)
        return fd

    def events(self, stop: threading.Event) -> Iterator[ButtonEvent]:
        pending = b""
        while not stop.is_set():
            fd = self._fd
            if fd is None:
                fd = self._fd = self._reconnect.retry(self._open, stop, self._clock)
                if fd is None:
                    return
                pending = b""
                self._tracker.reset()
            try:
                ready, _, _ = select.select([fd], [], [], STOP_CHECK_S)
                data = os.read(fd, INPUT_EVENT.size * 64) if ready else None
            except OSError as exc:  # ENODEV: unplugged
                log.warning("input button lost device=%s: %s", self.path, exc)
                self._close_fd()
                continue
            now = self._clock()
            if data == b"":
                log.info("input ended device=%s", self.path)
                return
            if data:
                pending += data
                whole = len(pending) - len(pending) % INPUT_EVENT.size
                for sec, usec, type_, code, value in INPUT_EVENT.iter_unpack(pending[:whole]):
                    event = self._on_input(type_, code, value, now, sec + usec / 1e6)
                    if event is not None:
                        yield event
                pending = pending[whole:]
            yield from self._tracker.tick(now)

    def _on_input(
        self, type_: int, code: int, value: int, now: float, stamp: float
    ) -> ButtonEvent | None:
        button = self._buttons.get(code)
        if type_ != EV_KEY or button is None:
            return None  # EV_SYN, EV_MSC scancodes, other keys
        if value == KEY_DOWN:
            self._tracker.down(button, now, stamp)
        elif value == KEY_UP:
            return self._tracker.up(button, now, stamp)
        return None  # KEY_REPEAT: still held

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        self._close_fd()


# --------------------------------------------------------------------------------------------
# No button at all (scans started from the CLI or the web page only)


class NoButton:
    """A source that never fires. `events` just waits for `stop`."""

    def events(self, stop: threading.Event) -> Iterator[ButtonEvent]:
        while not stop.wait(STOP_CHECK_S):
            pass
        yield from ()

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------------------------
# From presses to at most one scan


def choose_profile(event: ButtonEvent) -> ScanChoice:
    """Button 1 short → the primary profile; a long press or button 2 → the alternate one."""
    return "alternate" if event.button == 2 or event.kind == "long" else "primary"


class Trigger:
    """Consumes a ButtonSource and starts at most one scan at a time.

    `on_press(event, choice)` runs in its own thread so that the source keeps being read during
    the scan: a press that arrives while a scan runs is then seen, logged as "scan already
    running" and dropped (passed to `on_busy`, e.g. to beep), instead of waiting in a buffer
    and starting a second scan the moment the first one ends. `scan_lock` may be shared with
    other ways to start a scan (CLI, web page) so that none of them overlap.
    """

    def __init__(
        self,
        source: ButtonSource,
        on_press: Callable[[ButtonEvent, ScanChoice], None],
        *,
        on_busy: Callable[[ButtonEvent], None] | None = None,
        scan_lock: threading.Lock | None = None,
    ) -> None:
        self.source = source
        self._on_press = on_press
        self._on_busy = on_busy
        self.scan_lock = scan_lock or threading.Lock()
        self._worker: threading.Thread | None = None

    def run(self, stop: threading.Event) -> None:
        """Handle presses until `stop` is set or the source ends."""
        for event in self.source.events(stop):
            self.handle(event)

    def handle(self, event: ButtonEvent) -> bool:
        """Start a scan for `event`; False (and logged) if one is already running."""
        choice = choose_profile(event)
        if not self.scan_lock.acquire(blocking=False):
            log.info(
                "scan already running: press ignored button=%d kind=%s", event.button, event.kind
            )
            if self._on_busy is not None:
                try:
                    self._on_busy(event)
                except Exception:
                    log.exception("busy feedback failed")
            return False
        log.info(
            "button press: starting scan button=%d kind=%s profile=%s",
            event.button,
            event.kind,
            choice,
        )
        try:
            self._worker = threading.Thread(
                target=self._scan, args=(event, choice), name="scan", daemon=False
            )
            self._worker.start()
        except BaseException:
            self.scan_lock.release()
            raise
        return True

    def _scan(self, event: ButtonEvent, choice: ScanChoice) -> None:
        try:
            self._on_press(event, choice)
        except Exception:
            log.exception("scan failed button=%d profile=%s", event.button, choice)
        finally:
            self.scan_lock.release()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait for the running scan to end; True if none is running."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
            return not worker.is_alive()
        return True


# --------------------------------------------------------------------------------------------
# Factory

BUTTON_KINDS = ("serial-box", "modem-line", "usb-key", "scanner-button", "none")


def profile_settings(profile: ButtonProfile) -> dict[str, Any]:
    """What a button profile (`hw_profiles/buttons/<kind>.toml`) says, as `open_button`
    keywords for the source of its transport. A site changes them with its own profile of
    the same id (in `hw_profiles_dir`), never here."""
    long_s = profile.long_press_ms / 1000
    debounce_s = profile.debounce_ms / 1000
    poll_s = None if profile.poll_ms is None else profile.poll_ms / 1000
    if profile.transport == "serial-line":  # the box debounces itself
        return {"baud": profile.baud, "long_s": long_s}
    if profile.transport == "modem-lines":
        return {"long_s": long_s, "debounce_s": debounce_s, "poll_interval_s": poll_s}
    if profile.transport == "input-event":
        return {"long_s": long_s, "key_code": [key_code(k) for k in profile.key_codes]}
    return {"long_s": long_s, "debounce_s": debounce_s, "interval": poll_s}  # sane-sensor


def open_button(kind: str, **settings: Any) -> ButtonSource:
    """Open the button source named by config (`button.kind`), with its settings as keywords.

    serial-box: port, baud, long_s, … · modem-line: port, line ("cts"/"dsr"), debounce_s, … ·
    usb-key: device_path, key_code, alt_key_code, … · scanner-button: poll (from
    agent.sane_device), interval, … · none: no settings.
    """
    factories: dict[str, Callable[..., ButtonSource]] = {
        "serial-box": SerialBoxButton,
        "modem-line": ModemLineButton,
        "usb-key": InputKeyButton,
        "scanner-button": SaneSensorButton,
        "none": NoButton,
    }
    factory = factories.get(kind)
    if factory is None:
        raise ButtonError(
            "button.unknown_kind",
            f"button kind {kind!r}; expected one of {', '.join(BUTTON_KINDS)}",
        )
    try:
        return factory(**settings)
    except TypeError as exc:
        raise ButtonError("button.bad_settings", f"{kind}: {exc}") from exc
