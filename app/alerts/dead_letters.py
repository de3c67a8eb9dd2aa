"""Refused deliveries, for admins: the list, and a replay that ingests one again with today's
configuration. The admin vouches for the sender (its credentials were never kept), so only the
payload's checks run; what is stored and the letter's replay are one commit, then routing runs."""

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app import clock
from app.alerts import changes, intake, pagerduty, routing, store
from app.alerts.adapters import NormalisedAlert
from app.alerts.config import AlertConfig, Source
from app.alerts.errors import UnknownSource
from app.alerts.json_body import check_storable, parse_body
from app.alerts.models import AlertDeadLetter
from app.auth.models import User
from app.errors import Conflict, DomainError, NotFound, NotPermitted


def _require_admin(actor: User) -> None:
    if actor.role != "admin" or not actor.is_active:
        raise NotPermitted("Only an admin can see and replay refused alert deliveries.")


async def list_dead_letters(session: AsyncSession, *, actor: User, limit: int = 100) -> list[AlertDeadLetter]:
    """Refused deliveries, newest first (admins only)."""
    _require_admin(actor)
    return list(
        await session.scalars(
            select(AlertDeadLetter)
            .options(selectinload(AlertDeadLetter.replayed_by))
            .order_by(AlertDeadLetter.id.desc())
            .limit(limit)
        )
    )


async def _store_again(
    session: AsyncSession, *, config: AlertConfig, letter: AlertDeadLetter
) -> tuple[Source, list[tuple[int, NormalisedAlert]], int]:
    """Store a letter's payload as its source's adapter reads it today: the source, the alerts to
    route, and how many alerts (or change events) it stored."""
    if letter.kind not in intake.LETTER_KINDS:
        raise UnknownSource(f"Unknown alert kind {letter.kind!r}.")
    payload = parse_body(letter.body.encode())
    source_kind = "pagerduty" if letter.kind == intake.CHANGE_KIND else letter.kind
    name = letter.source if letter.source != source_kind else None
    source = intake.find_source(config, kind=source_kind, name=name, payload=payload)
    check_storable(payload)
    now = clock.now()
    if letter.kind == intake.CHANGE_KIND:
        change = pagerduty.parse_change(payload)
        await changes.store_change_event(session, config=config, source=source, change=change, now=now)
        return source, [], 1
    found = (
        [pagerduty.parse_event(payload)] if letter.kind == "pagerduty" else intake.normalise(source, payload)
    )
    stored = await store.store_alerts(session, config=config, source=source, alerts=found, now=now)
    return source, stored.to_route, len(stored.alert_ids)


async def replay_dead_letter(
    session: AsyncSession, *, config: AlertConfig, actor: User, letter_id: int
) -> AlertDeadLetter:
    """Ingest a refused delivery again with today's configuration (admins only); a refusal is
    kept on the letter as its replay error."""
    _require_admin(actor)
    letter = await session.scalar(
        select(AlertDeadLetter).where(AlertDeadLetter.id == letter_id).with_for_update()
    )
    if letter is None:
        raise NotFound(f"No dead letter {letter_id}.")
    if letter.replayed_at is not None:
        raise Conflict(f"Dead letter {letter_id} was already replayed.")
    try:
        source, to_route, count = await _store_again(session, config=config, letter=letter)
    except DomainError as exc:
        await session.rollback()
        await session.execute(
            update(AlertDeadLetter).where(AlertDeadLetter.id == letter_id).values(replay_error=exc.message)
        )
        await session.commit()
        raise
    letter.replayed_at = clock.now()
    letter.replayed_by_id = actor.id
    letter.replay_error = None
    letter.replay_alert_count = count
    await session.commit()
    await routing.route_alerts(session, source=source, alerts=to_route)
    replayed = await session.scalar(
        select(AlertDeadLetter)
        .where(AlertDeadLetter.id == letter_id)
        .options(selectinload(AlertDeadLetter.replayed_by))
        .execution_options(populate_existing=True)
    )
    assert replayed is not None
    return replayed
