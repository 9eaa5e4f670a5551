"""The station's hardware as its profiles describe it, with the settings that override them.

This module owns one question: given the settings, which board and button profiles apply, and
what do they make of the values the agent runs with — worker count, memory budget, OpenMP
limit, the button's key codes, long-press and debounce times, the LED and beep pattern of
every state. Each value says where it came from (a setting, a profile, or the built-in
default), so `sohoa-agent status` and the log can show why the station behaves as it does.

Order, later wins: built-in default → board / button profile (`hw_profiles/`, or a site's
profile of the same id in `hw_profiles_dir`) → the setting (`agent.toml` or `SOHOA_*`).

It must not open a device: the daemon opens the button with `button_settings`, the worker
sizes its pool with `pipeline_workers`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import profiles
from agent.buttons import profile_settings
from agent.buttons.feedback import STATE_SIGNALS, AgentState, Signal, signals_from_profile
from agent.config import AgentSettings
from agent.errors import ConfigError

log = logging.getLogger(__name__)

# Where Linux on a device-tree board (every Raspberry Pi) names the model; absent on x86.
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")

# Memory one more page worker costs, with its tesseract child, MB. Measured (docs/benchmarks.md
# "Ninth sitting: a worker's memory", `python -m bench worker_memory`): a worker's own
# (anonymous) memory peaks at 97–107 MB in binarise/rules/layers, its tesseract at 70–77 MB;
# the libraries (~53 MB) are shared with the station after the fork. ~185 MB, rounded up with
# headroom (earlier sittings measured the worker at 126–129 MB: kept as the sizing so that a
# board's count does not grow without a measurement on that board).
WORKER_MEMORY_MB = 220


@dataclass(frozen=True)
class Hardware:
    """What the station runs with, and where each value came from."""

    board: profiles.BoardProfile | None
    button: profiles.ButtonProfile | None
    pipeline_workers: int
    memory_budget_mb: int | None
    omp_thread_limit: int
    button_settings: dict[str, Any]
    signals: Mapping[AgentState, Signal]
    origins: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """For `status --json` and the start-up log line."""
        return {
            "board": self.board.id if self.board else None,
            "button": self.button.id if self.button else None,
            "pipeline_workers": self.pipeline_workers,
            "memory_budget_mb": self.memory_budget_mb,
            "omp_thread_limit": self.omp_thread_limit,
            "button_settings": {
                k: v for k, v in self.button_settings.items() if isinstance(v, int | float | list)
            },
            "origins": dict(self.origins),
        }


def detect_board(
    boards: list[profiles.BoardProfile], model_file: Path = DEVICE_TREE_MODEL
) -> profiles.BoardProfile | None:
    """The board whose `match_model` matches the device tree's model string, if any."""
    try:
        model = model_file.read_bytes().rstrip(b"\0").decode("utf-8", "replace").strip()
    except OSError:
        return None
    for board in sorted(boards, key=lambda b: b.id):
        if board.match_model and re.search(board.match_model, model):
            return board
    return None


def resolve(
    settings: AgentSettings,
    *,
    model_file: Path = DEVICE_TREE_MODEL,
    cpu_count: int | None = None,
) -> Hardware:
    """The board and button profiles the settings name, merged with the settings."""
    origins: dict[str, str] = {}
    board = _board(settings, model_file)
    if board is not None:
        origins["board"] = "setting" if settings.board != "auto" else "detected"

    cores = cpu_count if cpu_count is not None else max(1, os.cpu_count() or 1)
    if settings.pipeline_workers is not None:
        workers, origins["pipeline_workers"] = settings.pipeline_workers, "setting"
    elif board is not None:
        workers, origins["pipeline_workers"] = board.pipeline_workers, f"board {board.id}"
    else:
        workers, origins["pipeline_workers"] = cores, "default (one per core)"
    budget: int | None = None
    if settings.memory_budget_mb is not None:
        budget, origins["memory_budget_mb"] = settings.memory_budget_mb, "setting"
    elif board is not None and board.memory_budget_mb is not None:
        budget, origins["memory_budget_mb"] = board.memory_budget_mb, f"board {board.id}"
    # A budget caps the count, except the board's budget against a count the site set itself.
    site_count = settings.pipeline_workers is not None and settings.memory_budget_mb is None
    if budget is not None and not site_count and workers * WORKER_MEMORY_MB > budget:
        capped = max(1, budget // WORKER_MEMORY_MB)
        log.info(
            "pipeline workers %d -> %d: %d MB budget / %d MB per worker",
            workers,
            capped,
            budget,
            WORKER_MEMORY_MB,
        )
        workers = capped
        origins["pipeline_workers"] += f", capped by memory_budget_mb {budget}"
    omp = board.omp_thread_limit if board is not None else 1

    button = _button(settings)
    button_settings = _button_settings(settings, button, origins)
    signals = signals_from_profile(button) if button is not None else STATE_SIGNALS
    if button is not None and button.signals:
        origins["signals"] = f"button {button.id} (+ defaults)"
    return Hardware(
        board=board,
        button=button,
        pipeline_workers=workers,
        memory_budget_mb=budget,
        omp_thread_limit=omp,
        button_settings=button_settings,
        signals=signals,
        origins=origins,
    )


def _board(settings: AgentSettings, model_file: Path) -> profiles.BoardProfile | None:
    if settings.board == "none":
        return None
    boards = profiles.load_board_profiles(settings.hw_profiles_dir)
    if settings.board == "auto":
        return detect_board(boards, model_file)
    for board in boards:
        if board.id == settings.board:
            return board
    known = ", ".join(sorted(b.id for b in boards))
    raise ConfigError("config_invalid", f"board {settings.board!r}: no such profile ({known})")


def _button(settings: AgentSettings) -> profiles.ButtonProfile | None:
    if settings.button == "none":
        return None
    stated = {p.id: p for p in profiles.load_button_profiles(settings.hw_profiles_dir)}
    return stated.get(settings.button)


def _button_settings(
    settings: AgentSettings, button: profiles.ButtonProfile | None, origins: dict[str, str]
) -> dict[str, Any]:
    """`open_button` keywords: the profile's, then each setting that is set."""
    if button is None:
        return {}
    update: dict[str, Any] = {}
    for name, value in (
        ("key_codes", settings.button_key_codes),
        ("long_press_ms", settings.button_long_press_ms),
        ("debounce_ms", settings.button_debounce_ms),
    ):
        if value is not None:
            update[name] = value
            origins[f"button.{name}"] = "setting"
    for name in ("key_codes", "long_press_ms", "debounce_ms"):
        origins.setdefault(f"button.{name}", f"button {button.id}")
    merged = button.model_copy(update=update) if update else button
    return profile_settings(merged)
