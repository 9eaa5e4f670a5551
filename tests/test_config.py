"""Settings: strict schema, TOML then environment, and a README that tells the truth."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent import config as agent_config
from agent.errors import ConfigError
from server import config as server_config

REPO = Path(__file__).resolve().parent.parent


def test_readme_configuration_reference_matches_the_schemas() -> None:
    ref = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "config_reference.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert ref.strip() in readme, "README config tables are stale: run scripts/config_reference.py"


def test_environment_overrides_the_toml_file(tmp_path: Path) -> None:
    conf = tmp_path / "agent.toml"
    conf.write_text('device_id = "xa-a"\ndpi = 300\nscanner = "test:0"\n')
    settings = agent_config.load(conf, {"SOHOA_DPI": "200"})
    assert settings.device_id == "xa-a"
    assert settings.dpi == 200
    assert settings.scanner == "test:0"


@pytest.mark.parametrize(
    ("toml", "env", "where"),
    [
        ('colour = "red"\n', {}, "colour"),  # unknown key: a typo must not pass silently
        ("", {"SOHOA_DPI": "150"}, "dpi"),  # below the legal 200 dpi
        ("", {"SOHOA_DEVICE_ID": "xa/tan+phu"}, "device_id"),  # MQTT wildcards
        ("", {"SOHOA_MQTT_URL": "http://x"}, "mqtt_url"),
        ("dpi = [", {}, "agent.toml"),  # broken TOML
    ],
)
def test_bad_settings_are_refused_by_name(
    tmp_path: Path, toml: str, env: dict[str, str], where: str
) -> None:
    conf = tmp_path / "agent.toml"
    conf.write_text(toml)
    with pytest.raises(ConfigError) as err:
        agent_config.load(conf, env)
    assert where in err.value.detail


def test_broker_password_comes_from_a_file_not_the_url(tmp_path: Path) -> None:
    (tmp_path / "mqtt-password").write_text("s3cret\n")
    settings = agent_config.load(
        None,
        {
            "SOHOA_MQTT_URL": "mqtts://xa-a@archive.example:8883",
            "SOHOA_DEVICE_ID": "xa-a",
            "SOHOA_MQTT_PASSWORD_FILE": str(tmp_path / "mqtt-password"),
            "SOHOA_DATA_DIR": str(tmp_path),
        },
    )
    broker = settings.broker()
    assert (broker.host, broker.port, broker.tls) == ("archive.example", 8883, True)
    assert broker.password == "s3cret"
    assert "s3cret" not in str(broker)


def test_server_settings_are_strict_too(tmp_path: Path) -> None:
    conf = tmp_path / "server.toml"
    conf.write_text("port = 99999\n")
    with pytest.raises(server_config.ConfigError):
        server_config.load(conf, {})
    ok = server_config.load(None, {"SOHOA_DATA_DIR": str(tmp_path), "SOHOA_PORT": "8081"})
    assert ok.port == 8081
    assert ok.sqlite_path() == tmp_path / "archive.sqlite3"


def test_plain_mqtt_only_to_this_machine_unless_allowed(tmp_path: Path) -> None:
    """Issue 14: the station's password and pages never cross a network unencrypted by
    accident."""
    base = {"SOHOA_DATA_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match="unencrypted"):
        agent_config.load(environ={**base, "SOHOA_MQTT_URL": "mqtt://archive.example.vn:1883"})
    for ok in ("mqtt://127.0.0.1:1883", "mqtt://localhost", "mqtts://archive.example.vn"):
        assert agent_config.load(environ={**base, "SOHOA_MQTT_URL": ok}).mqtt_url == ok
    allowed = agent_config.load(
        environ={**base, "SOHOA_MQTT_URL": "mqtt://10.0.0.5", "SOHOA_ALLOW_PLAIN_MQTT": "true"}
    )
    assert allowed.allow_plain_mqtt


def test_enrolment_fills_only_what_the_operator_did_not_set(tmp_path: Path) -> None:
    import json

    folder = tmp_path / "enrolment"
    folder.mkdir()
    (folder / "mqtt-password").write_text("from-enrolment")
    (folder / "enrolment.json").write_text(
        json.dumps({
            "format": "sohoa-enrolment", "format_version": 1, "device_id": "xa-enrolled",
            "mqtt_url": "mqtts://xa-enrolled@archive.example.vn:8883",
            "mqtt_password_file": str(folder / "mqtt-password"), "mqtt_ca_file": None,
            "server_public_key": "ab" * 32,
        })
    )  # fmt: skip
    settings = agent_config.load(environ={"SOHOA_DATA_DIR": str(tmp_path)})
    assert settings.device_id == "xa-enrolled"
    assert settings.server_public_key == "ab" * 32
    assert settings.broker().password == "from-enrolment"
    assert settings.broker().tls
    mine = agent_config.load(environ={"SOHOA_DATA_DIR": str(tmp_path), "SOHOA_DEVICE_ID": "xa-x"})
    assert mine.device_id == "xa-x" and mine.server_public_key == "ab" * 32
    (folder / "enrolment.json").write_text("{damaged")
    with pytest.raises(ConfigError):
        agent_config.load(environ={"SOHOA_DATA_DIR": str(tmp_path)})
