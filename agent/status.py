"""What the agent holds and how it is doing — for ``status``, telemetry and the fleet view."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.outbox import outbox as ob
from agent.outbox import rescan, storage

log = logging.getLogger(__name__)


@dataclass
class BatchSummary:
    batch_id: str
    state: str
    source: str
    pages: int
    pages_processed: int
    parts_acked: int
    parts_total: int
    created_at: float
    last_error: str | None


@dataclass
class AgentStatus:
    device_id: str
    data_dir: str
    disk_free_bytes: int
    batches: dict[str, int] = field(default_factory=dict)
    pages_waiting_processing: int = 0
    pages_waiting_sync: int = 0
    bytes_waiting_sync: int = 0
    captures_kept: int = 0
    quarantined: list[BatchSummary] = field(default_factory=list)
    pending: list[BatchSummary] = field(default_factory=list)
    # Pages the archive asked this station to scan again (agent.outbox.rescan), oldest first.
    rescan_requests: list[rescan.RescanRequest] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def collect(outbox: ob.Outbox, device_id: str, data_dir: Path) -> AgentStatus:
    """O(batches): each batch's counters come from its index row (agent/outbox.py), not
    from its pages. ``captures_kept`` counts captures not receipted in done batches (their
    files stay on the device: release_acked_files deletes a capture only once receipted)."""
    status = AgentStatus(device_id, str(data_dir), storage.disk_free(data_dir))
    try:
        status.rescan_requests = rescan.load(data_dir)
    except (OSError, ValueError) as exc:  # shown, never fatal for the rest of the status
        log.error("cannot read the re-scan requests: %s", exc)
    for batch, counts in outbox.batches_with_counts():
        status.batches[batch.state] = status.batches.get(batch.state, 0) + 1
        summary = BatchSummary(
            batch_id=batch.batch_id,
            state=batch.state,
            source=batch.source,
            pages=counts.pages,
            pages_processed=counts.pages - counts.pages_captured,
            parts_acked=counts.parts_acked,
            parts_total=counts.parts_total,
            created_at=batch.created_at,
            last_error=batch.last_error,
        )
        if batch.state == ob.DONE:
            status.captures_kept += counts.captures_kept
            continue
        if batch.state == ob.QUARANTINED:
            status.quarantined.append(summary)
            continue
        status.pending.append(summary)
        status.pages_waiting_processing += counts.pages_captured
        status.pages_waiting_sync += counts.pages_unsent
        status.bytes_waiting_sync += counts.bytes_unsent
    return status


@dataclass(frozen=True)
class PageReview:
    """A page whose OCR text is likely wrong (flag `review`, agent.pipeline.quality)."""

    batch_id: str
    page_no: int
    page_id: str
    score: float | None  # 0–100, decisions["quality"]["score"]
    reasons: tuple[str, ...]  # no_text, implausible_text, low_confidence, unsure_words, low_score,
    # junk_line, unread_text, dot_matrix


REVIEW_BATCHES = 3  # the operator looks at what was just scanned, not the whole backlog


def pages_to_review(outbox: ob.Outbox, batches: int = REVIEW_BATCHES) -> list[PageReview]:
    """Pages flagged `review`, or whose processing failed (kept, travelling as captured), in
    the newest `batches` batches not yet done (oldest first).

    Not part of `collect`, which stays O(batches) for telemetry: this reads those batches'
    pages, and only `sohoa-agent status` asks for it.
    """
    recent = [
        b for b, _ in outbox.batches_with_counts() if b.state not in (ob.DONE, ob.QUARANTINED)
    ]
    recent.sort(key=lambda b: b.created_at)
    out: list[PageReview] = []
    for batch in recent[-batches:]:
        for page in outbox.pages(batch.batch_id):
            if page.state == ob.FAILED:
                out.append(
                    PageReview(batch.batch_id, page.page_no, page.page_id, None, ("failed",))
                )
                continue
            if "review" not in page.flags:
                continue
            judged = page.decisions.get("quality", {})
            score = judged.get("score") if isinstance(judged, dict) else None
            reasons = judged.get("reasons", []) if isinstance(judged, dict) else []
            out.append(
                PageReview(
                    batch.batch_id,
                    page.page_no,
                    page.page_id,
                    float(score) if isinstance(score, int | float) else None,
                    tuple(str(r) for r in reasons),
                )
            )
    return out
