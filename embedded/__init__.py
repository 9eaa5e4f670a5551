"""The embedded launcher: one machine runs its own broker, archive server and scan station.

This package owns starting the product's parts as child processes and nothing else:

- ``broker``: a private Mosquitto (its config, persistence directory, password file and the
  production ACL pattern), started on a port of our choosing;
- ``server``: ``sohoa-server run`` with a data directory, waiting for ``/healthz``; creating
  a staff user and an API token through ``sohoa-server``'s own commands;
- ``agent``: ``sohoa-agent`` commands and the ``sohoa-agent run`` daemon with a data directory;
- ``cli``: ``sohoa-embedded``, the single-machine supervisor (broker + server + agent).

The demo (``scripts/demo.py``), the tests' harness and a single-machine install all use it.

It must import only the standard library and ``protocol``: never ``agent`` or ``server``
(they are started as processes by their console scripts, so the wall between the edge and
the archive holds here too; ``tests/test_embedded.py`` checks it).
"""

from __future__ import annotations

from pathlib import Path

from embedded.agent import AgentDaemon, agent_env, run_agent
from embedded.broker import Broker
from embedded.errors import ChildDied, ComponentMissing, EmbeddedError, PortBusy
from embedded.process import free_port, wait_port
from embedded.server import ServerProcess

SAMPLES = Path(__file__).resolve().parent / "samples"  # pages the demo imports (README there)

__all__ = [
    "SAMPLES",
    "AgentDaemon",
    "Broker",
    "ChildDied",
    "ComponentMissing",
    "EmbeddedError",
    "PortBusy",
    "ServerProcess",
    "agent_env",
    "free_port",
    "run_agent",
    "wait_port",
]
