"""Real components for tests: a thin layer over the product's launcher (`embedded/`) with
the tests' defaults. Used by conftest fixtures, the fault tests and the benchmarks.

Keeps the names the tests use: ``Broker`` and ``ServerProcess`` (start, stop, and kill for
the fault tests, restartable on the same port and data), ``agent_env`` (a test station:
``xa-test-01`` on SANE's ``test:0``), ``run_agent`` (a failed command with ``check`` is an
AssertionError), ``free_port``, ``wait_port``, ``REPO``, ``BIN``, ``tool_version``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from embedded import Broker, EmbeddedError, free_port, wait_port
from embedded import ServerProcess as _ServerProcess
from embedded import agent_env as _agent_env
from embedded import run_agent as _run_agent

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

__all__ = [
    "BIN",
    "REPO",
    "Broker",
    "ServerProcess",
    "agent_env",
    "free_port",
    "run_agent",
    "tool_version",
    "wait_port",
]


@dataclass
class ServerProcess(_ServerProcess):
    """The server with the tests' API user: an admin "test" without a password."""

    admin_user: str | None = "test"


def agent_env(
    data_dir: Path, mqtt_url: str, device_id: str = "xa-test-01", **extra: str
) -> dict[str, str]:
    return _agent_env(
        data_dir,
        mqtt_url,
        device_id,
        **{
            "SOHOA_SCANNER": "test:0",
            "SOHOA_PIPELINE_WORKERS": "2",
            "SOHOA_MIN_FREE_MB": "10",
            **extra,
        },
    )


def run_agent(
    env: dict[str, str], *args: str, timeout: float = 300, check: bool = False
) -> subprocess.CompletedProcess[str]:
    try:
        return _run_agent(env, *args, timeout=timeout, check=check)
    except EmbeddedError as exc:
        raise AssertionError(str(exc)) from exc


def tool_version(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return "not installed"
    out = subprocess.run(cmd, capture_output=True, text=True)
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "?"
