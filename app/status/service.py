"""Stakeholder communication: updates, impact per component, and the public status snapshot.

Nothing internal leaves through the snapshot: no internal titles, timeline, roles, people,
action runs or internal updates. An incident is public only while it is published (a person's
decision) and affects a component (app/status/publication.py).
"""

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import load_only, selectinload

from app import clock
from app.auth.models import User
from app.config import get_policy, get_settings
from app.errors import Conflict, InvalidInput, NotFound, NotPermitted
from app.incidents import service as incidents
from app.incidents import timers
from app.incidents.models import Incident, RoleAssignment, TimelineEntry
from app.status.config import Component, get_status_config
from app.status.models import IMPACTS, CommsUpdate, IncidentImpact
from app.status.publication import effective_impacts, impacts_of, on_status_page

IMPACT_RANK = {impact: rank for rank, impact in enumerate(IMPACTS)}
PUBLIC_STATUS = {
    "triage": "investigating",
    "investigating": "investigating",
    "identified": "identified",
    "monitoring": "monitoring",
    "resolved": "resolved",
}
IMPACT_WORDS = {
    "none": "operational",
    "degraded_performance": "slower than usual",
    "partial_outage": "partially down",
    "major_outage": "down",
}
INDICATOR = {
    "none": "none",
    "degraded_performance": "minor",
    "partial_outage": "major",
    "major_outage": "critical",
}
MAX_UPDATE = 5_000
PUBLIC_COLUMNS = (
    Incident.ref,
    Incident.public_title,
    Incident.severity,
    Incident.status,
    Incident.services,
    Incident.declared_at,
    Incident.mitigated_at,
    Incident.resolved_at,
    Incident.severity_changed_at,
    Incident.published_at,
    Incident.public_update_due_at,
)
# Timeline kinds that can change what the status page shows without a public update: a status
# move, and the status-page settings (impact, public title, publish, take off the page).
PAGE_CHANGING_KINDS = ("status", "impact")
HISTORY_DAYS = 14
UPTIME_DAYS = 90


# ---------------------------------------------------------------- writes


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


# ---------------------------------------------------------------- reads


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


@dataclass(frozen=True)
class PublicUpdate:
    id: str
    status: str
    body: str
    posted_at: datetime


@dataclass(frozen=True)
class PublicIncident:
    id: str
    title: str
    status: str
    impact: str
    components: list[tuple[Component, str]]
    started_at: datetime
    resolved_at: datetime | None
    monitoring_at: datetime | None
    updated_at: datetime
    next_update_by: datetime | None
    updates: list[PublicUpdate]

    @property
    def latest(self) -> PublicUpdate | None:
        return self.updates[0] if self.updates else None


@dataclass(frozen=True)
class ComponentStatus:
    component: Component
    status: str
    uptime: list[tuple[date, str]] = field(default_factory=list)

    @property
    def words(self) -> str:
        return IMPACT_WORDS[self.status] if self.status != "none" else "operational"


@dataclass(frozen=True)
class StatusSnapshot:
    name: str
    sentence: str
    indicator: str
    worst: str
    components: list[ComponentStatus]
    active: list[PublicIncident]
    history: list[PublicIncident]
    # The latest change stakeholders can see ("last change" on the page).
    updated_at: datetime
    # What Last-Modified says: also moves at midnight UTC, when the day bars and the history
    # move on, so a client asking "modified since?" is never told "no" about a changed copy.
    modified_at: datetime
    # Components come from icc.toml and have no creation time of their own: the first account's.
    components_since: datetime

    @property
    def groups(self) -> dict[str, list[ComponentStatus]]:
        grouped: dict[str, list[ComponentStatus]] = defaultdict(list)
        for c in self.components:
            grouped[c.component.group].append(c)
        return dict(grouped)


def public_id(ref: str) -> str:
    """An opaque id for the outside: the internal reference does not leave."""
    return hashlib.sha256((get_settings().secret_key + ref).encode()).hexdigest()[:12]


def public_base() -> str:
    """What the status page's links start with: ICC_PUBLIC_URL, else a path from the root."""
    return get_settings().public_url or "/"


def _title(incident: Incident, affected: list[tuple[Component, str]]) -> str:
    if incident.public_title:
        return incident.public_title
    names = [c.name for c, _ in affected]
    if not names:
        return "Service disruption"
    if len(names) == 1:
        return f"{names[0]} disruption"
    return f"{', '.join(names[:-1])} and {names[-1]} disruption"


def _sentence(statuses: list[ComponentStatus], worst: str) -> str:
    affected = sorted(
        (c for c in statuses if c.status != "none"),
        key=lambda c: (-IMPACT_RANK[c.status], c.component.position),
    )
    if not affected:
        return "All systems operational"
    phrases = [f"{c.component.name} is {IMPACT_WORDS[c.status]}" for c in affected]
    if len(phrases) <= 2:
        return " and ".join(phrases)
    return f"{phrases[0]}, and {len(phrases) - 1} other services are affected"


