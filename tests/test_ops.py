"""What an administrator meets: versions, station ids, credentials found from a shell."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from harness import BIN, Broker, ServerProcess, agent_env, run_agent

from agent import config as agent_config
from server import config as server_config

REPO = Path(__file__).resolve().parent.parent


def test_both_clis_print_the_released_version() -> None:
    import subprocess

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for prog in ("sohoa-agent", "sohoa-server"):
        out = subprocess.run([str(BIN / prog), "--version"], capture_output=True, text=True)
        assert out.returncode == 0
        assert out.stdout.startswith(f"{prog} {version} (protocol "), out.stdout


def test_a_station_id_never_defaults_to_the_hostname() -> None:
    settings = agent_config.load(None, {})
    assert settings.device_id == ""  # every Pi left as "raspberrypi" would share it
    with pytest.raises(agent_config.ConfigError) as err:
        agent_config.require_device_id(settings)
    assert err.value.key == "device_not_enrolled"


@pytest.mark.parametrize("command", [["sync", "--wait", "--timeout", "5"], ["export", "."]])
def test_a_station_without_an_id_refuses_to_send(tmp_path: Path, command: list[str]) -> None:
    env = agent_env(tmp_path / "data", "mqtt://127.0.0.1:9")
    del env["SOHOA_DEVICE_ID"]
    out = run_agent(env, *command)
    assert out.returncode == 78, out.stderr
    assert "chưa được đăng ký" in out.stderr
    assert "Traceback" not in out.stderr
    status = run_agent(env, "status")
    assert status.returncode == 0 and "(chưa đăng ký)" in status.stdout


def test_credentials_are_found_from_a_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An admin command has no $CREDENTIALS_DIRECTORY: it reads /etc/sohoa/credentials."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setattr(server_config, "CREDENTIALS_DIR", tmp_path)
    (tmp_path / "mqtt-password").write_text("broker-pw\n")
    (tmp_path / "database-password").write_text("pg-pw\n")
    server = server_config.load(None, {"SOHOA_DATABASE_URL": "postgresql://sohoa@db/sohoa"})
    assert server.broker_password() == "broker-pw"
    assert server.database_password() == "pg-pw"
    # A station reads no credentials directory: its password is its enrolment's file.
    agent = agent_config.load(None, {"SOHOA_DEVICE_ID": "xa-a", "SOHOA_DATA_DIR": str(tmp_path)})
    assert agent.broker().password is None

    systemd = tmp_path / "run"  # systemd's copy wins over the file
    systemd.mkdir()
    (systemd / "mqtt-password").write_text("from-systemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(systemd))
    assert server.broker_password() == "from-systemd"


def test_an_unreadable_secret_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setattr(server_config, "CREDENTIALS_DIR", tmp_path)
    (tmp_path / "mqtt-password").mkdir()  # unreadable even for root
    with pytest.raises(server_config.ConfigError, match="run as the service user"):
        server_config.load(None, {}).broker_password()
    assert os.path.isdir(tmp_path / "mqtt-password")


def test_an_older_release_refuses_a_newer_catalogue(tmp_path: Path) -> None:
    """Rollback without restoring the pre-upgrade dump: one line, exit 69, nothing written."""
    import sqlite3
    import subprocess

    from server.store.db import Database

    data = tmp_path / "server"
    Database(data / "archive.sqlite3").close()
    with sqlite3.connect(data / "archive.sqlite3") as con:
        con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
    env["SOHOA_DATA_DIR"] = str(data)
    out = subprocess.run(
        [str(BIN / "sohoa-server"), "user", "list"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 69 and "schema is 99, newer than" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.mqtt
@pytest.mark.tesseract
@pytest.mark.slow
def test_pages_scanned_before_enrolment_are_sent_after_it(
    tmp_path: Path, broker: Broker, server: ServerProcess
) -> None:
    """The service without an id: it runs, connects to nobody, keeps what it is given; once
    the id is set, the same pages reach the archive under that id only."""
    import json
    import signal
    import subprocess
    import time

    from PIL import Image

    env = agent_env(tmp_path / "agent", broker.url)
    del env["SOHOA_DEVICE_ID"]
    page = tmp_path / "in" / "01.png"
    page.parent.mkdir()
    Image.new("RGB", (400, 300), "white").save(page, dpi=(300, 300))
    assert run_agent(env, "import", str(page)).returncode == 0

    log = tmp_path / "agent.log"
    with open(log, "wb") as out:
        daemon = subprocess.Popen([str(BIN / "sohoa-agent"), "run"], env=env, stdout=out,
                                  stderr=out)  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while "nothing is sent until it is" not in log.read_text(errors="replace"):
                assert time.monotonic() < deadline and daemon.poll() is None, log.read_text()
                time.sleep(0.2)
            # It refused before making a broker client: the archive has never heard of it.
            assert server.get_json("/api/v1/devices") == []
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(60) == 0
    st = json.loads(run_agent(env, "status", "--json").stdout)
    assert st["device_id"] == "" and st["agent_version"]

    env["SOHOA_DEVICE_ID"] = "xa-tan-phu-01"
    done = run_agent(env, "sync", "--wait", "--timeout", "120")
    assert done.returncode == 0, done.stderr
    assert [d["device_id"] for d in server.get_json("/api/v1/devices")] == ["xa-tan-phu-01"]
    assert len(server.get_json("/api/v1/batches")) == 1
