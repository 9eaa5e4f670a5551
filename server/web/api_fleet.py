"""The fleet in the JSON API: every station's registry entry, and revocation (admin,
audited). The staff web app's button calls the same :func:`server.fleet.revoke_station`
as ``sohoa-server device revoke``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from server.archive import audit
from server.fleet import assignment
from server.fleet import broker as fleet
from server.fleet import registry as stations
from server.store import keys
from server.web.deps import DB, Admin, User, client_ip

router = APIRouter(prefix="/api/v1", tags=["fleet"])


class StationOut(BaseModel):
    device_id: str
    commune: str
    district: str
    state: str = Field(description="pending (code issued), active (enrolled) or revoked")
    fingerprint: str = Field(description="of the station's Ed25519 key ('' before enrolment)")
    created_at: float
    enrolled_at: float | None
    revoked_at: float | None
    code_expires_at: float | None
    fonds_codes: list[str] = Field(
        default_factory=list, description="the fonds it scans for; the first is its default"
    )


class FondsAssign(BaseModel):
    fonds_codes: list[str] = Field(max_length=50, description="fonds codes, default first")


class RevokeOut(StationOut):
    broker_error: str | None = Field(
        description="set when the broker could not be told (the archive refuses it anyway);"
        " revoke again once the broker is reachable"
    )


def _out(station: stations.Station) -> dict[str, Any]:
    data = station.as_dict()
    data["fonds_codes"] = list(station.fonds_codes)
    data.pop("public_key", None)
    data.pop("code_used_at", None)
    return data


@router.get("/stations", response_model=list[StationOut])
def list_stations(db: DB, user: User) -> list[dict[str, Any]]:
    return [_out(s) for s in stations.stations(db)]


@router.post("/stations/{device_id}/revoke", response_model=RevokeOut)
def revoke_station(device_id: str, db: DB, user: Admin, request: Request) -> dict[str, Any]:
    """Cut a station off now: the broker disconnects it, its key is refused (audited)."""
    worker = getattr(request.app.state, "fleet", None)
    try:
        error = fleet.revoke_station(
            request.app.state.settings, db, device_id,
            audit=lambda con, action, target, detail: audit.append(
                con, user.name, action, target, detail, client_ip(request)
            ),
            admin=worker.admin if worker is not None else None,
        )  # fmt: skip
    except stations.FleetError as exc:
        raise HTTPException(404, exc.detail) from exc
    station = stations.get(db, device_id)
    assert station is not None
    return {**_out(station), "broker_error": error}


@router.put("/stations/{device_id}/fonds", response_model=StationOut)
def assign_fonds(
    device_id: str, body: FondsAssign, db: DB, user: Admin, request: Request
) -> dict[str, Any]:
    """Set the fonds a station scans for (issue 21); audited. 404: no such station; 422: a
    code names no fonds."""
    try:
        station = stations.assign_fonds(
            db, device_id, body.fonds_codes,
            audit=lambda con, action, target, detail: audit.append(
                con, user.name, action, target, detail, client_ip(request)
            ),
        )  # fmt: skip
    except stations.FleetError as exc:
        raise HTTPException(404 if exc.reason == "unknown" else 422, exc.detail) from exc
    # To the station now, signed and retained (it hears it later if offline).
    worker = getattr(request.app.state, "worker", None)
    if worker is not None:
        key = keys.current(request.app.state.settings.data_dir)
        assignment.send(db, worker, key, device_id)
    return _out(station)


@router.get("/fonds")
def list_fonds(db: DB, user: User) -> list[dict[str, Any]]:
    """Every fonds with its commune, district and province named before and after the 2025
    reorganisation, and its last handover."""
    from server.web.fonds import rows

    return rows(db)
