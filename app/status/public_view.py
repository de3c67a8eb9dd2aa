"""The public status snapshot: everything the status page, its JSON and its feed show.

Nothing internal leaves through it: no internal titles, timeline, roles, people, action runs or
internal updates. An incident is public only while it is published (a person's decision) and
affects a component (app/status/publication.py).
"""

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import load_only

from app import clock
from app.auth.models import User
from app.config import get_settings
from app.incidents.models import Incident, TimelineEntry
from app.status.config import Component, StatusConfig, get_status_config
from app.status.models import IMPACTS, CommsUpdate, IncidentImpact
from app.status.publication import effective_impacts

IMPACT_RANK = {impact: rank for rank, impact in enumerate(IMPACTS)}
# What stakeholders are told of an incident's status, and of an impact.
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


def worst_of(impacts: Iterable[str]) -> str:
    """The most severe of `impacts` ("none" when there are none)."""
    return max(impacts, key=IMPACT_RANK.__getitem__, default="none")


async def _candidates(session: AsyncSession, config: StatusConfig, window_start: datetime) -> list[Incident]:
    """The incidents that can be public in the window: they name a component's service, or a
    responder set an impact. Unpublished ones are read for when they changed."""
    public_services = sorted({s for c in config.components for s in c.services})
    return list(
        await session.scalars(
            select(Incident)
            .options(load_only(*PUBLIC_COLUMNS))
            .where(
                or_(Incident.resolved_at.is_(None), Incident.resolved_at >= window_start),
                or_(
                    Incident.services.overlap(public_services),
                    Incident.id.in_(select(IncidentImpact.incident_id)),
                ),
            )
        )
    )


