"""``sohoa-agent run``: the service a scan station runs all day.

Three loops in one process, so that only it writes the outbox (TinyDB allows one writer):

* **capture** — the button (or ``scan`` requests) starts a batch; never waits on anything
  below; one scan at a time.
* **pipeline** — processes captured pages in worker processes at a lower priority.
* **sync** — keeps a broker connection and pushes ready batches whenever the link is up;
  publishes telemetry for the fleet view.

systemd gets ``READY=1`` once the outbox is open and ``WATCHDOG=1`` only while all three
threads are alive and no scan has stalled mid-page for ``scan_stall_s`` (a driver stuck in
a C call blocks the capture thread where nothing else would notice); SIGTERM stops after the
page being written is on disk.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any

import sdnotify

from agent import __version__, enrolsheet, hardware, messages, profiles, retention, worker
from agent import status as agent_status
from agent.buttons import ButtonEvent, ScanChoice, Trigger, open_button
from agent.buttons.feedback import (
    AgentState,
    Feedback,
    LogFeedback,
    MultiFeedback,
    SerialBoxFeedback,
)
from agent.capture import sane_device
from agent.capture import scan as capture
from agent.config import AgentSettings
from agent.errors import ConfigError, DiskFullError, ScannerError, SohoaError, SyncError
from agent.outbox import outbox as ob
from agent.screen.web import Screen
from agent.uplink import assignment, enrol, transfer
from agent.uplink.mqtt_link import MqttLink
from agent.uplink.sync import Syncer, describe
from protocol import envelope, topics
from protocol.messages import Telemetry

log = logging.getLogger(__name__)

TELEMETRY_EVERY = 60.0
IDLE_POLL = 2.0
DISK_FULL_RETRY = 60.0  # seconds between attempts to process while the disk is full
# One Syncer.run lasts at most this long; the next one starts with a query (a round trip with
# an empty window). Telemetry has its own thread, so runs need not end to let it out.
SYNC_RUN = 600.0
# Waits between attempts to reach the broker while it cannot be reached (the first connect;
# afterwards paho reconnects by itself, 0.3 s doubling to 60 s). Capped at a minute: the
# agent should not sit out minutes of a link that came back (a 2G tower returning); the
# jitter spreads a commune district reconnecting at once.
CONNECT_BACKOFF = (1.0, 60.0)


def watchdog_tick() -> float:
    """Seconds between watchdog pings: half of systemd's WatchdogSec (``WATCHDOG_USEC``),
    at most 5."""
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", "0"))
    except ValueError:
        usec = 0
    return min(5.0, usec / 2e6) if usec > 0 else 5.0


class Daemon:
    def __init__(self, settings: AgentSettings, boot_id: str) -> None:
        self.settings = settings
        self.boot_id = boot_id
        self.stop = threading.Event()
        self.scan_lock = threading.Lock()
        self.work_ready = threading.Event()
        self.last_error = ""
        self.outbox: ob.Outbox | None = None
        self.feedback: Feedback = LogFeedback(lang="en")
        self.threads: list[threading.Thread] = []
        self.link: MqttLink | None = None  # set by the sync loop once connected
        self.hardware: hardware.Hardware | None = None  # resolved at start-up
        self.screen: ThreadingHTTPServer | None = None
        self.next_ho_so = ""  # typed on the screen: the mã hồ sơ of the next batch
        # The fonds the next batches are for: the admin's default until the technician
        # chooses another of the station's fonds on the screen (never guessed).
        # The choice list is what the archive's admin assigned (agent.uplink.assignment),
        # or the local `fonds` setting until the archive has told this station.
        self.fonds = ""
        self._fonds_default()
        self.restart_for_enrolment = False  # an enrolment sheet was scanned: start again

    # -- life cycle -----------------------------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop.set())
        self.outbox = ob.Outbox(self.settings.data_dir)
        source = self.button_source()
        self._spawn("pipeline", self._pipeline_loop)
        self._spawn("sync", self._sync_loop)
        self._spawn("telemetry", self._telemetry_loop)
        if source is not None:
            trigger = Trigger(
                source, self._on_press, on_busy=self._on_busy, scan_lock=self.scan_lock
            )
            self._spawn("button", lambda: trigger.run(self.stop))
        if self.settings.screen_port:
            try:
                screen = Screen(self, self.settings.screen_host, self.settings.screen_port)
                self.screen = screen.start()
            except OSError as exc:  # port taken: the station scans on without its screen
                log.error("technician's screen not started on port %d: %s", screen.port, exc)
        if self.settings.server_public_key is None:
            log.warning(
                "no archive key is pinned (server_public_key): receipts are ignored and nothing"
                " is deleted here; enrol this station (sohoa-agent enrol CODE)"
            )
        if not self.settings.device_id:
            log.warning("device_id is not set: scanning works, nothing is sent until enrolment")
        notifier = sdnotify.SystemdNotifier()
        notifier.notify("READY=1")
        self.feedback.show(AgentState.READY)
        log.info(
            "agent %s running as %s, data in %s",
            __version__,
            self.settings.device_id,
            self.settings.data_dir,
        )
        stalled = False
        while not self.stop.wait(watchdog_tick()):
            dead = [t.name for t in self.threads if not t.is_alive()]
            silent = sane_device.stalled_for()
            if dead:
                log.error("worker thread(s) died: %s; not pinging the watchdog", dead)
            elif silent > self.settings.scan_stall_s:
                if not stalled:  # once per stall: the box and the log say it, then wait
                    stalled = True
                    self._error(
                        ScannerError(
                            "scanner_stalled",
                            f"{self.settings.scanner} has sent nothing for {silent:.1f} s "
                            "mid-page; not pinging the watchdog (systemd restarts the agent)",
                        )
                    )
            else:
                if stalled:
                    stalled = False
                    log.warning("the scanner is sending again; pinging the watchdog again")
                notifier.notify("WATCHDOG=1")
        notifier.notify("STOPPING=1")
        if self.screen is not None:
            self.screen.shutdown()
        with self.scan_lock:  # let a running scan store its current page
            pass
        for t in self.threads:
            t.join(timeout=30)
        self.outbox.close()
        if self.restart_for_enrolment:
            log.warning("enrolled from a scanned sheet: exiting so that the agent starts again")
        return 0

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                target()
            except Exception:
                log.exception("%s loop crashed", name)
                raise

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def button_source(self) -> Any:
        """The button the settings and its profile describe (None: no button); sets the
        feedback devices and `self.hardware`."""
        kind = self.settings.button
        # What the board and button profiles state, with the settings that override them
        # (agent/hardware.py): key codes, long-press and debounce times, LED/beep patterns.
        hw = hardware.resolve(self.settings)
        self.hardware = hw
        log.info("hardware %s", hw.describe())
        if kind == "none":
            return None
        settings: dict[str, Any] = dict(hw.button_settings)
        if kind in ("serial-box", "modem-line"):
            settings["port"] = self.settings.button_port
        elif kind == "usb-key":
            settings["device_path"] = self.settings.button_port
            settings.setdefault("key_code", 28)  # KEY_ENTER, for a site without the profile
        elif kind == "scanner-button":
            known = profiles.load_scanner_profiles(self.settings.hw_profiles_dir)
            try:
                info = sane_device.choose_device(self.settings.scanner)
            except ScannerError as exc:
                log.error("scanner button: %s", exc.detail)
                return None
            option = self.settings.button_port or profiles.match_scanner(info, known).sensors.scan
            if not option:
                log.error("scanner %s has no known scan-button option; set button_port", info.name)
                return None
            settings["poll"] = sane_device.sensor_poller(info.name, option)
        source = open_button(kind, **settings)
        if kind == "serial-box":
            box = SerialBoxFeedback(source, signals=hw.signals)  # type: ignore[arg-type]
            self.feedback = MultiFeedback(LogFeedback(lang="en"), box)
        return source

    # -- capture ----------------------------------------------------------------------------

    def _on_busy(self, event: ButtonEvent) -> None:
        self.feedback.show(AgentState.BUSY)

    def _on_press(self, event: ButtonEvent, choice: ScanChoice) -> None:
        assert self.outbox is not None
        s = self.settings
        if event.button == 1 and event.kind == "long" and s.long_press == "next_fonds":
            self._next_fonds()  # a choice, not a scan
            return
        try:
            ho_so, self.next_ho_so = self.next_ho_so, ""
            outcome = capture.scan_now(
                s,
                self.outbox,
                source=s.source if choice == "primary" else s.alternate_source,
                on_heard=lambda: self.feedback.show(AgentState.SCANNING),
                metadata=self._batch_metadata(ho_so),
                first_sheet=enrolsheet.code_on,
            )
            if outcome.enrolment_code is not None:
                self._enrol_from_sheet(outcome.enrolment_code)
                return
            self.work_ready.set()
            if outcome.error is not None:
                self._error(outcome.error)
            else:
                self.feedback.show(
                    AgentState.DONE,
                    messages.t(
                        "scan_done",
                        s.language,
                        pages=outcome.pages,
                        batch=outcome.batch.batch_id[:8],
                    ),
                )
                self._warn_if_disk_low()
        except DiskFullError as exc:
            self.last_error = exc.key
            self.feedback.show(AgentState.DISK_FULL, messages.t("disk_full", s.language))
        except (ScannerError, SohoaError) as exc:
            self._error(exc)

    def _enrol_from_sheet(self, code: str) -> None:
        """The enrolment sheet went through the scanner: enrol with it, say so (screen,
        "done" beeps), then stop so that the service manager starts the agent again under
        its new identity (Restart=always in systemd/sohoa-agent.service)."""
        s = self.settings
        try:
            done = enrolsheet.enrol_from_sheet(s, code)
        except SohoaError as exc:
            self._error(exc)
            return
        text = messages.t(
            "enrol_done",
            s.language,
            device=done.device_id,
            fingerprint=enrolsheet.fingerprint(done),
        )
        self.feedback.show(AgentState.DONE, text)
        self.restart_for_enrolment = True
        self.stop.set()

    # -- the technician's screen (agent/screen) ------------------------------------------------

    def start_scan(self) -> bool:
        """The screen's "Quét": the same flow as a short press of button 1."""
        if not self.scan_lock.acquire(blocking=False):
            return False

        def run() -> None:
            try:
                self._on_press(ButtonEvent(1, "short", time.monotonic()), "primary")
            except Exception:
                log.exception("scan from the screen failed")
            finally:
                self.scan_lock.release()

        threading.Thread(target=run, name="scan", daemon=False).start()
        return True

    def rescan_page(self, batch_id: str, page_no: int) -> bool:
        """The screen's "quét lại trang này": one sheet from the glass, as a batch that names
        the page it replaces (the archive links it; the screen shows it in that page's place)."""
        assert self.outbox is not None
        if not any(p.page_no == page_no for p in self.outbox.pages(batch_id)):
            return False
        if not self.scan_lock.acquire(blocking=False):
            return False
        s = self.settings
        replaces = {"replaces_batch": batch_id, "replaces_page_no": str(page_no)}
        replaced = self.outbox.batch(batch_id).metadata
        for key in ("ma_ho_so", ob.FONDS_KEY):  # the replacement is filed where the page was
            if replaced.get(key):
                replaces[key] = replaced[key]

        def run() -> None:
            try:
                outcome = capture.scan_now(
                    s,
                    self.outbox,  # type: ignore[arg-type]
                    source="flatbed",
                    resume=False,
                    on_heard=lambda: self.feedback.show(AgentState.SCANNING),
                    metadata=replaces,
                )
                self.work_ready.set()
                if outcome.error is not None:
                    self._error(outcome.error)
                else:
                    self.feedback.show(AgentState.DONE)
            except (ScannerError, SohoaError) as exc:
                self._error(exc)
            except Exception:
                log.exception("re-scan from the screen failed")
            finally:
                self.scan_lock.release()

        threading.Thread(target=run, name="scan", daemon=False).start()
        return True

    def set_next_ho_so(self, code: str) -> None:
        self.next_ho_so = code

    def fonds_choices(self) -> tuple[list[str], dict[str, str]]:
        """The station's fonds (default first) and their names: the archive's assignment
        once it told this station (verified again), else the local ``fonds`` setting."""
        s = self.settings
        return assignment.choices(s.data_dir, s.device_id, transfer.archive_keys(s), list(s.fonds))

    def _fonds_default(self) -> list[str]:
        """The choice list now; the fonds of the next batches stays the technician's choice
        while it is still one of them, else becomes the (new) default."""
        return self._refresh_fonds()[0]

    def _refresh_fonds(self) -> tuple[list[str], dict[str, str]]:
        choices, names = self.fonds_choices()
        if self.fonds not in choices:
            self.fonds = choices[0] if choices else ""
        return choices, names

    def set_fonds(self, code: str) -> bool:
        """The screen's choice of fonds for the next batches: one of the station's, else
        refused (False)."""
        if code not in self._fonds_default():
            return False
        self.fonds = code
        log.info("fonds for the next batches: %s", code)
        return True

    def _next_fonds(self) -> None:
        """The long press's choice (setting long_press = next_fonds): the next of the
        station's fonds, round; announced on the feedback and in the log."""
        choices = self._fonds_default()
        if choices:
            at = choices.index(self.fonds) if self.fonds in choices else -1
            self.set_fonds(choices[(at + 1) % len(choices)])
        line = messages.t("fonds_chosen", self.settings.language, fonds=self.fonds or "—")
        self.feedback.show(AgentState.DONE, line)

    def _batch_metadata(self, ho_so: str) -> dict[str, str] | None:
        metadata = {"ma_ho_so": ho_so} if ho_so else {}
        self._fonds_default()
        if self.fonds:
            metadata[ob.FONDS_KEY] = self.fonds
        return metadata or None

    def screen_state(self) -> dict[str, Any]:
        assert self.outbox is not None
        st = agent_status.collect(self.outbox, self.settings.device_id, self.settings.data_dir)
        disk = retention.forecast(self.settings, self.outbox)
        link = self.link
        lang = self.settings.language
        choices, names = self._refresh_fonds()
        return {
            "scanner": self.settings.scanner,
            "scanning": self.scan_lock.locked(),
            "last_error": self.last_error,
            "link": bool(link is not None and link.connected.is_set()),
            "pending_pages": st.pages_waiting_sync + st.pages_waiting_processing,
            "disk_days_left": disk.days_left,
            "disk_warn": disk.warn,
            "rescans": [
                {"where": f"lô {r.batch_id[:8]} trang {r.page_no or '?'}", "note": r.note}
                for r in st.rescan_requests
            ],
            "next_ho_so": self.next_ho_so,
            "fonds": self.fonds,
            "fonds_choices": choices,
            "fonds_names": names,
            "language": lang,
        }

    def _warn_if_disk_low(self) -> None:
        """After each batch: days ahead of a full disk, say so (box, log; the batch is safe)."""
        assert self.outbox is not None
        disk = retention.forecast(self.settings, self.outbox)
        if disk.warn and disk.days_left is not None:
            days = f"{disk.days_left:.0f}"
            self.feedback.show(
                AgentState.DISK_LOW, messages.t("disk_low", self.settings.language, days=days)
            )

    def _error(self, exc: SohoaError) -> None:
        params = {"pages": 0, "scanner": self.settings.scanner, **exc.params}
        text = messages.t(exc.key, self.settings.language, **params)
        self.last_error = f"{exc.key}: {exc.detail}"
        log.error("%s: %s", exc.key, exc.detail)
        self.feedback.show(AgentState.ERROR, text)

    # -- pipeline -----------------------------------------------------------------------------

    def _pipeline_loop(self) -> None:
        assert self.outbox is not None
        while not self.stop.is_set():
            self.work_ready.wait(IDLE_POLL)
            self.work_ready.clear()
            if next(self.outbox.iter_pending_pages(), None) is None:
                worker.promote_ready(self.settings, self.outbox)
                continue
            try:
                worker.process_pending(self.settings, self.outbox, stop=self.stop)
            except DiskFullError as exc:  # the pages wait, captured, for room
                self.last_error = exc.key
                s = self.settings
                self.feedback.show(AgentState.DISK_FULL, messages.t("disk_full", s.language))
                self.stop.wait(DISK_FULL_RETRY)

    # -- sync -------------------------------------------------------------------------------

    def _sync_loop(self) -> None:
        """One broker connection and one Syncer for the life of the service: the Syncer
        remembers what the server said (no manifest re-announced, no file re-hashed) from
        one run to the next."""
        assert self.outbox is not None
        link: MqttLink | None = None
        syncer: Syncer | None = None
        backoff = CONNECT_BACKOFF[0]
        while not self.stop.is_set():
            if link is None or syncer is None:
                try:
                    # A USB enrolment registers the station's key at the first connection.
                    enrol.complete_pending(
                        self.settings.data_dir, allow_plain=self.settings.allow_plain_mqtt,
                        agent_version=__version__,
                    )  # fmt: skip
                    link = MqttLink(self.settings, self.boot_id, __version__)
                    link.connect()
                except (SyncError, ConfigError, enrol.EnrolError) as exc:  # not enrolled yet
                    self.last_error = f"{exc.key}: {exc.detail}"
                    log.warning("sync: %s; retrying in %.0f s", exc.detail, backoff)
                    link = None
                    self.stop.wait(backoff * random.uniform(0.5, 1.0))  # noqa: S311 - timing
                    backoff = min(backoff * 2, CONNECT_BACKOFF[1])
                    continue
                backoff = CONNECT_BACKOFF[0]
                syncer = Syncer(self.settings, self.outbox, link, __version__)
                self.link = link
            if transfer.sendable_batches(self.outbox):
                report = syncer.run(timeout=SYNC_RUN, stop=self.stop)
            else:
                report = syncer.handle_inbox()  # commands come while idle too
                self.stop.wait(IDLE_POLL)
            for request in report.rescans:
                # Not a feedback state (the station is not in error): a line in the journal
                # and in `sohoa-agent status` until the technician clears it.
                log.warning("%s", describe(request, self.settings.language))
        self.link = None
        if link is not None:
            link.close()

    def _telemetry_loop(self) -> None:
        """Telemetry every TELEMETRY_EVERY seconds while connected (QoS 0: a lost one is
        replaced by the next). Its own thread, so a sync run never has to stop for it; a
        failure is logged and the loop goes on (the watchdog must not fire for telemetry)."""
        last: float | None = None
        while not self.stop.is_set():
            link = self.link
            if link is None or not link.connected.is_set():
                self.stop.wait(IDLE_POLL)
                continue
            if last is None or time.monotonic() - last >= TELEMETRY_EVERY:
                last = time.monotonic()
                try:
                    self._telemetry(link)
                except Exception:
                    log.exception("telemetry failed")
            self.stop.wait(min(IDLE_POLL, max(0.0, last + TELEMETRY_EVERY - time.monotonic())))

    def _telemetry(self, link: MqttLink) -> None:
        assert self.outbox is not None
        st = agent_status.collect(self.outbox, self.settings.device_id, self.settings.data_dir)
        msg = Telemetry(
            device_id=self.settings.device_id,
            msg_id=uuid.uuid4().hex,
            sent_at=time.time(),
            queue_pages=st.pages_waiting_sync,
            queue_bytes=st.bytes_waiting_sync,
            batches_pending=len(st.pending),
            batches_quarantined=len(st.quarantined),
            disk_free_bytes=st.disk_free_bytes,
            last_error=self.last_error[:500],
            agent_state="scanning" if self.scan_lock.locked() else "idle",
        )
        link.publish(topics.up(self.settings.device_id, "telemetry"), envelope.encode(msg), qos=0)
