"""What an operator sees when things go wrong: one clear line (Vietnamese by default), a
non-zero exit, no traceback, nothing lost. Real processes, a real broker and server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness import Broker, ServerProcess, agent_env, free_port, run_agent
from PIL import Image

pytestmark = [pytest.mark.slow]


def _png(path: Path, colour: str = "white") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (400, 300), colour).save(path, dpi=(300, 300))
    return path


def _no_traceback(*outputs: str) -> None:
    for out in outputs:
        assert "Traceback" not in out


@pytest.mark.sane
def test_unknown_scanner(tmp_path: Path) -> None:
    env = agent_env(tmp_path / "agent", "mqtt://127.0.0.1:1", SOHOA_SCANNER="nosuch:0")
    out = run_agent(env, "scan")
    assert out.returncode == 3
    # The operator line carries no setting; the log line above it names the device.
    assert "Không tìm thấy máy quét." in out.stderr and "nosuch:0" in out.stderr
    _no_traceback(out.stdout, out.stderr)
    english = run_agent({**env, "SOHOA_LANGUAGE": "en"}, "scan")
    assert "Scanner not found." in english.stderr


def test_import_refuses_a_bad_file_by_name_and_keeps_the_rest(tmp_path: Path) -> None:
    good = _png(tmp_path / "in" / "01.png")
    _png(tmp_path / "in" / "02.png", "grey")
    (tmp_path / "in" / "03.jpg").write_text("not an image at all")
    broken = tmp_path / "in" / "04.png"
    broken.write_bytes(good.read_bytes()[:200])  # truncated
    env = agent_env(tmp_path / "agent", "mqtt://127.0.0.1:1")
    out = run_agent(env, "import", str(tmp_path / "in"))
    assert out.returncode == 4
    assert "Đã nhập 2 trang" in out.stdout
    assert "03.jpg" in out.stderr and "04.png" in out.stderr
    assert "01.png" not in out.stderr
    _no_traceback(out.stdout, out.stderr)
    st = json.loads(run_agent(env, "status", "--json", check=True).stdout)
    assert st["pending"][0]["pages"] == 2
    # The imported single-image file is kept byte for byte as the capture.
    captures = sorted((tmp_path / "agent" / "batches").glob("*/capture/*"))
    assert captures[0].read_bytes() == good.read_bytes()


def test_unreachable_broker_keeps_everything(tmp_path: Path) -> None:
    env = agent_env(tmp_path / "agent", f"mqtt://127.0.0.1:{free_port()}")
    run_agent(env, "import", str(_png(tmp_path / "in" / "a.png")), check=True)
    out = run_agent(env, "sync", "--wait", "--timeout", "20")
    assert out.returncode == 75
    assert "Không kết nối được kho lưu trữ" in out.stderr
    _no_traceback(out.stdout, out.stderr)
    st = json.loads(run_agent(env, "status", "--json", check=True).stdout)
    assert st["pages_waiting_sync"] == 1


@pytest.mark.mqtt
@pytest.mark.dynsec
def test_wrong_credentials_are_refused_clearly(tmp_path: Path) -> None:
    from server.fleet import broker as fleet

    broker = Broker(tmp_path / "broker", dynsec=True).start()
    with fleet.BrokerAdmin("127.0.0.1", broker.port, "sohoa-admin", broker.admin_password) as admin:
        admin.connect()
        admin.add_station("xa-test-01", "right-password-1234", "Xã Thử")
    try:
        url = f"mqtt://xa-test-01:wrong@127.0.0.1:{broker.port}"
        env = agent_env(tmp_path / "agent", url)
        run_agent(env, "import", str(_png(tmp_path / "in" / "a.png")), check=True)
        out = run_agent(env, "sync", "--wait", "--timeout", "20")
        assert out.returncode == 75
        assert "Kho lưu trữ từ chối trạm quét này" in out.stderr
        _no_traceback(out.stdout, out.stderr)
    finally:
        broker.stop()


def test_server_down_then_up(tmp_path: Path, broker: Broker) -> None:
    env = agent_env(tmp_path / "agent", broker.url)
    run_agent(env, "import", str(_png(tmp_path / "in" / "a.png")), check=True)
    out = run_agent(env, "sync", "--wait", "--timeout", "8")
    assert out.returncode == 75
    assert "Chưa gửi xong" in out.stderr or "Chưa gửi xong" in out.stdout
    server = ServerProcess(tmp_path / "server", broker.url).start()
    try:
        out = run_agent(env, "sync", "--wait", "--timeout", "60")
        assert out.returncode == 0, out.stderr
        assert len(server.get_json("/api/v1/batches")) == 1
    finally:
        server.stop()


def test_nothing_to_send(tmp_path: Path, broker: Broker) -> None:
    out = run_agent(agent_env(tmp_path / "agent", broker.url), "sync", "--wait")
    assert out.returncode == 0
    assert "Không có gì cần gửi" in out.stdout


def test_help_on_every_command(tmp_path: Path) -> None:
    env = agent_env(tmp_path / "agent", "mqtt://127.0.0.1:1")
    for cmd in ("scan", "import", "process", "sync", "status", "devices", "run"):
        out = run_agent(env, cmd, "--help")
        assert out.returncode == 0 and "usage: sohoa-agent" in out.stdout


def test_api_requires_a_token(server: ServerProcess) -> None:
    for path in ("/api/v1/batches", "/api/v1/devices", "/api/v1/search?q=x", "/api/v1/pages/1"):
        status, _, headers = server.get(path, auth=False)
        assert status == 401 and headers.get("www-authenticate") == "Bearer"
    assert server.get("/api/v1/batches")[0] == 200
    assert server.get("/docs", auth=False)[0] == 200


def test_edge_and_archive_install_separately() -> None:
    """The agent never imports FastAPI; the server never imports SANE or OpenCV."""
    import subprocess
    import sys

    code = (
        "import sys, importlib;"
        "importlib.import_module(sys.argv[1]);"
        "bad=[m for m in sys.argv[2:] if m in sys.modules];"
        "print(','.join(bad))"
    )
    for mod, forbidden in (
        ("agent.daemon", ["fastapi", "starlette", "uvicorn", "server"]),
        ("agent.cli", ["fastapi", "starlette", "uvicorn", "server"]),
        ("server.app", ["sane", "cv2", "pytesseract", "tinydb", "agent"]),
    ):
        out = subprocess.run(
            [sys.executable, "-c", code, mod, *forbidden],
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == "", f"{mod} pulls in {out.stdout.strip()}"
