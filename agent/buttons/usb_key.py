"""(c) A USB key, keypad or foot pedal that Linux sees as an input device (evdev).

This module owns reading raw `struct input_event` records from `/dev/input/...` (no extra
dependency), grabbing the device so its keys stay away from a console, the key names a
button profile may list, and reopening a vanished device. It must not start a scan.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import select
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from agent.buttons.events import (
    DEFAULT_LONG_S,
    STOP_CHECK_S,
    ButtonError,
    ButtonEvent,
    PressTracker,
    _Reconnect,
)

log = logging.getLogger(__name__)

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
