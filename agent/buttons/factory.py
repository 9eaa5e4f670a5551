"""Opening the button the configuration names, with the settings its profile states.

This module owns the list of button kinds, `profile_settings` (a `hw_profiles/buttons`
profile → the keywords of its source) and `open_button`. It must not read presses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from agent.buttons.events import ButtonError, ButtonSource, NoButton
from agent.buttons.modem_line import ModemLineButton
from agent.buttons.scanner_button import SaneSensorButton
from agent.buttons.serial_box import SerialBoxButton
from agent.buttons.usb_key import InputKeyButton, key_code
from agent.profiles import ButtonProfile

log = logging.getLogger(__name__)

BUTTON_KINDS = ("serial-box", "modem-line", "usb-key", "scanner-button", "none")


def profile_settings(profile: ButtonProfile) -> dict[str, Any]:
    """What a button profile (`hw_profiles/buttons/<kind>.toml`) says, as `open_button`
    keywords for the source of its transport. A site changes them with its own profile of
    the same id (in `hw_profiles_dir`), never here."""
    long_s = profile.long_press_ms / 1000
    debounce_s = profile.debounce_ms / 1000
    poll_s = None if profile.poll_ms is None else profile.poll_ms / 1000
    if profile.transport == "serial-line":  # the box debounces itself
        return {"baud": profile.baud, "long_s": long_s}
    if profile.transport == "modem-lines":
        return {"long_s": long_s, "debounce_s": debounce_s, "poll_interval_s": poll_s}
    if profile.transport == "input-event":
        return {"long_s": long_s, "key_code": [key_code(k) for k in profile.key_codes]}
    return {"long_s": long_s, "debounce_s": debounce_s, "interval": poll_s}  # sane-sensor


def open_button(kind: str, **settings: Any) -> ButtonSource:
    """Open the button source named by config (`button.kind`), with its settings as keywords.

    serial-box: port, baud, long_s, … · modem-line: port, line ("cts"/"dsr"), debounce_s, … ·
    usb-key: device_path, key_code, alt_key_code, … · scanner-button: poll (from
    agent.capture.sane_device), interval, … · none: no settings.
    """
    factories: dict[str, Callable[..., ButtonSource]] = {
        "serial-box": SerialBoxButton,
        "modem-line": ModemLineButton,
        "usb-key": InputKeyButton,
        "scanner-button": SaneSensorButton,
        "none": NoButton,
    }
    factory = factories.get(kind)
    if factory is None:
        raise ButtonError(
            "button.unknown_kind",
            f"button kind {kind!r}; expected one of {', '.join(BUTTON_KINDS)}",
        )
    try:
        return factory(**settings)
    except TypeError as exc:
        raise ButtonError("button.bad_settings", f"{kind}: {exc}") from exc
