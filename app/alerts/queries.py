"""Reads of alerts for the pages and the API: one alert, the filtered history, the triage
queue's size, the sources that sent, and an incident's alerts."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.alerts.models import Alert
from app.alerts.timeline import BOT_EMAIL
from app.auth.models import User
from app.errors import InvalidInput, NotFound
from app.incidents.models import Incident

STATUS_LABELS = {"firing": "Firing", "resolved": "Resolved"}


def check_since(since: datetime | None) -> None:
    """A `since` filter must say its offset: a time without one means a different moment per zone."""
    if since is not None and since.tzinfo is None:
        raise InvalidInput("since: give a time with an offset, such as 2026-11-23T14:00:00Z.", field="since")


async def newest_first(
    session: AsyncSession,
    query: Select[Any],
    *,
    id_column: ColumnElement[Any],
    cursor: int | None,
    limit: int,
) -> tuple[list[Any], int | None]:
    """A page of the query's rows, the highest id first, after `cursor` (the last id seen); the
    cursor of the next page, or None on the last one."""
    if cursor is not None:
        query = query.where(id_column < cursor)
    found = list(await session.scalars(query.order_by(id_column.desc()).limit(limit + 1)))
    next_cursor = found[limit - 1].id if len(found) > limit else None
    return found[:limit], next_cursor


async def get_alert(session: AsyncSession, *, alert_id: int) -> Alert:
    """One alert with its incident and who acknowledged it, or NotFound."""
    alert = await session.scalar(
        select(Alert)
        .where(Alert.id == alert_id)
        .options(selectinload(Alert.incident), selectinload(Alert.acknowledged_by))
    )
    if alert is None:
        raise NotFound(f"No alert {alert_id}.")
    return alert


async def list_alerts(
    session: AsyncSession,
    *,
    status: str | None = None,
    source: str | None = None,
    service: str | None = None,
    since: datetime | None = None,
    incident: str | None = None,
    unrouted: bool = False,
    cursor: int | None = None,
    limit: int = 50,
) -> tuple[list[Alert], int | None]:
    """Alerts, most recently received first, filtered; `cursor` is the last id seen."""
    query = select(Alert).options(selectinload(Alert.incident), selectinload(Alert.acknowledged_by))
    if status:
        if status not in STATUS_LABELS:
            raise InvalidInput(f"Unknown alert status {status!r}: use firing or resolved.", field="status")
        query = query.where(Alert.status == status)
    if source:
        query = query.where(Alert.source == source.strip())
    if service:
        query = query.where(Alert.service == service.strip().lower())
    check_since(since)
    if since is not None:
        query = query.where(Alert.last_received_at >= since)
    if incident:
        query = query.join(Incident, Incident.id == Alert.incident_id).where(Incident.ref == incident.strip())
    if unrouted:
        query = query.where(Alert.incident_id.is_(None), Alert.status == "firing")
    return await newest_first(session, query, id_column=Alert.id, cursor=cursor, limit=limit)


async def count_unrouted(session: AsyncSession) -> int:
    """Firing alerts on no incident: the triage queue."""
    return (
        await session.scalar(
            select(func.count())
            .select_from(Alert)
            .where(Alert.incident_id.is_(None), Alert.status == "firing")
        )
    ) or 0


async def list_sources(session: AsyncSession) -> list[str]:
    """Source names that have sent alerts."""
    return list(await session.scalars(select(Alert.source).distinct().order_by(Alert.source)))


@dataclass(frozen=True)
class IncidentAlerts:
    """The alerts linked to an incident, and whether the IC should be asked to resolve it."""

    alerts: list[Alert]
    all_resolved: bool
    auto_declared: bool

    @property
    def prompt_resolve(self) -> bool:
        return self.auto_declared and self.all_resolved and bool(self.alerts)


async def alerts_of_incident(session: AsyncSession, *, incident: Incident) -> IncidentAlerts:
    """The incident's alerts, firing first; whether all are resolved on an alert-declared one."""
    alerts = list(
        await session.scalars(
            select(Alert)
            .where(Alert.incident_id == incident.id)
            .order_by(Alert.status, Alert.last_received_at.desc())
            .limit(50)
        )
    )
    bot = await session.scalar(select(User.id).where(func.lower(User.email) == BOT_EMAIL))
    return IncidentAlerts(
        alerts=alerts,
        all_resolved=all(a.status == "resolved" for a in alerts),
        auto_declared=incident.resolved_at is None and bot is not None and incident.declared_by_id == bot,
    )
