"""What every button source shares: the event, the source interface, press timing.

This module owns `ButtonEvent` (one finished press: button 1 or 2, short or long),
`ButtonSource` (the interface every input device implements), `PressTracker` (durations →
short/long, shared by all sources), `Debouncer` (for the polled ones), the reconnect backoff
of a device that may vanish, `NoButton`, and `ButtonError`. It must not open a device,
import pyserial, or start a scan.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from agent.errors import SohoaError

log = logging.getLogger(__name__)

PressKind = Literal["short", "long"]
ScanChoice = Literal["primary", "alternate"]


DEFAULT_LONG_S = 1.5
"""A press held this long is "long". 1.5 s is long enough that nobody does it by accident."""

STOP_CHECK_S = 0.1
"""Every blocking wait in this package is at most this long, so `stop` is seen within 0.2 s."""


class ButtonError(SohoaError):
    """The button device cannot be opened or used. `key` names the operator message."""


@dataclass(frozen=True)
class ButtonEvent:
    """One finished press: which button, short or long, and when (`time.monotonic()` clock)."""

    button: int
    kind: PressKind
    at: float

    def __post_init__(self) -> None:
        if self.button not in (1, 2):
            raise ValueError(f"button must be 1 or 2, not {self.button!r}")
        if self.kind not in ("short", "long"):
            raise ValueError(f"kind must be 'short' or 'long', not {self.kind!r}")


@runtime_checkable
class ButtonSource(Protocol):
    """Anything that produces presses.

    `events` is a blocking generator; it MUST return soon (≤ 0.2 s) after `stop` is set and
    MUST NOT raise on a transient device loss (it reconnects instead). `close` releases the
    device and may be called from another thread after `stop` is set.
    """

    def events(self, stop: threading.Event) -> Iterator[ButtonEvent]: ...

    def close(self) -> None: ...


class Debouncer:
    """Turns a bouncing sampled level into clean level changes.

    A new level is accepted only once it has been read unchanged for `debounce_s`; a glitch of
    a single sample is therefore never accepted, however slowly the samples come. With
    `debounce_s=0` the first differing sample is accepted (for slow, already clean sources).
    """

    def __init__(self, debounce_s: float = 0.03, initial: bool = False) -> None:
        self.debounce_s = debounce_s
        self.level = initial
        self._candidate = initial
        self._since = 0.0

    def update(self, raw: bool, now: float) -> bool | None:
        """Feed one sample; return the new stable level when it changes, else None."""
        if raw != self._candidate:
            self._candidate = raw
            self._since = now
        if self._candidate != self.level and now - self._since >= self.debounce_s:
            self.level = self._candidate
            return self.level
        return None


class PressTracker:
    """Measures presses: DOWN/UP (already debounced) → one short or one long `ButtonEvent`.

    A long press fires as soon as the hold reaches `long_s` (checked by `tick`), so the operator
    gets feedback while still holding; the release then fires nothing. A second DOWN while a
    button is held (key auto-repeat, a box repeating itself) is ignored, so one physical press
    never fires twice. `at` is always the source's monotonic clock; a source with its own
    hardware timestamps (evdev) may pass `stamp` to measure the duration with those instead.
    """

    def __init__(self, long_s: float = DEFAULT_LONG_S) -> None:
        self.long_s = long_s
        self._held: dict[int, tuple[float, float | None, bool]] = {}  # button → (at, stamp, fired)

    def down(self, button: int, at: float, stamp: float | None = None) -> None:
        if button in self._held:
            return
        self._held[button] = (at, stamp, False)

    def up(self, button: int, at: float, stamp: float | None = None) -> ButtonEvent | None:
        held = self._held.pop(button, None)
        if held is None:
            return None  # UP without DOWN: we connected mid-press, or a DOWN line was lost
        down_at, down_stamp, fired = held
        if fired:
            return None
        if stamp is not None and down_stamp is not None:
            duration = stamp - down_stamp
        else:
            duration = at - down_at
        return ButtonEvent(button, "long" if duration >= self.long_s else "short", at)

    def tick(self, now: float) -> list[ButtonEvent]:
        """Fire the long presses whose hold has just reached `long_s`."""
        fired: list[ButtonEvent] = []
        for button, (down_at, stamp, done) in self._held.items():
            if not done and now - down_at >= self.long_s:
                self._held[button] = (down_at, stamp, True)
                fired.append(ButtonEvent(button, "long", now))
        return fired

    def reset(self) -> None:
        """Forget held buttons (device lost: their UP will never come)."""
        self._held.clear()


def _backoff(first_s: float, max_s: float) -> Iterator[float]:
    delay = first_s
    while True:
        yield delay
        delay = min(delay * 2, max_s)


class _Reconnect:
    """Backoff bookkeeping for a device that may vanish (USB unplug) and come back."""

    def __init__(self, what: str, first_s: float, max_s: float, give_up_s: float | None) -> None:
        self.what = what
        self.first_s = first_s
        self.max_s = max_s
        self.give_up_s = give_up_s

    def retry(
        self, open_fn: Callable[[], Any], stop: threading.Event, clock: Callable[[], float]
    ) -> Any:
        """Call `open_fn` until it succeeds; None if `stop` was set.

        Raises the last ButtonError once `give_up_s` has passed (None: keep trying forever —
        a box can be plugged back in hours later and the agent must pick it up).
        """
        started = clock()
        delays = _backoff(self.first_s, self.max_s)
        attempt = 0
        while not stop.is_set():
            attempt += 1
            try:
                device = open_fn()
            except ButtonError as exc:
                waited = clock() - started
                if self.give_up_s is not None and waited >= self.give_up_s:
                    log.error("button gone for good device=%s waited_s=%.1f", self.what, waited)
                    raise
                level = logging.WARNING if attempt in (1, 10, 100) else logging.DEBUG
                log.log(
                    level,
                    "button reconnect failed device=%s attempt=%d: %s",
                    self.what,
                    attempt,
                    exc.detail,
                )
                stop.wait(next(delays))
                continue
            log.info("button reconnected device=%s attempt=%d", self.what, attempt)
            return device
        return None


class NoButton:
    """A source that never fires. `events` just waits for `stop`."""

    def events(self, stop: threading.Event) -> Iterator[ButtonEvent]:
        while not stop.wait(STOP_CHECK_S):
            pass
        yield from ()

    def close(self) -> None:
        pass
