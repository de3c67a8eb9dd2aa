"""JSON shapes of the alerts API. Rules are checked by the service, not here."""

from datetime import datetime
from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from app.alerts.models import Alert, AlertDeadLetter, ChangeEvent
from app.schemas import Text

MAX_ID = 2**31 - 1
AlertId = Annotated[int, Path(ge=1, le=MAX_ID)]


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    incident: Text = Field(max_length=32, description="The incident reference, e.g. INC-20261123-01")


class AlertOut(BaseModel):
    id: int
    source: str
    kind: str
    dedup_key: str
    fingerprint: str | None
    group_key: str | None
    status: str
    title: str
    severity: str
    service: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    links: list[dict[str, str]]
    starts_at: datetime | None
    ends_at: datetime | None
    first_received_at: datetime
    last_received_at: datetime
    resolved_at: datetime | None
    delivery_count: int
    route_action: str
    incident_severity: str | None
    incident: str | None
    opened_incident: bool
    acknowledged_at: datetime | None
    acknowledged_by: str | None

    @classmethod
    def of(cls, alert: Alert) -> "AlertOut":
        acknowledged_by = None
        if alert.acknowledged_at is not None:
            acknowledged_by = alert.acknowledged_by.email if alert.acknowledged_by else "sender"
        return cls(
            id=alert.id,
            source=alert.source,
            kind=alert.kind,
            dedup_key=alert.dedup_key,
            fingerprint=alert.fingerprint,
            group_key=alert.group_key,
            status=alert.status,
            title=alert.title,
            severity=alert.severity,
            service=alert.service,
            labels=alert.labels,
            annotations=alert.annotations,
            links=alert.links,
            starts_at=alert.starts_at,
            ends_at=alert.ends_at,
            first_received_at=alert.first_received_at,
            last_received_at=alert.last_received_at,
            resolved_at=alert.resolved_at,
            delivery_count=alert.delivery_count,
            route_action=alert.route_action,
            incident_severity=alert.incident_severity,
            incident=alert.incident.ref if alert.incident else None,
            opened_incident=alert.opened_incident,
            acknowledged_at=alert.acknowledged_at,
            acknowledged_by=acknowledged_by,
        )


class AlertDetailOut(AlertOut):
    raw: dict[str, object]

    @classmethod
    def of(cls, alert: Alert) -> "AlertDetailOut":
        return cls(**AlertOut.of(alert).model_dump(), raw=alert.raw)


class AlertPage(BaseModel):
    items: list[AlertOut]
    next_cursor: int | None


class IngestOut(BaseModel):
    source: str
    alerts: int
    alert_ids: list[int]
    incidents: list[str]


class PagerDutyOut(BaseModel):
    status: str = "success"
    message: str = "Event processed"
    dedup_key: str


class PagerDutyChangeOut(BaseModel):
    status: str = "success"
    message: str = "Change event processed"
    id: str = Field(description="The change event's id here (pdpyras returns it from submit())")


class PagerDutyErrorOut(BaseModel):
    """PagerDuty's error body: a short status, a message, the details (here: the field and why)."""

    status: str
    message: str
    errors: list[str]


class ChangeEventOut(BaseModel):
    id: int
    source: str
    summary: str
    origin: str | None
    occurred_at: datetime
    received_at: datetime
    service: str | None
    custom_details: dict[str, object]
    links: list[dict[str, str]]

    @classmethod
    def of(cls, event: ChangeEvent) -> "ChangeEventOut":
        return cls(
            id=event.id,
            source=event.source,
            summary=event.summary,
            origin=event.origin,
            occurred_at=event.occurred_at,
            received_at=event.received_at,
            service=event.service,
            custom_details=event.custom_details,
            links=event.links,
        )


class ChangeEventPage(BaseModel):
    items: list[ChangeEventOut]
    next_cursor: int | None


class DeadLetterOut(BaseModel):
    id: int
    received_at: datetime
    source: str
    kind: str
    status_code: int
    reason: str
    headers: dict[str, str]
    body: str
    replayed_at: datetime | None
    replayed_by: str | None
    replay_error: str | None
    replay_alert_count: int | None

    @classmethod
    def of(cls, letter: AlertDeadLetter) -> "DeadLetterOut":
        return cls(
            id=letter.id,
            received_at=letter.received_at,
            source=letter.source,
            kind=letter.kind,
            status_code=letter.status_code,
            reason=letter.reason,
            headers=letter.headers,
            body=letter.body,
            replayed_at=letter.replayed_at,
            replayed_by=letter.replayed_by.email if letter.replayed_by else None,
            replay_error=letter.replay_error,
            replay_alert_count=letter.replay_alert_count,
        )


class DeadLetterPage(BaseModel):
    items: list[DeadLetterOut]
