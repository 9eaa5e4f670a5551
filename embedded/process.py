"""Child processes: finding the programs, free and busy ports, logs, and clean stops."""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from embedded.errors import ChildDied, ComponentMissing, PortBusy

BIN = Path(sys.executable).parent  # the console scripts of this interpreter's environment
TAIL_LINES = 30


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel's choice; another process may take it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_port_free(port: int, host: str = "127.0.0.1", what: str = "") -> None:
    """Raise PortBusy when something already listens on ``host:port``.

    SO_REUSEADDR as the servers themselves set it: a port whose last connections linger in
    TIME_WAIT (a broker restarted on the same port) counts as free, a listening one does not.
    """
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            role = f" for {what}" if what else ""
            raise PortBusy(
                f"port {port} on {host}{role} is already in use by another program; stop it or "
                "choose another port"
            ) from exc


def wait_port(
    port: int,
    timeout: float = 10.0,
    host: str = "127.0.0.1",
    alive: Callable[[], None] | None = None,
) -> None:
    """Return once something accepts connections on ``host:port``. ``alive`` is called
    between tries and raises (ChildDied) when the process that should listen has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return
        if alive is not None:
            alive()
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def program(name: str, module: str | None = None, hint: str = "") -> list[str]:
    """The command line that runs ``name``: the console script beside this interpreter (a
    venv's own ``bin/``), else one on PATH, else ``python -m module``."""
    beside = BIN / name
    if beside.exists():
        return [str(beside)]
    found = shutil.which(name)
    if found:
        return [found]
    if module is not None:
        return [sys.executable, "-m", module]
    raise ComponentMissing(f"{name} is not installed{': ' + hint if hint else ''}")


class Child:
    """One long-running child: started, asked whether it lives, stopped, and its last log
    lines read. Output goes to ``log_path`` (appended), or, without one, to this process's
    stderr with the child's name before each line (journald-friendly) while the last lines
    are kept for error messages."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._pump: threading.Thread | None = None

    def start(self) -> Child:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
                self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=log)
        else:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            assert self.proc.stdout is not None
            self._pump = threading.Thread(
                target=self._copy, args=(self.proc.stdout,), name=f"log-{self.name}", daemon=True
            )
            self._pump.start()
        return self

    def _copy(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._tail.append(line)
            print(f"{self.name}: {line}", file=sys.stderr, flush=True)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self, while_: str = "") -> None:
        """Raise ChildDied (with the last log lines) if the child was started and has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            if self._pump is not None:
                self._pump.join(2)
            raise ChildDied(self.name, self.proc.returncode, self.tail(), while_)

    def tail(self, n: int = TAIL_LINES) -> str:
        if self.log_path is None:
            return "\n".join(list(self._tail)[-n:])
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.running:
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reap()

    def kill(self) -> None:
        """SIGKILL: what a power cut or the OOM killer does to the process (not to its
        unsynced writes, which the kernel keeps)."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._reap()

    def _reap(self) -> None:
        if self._pump is not None:
            self._pump.join(2)
            self._pump = None
        self.proc = None


def clean_env(inherit: bool = False) -> dict[str, str]:
    """This process's environment, without its ``SOHOA_*`` settings unless ``inherit``: a
    child configured by the launcher must not pick up a stray setting from the caller."""
    return {k: v for k, v in os.environ.items() if inherit or not k.startswith("SOHOA_")}
