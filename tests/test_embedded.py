"""The embedded launcher (`embedded/`): its wall, its broker ACL, and the errors a person
sees when a part is missing, a port is taken or a child dies. Real Mosquitto, real server."""

from __future__ import annotations

import ast
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from harness import BIN, REPO, free_port

from embedded import Broker, ChildDied, ComponentMissing, PortBusy, ServerProcess
from embedded.broker import dynsec_plugin

ALLOWED = {"embedded", "protocol", "__future__"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_embedded_imports_only_the_standard_library_and_protocol() -> None:
    files = sorted((REPO / "embedded").rglob("*.py"))
    assert files
    for path in files:
        outside = _imports(path) - ALLOWED - set(sys.stdlib_module_names)
        assert not outside, f"{path.relative_to(REPO)} imports {sorted(outside)}"
    # And at run time: the launcher pulls in neither side of the wall.
    code = (
        "import sys, embedded.cli;"
        "print(','.join(m for m in ('agent', 'server', 'fastapi', 'sane', 'cv2', 'pydantic')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_wall_test_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from agent import config\nimport server.app\nimport json\n")
    assert _imports(bad) - ALLOWED - set(sys.stdlib_module_names) == {"agent", "server"}


def _rules(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def test_private_broker_loads_the_production_plugin() -> None:
    """Production and the embedded broker hold identities the same way: the dynamic security
    plugin (systemd/mosquitto/sohoa.conf), its first file written by `sohoa-server broker
    init` (tests/test_fleet.py tries the attacks against it)."""
    production = _rules((REPO / "systemd" / "mosquitto" / "sohoa.conf").read_text())
    assert any(r.startswith("plugin ") and "mosquitto_dynamic_security.so" in r for r in production)
    assert not any(r.startswith(("password_file", "acl_file")) for r in production)
    assert dynsec_plugin().name == "mosquitto_dynamic_security.so"


def test_missing_mosquitto_gives_the_install_hint(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    broker = Broker(tmp_path / "broker", search_path=str(empty))
    with pytest.raises(ComponentMissing, match=r"apt install mosquitto"):
        broker.start()
    assert broker.proc is None


@pytest.mark.mqtt
def test_busy_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortBusy, match=rf"port {port} .*in use"):
            Broker(tmp_path / "broker", port=port).start()


@pytest.mark.mqtt
def test_a_broker_that_dies_at_start_is_reported_with_its_log(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker", extra="no_such_option_here 1\n")
    with pytest.raises(ChildDied, match=r"mosquitto exited while starting") as err:
        broker.start()
    assert "no_such_option_here" in str(err.value)  # mosquitto's own complaint, quoted


@pytest.mark.mqtt
def test_broker_and_server_start_and_a_dead_server_is_reported(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker").start()
    server = ServerProcess(tmp_path / "server", broker.url)
    try:
        server.start()
        assert server.get_json("/healthz", auth=False)["ingest_connected"] is True
        assert server.get("/api/v1/batches")[0] == 200  # the token start() made works
        server.check()  # alive: no error
        server.kill()
        server.start()  # restart on the same port and data, same token
        assert server.get("/api/v1/batches")[0] == 200
        assert server.proc is not None
        server.proc.kill()
        server.proc.wait(10)
        with pytest.raises(ChildDied, match=r"sohoa-server exited with code -9"):
            server.check()
    finally:
        server.stop()
        broker.stop()


@pytest.mark.mqtt
def test_a_server_that_cannot_start_is_reported_with_its_last_lines(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker").start()
    server = ServerProcess(
        tmp_path / "server",
        broker.url,
        token="unused",
        database_url=f"postgresql://nobody@127.0.0.1:{free_port()}/none",
    )
    try:
        with pytest.raises(ChildDied, match=r"exited while starting with code 69") as err:
            server.start()
        assert "cannot open the database" in str(err.value)
    finally:
        server.stop()
        broker.stop()


def _children(pid: int) -> dict[str, int]:
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        for child in Path(f"/proc/{pid}/task/{tid}/children").read_text().split():
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            found[" ".join(c.decode() for c in cmd[:3])] = int(child)
    return found


def _wait_for(predicate: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise TimeoutError(what)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:
            return b'"ingest_connected":true' in resp.read()
    except OSError:
        return False


@pytest.mark.mqtt
@pytest.mark.slow
def test_sohoa_embedded_run_supervises_and_reports_a_dying_child(tmp_path: Path) -> None:
    http, mqtt = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
    env.update(SOHOA_SCANNER="test:0", SOHOA_MIN_FREE_MB="10", SOHOA_PIPELINE_WORKERS="1")
    argv = [str(BIN / "sohoa-embedded"), "--data-dir", str(tmp_path / "emb")]
    argv += ["--http-port", str(http), "--mqtt-port", str(mqtt), "--device-id", "xa-emb-01"]
    run = subprocess.Popen([*argv, "run"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _healthy(f"http://127.0.0.1:{http}"), "server healthy")
        enrolled = tmp_path / "emb" / "agent" / "enrolment" / "enrolment.json"
        _wait_for(enrolled.exists, "the station enrolled (its first start)")
        _wait_for(lambda: len(_children(run.pid)) == 3, "three children")
        kids = _children(run.pid)
        # The broker takes no anonymous client: the server logs in with the identities
        # `broker init` made, the station with the one its enrolment gave it.
        emb = tmp_path / "emb"
        secrets = [emb / "broker" / "admin-password", emb / "broker" / "ingest-password",
                   emb / "agent" / "enrolment" / "mqtt-password",
                   emb / "agent" / "enrolment" / "station.key"]  # fmt: skip
        assert all(s.stat().st_mode & 0o077 == 0 for s in secrets)
        assert (emb / "agent" / "enrolment" / "enrolment.json").exists()
        assert (emb / "enrol-xa-emb-01.pdf").exists()
        # The embedded env reaches the agent: `sohoa-embedded agent status` reads its outbox.
        status = subprocess.run([*argv, "agent", "status", "--json"], env=env,
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert status.returncode == 0, status.stderr
        mosquitto = next(pid for cmd, pid in kids.items() if "mosquitto" in cmd)
        os.kill(mosquitto, signal.SIGKILL)
        assert run.wait(60) == 1
        _, err = run.communicate(timeout=10)
        assert "mosquitto exited with code -9" in err
        for pid in kids.values():  # the others were stopped, not left behind
            assert (
                not Path(f"/proc/{pid}").exists()
                or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
            )
    finally:
        if run.poll() is None:
            run.kill()


@pytest.mark.mqtt
@pytest.mark.slow
def test_sohoa_embedded_run_stops_everything_on_sigterm(tmp_path: Path) -> None:
    http, mqtt = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOHOA_")}
    env.update(SOHOA_SCANNER="test:0", SOHOA_MIN_FREE_MB="10")
    argv = [str(BIN / "sohoa-embedded"), "--data-dir", str(tmp_path / "emb"), "--http-port",
            str(http), "--mqtt-port", str(mqtt), "--device-id", "xa-emb-02", "run"]  # fmt: skip
    run = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: len(_children(run.pid)) == 3, "three children")
        kids = list(_children(run.pid).values())
        run.send_signal(signal.SIGTERM)
        assert run.wait(90) == 0
        for pid in kids:
            assert not Path(f"/proc/{pid}").exists()
    finally:
        if run.poll() is None:
            run.kill()


def test_agent_and_server_commands_pass_through_verbatim(tmp_path: Path) -> None:
    base = [str(BIN / "sohoa-embedded"), "--data-dir", str(tmp_path / "emb")]
    for args, usage in (
        (["agent", "--help"], "usage: sohoa-agent"),
        (["server", "user", "add", "--help"], "usage: sohoa-server user add"),
    ):
        out = subprocess.run([*base, *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and out.stdout.startswith(usage), out.stderr
    refused = subprocess.run([*base, "run", "--bogus"], capture_output=True, text=True)
    assert refused.returncode == 2 and "unrecognized arguments: --bogus" in refused.stderr
