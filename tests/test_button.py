"""Tests of agent/buttons/ (the input devices, the trigger policy, the factory).

The serial box is tested over a real pty pair with the real pyserial inside SerialBoxButton:
the test plays the box on the master side. The modem-line, input-key and scanner-button
sources get fakes through the same constructor arguments production uses (a port object, a
device path that is a FIFO, a poll callable), plus a fake clock where durations matter so no
test depends on how fast this machine is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.buttons import (
    EV_KEY,
    BoxHello,
    BoxLineReader,
    ButtonError,
    ButtonEvent,
    Debouncer,
    InputKeyButton,
    ModemLineButton,
    NoButton,
    PressTracker,
    SaneSensorButton,
    SerialBoxButton,
    Trigger,
    check_pyserial,
    choose_profile,
    open_button,
    pack_input_event,
    profile_settings,
)
from agent.profiles import load_button_profiles

WAIT_S = 2.0  # upper bound for anything that should happen "now"; tests pass far quicker


# --------------------------------------------------------------------------------------------
# Helpers


class PtyBox:
    """The far end of a pty pair, playing the button box."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo/canonical processing before pyserial configures it
        self.path = os.ttyname(self.slave)
        self._buf = b""

    def write(self, data: bytes | str) -> None:
        os.write(self.master, data.encode() if isinstance(data, str) else data)

    def read_line(self, timeout: float = WAIT_S) -> str | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                self._buf += os.read(self.master, 1024)
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode("ascii")

    def read_lines_until(self, last: str, timeout: float = WAIT_S) -> list[str]:
        lines: list[str] = []
        while True:
            line = self.read_line(timeout)
            assert line is not None, f"box never received {last!r}, got {lines}"
            lines.append(line)
            if line == last:
                return lines

    def unplug(self) -> None:
        os.close(self.master)
        os.close(self.slave)


class Pump:
    """Runs a source's `events` in a thread and hands the events over through a queue."""

    def __init__(self, source: object) -> None:
        self.stop = threading.Event()
        self.events: queue.Queue[ButtonEvent] = queue.Queue()
        self.error: BaseException | None = None
        self.source = source
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for event in self.source.events(self.stop):  # type: ignore[attr-defined]
                self.events.put(event)
        except BaseException as exc:
            self.error = exc

    def next(self, timeout: float = WAIT_S) -> ButtonEvent:
        return self.events.get(timeout=timeout)

    def assert_quiet(self, for_s: float = 0.15) -> None:
        with pytest.raises(queue.Empty):
            self.events.get(timeout=for_s)

    def finish(self) -> list[ButtonEvent]:
        self.stop.set()
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "events() did not return after stop"
        rest = []
        while not self.events.empty():
            rest.append(self.events.get_nowait())
        return rest


@pytest.fixture
def pty_box() -> Iterator[PtyBox]:
    box = PtyBox()
    yield box
    for fd in (box.master, box.slave):
        with contextlib.suppress(OSError):
            os.close(fd)


@pytest.fixture
def box_button(pty_box: PtyBox) -> Iterator[SerialBoxButton]:
    button = SerialBoxButton(pty_box.path, long_s=0.3, hello_timeout_s=10.0)
    yield button
    button.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------------------------
# Shared press logic


def test_debouncer_ignores_single_sample_glitches() -> None:
    d = Debouncer(0.03)
    samples = [(0.00, True), (0.01, False), (0.02, True), (0.03, True), (0.04, True), (0.06, True)]
    changes = [d.update(level, t) for t, level in samples]
    assert changes == [None, None, None, None, None, True]  # T stable since 0.02 → 0.05+


def test_press_tracker_short_long_and_no_double_fire() -> None:
    t = PressTracker(long_s=1.5)
    t.down(1, 0.0)
    t.down(1, 0.2)  # auto-repeat / repeated DOWN while held: ignored
    assert t.tick(1.0) == []
    assert t.up(1, 1.0) == ButtonEvent(1, "short", 1.0)
    t.down(2, 2.0)
    assert t.tick(3.6) == [ButtonEvent(2, "long", 3.6)]
    assert t.tick(4.0) == []  # fires once
    assert t.up(2, 5.0) is None  # release of an already reported long press
    assert t.up(1, 6.0) is None  # UP without DOWN


def test_press_tracker_prefers_device_timestamps() -> None:
    t = PressTracker(long_s=1.5)
    t.down(1, at=10.0, stamp=500.0)
    assert t.up(1, at=10.001, stamp=502.0) == ButtonEvent(1, "long", 10.001)


