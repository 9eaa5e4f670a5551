"""Hồ sơ (archival file) and văn bản (document) pages: list, create, edit, add a văn bản
(``server.archive.records``, NĐ 30/2020 Phụ lục VI and TT 05/2025 fields).

Owns: the forms and their validation messages. Must not: touch the database except through
``server.archive.records`` and the catalogue."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from server.archive import access, audit, fonds, records
from server.store.db import fold
from server.web.deps import (
    DB,
    CatalogDep,
    RecordsDep,
    WebArchivist,
    WebViewer,
    client_ip,
)
from server.web.render import checked_form, lang, not_open, render

router = APIRouter(include_in_schema=False)


def _form_ctx() -> dict[str, Any]:
    return {
        "ho_so_labels": records.HO_SO_LABELS,
        "van_ban_labels": records.VAN_BAN_LABELS,
        "thoi_han": records.THOI_HAN_CHOICES,
        "che_do": records.CHE_DO_SU_DUNG,
        "ngon_ngu": records.NGON_NGU,
        "tin_cay": records.MUC_DO_TIN_CAY,
        "ten_loai": records.TEN_LOAI,
        "label": records.label,
    }


def _errors(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(x) for x in e['loc']) or '—'}: {e['msg']}" for e in exc.errors()]


def _ho_so_fields(form: dict[str, str]) -> dict[str, Any]:
    keys = set(records.HoSo.model_fields)
    data: dict[str, Any] = {k: v for k, v in form.items() if k in keys}
    for key in ("thoi_gian_bat_dau", "thoi_gian_ket_thuc", "so_luong_to"):
        if not str(data.get(key, "")).strip():
            data[key] = None
    return data


@router.get("/ho-so", response_class=HTMLResponse)
def ho_so_list(
    request: Request, session: WebViewer, records_: RecordsDep, db: DB, place: str = ""
) -> Response:
    """Every readable hồ sơ with its fonds; ``place`` keeps those whose fonds is named by it
    (the commune, district or province, old or new name, with or without diacritics)."""
    every = records_.list_ho_so()
    readable = access.readable_ho_so(db, session.principal, [h.ma_ho_so for h in every])
    items = [h for h in every if h.ma_ho_so in readable]
    places: dict[str, tuple[str, str, str]] = {}  # fonds code → name, place label, folded
    for code in sorted({h.fonds_code for h in items if h.fonds_code}):
        found = fonds.get(db, code)
        if found is not None:
            line = fonds.lineage(db, code)
            label = fonds.places_line(line, lang(request))
            places[code] = (found.name, label, fold(" ".join(fonds.search_names(db, code))))
    wanted = fold(place.strip())
    if wanted:
        items = [h for h in items if h.fonds_code in places and wanted in places[h.fonds_code][2]]
    organs = sorted({h.organ_id for h in items})
    return render(request, "ho_so_list.html", items=items, organs=organs, places=places,
                  place=place, **_form_ctx())  # fmt: skip


@router.get("/ho-so/new", response_class=HTMLResponse)
def ho_so_new_form(
    request: Request, session: WebArchivist, catalog: CatalogDep, db: DB, batch: int | None = None
) -> Response:
    found = catalog.batch(batch) if batch else None
    if found and not access.batch_access(db, session.principal, found["id"], client_ip(request)):
        return not_open(request)
    year = dt.date.fromtimestamp(found["created_at"]).year if found else dt.date.today().year
    values = {"nam": year, "thoi_han_bao_quan": "Vĩnh viễn", "muc_do_tin_cay": "02"}
    # mã hồ sơ takes its organ part from the fonds the batch was scanned for (issue 21).
    chosen = fonds.get(db, found["fonds_code"]) if found and found.get("fonds_code") else None
    if chosen is not None and chosen.organ_id:
        values["organ_id"] = chosen.organ_id
    return render(
        request, "ho_so_form.html", values=values, batch=found, errors=[], new=True, **_form_ctx()
    )


@router.post("/ho-so/new", response_class=HTMLResponse)
async def ho_so_create(
    request: Request, session: WebArchivist, records_: RecordsDep, catalog: CatalogDep, db: DB
) -> Response:
    form, refused = await checked_form(request, session)
    if refused:
        return refused
    me, ip = session.principal, client_ip(request)
    batch_pk = int(form["batch"]) if form.get("batch", "").isdigit() else None
    if batch_pk is not None and not await run_in_threadpool(
        access.batch_access, db, me, batch_pk, ip
    ):
        return not_open(request)
    if not access.may_file_as(me, form.get("che_do_su_dung", access.PUBLIC)):
        await run_in_threadpool(access.refused, db, me, "ho_so.regime", "", ip)
        return not_open(request)
    try:
        ho_so = records.HoSo.model_validate(_ho_so_fields(form))
    except ValidationError as exc:
        batch = await run_in_threadpool(catalog.batch, batch_pk) if batch_pk else None
        return render(request, "ho_so_form.html", 422, values=form, batch=batch,
                      errors=_errors(exc), new=True, **_form_ctx())  # fmt: skip
    if await run_in_threadpool(records_.ho_so, ho_so.code()) is not None:
        batch = await run_in_threadpool(catalog.batch, batch_pk) if batch_pk else None
        errors = [f"{ho_so.code()}: đã có / exists"]
        return render(request, "ho_so_form.html", 409, values=form, batch=batch,
                      errors=errors, new=True, **_form_ctx())  # fmt: skip
    saved = await run_in_threadpool(
        records_.save_ho_so, ho_so, session.principal.name, client_ip(request), batch_pk
    )
    return RedirectResponse(f"/ho-so/{saved.ma_ho_so}", status_code=303)


def _ho_so_page(
    request: Request,
    records_: records.Records,
    catalog: Any,
    ma: str,
    status: int = 200,
    errors: list[str] | None = None,
    values: dict[str, Any] | None = None,
    saved: bool = False,
) -> Response:
    found = records_.ho_so(ma)
    if found is None:
        return render(request, "message.html", 404, message_key="not_found")
    batch = catalog.batch(found.batch_pk) if found.batch_pk else None
    return render(
        request,
        "ho_so.html",
        status,
        ho_so=found,
        values=values or found.model_dump(),
        batch=batch,
        errors=errors or [],
        saved=saved,
        **_form_ctx(),
    )


@router.get("/ho-so/{ma}", response_class=HTMLResponse)
def ho_so_page(
    ma: str,
    request: Request,
    session: WebViewer,
    records_: RecordsDep,
    catalog: CatalogDep,
    db: DB,
    saved: bool = False,
) -> Response:
    allowed = access.ho_so_access(db, session.principal, ma, client_ip(request))
    if allowed is False:
        return not_open(request)
    if allowed:
        audit.record(db, session.principal.name, "ho_so.view", ma, {}, client_ip(request))
    return _ho_so_page(request, records_, catalog, ma, saved=saved)


@router.post("/ho-so/{ma}", response_class=HTMLResponse)
async def ho_so_update(
    ma: str,
    request: Request,
    session: WebArchivist,
    records_: RecordsDep,
    catalog: CatalogDep,
    db: DB,
) -> Response:
    form, refused = await checked_form(request, session)
    if refused:
        return refused
    me, ip = session.principal, client_ip(request)
    if await run_in_threadpool(access.ho_so_access, db, me, ma, ip) is False:
        return not_open(request)
    if not access.may_file_as(me, form.get("che_do_su_dung", access.PUBLIC)):
        await run_in_threadpool(access.refused, db, me, "ho_so.regime", ma, ip)
        return not_open(request)
    current = await run_in_threadpool(records_.ho_so, ma)
    if current is None:
        return render(request, "message.html", 404, message_key="not_found")
    data = _ho_so_fields(form)
    # The code's parts are the record's key: fixed once the hồ sơ exists.
    data.update(organ_id=current.organ_id, nam=current.nam, ky_hieu=current.ky_hieu)
    try:
        ho_so = records.HoSo.model_validate(data)
    except ValidationError as exc:
        return await run_in_threadpool(
            _ho_so_page, request, records_, catalog, ma, 422, _errors(exc), {**data}
        )
    await run_in_threadpool(records_.save_ho_so, ho_so, session.principal.name, client_ip(request))
    return RedirectResponse(f"/ho-so/{ma}?saved=1", status_code=303)


@router.post("/ho-so/{ma}/van-ban", response_class=HTMLResponse)
async def van_ban_create(
    ma: str,
    request: Request,
    session: WebArchivist,
    records_: RecordsDep,
    catalog: CatalogDep,
    db: DB,
) -> Response:
    form, refused = await checked_form(request, session)
    if refused:
        return refused
    me, ip = session.principal, client_ip(request)
    batch_pk = int(form["batch"]) if form.get("batch", "").isdigit() else 0
    if await run_in_threadpool(access.ho_so_access, db, me, ma, ip) is False:
        return not_open(request)
    if batch_pk and not await run_in_threadpool(access.batch_access, db, me, batch_pk, ip):
        return not_open(request)
    batch = await run_in_threadpool(catalog.batch, batch_pk)
    errors: list[str] = []
    if batch is None:
        errors.append("batch: —")
    else:
        try:
            pages = records.parse_pages(
                form.get("pages", ""), {p["page_no"]: p["id"] for p in batch["pages"]}
            )
            readable = await run_in_threadpool(access.readable_pages, db, me, pages)
            if set(pages) - readable:
                await run_in_threadpool(access.refused, db, me, "page", str(pages), ip)
                return not_open(request)
            keys = set(records.VanBanIn.model_fields) - {"pages", "stt"}
            data: dict[str, Any] = {k: v for k, v in form.items() if k in keys}
            data["ngay"] = data.get("ngay") or None
            data["stt"] = int(form["stt"]) if form.get("stt", "").strip().isdigit() else None
            doc = records.VanBanIn.model_validate({**data, "pages": pages})
            await run_in_threadpool(
                records_.add_van_ban, ma, doc, session.principal.name, client_ip(request)
            )
            return RedirectResponse(f"/ho-so/{ma}?saved=1", status_code=303)
        except ValidationError as exc:
            errors += _errors(exc)
        except (ValueError, records.NotFound, records.Conflict) as exc:
            errors.append(str(exc))
    return await run_in_threadpool(_ho_so_page, request, records_, catalog, ma, 422, errors)
