"""Fire the escalation steps that are due and deliver their webhooks.

Any number of processes may run `fire_due_steps` at once: a step fires when its row is
inserted (`ON CONFLICT DO NOTHING`), and only the process that inserted it writes the timeline
entry and queues the notifications, in the same transaction. Deliveries are claimed with
`FOR UPDATE SKIP LOCKED`, so each is attempted by one process at a time, through the
outgoing-request guard (app/outbound.py) with the policy's webhook hosts as its allowlist.
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock, outbound
from app.auth import service as accounts
from app.config import get_settings
from app.escalation.config import Step, get_escalation_policy
from app.escalation.models import Escalation, EscalationNotification
from app.incidents import service as incidents
from app.incidents.models import Incident
from app.live.notify import CHANNEL

ACCOUNT_EMAIL = "escalation@icc.invalid"
MAX_ATTEMPTS = 5
FIRST_RETRY = timedelta(seconds=30)
DELIVERY_TIMEOUT = 5.0
WHY = {
    "unacknowledged": "without acknowledgement",
    "unmitigated": "without mitigation",
    "no_update": "since the last stakeholder update",
}


def _due(incident: Incident, step: Step) -> datetime | None:
    """When the step falls due, or None if its condition no longer holds."""
    if step.when == "unacknowledged":
        return None if incident.acknowledged_at else incident.declared_at + step.after
    if step.when == "unmitigated":
        return None if incident.mitigated_at else incident.declared_at + step.after
    return (incident.last_update_at or incident.declared_at) + step.after


def delay_words(delta: timedelta) -> str:
    """A step's delay as the timeline and the banner say it: "at once", "after 1 min 30 s"."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "at once"
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n} {unit}" for n, unit in ((hours, "h"), (minutes, "min"), (seconds, "s")) if n]
    return "after " + " ".join(parts)


def escape_mrkdwn(text: str) -> str:
    """Text for Slack's mrkdwn as text: `&`, `<` and `>` are its control characters, so they are
    sent as `&amp;`, `&lt;` and `&gt;` (Slack's "Formatting text for app surfaces"; nothing else is
    entity-encoded). Applied to every piece of incident-derived text, never to our own markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_text(incident: Incident, entry: str) -> str:
    """The Slack-compatible message of a fired step: severity, a link to the incident when
    ICC_PUBLIC_URL says where it is (else its reference as text), the title and the entry."""
    public_url = get_settings().public_url
    ref = f"<{public_url}incidents/{incident.ref}|{incident.ref}>" if public_url else incident.ref
    severity, title, entry = (escape_mrkdwn(t) for t in (incident.severity, incident.title, entry))
    return f"[{severity}] {ref} {title}: {entry}"


async def fire_due_steps(session: AsyncSession) -> list[str]:
    """Fire every due step of every active incident once; returns the refs that escalated."""
    policy = get_escalation_policy()
    now = clock.now()
    active = list(await session.scalars(select(Incident).where(Incident.resolved_at.is_(None))))
    fired: list[str] = []
    for incident in active:
        for step in policy.steps.get(incident.severity, []):
            due = _due(incident, step)
            if due is None or due > now:
                continue
            reason = f"{delay_words(step.after)} {WHY[step.when]}"
            escalation_id = await session.scalar(
                insert(Escalation)
                .values(
                    incident_id=incident.id,
                    step_key=step.key,
                    name=step.name,
                    reason=reason,
                    condition=step.when,
                    fired_at=now,
                )
                .on_conflict_do_nothing(index_elements=[Escalation.incident_id, Escalation.step_key])
                .returning(Escalation.id)
            )
            if escalation_id is None:
                continue  # fired before, here or on another replica
            text = f"Escalated to {step.name} ({reason})."
            if step.audience:
                text += f" Notified: {', '.join(step.audience)}."
            account = await accounts.service_account(session, email=ACCOUNT_EMAIL, name="Escalation policy")
            incidents.record_entry(session, incident, account, "escalation", text, at=now)
            body = json.dumps({"text": webhook_text(incident, text)})
            for url in step.webhooks:
                session.add(
                    EscalationNotification(
                        escalation_id=escalation_id, url=url, body=body, next_attempt_at=now
                    )
                )
            fired.append(incident.ref)
    await session.commit()
    return fired


async def deliver_notifications(session: AsyncSession, *, limit: int = 20) -> int:
    """Send due webhook notifications once each; failures back off and end up visible, and a
    delivery the guard refuses fails at once (retrying would not change its answer)."""
    policy = get_escalation_policy()
    now = clock.now()
    claimed = list(
        await session.scalars(
            select(EscalationNotification)
            .where(EscalationNotification.state == "pending", EscalationNotification.next_attempt_at <= now)
            .order_by(EscalationNotification.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    for note in claimed:
        note.attempts += 1
        outcome = await outbound.send(
            policy,
            method="POST",
            url=note.url,
            headers={"Content-Type": "application/json"},
            content=note.body.encode(),
            timeout=DELIVERY_TIMEOUT,
        )
        if outcome.state == "succeeded":
            note.state, note.sent_at, note.last_error = "sent", clock.now(), None
            continue
        note.last_error = outcome.error
        if outcome.refused or note.attempts >= MAX_ATTEMPTS:
            note.state = "failed"
            # Viewers of the incident see the failure at once.
            incident_id = await session.scalar(
                select(Escalation.incident_id).where(Escalation.id == note.escalation_id)
            )
            await session.execute(select(func.pg_notify(CHANNEL, str(incident_id))))
        else:
            note.next_attempt_at = clock.now() + FIRST_RETRY * 2 ** (note.attempts - 1)
    await session.commit()
    return len(claimed)


@dataclass(frozen=True)
class EscalationView:
    name: str
    reason: str
    fired_at: datetime
    failed_deliveries: list[str]
    answer: str | None  # what answered the step: "acknowledged", "mitigated" or "updated"
    answered_at: datetime | None

    @property
    def answered(self) -> bool:
        return self.answer is not None


def _answer(
    incident: Incident, condition: str, fired_at: datetime
) -> tuple[str, datetime] | tuple[None, None]:
    """What answered a fired step, and when: its condition no longer holds. A fix that did not
    hold (monitoring back to investigating) makes an answered `unmitigated` step loud again."""
    if condition == "unacknowledged" and incident.acknowledged_at:
        return "acknowledged", incident.acknowledged_at
    if condition == "unmitigated" and incident.mitigated_at:
        return "mitigated", incident.mitigated_at
    if condition == "no_update" and incident.last_update_at and incident.last_update_at > fired_at:
        return "updated", incident.last_update_at
    return None, None


async def escalations_of(session: AsyncSession, *, incident_id: int) -> list[EscalationView]:
    """What fired for an incident, newest first, with any delivery that gave up and what has
    answered each step since."""
    incident = await session.get(Incident, incident_id)
    if incident is None:
        return []
    rows = await session.scalars(
        select(Escalation).where(Escalation.incident_id == incident_id).order_by(Escalation.fired_at.desc())
    )
    views = []
    for e in rows:
        failed = await session.scalars(
            select(EscalationNotification.last_error).where(
                EscalationNotification.escalation_id == e.id, EscalationNotification.state == "failed"
            )
        )
        answer, answered_at = _answer(incident, e.condition, e.fired_at)
        views.append(
            EscalationView(e.name, e.reason, e.fired_at, [f or "failed" for f in failed], answer, answered_at)
        )
    return views
