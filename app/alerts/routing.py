"""Routing: which rule an alert (or a change event) falls under, what service and severity that
gives it, and, once a delivery's alerts are committed, attaching each newly firing one to an open
incident or declaring one for its group. One incident per group without a lock held across the
declaration: the group's client_key makes concurrent declarations one, and the link is a
compare-and-set."""

import hashlib

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.alerts import adapters, timeline
from app.alerts.adapters import NormalisedAlert
from app.alerts.config import AlertConfig, Route, Source
from app.alerts.models import Alert
from app.auth.models import User
from app.config import get_policy
from app.incidents import service as incidents
from app.incidents.models import Incident


def route_for(config: AlertConfig, source: str, labels: dict[str, str]) -> Route | None:
    """The first routing rule whose matchers all hold, or None (left for triage)."""
    return next((r for r in config.routes if r.matches(source, labels)), None)


def service_of(route: Route, labels: dict[str, str]) -> str | None:
    """The service a rule gives: its own, or the value of its service label when that is a name."""
    return route.service or adapters.service_name(labels.get(route.service_label))


def incident_severity(config: AlertConfig, route: Route | None, severity: str) -> str:
    """The severity of an incident declared for an alert: the rule's, else the mapped one, else SEV3."""
    keys = list(get_policy().severities)
    if route and route.severity:
        return route.severity
    mapped = config.severity_map.get(severity.lower())
    if mapped in keys:
        return mapped
    return "SEV3" if "SEV3" in keys else keys[-1]


def route_labels(alert: NormalisedAlert) -> dict[str, str]:
    """What routing rules match on an alert: its labels and its severity."""
    return {"severity": alert.severity, **alert.labels}


async def route_alerts(
    session: AsyncSession, *, source: Source, alerts: list[tuple[int, NormalisedAlert]]
) -> list[str]:
    """Attach or declare for each (alert id, alert) stored as newly firing, in their order; the
    references of the incidents they are on. Commits once; a declaration is committed as it is made."""
    if not alerts:
        return []
    bot = await timeline.alert_bot(session)
    refs: list[str] = []
    for alert_id, alert in alerts:
        ref = await _route_alert(session, source=source, alert=alert, alert_id=alert_id, bot=bot)
        if ref and ref not in refs:
            refs.append(ref)
    await session.commit()
    return refs


async def _route_alert(
    session: AsyncSession, *, source: Source, alert: NormalisedAlert, alert_id: int, bot: User
) -> str | None:
    """Attach a firing alert to an open incident, or declare one; None when left for triage or
    when another delivery routed it first."""
    row = await session.get(Alert, alert_id, populate_existing=True)
    assert row is not None
    if row.status != "firing" or row.route_action == "triage":
        return None
    old_incident = row.incident_id
    if old_incident is not None:
        linked = await session.get(Incident, old_incident)
        if linked is not None and linked.resolved_at is None:
            return linked.ref  # routed meanwhile
    incident = await _open_incident_for(
        session, source=source, alert=alert, alert_id=alert_id, service=row.service,
        by_service=row.route_action == "attach",
    )  # fmt: skip
    opened = False
    if incident is None:
        if row.route_action != "declare":
            return None
        incident = await _declare_for(session, source=source, row=row, title=alert.group_title, bot=bot)
        opened = incident.declared_by_id == bot.id
    claimed = await session.scalar(
        update(Alert)
        .where(
            Alert.id == alert_id,
            or_(Alert.incident_id.is_(None), Alert.incident_id == old_incident),
        )
        .values(incident_id=incident.id, opened_incident=opened)
        .returning(Alert.id)
    )
    if claimed is None:
        return None  # another delivery routed it first; nothing was written for it here
    what = "Opened by alert" if opened else "Firing"
    timeline.record_alert(
        session, incident=incident, bot=bot, alert=alert, alert_id=alert_id, what=what,
        source=source.name, at=clock.now(),
    )  # fmt: skip
    return incident.ref


async def _open_incident_for(
    session: AsyncSession,
    *,
    source: Source,
    alert: NormalisedAlert,
    alert_id: int,
    service: str | None,
    by_service: bool,
) -> Incident | None:
    if alert.group_key:
        found = await session.scalar(
            select(Incident)
            .join(Alert, Alert.incident_id == Incident.id)
            .where(
                Alert.source == source.name,
                Alert.group_key == alert.group_key,
                Alert.id != alert_id,
                Incident.resolved_at.is_(None),
            )
            .order_by(Incident.id.desc())
            .limit(1)
        )
        if found is not None:
            return found
    if by_service and service:
        return await session.scalar(
            select(Incident)
            .where(Incident.resolved_at.is_(None), Incident.services.contains([service]))
            .order_by(Incident.id.desc())
            .limit(1)
        )
    return None


async def _declare_for(
    session: AsyncSession, *, source: Source, row: Alert, title: str | None, bot: User
) -> Incident:
    """Declare the incident of an alert's group, called as the group is (else as the alert)."""
    group = row.group_key or row.dedup_key
    last = await session.scalar(
        select(func.max(Incident.id))
        .join(Alert, Alert.incident_id == Incident.id)
        .where(
            Alert.source == source.name,
            func.coalesce(Alert.group_key, Alert.dedup_key) == group,
            Incident.resolved_at.is_not(None),
        )
    )
    # Concurrent deliveries for one group compute the same key (it changes only when one of the
    # group's incidents is resolved), so declare_incident's unique client_key makes them one.
    client_key = (
        "alert:" + hashlib.sha256(f"{source.name}\x1f{group}".encode()).hexdigest()[:40] + f":{last or 0}"
    )
    title = title or row.title
    title = title if len(title) <= incidents.MAX_TITLE else title[: incidents.MAX_TITLE - 1] + "…"
    summary = timeline.as_text(
        f"Declared by alert {row.id} from {source.name}: {row.title}"[: incidents.MAX_SUMMARY]
    )
    declaration = {
        "actor": bot,
        "title": title,
        "severity": row.incident_severity or "SEV3",
        "summary": summary,
        "services": [row.service] if row.service else None,
    }
    incident = await incidents.declare_incident(session, **declaration, client_key=client_key)
    if incident.resolved_at is not None:
        # The key of an earlier, resolved incident (its alert was unlinked by hand): a fresh one.
        fresh_key = f"{client_key[:48]}:{row.id}:{clock.now().timestamp():.0f}"
        incident = await incidents.declare_incident(session, **declaration, client_key=fresh_key)
    return incident
