"""Real components for tests: a thin layer over the product's launcher (`embedded/`) with
the tests' defaults. Used by conftest fixtures, the fault tests and the benchmarks.

Keeps the names the tests use: ``Broker`` and ``ServerProcess`` (start, stop, and kill for
the fault tests, restartable on the same port and data), ``agent_env`` (a test station:
``xa-test-01`` on SANE's ``test:0``), ``run_agent`` (a failed command with ``check`` is an
AssertionError), ``free_port``, ``wait_port``, ``REPO``, ``BIN``, ``tool_version``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from embedded import Broker, EmbeddedError, free_port, wait_port
from embedded import ServerProcess as _ServerProcess
from embedded import agent_env as _agent_env
from embedded import run_agent as _run_agent

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

__all__ = [
    "BIN",
    "REPO",
    "TEST_ARCHIVE_KEY",
    "Broker",
    "ServerProcess",
    "agent_env",
    "enrol_offline",
    "enrolled_agent_env",
    "free_port",
    "pinned_archive_key",
    "run_agent",
    "run_server",
    "seed_archive_key",
    "tool_version",
    "wait_port",
]

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
        # Durably, as the server makes its own key: the power-cut tests run this data dir on a
        # disk that drops unsynced writes, and a key lost there reads back as 0 bytes.
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, TEST_ARCHIVE_KEY)
            os.fsync(fd)
        finally:
            os.close(fd)
        dir_fd = os.open(data_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@dataclass
class ServerProcess(_ServerProcess):
    """The server with the tests' API user (an admin "test" without a password), signing
    with TEST_ARCHIVE_KEY unless ``test_key`` is False.

    Most tests' stations are not enrolled (their subject is not the fleet), so the server
    stores messages from unenrolled devices (setting accept_unenrolled_devices) unless
    ``enrolled_only``: production refuses them, and the tests of that refusal, and of
    everything enrolled, run with ``enrolled_only=True``."""

    admin_user: str | None = "test"
    test_key: bool = True
    enrolled_only: bool = False

    def start(self, timeout: float = 20.0) -> ServerProcess:
        if self.test_key:
            seed_archive_key(self.data_dir)
        if not self.enrolled_only:
            self.settings.setdefault("SOHOA_ACCEPT_UNENROLLED_DEVICES", "true")
        super().start(timeout)
        return self


def agent_env(
    data_dir: Path, mqtt_url: str, device_id: str = "xa-test-01", **extra: str
) -> dict[str, str]:
    return _agent_env(
        data_dir,
        mqtt_url,
        device_id,
        **{
            "SOHOA_SCANNER": "test:0",
            "SOHOA_PIPELINE_WORKERS": "2",
            "SOHOA_MIN_FREE_MB": "10",
            "SOHOA_SERVER_PUBLIC_KEY": pinned_archive_key(),
            **extra,
        },
    )


def enrolled_agent_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """An agent whose broker address, identity and archive key come from its enrolment
    (``sohoa-agent enrol``), not from the environment."""
    env = agent_env(data_dir, "mqtt://unused", **extra)
    del env["SOHOA_MQTT_URL"], env["SOHOA_DEVICE_ID"], env["SOHOA_SERVER_PUBLIC_KEY"]
    return env


def run_server(server: _ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return server.cli(*args, check=False)


def enrol_offline(server_dir: Path, agent_dir: Path, device_id: str) -> str:
    """Enrol a station without a broker, for tests whose subject is not enrolment (its
    transport is tests/test_enrolment.py's): the archive's own rules (a one-time code,
    redeemed by a request the station signs) and the station's own key file. Returns the
    station's public key."""
    from agent.uplink import enrol
    from protocol import enrolment, signing
    from server.fleet import registry
    from server.store.db import Database

    db = Database(server_dir / "archive.sqlite3")
    try:
        secret = registry.issue_code(db, device_id, "Xã Thử Nghiệm", "", hours=1)
        key = signing.new_key()
        request = enrolment.EnrolRequest(
            device_id=device_id,
            msg_id=os.urandom(16).hex(),
            secret=secret,
            public_key=signing.public_key_hex(key),
            box_key=enrolment.box_public_hex(enrolment.new_box_key()),
        )
        signature = signing.sign_bytes(request.signed_bytes(), key)
        registry.redeem(db, request.model_copy(update={"signature": signature}))
    finally:
        db.close()
    folder = enrol.enrol_dir(agent_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / enrol.KEY_FILE
    path.write_bytes(signing.private_key_bytes(key))
    path.chmod(0o600)
    return signing.public_key_hex(key)


def run_agent(
    env: dict[str, str], *args: str, timeout: float = 300, check: bool = False
) -> subprocess.CompletedProcess[str]:
    try:
        return _run_agent(env, *args, timeout=timeout, check=check)
    except EmbeddedError as exc:
        raise AssertionError(str(exc)) from exc


def tool_version(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return "not installed"
    out = subprocess.run(cmd, capture_output=True, text=True)
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "?"
