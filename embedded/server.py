"""The archive server as a process: ``sohoa-server run`` with a data directory, ready when
its ``/healthz`` says the ingest is connected; its staff user and token made by its own CLI."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedded.errors import EmbeddedError
from embedded.process import Child, check_port_free, clean_env, free_port, program


def server_program() -> list[str]:
    return program("sohoa-server", "server.cli", "pip install '.[server]' in this checkout")


@dataclass
class ServerProcess:
    """``sohoa-server run`` on 127.0.0.1:``port`` with its data in ``data_dir``.

    ``start()`` first makes the API user ``admin_user`` (role admin, no password: tokens
    only) and a token for it, unless ``token`` is given or ``admin_user`` is None.
    ``inherit_settings`` passes the caller's ``SOHOA_*`` variables through (a single-machine
    install); tests leave it off.
    """

    data_dir: Path
    mqtt_url: str
    port: int = field(default_factory=free_port)
    client_id: str = "sohoa-server-1"
    token: str = ""
    database_url: str | None = None  # default: SQLite in data_dir
    admin_user: str | None = "admin"  # None: make no user (a real install adds its own)
    mqtt_password_file: Path | None = None
    host: str = "127.0.0.1"
    inherit_settings: bool = False
    log_to_file: bool = True
    settings: dict[str, str] = field(default_factory=dict)  # more SOHOA_* for the child
    _child: Child | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self._child.proc if self._child is not None else None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def env(self) -> dict[str, str]:
        env = clean_env(self.inherit_settings)
        env.update(
            SOHOA_DATA_DIR=str(self.data_dir),
            SOHOA_MQTT_URL=self.mqtt_url,
            SOHOA_MQTT_CLIENT_ID=self.client_id,
            SOHOA_HOST=self.host,
            SOHOA_PORT=str(self.port),
        )
        if self.database_url:
            env["SOHOA_DATABASE_URL"] = self.database_url
        if self.mqtt_password_file is not None:
            env["SOHOA_MQTT_PASSWORD_FILE"] = str(self.mqtt_password_file)
        env.update(self.settings)
        return env

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``sohoa-server ARGS`` against this server's data and settings."""
        out = subprocess.run(
            [*server_program(), *args], env=self.env(), capture_output=True, text=True
        )
        if check and out.returncode != 0:
            raise EmbeddedError(
                f"sohoa-server {' '.join(args)} exited {out.returncode}: "
                f"{(out.stderr or out.stdout).strip()}"
            )
        return out

    def create_token(self, user: str, role: str = "admin") -> str:
        """Make (or update) ``user`` without a password and print a new API token for it."""
        self.cli("user", "add", user, "--role", role, "--no-password")
        return self.cli("token", "create", "--user", user).stdout.strip()

    def start(self, timeout: float = 20.0) -> ServerProcess:
        """Start and wait for ``/healthz`` (ingest connected). Raises PortBusy, or ChildDied
        with the server's last log lines, or TimeoutError."""
        check_port_free(self.port, self.host, "the archive server")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.token and self.admin_user is not None:
            self.token = self.create_token(self.admin_user)
        log = self.log_path if self.log_to_file else None
        child = Child("sohoa-server", [*server_program(), "run"], self.env(), log)
        self._child = child.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                health = self.get_json("/healthz", auth=False)
                if health.get("ingest_connected"):
                    return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            child.check("while starting")
            time.sleep(0.1)
        raise TimeoutError(f"server did not become healthy: {self.log_tail()}")

    def check(self) -> None:
        """Raise ChildDied if the server was started and has exited."""
        if self._child is not None:
            self._child.check()

    def log_tail(self, n: int = 30) -> str:
        if self._child is not None and not self.log_to_file:
            return self._child.tail(n)
        path = self.log_path
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""
        )

    def request(
        self, method: str, path: str, body: Any = None, auth: bool = True
    ) -> tuple[int, bytes, dict[str, str]]:
        """One HTTP request (JSON body when given) with the token; never raises on a status."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - our own http URL
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    def get(self, path: str, auth: bool = True) -> tuple[int, bytes, dict[str, str]]:
        return self.request("GET", path, auth=auth)

    def get_json(self, path: str, auth: bool = True) -> Any:
        status, body, _ = self.get(path, auth)
        if status != 200:
            raise urllib.error.URLError(f"{path}: HTTP {status}")
        return json.loads(body)

    def kill(self) -> None:
        if self._child is not None:
            self._child.kill()

    def stop(self) -> None:
        if self._child is not None:
            self._child.stop(15)
