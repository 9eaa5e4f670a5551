"""The scan-station agent as processes: one ``sohoa-agent`` command at a time, or the
``sohoa-agent run`` daemon, each with its data directory and broker in the environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

from embedded.errors import EmbeddedError
from embedded.process import Child, clean_env, program
from protocol import topics


def agent_program() -> list[str]:
    return program("sohoa-agent", "agent.cli", "pip install '.[agent]' in this checkout")


def agent_env(
    data_dir: Path,
    mqtt_url: str | None,
    device_id: str | None,
    *,
    inherit_settings: bool = False,
    **settings: str,
) -> dict[str, str]:
    """The environment of an agent keeping its data in ``data_dir`` and talking to
    ``mqtt_url`` as ``device_id`` (None: what its enrolment installed); ``settings`` are more
    ``SOHOA_*`` variables."""
    env = clean_env(inherit_settings)
    env["SOHOA_DATA_DIR"] = str(data_dir)
    if mqtt_url is not None:
        env["SOHOA_MQTT_URL"] = mqtt_url
    if device_id is not None:
        env["SOHOA_DEVICE_ID"] = topics.check_device_id(device_id)
    env.update(settings)
    return env


def run_agent(
    env: dict[str, str], *args: str, timeout: float = 300, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``sohoa-agent ARGS`` to the end; with ``check`` a non-zero exit raises."""
    proc = subprocess.run(
        [*agent_program(), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise EmbeddedError(
            f"sohoa-agent {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


class AgentDaemon(Child):
    """``sohoa-agent run``: the button, pipeline and sync service."""

    def __init__(self, env: dict[str, str], log_path: Path | None = None) -> None:
        super().__init__("sohoa-agent", [*agent_program(), "run"], env, log_path)
