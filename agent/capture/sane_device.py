"""The only module that talks to SANE (python-sane).

It opens a scanner by name, applies the options its hardware profile resolves, and yields
pages one at a time so that the caller can store each page durably before the next sheet is
fed. SANE status strings become typed :class:`ScannerError`s with an operator message key.

SANE's ``test`` backend is disabled in Debian's dll.conf, so ``get_devices()`` does not list
it, yet ``open("test:0")`` works (docs/design.md §8): names are therefore always accepted as given.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sane
from PIL import Image

from agent import profiles
from agent.errors import ScannerError

log = logging.getLogger(__name__)

SYSFS_USB = Path("/sys/bus/usb/devices")
_init_lock = threading.Lock()
_initialised = False
_sane_version = ""

# sane_strstatus() texts as python-sane raises them (sane-backends sanei/sanei_*.c).
END_OF_FEEDER = "Document feeder out of documents"
_STATUS_KEYS = {
    # Backends report a double feed (ultrasonic sensor) as a jam with their own wording.
    "double": "scanner_double_feed",
    "Double": "scanner_double_feed",
    "multifeed": "scanner_double_feed",
    "Document feeder jammed": "scanner_jammed",
    "Scanner cover is open": "scanner_cover_open",
    "Device busy": "scanner_busy",
    "Invalid argument": "scanner_not_found",
    "Access to resource has been denied": "scanner_busy",
}


@dataclass(frozen=True)
class ScannedPage:
    image: Image.Image
    dpi: int
    colour: bool


# SIGPIPE too: Python ignores it so that a write to a reset socket raises an error; after
# sane_start reset it, the first write to a cut MQTT link would kill the agent outright.
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE)
_libc = ctypes.CDLL(None, use_errno=True)


# The actions the process wants for _SIGNALS, as last seen while they were intact.
_wanted: dict[int, ctypes.Array[ctypes.c_char]] = {}
_wanted_lock = threading.Lock()


def _sigaction(sig: int) -> ctypes.Array[ctypes.c_char] | None:
    buf = ctypes.create_string_buffer(256)
    return buf if _libc.sigaction(sig, None, buf) == 0 else None


def _is_default(action: ctypes.Array[ctypes.c_char]) -> bool:
    # sa_handler (a union with sa_sigaction) is the struct's first member on Linux; SIG_DFL is 0.
    return not ctypes.c_void_p.from_buffer(action).value


@contextlib.contextmanager
def _keep_signal_handlers() -> Iterator[None]:
    """Put back the process's SIGTERM/SIGINT/SIGHUP/SIGPIPE actions after a SANE call resets them.

    Some backends (the test backend among them) reset SIGTERM to its default action,
    process-wide: their reader runs as a thread of our process (sanei_thread on pthreads)
    and starts with ``sigaction(SIGTERM, {0})``, written for a forked child. systemd's stop
    would then kill the agent mid-page instead of letting it finish the page
    (tests/test_daemon.py). Python can only re-install handlers from the main thread, but
    sigaction(2) itself works from any thread, so the raw C-level actions are put back after
    the call. The reader thread runs on its own schedule — it may reset SIGTERM after
    sane_start() has returned, between two calls — so what is put back is not what was
    there on entry but the last action seen intact: a signal Python has a handler for whose
    C-level action reads as the default was reset behind Python's back and is not recorded.
    The struct is kept opaque (256 bytes is larger than any libc's struct sigaction)."""
    with _wanted_lock:
        for sig in _SIGNALS:
            action = _sigaction(sig)
            if action is None:
                continue
            if not _is_default(action) or signal.getsignal(sig) in (signal.SIG_DFL, None):
                _wanted[sig] = action
    try:
        yield
    finally:
        _put_back_signal_actions()


def _put_back_signal_actions() -> None:
    """Set the process's wanted signal actions again (see `_keep_signal_handlers`)."""
    with _wanted_lock:
        for wanted_sig, wanted_action in _wanted.items():
            _libc.sigaction(wanted_sig, wanted_action, None)


# How long the last line's read waits for the backend's reader thread to end (see _Frame).
READER_EXIT_WAIT_S = 1.0
# After a frame ends in an error status, how long its reader is let finish writing before the
# frame is cancelled: at most DRAIN_MAX_S, and no longer than DRAIN_QUIET_S without a byte.
DRAIN_MAX_S = 10.0
DRAIN_QUIET_S = 0.5
# Signal actions are put back at the first line of a frame and every this many lines after.
SIGNAL_CHECK_LINES = 256
_TASKS = Path("/proc/self/task")


# When the frame being read last gave a sign of life (monotonic seconds); None between frames.
_alive_at: float | None = None


def stalled_for() -> float:
    """Seconds since the frame being read gave its last line (or since sane_start() was
    called, before the first); 0 when no frame is being read. A scanner whose driver stops
    sending mid-page — a USB link that stalls, a backend stuck in a C call — leaves the
    capture thread blocked where nothing else can see it: the daemon reads this to stop
    pinging systemd's watchdog (settings.scan_stall_s)."""
    alive = _alive_at
    return 0.0 if alive is None else max(0.0, time.monotonic() - alive)


def _threads() -> set[int]:
    try:
        return {int(task.name) for task in _TASKS.iterdir()}
    except OSError:  # no /proc: nothing to wait for
        return set()


class _Frame:
    """One frame: sane_start, then the read, with the backend's reader thread let finish.

    Backends built on sanei_thread with pthreads (Debian's build; the test backend, and
    scanner backends that read through a reader thread) run their reader as a thread of
    our process with asynchronous cancellation enabled, and end a frame by cancelling it
    and joining it in the same sane_read() that returns the last bytes — while that
    thread is itself returning from its last write (free(), pthread_exit()). A cancel that
    lands there can leave the thread stuck in its exit and sane_read() joined on it
    forever: a scan that never ends (seen in a run of the test suite: the reader thread
    "Exiting", the main thread in sanei_thread_waitpid). Python-sane reads line by line
    and calls a progress function between lines, so before the last line is read this
    waits (at most READER_EXIT_WAIT_S) for the threads sane_start() created to end: by
    then the reader has written all but at most that line into its pipe (64 KiB, larger
    than any line) and has nothing left to do. The cancel then finds a finished thread.
    Threads started by Python meanwhile are not the backend's and are not waited for.

    A frame that ends in an error status (a jam, an empty feeder found on read) leaves the
    reader running, and sane_cancel() cancels it as it runs: a cancel that lands inside one
    of its free() calls leaves glibc's arena lock held, and the thread then deadlocks on it
    in its own exit (gdb: the reader "Exiting" in tcache_thread_shutdown -> free ->
    lll_lock_wait; the caller in sanei_thread_waitpid). With 200-dpi colour frames, larger
    than the pipe, it hung after a median of 469 such frames (`python -m bench
    sane_cancel`). So a backend that gives its data pipe (sane_get_select_fd; the test
    backend's profile asks for it) has that pipe read, and the bytes dropped, until its
    reader ends (at most DRAIN_MAX_S, or DRAIN_QUIET_S without a byte) before it is
    cancelled: none hung in 31,500 frames (docs/benchmarks.md).

    The frame is then ended by :meth:`cancel`, called by the caller once the page is stored:
    python-sane's snap() would call sane_cancel() itself, holding the GIL — a backend stuck
    there (the same race, met by a frame that ends in an error status: CI saw a worker hang
    in it) would freeze every thread of the agent, the one that pings systemd's watchdog
    and the one that tells the technician included, and lose the page read."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.reader: set[int] = set()
        self.data_fd: int | None = None  # the backend's data pipe, when it gives it
        self.ended_early = False

    def start(self) -> None:
        global _alive_at
        before = _threads()
        _alive_at = time.monotonic()
        try:
            with _keep_signal_handlers():
                self.device.start()
        except BaseException:
            _alive_at = None
            raise
        _alive_at = time.monotonic()
        python = {t.native_id for t in threading.enumerate()}
        self.reader = _threads() - before - python
        try:
            fd = int(self.device.fileno())
        except Exception:  # SANE_STATUS_UNSUPPORTED: most backends
            fd = -1
        self.data_fd = fd if fd >= 0 else None

    def snap(self) -> Image.Image:
        """Read the frame; it stays open until :meth:`cancel` (also after an error)."""
        global _alive_at
        try:
            with _keep_signal_handlers():
                image: Image.Image = self.device.snap(no_cancel=True, progress=self._progress)
        except BaseException:
            self.ended_early = True
            raise
        finally:
            _alive_at = None
        return image

    def cancel(self) -> None:
        """End the frame (sane_cancel) with the GIL released. While it runs it is the frame's
        last sign of life: a backend stuck in it is a stalled scan (:func:`stalled_for`),
        which the daemon reports and systemd's watchdog ends."""
        global _alive_at
        _alive_at = time.monotonic()
        try:
            if self.ended_early:
                self.let_reader_finish()
            with _keep_signal_handlers():
                self.device.cancel()
        except Exception:  # an unplugged device: nothing is left to end
            log.warning("ending the frame failed", exc_info=True)
        finally:
            _alive_at = None

    def _progress(self, line: int, lines: int) -> None:
        global _alive_at
        _alive_at = time.monotonic()
        if line % SIGNAL_CHECK_LINES == 1:
            # The reader thread resets SIGTERM when it starts, before it writes the first
            # line: put the actions back now, not only when snap() returns — a frame from a
            # slow scanner takes seconds, and systemd's stop meanwhile would kill the agent
            # mid-page instead of letting it store the page (tests/test_daemon.py).
            _put_back_signal_actions()
        if self.reader and lines > 0 and line == lines - 1:
            self.wait_for_reader()

    def let_reader_finish(self) -> bool:
        """Read the backend's data pipe, dropping the bytes, until its reader threads have
        ended; True when they have (see the class's docstring)."""
        fd = self.data_fd
        if not self.reader & _threads():
            return True
        if fd is None:
            return False
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        blocking = os.get_blocking(fd)
        os.set_blocking(fd, False)
        start = heard = time.monotonic()
        try:
            while self.reader & _threads():
                now = time.monotonic()
                if now - start > DRAIN_MAX_S or now - heard > DRAIN_QUIET_S:
                    log.debug("the backend's reader is still running; cancelling it")
                    return False
                if poller.poll(50):
                    try:
                        if not os.read(fd, 1 << 20):
                            heard = time.monotonic()
                            time.sleep(0.001)  # the writer has closed: its thread is ending
                            continue
                    except BlockingIOError:
                        continue
                    heard = time.monotonic()
            return True
        except OSError:  # the pipe is not what it was: leave it to sane_cancel
            log.debug("reading the backend's data pipe failed", exc_info=True)
            return False
        finally:
            with contextlib.suppress(OSError):
                os.set_blocking(fd, blocking)

    def wait_for_reader(self) -> bool:
        """True once the reader threads have ended; False after READER_EXIT_WAIT_S."""
        deadline = time.monotonic() + READER_EXIT_WAIT_S
        while self.reader & _threads():
            if time.monotonic() > deadline:
                log.debug("the backend's reader thread is still running at the last line")
                return False
            time.sleep(0.0005)
        return True


def init() -> str:
    """Initialise SANE once per process; returns the SANE version string."""
    global _initialised, _sane_version
    with _init_lock:
        if not _initialised:
            with _keep_signal_handlers():
                version = sane.init()
            _sane_version = ".".join(str(x) for x in version[1:])
            _initialised = True
    return _sane_version


def list_devices(sysfs: Path = SYSFS_USB) -> list[profiles.SaneDeviceInfo]:
    """Scanners SANE finds (slow on some backends: it probes USB and the network), with the
    USB vendor:product id when the name shows where the device sits on the bus."""
    init()
    out = []
    with _keep_signal_handlers():
        found = sane.get_devices()
    for name, vendor, model, kind in found:
        usb = usb_identity(name, sysfs)
        out.append(
            profiles.SaneDeviceInfo(
                name=name, vendor=vendor, model=model, type=kind, usb_id=usb.usb_id if usb else None
            )
        )
    return out


@dataclass(frozen=True)
class UsbIdentity:
    usb_id: str  # "04c5:132e"
    serial: str | None
    port_path: str  # "1-1.3": the physical socket, stable while the cable stays put

    @property
    def stable_id(self) -> str:
        """Survives re-plugging: SANE's libusb:BBB:DDD changes on every plug, a serial does
        not; without a serial, the socket the cable sits in is the next best thing."""
        if self.serial:
            return f"usb:{self.usb_id}:{self.serial}"
        return f"usb:{self.usb_id}@{self.port_path}"


_LIBUSB_RE = re.compile(r"libusb:(\d{3}):(\d{3})")


def usb_identity(name: str, sysfs: Path = SYSFS_USB) -> UsbIdentity | None:
    """Find the USB device behind a SANE name like ``epjitsu:libusb:001:004`` in sysfs."""
    match = _LIBUSB_RE.search(name)
    if not match or not sysfs.is_dir():
        return None
    bus, dev = int(match.group(1)), int(match.group(2))
    for entry in sysfs.iterdir():
        try:
            if int(_read(entry / "busnum")) != bus or int(_read(entry / "devnum")) != dev:
                continue
            usb_id = f"{_read(entry / 'idVendor')}:{_read(entry / 'idProduct')}".lower()
        except (OSError, ValueError):
            continue
        serial = _read(entry / "serial") if (entry / "serial").exists() else None
        return UsbIdentity(usb_id=usb_id, serial=serial or None, port_path=entry.name)
    return None


def _read(path: Path) -> str:
    return path.read_text(encoding="ascii", errors="replace").strip()


def stable_id(info: profiles.SaneDeviceInfo, sysfs: Path = SYSFS_USB) -> str:
    usb = usb_identity(info.name, sysfs)
    return usb.stable_id if usb else info.name


def sensor_poller(name: str, option: str) -> Callable[[], bool]:
    """A poll function for the scanner's own button (SANE sensor option ``option``).

    Each poll opens the device, reads the option and closes it again, so the agent never
    holds the scanner between presses (scanbd's lesson: a held device blocks every other
    program). A busy device (a scan is running) or an unplugged one reads as "not pressed".
    """
    attr = option.replace("-", "_")

    def poll() -> bool:
        init()
        try:
            with _keep_signal_handlers():
                dev = sane.open(name)
        except Exception:
            return False
        try:
            if option.startswith("bool-"):  # the test backend hides these behind a switch
                dev.enable_test_options = True
            return bool(getattr(dev, attr))
        except Exception:
            return False
        finally:
            with _keep_signal_handlers():
                dev.close()

    return poll


def _error_key(exc: Exception) -> str:
    text = str(exc)
    for needle, key in _STATUS_KEYS.items():
        if needle in text:
            return key
    return "scanner_failed"


class Scanner:
    """An open SANE device with its profile. Not thread-safe: one scan at a time."""

    def __init__(self, device: Any, info: profiles.SaneDeviceInfo, profile: Any) -> None:
        self.device = device  # the python-sane SaneDev; tests use it to set test options
        self.info = info
        self.profile = profile

    def close(self) -> None:
        try:
            with _keep_signal_handlers():  # sane_cancel may reset them too
                self.device.close()
        except Exception:  # closing a device that was unplugged: nothing left to do
            log.warning("closing %s failed", self.info.name, exc_info=True)

    def __enter__(self) -> Scanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def options(self) -> Mapping[str, profiles.OptionInfo]:
        return profiles.options_from_sane(self.device.get_options())

    def configure(self, request: profiles.ScanRequest) -> dict[str, Any]:
        """Apply the profile's settings for ``request``; returns what the device reports
        back for each (see :meth:`apply`)."""
        return self.apply(profiles.resolve_options(self.profile, request, self.options()))

    def apply(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Set each option in order and read its value back from the device.

        A backend may round or clamp what it is given (SANE_INFO_INEXACT: the ``test``
        backend turns 200.6 dpi into 201 and 1500 into 1200), and a later option may change
        an earlier one (a source that resets the resolution): the values returned are the
        device's own after the last one was set, never the values asked for. An option the
        device will not read back is missing from the result."""
        for name, value in settings.items():
            try:
                setattr(self.device, name.replace("-", "_"), value)
            except Exception as exc:
                raise ScannerError(
                    "scanner_failed", f"setting {name}={value!r} on {self.info.name}: {exc}"
                ) from exc
        actual: dict[str, Any] = {}
        for name, value in settings.items():
            try:
                actual[name] = getattr(self.device, name.replace("-", "_"))
            except Exception:  # write-only or inactive now: not something we can vouch for
                log.warning("%s: cannot read %s back", self.info.name, name)
                continue
            if actual[name] != value:
                log.info("%s: %s set to %r, device uses %r", self.info.name, name, value,
                         actual[name])  # fmt: skip
        return actual

    def resolution(self) -> int:
        """The device's resolution now, in whole dpi; 0 when it has no readable resolution
        option (the capture is then recorded as "dpi unknown", never given a configured
        value)."""
        try:
            value = float(self.device.resolution)
        except Exception:
            return 0
        return round(value) if value > 0 else 0

    def pages(self, request: profiles.ScanRequest) -> Iterator[ScannedPage]:
        """Yield one page per sheet (side). Flatbed: one page. Feeder: until it is empty.

        Raises ScannerError(scan_no_paper) when the feeder is empty at the first page, and
        ScannerError(scanner_jammed/cover_open/failed) when a sheet fails; pages already
        yielded are the caller's (it has stored them)."""
        self.configure(request)
        dpi = self.resolution()  # what the device scans at, not what was asked for
        colour = request.mode == "color"
        feeder = request.source != "flatbed"
        count = 0
        while True:
            frame = _Frame(self.device)
            try:
                frame.start()
            except Exception as exc:
                if END_OF_FEEDER in str(exc):
                    if count == 0:
                        raise ScannerError("scan_no_paper", str(exc)) from exc
                    return
                raise ScannerError(_error_key(exc), str(exc), pages=count) from exc
            try:
                image = frame.snap()
            except Exception as exc:
                frame.cancel()
                if END_OF_FEEDER in str(exc):  # some backends say so on read, not on start
                    if count == 0:
                        raise ScannerError("scan_no_paper", str(exc)) from exc
                    return
                raise ScannerError(_error_key(exc), str(exc), pages=count) from exc
            count += 1
            try:
                yield ScannedPage(image=image, dpi=dpi, colour=colour)
            finally:
                frame.cancel()  # once the caller has stored the page: a stuck driver loses none
            if not feeder:
                return

    def read_sheet(self, request: profiles.ScanRequest) -> ScannedPage:
        """One sheet to READ, not to archive (an enrolment sheet's QR code): the request's
        settings when the profile can give them, else whatever the device is set to —
        colour and resolution do not matter to a QR code (SANE's ``pnm`` backend, used to
        feed a printed sheet to tests, has no mode option at all)."""
        try:
            self.configure(request)
        except profiles.ProfileError as exc:
            log.info("reading a sheet with %s's own settings: %s", self.info.name, exc)
        frame = _Frame(self.device)
        try:
            frame.start()
        except Exception as exc:
            raise ScannerError(_error_key(exc), str(exc), pages=0) from exc
        try:
            image = frame.snap()
        except Exception as exc:
            raise ScannerError(_error_key(exc), str(exc), pages=0) from exc
        finally:
            frame.cancel()
        return ScannedPage(image=image, dpi=self.resolution(), colour=request.mode == "color")


def choose_device(
    name: str,
    devices: list[profiles.SaneDeviceInfo] | None = None,
    sysfs: Path = SYSFS_USB,
) -> profiles.SaneDeviceInfo:
    """The device the setting ``scanner`` names.

    * a stable USB identity (``usb:04c5:132e:SERIAL`` or ``usb:04c5:132e@1-1.3``, as
      `sohoa-agent devices` prints it): the device behind it now, whatever bus and device
      numbers SANE's name carries after a re-plug; refused when it is not plugged in, never
      replaced by another scanner;
    * ``auto``: with several scanners, the one with the smallest stable identity, so the
      choice does not follow the order SANE happens to list them in;
    * anything else: that SANE name (also one SANE does not list, such as ``test:0``).
    """
    if name.startswith("usb:"):
        found = list_devices(sysfs) if devices is None else devices
        for device in found:
            if stable_id(device, sysfs) == name:
                return device
        seen = ", ".join(stable_id(d, sysfs) for d in found) or "none"
        raise ScannerError(
            "scanner_not_found", f"no scanner {name} plugged in (found: {seen})", scanner=name
        )
    if name == "auto":
        found = list_devices(sysfs) if devices is None else devices
        if not found:
            raise ScannerError("scanner_not_found", "SANE found no scanner", scanner=name)
        if len(found) > 1:
            log.warning(
                "%d scanners found (%s); using the first by stable id: set scanner to one of them",
                len(found),
                ", ".join(stable_id(d, sysfs) for d in found),
            )
        return min(found, key=lambda d: (stable_id(d, sysfs), d.name))
    known = devices or []
    return next((d for d in known if d.name == name), None) or _info_from_name(name)


def open_scanner(
    name: str, known_profiles: list[Any], devices: list[profiles.SaneDeviceInfo] | None = None
) -> Scanner:
    """Open ``name``: a SANE device name, a stable USB identity, or ``auto`` (see
    `choose_device`)."""
    init()
    info = choose_device(name, devices)
    device = None
    for attempt in range(4):
        try:
            with _keep_signal_handlers():
                device = sane.open(info.name)
            break
        except Exception as exc:
            key = _error_key(exc)
            # A button poll may hold the device for a few ms (sensor_poller): try again
            # briefly before telling the operator the scanner is busy.
            if key == "scanner_busy" and attempt < 3:
                time.sleep(0.3)
                continue
            raise ScannerError(key, f"opening {info.name}: {exc}", scanner=info.name) from exc
    profile = profiles.match_scanner(info, known_profiles)
    log.info(
        "opened scanner %s (%s %s) with profile %s", info.name, info.vendor, info.model, profile.id
    )
    return Scanner(device, info, profile)


def _info_from_name(name: str) -> profiles.SaneDeviceInfo:
    # A name SANE did not list (the disabled test backend, or a network scanner given by
    # address): python-sane cannot tell vendor/model of an opened device, and the backend
    # prefix of the name ("test" in "test:0") is what profile matching needs.
    return profiles.SaneDeviceInfo(name=name, vendor="", model="", type="")