def test_button_event_is_validated() -> None:
    with pytest.raises(ValueError, match="button"):
        ButtonEvent(3, "short", 0.0)
    with pytest.raises(ValueError, match="kind"):
        ButtonEvent(1, "double", 0.0)  # type: ignore[arg-type]


def test_line_reader_splits_discards_overlong_and_non_ascii() -> None:
    r = BoxLineReader(max_bytes=16)
    assert r.feed(b"BTN 1 DO") == []
    assert r.feed(b"WN\r\nBTN 1 UP\n\n  \nPO") == ["BTN 1 DOWN", "BTN 1 UP"]
    assert r.feed(b"NG\n" + b"x" * 20) == ["PONG"]
    assert r.feed(b"y" * 20 + b"BTN 1 SHORT\nBTN 2 SHORT\n") == ["BTN 2 SHORT"]
    assert r.feed(b"z" * 17) == []  # over-long, and its end arrives in a later read:
    assert r.feed(b"BTN 1 SHORT\nPONG\n") == ["PONG"]  # still part of the discarded line
    assert r.feed(b"BTN \xff\nOK\n") == ["OK"]


def test_choose_profile() -> None:
    assert choose_profile(ButtonEvent(1, "short", 0)) == "primary"
    assert choose_profile(ButtonEvent(1, "long", 0)) == "alternate"
    assert choose_profile(ButtonEvent(2, "short", 0)) == "alternate"


# --------------------------------------------------------------------------------------------
# (a) Serial box over a real pty


@pytest.mark.serial
def test_box_hello_short_press_and_button_two(pty_box: PtyBox, box_button: SerialBoxButton) -> None:
    pump = Pump(box_button)
    pty_box.write("HELLO sohoa-box 1 fw-0.3\r\n")
    pty_box.write("BTN 1 DOWN\nBTN 1 UP\n")
    first = pump.next()
    assert (first.button, first.kind) == (1, "short")
    pty_box.write("BTN 2 DOWN\nBTN 2 UP\n")
    second = pump.next()
    assert (second.button, second.kind) == (2, "short")
    assert choose_profile(second) == "alternate"
    assert box_button.hello == BoxHello(protocol=1, firmware="fw-0.3")
    assert box_button.alive
    assert pump.finish() == []


@pytest.mark.serial
def test_box_long_press_fires_while_held_and_once(
    pty_box: PtyBox, box_button: SerialBoxButton
) -> None:
    pump = Pump(box_button)
    pty_box.write("BTN 1 DOWN\n")
    pressed = time.monotonic()
    event = pump.next()  # arrives while the button is still held
    assert (event.button, event.kind) == (1, "long")
    assert event.at - pressed >= 0.3 - 0.01
    pty_box.write("BTN 1 DOWN\nBTN 1 UP\n")  # a repeated DOWN and the release: nothing more
    pump.assert_quiet()
    assert pump.finish() == []


@pytest.mark.serial
def test_box_measured_presses(pty_box: PtyBox, box_button: SerialBoxButton) -> None:
    pump = Pump(box_button)
    pty_box.write("BTN 1 SHORT\nbtn 2 long\n")
    assert [(e.button, e.kind) for e in (pump.next(), pump.next())] == [(1, "short"), (2, "long")]
    pump.finish()


@pytest.mark.serial
def test_box_garbage_and_overlong_lines_ignored(
    pty_box: PtyBox, box_button: SerialBoxButton, caplog: pytest.LogCaptureFixture
) -> None:
    pump = Pump(box_button)
    pty_box.write(b"\x00\xff\xfe noise\n")
    pty_box.write("FOO BAR\nBTN 3 DOWN\nBTN 1 SIDEWAYS\nHELLO sohoa-box x\nERR bad LED colour\n")
    pty_box.write("Z" * 300 + "BTN 1 SHORT\n")  # a press inside an over-long line is not a press
    pty_box.write("BTN 2 SHORT\n")
    event = pump.next()
    assert (event.button, event.kind) == (2, "short")
    pump.assert_quiet()
    pump.finish()
    assert "unknown box line ignored" in caplog.text
    assert "over 128 bytes discarded" in caplog.text
    assert "box reported an error" in caplog.text


@pytest.mark.serial
def test_box_ping_when_no_hello(pty_box: PtyBox) -> None:
    # a box whose board did not reset on open (no HELLO): the host asks, PONG is enough
    box = SerialBoxButton(pty_box.path, hello_timeout_s=0.05)
    pump = Pump(box)
    assert pty_box.read_line() == "PING"
    pty_box.write("PONG\n")
    deadline = time.monotonic() + WAIT_S
    while not box.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    assert box.alive
    assert box.hello is None
    pump.finish()
    box.close()


