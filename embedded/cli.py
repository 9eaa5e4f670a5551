"""``sohoa-embedded``: the whole product on one machine (a commune office with no archive
host of its own, a training laptop): a private Mosquitto, the archive server and the scan
station's daemon under one supervisor.

``run`` starts the three in that order, each only once the one before it answers; Ctrl-C or
SIGTERM stops them in reverse order. If one dies, the others are stopped and the command
exits 1 naming it, with its last log lines (a service manager restarts the whole set).
``agent ARGS`` and ``server ARGS`` run ``sohoa-agent`` / ``sohoa-server`` commands with the
same data and settings (``sohoa-embedded server user add ana --role archivist``).

The broker runs the dynamic security plugin as in production: the server's identities are
made on the first start by ``sohoa-server broker init`` (passwords in ``<data-dir>/broker``,
mode 0600, never on a command line), and the station is enrolled like any other (a one-time
code from ``device add``, used by ``sohoa-agent enrol``): it gets its own broker identity and
pins the archive's key.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from embedded.agent import AgentDaemon, agent_env, agent_program, run_agent
from embedded.broker import SERVER_USER, Broker
from embedded.errors import ChildDied, EmbeddedError
from embedded.server import ServerProcess, server_program
from protocol import topics

EX_UNAVAILABLE = 69


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/sohoa-embedded")
    return Path.home() / ".local" / "share" / "sohoa-embedded"


def default_device_id() -> str:
    name = re.sub(r"[^a-z0-9_-]", "-", socket.gethostname().lower()).strip("-_")
    return (name or "sohoa-station")[:64]


@dataclass(frozen=True)
class Layout:
    """Where each part keeps its state under the launcher's data directory."""

    root: Path
    device_id: str
    http_port: int
    mqtt_port: int
    host: str = "127.0.0.1"

    def broker(self) -> Broker:
        return Broker(self.root / "broker", self.mqtt_port, dynsec=True, log_to_file=False)

    def server(self) -> ServerProcess:
        broker = self.broker()
        return ServerProcess(
            self.root / "server",
            f"mqtt://{SERVER_USER}@127.0.0.1:{self.mqtt_port}",
            port=self.http_port,
            host=self.host,
            admin_user=None,  # staff users are made with `sohoa-embedded server user add`
            mqtt_password_file=broker.ingest_password_file,
            inherit_settings=True,
            log_to_file=False,
            settings={"SOHOA_BROKER_ADMIN_PASSWORD_FILE": str(broker.admin_password_file)},
        )

    def agent_env(self) -> dict[str, str]:
        """The station's broker address, identity and the archive's key come from its
        enrolment (``<data-dir>/agent/enrolment/``), as on a real station."""
        return agent_env(self.root / "agent", None, None, inherit_settings=True)

    def enrolled(self) -> bool:
        return (self.root / "agent" / "enrolment" / "enrolment.json").exists()


def enrol(layout: Layout, server: ServerProcess, commune: str = "Xã (máy đơn)") -> None:
    """Enrol the station the way every station is: a one-time code from the archive
    (``device add``; its sheet beside the data), used by the agent (``enrol``)."""
    sheet = layout.root / f"enrol-{layout.device_id}.pdf"
    out = server.cli(
        "device", "add", layout.device_id, "--commune", commune, "--sheet", str(sheet),
        "--replace",
    )  # fmt: skip
    code = out.stdout.strip().splitlines()[-1]
    run_agent(layout.agent_env(), "enrol", code, check=True)


def cmd_run(layout: Layout) -> int:
    stop = threading.Event()

    def _stop(*_: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    broker, server = layout.broker(), layout.server()
    daemon: AgentDaemon | None = None
    try:
        say(f"Mosquitto on 127.0.0.1:{layout.mqtt_port} (data in {broker.workdir})")
        broker.start()
        say(f"Archive server on {server.url} (data in {server.data_dir})")
        server.start()
        if not layout.enrolled():
            say(f"Enrolling scan station {layout.device_id} (one-time code, its own identity)")
            enrol(layout, server)
        say(f"Scan station {layout.device_id} (data in {layout.root / 'agent'})")
        daemon = AgentDaemon(layout.agent_env())
        daemon.start()
        say(f"Running. Staff page: {server.url}/  (Ctrl-C stops everything)")
        while not stop.wait(0.5):
            broker.check()
            server.check()
            daemon.check()
        return 0
    except ChildDied as exc:
        print(f"sohoa-embedded: {exc}", file=sys.stderr)
        return 1
    finally:
        say("Stopping")
        if daemon is not None:
            daemon.stop(30)
        server.stop()
        broker.stop()


def cmd_passthrough(layout: Layout, which: str, args: Sequence[str]) -> int:
    if which == "agent":
        argv, env = agent_program(), layout.agent_env()
    else:
        argv, env = server_program(), layout.server().env()
    return subprocess.run([*argv, *args], env=env).returncode


def say(text: str) -> None:
    print(f"sohoa-embedded: {text}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sohoa-embedded",
        description="The whole product on one machine: a private Mosquitto, the archive "
        "server and the scan station, started and stopped together.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="state of all three parts (default /var/lib/sohoa-embedded as root, else "
        "~/.local/share/sohoa-embedded)",
    )
    parser.add_argument("--http-port", type=int, default=8080, help="staff app (default 8080)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="staff app listen address (default 127.0.0.1)"
    )
    parser.add_argument(
        "--mqtt-port", type=int, default=18830, help="private broker, 127.0.0.1 (default 18830)"
    )
    parser.add_argument(
        "--device-id", default=None, help="the scan station's id (default: from the host name)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "run",
        help="broker + server + agent daemon until Ctrl-C",
        description="Start the broker, the archive server and the agent daemon; stop all on "
        "Ctrl-C/SIGTERM; exit 1 naming the part that died. Other SOHOA_* settings in the "
        "environment reach the server and the agent (e.g. SOHOA_SCANNER, SOHOA_BUTTON).",
    )
    for which in ("agent", "server"):
        p = sub.add_parser(
            which,
            help=f"run a sohoa-{which} command on the embedded data (e.g. "
            + ("`agent status`)" if which == "agent" else "`server user add NAME --role admin`)"),
            add_help=False,
        )
        p.add_argument("args", nargs="*", help=f"arguments for sohoa-{which}")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    # Everything after `agent` / `server` belongs to sohoa-agent / sohoa-server verbatim
    # (`agent --help`, `agent --config x status`): split there, parse only what comes before.
    i, valued = 0, {"--data-dir", "--http-port", "--host", "--mqtt-port", "--device-id"}
    while i < len(argv) and argv[i] not in ("agent", "server"):
        i += 2 if argv[i] in valued else 1
    if i < len(argv):
        args = parser.parse_args([*argv[:i], argv[i]])
        passthrough = argv[i + 1 :]
    else:
        args = parser.parse_args(argv)
        passthrough = []
    try:
        device = topics.check_device_id(args.device_id or default_device_id())
    except topics.TopicError as exc:
        print(f"sohoa-embedded: {exc}", file=sys.stderr)
        return 78
    layout = Layout(
        (args.data_dir or default_data_dir()).resolve(),
        device,
        args.http_port,
        args.mqtt_port,
        args.host,
    )
    try:
        if args.command == "run":
            return cmd_run(layout)
        return cmd_passthrough(layout, args.command, passthrough)
    except EmbeddedError as exc:
        print(f"sohoa-embedded: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
