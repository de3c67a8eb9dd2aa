"""Whether, and how, an incident is on the status page: the rules both the incident service and
the status service apply (this module imports neither, so both may use it).

An incident is on the page while it is published (a person's decision, `published_at`) and
affects at least one component: a component its services name, with its severity's impact, or
one a responder set an impact on.
"""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import User
from app.incidents.models import Incident
from app.status.config import StatusConfig, get_status_config
from app.status.models import IncidentImpact

SEVERITY_IMPACT = {
    "SEV1": "major_outage",
    "SEV2": "partial_outage",
    "SEV3": "degraded_performance",
    "SEV4": "none",
}


def published_at_declaration(actor: User) -> bool:
    """An incident a person declares is public at once under `publish = "auto"`; one the product
    declares by itself (an alert) never is: what goes public is a person's decision."""
    return get_status_config().publish == "auto" and not actor.is_service


def effective_impacts(incident: Incident, explicit: dict[str, str], config: StatusConfig) -> dict[str, str]:
    """Component → impact: what a responder set, else what the severity implies for the
    components whose services the incident names. `none` entries are dropped."""
    implied = SEVERITY_IMPACT.get(incident.severity, "degraded_performance")
    impacts = {c.key: implied for c in config.components if set(c.services) & set(incident.services)}
    impacts.update(explicit)
    return {key: impact for key, impact in impacts.items() if impact != "none"}


async def impacts_of(session: AsyncSession, *, incident: Incident) -> dict[str, str]:
    """Component → impact for one incident, as the status page shows it once published."""
    rows = await session.scalars(select(IncidentImpact).where(IncidentImpact.incident_id == incident.id))
    explicit = {row.component: row.impact for row in rows}
    return effective_impacts(incident, explicit, get_status_config())


async def on_status_page(session: AsyncSession, *, incident: Incident) -> bool:
    """Published and affecting a component: stakeholders see it."""
    return incident.published_at is not None and bool(await impacts_of(session, incident=incident))