@dataclass
class _Details:
    """What the snapshot reads about its candidates, by incident id: the impacts responders set,
    the public updates of the history's days, and when each changed what the page shows."""

    explicit: dict[int, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    updates: dict[int, list[CommsUpdate]] = field(default_factory=lambda: defaultdict(list))
    changed: dict[int, list[datetime]] = field(default_factory=lambda: defaultdict(list))


async def _details(session: AsyncSession, candidates: list[Incident], history_start: datetime) -> _Details:
    found = _Details()
    ids = [i.id for i in candidates]
    if not ids:
        return found
    for row in await session.scalars(select(IncidentImpact).where(IncidentImpact.incident_id.in_(ids))):
        found.explicit[row.incident_id][row.component] = row.impact
    for update in await session.scalars(
        select(CommsUpdate)
        .where(CommsUpdate.incident_id.in_(ids), CommsUpdate.public, CommsUpdate.posted_at >= history_start)
        .order_by(CommsUpdate.posted_at.desc(), CommsUpdate.id.desc())
    ):
        found.updates[update.incident_id].append(update)
    published_ids = {i.id for i in candidates if i.published_at is not None}
    for incident_id, kind, at in await session.execute(
        select(TimelineEntry.incident_id, TimelineEntry.kind, func.max(TimelineEntry.recorded_at))
        .where(TimelineEntry.incident_id.in_(ids), TimelineEntry.kind.in_(PAGE_CHANGING_KINDS))
        .group_by(TimelineEntry.incident_id, TimelineEntry.kind)
    ):
        # An unpublished incident changes the page only by its status-page settings (being
        # taken off it, above all); its other moves are nobody's business outside.
        if incident_id in published_ids or kind == "impact":
            found.changed[incident_id].append(at)
    return found


def _public_incident(
    incident: Incident,
    affected: list[tuple[Component, str]],
    updates: list[CommsUpdate],
    updated_at: datetime,
) -> PublicIncident:
    return PublicIncident(
        id=public_id(incident.ref),
        title=_title(incident, affected),
        status=PUBLIC_STATUS[incident.status],
        impact=INDICATOR[worst_of(v for _, v in affected)],
        components=affected,
        started_at=incident.declared_at,
        resolved_at=incident.resolved_at,
        monitoring_at=incident.mitigated_at,
        updated_at=updated_at,
        # The promise made in public; an internal update does not move it, and a resolved
        # incident promises nothing.
        next_update_by=None if incident.resolved_at else incident.public_update_due_at,
        updates=[
            PublicUpdate(public_id(f"{incident.ref}/{u.id}"), u.status, u.body, u.posted_at) for u in updates
        ],
    )


@dataclass
class _Tally:
    """The public incidents as they are added: active or in the history, and the worst impact on
    each component now and on each day of the window."""

    now: datetime
    window_start: datetime
    history_start: datetime
    worst_now: dict[str, str] = field(default_factory=dict)
    down_days: dict[str, dict[date, str]] = field(default_factory=lambda: defaultdict(dict))
    active: list[PublicIncident] = field(default_factory=list)
    history: list[PublicIncident] = field(default_factory=list)

    def add(self, incident: Incident, public: PublicIncident) -> None:
        day = max(incident.declared_at, self.window_start).date()
        end = (incident.resolved_at or self.now).date()
        while day <= end:
            for component, impact in public.components:
                days = self.down_days[component.key]
                days[day] = worst_of((days.get(day, "none"), impact))
            day += timedelta(days=1)
        if incident.resolved_at is None:
            self.active.append(public)
            for component, impact in public.components:
                self.worst_now[component.key] = worst_of((self.worst_now.get(component.key, "none"), impact))
        elif incident.resolved_at >= self.history_start:
            self.history.append(public)

    def statuses(self, components: tuple[Component, ...]) -> list[ComponentStatus]:
        days = [(self.now - timedelta(days=n)).date() for n in range(UPTIME_DAYS - 1, -1, -1)]
        return [
            ComponentStatus(
                c,
                self.worst_now.get(c.key, "none"),
                [(d, self.down_days[c.key].get(d, "none")) for d in days],
            )
            for c in components
        ]


async def status_snapshot(session: AsyncSession) -> StatusSnapshot:
    """Everything the status page, its JSON and its feed show, computed in a few queries."""
    config = get_status_config()
    now = clock.now()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    # Whole days, so that what the page shows changes with the date only at midnight.
    tally = _Tally(
        now,
        window_start=today - timedelta(days=UPTIME_DAYS - 1),
        history_start=today - timedelta(days=HISTORY_DAYS - 1),
    )
    candidates = await _candidates(session, config, tally.window_start)
    details = await _details(session, candidates, tally.history_start)
    by_key = {c.key: c for c in config.components}
    for incident in (i for i in candidates if i.published_at is not None):
        changed = details.changed[incident.id]
        changed += [incident.declared_at, incident.severity_changed_at, incident.published_at]
        changed += [u.posted_at for u in details.updates[incident.id]]
        impacts = effective_impacts(incident, details.explicit[incident.id], config)
        affected = sorted(
            ((by_key[k], v) for k, v in impacts.items() if k in by_key), key=lambda pair: pair[0].position
        )
        if affected:
            tally.add(
                incident, _public_incident(incident, affected, details.updates[incident.id], max(changed))
            )
    statuses = tally.statuses(config.components)
    worst = worst_of(s.status for s in statuses)
    tally.active.sort(key=lambda i: (-IMPACT_RANK[worst_of(v for _, v in i.components)], i.started_at))
    tally.history.sort(key=lambda i: i.resolved_at or now, reverse=True)
    touched = [at for moments in details.changed.values() for at in moments]
    updated_at = max(touched) if touched else today
    first_account = await session.scalar(select(func.min(User.created_at)))
    return StatusSnapshot(
        name=config.name,
        sentence=_sentence(statuses, worst),
        indicator=INDICATOR[worst],
        worst=worst,
        components=statuses,
        active=tally.active,
        history=tally.history,
        updated_at=updated_at,
        modified_at=max(updated_at, today),
        components_since=first_account or today,
    )
