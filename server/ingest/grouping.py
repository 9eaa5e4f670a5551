"""Message grouping: the state of one group of device messages while ingest handles it as a
unit (one write transaction, one flush round, one COMMIT; see :mod:`server.ingest`).

Owns: what a group collected — replies per message, alerts, the parts receiving bytes, the
batches changed, the parts read ahead — and the refusal of one message of it. Must not:
touch the database or the store (the stages in ``manifests`` and ``parts`` do).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.messages import ChunkHeader, Envelope, PartState, Query
from server.ingest.replies import Outgoing, reject
from server.store.db import Row
from server.store.files import Pending

log = logging.getLogger(__name__)


@dataclass
class Handled:
    """What :meth:`Ingest.handle_many` did with one message: the replies to publish, or the
    unexpected error that kept it from being handled (nothing of it was committed)."""

    replies: list[Outgoing]
    error: Exception | None = None


class Rejected(Exception):
    """A message refused with a reason the device logs; ``alert`` also raises it to staff."""

    def __init__(
        self, reason: str, detail: str, batch_id: str | None = None, alert: bool = False
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.batch_id = batch_id
        self.alert = alert


def conflict(batch_id: str, detail: str) -> Rejected:
    """Same key, different bytes: never overwrite an archived record. A human must look."""
    return Rejected("conflict", detail, batch_id, alert=True)


@dataclass
class GroupPart:
    """A part that receives bytes in this group."""

    pk: int
    device: str
    batch_id: str
    batch_pk: int
    page_pk: int
    page_no: int
    page_id: str
    name: str
    size: int
    sha256: str
    final: Path
    last: int  # the index of the group's last message with a chunk of it
    msg: ChunkHeader  # that message
    chunks: list[tuple[int, bytes]] = field(default_factory=list)


@dataclass
class GroupBatch:
    """A batch the group changed: its receipt goes out with its last message."""

    device: str
    batch_id: str
    pk: int
    last: int
    committed: list[PartState] = field(default_factory=list)
    complete: bool = False


class Group:
    def __init__(self, size: int, key: Ed25519PrivateKey | None = None) -> None:
        self.key = key  # signs the rejects
        self.replies: list[list[Outgoing]] = [[] for _ in range(size)]
        self.alerts: list[tuple[str, str, str]] = []  # (kind, detail, device)
        self.parts: dict[int, GroupPart] = {}
        self.batches: dict[tuple[str, str], GroupBatch] = {}
        self.queries: list[tuple[int, Query]] = []
        self.pending = Pending()
        # (device, page_id, part name) → its row, read for the whole group at once; read
        # again (once per manifest applied since) when a chunk names a part not in it
        self.known_parts: dict[tuple[str, str, str], Row] = {}
        self.wanted_pages: dict[str, set[str]] = {}
        self.manifests = 0
        self.prefetched_at: dict[str, int] = {}
        self.unenrolled: set[int] = set()  # messages of devices the registry does not admit

    def touched(
        self, device: str, batch_id: str, batch_pk: int, index: int, committed: list[PartState]
    ) -> None:
        batch = self.batches.setdefault(
            (device, batch_id), GroupBatch(device, batch_id, batch_pk, index)
        )
        batch.last = max(batch.last, index)
        batch.committed += committed

    def rejected(
        self, index: int, device: str, kind: str, msg: Envelope | None, exc: Rejected
    ) -> None:
        """Refuse message ``index``: a reject reply, and an alert (written with the group's
        transaction) when ``exc`` asks for one."""
        log.warning("device %s: rejected %s: %s", device, kind, exc)
        if exc.alert:
            self.alerts.append((exc.reason, f"batch {exc.batch_id}: {exc.detail}", device))
        refusal = reject(device, msg, exc.reason, exc.detail, exc.batch_id, self.key)
        self.replies[index].append(refusal)
