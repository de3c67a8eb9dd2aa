"""JSON shapes of the status documents: Statuspage's public API (api/v2) and ours (/api/v1/status).

They are served from rendered copies (app/status/cache.py), so these models describe the
documents for OpenAPI and its clients; app/status/api.py builds them."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

Indicator = Literal["none", "minor", "major", "critical"]
ComponentState = Literal["operational", "degraded_performance", "partial_outage", "major_outage"]


class StatuspagePage(BaseModel):
    id: str
    name: str
    url: str
    time_zone: str
    updated_at: datetime


class StatuspageStatus(BaseModel):
    indicator: Indicator
    description: str


class StatuspageComponent(BaseModel):
    id: str
    name: str
    status: ComponentState
    created_at: datetime
    updated_at: datetime
    position: int
    description: str | None
    showcase: bool
    start_date: str | None
    group_id: str | None
    page_id: str
    group: bool
    only_show_if_degraded: bool
    components: list[str] | None = Field(default=None, description="A group's members (groups only)")


class StatuspageAffectedComponent(BaseModel):
    code: str
    name: str
    old_status: str
    new_status: str


class StatuspageIncidentUpdate(BaseModel):
    id: str
    status: str
    body: str
    incident_id: str
    created_at: datetime
    updated_at: datetime
    display_at: datetime
    affected_components: list[StatuspageAffectedComponent]
    deliver_notifications: bool


class StatuspageIncident(BaseModel):
    id: str
    name: str
    status: str
    created_at: datetime
    updated_at: datetime
    monitoring_at: datetime | None
    resolved_at: datetime | None
    impact: Indicator
    shortlink: str
    started_at: datetime
    page_id: str
    incident_updates: list[StatuspageIncidentUpdate]
    components: list[StatuspageComponent]


class StatuspageSummary(BaseModel):
    """Statuspage's summary.json."""

    page: StatuspagePage
    components: list[StatuspageComponent]
    incidents: list[StatuspageIncident]
    scheduled_maintenances: list[dict[str, object]]
    status: StatuspageStatus


class StatuspageStatusDocument(BaseModel):
    """Statuspage's status.json."""

    page: StatuspagePage
    status: StatuspageStatus


class StatuspageComponents(BaseModel):
    """Statuspage's components.json."""

    page: StatuspagePage
    components: list[StatuspageComponent]


class StatuspageUnresolved(BaseModel):
    """Statuspage's incidents/unresolved.json."""

    page: StatuspagePage
    incidents: list[StatuspageIncident]


class StatusIncident(StatuspageIncident):
    next_update_by: datetime | None = Field(description="When the page promises the next public update")


class StatusSummary(StatuspageSummary):
    """Our status JSON: Statuspage's summary with the page's own sentence as `status.description`
    and each incident's public promise."""

    incidents: list[StatusIncident]
