"""The enrolment sheet recognised on an ordinary scan (issue #14).

The technician puts the enrolment sheet on the scanner and presses the button, as for any
page: the first sheet of every scan is looked at before it is stored (:func:`code_on`,
handed to ``capture.scan_batch``); an enrolment sheet is not stored as a page, its code
enrols — or re-enrols — the station (:func:`enrol_from_sheet`), and the station says so on
its screen and with the "done" beeps (or shows the error). Lives outside the rooms: it
reads a page (pipeline's QR reader) for the capture and enrols (uplink).
"""

from __future__ import annotations

import logging

import numpy as np

from agent import __version__
from agent.capture.sane_device import ScannedPage
from agent.config import AgentSettings
from agent.pipeline import coversheet
from agent.uplink import enrol
from protocol import enrolment

log = logging.getLogger(__name__)

# The enrolment code is a dense QR code: read on a 1600-px copy (a cover sheet's at 1000).
QR_WIDTH = 1600


def code_on(sheet: ScannedPage) -> str | None:
    """The enrolment code printed on ``sheet``, or None (any other page, a cover sheet).

    Runs in the agent's own process, which later forks the pipeline's workers: OpenCV is
    told to run without its thread pool here first. A pool made in the parent is inherited
    by the forked workers without its threads, and their first OpenCV call waits for ever
    (tests/test_daemon.py::test_button_press_to_archive stalled with no page processed)."""
    import cv2

    cv2.setNumThreads(0)
    text = coversheet.qr_text(np.asarray(sheet.image.convert("L")), QR_WIDTH)
    if not text or not text.startswith(("mqtt://", "mqtts://")):
        return None
    try:
        return enrolment.EnrolCode.parse(text).text()
    except enrolment.EnrolmentError:
        return None


def enrol_from_sheet(settings: AgentSettings, code: str) -> enrol.Enrolment:
    """Enrol with the scanned code, over the link; a station already enrolled enrols again
    (a new sheet is what an admin gives for a replacement or a new broker identity)."""
    done = enrol.enrol(
        code,
        settings.data_dir,
        ca_file=settings.mqtt_ca_file,
        allow_plain=settings.allow_plain_mqtt,
        force=True,
        agent_version=__version__,
    )
    log.warning("enrolled from the scanned enrolment sheet as %s", done.device_id)
    return done


def fingerprint(done: enrol.Enrolment) -> str:
    return " ".join(done.fingerprint[i : i + 4] for i in range(0, len(done.fingerprint), 4))
