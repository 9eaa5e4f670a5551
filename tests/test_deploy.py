"""The archive host's broker set-up as the docs tell an administrator to do it.

Debian 12's own ``/etc/mosquitto/mosquitto.conf`` (never a copy written here) plus the shipped
``systemd/mosquitto/`` files, with only the paths moved into a temp dir and the ports made
free: the broker must start, refuse anonymous clients, and carry a station's page to the
server's user over both listeners. An earlier snippet repeated ``persistence_location`` and
Mosquitto refused to start with Debian's config (issue #20).
"""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from harness import REPO, free_port, wait_port
from paho.mqtt.enums import CallbackAPIVersion

pytestmark = pytest.mark.mqtt

STOCK = Path("/etc/mosquitto/mosquitto.conf")
SHIPPED = REPO / "systemd" / "mosquitto"
# Every absolute path Debian's config or the snippet may name, and where it goes in the test.
MOVED = ("/etc/mosquitto/", "/var/lib/mosquitto/", "/var/log/mosquitto/", "/run/mosquitto/")


def _relocate(text: str, root: Path, ports: dict[str, int]) -> str:
    for prefix in MOVED:
        target = root / prefix.strip("/").replace("/", "_")
        target.mkdir(parents=True, exist_ok=True)
        text = text.replace(prefix, f"{target}/")

    def listener(m: re.Match[str]) -> str:
        port = ports.setdefault(m.group(1), free_port())
        return f"listener {port}{m.group(2)}"

    return re.sub(r"(?m)^listener (\d+)(.*)$", listener, text)


class Installed:
    """Debian's stock config + the shipped snippet, relocated under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports: dict[str, int] = {}
        etc = root / "etc_mosquitto"
        (etc / "conf.d").mkdir(parents=True)
        stock = _relocate(STOCK.read_text(), root, self.ports)
        if os.geteuid() == 0:
            # Started as root, mosquitto drops to the 'mosquitto' user, which cannot enter
            # pytest's root-only temp dir. The only line added to Debian's file.
            stock += "\nuser root\n"
        self.main = etc / "mosquitto.conf"
        self.main.write_text(stock)
        snippet = (SHIPPED / "sohoa.conf").read_text()
        (etc / "conf.d" / "sohoa.conf").write_text(_relocate(snippet, root, self.ports))
        for extra in SHIPPED.iterdir():
            if extra.name != "sohoa.conf":
                (etc / extra.name).write_text(extra.read_text())
        self.snippet = snippet
        self._certificate(etc / "certs")
        self._users()
        self.proc: subprocess.Popen[bytes] | None = None

    def _certificate(self, certs: Path) -> None:
        certs.mkdir(exist_ok=True)
        key, cert = certs / "server.key", certs / "server.crt"
        subj = ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]
        cmd = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", *subj]
        cmd += ["-keyout", str(key), "-out", str(cert)]
        subprocess.run(cmd, check=True, capture_output=True)

    def _users(self) -> None:
        """As docs/operations.md says: -c for the server's user (a new file), then devices."""
        passwd = self.root / "etc_mosquitto" / "sohoa.passwd"
        subprocess.run(
            ["mosquitto_passwd", "-c", "-b", str(passwd), "sohoa-server", "server-pw"],
            check=True,
        )
        subprocess.run(
            ["mosquitto_passwd", "-b", str(passwd), "xa-tan-phu-01", "device-pw"], check=True
        )
        os.chmod(passwd, 0o600)

    def start(self) -> None:
        log = open(self.root / "mosquitto.stderr", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.main)], stdout=log, stderr=log)
        try:
            wait_port(self.ports["1883"])
        except TimeoutError:
            self.stop()
            raise AssertionError(self.log()) from None

    def log(self) -> str:
        return (self.root / "mosquitto.stderr").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[Installed]:
    broker = Installed(tmp_path)
    yield broker
    broker.stop()


def _client(name: str, password: str | None, port: int, tls: Path | None = None) -> mqtt.Client:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5
    )
    if password is not None:
        client.username_pw_set(name, password)
    if tls is not None:
        client.tls_set(ca_certs=str(tls), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return client


def _connect(client: mqtt.Client, port: int) -> int:
    """The CONNACK reason code (0 = accepted)."""
    done = threading.Event()
    result: list[int] = []

    def on_connect(c: mqtt.Client, u: object, f: object, rc: object, p: object) -> None:
        result.append(int(getattr(rc, "value", rc)))  # type: ignore[call-overload]
        done.set()

    client.on_connect = on_connect
    client.connect("localhost", port)
    client.loop_start()
    assert done.wait(10), "no CONNACK"
    return result[0]


def test_snippet_starts_with_debians_stock_config(installed: Installed) -> None:
    assert "include_dir /etc/mosquitto/conf.d" in STOCK.read_text()  # what the docs rely on
    installed.start()
    time.sleep(0.5)  # a config error would end the process at once
    assert installed.proc is not None and installed.proc.poll() is None, installed.log()
    assert "Error" not in installed.log()


def test_station_page_reaches_the_server_user_over_tls(installed: Installed) -> None:
    installed.start()
    anonymous = _client("anon", None, installed.ports["1883"])
    assert _connect(anonymous, installed.ports["1883"]) != 0  # allow_anonymous false
    anonymous.loop_stop()

    got = threading.Event()
    server = _client("sohoa-server", "server-pw", installed.ports["1883"])
    server.on_message = lambda c, u, m: got.set()
    assert _connect(server, installed.ports["1883"]) == 0
    server.subscribe("sohoa/v1/up/#", qos=1)
    time.sleep(0.3)

    ca = installed.root / "etc_mosquitto" / "certs" / "server.crt"
    device = _client("xa-tan-phu-01", "device-pw", installed.ports["8883"], tls=ca)
    assert _connect(device, installed.ports["8883"]) == 0
    device.publish("sohoa/v1/up/xa-tan-phu-01/chunk", b"page", qos=1).wait_for_publish(10)
    assert got.wait(10), installed.log()
    for c in (server, device):
        c.disconnect()
        c.loop_stop()


def test_stolen_station_runbook_cuts_it_off(installed: Installed) -> None:
    """Runbook R1 until `sohoa-server device revoke` exists: delete the station's broker user
    and restart Mosquitto — a connected thief is cut off at once and cannot come back."""
    installed.start()
    ca = installed.root / "etc_mosquitto" / "certs" / "server.crt"
    thief = _client("xa-tan-phu-01", "device-pw", installed.ports["8883"], tls=ca)
    cut = threading.Event()
    thief.on_disconnect = lambda *a: cut.set()
    assert _connect(thief, installed.ports["8883"]) == 0
    passwd = installed.root / "etc_mosquitto" / "sohoa.passwd"
    subprocess.run(["mosquitto_passwd", "-D", str(passwd), "xa-tan-phu-01"], check=True)
    installed.stop()  # systemctl restart mosquitto
    installed.start()
    assert cut.wait(10)
    thief.loop_stop()
    again = _client("xa-tan-phu-01", "device-pw", installed.ports["8883"], tls=ca)
    assert _connect(again, installed.ports["8883"]) != 0  # refused: not authorised
    again.loop_stop()
    server = _client("sohoa-server", "server-pw", installed.ports["1883"])
    assert _connect(server, installed.ports["1883"]) == 0  # everyone else carries on
    server.disconnect()
    server.loop_stop()
