"""What people do to alerts: acknowledge one, put it on an incident by hand, or take it off
(then it stays in triage). Each is one transaction, its timeline entries included."""

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.alerts.models import Alert
from app.alerts.queries import get_alert
from app.alerts.timeline import as_text
from app.auth.models import User
from app.errors import Conflict, NotFound
from app.incidents import service as incidents
from app.incidents.models import Incident


def _record(
    session: AsyncSession,
    incident: Incident,
    actor: User,
    alert: Alert,
    verb: str,
    *,
    at: datetime,
    after: str = "",
) -> None:
    """A person's entry about an alert: "<verb> [alert N](/alerts/N)<after>: <its title>"."""
    link = f"[alert {alert.id}](/alerts/{alert.id})"
    incidents.record_entry(
        session, incident, actor, "alert", f"{verb} {link}{after}: {as_text(alert.title)}", at=at
    )


async def _locked_alert(session: AsyncSession, alert_id: int) -> Alert:
    alert = await session.scalar(select(Alert).where(Alert.id == alert_id).with_for_update())
    if alert is None:
        raise NotFound(f"No alert {alert_id}.")
    return alert


async def acknowledge_alert(session: AsyncSession, *, actor: User, alert_id: int) -> Alert:
    """Someone has seen this alert: who and when are kept; a second acknowledgement is a 409."""
    incidents.require_responder(actor)
    now = clock.now()
    claimed = await session.scalar(
        update(Alert)
        .where(Alert.id == alert_id, Alert.acknowledged_at.is_(None))
        .values(acknowledged_at=now, acknowledged_by_id=actor.id)
        .returning(Alert.id)
    )
    if claimed is None:
        alert = await get_alert(session, alert_id=alert_id)
        who = alert.acknowledged_by.name if alert.acknowledged_by else "its sender"
        raise Conflict(f"Alert {alert_id} was already acknowledged by {who}.")
    alert = await session.get(Alert, alert_id)
    assert alert is not None
    if alert.incident_id is not None:
        incident = await session.get(Incident, alert.incident_id)
        assert incident is not None
        _record(session, incident, actor, alert, "Acknowledged", at=now)
    await session.commit()
    return await get_alert(session, alert_id=alert_id)


async def link_alert(session: AsyncSession, *, actor: User, alert_id: int, ref: str) -> Alert:
    """Put an alert on an incident by hand (moving it from another one if need be)."""
    incidents.require_responder(actor)
    incident = await incidents.lock_incident(session, ref.strip())
    alert = await _locked_alert(session, alert_id)
    if alert.incident_id == incident.id:
        raise Conflict(f"Alert {alert_id} is already on {incident.ref}.")
    now = clock.now()
    if alert.incident_id is not None:
        previous = await session.get(Incident, alert.incident_id)
        assert previous is not None
        _record(session, previous, actor, alert, "Moved", at=now, after=f" to {incident.ref}")
    alert.incident_id = incident.id
    alert.opened_incident = False
    _record(session, incident, actor, alert, "Linked", at=now, after=f" ({alert.status})")
    await session.commit()
    return await get_alert(session, alert_id=alert_id)


async def unlink_alert(session: AsyncSession, *, actor: User, alert_id: int) -> Alert:
    """Take an alert off its incident; it stays in triage (repeat deliveries do not re-route it)."""
    incidents.require_responder(actor)
    alert = await _locked_alert(session, alert_id)
    if alert.incident_id is None:
        raise Conflict(f"Alert {alert_id} is not on an incident.")
    incident = await session.get(Incident, alert.incident_id)
    assert incident is not None
    now = clock.now()
    alert.incident_id = None
    alert.opened_incident = False
    alert.route_action = "triage"
    alert.unlinked_at = now
    _record(session, incident, actor, alert, "Unlinked", at=now)
    await session.commit()
    return await get_alert(session, alert_id=alert_id)
