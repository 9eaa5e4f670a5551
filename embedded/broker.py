"""A private Mosquitto: its config, persistence, identities (dynamic security), the process.

Not the archive host's broker (that one is configured by ``systemd/mosquitto/sohoa.conf``):
this one listens on 127.0.0.1 only, on a port of the caller's choosing, for a demo, the tests
or a single-machine install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from embedded.errors import ComponentMissing
from embedded.process import Child, check_port_free, free_port, wait_port

INSTALL_HINT = "install it with `sudo apt install mosquitto` (Debian/Raspberry Pi OS)"
SERVER_USER = "sohoa-server"  # the archive's broker user: the only writer of down/#


def dynsec_plugin() -> Path:
    """Debian's dynamic security plugin (package mosquitto), wherever the architecture puts it."""
    found = sorted(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so"))
    found += [p for p in (Path("/usr/lib/mosquitto_dynamic_security.so"),) if p.exists()]
    if not found:
        raise ComponentMissing(f"mosquitto_dynamic_security.so is missing: {INSTALL_HINT}")
    return found[0]


def mosquitto_programs(search_path: str | None = None) -> tuple[str, str]:
    """Paths of ``mosquitto`` and ``mosquitto_passwd``, or ComponentMissing with the hint.

    Looked up on ``search_path`` (default: PATH, then /usr/sbin where Debian puts the broker
    and which a normal user's PATH often lacks)."""
    if search_path is None:
        search_path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"])
    found = []
    for name in ("mosquitto", "mosquitto_passwd"):
        path = shutil.which(name, path=search_path)
        if path is None:
            raise ComponentMissing(f"{name} (the MQTT broker) is not installed: {INSTALL_HINT}")
        found.append(path)
    return found[0], found[1]


@dataclass
class Broker:
    """A private mosquitto on 127.0.0.1. With ``dynsec`` it runs as production does:
    Mosquitto's dynamic security plugin, its first file written by ``sohoa-server broker
    init`` (the archive's admin and ingest identities; their passwords in ``workdir``, mode
    0600), stations only through enrolment; without, anyone on this machine may connect
    (most tests).

    ``persistence`` keeps sessions and queued messages across restarts (autosaved every
    second, so a SIGKILL loses at most that); past ``max_queued`` messages per client
    mosquitto drops silently, so the default is far above what a test or a station queues.
    ``log_path`` None sends the broker's log to our stderr instead of ``mosquitto.log``.
    """

    workdir: Path
    port: int = field(default_factory=free_port)
    dynsec: bool = False
    persistence: bool = True
    max_queued: int = 100000
    extra: str = ""
    log_to_file: bool = True
    search_path: str | None = None  # where to look for mosquitto (default: PATH + /usr/sbin)
    _child: Child | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def admin_password_file(self) -> Path:
        return self.workdir / "admin-password"

    @property
    def ingest_password_file(self) -> Path:
        return self.workdir / "ingest-password"

    @property
    def admin_password(self) -> str:
        return self.admin_password_file.read_text().strip()

    @property
    def ingest_password(self) -> str:
        return self.ingest_password_file.read_text().strip()

    @property
    def ingest_url(self) -> str:
        """The archive's ingest identity with its password (tests only: it shows in ``ps``)."""
        return f"mqtt://{SERVER_USER}:{self.ingest_password}@127.0.0.1:{self.port}"

    def _init_dynsec(self) -> Path:
        """The plugin's file, made once by the server's own ``broker init`` (the plugin
        keeps its state in it across restarts, so it is never rewritten)."""
        from embedded.process import clean_env
        from embedded.server import server_program

        path = self.workdir / "dynamic-security.json"
        if not path.exists():
            env = clean_env(False)
            env["SOHOA_DATA_DIR"] = str(self.workdir)
            out = subprocess.run(
                [*server_program(), "broker", "init", "--dynsec-file", str(path),
                 "--admin-password-file", str(self.admin_password_file),
                 "--ingest-password-file", str(self.ingest_password_file)],
                env=env, capture_output=True, text=True,
            )  # fmt: skip
            if out.returncode != 0:
                raise ComponentMissing(f"sohoa-server broker init failed: {out.stderr.strip()}")
        return path

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self._child.proc if self._child is not None else None

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

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
            # root-owned work dir (CI runs as root). Stay root for this private broker.
            lines.append("user root")
        if self.dynsec:
            lines += [
                "allow_anonymous false",
                f"plugin {dynsec_plugin()}",
                f"plugin_opt_config_file {self._init_dynsec()}",
            ]
        else:
            lines.append("allow_anonymous true")
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n" + self.extra)
        return conf

    def start(self, timeout: float = 10.0) -> Broker:
        """Start and return once the port accepts connections. Raises ComponentMissing,
        PortBusy, or ChildDied with the broker's last log lines."""
        mosquitto, _ = mosquitto_programs(self.search_path)
        check_port_free(self.port, what="the MQTT broker")
        conf = self.write_config()
        log = self.log_path if self.log_to_file else None
        child = Child("mosquitto", [mosquitto, "-c", str(conf)], log_path=log)
        self._child = child.start()
        wait_port(self.port, timeout, alive=lambda: child.check("while starting"))
        return self

    def check(self) -> None:
        """Raise ChildDied if the broker was started and has exited."""
        if self._child is not None:
            self._child.check()

    def tail(self, n: int = 30) -> str:
        return self._child.tail(n) if self._child is not None else ""

    def kill(self) -> None:
        if self._child is not None:
            self._child.kill()

    def stop(self) -> None:
        if self._child is not None:
            self._child.stop(10)
