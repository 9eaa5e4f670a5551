"""The fleet in the JSON API: every station's registry entry, and revocation (admin,
audited). The staff web app's button calls the same :func:`server.fleet.revoke_station`
as ``sohoa-server device revoke``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from server.archive import audit
from server.fleet import broker as fleet
from server.fleet import registry as stations
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


class RevokeOut(StationOut):
    broker_error: str | None = Field(
        description="set when the broker could not be told (the archive refuses it anyway);"
        " revoke again once the broker is reachable"
    )


def _out(station: stations.Station) -> dict[str, Any]:
    data = station.as_dict()
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
