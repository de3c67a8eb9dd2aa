"""Storing a delivery's alerts: one open row per (source, dedup_key), written without a read
before the write. A firing alert upserts the open row (or opens a new one, which stays on the open
incident of the key's previous row); a resolve or a PagerDuty acknowledge updates the open row.
The timeline entries of alerts already on an incident are written in the same transaction.
Everything here flushes; the caller commits, then routes what is newly firing."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, case, func, literal_column, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts import routing, timeline
from app.alerts.adapters import NormalisedAlert
from app.alerts.config import AlertConfig, Source
from app.alerts.models import Alert
from app.auth.models import User
from app.incidents.models import Incident
from app.live.notify import CHANNEL
from app.observability import ALERTS_STORED

# What a delivery with details (not a bare PagerDuty acknowledge or resolve) sets on its alert.
DETAILS = (
    "fingerprint",
    "group_key",
    "title",
    "severity",
    "service",
    "labels",
    "annotations",
    "links",
    "raw",
    "incident_severity",
)
RETURNED = (Alert.id, Alert.previous_status, Alert.status, Alert.incident_id, Alert.route_action)


@dataclass(frozen=True)
class StoredAlerts:
    """What storing a delivery did: the alerts it touched (ids in payload order; a PagerDuty
    acknowledge or resolve for no open alert touches none), the dedup keys of its events, and
    the (alert id, alert) pairs that fire on no incident and have a rule to route them."""

    alert_ids: list[int]
    dedup_keys: list[str]
    to_route: list[tuple[int, NormalisedAlert]]


@dataclass(frozen=True)
class _Written:
    alert_id: int
    inserted: bool
    previous_status: str | None
    status: str
    incident_id: int | None
    route_action: str


def _written(row: Row[Any], *, inserted: bool) -> _Written:
    return _Written(
        alert_id=row.id,
        inserted=inserted,
        previous_status=None if inserted else row.previous_status,
        status=row.status,
        incident_id=row.incident_id,
        route_action=row.route_action,
    )


async def _update(
    session: AsyncSession, where: ColumnElement[bool], changes: dict[str, object]
) -> _Written | None:
    row = (await session.execute(update(Alert).where(where).values(**changes).returning(*RETURNED))).first()
    return None if row is None else _written(row, inserted=False)


def _new_row(config: AlertConfig, source: Source, alert: NormalisedAlert, now: datetime) -> dict[str, object]:
    """The row of an alert seen for the first time, routed by the first rule that matches it."""
    route = routing.route_for(config, source.name, routing.route_labels(alert))
    return {
        "source": source.name,
        "kind": source.kind,
        "dedup_key": alert.dedup_key,
        "fingerprint": alert.fingerprint,
        "group_key": alert.group_key,
        "status": alert.status,
        "title": alert.title,
        "severity": alert.severity,
        "service": routing.service_of(route, alert.labels) if route else None,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "links": alert.links,
        "raw": alert.raw,
        "starts_at": alert.starts_at,
        "ends_at": alert.ends_at,
        "first_received_at": now,
        "last_received_at": now,
        "resolved_at": (alert.ends_at or now) if alert.status == "resolved" else None,
        "delivery_count": 1,
        "route_action": route.action if route else "triage",
        "incident_severity": routing.incident_severity(config, route, alert.severity),
    }


def _repeat(alert: NormalisedAlert, values: dict[str, object], now: datetime) -> dict[str, object]:
    """What a delivery sets on the alert's existing row."""
    changes: dict[str, object] = {
        "previous_status": Alert.status,
        "last_received_at": now,
        "delivery_count": Alert.delivery_count + 1,
    }
    if alert.event in (None, "trigger") or alert.raw.get("payload"):
        changes.update({name: values[name] for name in DETAILS})
        changes["starts_at"] = func.coalesce(alert.starts_at, Alert.starts_at)
        # A person's unlink keeps an alert in triage: a repeat delivery must not route it again.
        changes["route_action"] = case(
            (Alert.unlinked_at.is_not(None), Alert.route_action), else_=values["route_action"]
        )
    if alert.event == "acknowledge":
        # PagerDuty's acknowledge changes who knows, not whether it fires.
        changes["acknowledged_at"] = func.coalesce(Alert.acknowledged_at, now)
        changes["acknowledged_by_sender"] = case(
            (Alert.acknowledged_at.is_(None), True), else_=Alert.acknowledged_by_sender
        )
    return changes


