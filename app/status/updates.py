"""Stakeholder communication, as responders do it: updates (public or internal) and their
templates, the publication of an incident, its impact per component and its public title; and
what the incident page and the API read of them. What the public then sees is
app/status/public_view.py.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app import clock
from app.auth.models import User
from app.config import get_policy
from app.errors import Conflict, InvalidInput, NotFound, NotPermitted
from app.incidents import service as incidents
from app.incidents import timers
from app.incidents.models import Incident, RoleAssignment
from app.status.config import get_status_config
from app.status.models import IMPACTS, CommsUpdate, IncidentImpact
from app.status.public_view import IMPACT_WORDS, PUBLIC_STATUS
from app.status.publication import impacts_of, on_status_page

MAX_UPDATE = 5_000


async def _require_comms_role(session: AsyncSession, incident: Incident, actor: User) -> None:
    incidents.require_responder(actor)
    holder_roles = set(
        await session.scalars(
            select(RoleAssignment.role).where(
                RoleAssignment.incident_id == incident.id,
                RoleAssignment.user_id == actor.id,
                RoleAssignment.ended_at.is_(None),
                RoleAssignment.role.in_(("incident_commander", "comms_lead")),
            )
        )
    )
    if not holder_roles:
        raise NotPermitted(
            "Only the Comms Lead or the Incident Commander posts updates. Take one of those roles first."
        )


def update_templates(incident: Incident) -> dict[str, str]:
    """The shapes a stakeholder update starts from, by the public status it announces."""
    services = ", ".join(incident.services) or "our service"
    return {
        "investigating": (
            f"We are investigating reports of problems with {services}. Impact: … Next update by …"
        ),
        "identified": "We have identified the cause: … We are working on a fix. Impact: … Next update by …",
        "monitoring": "A fix is in place and we are watching the results. Impact: … Next update by …",
        "resolved": "This incident is resolved. Cause in brief: … We will publish a review.",
    }


async def post_update(
    session: AsyncSession,
    *,
    actor: User,
    ref: str,
    body: str,
    public: bool,
    status: str | None = None,
    reason: str | None = None,
) -> CommsUpdate:
    """Post a stakeholder update (public or internal), moving the incident's status in the same
    transaction if asked. Every update restarts the internal update timer; only a public one
    moves the "next update by" the status page promises."""
    body = incidents.clean_text(body, field="body", label="The update", max_len=MAX_UPDATE, required=True)
    reason = incidents.clean_text(
        reason, field="reason", label="Reason", max_len=incidents.MAX_REASON, required=False
    )
    incident = await incidents.lock_incident(session, ref)
    await _require_comms_role(session, incident, actor)
    if status and status != incident.status:
        await incidents.apply_status(
            session, incident=incident, actor=actor, status=status, reason=reason, closing_update=public
        )
    now = clock.now()
    incident.last_update_at = now
    if incident.resolved_at is None:
        incident.update_due_at = timers.update_deadline(get_policy().severity(incident.severity), now)
        if public and incident.published_at is not None:
            incident.public_update_due_at = incident.update_due_at
    update = CommsUpdate(
        incident_id=incident.id,
        body=body,
        public=public,
        status=PUBLIC_STATUS[incident.status],
        author_id=actor.id,
        posted_at=now,
    )
    session.add(update)
    audience = "Public" if public else "Internal"
    incidents.record_entry(session, incident, actor, "update", f"{audience} update: {body}", at=now)
    await session.commit()
    return update


async def change_status(
    session: AsyncSession,
    *,
    actor: User,
    ref: str,
    status: str,
    reason: str | None = None,
    public_update: str | None = None,
) -> None:
    """Move the incident's status, as the incident page and the API ask for it: with
    `public_update`, that public update is posted in the same transaction (how an incident on
    the status page is resolved: with its closing update)."""
    if public_update is None:
        await incidents.change_status(session, actor=actor, ref=ref, status=status, reason=reason)
        return
    body = incidents.clean_text(
        public_update, field="public_update", label="The public update", max_len=MAX_UPDATE, required=True
    )
    await post_update(session, actor=actor, ref=ref, body=body, public=True, status=status, reason=reason)


async def publish_incident(session: AsyncSession, *, actor: User, ref: str) -> None:
    """Put the incident on the status page (a responder's decision, recorded on the timeline);
    the page then promises its next update within the severity's cadence."""
    incidents.require_responder(actor)
    if actor.is_service:
        raise NotPermitted("Only a person publishes an incident to the status page.")
    incident = await incidents.lock_incident(session, ref)
    if incident.published_at is not None:
        raise Conflict(f"{ref} is already on the status page.")
    now = clock.now()
    incident.published_at, incident.published_by_id = now, actor.id
    if incident.resolved_at is None:
        incident.public_update_due_at = timers.update_deadline(get_policy().severity(incident.severity), now)
    text = "Published to the status page."
    if not await impacts_of(session, incident=incident):
        text += " It affects no component, so it does not show."
    incidents.record_entry(session, incident, actor, "impact", text, at=now)
    await session.commit()


async def unpublish_incident(session: AsyncSession, *, actor: User, ref: str) -> None:
    """Take the incident off the status page again (a false alarm), its history and feed
    included; recorded on the timeline. Publishing it later puts it back."""
    incidents.require_responder(actor)
    incident = await incidents.lock_incident(session, ref)
    if incident.published_at is None:
        raise Conflict(f"{ref} is not on the status page.")
    now = clock.now()
    incident.published_at = incident.published_by_id = incident.public_update_due_at = None
    incidents.record_entry(session, incident, actor, "impact", "Taken off the status page.", at=now)
    await session.commit()


async def set_impact(session: AsyncSession, *, actor: User, ref: str, component: str, impact: str) -> None:
    """Set how an incident affects one component of the status page."""
    incidents.require_responder(actor)
    config = get_status_config()
    target = config.component(component)
    if target is None:
        raise InvalidInput(f"No status component {component!r}.", field="component")
    if impact not in IMPACTS:
        raise InvalidInput(f"Impact must be one of {', '.join(IMPACTS)}.", field="impact")
    incident = await incidents.lock_incident(session, ref)
    now = clock.now()
    row = await session.get(IncidentImpact, (incident.id, component))
    if row is None:
        session.add(
            IncidentImpact(
                incident_id=incident.id, component=component, impact=impact, set_at=now, set_by_id=actor.id
            )
        )
    else:
        row.impact, row.set_at, row.set_by_id = impact, now, actor.id
    words = IMPACT_WORDS[impact]
    incidents.record_entry(
        session, incident, actor, "impact", f"Status page: {target.name} is {words}.", at=now
    )
    await session.commit()


async def set_public_title(session: AsyncSession, *, actor: User, ref: str, public_title: str) -> None:
    """Name the incident for stakeholders (the internal title never leaves)."""
    incidents.require_responder(actor)
    title = incidents.clean_text(
        public_title, field="public_title", label="The public title", max_len=200, required=False
    )
    incident = await incidents.lock_incident(session, ref)
    incident.public_title = title or None
    text = f"Public title: {title}" if title else "Public title cleared."
    incidents.record_entry(session, incident, actor, "impact", text, at=clock.now())
    await session.commit()


@dataclass(frozen=True)
class Publication:
    """Whether an incident is public, since when and by whom, and what the page promises."""

    published_at: datetime | None
    published_by: User | None
    on_status_page: bool  # published and affecting a component
    next_update_by: datetime | None  # the public promise; none once resolved


async def publication_of(session: AsyncSession, *, ref: str) -> Publication:
    """The incident's publication, for its page and the API."""
    incident = await session.scalar(select(Incident).where(Incident.ref == ref))
    if incident is None:
        raise NotFound(f"No incident {ref}.")
    by = await session.get(User, incident.published_by_id) if incident.published_by_id else None
    return Publication(
        published_at=incident.published_at,
        published_by=by,
        on_status_page=await on_status_page(session, incident=incident),
        next_update_by=None if incident.resolved_at else incident.public_update_due_at,
    )


async def list_updates(session: AsyncSession, *, ref: str) -> list[CommsUpdate]:
    """Every update of an incident, public and internal, newest first (for responders)."""
    incident_id = await session.scalar(select(Incident.id).where(Incident.ref == ref))
    if incident_id is None:
        raise NotFound(f"No incident {ref}.")
    return await latest_updates(session, incident_id=incident_id)


async def latest_updates(
    session: AsyncSession, *, incident_id: int, limit: int | None = None
) -> list[CommsUpdate]:
    """An incident's updates, public and internal, newest first; at most `limit` of them."""
    rows = await session.scalars(
        select(CommsUpdate)
        .where(CommsUpdate.incident_id == incident_id)
        .options(selectinload(CommsUpdate.author))
        .order_by(CommsUpdate.posted_at.desc(), CommsUpdate.id.desc())
        .limit(limit)
    )
    return list(rows)
