"""Change events (PagerDuty's deploys and config pushes): kept as they came, given a service by
the routing rules, listed for the API and shown on the incidents of their service. They open
and join nothing."""

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.alerts import queries, routing
from app.alerts.adapters import NormalisedChange
from app.alerts.config import AlertConfig, Source
from app.alerts.models import ChangeEvent
from app.incidents.models import Incident

CHANGES_BEFORE = timedelta(hours=1)  # an incident shows the changes of the hour before it, and since


def change_service(config: AlertConfig, source: Source, labels: dict[str, str]) -> str | None:
    """A change event's service, found as an alert's: the first routing rule that matches its
    labels (its custom details and `source`) names it, or names the label that holds it."""
    route = routing.route_for(config, source.name, labels)
    return None if route is None else routing.service_of(route, labels)


async def store_change_event(
    session: AsyncSession, *, config: AlertConfig, source: Source, change: NormalisedChange, now: datetime
) -> ChangeEvent:
    """Keep a change event as it came; flushes, the caller commits."""
    event = ChangeEvent(
        source=source.name,
        summary=change.summary,
        origin=change.origin,
        occurred_at=change.occurred_at or now,
        received_at=now,
        service=change_service(config, source, change.labels),
        custom_details=change.custom_details,
        links=change.links,
        raw=change.raw,
    )
    session.add(event)
    await session.flush()
    return event


async def list_change_events(
    session: AsyncSession, *, service: str | None, since: datetime | None, cursor: int | None, limit: int
) -> tuple[list[ChangeEvent], int | None]:
    """Change events, the last received first; `since` is on when they happened; `cursor` is the
    last id seen."""
    query = select(ChangeEvent)
    if service:
        query = query.where(ChangeEvent.service == service.strip().lower())
    queries.check_since(since)
    if since is not None:
        query = query.where(ChangeEvent.occurred_at >= since)
    return await queries.newest_first(session, query, id_column=ChangeEvent.id, cursor=cursor, limit=limit)


async def changes_for_incident(
    session: AsyncSession, *, incident: Incident, limit: int = 10
) -> list[ChangeEvent]:
    """The changes on the incident's services from the hour before it was declared until now,
    the latest first: what a responder reviews first ("what changed?")."""
    if not incident.services:
        return []
    return list(
        await session.scalars(
            select(ChangeEvent)
            .where(
                ChangeEvent.service.in_(incident.services),
                ChangeEvent.occurred_at >= incident.declared_at - CHANGES_BEFORE,
                ChangeEvent.occurred_at <= clock.now(),
            )
            .order_by(ChangeEvent.occurred_at.desc(), ChangeEvent.id.desc())
            .limit(limit)
        )
    )
