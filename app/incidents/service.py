"""The incident service: every rule about incidents lives here, for pages and API alike."""

import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, bindparam, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql import Executable

from app import clock
from app.auth.models import User
from app.config import ROLE_CHECKLIST_ITEMS, Policy, get_policy
from app.errors import Conflict, InvalidInput, InvalidTransition, NotFound, NotPermitted
from app.incidents import timers
from app.incidents.models import (
    ENTRY_KINDS_WRITTEN,
    ROLES,
    SINGLE_ROLES,
    STATUSES,
    ChecklistItem,
    Incident,
    IncidentRefCounter,
    RoleAssignment,
    TimelineEntry,
    TimelineRevision,
)
from app.schemas import unstorable
from app.status import publication

ROLE_LABELS = {
    "incident_commander": "Incident Commander",
    "comms_lead": "Comms Lead",
    "tech_lead": "Tech Lead",
    "scribe": "Scribe",
    "sme": "SME",
}
STATUS_LABELS = {
    "triage": "Triage",
    "investigating": "Investigating",
    "identified": "Identified",
    "monitoring": "Monitoring",
    "resolved": "Resolved",
}
# Forward moves may skip steps (a false alarm goes straight from triage to resolved); the only
# backward moves are a fix that did not hold and a reopened incident.
BACKWARD_MOVES = {("monitoring", "investigating"), ("resolved", "investigating")}
MITIGATED_STATUSES = ("monitoring", "resolved")

MAX_TITLE = 200
MAX_SUMMARY = 10_000
MAX_BODY = 20_000
MAX_REASON = 1_000
MAX_SERVICES = 20
# ASCII, as a service's name is in Alertmanager's labels, deployments and URLs (and so the API's
# schema can say it as a pattern).
SERVICE_NAME_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-_. /")
BACKDATE_LIMIT = timedelta(days=30)
FUTURE_TOLERANCE = timedelta(minutes=2)


@dataclass(frozen=True)
class IncidentDetail:
    """An incident with what its page and its API representation show."""

    incident: Incident
    roles: dict[str, User | None]
    smes: list[User]
    checklist: list[ChecklistItem]
    timers: dict[str, timers.Timer | None]

    @property
    def commander(self) -> User | None:
        return self.roles["incident_commander"]

    @property
    def most_urgent(self) -> timers.Timer | None:
        return timers.most_urgent(self.timers.values())


# ---------------------------------------------------------------- validation helpers


def require_responder(actor: User) -> None:
    """Refuse viewers: they read incidents and change nothing."""
    if not actor.can_respond:
        raise NotPermitted("Viewers can read incidents but cannot change them.")


def clean_text(value: str | None, *, field: str, label: str, max_len: int, required: bool) -> str:
    """Trimmed text within its limits, or InvalidInput naming the field."""
    text = (value or "").strip()
    if problem := unstorable(text):
        raise InvalidInput(f"{label} {problem}.", field=field)
    if required and not text:
        raise InvalidInput(f"{label} is required.", field=field)
    if len(text) > max_len:
        raise InvalidInput(
            f"{label} is too long ({len(text):,} characters; the limit is {max_len:,}).", field=field
        )
    return text


def _clean_services(services: Sequence[str] | str | None) -> list[str]:
    if services is None:
        return []
    if isinstance(services, str):
        services = services.replace("\n", ",").split(",")
    cleaned: list[str] = []
    for raw in services:
        name = raw.strip()
        if not name:
            continue
        if len(name) > 64 or not all(c in SERVICE_NAME_CHARACTERS for c in name):
            raise InvalidInput(
                f"Service {name[:64]!r} is not a valid name: use letters, digits, '-', '_', '.'.",
                field="services",
            )
        name = name.lower()
        if name not in cleaned:
            cleaned.append(name)
    if len(cleaned) > MAX_SERVICES:
        raise InvalidInput(f"At most {MAX_SERVICES} services per incident.", field="services")
    return cleaned


def _check_severity(policy: Policy, severity: str | None) -> str:
    key = (severity or "").strip().upper()
    if key not in policy.severities:
        choices = ", ".join(policy.severities)
        if not key:
            raise InvalidInput(f"Choose a severity: {choices}.", field="severity")
        raise InvalidInput(f"Unknown severity {severity!r}: choose one of {choices}.", field="severity")
    return key


# ---------------------------------------------------------------- reads


def allowed_moves(status: str) -> list[str]:
    """The statuses an incident in `status` may move to, in lifecycle order."""
    forward = list(STATUSES[STATUSES.index(status) + 1 :])
    return [b for a, b in sorted(BACKWARD_MOVES) if a == status] + forward