@pytest.mark.serial
def test_box_commands_reach_the_box(pty_box: PtyBox, box_button: SerialBoxButton) -> None:
    assert box_button.send("LED green blink")
    assert box_button.send("BEEP 2 200")
    assert pty_box.read_line() == "LED green blink"
    assert pty_box.read_line() == "BEEP 2 200"
    with pytest.raises(ValueError, match="not a box command"):
        box_button.send("LED green on\nBEEP 9 2000")


@pytest.mark.serial
def test_box_unplugged_then_back(tmp_path: Path) -> None:
    # the config names a stable symlink, as /dev/serial/by-id does; the pty behind it changes
    first = PtyBox()
    link = tmp_path / "usb-sohoa-box"
    link.symlink_to(first.path)
    box = SerialBoxButton(str(link), hello_timeout_s=10.0, retry_first_s=0.02, retry_max_s=0.05)
    box.send("LED yellow on")
    assert first.read_line() == "LED yellow on"
    pump = Pump(box)
    first.write("BTN 1 SHORT\n")
    assert pump.next().kind == "short"

    first.write("BTN 1 DOWN\n")  # held while the cable is pulled: its UP never comes
    time.sleep(0.05)
    # Pulled: udev removes the /dev/serial/by-id link with the device. (Left in place, the link
    # names a /dev/pts number the kernel hands to the next pty anyone opens: CI saw the box
    # reconnect to another test's pty.)
    link.unlink()
    first.unplug()
    deadline = time.monotonic() + WAIT_S
    while box.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not box.connected
    assert not box.send("BEEP 1 100")  # dropped while unplugged, no exception

    second = PtyBox()
    try:
        new_link = tmp_path / "new-link"
        new_link.symlink_to(second.path)
        new_link.replace(link)
        assert second.read_line() == "LED yellow on"  # the LED state is restored on reconnect
        second.write("BTN 1 UP\nHELLO sohoa-box 1 fw-0.3\nBTN 2 SHORT\n")
        event = pump.next()
        assert (event.button, event.kind) == (2, "short")
        assert pump.error is None
        pump.finish()
    finally:
        box.close()
        second.unplug()


@pytest.mark.serial
def test_box_gone_for_good_is_a_clear_error(tmp_path: Path) -> None:
    first = PtyBox()
    link = tmp_path / "usb-sohoa-box"
    link.symlink_to(first.path)
    box = SerialBoxButton(str(link), retry_first_s=0.02, retry_max_s=0.05, give_up_s=0.2)
    pump = Pump(box)
    link.unlink()  # pulled, as above: the link goes with the device
    first.unplug()
    pump.thread.join(WAIT_S)
    assert isinstance(pump.error, ButtonError)
    assert pump.error.key == "button.port_missing"
    box.close()


def test_pyserial_version_is_checked() -> None:
    major, minor = (int(part) for part in check_pyserial().split(".")[:2])
    assert (major, minor) >= (3, 3)


def test_box_port_that_cannot_be_opened(tmp_path: Path) -> None:
    with pytest.raises(ButtonError) as missing:
        SerialBoxButton(str(tmp_path / "no-such-tty"))
    assert missing.value.key == "button.port_missing"
    not_a_tty = tmp_path / "file"
    not_a_tty.write_text("")
    with pytest.raises(ButtonError) as bad:
        SerialBoxButton(str(not_a_tty))
    assert bad.value.key == "button.port_open_failed"
    waiting = SerialBoxButton(str(tmp_path / "no-such-tty"), wait_for_port=True)
    assert not waiting.connected


@pytest.mark.serial
def test_box_port_held_by_another_agent(pty_box: PtyBox, box_button: SerialBoxButton) -> None:
    with pytest.raises(ButtonError) as busy:
        SerialBoxButton(pty_box.path)
    assert busy.value.key == "button.port_busy"


