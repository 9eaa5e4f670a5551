"""Hardware from its profiles at run time: board and button profiles, the settings over them,
and the scanner chosen by its stable identity (agent/hardware.py, capture.sane_device)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent import hardware, profiles
from agent.buttons import open_button
from agent.buttons.feedback import STATE_SIGNALS, AgentState, SerialBoxFeedback, Signal
from agent.buttons.usb_key import EV_KEY, KEY_CODES, pack_input_event
from agent.capture import sane_device
from agent.config import AgentSettings, load
from agent.daemon import Daemon
from agent.errors import ConfigError, ScannerError

PACKAGED = Path(__file__).resolve().parents[1] / "hw_profiles"
F13, ENTER = KEY_CODES["KEY_F13"], KEY_CODES["KEY_ENTER"]


def _settings(tmp_path: Path, **values: object) -> AgentSettings:
    return AgentSettings.model_validate({"device_id": "st-1", "data_dir": tmp_path, **values})


def _press(path: Path, code: int, seconds: float) -> Path:
    """A replay file of one key held `seconds` (the kernel's own timestamps)."""
    held = round(seconds * 1e6)
    path.write_bytes(
        pack_input_event(10, 0, EV_KEY, code, 1)
        + pack_input_event(10 + held // 1_000_000, held % 1_000_000, EV_KEY, code, 0)
    )
    return path


def _kinds(settings: dict[str, object], replay: Path) -> list[tuple[int, str]]:
    button = open_button("usb-key", device_path=replay, **settings)
    try:
        return [(e.button, e.kind) for e in button.events(threading.Event())]
    finally:
        button.close()


def test_the_board_profile_sizes_the_pipeline_and_a_setting_overrides_it(tmp_path: Path) -> None:
    pi4 = hardware.resolve(_settings(tmp_path, board="raspberry-pi-4"), cpu_count=4)
    assert pi4.board is not None and pi4.board.id == "raspberry-pi-4"
    assert pi4.pipeline_workers == 2  # the profile's, not the 4 cores
    assert pi4.memory_budget_mb == 600
    assert pi4.origins["pipeline_workers"] == "board raspberry-pi-4"

    mine = hardware.resolve(
        _settings(tmp_path, board="raspberry-pi-4", pipeline_workers=3), cpu_count=4
    )
    assert (mine.pipeline_workers, mine.origins["pipeline_workers"]) == (3, "setting")

    # the memory budget caps the count: 300 MB hold one worker with its tesseract
    small = hardware.resolve(
        _settings(tmp_path, board="raspberry-pi-4", pipeline_workers=3, memory_budget_mb=300),
        cpu_count=4,
    )
    assert small.pipeline_workers == 1
    assert "capped by memory_budget_mb 300" in small.origins["pipeline_workers"]

    bare = hardware.resolve(_settings(tmp_path, board="none"), cpu_count=7)
    assert (bare.board, bare.pipeline_workers, bare.memory_budget_mb) == (None, 7, None)

    with pytest.raises(ConfigError) as unknown:
        hardware.resolve(_settings(tmp_path, board="raspberry-pi-9"))
    assert "raspberry-pi-4" in unknown.value.detail  # names the profiles there are


def test_auto_finds_the_board_from_the_device_tree(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.5\0")
    found = hardware.resolve(_settings(tmp_path), model_file=model, cpu_count=4)
    assert found.board is not None and found.board.id == "raspberry-pi-4"
    assert found.origins["board"] == "detected"
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\0")
    found = hardware.resolve(_settings(tmp_path), model_file=model, cpu_count=4)
    assert found.board is not None and found.board.id == "raspberry-pi-5"
    # x86: no device tree, no board, one worker per core
    missing = hardware.resolve(_settings(tmp_path), model_file=tmp_path / "none", cpu_count=2)
    assert (missing.board, missing.pipeline_workers) == (None, 2)


def test_usb_key_codes_and_long_press_come_from_the_profile_or_the_settings(
    tmp_path: Path,
) -> None:
    profile = hardware.resolve(_settings(tmp_path, board="none", button="usb-key"))
    assert profile.button is not None and profile.button.id == "usb-key"
    assert profile.button_settings["key_code"][0] == F13  # usb-key.toml lists F13 first
    held = _press(tmp_path / "f13-1s.bin", F13, 1.0)
    assert _kinds(profile.button_settings, held) == [(1, "short")]  # profile: long is 1.5 s

    quick = hardware.resolve(
        _settings(tmp_path, board="none", button="usb-key", button_long_press_ms=800)
    )
    assert quick.origins["button.long_press_ms"] == "setting"
    assert _kinds(quick.button_settings, held) == [(1, "long")]

    # a pedal that sends F13 does nothing once the setting lists only ENTER
    enter_only = hardware.resolve(
        _settings(tmp_path, board="none", button="usb-key", button_key_codes=["KEY_ENTER"])
    )
    assert enter_only.button_settings["key_code"] == [ENTER]
    assert _kinds(enter_only.button_settings, held) == []
    assert _kinds(enter_only.button_settings, _press(tmp_path / "enter.bin", ENTER, 0.1)) == [
        (1, "short")
    ]


def test_button_settings_from_the_environment(tmp_path: Path) -> None:
    settings = load(
        None,
        environ={
            "SOHOA_DEVICE_ID": "st-1",
            "SOHOA_BOARD": "raspberry-pi-4",
            "SOHOA_BUTTON": "usb-key",
            "SOHOA_BUTTON_KEY_CODES": "KEY_F14, KEY_KPENTER",
            "SOHOA_BUTTON_LONG_PRESS_MS": "2000",
        },
    )
    assert settings.button_key_codes == ("KEY_F14", "KEY_KPENTER")
    hw = hardware.resolve(settings)
    assert hw.button_settings == {"long_s": 2.0, "key_code": [184, 96]}
    with pytest.raises(ConfigError):
        load(None, environ={"SOHOA_DEVICE_ID": "st-1", "SOHOA_BUTTON_LONG_PRESS_MS": "5"})


def test_the_daemon_opens_the_usb_key_its_profile_describes(tmp_path: Path) -> None:
    replay = _press(tmp_path / "pedal.bin", F13, 2.0)
    settings = _settings(
        tmp_path, board="raspberry-pi-4", button="usb-key", button_port=str(replay)
    )
    daemon = Daemon(settings, boot_id="b")
    source = daemon.button_source()
    assert source is not None
    try:
        events = [(e.button, e.kind) for e in source.events(threading.Event())]
    finally:
        source.close()
    assert events == [(1, "long")]  # F13 held 2 s: a long press by the profile's 1.5 s
    assert daemon.hardware is not None and daemon.hardware.pipeline_workers == 2


class _Box:
    """Records what feedback sends, through the seam SerialBoxButton.send fills."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def send(self, line: str) -> bool:
        self.lines.append(line)
        return True


def test_led_and_beep_patterns_come_from_the_button_profile(tmp_path: Path) -> None:
    packaged = hardware.resolve(_settings(tmp_path, board="none", button="serial-box"))
    assert packaged.button is not None and packaged.button.signals  # the profile states them
    assert dict(packaged.signals) == dict(STATE_SIGNALS)  # and docs/button-box.md stays true

    site = tmp_path / "site" / "buttons"
    site.mkdir(parents=True)
    text = (PACKAGED / "buttons" / "serial-box.toml").read_text(encoding="utf-8")
    # a commune whose box has no yellow LED and a louder disk-full alarm
    text = text.replace(
        '[signals.disk_full]\nleds = { red = "on" }\nbeeps = 2\nbeep_ms = 200',
        '[signals.disk_full]\nleds = { red = "blink" }\nbeeps = 4\nbeep_ms = 300',
    )
    site.joinpath("serial-box.toml").write_text(text, encoding="utf-8")
    hw = hardware.resolve(
        _settings(tmp_path, board="none", button="serial-box", hw_profiles_dir=tmp_path / "site")
    )
    assert hw.signals[AgentState.DISK_FULL] == Signal({"red": "blink"}, 4, 300, 60.0)
    box = _Box()
    feedback = SerialBoxFeedback(box, signals=hw.signals)
    feedback.show(AgentState.DISK_FULL)
    feedback.close()
    assert box.lines == ["LED green off", "LED yellow off", "LED red blink", "BEEP 4 300"]


def _usb(sysfs: Path, port: str, bus: int, dev: int, vid: str, pid: str, serial: str = "") -> None:
    d = sysfs / port
    d.mkdir(parents=True)
    for name, value in (("busnum", bus), ("devnum", dev), ("idVendor", vid), ("idProduct", pid)):
        (d / name).write_text(f"{value}\n")
    if serial:
        (d / "serial").write_text(f"{serial}\n")


def test_the_scanner_is_chosen_by_its_stable_identity(tmp_path: Path) -> None:
    """Two scanners of one model; the station uses the one it was set up with, whatever order
    SANE lists them in and whatever device numbers a re-plug gives them."""
    sysfs = tmp_path / "sys"
    _usb(sysfs, "1-1.2", 1, 4, "04c5", "132e", serial="AAA111")
    _usb(sysfs, "1-1.3", 1, 5, "04c5", "132e", serial="BBB222")
    first = profiles.SaneDeviceInfo(name="fujitsu:fi-7160:libusb:001:004", model="fi-7160")
    second = profiles.SaneDeviceInfo(name="fujitsu:fi-7160:libusb:001:005", model="fi-7160")
    wanted = "usb:04c5:132e:BBB222"
    assert sane_device.stable_id(second, sysfs) == wanted
    assert sane_device.choose_device(wanted, [first, second], sysfs) == second
    assert sane_device.choose_device(wanted, [second, first], sysfs) == second
    auto = sane_device.choose_device("auto", [second, first], sysfs)
    assert auto == sane_device.choose_device("auto", [first, second], sysfs) == first

    # re-plugged: new device numbers, listed the other way round
    replug = tmp_path / "sys2"
    _usb(replug, "1-1.2", 1, 9, "04c5", "132e", serial="AAA111")
    _usb(replug, "1-1.3", 1, 8, "04c5", "132e", serial="BBB222")
    a = profiles.SaneDeviceInfo(name="fujitsu:fi-7160:libusb:001:009", model="fi-7160")
    b = profiles.SaneDeviceInfo(name="fujitsu:fi-7160:libusb:001:008", model="fi-7160")
    assert sane_device.choose_device(wanted, [b, a], replug) == b
    assert sane_device.choose_device(wanted, [a, b], replug) == b

    # unplugged: refused, never another scanner in its place
    gone = tmp_path / "sys3"
    _usb(gone, "1-1.2", 1, 9, "04c5", "132e", serial="AAA111")
    with pytest.raises(ScannerError) as missing:
        sane_device.choose_device(wanted, [a], gone)
    assert missing.value.key == "scanner_not_found"
    assert "usb:04c5:132e:AAA111" in missing.value.detail
    # a plain SANE name still works, listed or not (the test backend is never listed)
    assert sane_device.choose_device("test:0", [a], gone).name == "test:0"