async def status_snapshot(session: AsyncSession) -> StatusSnapshot:
    """Everything the status page, its JSON and its feed show, computed in a few queries."""
    config = get_status_config()
    now = clock.now()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    # Whole days, so that what the page shows changes with the date only at midnight.
    window_start = today - timedelta(days=UPTIME_DAYS - 1)
    history_start = today - timedelta(days=HISTORY_DAYS - 1)
    public_services = sorted({s for c in config.components for s in c.services})
    candidates = list(
        await session.scalars(
            select(Incident)
            .options(load_only(*PUBLIC_COLUMNS))
            .where(
                or_(Incident.resolved_at.is_(None), Incident.resolved_at >= window_start),
                # Only incidents that can be public: they name a component's service, or a
                # responder set an impact. Unpublished ones are read for when they changed.
                or_(
                    Incident.services.overlap(public_services),
                    Incident.id.in_(select(IncidentImpact.incident_id)),
                ),
            )
        )
    )
    ids = [i.id for i in candidates]
    explicit: dict[int, dict[str, str]] = defaultdict(dict)
    updates: dict[int, list[CommsUpdate]] = defaultdict(list)
    changed: dict[int, list[datetime]] = defaultdict(list)
    if ids:
        for row in await session.scalars(select(IncidentImpact).where(IncidentImpact.incident_id.in_(ids))):
            explicit[row.incident_id][row.component] = row.impact
        for update in await session.scalars(
            select(CommsUpdate)
            .where(
                CommsUpdate.incident_id.in_(ids), CommsUpdate.public, CommsUpdate.posted_at >= history_start
            )
            .order_by(CommsUpdate.posted_at.desc(), CommsUpdate.id.desc())
        ):
            updates[update.incident_id].append(update)
        published_ids = {i.id for i in candidates if i.published_at is not None}
        for incident_id, kind, at in await session.execute(
            select(TimelineEntry.incident_id, TimelineEntry.kind, func.max(TimelineEntry.recorded_at))
            .where(TimelineEntry.incident_id.in_(ids), TimelineEntry.kind.in_(PAGE_CHANGING_KINDS))
            .group_by(TimelineEntry.incident_id, TimelineEntry.kind)
        ):
            # An unpublished incident changes the page only by its status-page settings (being
            # taken off it, above all); its other moves are nobody's business outside.
            if incident_id in published_ids or kind == "impact":
                changed[incident_id].append(at)
    by_key = {c.key: c for c in config.components}
    worst_now: dict[str, str] = {}
    down_days: dict[str, dict[date, str]] = defaultdict(dict)
    active: list[PublicIncident] = []
    history: list[PublicIncident] = []
    for incident in candidates:
        if incident.published_at is None:
            continue
        changed[incident.id] += [
            incident.declared_at,
            incident.severity_changed_at,
            incident.published_at,
            *(u.posted_at for u in updates[incident.id]),
        ]
        impacts = effective_impacts(incident, explicit[incident.id], config)
        affected = [(by_key[k], v) for k, v in impacts.items() if k in by_key]
        if not affected:
            continue
        affected.sort(key=lambda pair: pair[0].position)
        worst = max((v for _, v in affected), key=IMPACT_RANK.__getitem__)
        end = incident.resolved_at or now
        day = max(incident.declared_at, window_start).date()
        while day <= end.date():
            for component, impact in affected:
                previous = down_days[component.key].get(day, "none")
                down_days[component.key][day] = max(previous, impact, key=IMPACT_RANK.__getitem__)
            day += timedelta(days=1)
        public = PublicIncident(
            id=public_id(incident.ref),
            title=_title(incident, affected),
            status=PUBLIC_STATUS[incident.status],
            impact=INDICATOR[worst],
            components=affected,
            started_at=incident.declared_at,
            resolved_at=incident.resolved_at,
            monitoring_at=incident.mitigated_at,
            updated_at=max(changed[incident.id]),
            # The promise made in public; an internal update does not move it, and a resolved
            # incident promises nothing.
            next_update_by=None if incident.resolved_at else incident.public_update_due_at,
            updates=[
                PublicUpdate(public_id(f"{incident.ref}/{u.id}"), u.status, u.body, u.posted_at)
                for u in updates[incident.id]
            ],
        )
        if incident.resolved_at is None:
            active.append(public)
            for component, impact in affected:
                previous = worst_now.get(component.key, "none")
                worst_now[component.key] = max(previous, impact, key=IMPACT_RANK.__getitem__)
        elif incident.resolved_at >= history_start:
            history.append(public)
    days = [(now - timedelta(days=n)).date() for n in range(UPTIME_DAYS - 1, -1, -1)]
    statuses = [
        ComponentStatus(c, worst_now.get(c.key, "none"), [(d, down_days[c.key].get(d, "none")) for d in days])
        for c in config.components
    ]
    worst = max([s.status for s in statuses] or ["none"], key=IMPACT_RANK.__getitem__)
    active.sort(
        key=lambda i: (
            -IMPACT_RANK[max((v for _, v in i.components), key=IMPACT_RANK.__getitem__)],
            i.started_at,
        )
    )
    history.sort(key=lambda i: i.resolved_at or now, reverse=True)
    touched = [at for moments in changed.values() for at in moments]
    updated_at = max(touched) if touched else today
    first_account = await session.scalar(select(func.min(User.created_at)))
    return StatusSnapshot(
        name=config.name,
        sentence=_sentence(statuses, worst),
        indicator=INDICATOR[worst],
        worst=worst,
        components=statuses,
        active=active,
        history=history,
        updated_at=updated_at,
        modified_at=max(updated_at, today),
        components_since=first_account or today,
    )
