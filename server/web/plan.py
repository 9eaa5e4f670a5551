"""The plan in the staff app: progress against each fonds' inventory (per fonds, commune,
district, province; a forecast chart each), planned hồ sơ never scanned, batches matching
nothing (matched here by hand), the thống kê downloads, and the inventory import with its
preview (server.archive.inventory, .progress, .thong_ke).

The import is two posts of one form: "Xem trước" reads the file and shows what it holds,
storing nothing; "Nhập" posts the same bytes again (carried in the preview page, so the
server keeps no upload between the two) and stores them all or nothing.

Owns: the /plan pages. Must not: compute progress or parse files itself."""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from server.archive import access, fonds, inventory, progress
from server.web import i18n
from server.web.deps import DB, WebArchivist, WebViewer, client_ip
from server.web.render import csrf_refused, forecast_chart, lang, render, stage_bars

router = APIRouter(include_in_schema=False)
MAX_UPLOAD = 5 * 1024 * 1024  # an inventory of 10,000 lines is well under 2 MB
UNMATCHED_SHOWN = 200


def _charts(view: progress.PlanView, language: str) -> dict[str, Any]:
    labels = {
        "title": i18n.t("forecast_chart", language),
        "planned": i18n.t("stage_planned", language),
        "deadline": i18n.t("plan_deadline", language),
        "forecast": i18n.t("plan_forecast", language),
        "pages": i18n.t("stage_received", language),
    }
    stage_labels = {s: i18n.t(f"stage_{s}", language) for s in progress.STAGES}
    out: dict[str, Any] = {}
    for level, rows in (("fonds", view.fonds), ("commune", view.communes),
                        ("district", view.districts), ("province", view.province)):  # fmt: skip
        for p in rows:
            f = p.forecast
            assert f is not None
            out[f"{level}:{p.key}"] = {
                "forecast": forecast_chart(
                    p.pages["received"], p.per_day, p.pages["planned"], f.finish, f.deadline,
                    view.today, labels,
                ),
                "stages": stage_bars(p.pages, progress.STAGES, stage_labels),
            }  # fmt: skip
    return out


@router.get("/plan", response_class=HTMLResponse)
def plan_page(request: Request, session: WebViewer, db: DB, matched: str = "") -> Response:
    view, updating = progress.plan_for_page(db)
    readable = access.readable_batches(db, session.principal, [b["id"] for b in view.unmatched])
    unmatched = [b for b in view.unmatched if b["id"] in readable]
    # What a batch can be matched to: the planned hồ sơ nothing was scanned for yet, offered
    # once for every form (a <datalist>), not once per batch.
    candidates = [p for rows in view.unscanned.values() for p in rows]
    return render(
        request, "plan.html", view=view, charts=_charts(view, lang(request)),
        unmatched=unmatched[:UNMATCHED_SHOWN],
        more_unmatched=max(0, len(unmatched) - UNMATCHED_SHOWN), stages=progress.STAGES,
        planned_codes=candidates, matched=matched, statuses=fonds.STATUSES,
        updating=math.ceil(updating),
    )  # fmt: skip


@router.post("/plan/match")
async def match(request: Request, session: WebArchivist, db: DB) -> Response:
    form = {k: str(v) for k, v in (await request.form()).items()}
    refused = csrf_refused(request, session, form.get("csrf", ""))
    if refused:
        return refused
    fonds_code, _, code = form.get("planned", "").partition("|")
    try:
        batch = int(form.get("batch", ""))
        if not access.batch_access(db, session.principal, batch, client_ip(request)):
            return render(request, "message.html", 403, message_key="not_open")
        inventory.match_batch(db, batch, fonds_code, code, session.principal.name,
                              client_ip(request))  # fmt: skip
    except (ValueError, inventory.MatchRefused) as exc:
        return render(request, "message.html", 422, message=str(exc))
    return RedirectResponse(f"/plan?matched={batch}", status_code=303)


@router.get("/plan/import", response_class=HTMLResponse)
def import_form(request: Request, session: WebArchivist, db: DB) -> Response:
    return render(request, "plan_import.html", all_fonds=fonds.list(db), fields=inventory.LABELS,
                  preview=None, chosen="", override={}, year="")  # fmt: skip


@router.post("/plan/import", response_class=HTMLResponse)
async def import_post(request: Request, session: WebArchivist, db: DB) -> Response:
    form = await request.form(max_part_size=MAX_UPLOAD)
    refused = csrf_refused(request, session, str(form.get("csrf") or ""))
    if refused:
        return refused
    fonds_code = str(form.get("fonds") or "")
    upload = form.get("file")
    if isinstance(upload, UploadFile) and upload.filename:
        data = await upload.read(MAX_UPLOAD + 1)
        name = upload.filename
    else:
        try:
            data = base64.b64decode(str(form.get("data") or ""), validate=True)
        except (binascii.Error, ValueError):
            data = b""
        name = str(form.get("name") or "")
    override = {
        key: str(form.get(f"col_{key}") or "").strip().upper()
        for key in inventory.FIELDS
        if str(form.get(f"col_{key}") or "").strip()
    }
    ctx: dict[str, Any] = {"all_fonds": fonds.list(db), "fields": inventory.LABELS,
                           "chosen": fonds_code, "override": override, "preview": None,
                           "year": str(form.get("year") or "").strip()[:4]}  # fmt: skip
    if not data or len(data) > MAX_UPLOAD:
        return render(request, "plan_import.html", 422, error="no file, or over 5 MB", **ctx)
    year_text = ctx["year"]
    try:
        year = int(year_text) if year_text else None
        preview = inventory.read_for_fonds(db, fonds_code, data, name, override, year)
    except (inventory.InventoryError, ValueError) as exc:
        return render(request, "plan_import.html", 422, error=str(exc), **ctx)
    ctx.update(preview=preview, data=base64.b64encode(data).decode(), file_name=name)
    if form.get("action") != "import":
        return render(request, "plan_import.html", **ctx)
    try:
        done = inventory.import_plan(db, fonds_code, preview, session.principal.name, name,
                                     client_ip(request))  # fmt: skip
    except inventory.ImportRefused as exc:
        preview.problems = exc.problems
        return render(request, "plan_import.html", 422, **ctx)
    return render(request, "plan_import.html", imported=done, **ctx)
