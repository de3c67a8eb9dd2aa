"""The incident JSON API under /api/v1. Thin: every rule is in the service."""

from typing import Annotated

from fastapi import APIRouter, Query

from app.auth.deps import CurrentUser
from app.config import get_policy
from app.db import SessionDep
from app.incidents import service
from app.incidents.models import STATUSES
from app.incidents.schemas import (
    ChecklistIn,
    DeclareIn,
    EntryId,
    IncidentOut,
    IncidentPage,
    IncidentSummaryOut,
    PersonOut,
    RedactIn,
    RevisionOut,
    Role,
    RoleIn,
    RowId,
    SeverityIn,
    SeverityOut,
    SingleRole,
    StatusIn,
    TimelineEditIn,
    TimelineEntryOut,
    TimelineHistoryOut,
    TimelineIn,
    TimelinePage,
)
from app.openapi import CHANGE, CHANGE_WITH_BODY, READ, READ_ONE, errors
from app.schemas import Text, one_of
from app.status import updates

router = APIRouter(prefix="/api/v1", tags=["incidents"])


async def _detail(session: SessionDep, ref: str) -> IncidentOut:
    return IncidentOut.of(await service.get_incident_detail(session, ref=ref))


@router.get("/severities", response_model=list[SeverityOut], responses=errors(401))
async def list_severities(user: CurrentUser) -> list[SeverityOut]:
    """The severity policy in force: SLAs and update cadence per severity."""
    return [SeverityOut.of(s) for s in service.severities()]


@router.post(
    "/incidents", status_code=201, response_model=IncidentOut, responses=errors(400, 401, 403, 413, 422)
)
async def declare(body: DeclareIn, session: SessionDep, user: CurrentUser) -> IncidentOut:
    """Declare an incident. It starts in triage with its SLA timers running."""
    incident = await service.declare_incident(
        session,
        actor=user,
        title=body.title,
        severity=body.severity,
        summary=body.summary,
        services=body.services,
        as_commander=body.as_commander,
    )
    return await _detail(session, incident.ref)


