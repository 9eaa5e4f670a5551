"""How long the data disk lasts at the station's own scan rate: the warning days ahead.

This module owns the forecast the technician sees (status, the box's `disk_low` signal, the
screen): the bytes of captures the station stored per day over the last `WINDOW_DAYS`, and the
days of scanning left before new scans are refused (free space above what the capture check
keeps: `min_free_mb` and a full feeder at the measured page size). The rate counts what comes
in, not what sync or an export frees: the forecast answers "if nothing leaves from now on, when
must someone act?", so a warning always comes before the disk is full, whatever the link does.

It must not delete anything or refuse a scan (capture.scan.check_disk refuses; the outbox
deletes only on a verified receipt).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from agent.capture import scan
from agent.config import AgentSettings
from agent.outbox import storage
from agent.outbox.outbox import Outbox

DAY_S = 86_400.0
WINDOW_DAYS = 14  # long enough to hold a week's rhythm, short enough to follow a new campaign
# A station younger than this is judged as if it had scanned for this long: one busy first
# morning must not read as "full in 2 days".
MIN_HISTORY_DAYS = 1.0


@dataclass(frozen=True)
class DiskForecast:
    free_bytes: int
    reserve_bytes: int  # below this much free, scans are refused (min_free_mb + a feeder load)
    bytes_per_day: float  # captures stored per day over the window
    days_left: float | None  # None: nothing scanned in the window, no forecast
    warn: bool  # days_left at or below the setting disk_warn_days

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def scan_rate(outbox: Outbox, now: float, window_days: float = WINDOW_DAYS) -> float:
    """Bytes of captures stored per day over the last `window_days` (scanned and imported)."""
    since = now - window_days * DAY_S
    first: float | None = None
    total = 0
    for batch in outbox.batches():
        if batch.created_at < since:
            continue
        first = batch.created_at if first is None else min(first, batch.created_at)
        total += sum(page.capture_size for page in outbox.pages(batch.batch_id))
    if first is None:
        return 0.0
    days = max(MIN_HISTORY_DAYS, (now - first) / DAY_S)
    return total / days


def forecast(
    settings: AgentSettings,
    outbox: Outbox,
    *,
    now: float | None = None,
    free_bytes: int | None = None,
) -> DiskForecast:
    """Days of scanning left on the data disk at the measured rate, and whether to warn."""
    now = time.time() if now is None else now
    free = storage.disk_free(settings.data_dir) if free_bytes is None else free_bytes
    # Scans stop when the disk cannot hold a full feeder above min_free_mb (check_disk), so
    # that is the line the days are counted to.
    budget = scan.page_budget(settings, outbox) or settings.page_budget_mb * 1024 * 1024
    reserve = settings.min_free_mb * 1024 * 1024 + scan.EXPECTED_SHEETS * budget
    rate = scan_rate(outbox, now)
    days = max(0.0, (free - reserve) / rate) if rate > 0 else None
    warn = days is not None and days <= settings.disk_warn_days
    return DiskForecast(free, reserve, rate, days, warn)
