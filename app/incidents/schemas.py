"""JSON shapes of the incident API. Rules are checked by the service, not here."""

from datetime import datetime
from typing import Annotated

from fastapi import Path, Query
from pydantic import BaseModel, Field

from app.auth.models import User
from app.config import SeverityPolicy, get_policy
from app.incidents.models import ENTRY_KINDS_WRITTEN, ROLES, SINGLE_ROLES, STATUSES, TimelineEntry
from app.incidents.service import (
    MAX_BODY,
    MAX_REASON,
    MAX_SERVICES,
    MAX_SUMMARY,
    MAX_TITLE,
    IncidentDetail,
    IncidentRow,
)
from app.incidents.timers import Timer
from app.schemas import WHITESPACE, Documented, RequiredText, Strict, Text, Timestamp, limited, one_of
from app.status.updates import MAX_UPDATE

MAX_ID = 2**31 - 1  # ids are PostgreSQL integers
RowId = Annotated[int, Query(ge=0, le=MAX_ID)]
EntryId = Annotated[int, Path(ge=1, le=MAX_ID)]
# Strict: JSON's true and false only (pydantic would also read "yes", 1 and "off").
Flag = Annotated[bool, Field(strict=True)]

Severity = Annotated[Text, one_of(lambda: get_policy().severities)]
Status = Annotated[Text, one_of(STATUSES)]
Role = Annotated[Text, one_of(ROLES)]
SingleRole = Annotated[Text, one_of(SINGLE_ROLES)]  # an SME is removed by email
# After trimming: ASCII letters and digits, "-", "_", ".", "/" and spaces (blank ones are skipped).
ServiceName = Annotated[
    Text,
    Field(max_length=64),
    Documented({"pattern": rf"^[{WHITESPACE}]*[A-Za-z0-9_. /-]*[{WHITESPACE}]*$"}),
]


class DeclareIn(Strict):
    title: RequiredText = Field(max_length=MAX_TITLE)
    severity: Severity
    summary: limited(MAX_SUMMARY) | None = None
    services: list[ServiceName] | None = Field(default=None, max_length=MAX_SERVICES)
    as_commander: Flag = Field(default=False, description="Make the declarer the Incident Commander")


class SeverityIn(Strict):
    severity: Severity
    reason: RequiredText = Field(max_length=MAX_REASON)


class StatusIn(Strict):
    status: Status
    reason: limited(MAX_REASON) | None = None
    # posted in the same step; resolving a public incident needs it
    public_update: limited(MAX_UPDATE, RequiredText) | None = None


class RoleIn(Strict):
    email: Text


class ChecklistIn(Strict):
    done: Flag


class TimelineIn(Strict):
    kind: Annotated[Text, one_of(ENTRY_KINDS_WRITTEN)] = "note"
    body: RequiredText = Field(max_length=MAX_BODY)
    occurred_at: Timestamp | None = Field(
        default=None, description="When it happened: within the last 30 days, not in the future"
    )
    client_key: limited(64) | None = None


class TimelineEditIn(Strict):
    body: RequiredText = Field(max_length=MAX_BODY)


class RedactIn(Strict):
    reason: RequiredText = Field(max_length=MAX_REASON)


class SeverityOut(BaseModel):
    key: str
    label: str
    description: str
    ack_sla_seconds: int | None
    ack_business_days: int | None
    mitigation_sla_seconds: int | None
    update_cadence_seconds: int | None

    @classmethod
    def of(cls, sev: SeverityPolicy) -> "SeverityOut":
        def seconds(value):
            return int(value.total_seconds()) if value else None

        return cls(
            key=sev.key,
            label=sev.label,
            description=sev.description,
            ack_sla_seconds=sev.ack_business_days * 86400 if sev.ack_business_days else seconds(sev.ack_sla),
            ack_business_days=sev.ack_business_days,
            mitigation_sla_seconds=seconds(sev.mitigation_sla),
            update_cadence_seconds=seconds(sev.update_cadence),
        )


class PersonOut(BaseModel):
    email: str
    name: str

    @classmethod
    def of(cls, user: User | None) -> "PersonOut | None":
        return cls(email=user.email, name=user.name) if user else None