@pytest.mark.serial
def test_press_during_running_scan_is_ignored(
    pty_box: PtyBox, box_button: SerialBoxButton, caplog: pytest.LogCaptureFixture
) -> None:
    scanning = threading.Event()
    finish_scan = threading.Event()
    started: list[tuple[int, str]] = []
    busy: list[ButtonEvent] = []

    def scan(event: ButtonEvent, choice: str) -> None:
        started.append((event.button, choice))
        scanning.set()
        finish_scan.wait(WAIT_S)

    caplog.set_level(logging.INFO, logger="agent.buttons")
    trigger = Trigger(box_button, scan, on_busy=busy.append)
    stop = threading.Event()
    runner = threading.Thread(target=trigger.run, args=(stop,), daemon=True)
    runner.start()

    pty_box.write("BTN 1 SHORT\n")
    assert scanning.wait(WAIT_S)
    pty_box.write("BTN 1 SHORT\n")  # impatient second press while the first scan runs
    deadline = time.monotonic() + WAIT_S
    while not busy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(busy) == 1
    assert "scan already running" in caplog.text

    finish_scan.set()
    assert trigger.wait_idle(WAIT_S)
    pty_box.write("BTN 2 SHORT\n")
    deadline = time.monotonic() + WAIT_S
    while len(started) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert trigger.wait_idle(WAIT_S)
    assert started == [(1, "primary"), (2, "alternate")]
    stop.set()
    runner.join(WAIT_S)
    assert not runner.is_alive()


def test_trigger_survives_a_failing_scan() -> None:
    def scan(event: ButtonEvent, choice: str) -> None:
        raise RuntimeError("scanner jammed")

    trigger = Trigger(NoButton(), scan)
    assert trigger.handle(ButtonEvent(1, "long", 0.0))
    assert trigger.wait_idle(WAIT_S)
    assert trigger.handle(ButtonEvent(1, "short", 0.0))  # the lock was released
    assert trigger.wait_idle(WAIT_S)


# --------------------------------------------------------------------------------------------
# (b) Modem-line button with a fake port through the constructor


class FakeModemPort:
    """Scripted CTS/DSR samples; every read moves the fake clock by one poll (10 ms)."""

    def __init__(self, samples: list[bool], clock: FakeClock, line: str = "cts") -> None:
        self.dtr = False
        self.samples = list(samples)
        self.clock = clock
        self.line = line
        self.exhausted = threading.Event()
        self.fail_once_at: int | None = None
        self.reads = 0
        self.opened = 0
        self.closed = 0

    def _sample(self, line: str) -> bool:
        if line != self.line:
            raise AssertionError(f"read {line}, expected {self.line}")
        self.reads += 1
        self.clock.now += 0.01
        if self.fail_once_at is not None and self.reads == self.fail_once_at:
            self.fail_once_at = None
            raise OSError(5, "Input/output error")  # what an unplugged adapter gives
        if not self.samples:
            self.exhausted.set()
            return False
        return self.samples.pop(0)

    @property
    def cts(self) -> bool:
        return self._sample("cts")

    @property
    def dsr(self) -> bool:
        return self._sample("dsr")

    def open(self) -> None:
        self.opened += 1

    def close(self) -> None:
        self.closed += 1


def _run_modem(port: FakeModemPort, clock: FakeClock, **kw: object) -> list[ButtonEvent]:
    button = ModemLineButton(port, poll_interval_s=0.0002, clock=clock, **kw)  # type: ignore[arg-type]
    assert port.dtr is True  # the host drives DTR for the button to return
    pump = Pump(button)
    assert port.exhausted.wait(WAIT_S)
    return pump.finish()


def test_modem_line_bouncy_press_is_one_short_press() -> None:
    clock = FakeClock()
    F, T = False, True
    samples = [F] * 5 + [T, F, T, F, T] + [T] * 10 + [F, T, F] + [F] * 10
    events = _run_modem(FakeModemPort(samples, clock), clock)
    assert [(e.button, e.kind) for e in events] == [(1, "short")]


def test_modem_line_long_hold_is_one_long_press() -> None:
    clock = FakeClock()
    samples = [False] * 3 + [True] * 200 + [False] * 10  # held 2 s of fake time
    events = _run_modem(FakeModemPort(samples, clock), clock)
    assert [(e.button, e.kind) for e in events] == [(1, "long")]
    assert events[0].at - 1000.0 == pytest.approx(0.04 + 1.5 + 0.03, abs=0.02)


def test_modem_line_on_dsr_and_reconnect_after_read_error() -> None:
    clock = FakeClock()
    port = FakeModemPort([False] * 3 + [True] * 10 + [False] * 10, clock, line="dsr")
    port.fail_once_at = 2  # unplugged before the press, back at once
    events = _run_modem(port, clock, line="dsr", retry_first_s=0.001)
    assert [(e.button, e.kind) for e in events] == [(1, "short")]
    assert port.closed == 2  # on the loss, and before reopening
    assert port.opened == 1


