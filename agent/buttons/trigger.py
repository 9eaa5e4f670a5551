"""The trigger policy: from presses to at most one running scan.

This module owns `Trigger` (one scan at a time; a press during a scan is dropped and
reported, never queued) and `choose_profile` (button 1 short → primary; long press or
button 2 → alternate). It must not read a device or run the scan itself (it calls
`on_press`, which the daemon gives it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from agent.buttons.events import ButtonEvent, ButtonSource, ScanChoice

log = logging.getLogger(__name__)


def choose_profile(event: ButtonEvent) -> ScanChoice:
    """Button 1 short → the primary profile; a long press or button 2 → the alternate one."""
    return "alternate" if event.button == 2 or event.kind == "long" else "primary"


class Trigger:
    """Consumes a ButtonSource and starts at most one scan at a time.

    `on_press(event, choice)` runs in its own thread so that the source keeps being read during
    the scan: a press that arrives while a scan runs is then seen, logged as "scan already
    running" and dropped (passed to `on_busy`, e.g. to beep), instead of waiting in a buffer
    and starting a second scan the moment the first one ends. `scan_lock` may be shared with
    other ways to start a scan (CLI, web page) so that none of them overlap.
    """

    def __init__(
        self,
        source: ButtonSource,
        on_press: Callable[[ButtonEvent, ScanChoice], None],
        *,
        on_busy: Callable[[ButtonEvent], None] | None = None,
        scan_lock: threading.Lock | None = None,
    ) -> None:
        self.source = source
        self._on_press = on_press
        self._on_busy = on_busy
        self.scan_lock = scan_lock or threading.Lock()
        self._worker: threading.Thread | None = None

    def run(self, stop: threading.Event) -> None:
        """Handle presses until `stop` is set or the source ends."""
        for event in self.source.events(stop):
            self.handle(event)

    def handle(self, event: ButtonEvent) -> bool:
        """Start a scan for `event`; False (and logged) if one is already running."""
        choice = choose_profile(event)
        if not self.scan_lock.acquire(blocking=False):
            log.info(
                "scan already running: press ignored button=%d kind=%s", event.button, event.kind
            )
            if self._on_busy is not None:
                try:
                    self._on_busy(event)
                except Exception:
                    log.exception("busy feedback failed")
            return False
        log.info(
            "button press: starting scan button=%d kind=%s profile=%s",
            event.button,
            event.kind,
            choice,
        )
        try:
            self._worker = threading.Thread(
                target=self._scan, args=(event, choice), name="scan", daemon=False
            )
            self._worker.start()
        except BaseException:
            self.scan_lock.release()
            raise
        return True

    def _scan(self, event: ButtonEvent, choice: ScanChoice) -> None:
        try:
            self._on_press(event, choice)
        except Exception:
            log.exception("scan failed button=%d profile=%s", event.button, choice)
        finally:
            self.scan_lock.release()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait for the running scan to end; True if none is running."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
            return not worker.is_alive()
        return True