class TimerOut(BaseModel):
    due_at: datetime
    state: str
    met_at: datetime | None

    @classmethod
    def of(cls, timer: Timer | None) -> "TimerOut | None":
        return cls(due_at=timer.due_at, state=timer.state, met_at=timer.met_at) if timer else None


class TimersOut(BaseModel):
    ack: TimerOut | None
    mitigation: TimerOut | None
    next_update: TimerOut | None


class RolesOut(BaseModel):
    incident_commander: PersonOut | None
    comms_lead: PersonOut | None
    tech_lead: PersonOut | None
    scribe: PersonOut | None
    sme: list[PersonOut]


class ChecklistItemOut(BaseModel):
    key: str
    label: str
    done: bool
    done_by: PersonOut | None
    done_at: datetime | None


class IncidentOut(BaseModel):
    ref: str
    title: str
    summary: str
    severity: str
    status: str
    services: list[str]
    declared_at: datetime
    acknowledged_at: datetime | None
    mitigated_at: datetime | None
    resolved_at: datetime | None
    roles: RolesOut
    timers: TimersOut
    checklist: list[ChecklistItemOut]

    @classmethod
    def of(cls, detail: IncidentDetail) -> "IncidentOut":
        i = detail.incident
        return cls(
            ref=i.ref,
            title=i.title,
            summary=i.summary,
            severity=i.severity,
            status=i.status,
            services=i.services,
            declared_at=i.declared_at,
            acknowledged_at=i.acknowledged_at,
            mitigated_at=i.mitigated_at,
            resolved_at=i.resolved_at,
            roles=RolesOut(
                **{role: PersonOut.of(user) for role, user in detail.roles.items()},
                sme=[PersonOut(email=u.email, name=u.name) for u in detail.smes],
            ),
            timers=TimersOut(**{k: TimerOut.of(t) for k, t in detail.timers.items()}),
            checklist=[
                ChecklistItemOut(
                    key=c.key,
                    label=c.label,
                    done=c.done_at is not None,
                    done_by=PersonOut.of(c.done_by),
                    done_at=c.done_at,
                )
                for c in detail.checklist
            ],
        )


class IncidentSummaryOut(BaseModel):
    ref: str
    title: str
    severity: str
    status: str
    services: list[str]
    declared_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    incident_commander: PersonOut | None
    timers: TimersOut

    @classmethod
    def of(cls, row: IncidentRow) -> "IncidentSummaryOut":
        i = row.incident
        return cls(
            ref=i.ref,
            title=i.title,
            severity=i.severity,
            status=i.status,
            services=i.services,
            declared_at=i.declared_at,
            acknowledged_at=i.acknowledged_at,
            resolved_at=i.resolved_at,
            incident_commander=PersonOut.of(row.commander),
            timers=TimersOut(**{k: TimerOut.of(t) for k, t in row.timers.items()}),
        )


class IncidentPage(BaseModel):
    items: list[IncidentSummaryOut]
    next_cursor: int | None


class RedactionOut(BaseModel):
    by: PersonOut
    at: datetime
    reason: str


class TimelineEntryOut(BaseModel):
    id: int
    kind: str
    body: str | None
    author: PersonOut
    occurred_at: datetime
    recorded_at: datetime
    revision: int
    redacted: RedactionOut | None

    @classmethod
    def of(cls, entry: TimelineEntry) -> "TimelineEntryOut":
        redacted = None
        if entry.redacted_at is not None and entry.redacted_by is not None:
            redacted = RedactionOut(
                by=PersonOut(email=entry.redacted_by.email, name=entry.redacted_by.name),
                at=entry.redacted_at,
                reason=entry.redaction_reason or "",
            )
        return cls(
            id=entry.id,
            kind=entry.kind,
            body=None if redacted else entry.body,
            author=PersonOut(email=entry.author.email, name=entry.author.name),
            occurred_at=entry.occurred_at,
            recorded_at=entry.recorded_at,
            revision=entry.revision,
            redacted=redacted,
        )


class TimelinePage(BaseModel):
    items: list[TimelineEntryOut]
    next_cursor: int | None


class RevisionOut(BaseModel):
    revision: int
    body: str | None
    edited_by: PersonOut
    edited_at: datetime


class TimelineHistoryOut(BaseModel):
    entry: TimelineEntryOut
    revisions: list[RevisionOut]
