"""What alerts write on incidents' timelines, and as whom: the "Alert ingestion" account, alert
text kept as text inside markdown, and the entries of firing and resolved alerts."""

import re
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.adapters import NormalisedAlert
from app.alerts.models import Alert
from app.auth import service as accounts
from app.auth.models import User
from app.incidents import service as incidents
from app.incidents.models import Incident

BOT_EMAIL = "alerts@icc.invalid"
BOT_NAME = "Alert ingestion"
RESOLVED_LOCK = 0x1CC0A1  # pg_advisory_xact_lock(RESOLVED_LOCK, incident id): see record_resolved


def as_text(text: str) -> str:
    """Alert text inside a timeline entry stays text: markdown punctuation is escaped."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~])", r"\\\1", " ".join(text.split()))[:300]


async def alert_bot(session: AsyncSession) -> User:
    """The account that alert-made timeline entries and incidents are written as."""
    return await accounts.service_account(session, email=BOT_EMAIL, name=BOT_NAME)


def record_alert(
    session: AsyncSession,
    *,
    incident: Incident,
    bot: User,
    alert: NormalisedAlert,
    alert_id: int,
    what: str,
    source: str,
    at: datetime,
) -> None:
    """The entry of an alert that fires on the incident ("Firing", "Opened by alert", "Firing again")."""
    severity = f", {as_text(alert.severity)}" if alert.severity else ""
    incidents.record_entry(
        session,
        incident,
        bot,
        "alert",
        f"{what}: {as_text(alert.title)} ({source}{severity}, [alert {alert_id}](/alerts/{alert_id}))",
        at=at,
    )


async def record_resolved(
    session: AsyncSession, *, incident_id: int, bot: User, alert_ids: list[int], at: datetime
) -> None:
    """One entry per resolved alert; the last one also says, once, that every alert of an
    alert-declared incident is now resolved. Deliveries resolving alerts of one incident count
    its firing ones one at a time (a transaction lock), so the last resolve is seen as such once."""
    await session.execute(select(func.pg_advisory_xact_lock(RESOLVED_LOCK, incident_id)))
    incident = await session.get(Incident, incident_id, populate_existing=True)
    assert incident is not None
    resolved = (
        await session.execute(
            select(Alert.id, Alert.title, Alert.source).where(Alert.id.in_(alert_ids)).order_by(Alert.id)
        )
    ).all()
    firing = await session.scalar(
        select(func.count())
        .select_from(Alert)
        .where(Alert.incident_id == incident.id, Alert.status == "firing")
    )
    all_done = not firing and incident.resolved_at is None and incident.declared_by_id == bot.id
    for n, (alert_id, title, source) in enumerate(resolved, start=1):
        tail = ""
        if all_done and n == len(resolved):
            tail = " Every alert of this incident is resolved: the IC decides whether to resolve it."
        incidents.record_entry(
            session,
            incident,
            bot,
            "alert",
            f"Resolved: {as_text(title)} ({source}, [alert {alert_id}](/alerts/{alert_id})).{tail}",
            at=at,
        )