@router.get("/incidents", response_model=IncidentPage, responses=READ)
async def list_incidents(
    session: SessionDep,
    user: CurrentUser,
    status: Annotated[Text | None, one_of(("", *STATUSES))] = None,
    severity: Annotated[Text | None, one_of(lambda: ["", *get_policy().severities])] = None,
    active: bool | None = None,
    service_name: Annotated[Text | None, Query(alias="service")] = None,
    q: Text | None = None,
    cursor: RowId | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> IncidentPage:
    """Incidents, newest first; pass `next_cursor` back as `cursor` for the next page."""
    rows, next_cursor = await service.list_incidents(
        session,
        status=status,
        severity=severity,
        active=active,
        service=service_name,
        q=q,
        cursor=cursor,
        limit=limit,
    )
    return IncidentPage(items=[IncidentSummaryOut.of(r) for r in rows], next_cursor=next_cursor)


@router.get("/incidents/{ref}", response_model=IncidentOut, responses=READ_ONE)
async def get_incident(ref: Text, session: SessionDep, user: CurrentUser) -> IncidentOut:
    return await _detail(session, ref)


@router.post("/incidents/{ref}/acknowledge", response_model=IncidentOut, responses=CHANGE)
async def acknowledge(ref: Text, session: SessionDep, user: CurrentUser) -> IncidentOut:
    await service.acknowledge_incident(session, actor=user, ref=ref)
    return await _detail(session, ref)


@router.post("/incidents/{ref}/severity", response_model=IncidentOut, responses=CHANGE_WITH_BODY)
async def change_severity(ref: Text, body: SeverityIn, session: SessionDep, user: CurrentUser) -> IncidentOut:
    await service.change_severity(session, actor=user, ref=ref, severity=body.severity, reason=body.reason)
    return await _detail(session, ref)


@router.post("/incidents/{ref}/status", response_model=IncidentOut, responses=CHANGE_WITH_BODY)
async def change_status(ref: Text, body: StatusIn, session: SessionDep, user: CurrentUser) -> IncidentOut:
    """Move the status; `public_update` posts that public update in the same step (resolving an
    incident on the status page needs its closing one: else 422)."""
    await updates.change_status(
        session,
        actor=user,
        ref=ref,
        status=body.status,
        reason=body.reason,
        public_update=body.public_update,
    )
    return await _detail(session, ref)


@router.post("/incidents/{ref}/roles/sme", response_model=IncidentOut, responses=CHANGE_WITH_BODY)
async def add_sme(ref: Text, body: RoleIn, session: SessionDep, user: CurrentUser) -> IncidentOut:
    await service.assign_role(session, actor=user, ref=ref, role="sme", email=body.email)
    return await _detail(session, ref)


@router.delete(
    "/incidents/{ref}/roles/sme/{email}", response_model=IncidentOut, responses=errors(401, 403, 404, 422)
)
async def remove_sme(ref: Text, email: Text, session: SessionDep, user: CurrentUser) -> IncidentOut:
    await service.clear_role(session, actor=user, ref=ref, role="sme", email=email)
    return await _detail(session, ref)


@router.put("/incidents/{ref}/roles/{role}", response_model=IncidentOut, responses=CHANGE_WITH_BODY)
async def assign_role(
    ref: Text, role: Role, body: RoleIn, session: SessionDep, user: CurrentUser
) -> IncidentOut:
    """Assign a single-holder role; if someone holds it, this is a handover."""
    await service.assign_role(session, actor=user, ref=ref, role=role, email=body.email)
    return await _detail(session, ref)


@router.delete(
    "/incidents/{ref}/roles/{role}", response_model=IncidentOut, responses=errors(401, 403, 404, 422)
)
async def clear_role(ref: Text, role: SingleRole, session: SessionDep, user: CurrentUser) -> IncidentOut:
    await service.clear_role(session, actor=user, ref=ref, role=role)
    return await _detail(session, ref)


@router.post(
    "/incidents/{ref}/checklist/{key}",
    response_model=IncidentOut,
    responses=errors(400, 401, 403, 404, 413, 422),
)
async def set_checklist(
    ref: Text, key: Text, body: ChecklistIn, session: SessionDep, user: CurrentUser
) -> IncidentOut:
    await service.set_checklist_item(session, actor=user, ref=ref, key=key, done=body.done)
    return await _detail(session, ref)


@router.post(
    "/incidents/{ref}/timeline", status_code=201, response_model=TimelineEntryOut, responses=CHANGE_WITH_BODY
)
async def add_entry(ref: Text, body: TimelineIn, session: SessionDep, user: CurrentUser) -> TimelineEntryOut:
    """Log a note, decision or action; `occurred_at` back-dates it."""
    entry = await service.add_timeline_entry(
        session,
        actor=user,
        ref=ref,
        kind=body.kind,
        body=body.body,
        occurred_at=body.occurred_at,
        client_key=body.client_key,
    )
    return TimelineEntryOut.of(entry)


@router.get("/incidents/{ref}/timeline", response_model=TimelinePage, responses=READ_ONE)
async def list_entries(
    ref: Text, session: SessionDep, user: CurrentUser, after: RowId | None = None
) -> TimelinePage:
    """The timeline in the order things happened; `after` (an entry id) returns newer records."""
    entries, next_cursor = await service.list_timeline(session, ref=ref, after=after)
    return TimelinePage(items=[TimelineEntryOut.of(e) for e in entries], next_cursor=next_cursor)


@router.patch("/timeline/{entry_id}", response_model=TimelineEntryOut, responses=CHANGE_WITH_BODY)
async def edit_entry(
    entry_id: EntryId, body: TimelineEditIn, session: SessionDep, user: CurrentUser
) -> TimelineEntryOut:
    """Correct an entry: returns the new revision; earlier ones stay in its history."""
    return TimelineEntryOut.of(
        await service.edit_timeline_entry(session, actor=user, entry_id=entry_id, body=body.body)
    )


@router.post("/timeline/{entry_id}/redact", response_model=TimelineEntryOut, responses=CHANGE_WITH_BODY)
async def redact_entry(
    entry_id: EntryId, body: RedactIn, session: SessionDep, user: CurrentUser
) -> TimelineEntryOut:
    return TimelineEntryOut.of(
        await service.redact_timeline_entry(session, actor=user, entry_id=entry_id, reason=body.reason)
    )


@router.get("/timeline/{entry_id}/history", response_model=TimelineHistoryOut, responses=READ_ONE)
async def entry_history(entry_id: EntryId, session: SessionDep, user: CurrentUser) -> TimelineHistoryOut:
    entry, revisions = await service.get_timeline_entry(session, entry_id=entry_id)
    return TimelineHistoryOut(
        entry=TimelineEntryOut.of(entry),
        revisions=[
            RevisionOut(
                revision=r.revision,
                body=r.body,
                edited_by=PersonOut(email=r.edited_by.email, name=r.edited_by.name),
                edited_at=r.edited_at,
            )
            for r in revisions
        ],
    )