async def _write_alert(
    session: AsyncSession, *, config: AlertConfig, source: Source, alert: NormalisedAlert, now: datetime
) -> _Written | None:
    """Write one alert of a delivery. Firing: upsert the open row of its (source, dedup_key), or
    open a new one, which stays on the open incident of the key's previous row. A resolve or a
    PagerDuty acknowledge applies to the open row; None when there is none for PagerDuty, which
    drops such an event, while another sender's resolve is kept on the key's last row."""
    values = _new_row(config, source, alert, now)
    changes = _repeat(alert, values, now)
    key = and_(Alert.source == source.name, Alert.dedup_key == alert.dedup_key)
    if alert.event == "acknowledge":
        return await _update(session, and_(key, Alert.status == "firing"), changes)
    if alert.status == "firing":
        last_incident = select(Alert.incident_id).where(key).order_by(Alert.id.desc()).limit(1)
        still_open = select(Incident.id).where(
            Incident.id == last_incident.scalar_subquery(), Incident.resolved_at.is_(None)
        )
        statement = (
            insert(Alert)
            .values(**values, incident_id=still_open.scalar_subquery())
            .on_conflict_do_update(
                index_elements=[Alert.source, Alert.dedup_key],
                index_where=text("status = 'firing'"),  # the partial unique index, literally
                set_=changes,
            )
            .returning(*RETURNED, literal_column("(xmax = 0)").label("inserted"))
        )
        row = (await session.execute(statement)).one()
        return _written(row, inserted=bool(row.inserted))
    resolve = {
        **changes,
        "status": "resolved",
        "ends_at": alert.ends_at,
        "resolved_at": values["resolved_at"],
    }
    done = await _update(session, and_(key, Alert.status == "firing"), resolve)
    if done is not None or alert.event == "resolve":
        return done
    # A resolve with no firing row: a repeat, or an alert never seen firing. One delivery at a time
    # per key from here, so two identical ones keep one row.
    await session.execute(
        select(func.pg_advisory_xact_lock(func.hashtextextended(f"{source.name}\x1f{alert.dedup_key}", 0)))
    )
    last = select(func.max(Alert.id)).where(key).scalar_subquery()
    repeat = {**changes, "ends_at": func.coalesce(alert.ends_at, Alert.ends_at)}
    if done := await _update(session, and_(Alert.id == last, Alert.status == "resolved"), repeat):
        return done
    row = (await session.execute(insert(Alert).values(**values).returning(*RETURNED))).one()
    return _written(row, inserted=True)


async def store_alerts(
    session: AsyncSession,
    *,
    config: AlertConfig,
    source: Source,
    alerts: list[NormalisedAlert],
    now: datetime,
) -> StoredAlerts:
    """Write a delivery's alerts (one open row per source and dedup key) and the timeline entries
    of those already on an incident; flushes, the caller commits and then routes `to_route`."""
    by_key: dict[str, NormalisedAlert] = {}
    for alert in alerts:
        by_key[alert.dedup_key] = alert  # the same alert twice in one delivery: the last one wins
    bot = await timeline.alert_bot(session)  # before any alert row is locked: one lock order
    written: dict[str, _Written] = {}
    # Sorted, so two deliveries touching the same alerts lock their rows in the same order.
    for key in sorted(by_key):
        done = await _write_alert(session, config=config, source=source, alert=by_key[key], now=now)
        if done is not None:
            written[key] = done
    await _record_on_incidents(session, source=source, bot=bot, by_key=by_key, written=written, now=now)
    if any(done.incident_id is None for done in written.values()):
        # An alert on no incident writes no timeline entry, so nothing else announces it: wake
        # the /events subscribers (the alert history) on commit. '0' is EVERYTHING's key in the
        # broker, so it reaches the list pages only, never an incident page.
        await session.execute(select(func.pg_notify(CHANNEL, "0")))
    ALERTS_STORED.labels(source.name).inc(len(written))
    return StoredAlerts(
        alert_ids=[written[a.dedup_key].alert_id for a in alerts if a.dedup_key in written],
        dedup_keys=[a.dedup_key for a in alerts],
        to_route=[
            (done.alert_id, by_key[key])
            for key, done in written.items()
            if done.incident_id is None and done.status == "firing" and done.route_action != "triage"
        ],
    )


async def _record_on_incidents(
    session: AsyncSession,
    *,
    source: Source,
    bot: User,
    by_key: dict[str, NormalisedAlert],
    written: dict[str, _Written],
    now: datetime,
) -> None:
    """The entries of alerts already on an incident: a key firing again on its open incident, and
    the resolves, written per incident after every alert of the delivery is stored."""
    resolved_on: dict[int, list[int]] = {}
    for key, done in written.items():
        if done.incident_id is None:
            continue
        if done.previous_status == "firing" and done.status == "resolved":
            resolved_on.setdefault(done.incident_id, []).append(done.alert_id)
        elif done.inserted and done.status == "firing":
            incident = await session.get(Incident, done.incident_id)
            assert incident is not None
            timeline.record_alert(
                session, incident=incident, bot=bot, alert=by_key[key], alert_id=done.alert_id,
                what="Firing again", source=source.name, at=now,
            )  # fmt: skip
    for incident_id, alert_ids in resolved_on.items():
        await timeline.record_resolved(session, incident_id=incident_id, bot=bot, alert_ids=alert_ids, at=now)