def test_modem_line_rejects_unknown_line() -> None:
    with pytest.raises(ButtonError) as bad:
        ModemLineButton(FakeModemPort([], FakeClock()), line="ri")  # type: ignore[arg-type]
    assert bad.value.key == "button.bad_settings"


# --------------------------------------------------------------------------------------------
# (c) Input-key button fed packed input_event records


KEY_F13, KEY_ENTER, KEY_A = 183, 28, 30
EV_SYN = 0


def _key(t: float, code: int, value: int) -> bytes:
    sec = int(t)
    return pack_input_event(sec, round((t - sec) * 1e6), EV_KEY, code, value) + pack_input_event(
        sec, round((t - sec) * 1e6), EV_SYN, 0, 0
    )


def _fifo_writer(path: Path, chunks: list[bytes | Callable[[], object]]) -> threading.Thread:
    def write() -> None:
        with open(path, "wb", buffering=0) as fifo:  # blocks until the button opens the FIFO
            for chunk in chunks:
                if callable(chunk):
                    chunk()
                else:
                    fifo.write(chunk)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_input_key_short_long_repeat_and_other_keys(tmp_path: Path) -> None:
    fifo = tmp_path / "event-kbd"
    os.mkfifo(fifo)
    data = (
        _key(100.00, KEY_A, 1)  # some other key: ignored
        + _key(100.05, KEY_A, 0)
        + _key(200.00, KEY_F13, 1)
        + _key(200.25, KEY_F13, 2)  # auto-repeat while held
        + _key(200.30, KEY_F13, 0)  # 0.3 s → short
        + _key(300.00, KEY_F13, 1)
        + _key(302.00, KEY_F13, 0)  # 2 s by the kernel's clock → long, although read at once
        + _key(400.00, KEY_ENTER, 1)
        + _key(400.10, KEY_ENTER, 0)  # the second pedal
    )
    half = len(data) // 2 + 3  # cut inside an event record: it must be reassembled
    writer = _fifo_writer(fifo, [data[:half], lambda: time.sleep(0.02), data[half:]])
    button = InputKeyButton(fifo, KEY_F13, alt_key_code=KEY_ENTER)
    events = list(button.events(threading.Event()))  # ends at EOF (writer closed)
    writer.join(WAIT_S)
    button.close()
    assert [(e.button, e.kind) for e in events] == [(1, "short"), (1, "long"), (2, "short")]


def test_input_key_regular_replay_file(tmp_path: Path) -> None:
    replay = tmp_path / "replay.bin"
    replay.write_bytes(_key(5.0, KEY_F13, 1) + _key(5.1, KEY_F13, 0))
    button = InputKeyButton(replay, KEY_F13)
    assert [e.kind for e in button.events(threading.Event())] == ["short"]
    button.close()


def test_input_key_long_press_fires_while_held(tmp_path: Path) -> None:
    fifo = tmp_path / "pedal"
    os.mkfifo(fifo)
    got_long = threading.Event()
    writer = _fifo_writer(
        fifo,
        [_key(10.0, KEY_F13, 1), lambda: got_long.wait(WAIT_S), _key(60.0, KEY_F13, 0)],
    )
    button = InputKeyButton(fifo, KEY_F13, long_s=0.1)
    events = []
    for event in button.events(threading.Event()):
        events.append(event)
        got_long.set()
    writer.join(WAIT_S)
    button.close()
    assert [(e.button, e.kind) for e in events] == [(1, "long")]  # the release adds nothing


def test_input_key_missing_device(tmp_path: Path) -> None:
    with pytest.raises(ButtonError) as missing:
        InputKeyButton(tmp_path / "event99", KEY_F13)
    assert missing.value.key == "button.port_missing"


def test_input_key_stops_when_asked(tmp_path: Path) -> None:
    fifo = tmp_path / "idle"
    os.mkfifo(fifo)
    release = threading.Event()
    writer = _fifo_writer(fifo, [lambda: release.wait(WAIT_S)])
    pump = Pump(InputKeyButton(fifo, KEY_F13))
    started = time.monotonic()
    assert pump.finish() == []
    assert time.monotonic() - started < 0.5
    release.set()
    writer.join(WAIT_S)


# --------------------------------------------------------------------------------------------
# (d) Scanner button through a SANE poll callable