def resolve_refusal(*, commander: User | None, actor: User) -> str | None:
    """Why `actor` may not resolve the incident, or None when they may: only its Incident
    Commander resolves (admins too must take the role first)."""
    if commander is not None and commander.id == actor.id:
        return None
    if commander is None:
        return "Only the Incident Commander can resolve this incident, and nobody is IC yet."
    return f"Only the Incident Commander, {commander.name}, can resolve this incident."


def severities(policy: Policy | None = None) -> list:
    """The severity policy in force, most severe first."""
    return list((policy or get_policy()).severities.values())


async def lock_incident(session: AsyncSession, ref: str) -> Incident:
    """Load an incident for a change, its row locked until the transaction ends."""
    incident = await session.scalar(select(Incident).where(Incident.ref == ref).with_for_update())
    if incident is None:
        raise NotFound(f"No incident {ref}.")
    return incident


def compute_timers(incident: Incident, now: datetime) -> dict[str, timers.Timer | None]:
    """The ack, mitigation and next-update timers of an incident at `now`.

    Resolving stops every timer: an incident resolved before anyone acknowledged it counts as
    acknowledged at resolution.
    """
    restarted = incident.severity_changed_at
    update_start = max(t for t in (incident.declared_at, restarted, incident.last_update_at) if t)
    ack_met = incident.acknowledged_at or incident.resolved_at
    return {
        "ack": timers.make_timer(
            "ack",
            "Acknowledge",
            incident.declared_at if ack_met else restarted,
            incident.ack_due_at,
            ack_met,
            now,
        ),
        "mitigation": timers.make_timer(
            "mitigation",
            "Mitigate",
            incident.declared_at if incident.mitigated_at else restarted,
            incident.mitigation_due_at,
            incident.mitigated_at,
            now,
        ),
        "next_update": None
        if incident.resolved_at
        else timers.make_timer("next_update", "Next update", update_start, incident.update_due_at, None, now),
    }


async def get_incident_detail(session: AsyncSession, *, ref: str) -> IncidentDetail:
    """Load an incident with its current roles, checklist and timers, or raise NotFound."""
    incident = await session.scalar(
        select(Incident)
        .where(Incident.ref == ref)
        .options(selectinload(Incident.checklist).selectinload(ChecklistItem.done_by))
    )
    if incident is None:
        raise NotFound(f"No incident {ref}.")
    holders = await session.scalars(
        select(RoleAssignment)
        .where(RoleAssignment.incident_id == incident.id, RoleAssignment.ended_at.is_(None))
        .options(selectinload(RoleAssignment.user))
        .order_by(RoleAssignment.assigned_at)
    )
    roles: dict[str, User | None] = dict.fromkeys(SINGLE_ROLES)
    smes: list[User] = []
    for assignment in holders:
        if assignment.role == "sme":
            smes.append(assignment.user)
        else:
            roles[assignment.role] = assignment.user
    return IncidentDetail(
        incident=incident,
        roles=roles,
        smes=smes,
        checklist=list(incident.checklist),
        timers=compute_timers(incident, clock.now()),
    )


@dataclass(frozen=True)
class IncidentRow:
    incident: Incident
    commander: User | None
    timers: dict[str, timers.Timer | None]

    @property
    def most_urgent(self) -> timers.Timer | None:
        return timers.most_urgent(self.timers.values())


def _filtered(
    query: Select,
    *,
    status: str | None,
    severity: str | None,
    active: bool | None,
    service: str | None,
    q: str | None,
) -> Select:
    if status:
        if status not in STATUSES:
            raise InvalidInput(f"Unknown status {status!r}.", field="status")
        query = query.where(Incident.status == status)
    if severity:
        query = query.where(Incident.severity == _check_severity(get_policy(), severity))
    if active is True:
        query = query.where(Incident.resolved_at.is_(None))
    elif active is False:
        query = query.where(Incident.resolved_at.is_not(None))
    if service:
        query = query.where(Incident.services.contains([service.strip().lower()]))
    if q and q.strip():
        pattern = "%" + q.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(Incident.title.ilike(pattern), Incident.summary.ilike(pattern), Incident.ref.ilike(pattern))
        )
    return query


