"""What ingest sends back to a device: receipts, rejects and batch states (the answer to a
query), as :class:`Outgoing` messages. Receipts and states make a device delete pages, so
they are signed with the archive's key when one is set (protocol/signing.py), and so are
rejects (a forged one could quarantine a batch).

Owns: the wording and the signing of replies. Must not: write to the database or the store
(``batch_state`` only reads), or publish (the caller does, after the group's COMMIT).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import chunking, envelope, signing, topics
from protocol.messages import BatchState, Envelope, PartState, Query, Receipt, Reject
from server.store.db import Connection

_Signable = TypeVar("_Signable", BatchState, Receipt, Reject)


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


def signed(msg: _Signable, key: Ed25519PrivateKey | None) -> _Signable:
    """Receipts and states make devices delete pages, a reject can quarantine a batch:
    sign them (protocol/signing.py); a station ignores what its pinned key did not sign."""
    if key is None:
        return msg
    return msg.model_copy(update={"signature": signing.sign(msg, key)})


def receipt(
    device: str,
    batch_id: str,
    parts: tuple[PartState, ...],
    complete: bool,
    key: Ed25519PrivateKey | None,
) -> Outgoing:
    msg = Receipt(
        device_id=device,
        msg_id=uuid.uuid4().hex,
        sent_at=time.time(),
        batch_id=batch_id,
        committed=parts,
        complete=complete,
    )
    return Outgoing(topics.down(device, "receipt"), envelope.encode(signed(msg, key)))


def reject(
    device: str,
    msg: Envelope | None,
    reason: str,
    detail: str,
    batch_id: str | None,
    key: Ed25519PrivateKey | None = None,
) -> Outgoing:
    refusal = Reject(
        device_id=device,
        msg_id=uuid.uuid4().hex,
        sent_at=time.time(),
        ref_msg_id=msg.msg_id if msg else None,
        batch_id=batch_id,
        reason=reason,
        detail=detail[:1000],
    )
    return Outgoing(topics.down(device, "reject"), envelope.encode(signed(refusal, key)))


def answer_query(con: Connection, msg: Query, key: Ed25519PrivateKey | None) -> list[Outgoing]:
    """One signed batch state per batch the device asked about."""
    out = []
    for batch_id in msg.batch_ids:
        state = signed(batch_state(con, msg.device_id, batch_id, msg.msg_id), key)
        out.append(Outgoing(topics.down(msg.device_id, "state"), envelope.encode(state)))
    return out


def batch_state(con: Connection, device: str, batch_id: str, correlation_id: str) -> BatchState:
    """What the archive holds of a batch: every part, committed or with its missing ranges."""
    base = {
        "device_id": device,
        "msg_id": uuid.uuid4().hex,
        "sent_at": time.time(),
        "correlation_id": correlation_id,
        "batch_id": batch_id,
    }
    batch = con.execute(
        "SELECT id, page_count, complete_at FROM batches WHERE device_id = ? AND batch_id = ?",
        (device, batch_id),
    ).fetchone()
    if batch is None:
        return BatchState(known=False, **base)
    rows = con.execute(
        "SELECT pages.page_id, parts.id, parts.name, parts.sha256, parts.size, parts.state"
        " FROM pages JOIN parts ON parts.page_pk = pages.id WHERE pages.batch_pk = ?",
        (batch["id"],),
    ).fetchall()
    pages_known = con.execute(
        "SELECT COUNT(*) FROM pages WHERE batch_pk = ?", (batch["id"],)
    ).fetchone()[0]
    parts = []
    for r in rows:
        committed = r["state"] == "committed"
        gaps: tuple[tuple[int, int], ...] = ()
        if not committed:
            have = con.execute(
                'SELECT "offset", "offset" + length FROM chunks WHERE part_pk = ?', (r["id"],)
            ).fetchall()
            # Empty when all bytes are in but a worker is still verifying the part.
            gaps = chunking.missing([(h[0], h[1]) for h in have], r["size"])
        parts.append(
            PartState(
                page_id=r["page_id"],
                part=r["name"],
                sha256=r["sha256"],
                committed=committed,
                missing=gaps,
            )
        )
    return BatchState(
        known=True,
        pages_known=pages_known,
        page_count=batch["page_count"],
        parts=tuple(parts),
        complete=batch["complete_at"] is not None,
        **base,
    )