def _sane_poll(
    samples: list[bool | Exception], clock: FakeClock, step: float = 0.5
) -> tuple[Callable[[], bool], threading.Event]:
    done = threading.Event()

    def poll() -> bool:
        clock.now += step
        if not samples:
            done.set()
            return False
        sample = samples.pop(0)
        if isinstance(sample, Exception):
            raise sample
        return sample

    return poll, done


def test_sane_button_latched_single_sample_is_a_press() -> None:
    clock = FakeClock()
    busy = RuntimeError("Device busy")  # the scan thread holds the scanner: no change
    poll, done = _sane_poll([False, True, False, busy, busy, False, True, True, True], clock)
    button = SaneSensorButton(poll, interval=0.001, clock=clock)
    pump = Pump(button)
    assert done.wait(WAIT_S)
    events = pump.finish()
    # one latched sample → short; held for 3 polls (1.5 s) → long
    assert [(e.button, e.kind) for e in events] == [(1, "short"), (1, "long")]


def test_sane_button_stop_is_seen_within_two_tenths() -> None:
    button = SaneSensorButton(lambda: False, interval=5.0)
    pump = Pump(button)
    time.sleep(0.05)
    started = time.monotonic()
    pump.finish()
    assert time.monotonic() - started < 0.2


# --------------------------------------------------------------------------------------------
# Factory


def test_open_button_kinds(pty_box: PtyBox) -> None:
    none = open_button("none")
    assert isinstance(none, NoButton)
    pump = Pump(none)
    assert pump.finish() == []
    assert isinstance(open_button("scanner-button", poll=lambda: False), SaneSensorButton)
    box = open_button("serial-box", port=pty_box.path, baud=9600)
    assert isinstance(box, SerialBoxButton)
    box.close()
    with pytest.raises(ButtonError) as unknown:
        open_button("gpio")
    assert unknown.value.key == "button.unknown_kind"
    with pytest.raises(ButtonError) as bad:
        open_button("usb-key", device="/dev/input/event0")
    assert bad.value.key == "button.bad_settings"


def test_button_settings_come_from_the_packaged_profiles(tmp_path: Path) -> None:
    stated = {p.id: p for p in load_button_profiles()}
    assert profile_settings(stated["serial-box"]) == {"baud": 9600, "long_s": 1.5}
    assert profile_settings(stated["modem-line"]) == {
        "long_s": 1.5,
        "debounce_s": 0.03,
        "poll_interval_s": 0.02,
    }
    assert profile_settings(stated["scanner-button"]) == {
        "long_s": 1.5,
        "debounce_s": 0.0,
        "interval": 0.5,
    }
    usb = profile_settings(stated["usb-key"])
    assert usb["key_code"] == [KEY_F13, 96, KEY_ENTER, 57]  # F13, KPENTER, ENTER, SPACE
    # Every key the profile lists starts a scan (the device is grabbed); others do nothing.
    replay = tmp_path / "replay.bin"
    replay.write_bytes(
        _key(1.0, KEY_ENTER, 1)
        + _key(1.1, KEY_ENTER, 0)
        + _key(2.0, KEY_A, 1)
        + _key(2.1, KEY_A, 0)
        + _key(3.0, KEY_F13, 1)
        + _key(5.0, KEY_F13, 0)
    )
    button = open_button("usb-key", device_path=replay, **usb)
    events = list(button.events(threading.Event()))
    button.close()
    assert [(e.button, e.kind) for e in events] == [(1, "short"), (1, "long")]


def test_a_site_profile_overrides_the_button_settings_and_bad_keys_are_refused(
    tmp_path: Path,
) -> None:
    site = tmp_path / "hw" / "buttons"
    site.mkdir(parents=True)
    packaged = (Path(__file__).parents[1] / "hw_profiles" / "buttons" / "usb-key.toml").read_text()
    site.joinpath("usb-key.toml").write_text(
        packaged.replace("long_press_ms = 1500", "long_press_ms = 800").replace(
            'key_codes = ["KEY_F13", "KEY_KPENTER", "KEY_ENTER", "KEY_SPACE"]',
            'key_codes = ["KEY_F14"]',
        )
    )
    (usb,) = [p for p in load_button_profiles(tmp_path / "hw") if p.id == "usb-key"]
    assert profile_settings(usb) == {"long_s": 0.8, "key_code": [184]}
    with pytest.raises(ButtonError) as bad:
        profile_settings(usb.model_copy(update={"key_codes": ("KEY_NOPE",)}))
    assert bad.value.key == "button.bad_settings"
    with pytest.raises(ButtonError):
        InputKeyButton(tmp_path / "replay", [])
