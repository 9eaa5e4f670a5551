"""A private Mosquitto: its config, persistence, passwords and ACL, and the process.

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
from protocol import topics

INSTALL_HINT = "install it with `sudo apt install mosquitto` (Debian/Raspberry Pi OS)"
SERVER_USER = "sohoa-server"  # the archive's broker user: the only writer of down/#


def acl_text(server_user: str = SERVER_USER) -> str:
    """The production ACL (``systemd/mosquitto/sohoa.acl``), formed from ``protocol.topics``:
    the server reads every device's up/ and status/ topics and alone writes down/; a device
    (``%u``, its authenticated user name) writes only its own up/ and status/ topics and reads
    only its own down/ topics. A test keeps the two in step."""
    p = topics.PREFIX
    return (
        f"user {server_user}\n"
        f"topic read {p}/up/#\n"
        f"topic read {p}/status/#\n"
        f"topic write {p}/down/#\n"
        "\n"
        f"pattern write {p}/up/%u/#\n"
        f"pattern write {p}/status/%u\n"
        f"pattern read {p}/down/%u/#\n"
    )


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
    """A private mosquitto on 127.0.0.1. With ``users`` it requires passwords and applies the
    production ACL pattern (devices write only under their own topics); without, anyone on
    this machine may connect (tests, the demo).

    ``persistence`` keeps sessions and queued messages across restarts (autosaved every
    second, so a SIGKILL loses at most that); past ``max_queued`` messages per client
    mosquitto drops silently, so the default is far above what a test or a station queues.
    ``log_path`` None sends the broker's log to our stderr instead of ``mosquitto.log``.
    """

    workdir: Path
    port: int = field(default_factory=free_port)
    users: dict[str, str] | None = None
    persistence: bool = True
    max_queued: int = 100000
    extra: str = ""
    log_to_file: bool = True
    search_path: str | None = None  # where to look for mosquitto (default: PATH + /usr/sbin)
    _child: Child | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def url_for(self, user: str) -> str:
        """The URL with ``user``'s password in it (tests only: it shows in ``ps``)."""
        assert self.users is not None
        return f"mqtt://{user}:{self.users[user]}@127.0.0.1:{self.port}"

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self._child.proc if self._child is not None else None

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def write_config(self) -> Path:
        _, passwd_program = mosquitto_programs(self.search_path)
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
        if self.users is None:
            lines.append("allow_anonymous true")
        else:
            pw = self.workdir / "passwd"
            pw.unlink(missing_ok=True)
            for i, (user, password) in enumerate(self.users.items()):
                flag = ["-c"] if i == 0 else []
                subprocess.run(
                    [passwd_program, "-b", *flag, str(pw), user, password],
                    check=True,
                    capture_output=True,
                )
            acl = self.workdir / "acl"
            acl.write_text(acl_text())
            os.chmod(pw, 0o600)
            os.chmod(acl, 0o600)
            lines += ["allow_anonymous false", f"password_file {pw}", f"acl_file {acl}"]
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
