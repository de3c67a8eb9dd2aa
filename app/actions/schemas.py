"""JSON shapes of the actions API. Rules are checked by the service, not here."""

from datetime import datetime
from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, Field

from app.actions.catalog import ActionSpec
from app.actions.service import RunView
from app.incidents.schemas import MAX_ID, PersonOut
from app.schemas import Strict, Text, limited

RunId = Annotated[int, Path(ge=1, le=MAX_ID)]


class ConfirmIn(Strict):
    confirm_token: Text = Field(max_length=200)
    typed_name: limited(200) | None = None


class ActionOut(BaseModel):
    name: str
    title: str
    description: str
    method: str
    url: str
    requires_confirmation: bool
    dangerous: bool
    roles: list[str]
    incident_roles: list[str]
    timeout_seconds: float
    cooldown_seconds: int | None

    @classmethod
    def of(cls, spec: ActionSpec) -> "ActionOut":
        return cls(
            name=spec.name,
            title=spec.title,
            description=spec.description,
            method=spec.method,
            url=spec.url,
            requires_confirmation=spec.requires_confirmation,
            dangerous=spec.dangerous,
            roles=list(spec.roles),
            incident_roles=list(spec.incident_roles),
            timeout_seconds=spec.timeout.total_seconds(),
            cooldown_seconds=int(spec.cooldown.total_seconds()) if spec.cooldown else None,
        )


class PreviewOut(BaseModel):
    method: str
    url: str
    headers: dict[str, str]
    body: str


class RunOut(BaseModel):
    id: int
    action: str
    incident: str
    state: str
    prepared_by: PersonOut
    prepared_at: datetime
    expires_at: datetime
    confirmed_at: datetime | None
    finished_at: datetime | None
    http_status: int | None
    duration_ms: int | None
    response_excerpt: str | None
    error: str | None
    preview: PreviewOut

    @classmethod
    def of(cls, view: RunView) -> "RunOut":
        run = view.run
        return cls(
            id=run.id,
            action=run.action,
            incident=run.incident.ref,
            state=view.state,
            prepared_by=PersonOut(email=run.prepared_by.email, name=run.prepared_by.name),
            prepared_at=run.prepared_at,
            expires_at=run.expires_at,
            confirmed_at=run.confirmed_at,
            finished_at=run.finished_at,
            http_status=run.http_status,
            duration_ms=run.duration_ms,
            response_excerpt=run.response_excerpt,
            error=run.error,
            preview=PreviewOut(**view.preview),
        )


class PreparedOut(RunOut):
    confirm_token: str  # shown once; only its hash is stored


class RunPage(BaseModel):
    items: list[RunOut]
