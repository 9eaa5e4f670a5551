"""A throwaway PostgreSQL cluster for tests and benchmarks: Debian's server binaries, a
temporary data directory, loopback on a free port, password (scram) authentication.

PostgreSQL refuses to run as root and CI runs as root (docs/design.md §8): as root, initdb and
the server run as the ``postgres`` user (``runuser``) in a directory that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from harness import free_port

SUPERUSER = "postgres"


def bindir() -> Path:
    """The newest installed server's bin directory (postgresql-NN from Debian)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if not found:
        raise RuntimeError(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin): "
            "install Debian's postgresql package (scripts/bootstrap.sh does)"
        )
    return Path(found[-1]).parent


# Settings of every throwaway cluster: tests run hundreds of databases side by side, so it is
# kept small (Debian's default is 128MB). An archive server's own configuration is
# docs/operations.md "PostgreSQL memory" (section 7); the search benchmark can run with it
# (``python -m bench search_million --shared-buffers ...``).
SHARED_BUFFERS = "64MB"


class PostgresCluster:
    def __init__(
        self,
        settings: dict[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        netns: str | None = None,
    ) -> None:
        """``settings``: server settings (``-c name=value``) beside the defaults below, e.g.
        ``{"shared_buffers": "4GB"}``. ``host``: the address it listens on; ``netns``: the
        network namespace it runs in (a database host of its own: tests/test_dbhost.py)."""
        self.settings = {"shared_buffers": SHARED_BUFFERS} | (settings or {})
        self.host = host
        self.netns = netns
        self.bin = bindir()
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self.root = Path(tempfile.mkdtemp(prefix="sohoa-pg-"))
        self.data = self.root / "data"
        self.as_root = os.geteuid() == 0
        self._dbs = 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        if self.netns is not None:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> PostgresCluster:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        self.root.chmod(0o700)
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        pwfile.unlink()
        if self.host != "127.0.0.1":  # clients on its own network, with the password
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write("host all all samenet scram-sha-256\n")
        self._pg_ctl("start")
        return self

    def start_copy_of(self, url: str) -> PostgresCluster:
        """Start as a copy of the running cluster at ``url`` (every database, the same
        superuser password): ``pg_basebackup`` over a replication connection, which reads
        the other cluster online without stopping it. The password becomes ``url``'s."""
        from urllib.parse import urlsplit

        src = urlsplit(url)
        self.password = src.password or ""
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self.root.chmod(0o700)
        cmd = [
            str(self.bin / "pg_basebackup"), "-h", src.hostname or "127.0.0.1",
            "-p", str(src.port or 5432), "-U", src.username or SUPERUSER,
            "-D", str(self.data), "-X", "stream", "--checkpoint=fast", "--no-sync",
        ]  # fmt: skip
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        env = os.environ | {"PGPASSWORD": self.password}
        subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        self._pg_ctl("start")
        return self

    def restart(self) -> None:
        """Stop (fast: sessions are cut) and start again on the same port."""
        self._pg_ctl("restart", "-m", "fast")

    def stop_now(self) -> None:
        """Stop as a power cut stops it (immediate: no checkpoint, sessions cut), keeping
        its data for :meth:`start_again`."""
        self._pg_ctl("stop", "-m", "immediate")

    def start_again(self) -> None:
        self._pg_ctl("start")

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = (
            f"-c listen_addresses={self.host} -c port={self.port}"
            f" -c unix_socket_directories={self.root} -c max_connections=200"
            " -c log_min_messages=warning"
        ) + "".join(f" -c {name}={value}" for name, value in self.settings.items())
        # -l: the server must not inherit our stdout pipe (we would wait for it forever).
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.root / "server.log"), "-w", "-t", "60", *extra, action,
        )  # fmt: skip

    def url(self, dbname: str = "postgres", password: str | None = None) -> str:
        pw = self.password if password is None else password
        return f"postgresql://{SUPERUSER}:{pw}@{self.host}:{self.port}/{dbname}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; its URL (with the password)."""
        import psycopg

        self._dbs += 1
        name = f"{prefix}_{os.getpid()}_{self._dbs}"
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "server.log").read_text(errors="replace")
        return ""

    def stop(self) -> None:
        if self.data.exists():  # a throwaway: no shutdown checkpoint (it fsyncs every file)
            self._run(
                str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop",
                check=False,
            )  # fmt: skip
        deadline = time.monotonic() + 10
        while (self.data / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        # Deleting a cluster of many test databases takes seconds: let rm do it after us.
        subprocess.Popen(["rm", "-rf", str(self.root)], start_new_session=True)


def url_of(database: Path | str) -> str:
    """``SOHOA_DATABASE_URL`` for the ``database`` fixture's value (a path or a URL)."""
    return f"sqlite:///{database}" if isinstance(database, Path) else database
