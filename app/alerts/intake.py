"""The way in for a delivery: source -> rate limit (a counter row in PostgreSQL) -> credentials
-> JSON -> the sender's adapter -> store (one commit) -> routing of newly firing alerts. A refused
delivery (4xx) is rolled back whole and kept as a dead letter, credentials masked, for an admin
to inspect and replay; a 429 is not kept (the sender retries it). PagerDuty change events take
the same way in and are kept as they came."""

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.alerts import adapters, changes, credentials, pagerduty, routing, store
from app.alerts.adapters import NormalisedAlert, NormalisedChange
from app.alerts.config import AlertConfig, Source
from app.alerts.errors import BadJson, InvalidEvent, Replayed, UnknownSource
from app.alerts.json_body import check_storable, parse_body, printable
from app.alerts.models import AlertDeadLetter, AlertRateWindow, AlertSignatureSeen, ChangeEvent
from app.errors import DomainError, RateLimited
from app.masking import MASK, masked_headers

CHANGE_KIND = "pagerduty-change"  # a dead letter's kind for a refused change event
LETTER_KINDS = ("alertmanager", "grafana", "pagerduty", "generic", CHANGE_KIND)
MAX_DEAD_LETTER_BODY = 1024 * 1024
MAX_DEAD_LETTER_HEADER = 1000
Read = TypeVar("Read")


@dataclass(frozen=True)
class IngestResult:
    """What a delivery did: the alerts it touched (ids in payload order; a PagerDuty acknowledge
    or resolve for no open alert touches none) and the dedup keys of its events."""

    source: str
    alert_ids: list[int]
    dedup_keys: list[str]
    incidents: list[str]


@dataclass(frozen=True)
class _Delivery:
    kind: str
    source_name: str | None  # from the URL: any text
    headers: Mapping[str, str]
    body: bytes
    letter_kind: str  # what a dead letter of it says it was
    events_api: bool  # it came to PagerDuty's own paths: a refusal is InvalidEvent


def find_source(config: AlertConfig, *, kind: str, name: str | None, payload: object = None) -> Source:
    """The configured source a delivery is for, or UnknownSource naming what is configured."""
    if name is None and kind == "pagerduty" and isinstance(payload, dict):
        key = payload.get("routing_key")
        for source in config.sources.values():
            if source.kind == "pagerduty" and isinstance(key, str) and key in source.routing_keys:
                return source
    source = config.source(name or kind)
    if source is None or source.kind != kind:
        names = ", ".join(s.name for s in config.sources.values() if s.kind == kind) or "none"
        shown = printable(name or kind)[:64]
        raise UnknownSource(f"No {kind} alert source named {shown!r} (configured: {names}).")
    return source


async def check_rate_limit(session: AsyncSession, *, source: Source, now: datetime) -> None:
    """Count a delivery in the source's fixed window (a row per source and window, upserted, so
    every replica counts in the same place); RateLimited with the seconds to wait beyond it. The
    count is its own transaction, committed here: it must outlive the refusal it may cause."""
    epoch = int(now.timestamp())
    start = epoch - epoch % source.rate_window
    window_start = datetime.fromtimestamp(start, tz=now.tzinfo)
    hits = await session.scalar(
        insert(AlertRateWindow)
        .values(source=source.name, window_start=window_start, hits=1)
        .on_conflict_do_update(
            index_elements=[AlertRateWindow.source, AlertRateWindow.window_start],
            set_={"hits": AlertRateWindow.hits + 1},
        )
        .returning(AlertRateWindow.hits)
    )
    if hits == 1:
        await session.execute(
            delete(AlertRateWindow).where(
                AlertRateWindow.source == source.name,
                AlertRateWindow.window_start < window_start - timedelta(hours=1),
            )
        )
    await session.commit()
    if hits is not None and hits > source.rate_limit:
        retry_after = max(1, math.ceil(start + source.rate_window - now.timestamp()))
        per = "second" if source.rate_window == 1 else "minute"
        raise RateLimited(
            f"Source {source.name!r} is over its limit of {source.rate_limit} deliveries per {per}; "
            f"retry after {retry_after} s.",
            retry_after=retry_after,
        )


def normalise(source: Source, payload: object) -> list[NormalisedAlert]:
    """The delivery's alerts in our shape, or InvalidPayload naming the first problem."""
    check_storable(payload)
    if source.kind == "alertmanager":
        return adapters.parse_alertmanager(payload)
    if source.kind == "grafana":
        return adapters.parse_grafana(payload)
    if source.kind == "pagerduty":
        credentials.check_routing_key(source, payload)  # its credential, before what it says
        return [pagerduty.parse_event(payload)]
    return adapters.parse_generic(payload, source)


def normalise_change(source: Source, payload: object) -> NormalisedChange:
    """A PagerDuty change event in our shape, or InvalidPayload naming the first problem."""
    check_storable(payload)
    credentials.check_routing_key(source, payload)
    return pagerduty.parse_change(payload)


