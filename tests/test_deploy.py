"""The archive host's broker set-up as the docs tell an administrator to do it.

Debian 12's own ``/etc/mosquitto/mosquitto.conf`` (never a copy written here) plus the shipped
``systemd/mosquitto/`` snippet, with only the paths moved into a temp dir and the ports made
free, and the identities written by `sohoa-server broker init` as install-server.sh does: the
broker must start, refuse strangers, and let the server's identity in on both listeners.
An earlier snippet repeated ``persistence_location`` and Mosquitto refused to start with
Debian's config (issue #20).
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
from harness import BIN, REPO, free_port, wait_port
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
        self.snippet_relocated = _relocate(snippet, root, self.ports)
        (etc / "conf.d" / "sohoa.conf").write_text(self.snippet_relocated)
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
        """As install-server.sh does: `sohoa-server broker init` writes the dynamic-security
        file the snippet names, and the server's password where the credentials live."""
        dynsec = re.search(r"(?m)^plugin_opt_config_file (\S+)$", self.snippet_relocated)
        assert dynsec is not None, "the snippet names its dynamic-security file"
        self.server_password = self.root / "mqtt-password"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
        env["SOHOA_DATA_DIR"] = str(self.root / "server")
        subprocess.run(
            [str(BIN / "sohoa-server"), "broker", "init", "--dynsec-file", dynsec.group(1),
             "--ingest-password-file", str(self.server_password),
             "--admin-password-file", str(self.root / "broker-admin-password")],
            check=True, capture_output=True, env=env,
        )  # fmt: skip

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


def test_the_snippet_names_the_plugin_for_every_architecture() -> None:
    """An x86_64 path in the snippet stopped the broker on a Raspberry Pi (arm64); the bare
    name is found by the loader in each architecture's library directory. The broker
    starting with it and admitting the server's dynsec identity is the test below."""
    snippet = (SHIPPED / "sohoa.conf").read_text()
    plugins = re.findall(r"(?m)^plugin (\S+)$", snippet)
    assert plugins == ["mosquitto_dynamic_security.so"], plugins
    assert "x86_64" not in "".join(ln for ln in snippet.splitlines() if not ln.startswith("#"))


def test_the_servers_identity_connects_and_strangers_do_not(installed: Installed) -> None:
    installed.start()
    anonymous = _client("anon", None, installed.ports["1883"])
    assert _connect(anonymous, installed.ports["1883"]) != 0  # nobody anonymous
    anonymous.loop_stop()
    password = installed.server_password.read_text().strip()
    stranger = _client("sohoa-server", "not-" + password, installed.ports["1883"])
    assert _connect(stranger, installed.ports["1883"]) != 0
    stranger.loop_stop()
    server = _client("sohoa-server", password, installed.ports["1883"])
    assert _connect(server, installed.ports["1883"]) == 0
    server.disconnect()
    server.loop_stop()
    ca = installed.root / "etc_mosquitto" / "certs" / "server.crt"  # the TLS listener too
    tls = _client("sohoa-server", password, installed.ports["8883"], tls=ca)
    assert _connect(tls, installed.ports["8883"]) == 0
    tls.disconnect()
    tls.loop_stop()
