"""The fleet registry: which stations may send (table ``stations``). No MQTT here.

A station is ``pending`` (a one-time code was issued, kept as its sha256 only), ``active``
(it enrolled: its Ed25519 public key is recorded) or ``revoked``. The ingest and the USB
import ask :func:`get` / :func:`trusted_key` before accepting anything a station signed;
:mod:`server.fleet.broker` keeps the broker's identities in step with this table.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol import enrolment, signing, topics
from protocol.enrolment import EnrolRequest
from server.store.db import Connection, Database

# Called inside the registry's transaction: (con, action, target, detail). The caller binds
# it to the audit log with its actor and address (server.archive.audit.append).
AuditHook = Callable[[Connection, str, str, dict[str, Any]], None]


def _no_audit(con: Connection, action: str, target: str, detail: dict[str, Any]) -> None:
    pass


RESERVED_PREFIXES = (enrolment.ENROL_USER_PREFIX, "sohoa-")


@dataclass(frozen=True)
class Station:
    device_id: str
    commune: str
    district: str
    state: str
    public_key: str
    created_at: float
    enrolled_at: float | None
    revoked_at: float | None
    code_expires_at: float | None
    code_used_at: float | None
    # The fonds (server.archive.fonds codes) it may scan for; the first is its default.
    fonds_codes: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        return enrolment.key_fingerprint(self.public_key) if self.public_key else ""

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "fingerprint": self.fingerprint}


class FleetError(Exception):
    """A refusal with a short reason code (shown to the admin or sent to the station)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


_SELECT_STATIONS = (
    "SELECT device_id, commune, district, state, public_key, created_at, enrolled_at,"
    " revoked_at, code_expires_at, code_used_at, fonds_codes FROM stations"
)


def _codes(raw: Any) -> tuple[str, ...]:
    try:
        value = json.loads(raw or "[]")
    except ValueError:
        return ()
    return tuple(str(c) for c in value) if isinstance(value, list) else ()


def _station(row: Any) -> Station:
    return Station(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                   row[9], _codes(row[10]))  # fmt: skip


def get(db: Database, device_id: str) -> Station | None:
    sql = _SELECT_STATIONS + " WHERE device_id = ?"
    row = db.read().execute(sql, (device_id,)).fetchone()
    return None if row is None else _station(row)


def stations(db: Database) -> list[Station]:
    rows = db.read().execute(_SELECT_STATIONS + " ORDER BY device_id")
    return [_station(r) for r in rows]


def issue_code(
    db: Database, device_id: str, commune: str, district: str, hours: float, *,
    replace: bool = False, now: float | None = None, audit: AuditHook = _no_audit,
) -> str:  # fmt: skip
    """Register a station (or, with ``replace``, a replacement for one) and return a new
    one-time secret; only its sha256 is kept."""
    topics.check_device_id(device_id)
    if device_id.startswith(RESERVED_PREFIXES):
        # A station's broker identity is (re)created under its id: a station named like the
        # server's identities or another station's enrolment identity would replace them.
        raise FleetError("reserved", f"station ids may not start with {RESERVED_PREFIXES}")
    now = time.time() if now is None else now
    secret = enrolment.new_secret()
    digest = enrolment.secret_sha256(secret)
    expires = now + hours * 3600
    with db.tx() as con:
        row = con.execute("SELECT state FROM stations WHERE device_id = ?", (device_id,)).fetchone()
        if row is None:
            con.execute(
                "INSERT INTO stations (device_id, commune, district, state, created_at,"
                " code_sha256, code_expires_at) VALUES (?, ?, ?, 'pending', ?, ?, ?)",
                (device_id, commune, district, now, digest, expires),
            )
        elif row[0] == "pending" or replace:
            # A new sheet: the old code dies now. The station's current key (if any) stays
            # valid until the replacement enrols with its own.
            con.execute(
                "UPDATE stations SET commune = ?, district = ?, code_sha256 = ?,"
                " code_expires_at = ?, code_used_at = NULL, code_key = NULL"
                " WHERE device_id = ?",
                (commune, district, digest, expires, device_id),
            )
        else:
            raise FleetError(
                "exists",
                f"station {device_id} is already {row[0]}; to enrol a replacement use --replace",
            )
        detail = {"commune": commune, "replace": replace, "expires_at": expires}
        audit(con, "station.code", device_id, detail)
    return secret


