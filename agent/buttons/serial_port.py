"""Opening serial ports for the button box and the modem-line button (pyserial).

This module owns constructing `serial.Serial` (exclusive, with timeouts), the pyserial version
check with its install hint, and turning open failures into a `ButtonError` with a wiring
hint. It must not read presses or speak the box protocol.
"""

from __future__ import annotations

import errno
import logging
from typing import Protocol

import serial

from agent.buttons.events import STOP_CHECK_S, ButtonError

log = logging.getLogger(__name__)


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