async def _checked(
    session: AsyncSession, *, config: AlertConfig, delivery: _Delivery, now: datetime
) -> tuple[Source, object, str | None]:
    """The source, the payload and (generic webhooks) the signature digest of a delivery whose
    source, rate, credentials and JSON are good."""
    payload: object = None
    if delivery.kind == "pagerduty" and delivery.source_name is None:
        try:
            payload = parse_body(delivery.body)
        except BadJson:
            payload = None
    source = find_source(config, kind=delivery.kind, name=delivery.source_name, payload=payload)
    await check_rate_limit(session, source=source, now=now)
    digest = None
    if delivery.kind in ("alertmanager", "grafana"):
        credentials.check_credentials(source, delivery.headers)
    elif delivery.kind == "generic":
        digest = credentials.check_signature(
            source, delivery.headers, delivery.body, now=now, tolerance=config.signature_tolerance
        )
    return source, parse_body(delivery.body), digest


async def _mark_signature_seen(
    session: AsyncSession, *, digest: str, now: datetime, tolerance: timedelta
) -> None:
    await session.execute(delete(AlertSignatureSeen).where(AlertSignatureSeen.seen_at < now - 2 * tolerance))
    fresh = await session.scalar(
        insert(AlertSignatureSeen)
        .values(digest=digest, seen_at=now)
        .on_conflict_do_nothing()
        .returning(AlertSignatureSeen.digest)
    )
    if fresh is None:
        raise Replayed("This signed delivery was already accepted (same signature): a replay is refused.")


async def _accept(
    session: AsyncSession,
    *,
    config: AlertConfig,
    delivery: _Delivery,
    read: Callable[[Source, object], Read],
    now: datetime,
) -> tuple[Source, Read]:
    """The delivery's source and what `read` makes of its payload; or its refusal, rolled back
    and kept as a dead letter."""
    try:
        source, payload, digest = await _checked(session, config=config, delivery=delivery, now=now)
        found = read(source, payload)
        if digest is not None:
            await _mark_signature_seen(session, digest=digest, now=now, tolerance=config.signature_tolerance)
    except RateLimited:
        raise
    except DomainError as exc:
        refusal = InvalidEvent(exc.message, field=exc.field) if delivery.events_api else exc
        await session.rollback()
        await _keep_dead_letter(session, delivery=delivery, refusal=refusal)
        raise refusal from None
    return source, found


def _masked_body(kind: str, body: bytes) -> str:
    text = body[:MAX_DEAD_LETTER_BODY].decode("utf-8", "replace").replace("\x00", "\ufffd")
    if kind in ("pagerduty", CHANGE_KIND):
        # The routing key is PagerDuty's credential: keep its last four characters only.
        text = re.sub(
            r'("routing_key"\s*:\s*")([^"]*)(")',
            lambda m: m.group(1) + MASK + m.group(2)[-4:] + m.group(3),
            text,
        )
    return text


async def _keep_dead_letter(session: AsyncSession, *, delivery: _Delivery, refusal: DomainError) -> None:
    """Keep a refused delivery, credentials masked, in a transaction of its own."""
    headers = masked_headers(delivery.headers)
    session.add(
        AlertDeadLetter(
            received_at=clock.now(),
            source=printable(delivery.source_name or delivery.kind)[:64],
            kind=delivery.letter_kind[:16],
            status_code=refusal.status_code,
            reason=refusal.message,
            headers={name: value[:MAX_DEAD_LETTER_HEADER] for name, value in headers.items()},
            body=_masked_body(delivery.letter_kind, delivery.body),
        )
    )
    await session.commit()


async def ingest_delivery(
    session: AsyncSession,
    *,
    config: AlertConfig,
    kind: str,
    source_name: str | None,
    headers: Mapping[str, str],
    body: bytes,
    events_api: bool = False,
) -> IngestResult:
    """Accept one delivery from a monitoring system, or refuse it with a 4xx and keep it as a
    dead letter (a 429 is not kept: the sender retries it). `events_api`: it came to PagerDuty's
    own paths, so a refusal is InvalidEvent. The alerts are committed before they are routed."""
    now = clock.now()
    delivery = _Delivery(kind, source_name, headers, body, letter_kind=kind, events_api=events_api)
    source, found = await _accept(session, config=config, delivery=delivery, read=normalise, now=now)
    stored = await store.store_alerts(session, config=config, source=source, alerts=found, now=now)
    await session.commit()
    refs = await routing.route_alerts(session, source=source, alerts=stored.to_route)
    return IngestResult(
        source=source.name, alert_ids=stored.alert_ids, dedup_keys=stored.dedup_keys, incidents=refs
    )


async def ingest_change_event(
    session: AsyncSession,
    *,
    config: AlertConfig,
    source_name: str | None,
    headers: Mapping[str, str],
    body: bytes,
) -> ChangeEvent:
    """Accept one PagerDuty change event (its routing_key names its source), or refuse it as
    ingest_delivery does on PagerDuty's paths, the only ones change events come to."""
    now = clock.now()
    delivery = _Delivery("pagerduty", source_name, headers, body, letter_kind=CHANGE_KIND, events_api=True)
    source, change = await _accept(session, config=config, delivery=delivery, read=normalise_change, now=now)
    event = await changes.store_change_event(session, config=config, source=source, change=change, now=now)
    await session.commit()
    return event
