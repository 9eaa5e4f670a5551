"""Start-up checks: refuse to start a command whose outside parts are missing.

A station without `tesseract-ocr-vie` would otherwise turn every page into a failed,
capture-only page, and one without python-sane's C library would accept a button press it
can never scan. So `sohoa-agent run` (before systemd hears READY=1) and the commands that
need a part (`scan`: SANE; `process`: tesseract; `sync`: tesseract and the broker) check it
first and stop with one operator line carrying the install hint, exit code 78.

This module owns the checks and their messages; it must not scan, run OCR on a page or
connect to the broker (a broker that is down is a normal state of a 2G link, not a reason to
refuse to start: only a malformed address is).
"""

from __future__ import annotations

import importlib
import logging

from agent.config import AgentSettings
from agent.errors import ConfigError
from agent.pipeline import ocr

log = logging.getLogger(__name__)

SANE_HINT = "apt install libsane1 libsane-dev sane-utils"  # what python-sane links to


class StartupRefused(ConfigError):
    """An outside part the command needs is missing or misconfigured (exit 78, EX_CONFIG).

    `hint` is what to run or change; it is part of the operator line."""


def check_ocr(settings: AgentSettings) -> str:
    """Tesseract runs and has data for every language of `ocr_languages`. Returns its version."""
    try:
        info = ocr.require(settings.ocr_languages)
    except ocr.OcrUnavailable as exc:
        raise StartupRefused("startup_ocr_missing", exc.detail, hint=exc.install_hint) from exc
    return info.version_text


def check_sane() -> str:
    """python-sane imports and SANE initialises. Returns SANE's version."""
    try:
        sane_device = importlib.import_module("agent.capture.sane_device")
        return str(sane_device.init())
    except Exception as exc:  # ImportError of the C module, or sane.init() failing
        raise StartupRefused("startup_sane_missing", f"python-sane: {exc}", hint=SANE_HINT) from exc


def check_broker(settings: AgentSettings) -> str:
    """The broker address is well-formed (host, port 1..65535, a readable password file).

    Whether the broker answers is not checked: the link comes and goes."""
    # The URL may hold a password: only urlsplit's reason is shown, never the URL.
    try:
        address = settings.broker()
    except ValueError as exc:  # urlsplit: a port that is not a number or out of range
        raise StartupRefused(
            "startup_broker_invalid", str(exc), hint="mqtt_url (SOHOA_MQTT_URL)"
        ) from exc
    except ConfigError as exc:  # the password file cannot be read
        raise StartupRefused(
            "startup_broker_invalid", exc.detail, hint="mqtt_password_file"
        ) from exc
    return f"{address.host}:{address.port}"


def check(
    settings: AgentSettings,
    *,
    tesseract: bool = False,
    sane: bool = False,
    broker: bool = False,
) -> None:
    """Run the checks a command needs, cheapest first; the first failure raises."""
    if broker:
        log.info("start-up check: broker address %s", check_broker(settings))
    if sane:
        log.info("start-up check: SANE %s", check_sane())
    if tesseract:
        log.info("start-up check: %s", check_ocr(settings))
