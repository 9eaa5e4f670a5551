"""(b) A bare push button across DTR and CTS (or DSR) of a USB–RS-232 adapter.

This module owns raising DTR, polling the modem status line, debouncing it into presses, and
reopening the adapter after an unplug. It must not start a scan.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Literal

import serial

from agent.buttons.events import (
    DEFAULT_LONG_S,
    STOP_CHECK_S,
    ButtonError,
    ButtonEvent,
    Debouncer,
    PressTracker,
    _Reconnect,
)
from agent.buttons.serial_port import ModemLines, _open_error, _open_serial

log = logging.getLogger(__name__)

ModemInput = Literal["cts", "dsr"]


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
