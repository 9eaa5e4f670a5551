"""Real components for tests: a Mosquitto broker on a free port, the server as a process,
the agent CLI as a process. Used by conftest fixtures, the fault tests and the benchmarks."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


# The archive's receipt key for processes started here: every ServerProcess signs with it
# (unless its data dir already holds a key) and every agent_env pins it, as enrolment
# would. Receipt verification is mandatory (issue 14): an agent with no pinned key deletes
# nothing. Tests of enrolment itself use enrolled_agent_env, which pins what it is sent.
TEST_ARCHIVE_KEY = bytes(range(32))


def pinned_archive_key() -> str:
    from protocol import signing

    return signing.public_key_hex(signing.private_key_from_bytes(TEST_ARCHIVE_KEY))


def seed_archive_key(data_dir: Path) -> None:
    """Give a server data dir the test archive key (before its first start)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key = data_dir / "receipt-signing.key"
    if not key.exists():
        key.write_bytes(TEST_ARCHIVE_KEY)
        key.chmod(0o600)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


@dataclass
class Broker:
    """A private mosquitto: anonymous, or (``dynsec``) with the production identities."""

    workdir: Path
    port: int = field(default_factory=free_port)
    persistence: bool = True
    max_queued: int = 100000  # per client; mosquitto drops past it, silently (reliability §8.4)
    extra: str = ""
    proc: subprocess.Popen[bytes] | None = None
    # Mosquitto's dynamic security plugin, as in production (systemd/mosquitto/sohoa.conf):
    # the server's admin and ingest identities are made here; stations only by enrolment.
    dynsec: bool = False
    ingest_password: str = field(default_factory=lambda: os.urandom(12).hex())
    admin_password: str = field(default_factory=lambda: os.urandom(12).hex())

    @property
    def ingest_url(self) -> str:
        """The archive server's ingest identity (dynsec brokers)."""
        return f"mqtt://sohoa-server:{self.ingest_password}@127.0.0.1:{self.port}"

    def admin_password_file(self) -> Path:
        path = self.workdir / "broker-admin-password"
        path.write_text(self.admin_password)
        return path

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            f"max_queued_messages {self.max_queued}",
        ]
        if os.geteuid() == 0:
            # Started as root, mosquitto drops to the 'mosquitto' user, which cannot read a
            # root-owned pytest tmp dir (CI runs as root). Stay root for this private broker.
            lines.append("user root")
        if self.dynsec:
            from server import fleet

            config = fleet.dynsec_config(
                "sohoa-admin", self.admin_password, "sohoa-server", self.ingest_password
            )
            dyn = self.workdir / "dynamic-security.json"
            if not dyn.exists():  # the plugin keeps its own state across restarts
                fleet.write_private(dyn, json.dumps(config, indent=1).encode())
            lines += [
                "allow_anonymous false",
                f"plugin {fleet.find_plugin()}",
                f"plugin_opt_config_file {dyn}",
            ]
        else:
            lines.append("allow_anonymous true")
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n" + self.extra)
        return conf

    def start(self) -> Broker:
        conf = self.write_config()
        log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=log)
        wait_port(self.port)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


