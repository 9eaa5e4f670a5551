"""JSON API for the public lookup's staff side (issue 17): a hồ sơ's public address and its
view count, rotating the address, and the A4 label sheet with the addresses' QR codes.

Reading an address needs the viewer role and the right to read the hồ sơ; rotating it and
printing labels (which makes addresses) the archivist role. Rotations and sheets are audited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from server.archive import audit, labels, public
from server.web.api_records import readable_ho_so
from server.web.deps import DB, Archivist, Exporter, RecordsDep, Viewer, client_ip

router = APIRouter(prefix="/api/v1", tags=["public lookup"])


class PublicAddress(BaseModel):
    ma_ho_so: str
    url: str
    views: int


def _settings_base(request: Request) -> str:
    base: str = request.app.state.settings.public_base_url
    return base


@router.get("/ho-so/{ma}/public-address", response_model=PublicAddress)
def get_address(ma: str, user: Viewer, db: DB, request: Request) -> PublicAddress:
    """The address a citizen's phone opens from the hồ sơ's label (made on first ask)."""
    readable_ho_so(db, user, ma, request)
    token = public.address(db, ma, user.name)
    if token is None:
        raise HTTPException(404, "no such hồ sơ")
    return PublicAddress(
        ma_ho_so=ma, url=public.url(_settings_base(request), token), views=public.views(db, ma)
    )


@router.post("/ho-so/{ma}/public-address", response_model=PublicAddress)
def rotate_address(ma: str, user: Archivist, db: DB, request: Request) -> PublicAddress:
    """A new address; the old one (and every label printed with it) stops working at once."""
    readable_ho_so(db, user, ma, request)
    token = public.rotate(db, ma, user.name, client_ip(request))
    if token is None:
        raise HTTPException(404, "no such hồ sơ")
    return PublicAddress(
        ma_ho_so=ma, url=public.url(_settings_base(request), token), views=public.views(db, ma)
    )


@router.api_route("/labels.pdf", methods=["GET", "POST"], response_class=Response)
def label_sheet(
    records: RecordsDep,
    user: Exporter,
    db: DB,
    request: Request,
    ma: Annotated[list[str], Query(min_length=1, max_length=400, description="Mã hồ sơ")],
) -> Response:
    """A4 sheets of box and folder labels (8 a sheet): code, title and the QR code of the
    public address of each hồ sơ given, in that order."""
    for code in ma:
        readable_ho_so(db, user, code, request)
    try:
        made = labels.labels_for(db, records, ma, _settings_base(request), user.name)
    except labels.LabelError as exc:
        raise HTTPException(404, str(exc)) from exc
    audit.record(
        db, user.name, "labels.print", ",".join(ma)[:500], {"count": len(ma)}, client_ip(request)
    )
    return Response(
        labels.pdf(made),
        media_type="application/pdf",
        headers={"Content-Disposition": 'attachment; filename="nhan-ho-so.pdf"'},
    )
