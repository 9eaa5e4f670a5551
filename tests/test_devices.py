"""Scanner discovery and identity, and the scanner's own button polled through SANE."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent import profiles
from agent.buttons import SaneSensorButton
from agent.capture import sane_device


def _usb(sysfs: Path, port: str, bus: int, dev: int, vid: str, pid: str, serial: str = "") -> None:
    d = sysfs / port
    d.mkdir(parents=True)
    (d / "busnum").write_text(f"{bus}\n")
    (d / "devnum").write_text(f"{dev}\n")
    (d / "idVendor").write_text(f"{vid}\n")
    (d / "idProduct").write_text(f"{pid}\n")
    if serial:
        (d / "serial").write_text(f"{serial}\n")


def test_usb_identity_is_stable_across_replugging(tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    _usb(sysfs, "1-1.3", 1, 4, "04C5", "132E", serial="A1B2C3")
    _usb(sysfs, "1-1.4", 1, 9, "1083", "1658")
    before = sane_device.usb_identity("fujitsu:libusb:001:004", sysfs)
    assert before is not None
    assert before.usb_id == "04c5:132e"
    assert before.stable_id == "usb:04c5:132e:A1B2C3"
    # Re-plugged: a new device number, the same serial.
    (sysfs / "1-1.3" / "devnum").write_text("7\n")
    after = sane_device.usb_identity("fujitsu:libusb:001:007", sysfs)
    assert after is not None
    assert after.stable_id == before.stable_id
    no_serial = sane_device.usb_identity("canon_dr:libusb:001:009", sysfs)
    assert no_serial is not None
    assert no_serial.stable_id == "usb:1083:1658@1-1.4"
    assert sane_device.usb_identity("test:0", sysfs) is None
    assert sane_device.usb_identity("epson2:libusb:002:001", sysfs) is None


def test_the_usb_id_picks_the_profile(tmp_path: Path) -> None:
    known = profiles.load_scanner_profiles()
    info = profiles.SaneDeviceInfo(
        name="fujitsu:libusb:001:004", vendor="FUJITSU", model="fi-7160", usb_id="04c5:132e"
    )
    assert profiles.match_scanner(info, known).id == "fujitsu-fi-7160"
    stranger = profiles.SaneDeviceInfo(name="fujitsu:libusb:001:005", model="fi-9999")
    assert profiles.match_scanner(stranger, known).id != "fujitsu-fi-7160"


@pytest.mark.sane
def test_scanner_button_is_polled_without_holding_the_device() -> None:
    known = profiles.load_scanner_profiles()
    option = profiles.match_scanner(profiles.SaneDeviceInfo(name="test:0"), known).sensors.scan
    assert option == "bool-soft-select-soft-detect"
    poll = sane_device.sensor_poller("test:0", option)

    def press(value: bool) -> None:
        # Emulate the hardware: the test backend keeps option values across opens.
        sane_device.init()
        dev = sane_device.sane.open("test:0")
        try:
            dev.enable_test_options = True
            setattr(dev, option.replace("-", "_"), value)
        finally:
            dev.close()

    press(False)
    assert poll() is False
    # Between polls the device is free: a scan can open it.
    with sane_device.open_scanner("test:0", known):
        assert poll() is False  # busy while scanning reads as "not pressed"
    press(True)
    assert poll() is True
    button = SaneSensorButton(poll, interval=0.05)
    stop = threading.Event()
    events = []
    timer = threading.Timer(0.3, lambda: press(False))
    timer.start()
    for event in button.events(stop):
        events.append(event)
        stop.set()
    timer.join()
    assert len(events) == 1
    assert events[0].button == 1
    press(False)
