"""Picking the scanner profile for a device SANE lists.

This module owns the scoring of a profile's match rules (backend, vendor/model, USB id)
against what SANE says about a device, falling back to the `generic` profile. It must not
open a device or import `sane`: `agent.capture.sane_device` hands it a `SaneDeviceInfo`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from agent.profiles.models import ProfileError, ScannerProfile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SaneDeviceInfo:
    """What `sane.get_devices()` says about one device, plus the USB id when known."""

    name: str  # "fujitsu:fi-7160:12345", "net:10.0.0.5:fujitsu:fi-7260:1", "test:0"
    vendor: str = ""
    model: str = ""
    type: str = ""
    usb_id: str | None = None  # "04c5:132e"

    @property
    def backend(self) -> str:
        """Backend part of the name; a saned 'net:<host>:' prefix is skipped."""
        name = self.name
        if name.startswith("net:"):
            rest = name[4:]
            # An IPv6 host is bracketed: net:[::1]:backend:...
            name = rest.partition("]:")[2] if rest.startswith("[") else rest.partition(":")[2]
        return name.split(":", 1)[0]


# Weights: a USB id names one product; a model string nearly so; vendor and backend are broad.
_WEIGHT_BACKEND, _WEIGHT_VENDOR, _WEIGHT_MODEL, _WEIGHT_USB = 1, 2, 4, 8


def _score(profile: ScannerProfile, device: SaneDeviceInfo) -> int | None:
    """Match strength, or None when any given criterion fails. 0: no criteria at all."""
    m = profile.match
    score = 0
    if m.backend is not None:
        if m.backend != device.backend:
            return None
        score += _WEIGHT_BACKEND
    if m.vendor is not None:
        if not re.search(m.vendor, device.vendor, re.IGNORECASE):
            return None
        score += _WEIGHT_VENDOR
    if m.model is not None:
        if not re.search(m.model, device.model, re.IGNORECASE):
            return None
        score += _WEIGHT_MODEL
    if m.usb_ids:
        usb = (device.usb_id or "").lower()
        if usb in m.usb_ids:
            score += _WEIGHT_USB
        elif m.model is None and m.vendor is None:
            return None  # the USB id was the only product criterion and it failed
    return score


def match_scanner(device: SaneDeviceInfo, profiles: Sequence[ScannerProfile]) -> ScannerProfile:
    """The most specific profile whose criteria all hold; `generic` when none does.

    Ties are broken by profile id so the choice never depends on file order.
    """
    best: tuple[int, str] | None = None
    chosen: ScannerProfile | None = None
    generic: ScannerProfile | None = None
    for profile in profiles:
        if profile.id == "generic":
            generic = profile
            continue
        score = _score(profile, device)
        if score is None or score == 0:
            continue
        key = (score, profile.id)
        if best is None or key[0] > best[0] or (key[0] == best[0] and key[1] < best[1]):
            best, chosen = key, profile
    if chosen is not None:
        return chosen
    if generic is None:
        raise ProfileError("profile.no_generic", "no 'generic' scanner profile loaded")
    return generic
