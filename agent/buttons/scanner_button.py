"""(d) The scanner's own button, read through a SANE sensor option.

This module owns polling a level callable (from `agent.capture.sane_device.sensor_poller`) and
turning its rising edges into presses. It must not import `sane` or touch the scanner itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from agent.buttons.events import DEFAULT_LONG_S, STOP_CHECK_S, ButtonEvent, Debouncer, PressTracker

log = logging.getLogger(__name__)


class SaneSensorButton:
    """The scanner's own button, read through a SANE sensor option.

    `poll` comes from `agent.capture.sane_device`; it MUST NOT keep the device open between calls
    (holding it is what breaks other front-ends under scanbd, AirSane#54), and it may raise
    while a scan holds the device — a failed poll counts as "no change". Many backends latch
    the button until it is read, so one True sample must count as a press: `debounce_s`
    defaults to 0 and long presses are only as precise as `interval_s`.
    """

    def __init__(
        self,
        poll: Callable[[], bool],
        interval: float = 0.5,
        *,
        debounce_s: float = 0.0,
        long_s: float = DEFAULT_LONG_S,
        button: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._poll = poll
        self._interval_s = interval
        self._debouncer = Debouncer(debounce_s)
        self._tracker = PressTracker(long_s)
        self._button = button
        self._clock = clock
        self._failing = False

    def _read_level(self) -> bool:
        try:
            level = bool(self._poll())
        except Exception as exc:  # the SANE module's failure is not ours to crash on
            if not self._failing:
                log.warning("scanner button poll failed, treating as not pressed: %s", exc)
            self._failing = True
            return self._debouncer.level
        self._failing = False
        return level

    def events(self, stop: threading.Event) -> Iterator[ButtonEvent]:
        # the interval may exceed STOP_CHECK_S: wait in small steps so stop is seen in time
        last = -float("inf")
        while not stop.is_set():
            now = self._clock()
            if now - last >= self._interval_s:
                last = now
                change = self._debouncer.update(self._read_level(), now)
                if change is True:
                    self._tracker.down(self._button, now)
                elif change is False:
                    event = self._tracker.up(self._button, now)
                    if event is not None:
                        yield event
            yield from self._tracker.tick(now)
            stop.wait(min(self._interval_s, STOP_CHECK_S))

    def close(self) -> None:
        pass