@dataclass
class ServerProcess:
    data_dir: Path
    mqtt_url: str
    port: int = field(default_factory=free_port)
    client_id: str = "sohoa-server-1"
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""
    database_url: str | None = None  # default: SQLite in data_dir
    test_key: bool = True  # sign with TEST_ARCHIVE_KEY (False: the server makes its own)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
        env.update(
            SOHOA_DATA_DIR=str(self.data_dir),
            SOHOA_MQTT_URL=self.mqtt_url,
            SOHOA_MQTT_CLIENT_ID=self.client_id,
            SOHOA_PORT=str(self.port),
        )
        if self.database_url:
            env["SOHOA_DATABASE_URL"] = self.database_url
        env.update(self.extra_env)
        return env

    def start(self) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.test_key:
            seed_archive_key(self.data_dir)
        if not self.token:
            # Tokens belong to users: an admin "test" without a password (API only).
            subprocess.run(
                [str(BIN / "sohoa-server"), "user", "add", "test", "--role", "admin",
                 "--no-password"],
                env=self.env(), check=True, capture_output=True, text=True,
            )  # fmt: skip
            out = subprocess.run(
                [str(BIN / "sohoa-server"), "token", "create", "--user", "test"],
                env=self.env(),
                check=True,
                capture_output=True,
                text=True,
            )
            self.token = out.stdout.strip()
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(BIN / "sohoa-server"), "run"], env=self.env(), stdout=log, stderr=log
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                health = self.get_json("/healthz", auth=False)
                if health.get("ingest_connected"):
                    return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"server did not become healthy: {self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        path = self.data_dir / "server.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""
        )

    def get(self, path: str, auth: bool = True) -> tuple[int, bytes, dict[str, str]]:
        req = urllib.request.Request(self.url + path)
        if auth:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    def get_json(self, path: str, auth: bool = True) -> dict:  # type: ignore[type-arg]
        status, body, _ = self.get(path, auth)
        if status != 200:
            raise urllib.error.URLError(f"{path}: HTTP {status}")
        return json.loads(body)  # type: ignore[no-any-return]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


def agent_env(
    data_dir: Path, mqtt_url: str, device_id: str = "xa-test-01", **extra: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
    env.update(
        SOHOA_DATA_DIR=str(data_dir),
        SOHOA_MQTT_URL=mqtt_url,
        SOHOA_DEVICE_ID=device_id,
        SOHOA_SCANNER="test:0",
        SOHOA_PIPELINE_WORKERS="2",
        SOHOA_MIN_FREE_MB="10",
        SOHOA_SERVER_PUBLIC_KEY=pinned_archive_key(),
    )
    env.update(extra)
    return env


def enrolled_agent_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """An agent whose broker address, identity and archive key come from its enrolment
    (``sohoa-agent enrol``), not from the environment."""
    env = agent_env(data_dir, "mqtt://unused", **extra)
    del env["SOHOA_MQTT_URL"], env["SOHOA_DEVICE_ID"], env["SOHOA_SERVER_PUBLIC_KEY"]
    return env


def enrol_offline(server_dir: Path, agent_dir: Path, device_id: str) -> str:
    """Enrol a station without a broker, for tests whose subject is not enrolment (its
    transport is tests/test_enrolment.py's): the archive's own rules (a one-time code,
    redeemed by a request the station signs) and the station's own key file. Returns the
    station's public key."""
    from agent import enrol
    from protocol import enrolment, signing
    from server import stations
    from server.db import Database

    db = Database(server_dir / "archive.sqlite3")
    try:
        secret = stations.issue_code(db, device_id, "Xã Thử Nghiệm", "", hours=1)
        key = signing.new_key()
        request = enrolment.EnrolRequest(
            device_id=device_id,
            msg_id=os.urandom(16).hex(),
            secret=secret,
            public_key=signing.public_key_hex(key),
            box_key=enrolment.box_public_hex(enrolment.new_box_key()),
        )
        signature = signing.sign_bytes(request.signed_bytes(), key)
        stations.redeem(db, request.model_copy(update={"signature": signature}))
    finally:
        db.close()
    folder = enrol.enrol_dir(agent_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / enrol.KEY_FILE
    path.write_bytes(signing.private_key_bytes(key))
    path.chmod(0o600)
    return signing.public_key_hex(key)


def run_server(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "sohoa-server"), *args],
        env=server.env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def run_agent(
    env: dict[str, str], *args: str, timeout: float = 300, check: bool = False
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(BIN / "sohoa-agent"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"sohoa-agent {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def tool_version(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return "not installed"
    out = subprocess.run(cmd, capture_output=True, text=True)
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "?"
