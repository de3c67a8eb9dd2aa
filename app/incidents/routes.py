"""Incident pages. Thin: parse the form, call the service, render the page or its blocks."""

import secrets
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from app import clock, schemas
from app.actions import service as actions
from app.alerts import changes as alert_changes
from app.alerts import queries as alerts
from app.auth import service as accounts
from app.auth.deps import CurrentUser
from app.db import SessionDep
from app.errors import DomainError, InvalidInput
from app.escalation import service as escalation
from app.incidents import service
from app.incidents.entry_input import parse_entry
from app.incidents.models import ENTRY_KINDS_WRITTEN, SINGLE_ROLES, STATUSES
from app.incidents.schemas import EntryId
from app.live import presence
from app.runbooks import service as runbooks
from app.status import public_view, updates
from app.status.config import get_status_config
from app.status.publication import impacts_of
from app.web import render, see_other, wants_fragment

router = APIRouter(include_in_schema=False)

Text = Annotated[str, Form(max_length=100_000)]
OptionalText = Annotated[str, Form(max_length=100_000)]
PAGE = "incidents/page.html"
PAGE_ENTRIES = 300  # the page shows the latest entries; all of them are in the API


async def _incident_page(
    request: Request,
    session: SessionDep,
    ref: str,
    *,
    blocks: list[str] | None = None,
    draft: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    detail = await service.get_incident_detail(session, ref=ref)
    entries, entry_count = await service.latest_timeline(
        session, incident_id=detail.incident.id, limit=PAGE_ENTRIES
    )
    directory = request.app.state.settings.runbooks_dir
    await runbooks.refresh_if_changed(session, directory=directory)
    open_key = request.query_params.get("runbook")
    commander, comms_lead = detail.roles["incident_commander"], detail.roles["comms_lead"]
    user = request.state.principal.user
    publication = await updates.publication_of(session, ref=ref)
    context = {
        # This page's own stream is about to say "here"; show it now so nothing jumps.
        "viewers": sorted(
            {
                v.id: v for v in [*await presence.viewers_of(session, incident_id=detail.incident.id), user]
            }.values(),
            key=lambda v: v.name,
        ),
        "escalations": await escalation.escalations_of(session, incident_id=detail.incident.id),
        "updates": await updates.latest_updates(session, incident_id=detail.incident.id, limit=5),
        "components": get_status_config().components,
        "impacts": await impacts_of(session, incident=detail.incident),
        "publication": publication,
        "update_templates": updates.update_templates(detail.incident),
        "impact_words": public_view.IMPACT_WORDS,
        "speaks_for_incident": user.id in {p.id for p in (commander, comms_lead) if p},
        "resolve_refusal": service.resolve_refusal(commander=commander, actor=user),
        "update_soon": _update_soon(detail, publication),
        "suggested": await runbooks.suggest_for_incident(session, services=detail.incident.services),
        "runnable": await actions.runnable_actions(
            session, catalog=request.app.state.catalog, actor=user, incident=detail.incident
        ),
        "action_runs": await actions.list_action_runs(
            session, catalog=request.app.state.catalog, incident_id=detail.incident.id, limit=5
        ),
        "run_labels": actions.STATE_LABELS,
        "linked": await alerts.alerts_of_incident(session, incident=detail.incident),
        "changes": await alert_changes.changes_for_incident(session, incident=detail.incident),
        "runbook": await runbooks.get_runbook(session, key=open_key) if open_key and not blocks else None,
        "d": detail,
        "i": detail.incident,
        "entries": entries,
        "entry_count": entry_count,
        "people": await accounts.list_active_users(session),
        "severities": service.severities(),
        "moves": service.allowed_moves(detail.incident.status),
        "statuses": STATUSES,
        "status_labels": service.STATUS_LABELS,
        "single_roles": SINGLE_ROLES,
        "role_labels": service.ROLE_LABELS,
        "kinds": ENTRY_KINDS_WRITTEN,
        "draft": draft or {},
        "entry_error": error,
        "client_key": secrets.token_urlsafe(16),
        "oob": blocks is not None and "state" in blocks,
        "now": clock.now(),
    }
    return render(request, PAGE, context, blocks=blocks, status_code=status_code)


def _update_soon(detail: service.IncidentDetail, publication: updates.Publication) -> datetime | None:
    """When the next stakeholder update is due, internal or promised on the status page, if that
    is within two minutes or past."""
    timer = detail.timers["next_update"]
    due = [t for t in (timer and timer.due_at, publication.next_update_by) if t is not None]
    if due and min(due) - clock.now() <= timedelta(minutes=2):
        return min(due)
    return None


async def after_incident_change(request: Request, session: SessionDep, ref: str) -> Response:
    """HTMX gets the changed parts of the page; a plain form post gets a 303 back to it."""
    if wants_fragment(request):
        return await _incident_page(request, session, ref, blocks=["state", "timeline"])
    return see_other(f"/incidents/{ref}")


@router.get("/")
async def home() -> Response:
    return see_other("/incidents")


@router.get("/incidents")
async def incident_list(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    status: schemas.Text | None = None,
    severity: schemas.Text | None = None,
    service_filter: Annotated[schemas.Text | None, Query(alias="service")] = None,
    q: schemas.Text | None = None,
) -> Response:
    board = await service.incident_board(
        session, status=status or None, severity=severity or None, service=service_filter or None, q=q
    )
    context = {
        "board": board,
        "severities": service.severities(),
        "statuses": STATUSES,
        "status_labels": service.STATUS_LABELS,
        "filters": {
            "status": status or "",
            "severity": severity or "",
            "service": service_filter or "",
            "q": q or "",
        },
        "now": clock.now(),
    }
    return render(request, "incidents/list.html", context, blocks=["board"])


def _declare_form(
    request: Request, *, values: dict[str, str], error: DomainError | None = None, status_code: int = 200
) -> Response:
    context = {
        "severities": service.severities(),
        "values": values,
        "error": error,
        "client_key": values.get("client_key") or secrets.token_urlsafe(16),
    }
    return render(request, "incidents/new.html", context, status_code=status_code)


@router.get("/incidents/new")
async def declare_form(request: Request, user: CurrentUser) -> Response:
    service.require_responder(user)
    # No severity is chosen for the declarer (nobody files a SEV2 by accident), and the declarer
    # runs the incident unless they say otherwise.
    return _declare_form(request, values={"as_commander": "1"})


@router.post("/incidents")
async def declare(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    title: Text = "",
    severity: Text = "",
    summary: OptionalText = "",
    services: OptionalText = "",
    as_commander: Annotated[str, Form(max_length=5)] = "",
    client_key: Annotated[schemas.Text, Form(max_length=64)] = "",
) -> Response:
    values = {
        "title": title,
        "severity": severity,
        "summary": summary,
        "services": services,
        "as_commander": as_commander,
        "client_key": client_key,
    }
    try:
        incident = await service.declare_incident(
            session,
            actor=user,
            title=title,
            severity=severity,
            summary=summary,
            services=services,
            client_key=client_key or None,
            as_commander=as_commander == "1",
        )
    except DomainError as exc:
        return _declare_form(request, values=values, error=exc, status_code=exc.status_code)
    return see_other(f"/incidents/{incident.ref}")


@router.get("/incidents/{ref}")
async def incident_page(
    request: Request, session: SessionDep, user: CurrentUser, ref: schemas.Text
) -> Response:
    blocks = ["state", "timeline"] if wants_fragment(request) else None
    return await _incident_page(request, session, ref, blocks=blocks)


@router.post("/incidents/{ref}/acknowledge")
async def acknowledge(
    request: Request, session: SessionDep, user: CurrentUser, ref: schemas.Text
) -> Response:
    await service.acknowledge_incident(session, actor=user, ref=ref)
    return await after_incident_change(request, session, ref)


@router.post("/incidents/{ref}/severity")
async def change_severity(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    ref: schemas.Text,
    severity: Text = "",
    reason: Text = "",
) -> Response:
    await service.change_severity(session, actor=user, ref=ref, severity=severity, reason=reason)
    return await after_incident_change(request, session, ref)


@router.post("/incidents/{ref}/status")
async def change_status(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    ref: schemas.Text,
    new_status: Annotated[str, Form(alias="status", max_length=100_000)] = "",
    reason: OptionalText = "",
    public_update: Annotated[str | None, Form(max_length=100_000)] = None,
) -> Response:
    await updates.change_status(
        session, actor=user, ref=ref, status=new_status, reason=reason, public_update=public_update
    )
    return await after_incident_change(request, session, ref)


@router.post("/incidents/{ref}/roles/{role}")
async def assign_role(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    ref: schemas.Text,
    role: schemas.Text,
    email: Text = "",
) -> Response:
    await service.assign_role(session, actor=user, ref=ref, role=role, email=email)
    return await after_incident_change(request, session, ref)


@router.post("/incidents/{ref}/roles/{role}/clear")
async def clear_role(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    ref: schemas.Text,
    role: schemas.Text,
    email: OptionalText = "",
) -> Response:
    await service.clear_role(session, actor=user, ref=ref, role=role, email=email or None)
    return await after_incident_change(request, session, ref)


@router.post("/incidents/{ref}/checklist/{key}")
async def tick_checklist(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    ref: schemas.Text,
    key: schemas.Text,
    done: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    if done not in ("0", "1"):
        raise InvalidInput("done must be 1 or 0.", field="done")
    await service.set_checklist_item(session, actor=user, ref=ref, key=key, done=done == "1")
    return await after_incident_change(request, session, ref)


@router.post("/incidents/{ref}/timeline")
async def add_entry(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    ref: schemas.Text,
    body: OptionalText = "",
    kind: Annotated[str, Form(max_length=16)] = "note",
    at: Annotated[schemas.Text, Form(max_length=16)] = "",
    tz: Annotated[schemas.Text, Form(max_length=64)] = "",
    client_key: Annotated[schemas.Text, Form(max_length=64)] = "",
) -> Response:
    draft = {"body": body, "kind": kind, "at": at}
    try:
        parsed_kind, text, occurred_at = parse_entry(body, kind=kind, at=at, tz=tz, now=clock.now())
        await service.add_timeline_entry(
            session,
            actor=user,
            ref=ref,
            kind=parsed_kind,
            body=text,
            occurred_at=occurred_at,
            client_key=client_key or None,
        )
    except DomainError as exc:
        if wants_fragment(request):
            # The box keeps what the scribe typed: only the message beside it changes.
            return render(
                request,
                "_flash.html",
                {"message": exc.message, "level": "error"},
                status_code=exc.status_code,
                headers={"HX-Retarget": "#icc-entry-error", "HX-Reswap": "innerHTML"},
            )
        return await _incident_page(
            request, session, ref, draft=draft, error=exc.message, status_code=exc.status_code
        )
    if wants_fragment(request):
        return await _incident_page(request, session, ref, blocks=["timeline"])
    return see_other(f"/incidents/{ref}#icc-entry")


@router.post("/incidents/{ref}/runbooks/{key}/attach")
async def attach_runbook(
    request: Request, session: SessionDep, user: CurrentUser, ref: schemas.Text, key: schemas.Text
) -> Response:
    await runbooks.attach_to_incident(session, actor=user, ref=ref, key=key)
    return await after_incident_change(request, session, ref)


@router.get("/timeline/{entry_id}")
async def entry_history(
    request: Request, session: SessionDep, user: CurrentUser, entry_id: EntryId
) -> Response:
    entry, revisions = await service.get_timeline_entry(session, entry_id=entry_id)
    ref = await service.incident_ref_of_entry(session, entry_id=entry_id)
    return render(
        request,
        "incidents/entry_history.html",
        {"entry": entry, "revisions": revisions, "ref": ref},
        blocks=["history"],
    )


@router.post("/timeline/{entry_id}/edit")
async def edit_entry(
    request: Request, session: SessionDep, user: CurrentUser, entry_id: EntryId, body: Text = ""
) -> Response:
    await service.edit_timeline_entry(session, actor=user, entry_id=entry_id, body=body)
    ref = await service.incident_ref_of_entry(session, entry_id=entry_id)
    return await after_incident_change(request, session, ref)


@router.post("/timeline/{entry_id}/redact")
async def redact_entry(
    request: Request, session: SessionDep, user: CurrentUser, entry_id: EntryId, reason: Text = ""
) -> Response:
    await service.redact_timeline_entry(session, actor=user, entry_id=entry_id, reason=reason)
    ref = await service.incident_ref_of_entry(session, entry_id=entry_id)
    return await after_incident_change(request, session, ref)
