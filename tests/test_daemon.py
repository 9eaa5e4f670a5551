"""The service as a technician meets it: press the box's button, pages reach the archive.

`sohoa-agent run` with a serial button box on a real pty, SANE's test scanner, tesseract, a
real Mosquitto and the server as a process. Also: the device's retained status and last will
drive the fleet view, and SIGTERM stops the service cleanly."""

from __future__ import annotations

import os
import select
import signal
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