async def _with_commanders(session: AsyncSession, incidents: Sequence[Incident]) -> list[IncidentRow]:
    ids = [i.id for i in incidents]
    commanders: dict[int, User] = {}
    if ids:
        rows = await session.execute(
            select(RoleAssignment.incident_id, User)
            .join(User, User.id == RoleAssignment.user_id)
            .where(
                RoleAssignment.incident_id.in_(ids),
                RoleAssignment.role == "incident_commander",
                RoleAssignment.ended_at.is_(None),
            )
        )
        commanders = {incident_id: user for incident_id, user in rows}
    now = clock.now()
    return [IncidentRow(i, commanders.get(i.id), compute_timers(i, now)) for i in incidents]


async def list_incidents(
    session: AsyncSession,
    *,
    status: str | None = None,
    severity: str | None = None,
    active: bool | None = None,
    service: str | None = None,
    q: str | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> tuple[list[IncidentRow], int | None]:
    """Incidents newest first, filtered, a page at a time (`cursor` is the last id seen)."""
    query = _filtered(select(Incident), status=status, severity=severity, active=active, service=service, q=q)
    if cursor is not None:
        query = query.where(Incident.id < cursor)
    found = list(await session.scalars(query.order_by(Incident.id.desc()).limit(limit + 1)))
    next_cursor = found[limit - 1].id if len(found) > limit else None
    return await _with_commanders(session, found[:limit]), next_cursor


@dataclass(frozen=True)
class Board:
    """What the incident list page shows: active incidents by urgency, then recently resolved."""

    active: list[IncidentRow]
    resolved: list[IncidentRow]
    counts: dict[str, int]


async def incident_board(
    session: AsyncSession,
    *,
    status: str | None = None,
    severity: str | None = None,
    service: str | None = None,
    q: str | None = None,
    resolved_limit: int = 20,
) -> Board:
    """Active incidents sorted by severity then age, counts per severity, recent resolutions."""
    filters = {"status": status, "severity": severity, "service": service, "q": q}
    active = await session.scalars(
        _filtered(select(Incident), active=True, **filters).order_by(Incident.severity, Incident.declared_at)
    )
    resolved = await session.scalars(
        _filtered(select(Incident), active=False, **filters)
        .order_by(Incident.resolved_at.desc())
        .limit(resolved_limit)
    )
    counted = await session.execute(
        select(Incident.severity, func.count())
        .where(Incident.resolved_at.is_(None))
        .group_by(Incident.severity)
    )
    counts = {sev.key: 0 for sev in severities()}
    counts.update({severity: n for severity, n in counted})
    return Board(
        active=await _with_commanders(session, list(active)),
        resolved=await _with_commanders(session, list(resolved)),
        counts=counts,
    )


# ---------------------------------------------------------------- writes


def record_entry(
    session: AsyncSession,
    incident: Incident,
    actor: User,
    kind: str,
    body: str,
    *,
    at: datetime,
) -> TimelineEntry:
    """Write the timeline entry of a state change, in the caller's transaction."""
    entry = TimelineEntry(
        incident_id=incident.id,
        kind=kind,
        body=body,
        author_id=actor.id,
        occurred_at=at,
        recorded_at=at,
        revision=1,
    )
    session.add(entry)
    return entry


async def _next_ref(session: AsyncSession, when: datetime) -> str:
    day = when.date()
    number = await session.scalar(
        insert(IncidentRefCounter)
        .values(day=day, last_number=1)
        .on_conflict_do_update(
            index_elements=[IncidentRefCounter.day],
            set_={"last_number": IncidentRefCounter.last_number + 1},
        )
        .returning(IncidentRefCounter.last_number)
    )
    return f"INC-{day:%Y%m%d}-{number:02d}"


async def declare_incident(
    session: AsyncSession,
    *,
    actor: User,
    title: str,
    severity: str,
    summary: str | None = None,
    services: Sequence[str] | str | None = None,
    client_key: str | None = None,
    as_commander: bool = False,
) -> Incident:
    """Declare an incident in triage, with its reference, deadlines and checklist; with
    `as_commander`, the declarer is its Incident Commander from the same transaction on."""
    require_responder(actor)
    if as_commander and actor.is_service:
        raise InvalidInput(
            f"{actor.name} is the product's own account, not a person: it cannot be the Incident Commander.",
            field="as_commander",
        )
    policy = get_policy()
    title = clean_text(title, field="title", label="Title", max_len=MAX_TITLE, required=True)
    key = _check_severity(policy, severity)
    summary = clean_text(summary, field="summary", label="Summary", max_len=MAX_SUMMARY, required=False)
    service_list = _clean_services(services)
    if client_key:
        existing = await session.scalar(select(Incident).where(Incident.client_key == client_key))
        if existing is not None:
            return existing
    now = clock.now()
    sev = policy.severity(key)
    published = publication.published_at_declaration(actor)
    try:
        # A savepoint: a lost race undoes this reference and insert only, never the caller's work.
        async with session.begin_nested():
            incident = Incident(
                ref=await _next_ref(session, now),
                title=title,
                summary=summary,
                severity=key,
                status="triage",
                services=service_list,
                declared_at=now,
                declared_by_id=actor.id,
                severity_changed_at=now,
                ack_due_at=timers.ack_deadline(sev, now),
                mitigation_due_at=timers.mitigation_deadline(sev, now),
                update_due_at=timers.update_deadline(sev, now),
                published_at=now if published else None,
                published_by_id=actor.id if published else None,
                public_update_due_at=timers.update_deadline(sev, now) if published else None,
                client_key=client_key or None,
            )
            session.add(incident)
    except IntegrityError:
        # The same form submitted twice at once (or one alert group's deliveries): the first declared it.
        existing = await session.scalar(select(Incident).where(Incident.client_key == client_key))
        if existing is None or not client_key:
            raise
        return existing
    for position, (item_key, label) in enumerate(sev.checklist):
        session.add(ChecklistItem(incident_id=incident.id, key=item_key, label=label, position=position))
    affected = f" Affected: {', '.join(service_list)}." if service_list else ""
    record_entry(session, incident, actor, "declared", f"Declared {key}: {title}.{affected}", at=now)
    if as_commander:
        role = "incident_commander"
        session.add(
            RoleAssignment(
                incident_id=incident.id, role=role, user_id=actor.id, assigned_at=now, assigned_by_id=actor.id
            )
        )
        record_entry(session, incident, actor, "role", f"{actor.name} is {ROLE_LABELS[role]}.", at=now)
        await _tick_for_role(session, incident, actor, role, holder=actor, at=now)
    await session.commit()
    return incident


async def acknowledge_incident(session: AsyncSession, *, actor: User, ref: str) -> Incident:
    """Acknowledge: someone is on it. Stops the ack timer."""
    require_responder(actor)
    incident = await lock_incident(session, ref)
    if incident.acknowledged_at is not None:
        raise Conflict(f"{ref} was already acknowledged.")
    now = clock.now()
    incident.acknowledged_at = now
    incident.acknowledged_by_id = actor.id
    record_entry(session, incident, actor, "acknowledged", f"Acknowledged by {actor.name}.", at=now)
    await session.commit()
    return incident


async def change_severity(
    session: AsyncSession, *, actor: User, ref: str, severity: str, reason: str
) -> Incident:
    """Move the severity up or down, with a reason. Timers still running restart under the
    new severity's SLA from this moment; timers already stopped keep their outcome."""
    require_responder(actor)
    policy = get_policy()
    key = _check_severity(policy, severity)
    reason = clean_text(reason, field="reason", label="A reason", max_len=MAX_REASON, required=True)
    incident = await lock_incident(session, ref)
    if incident.severity == key:
        raise Conflict(f"{ref} is already {key}.")
    now = clock.now()
    sev = policy.severity(key)
    previous = incident.severity
    incident.severity = key
    incident.severity_changed_at = now
    if incident.acknowledged_at is None:
        incident.ack_due_at = timers.ack_deadline(sev, now)
    if incident.mitigated_at is None:
        incident.mitigation_due_at = timers.mitigation_deadline(sev, now)
    if incident.resolved_at is None:
        incident.update_due_at = timers.update_deadline(sev, now)
        if incident.published_at is not None:  # the public promise restarts too
            incident.public_update_due_at = incident.update_due_at
    direction = "Raised" if key < previous else "Lowered"
    record_entry(
        session, incident, actor, "severity", f"{direction} severity {previous} → {key}: {reason}", at=now
    )
    await session.commit()
    return incident


async def change_status(
    session: AsyncSession, *, actor: User, ref: str, status: str, reason: str | None = None
) -> Incident:
    """Move the incident along triage → investigating → identified → monitoring → resolved.

    Only the assigned Incident Commander may resolve, and one on the status page only with its
    closing public update (app.status.updates.change_status posts both). Entering monitoring or
    resolved marks the incident mitigated; falling back to investigating or reopening clears that.
    """
    require_responder(actor)
    reason = clean_text(reason, field="reason", label="Reason", max_len=MAX_REASON, required=False)
    incident = await lock_incident(session, ref)
    await apply_status(session, incident=incident, actor=actor, status=status, reason=reason)
    await session.commit()
    return incident


async def apply_status(
    session: AsyncSession,
    *,
    incident: Incident,
    actor: User,
    status: str,
    reason: str,
    closing_update: bool = False,
) -> None:
    """The rules of a status move, applied to a locked incident without committing.

    Resolving an incident that is on the status page needs its closing public update in the same
    transaction (`closing_update`: the caller posts it), so the page never ends on a promise."""
    if status not in STATUSES:
        raise InvalidInput(f"Unknown status {status!r}: choose one of {', '.join(STATUSES)}.", field="status")
    ref = incident.ref
    current = incident.status
    if status == current:
        raise InvalidTransition(f"{ref} is already {STATUS_LABELS[status].lower()}.")
    allowed = allowed_moves(current)
    if status not in allowed:
        raise InvalidTransition(
            f"Cannot move {ref} from {current} to {status}; from {current} it can go to {', '.join(allowed)}."
        )
    if status == "resolved":
        commander = await session.scalar(
            select(User)
            .join(RoleAssignment, RoleAssignment.user_id == User.id)
            .where(
                RoleAssignment.incident_id == incident.id,
                RoleAssignment.role == "incident_commander",
                RoleAssignment.ended_at.is_(None),
            )
        )
        if refusal := resolve_refusal(commander=commander, actor=actor):
            raise NotPermitted(f"{refusal} Take the IC role to resolve it.")
        if not closing_update and await publication.on_status_page(session, incident=incident):
            raise InvalidInput(
                f"{ref} is on the status page, so resolving it takes its closing public update "
                "(public_update) in the same step.",
                field="public_update",
            )
    now = clock.now()
    policy = get_policy().severity(incident.severity)
    incident.status = status
    if status in MITIGATED_STATUSES and incident.mitigated_at is None:
        incident.mitigated_at = now
    if status == "resolved":
        incident.resolved_at = now
    if status == "investigating" and current in MITIGATED_STATUSES:
        incident.mitigated_at = None
        if current == "resolved":
            incident.resolved_at = None
            incident.mitigation_due_at = timers.mitigation_deadline(policy, now)
            incident.update_due_at = timers.update_deadline(policy, now)
            if incident.published_at is not None:
                incident.public_update_due_at = incident.update_due_at
    verb = "Reopened" if current == "resolved" else "Status"
    text = f"{verb}: {STATUS_LABELS[current]} → {STATUS_LABELS[status]}"
    record_entry(session, incident, actor, "status", f"{text}. {reason}" if reason else f"{text}.", at=now)


async def _user_by_email(session: AsyncSession, email: str) -> User:
    if problem := unstorable(email or ""):
        raise InvalidInput(f"The email {problem}.", field="email")
    user = await session.scalar(select(User).where(func.lower(User.email) == (email or "").strip().lower()))
    if user is None or not user.is_active:
        raise InvalidInput(f"No active user with email {email!r}.", field="email")
    return user


async def _person_by_email(session: AsyncSession, email: str) -> User:
    """Who may take a response role: an active user who is a person."""
    user = await _user_by_email(session, email)
    if user.is_service:
        raise InvalidInput(
            f"The email {user.email} is the product's own account ({user.name}), not a person: "
            "it cannot take a response role.",
            field="email",
        )
    return user


async def assign_role(session: AsyncSession, *, actor: User, ref: str, role: str, email: str) -> Incident:
    """Give a response role to a person; for a single-holder role this is a handover."""
    require_responder(actor)
    if role not in ROLES:
        raise NotFound(f"No role {role!r}: roles are {', '.join(ROLES)}.")
    incident = await lock_incident(session, ref)
    user = await _person_by_email(session, email)
    now = clock.now()
    label = ROLE_LABELS[role]
    if role == "sme":
        held = await session.scalar(
            select(RoleAssignment.id).where(
                RoleAssignment.incident_id == incident.id,
                RoleAssignment.role == "sme",
                RoleAssignment.user_id == user.id,
                RoleAssignment.ended_at.is_(None),
            )
        )
        if held:
            raise Conflict(f"{user.name} is already an SME on {ref}.")
        text = f"{user.name} joined as SME."
    else:
        current = await session.scalar(
            select(RoleAssignment)
            .where(
                RoleAssignment.incident_id == incident.id,
                RoleAssignment.role == role,
                RoleAssignment.ended_at.is_(None),
            )
            .options(selectinload(RoleAssignment.user))
        )
        if current is not None and current.user_id == user.id:
            raise Conflict(f"{user.name} is already {label}.")
        if current is not None:
            current.ended_at = now
            current.ended_by_id = actor.id
            text = f"{label} handed over from {current.user.name} to {user.name}."
            await session.flush()
        else:
            text = f"{user.name} is {label}."
    session.add(
        RoleAssignment(
            incident_id=incident.id, role=role, user_id=user.id, assigned_at=now, assigned_by_id=actor.id
        )
    )
    record_entry(session, incident, actor, "role", text, at=now)
    await _tick_for_role(session, incident, actor, role, holder=user, at=now)
    await session.commit()
    return incident


async def clear_role(
    session: AsyncSession, *, actor: User, ref: str, role: str, email: str | None = None
) -> Incident:
    """End a role assignment (for SMEs, name the person). History is kept."""
    require_responder(actor)
    if role not in ROLES:
        raise NotFound(f"No role {role!r}: roles are {', '.join(ROLES)}.")
    incident = await lock_incident(session, ref)
    query = (
        select(RoleAssignment)
        .where(
            RoleAssignment.incident_id == incident.id,
            RoleAssignment.role == role,
            RoleAssignment.ended_at.is_(None),
        )
        .options(selectinload(RoleAssignment.user))
    )
    if role == "sme":
        user = await _user_by_email(session, email or "")
        query = query.where(RoleAssignment.user_id == user.id)
    current = await session.scalar(query)
    if current is None:
        raise NotFound(f"Nobody holds that role on {ref}.")
    now = clock.now()
    current.ended_at = now
    current.ended_by_id = actor.id
    text = (
        f"{current.user.name} left as SME."
        if role == "sme"
        else f"{current.user.name} is no longer {ROLE_LABELS[role]}."
    )
    record_entry(session, incident, actor, "role", text, at=now)
    await _tick_for_role(session, incident, actor, role, holder=None, at=now)
    await session.commit()
    return incident


async def _tick_for_role(
    session: AsyncSession, incident: Incident, actor: User, role: str, *, holder: User | None, at: datetime
) -> None:
    """Tick the checklist item that says `role` is held when someone holds it, untick it when
    nobody does, with its own timeline entry; nothing when the checklist has no such item."""
    keys = ROLE_CHECKLIST_ITEMS.get(role)
    if not keys:
        return
    item = await session.scalar(
        select(ChecklistItem)
        .where(ChecklistItem.incident_id == incident.id, ChecklistItem.key.in_(keys))
        .order_by(ChecklistItem.position)
        .limit(1)
    )
    if item is None or (item.done_at is not None) == (holder is not None):
        return
    item.done_at = at if holder else None
    item.done_by_id = actor.id if holder else None
    text = (
        f"Done: {item.label} ({holder.name} holds the role)."
        if holder
        else f"Not done: {item.label} (nobody holds the role now)."
    )
    record_entry(session, incident, actor, "checklist", text, at=at)


async def set_checklist_item(
    session: AsyncSession, *, actor: User, ref: str, key: str, done: bool
) -> Incident:
    """Tick or untick a triage checklist item, recording who and when."""
    require_responder(actor)
    incident = await lock_incident(session, ref)
    item = await session.scalar(
        select(ChecklistItem).where(ChecklistItem.incident_id == incident.id, ChecklistItem.key == key)
    )
    if item is None:
        raise NotFound(f"No checklist item {key!r} on {ref}.")
    if (item.done_at is not None) == done:
        return incident
    now = clock.now()
    item.done_at = now if done else None
    item.done_by_id = actor.id if done else None
    mark = "Done" if done else "Not done"
    record_entry(session, incident, actor, "checklist", f"{mark}: {item.label}", at=now)
    await session.commit()
    return incident


async def record_runbook(session: AsyncSession, *, actor: User, ref: str, key: str, title: str) -> None:
    """Note on the timeline that a runbook is being followed for this incident."""
    require_responder(actor)
    incident = await lock_incident(session, ref)
    safe_title = title.replace("[", "(").replace("]", ")")
    record_entry(
        session,
        incident,
        actor,
        "runbook",
        f"Following runbook [{key} {safe_title}](/runbooks/{key}).",
        at=clock.now(),
    )
    await session.commit()


# ---------------------------------------------------------------- timeline


def _write_entry_statement() -> Executable:
    """The scribe's hot path in one statement, built once: it finds the incident by its reference
    and writes the entry and its first revision (the timeline's trigger announces the incident).
    An unknown reference, or a client_key already written by an earlier or a concurrent submit,
    writes nothing and returns no row."""
    table = TimelineEntry.__table__
    given = ("kind", "body", "author_id", "occurred_at", "recorded_at", "client_key")
    row = select(
        Incident.id, literal(1), *(bindparam(name, type_=table.c[name].type) for name in given)
    ).where(Incident.ref == bindparam("ref"))
    written = (
        insert(TimelineEntry)
        .from_select(["incident_id", "revision", *given], row)
        .on_conflict_do_nothing(index_elements=["incident_id", "client_key"])
        .returning(*TimelineEntry.__table__.c)
        .cte("written")
    )
    first_revision = (
        insert(TimelineRevision)
        .from_select(
            ["entry_id", "revision", "body", "edited_by_id", "edited_at"],
            select(
                written.c.id, written.c.revision, written.c.body, written.c.author_id, written.c.recorded_at
            ),
        )
        .cte("first_revision")
    )
    return select(TimelineEntry).from_statement(select(written).add_cte(first_revision))


_WRITE_ENTRY = _write_entry_statement()


async def add_timeline_entry(
    session: AsyncSession,
    *,
    actor: User,
    ref: str,
    kind: str,
    body: str,
    occurred_at: datetime | None = None,
    client_key: str | None = None,
) -> TimelineEntry:
    """Log a note, decision or action; may be back-dated. A repeated client_key (a double
    submit) returns the entry already written instead of a second one."""
    require_responder(actor)
    if kind not in ENTRY_KINDS_WRITTEN:
        raise InvalidInput(
            f"Unknown entry kind {kind!r}: choose one of {', '.join(ENTRY_KINDS_WRITTEN)}.", field="kind"
        )
    body = clean_text(body, field="body", label="The entry", max_len=MAX_BODY, required=True)
    now = clock.now()
    if occurred_at is not None:
        if occurred_at.tzinfo is None:
            raise InvalidInput("occurred_at needs a time zone offset.", field="occurred_at")
        if occurred_at > now + FUTURE_TOLERANCE:
            raise InvalidInput("An entry cannot happen in the future.", field="occurred_at")
        if occurred_at < now - BACKDATE_LIMIT:
            raise InvalidInput("An entry can be back-dated by 30 days at most.", field="occurred_at")
    entry = await session.scalar(
        _WRITE_ENTRY,
        {
            "ref": ref,
            "kind": kind,
            "body": body,
            "author_id": actor.id,
            "occurred_at": occurred_at or now,
            "recorded_at": now,
            "client_key": client_key or None,
        },
    )
    await session.commit()
    if entry is None:
        incident_id = await session.scalar(select(Incident.id).where(Incident.ref == ref))
        if incident_id is None:
            raise NotFound(f"No incident {ref}.")
        existing = await _entry_by_client_key(session, incident_id, client_key)
        if existing is None:
            raise Conflict("The entry could not be saved; send it again.")
        return existing
    set_committed_value(entry, "author", actor)
    set_committed_value(entry, "redacted_by", None)
    return entry


async def _entry_by_client_key(
    session: AsyncSession, incident_id: int, client_key: str | None
) -> TimelineEntry | None:
    return await session.scalar(
        select(TimelineEntry)
        .where(TimelineEntry.incident_id == incident_id, TimelineEntry.client_key == client_key)
        .options(selectinload(TimelineEntry.author), selectinload(TimelineEntry.redacted_by))
    )


async def list_timeline(
    session: AsyncSession, *, ref: str, after: int | None = None, limit: int = 500
) -> tuple[list[TimelineEntry], int | None]:
    """Entries in the order they happened; `after` (an entry id) returns only newer records."""
    incident_id = await session.scalar(select(Incident.id).where(Incident.ref == ref))
    if incident_id is None:
        raise NotFound(f"No incident {ref}.")
    query = select(TimelineEntry).where(TimelineEntry.incident_id == incident_id)
    if after is not None:
        query = query.where(TimelineEntry.id > after)
    entries = list(
        await session.scalars(
            query.options(selectinload(TimelineEntry.author), selectinload(TimelineEntry.redacted_by))
            .order_by(TimelineEntry.id)
            .limit(limit + 1)
        )
    )
    next_cursor = entries[limit - 1].id if len(entries) > limit else None
    entries = entries[:limit]
    entries.sort(key=lambda e: (e.occurred_at, e.id))
    return entries, next_cursor


async def latest_timeline(
    session: AsyncSession, *, incident_id: int, limit: int
) -> tuple[list[TimelineEntry], int]:
    """The most recent `limit` entries in the order they happened, and how many there are in
    all: the incident page shows the end of the story, however long it is."""
    total = await session.scalar(
        select(func.count()).select_from(TimelineEntry).where(TimelineEntry.incident_id == incident_id)
    )
    newest = list(
        await session.scalars(
            select(TimelineEntry)
            .where(TimelineEntry.incident_id == incident_id)
            .options(selectinload(TimelineEntry.author), selectinload(TimelineEntry.redacted_by))
            .order_by(TimelineEntry.occurred_at.desc(), TimelineEntry.id.desc())
            .limit(limit)
        )
    )
    newest.reverse()
    return newest, total or 0


async def _entry_for_change(session: AsyncSession, entry_id: int) -> tuple[TimelineEntry, Incident]:
    row = (
        await session.execute(
            select(TimelineEntry, Incident)
            .join(Incident, Incident.id == TimelineEntry.incident_id)
            .where(TimelineEntry.id == entry_id)
            .with_for_update(of=TimelineEntry)
        )
    ).first()
    if row is None:
        raise NotFound(f"No timeline entry {entry_id}.")
    entry, incident = row
    if entry.kind not in ENTRY_KINDS_WRITTEN:
        raise NotPermitted("Entries that record a change of state cannot be edited or redacted.")
    if entry.redacted_at is not None:
        raise Conflict("This entry was redacted.")
    return entry, incident


async def edit_timeline_entry(
    session: AsyncSession, *, actor: User, entry_id: int, body: str
) -> TimelineEntry:
    """Correct an entry: a new revision; every earlier one stays readable."""
    require_responder(actor)
    body = clean_text(body, field="body", label="The entry", max_len=MAX_BODY, required=True)
    entry, _ = await _entry_for_change(session, entry_id)
    if entry.author_id != actor.id and actor.role != "admin":
        raise NotPermitted("Only the author of an entry (or an admin) can edit it.")
    if body == entry.body:
        raise Conflict("The entry already says that.")
    now = clock.now()
    entry.revision += 1
    entry.body = body
    session.add(
        TimelineRevision(
            entry_id=entry.id, revision=entry.revision, body=body, edited_by_id=actor.id, edited_at=now
        )
    )
    await session.commit()
    return await _entry_loaded(session, entry.id)


async def redact_timeline_entry(
    session: AsyncSession, *, actor: User, entry_id: int, reason: str
) -> TimelineEntry:
    """Remove an entry's text (every revision of it), keeping who redacted it, when and why."""
    require_responder(actor)
    reason = clean_text(reason, field="reason", label="A reason", max_len=MAX_REASON, required=True)
    entry, incident = await _entry_for_change(session, entry_id)
    commander_id = await session.scalar(
        select(RoleAssignment.user_id).where(
            RoleAssignment.incident_id == incident.id,
            RoleAssignment.role == "incident_commander",
            RoleAssignment.ended_at.is_(None),
        )
    )
    if actor.id not in (entry.author_id, commander_id) and actor.role != "admin":
        raise NotPermitted("Only the author, the Incident Commander or an admin can redact an entry.")
    entry.body = ""
    entry.redacted_at = clock.now()
    entry.redacted_by_id = actor.id
    entry.redaction_reason = reason
    await session.execute(
        update(TimelineRevision).where(TimelineRevision.entry_id == entry.id).values(body=None)
    )
    await session.commit()
    return await _entry_loaded(session, entry.id)


async def _entry_loaded(session: AsyncSession, entry_id: int) -> TimelineEntry:
    entry = await session.scalar(
        select(TimelineEntry)
        .where(TimelineEntry.id == entry_id)
        .options(selectinload(TimelineEntry.author), selectinload(TimelineEntry.redacted_by))
        .execution_options(populate_existing=True)
    )
    if entry is None:
        raise NotFound(f"No timeline entry {entry_id}.")
    return entry


async def get_timeline_entry(
    session: AsyncSession, *, entry_id: int
) -> tuple[TimelineEntry, list[TimelineRevision]]:
    """An entry with every revision it has had, oldest first."""
    entry = await _entry_loaded(session, entry_id)
    revisions = await session.scalars(
        select(TimelineRevision)
        .where(TimelineRevision.entry_id == entry_id)
        .options(selectinload(TimelineRevision.edited_by))
        .order_by(TimelineRevision.revision)
    )
    return entry, list(revisions)


async def incident_ref_of_entry(session: AsyncSession, *, entry_id: int) -> str:
    ref = await session.scalar(
        select(Incident.ref)
        .join(TimelineEntry, TimelineEntry.incident_id == Incident.id)
        .where(TimelineEntry.id == entry_id)
    )
    if ref is None:
        raise NotFound(f"No timeline entry {entry_id}.")
    return ref
