"""Action pages: the preview-and-confirm dialog, a run's result, the history. Thin: parse the
form, call the service, render the dialog block (HTMX) or the whole page."""

import hmac
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, Response

from app import schemas
from app.actions import service
from app.actions.api import CatalogDep
from app.actions.executor import SIGNATURE_HEADER, sign_action_request
from app.actions.schemas import RunId
from app.auth.deps import CurrentUser
from app.db import SessionDep
from app.errors import DomainError
from app.web import render, see_other, wants_fragment

router = APIRouter(include_in_schema=False)
demo_router = APIRouter(include_in_schema=False)

RUN_PAGE = "actions/run.html"
Token = Annotated[schemas.Text, Form(max_length=200)]
# Tells the incident page behind the dialog to fetch its state and timeline again.
INCIDENT_CHANGED = {"HX-Trigger": "icc-incident-changed"}


def _dialog(
    request: Request, context: dict, *, status_code: int = 200, headers: dict | None = None
) -> Response:
    context = {
        "view": None,
        "token": "",
        "error": None,
        "typed_name": "",
        "labels": service.STATE_LABELS,
        **context,
    }
    return render(request, RUN_PAGE, context, blocks=["dialog"], status_code=status_code, headers=headers)


@router.post("/incidents/{ref}/actions/{name}")
async def prepare(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    catalog: CatalogDep,
    ref: schemas.Text,
    name: schemas.Text,
) -> Response:
    """Open the dialog: a run prepared for confirmation, or (for an action that needs no review
    step) run on this click and its result shown."""
    spec = catalog.get(name)
    try:
        if spec is not None and not spec.requires_confirmation:
            view = await service.run_action_now(session, catalog=catalog, actor=user, ref=ref, name=name)
            return _dialog(request, {"view": view}, headers=INCIDENT_CHANGED)
        view, token = await service.prepare_action_run(
            session, catalog=catalog, actor=user, ref=ref, name=name
        )
    except DomainError as exc:
        return _dialog(request, {"error": exc.message, "ref": ref}, status_code=exc.status_code)
    return _dialog(request, {"view": view, "token": token})


@router.post("/action-runs/{run_id}/confirm")
async def confirm(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    catalog: CatalogDep,
    run_id: RunId,
    confirm_token: Token = "",
    typed_name: Token = "",
) -> Response:
    try:
        view = await service.confirm_action_run(
            session,
            catalog=catalog,
            actor=user,
            run_id=run_id,
            confirm_token=confirm_token,
            typed_name=typed_name,
        )
    except DomainError as exc:
        # The dialog comes back as it was, with the message; a wrong typed name can be corrected.
        shown = await service.get_action_run(session, catalog=catalog, run_id=run_id)
        keep = shown.state == "awaiting_confirmation" and shown.run.prepared_by_id == user.id
        context = {
            "view": shown,
            "token": confirm_token if keep else "",
            "typed_name": typed_name,
            "error": exc.message,
        }
        return _dialog(request, context, status_code=exc.status_code)
    if wants_fragment(request):
        return _dialog(request, {"view": view}, headers=INCIDENT_CHANGED)
    return see_other(f"/action-runs/{view.run.id}")


@router.get("/action-runs/{run_id}")
async def run_page(
    request: Request, session: SessionDep, user: CurrentUser, catalog: CatalogDep, run_id: RunId
) -> Response:
    return _dialog(request, {"view": await service.get_action_run(session, catalog=catalog, run_id=run_id)})


@router.get("/actions/runs")
async def history(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    catalog: CatalogDep,
    action: Annotated[schemas.Text | None, Query(max_length=64)] = None,
    state: Annotated[schemas.Text | None, Query(max_length=32)] = None,
    incident: Annotated[schemas.Text | None, Query(max_length=32)] = None,
) -> Response:
    filters = {"action": action or "", "state": state or "", "incident": (incident or "").strip()}
    error = None
    try:
        views = await service.list_action_runs(
            session,
            catalog=catalog,
            action=filters["action"] or None,
            state=filters["state"] or None,
            ref=filters["incident"] or None,
        )
    except DomainError as exc:
        views, error = [], exc.message
    context = {
        "views": views,
        "filters": filters,
        "error": error,
        "actions": list(catalog.actions),
        "states": service.SHOWN_STATES,
        "labels": service.STATE_LABELS,
    }
    return render(request, "actions/history.html", context, blocks=["results"])


@demo_router.post("/demo/webhooks/{name}")
async def demo_receiver(request: Request, catalog: CatalogDep, name: str) -> Response:
    """The demo's stand-in for real automation (mounted only with --demo): checks the signature,
    changes nothing, answers like a receiver would."""
    body = await request.body()
    signature = request.headers.get(SIGNATURE_HEADER, "")
    valid = hmac.compare_digest(signature, sign_action_request(catalog.signing_secret, body))
    if not valid:
        return JSONResponse({"ok": False, "error": "bad signature"}, status_code=401)
    return JSONResponse(
        {
            "ok": True,
            "action": name,
            "run_id": request.headers.get("X-ICC-Run-Id"),
            "message": f"Demo receiver: {name} accepted; nothing real was changed.",
        }
    )