def redeem(db: Database, request: EnrolRequest, now: float | None = None) -> Station:
    """Check a request against the registry and record the station's key. Idempotent for
    the key that first used the code (a station that lost the reply asks again); any other
    key, an expired or unknown code, is refused."""
    now = time.time() if now is None else now
    if not signing.verify_bytes(request.signed_bytes(), request.signature, request.public_key):
        raise FleetError("bad_signature", "the request is not signed by the key it registers")
    with db.tx() as con:
        row = con.execute(
            "SELECT code_sha256, code_expires_at, code_used_at, code_key FROM stations"
            " WHERE device_id = ?",
            (request.device_id,),
        ).fetchone()
        digest = enrolment.secret_sha256(request.secret)
        if row is None or not row[0] or not hmac.compare_digest(str(row[0]), digest):
            raise FleetError("bad_code", "this code is not (or no longer) valid for this station")
        if row[2] is not None and row[3] != request.public_key:
            raise FleetError("code_used", "this code was already used by another station")
        if row[2] is None and float(row[1]) < now:
            raise FleetError("code_expired", "this code has expired: ask for a new sheet")
        con.execute(
            "UPDATE stations SET state = 'active', public_key = ?, enrolled_at = ?,"
            " revoked_at = NULL, code_used_at = COALESCE(code_used_at, ?), code_key = ?"
            " WHERE device_id = ?",
            (request.public_key, now, now, request.public_key, request.device_id),
        )
    station = get(db, request.device_id)
    assert station is not None
    return station


def revoke(
    db: Database, device_id: str, now: float | None = None, *, audit: AuditHook = _no_audit
) -> Station:
    """Refuse the station from now on (its key, its codes); audited."""
    now = time.time() if now is None else now
    with db.tx() as con:
        cur = con.execute(
            "UPDATE stations SET state = 'revoked', revoked_at = ?, code_sha256 = NULL"
            " WHERE device_id = ?",
            (now, device_id),
        )
        if cur.rowcount != 1:
            raise FleetError("unknown", f"no station {device_id}")
        audit(con, "station.revoke", device_id, {})
    station = get(db, device_id)
    assert station is not None
    return station


def manifest_trust(con: Connection, device_id: str) -> tuple[str, str] | None:
    """(state, public key) of a station, inside the caller's transaction; None when the
    registry does not know it."""
    row = con.execute(
        "SELECT state, public_key FROM stations WHERE device_id = ?", (device_id,)
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def trusted_key(db: Database, device_id: str) -> str | None:
    """The key a station's manifests and bundles must verify against; None when the
    station is unknown, pending or revoked."""
    station = get(db, device_id)
    if station is None or station.state != "active" or not station.public_key:
        return None
    return station.public_key


def expired_enrolments(db: Database, now: float | None = None) -> list[str]:
    now = time.time() if now is None else now
    rows = db.read().execute(
        "SELECT device_id FROM stations WHERE code_sha256 IS NOT NULL AND code_expires_at < ?",
        (now,),
    )
    return [str(r[0]) for r in rows]


def assign_fonds(
    db: Database, device_id: str, codes: list[str], *, audit: AuditHook = _no_audit
) -> Station:
    """Set the fonds a station may scan for (the first is its default; an empty list: none,
    and its batches then carry no fonds). Every code must name a fonds; audited."""
    codes = list(dict.fromkeys(c.strip() for c in codes if c.strip()))
    with db.tx() as con:
        row = con.execute(
            "SELECT fonds_codes FROM stations WHERE device_id = ?", (device_id,)
        ).fetchone()
        if row is None:
            raise FleetError("unknown", f"no station {device_id}")
        for code in codes:
            if con.execute("SELECT 1 FROM fonds WHERE code = ?", (code,)).fetchone() is None:
                raise FleetError("unknown_fonds", f"no fonds {code}")
        con.execute(
            "UPDATE stations SET fonds_codes = ? WHERE device_id = ?",
            (json.dumps(codes), device_id),
        )
        audit(con, "station.fonds", device_id, {"before": list(_codes(row[0])), "after": codes})
    station = get(db, device_id)
    assert station is not None
    return station


def station_fonds(con: Connection, device_id: str) -> tuple[str, ...] | None:
    """The fonds a station may scan for, inside the caller's transaction (the ingest checks
    a manifest's fonds against it); None when the registry does not know the station."""
    row = con.execute(
        "SELECT fonds_codes FROM stations WHERE device_id = ?", (device_id,)
    ).fetchone()
    return None if row is None else _codes(row[0])
