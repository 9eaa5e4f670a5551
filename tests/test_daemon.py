"""The service as a technician meets it: press the box's button, pages reach the archive.

`sohoa-agent run` with a serial button box on a real pty, SANE's test scanner, tesseract, a
real Mosquitto and the server as a process. Also: the device's retained status and last will
drive the fleet view, and SIGTERM stops the service cleanly."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import time
import tty
from pathlib import Path

import pytest
from harness import BIN, Broker, ServerProcess, agent_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.sane,
    pytest.mark.mqtt,
    pytest.mark.serial,
    pytest.mark.tesseract,
]


class Box:
    """The host side of a pty plays the Arduino box."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave
        self.heard: list[str] = []
        self._buf = b""

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def read_until(self, predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(predicate(h) for h in self.heard):
                return True
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                self._buf += os.read(self.master, 4096)
                *lines, self._buf = self._buf.split(b"\n")
                self.heard += [x.decode(errors="replace").strip() for x in lines]
        return any(predicate(h) for h in self.heard)

    def close(self) -> None:
        os.close(self.master)
        os.close(self._slave)


def _wait(cond, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.3)
    return bool(cond())


def test_button_press_to_archive(tmp_path: Path, broker: Broker, server: ServerProcess) -> None:
    box = Box()
    env = agent_env(
        tmp_path / "agent",
        broker.url,
        device_id="xa-box-01",
        SOHOA_BUTTON="serial-box",
        SOHOA_BUTTON_PORT=box.path,
        SOHOA_DPI="200",
    )
    log = open(tmp_path / "agent.log", "wb")  # noqa: SIM115
    agent = subprocess.Popen([str(BIN / "sohoa-agent"), "run"], env=env, stdout=log, stderr=log)
    try:
        box.send("HELLO sohoa-box 1 test")
        assert box.read_until(lambda h: h == "LED green on", 20), box.heard  # ready
        box.send("BTN 1 SHORT")
        assert box.read_until(lambda h: h == "LED green blink", 20), box.heard  # scanning

        def complete() -> bool:
            batches = server.get_json("/api/v1/batches")
            return bool(batches) and batches[0]["complete"]

        assert _wait(complete, 120), (tmp_path / "agent.log").read_text()[-3000:]
        batch = server.get_json("/api/v1/batches")[0]
        assert batch["page_count"] == 10
        assert batch["device_id"] == "xa-box-01"
        devices = {d["device_id"]: d for d in server.get_json("/api/v1/devices")}
        assert devices["xa-box-01"]["status"] == "online"

        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0
        # A clean stop says so: the fleet view shows the device offline.
        assert _wait(lambda: server.get_json("/api/v1/devices")[0]["status"] == "offline", 15)
    finally:
        if agent.poll() is None:
            agent.kill()
        box.close()
        log.close()


def test_last_will_marks_a_vanished_device_offline(
    tmp_path: Path, broker: Broker, server: ServerProcess
) -> None:
    env = agent_env(
        tmp_path / "agent", broker.url, device_id="xa-will-01", SOHOA_MQTT_KEEPALIVE="10"
    )
    agent = subprocess.Popen(
        [str(BIN / "sohoa-agent"), "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def status() -> str:
            devices = {d["device_id"]: d for d in server.get_json("/api/v1/devices")}
            return devices.get("xa-will-01", {}).get("status", "")

        assert _wait(lambda: status() == "online", 20)
        agent.kill()  # a power cut: no goodbye; the broker publishes the will
        agent.wait(10)
        assert _wait(lambda: status() == "offline", 30)
    finally:
        if agent.poll() is None:
            agent.kill()


def test_a_scan_stalled_mid_page_is_reported_and_the_watchdog_left_to_restart(
    tmp_path: Path, broker: Broker
) -> None:
    """A scanner that stops sending mid-page leaves the capture thread blocked in the driver,
    where no thread check sees it. The agent says so (log, box) and stops pinging systemd's
    watchdog (which then restarts it) until lines come again. Played by SANE's test backend
    configured (its test.conf, through SANE_CONFIG_DIR) to pause 0.2 s before each 64 KiB
    block, with scan_stall_s at 0.1 s and the watchdog's half-period at 0.25 s; systemd's
    side is a datagram socket at NOTIFY_SOCKET, as sd_notify(3) describes. The page takes
    ~8 s: a stop (SIGTERM) meanwhile lets it be stored, then the agent exits 0 — the
    backend's reader thread resets SIGTERM to its default action when it starts, which
    would kill the agent mid-page."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(0.1)
    sane_dir = tmp_path / "sane.d"
    sane_dir.mkdir()
    (sane_dir / "test.conf").write_text("read-delay true\nread-delay-duration 200000\n")
    box = Box()
    env = agent_env(
        tmp_path / "agent",
        broker.url,
        device_id="xa-stall-01",
        SOHOA_BUTTON="serial-box",
        SOHOA_BUTTON_PORT=box.path,
        SOHOA_SOURCE="flatbed",
        SOHOA_MODE="gray",
        SOHOA_DPI="200",
        SOHOA_SCAN_STALL_S="0.1",
        NOTIFY_SOCKET=str(tmp_path / "notify"),
        WATCHDOG_USEC="500000",
        SANE_CONFIG_DIR=f"{sane_dir}:",  # the trailing colon keeps the system's dirs after it
    )
    log_path = tmp_path / "agent.log"
    log = open(log_path, "wb")  # noqa: SIM115
    agent = subprocess.Popen([str(BIN / "sohoa-agent"), "run"], env=env, stdout=log, stderr=log)
    heard: list[str] = []

    def listen(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                heard.append(notify.recv(4096).decode())

    def text() -> str:
        return log_path.read_text(errors="replace")

    try:
        box.send("HELLO sohoa-box 1 test")
        assert box.read_until(lambda h: h == "LED green on", 20), box.heard
        listen(1.5)
        assert "READY=1" in heard and heard.count("WATCHDOG=1") >= 2  # pinged while idle
        box.send("BTN 1 SHORT")
        deadline = time.monotonic() + 60
        while not ("sending again" in text() or time.monotonic() > deadline):
            listen(0.2)
        log_text = text()
        assert "scanner_stalled: test:0 has sent nothing for" in log_text, log_text[-3000:]
        assert "sending again" in log_text, log_text[-3000:]  # lines came: pinging again
        assert "page 1 stored" not in log_text  # all this while the page was being read
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(60) == 0, text()[-3000:]
        assert "page 1 stored" in text()  # the page on the glass was finished and kept
    finally:
        if agent.poll() is None:
            agent.kill()
        box.close()
        log.close()
        notify.close()
