"""``sohoa-server doctor`` against a real broker and a real catalogue: every check passes on
a good install, and each broken part is named in Vietnamese with what to fix."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from harness import BIN, Broker

from server import config, doctor

pytestmark = pytest.mark.mqtt


@pytest.fixture
def install(tmp_path: Path) -> tuple[Broker, dict[str, str]]:
    """A broker as production runs it (dynamic security, identities from `broker init`)."""
    broker = Broker(tmp_path / "broker", dynsec=True).start()
    env = {
        "SOHOA_DATA_DIR": str(tmp_path / "data"),
        "SOHOA_MQTT_URL": f"mqtt://sohoa-server@127.0.0.1:{broker.port}",
        "SOHOA_MQTT_PASSWORD_FILE": str(broker.ingest_password_file),
    }
    return broker, env


def _settings(env: dict[str, str], **override: str) -> config.ServerSettings:
    return config.load(None, env | override)


def _by_check(findings: list[doctor.Finding]) -> dict[str, doctor.Finding]:
    return {f.check: f for f in findings}


def test_a_good_install_passes(
    install: tuple[Broker, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    broker, env = install
    monkeypatch.setattr(doctor, "MIN_FREE_BYTES", 1)
    monkeypatch.setattr(doctor, "MIN_FREE_SHARE", 0.0)
    settings = _settings(env)
    from server.store import keys

    keys.load_or_create(settings.data_dir)
    found = _by_check(doctor.run(settings))
    assert {k: f.level for k, f in found.items() if k != "clock"} == {
        "database": "ok",
        "store": "ok",
        "disk": "ok",
        "receipt_key": "warn",  # present: the reminder to back it up stays
        "broker": "ok",
    }
    assert "sao lưu" in found["receipt_key"].vi
    assert doctor.exit_code(list(found.values())) == 0
    broker.stop()


def test_each_broken_part_is_named_with_the_fix(
    install: tuple[Broker, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker, env = install
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    monkeypatch.setattr(doctor, "MIN_FREE_BYTES", 2**62)  # no disk is that large
    found = _by_check(doctor.run(_settings(env, SOHOA_MQTT_PASSWORD_FILE=str(wrong))))
    assert found["broker"].level == "fail" and "từ chối đăng nhập" in found["broker"].vi
    assert found["receipt_key"].level == "fail" and "Chưa có khóa" in found["receipt_key"].vi
    assert found["disk"].level == "fail" and "chỉ còn trống" in found["disk"].vi
    assert "," in found["disk"].vi.split("trống")[1]  # decimal comma

    broker.stop()
    down = _by_check(doctor.run(_settings(env)))["broker"]
    assert down.level == "fail" and "không kết nối được" in down.vi
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the data folder should be")
    found = _by_check(doctor.run(_settings(env, SOHOA_DATA_DIR=str(blocked))))
    assert found["store"].level == "fail" and found["database"].level == "fail"


def test_the_command_prints_vietnamese_and_fails_on_a_failed_check(
    install: tuple[Broker, dict[str, str]], tmp_path: Path
) -> None:
    broker, env = install
    broker.stop()
    out = subprocess.run(
        [str(BIN / "sohoa-server"), "doctor"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 1, out.stderr
    assert "[LỖI] Máy chủ MQTT" in out.stdout and "Traceback" not in out.stderr
