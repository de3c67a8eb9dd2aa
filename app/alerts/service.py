"""Alert ingestion: every rule about alerts lives here, for the senders, the pages and the API.

A delivery goes: source -> rate limit (a counter row in PostgreSQL) -> credentials -> JSON ->
the sender's adapter -> one transaction that writes every alert (a firing one upserted on the
open row of its (source, dedup_key), a resolve or acknowledgement applied to that open row) and
the timeline entries of alerts already on an incident -> routing of newly firing alerts
(declare, attach, or leave for triage). A refused delivery (4xx) is rolled back whole and kept
as a dead letter, credentials masked, for an admin to inspect and replay. PagerDuty change
events take the same way in and are kept as they are, shown on the incidents of their service.
"""

import base64
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, case, delete, func, literal_column, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app import clock
from app.alerts import adapters
from app.alerts.adapters import InvalidPayload, NormalisedAlert, NormalisedChange
from app.alerts.config import AlertConfig, Route, Source
from app.alerts.models import Alert, AlertDeadLetter, AlertRateWindow, AlertSignatureSeen, ChangeEvent
from app.auth import service as accounts
from app.auth.models import User
from app.config import get_policy
from app.errors import Conflict, DomainError, InvalidInput, NotAuthenticated, NotFound, NotPermitted
from app.incidents import service as incidents
from app.incidents.models import Incident
from app.live.notify import CHANNEL
from app.observability import ALERTS_STORED

BOT_EMAIL = "alerts@icc.invalid"
BOT_NAME = "Alert ingestion"
TIMESTAMP_HEADER = "X-ICC-Timestamp"
SIGNATURE_HEADER = "X-ICC-Signature"
MASK = "***"
SECRET_HEADER = re.compile(r"auth|token|secret|signature|key|cookie|password", re.IGNORECASE)
MAX_DEAD_LETTER_BODY = 1024 * 1024
STATUS_LABELS = {"firing": "Firing", "resolved": "Resolved"}
CHANGE_KIND = "pagerduty-change"  # a dead letter's kind for a refused change event
RESOLVED_LOCK = 0x1CC0A1  # pg_advisory_xact_lock(RESOLVED_LOCK, incident id): see _record_resolved
CHANGES_BEFORE = timedelta(hours=1)  # an incident shows the changes of the hour before it, and since


class RateLimited(DomainError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnknownSource(NotFound):
    code = "unknown_source"


class BadJson(DomainError):
    status_code = 400
    code = "invalid_json"


class BadCredentials(NotAuthenticated):
    code = "bad_credentials"


class Replayed(Conflict):
    code = "replayed"


class InvalidEvent(DomainError):
    """A refusal on PagerDuty's Events API paths, answered as PagerDuty does: 400 "invalid event"
    (its clients treat every 4xx alike; the message names the field)."""

    status_code = 400
    code = "invalid_event"


@dataclass(frozen=True)
class IngestResult:
    """What a delivery did: the alerts it touched (ids in payload order; a PagerDuty acknowledge
    or resolve for no open alert touches none) and the dedup keys of its events."""

    source: str
    alert_ids: list[int]
    dedup_keys: list[str]
    incidents: list[str]


@dataclass(frozen=True)
class _Upserted:
    alert_id: int
    inserted: bool
    previous_status: str | None
    status: str
    incident_id: int | None
    route_action: str


# ---------------------------------------------------------------- helpers


def _md(text: str) -> str:
    """Alert text inside a timeline entry stays text: markdown punctuation is escaped."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~])", r"\\\1", " ".join(text.split()))[:300]


async def alert_bot(session: AsyncSession) -> User:
    """The account that alert-made timeline entries and incidents are written as."""
    return await accounts.service_account(session, email=BOT_EMAIL, name=BOT_NAME)


def masked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Request headers as kept in a dead letter: credentials replaced, the scheme kept."""
    out = {}
    for name, value in headers.items():
        if SECRET_HEADER.search(name):
            scheme = value.split(" ", 1)[0] if " " in value else ""
            out[name] = f"{scheme} {MASK}".strip()
        else:
            out[name] = value[:1000]
    return out


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


def route_for(config: AlertConfig, source: str, labels: dict[str, str]) -> Route | None:
    """The first routing rule whose matchers all hold, or None (left for triage)."""
    return next((r for r in config.routes if r.matches(source, labels)), None)


def _incident_severity(config: AlertConfig, route: Route | None, severity: str) -> str:
    keys = list(get_policy().severities)
    if route and route.severity:
        return route.severity
    mapped = config.severity_map.get(severity.lower())
    if mapped in keys:
        return mapped
    return "SEV3" if "SEV3" in keys else keys[-1]


def _route_labels(alert: NormalisedAlert) -> dict[str, str]:
    return {"severity": alert.severity, **alert.labels}


# ---------------------------------------------------------------- the delivery


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
        shown = adapters.printable(name or kind)[:64]
        raise UnknownSource(f"No {kind} alert source named {shown!r} (configured: {names}).")
    return source


async def check_rate_limit(session: AsyncSession, *, source: Source, now: datetime) -> None:
    """Count a delivery in the source's fixed window (a row per source and window, upserted, so
    every replica counts in the same place); RateLimited with the seconds to wait beyond it."""
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


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def check_credentials(source: Source, headers: Mapping[str, str]) -> None:
    """Alertmanager and Grafana: a bearer token or HTTP basic auth, compared in constant time."""
    sent = _header(headers, "Authorization") or ""
    scheme, _, value = sent.partition(" ")
    if source.token and scheme.lower() == "bearer":
        if hmac.compare_digest(value.strip().encode(), source.token.encode()):
            return
        raise BadCredentials(f"The bearer token is not the one configured for source {source.name!r}.")
    if source.basic_user and scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise BadCredentials("The basic auth header is not valid base64 of user:password.") from None
        if hmac.compare_digest(user.encode(), source.basic_user.encode()) and hmac.compare_digest(
            password.encode(), (source.basic_password or "").encode()
        ):
            return
        raise BadCredentials(f"The basic auth user or password is wrong for source {source.name!r}.")
    wanted = "Authorization: Bearer <token>" if source.token else "HTTP basic auth"
    if scheme.lower() == "basic":
        raise BadCredentials(
            f"Source {source.name!r} takes no basic auth (it has no basic_user and "
            f"basic_password_env): send {wanted}."
        )
    raise BadCredentials(f"Source {source.name!r} needs {wanted}.")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-ICC-Signature a generic sender puts on a delivery: HMAC-SHA256 of "<ts>.<body>"."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def check_signature(
    source: Source, headers: Mapping[str, str], body: bytes, *, now: datetime, tolerance: timedelta
) -> str:
    """Verify a generic webhook's signature and the freshness of its timestamp; returns the
    digest that marks this delivery as seen."""
    assert source.secret is not None
    timestamp = _header(headers, TIMESTAMP_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    if not timestamp or not signature:
        raise BadCredentials(
            f"A signed delivery needs the {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} headers."
        )
    if not timestamp.strip().isdigit():
        raise BadCredentials(f"{TIMESTAMP_HEADER} must be the Unix time in seconds.")
    if not hmac.compare_digest(
        signature.strip().encode(), sign(source.secret, timestamp.strip(), body).encode()
    ):
        raise BadCredentials(
            f"{SIGNATURE_HEADER} does not match: sign '<timestamp>.<raw body>' with HMAC-SHA256 "
            f"and the secret of source {source.name!r}."
        )
    age = now.timestamp() - int(timestamp)
    if abs(age) > tolerance.total_seconds():
        raise BadCredentials(
            f"{TIMESTAMP_HEADER} is {int(abs(age))} s {'old' if age > 0 else 'in the future'}; "
            f"at most {int(tolerance.total_seconds())} s is accepted (replay protection)."
        )
    return hashlib.sha256(signature.strip().encode()).hexdigest()


def parse_body(body: bytes) -> object:
    """The delivery as JSON, or BadJson saying where it breaks. Its depth is checked before the
    parser recurses, and a number no store keeps is read as adapters.Unstorable (check_storable
    then names its field)."""
    if not body.strip():
        raise BadJson("The body is empty: send the alert payload as JSON.")
    if (where := adapters.too_deep_at(body)) is not None:
        raise BadJson(
            f"{where}: the body nests objects and arrays deeper than {adapters.MAX_DEPTH} levels.",
            field=where,
        )
    try:
        return json.loads(body, **adapters.JSON_NUMBERS)
    except UnicodeDecodeError:
        raise BadJson("The body is not UTF-8 text.") from None
    except json.JSONDecodeError as exc:
        raise BadJson(
            f"The body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from None


def _check_routing_key(source: Source, payload: object) -> None:
    key = payload.get("routing_key") if isinstance(payload, dict) else None
    if not isinstance(key, str) or not key:
        raise BadCredentials(f"routing_key: required (an integration key of source {source.name!r}).")
    if key not in source.routing_keys:
        raise BadCredentials(f"routing_key is not an integration key of source {source.name!r}.")


def normalise(source: Source, payload: object) -> list[NormalisedAlert]:
    """The delivery's alerts in our shape, or InvalidPayload naming the first problem."""
    adapters.check_storable(payload)
    if source.kind == "alertmanager":
        return adapters.parse_alertmanager(payload)
    if source.kind == "grafana":
        return adapters.parse_grafana(payload)
    if source.kind == "pagerduty":
        _check_routing_key(source, payload)  # its credential, before what it says
        return [adapters.parse_pagerduty(payload)]
    return adapters.parse_generic(payload, source)


def normalise_change(source: Source, payload: object) -> NormalisedChange:
    """A PagerDuty change event in our shape, or InvalidPayload naming the first problem."""
    adapters.check_storable(payload)
    _check_routing_key(source, payload)
    return adapters.parse_pagerduty_change(payload)


async def _accept(
    session: AsyncSession,
    *,
    config: AlertConfig,
    kind: str,
    source_name: str | None,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> tuple[Source, object, str | None]:
    """The source, the payload and (generic webhooks) the signature digest of a delivery whose
    source, rate, credentials and JSON are good."""
    payload: object = None
    if kind == "pagerduty" and source_name is None:
        try:
            payload = parse_body(body)
        except BadJson:
            payload = None
    source = find_source(config, kind=kind, name=source_name, payload=payload)
    await check_rate_limit(session, source=source, now=now)
    digest = None
    if kind in ("alertmanager", "grafana"):
        check_credentials(source, headers)
    elif kind == "generic":
        digest = check_signature(source, headers, body, now=now, tolerance=config.signature_tolerance)
    return source, parse_body(body), digest


async def _refused(
    session: AsyncSession,
    exc: DomainError,
    *,
    source: str,
    kind: str,
    headers: Mapping[str, str],
    body: bytes,
    events_api: bool,
) -> DomainError:
    """Roll the delivery back and keep it as a dead letter; the error to answer with."""
    if events_api:
        exc = InvalidEvent(exc.message, field=exc.field)
    await session.rollback()
    await _dead_letter(session, source=source, kind=kind, exc=exc, headers=headers, body=body)
    return exc


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
    own paths, so a refusal is InvalidEvent."""
    now = clock.now()
    try:
        source, payload, digest = await _accept(
            session, config=config, kind=kind, source_name=source_name, headers=headers, body=body, now=now
        )
        found = normalise(source, payload)
        if digest is not None:
            await _mark_signature_seen(session, digest=digest, now=now, tolerance=config.signature_tolerance)
    except RateLimited:
        raise
    except DomainError as exc:
        raise await _refused(
            session,
            exc,
            source=source_name or kind,
            kind=kind,
            headers=headers,
            body=body,
            events_api=events_api,
        ) from None
    return await store_alerts(session, config=config, source=source, alerts=found, now=now)


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
    try:
        source, payload, _ = await _accept(
            session,
            config=config,
            kind="pagerduty",
            source_name=source_name,
            headers=headers,
            body=body,
            now=now,
        )
        change = normalise_change(source, payload)
    except RateLimited:
        raise
    except DomainError as exc:
        raise await _refused(
            session,
            exc,
            source=source_name or "pagerduty",
            kind=CHANGE_KIND,
            headers=headers,
            body=body,
            events_api=True,
        ) from None
    return await store_change_event(session, config=config, source=source, change=change, now=now)


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


async def _dead_letter(
    session: AsyncSession,
    *,
    source: str,
    kind: str,
    exc: DomainError,
    headers: Mapping[str, str],
    body: bytes,
) -> None:
    session.add(
        AlertDeadLetter(
            received_at=clock.now(),
            source=adapters.printable(source)[:64],  # a source name from the URL: any text
            kind=kind[:16],
            status_code=exc.status_code,
            reason=exc.message,
            headers=masked_headers(headers),
            body=_masked_body(kind, body),
        )
    )
    await session.commit()


# ---------------------------------------------------------------- storing and routing


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


def _returned(row: Row[Any], *, inserted: bool) -> _Upserted:
    return _Upserted(
        alert_id=row.id,
        inserted=inserted,
        previous_status=None if inserted else row.previous_status,
        status=row.status,
        incident_id=row.incident_id,
        route_action=row.route_action,
    )


async def _update(
    session: AsyncSession, where: ColumnElement[bool], changes: dict[str, object]
) -> _Upserted | None:
    row = (await session.execute(update(Alert).where(where).values(**changes).returning(*RETURNED))).first()
    return None if row is None else _returned(row, inserted=False)


async def _write_alert(
    session: AsyncSession, *, config: AlertConfig, source: Source, alert: NormalisedAlert, now: datetime
) -> _Upserted | None:
    """Write one alert of a delivery. Firing: upsert the open row of its (source, dedup_key), or
    open a new one, which stays on the open incident of the key's previous row. A resolve or a
    PagerDuty acknowledge applies to the open row; None when there is none for PagerDuty, which
    drops such an event, while another sender's resolve is kept on the key's last row."""
    route = route_for(config, source.name, _route_labels(alert))
    service = None
    if route is not None:
        service = route.service or adapters.service_name(alert.labels.get(route.service_label))
    values = {
        "source": source.name,
        "kind": source.kind,
        "dedup_key": alert.dedup_key,
        "fingerprint": alert.fingerprint,
        "group_key": alert.group_key,
        "status": alert.status,
        "title": alert.title,
        "severity": alert.severity,
        "service": service,
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
        "incident_severity": _incident_severity(config, route, alert.severity),
    }
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
    key = and_(Alert.source == source.name, Alert.dedup_key == alert.dedup_key)
    if alert.event == "acknowledge":
        # PagerDuty's acknowledge changes who knows, not whether it fires.
        changes["acknowledged_at"] = func.coalesce(Alert.acknowledged_at, now)
        changes["acknowledged_by_sender"] = case(
            (Alert.acknowledged_at.is_(None), True), else_=Alert.acknowledged_by_sender
        )
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
        return _returned(row, inserted=bool(row.inserted))
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
    return _returned(row, inserted=True)


async def store_alerts(
    session: AsyncSession,
    *,
    config: AlertConfig,
    source: Source,
    alerts: list[NormalisedAlert],
    now: datetime,
) -> IngestResult:
    """Write the alerts (one open row per source and dedup key) and route the newly firing ones."""
    by_key: dict[str, NormalisedAlert] = {}
    for alert in alerts:
        by_key[alert.dedup_key] = alert  # the same alert twice in one delivery: the last one wins
    bot = await alert_bot(session)
    results: dict[str, _Upserted] = {}
    # Sorted, so two deliveries touching the same alerts lock their rows in the same order.
    for key in sorted(by_key):
        done = await _write_alert(session, config=config, source=source, alert=by_key[key], now=now)
        if done is not None:
            results[key] = done
    to_route = []
    resolved_on: dict[int, list[int]] = {}
    for key, done in results.items():
        if done.incident_id is not None:
            if done.previous_status == "firing" and done.status == "resolved":
                resolved_on.setdefault(done.incident_id, []).append(done.alert_id)
            elif done.inserted and done.status == "firing":  # the key fired again on an open incident
                incident = await session.get(Incident, done.incident_id)
                assert incident is not None
                _record(session, incident, bot, by_key[key], done.alert_id, "Firing again", source, now)
        elif done.status == "firing" and done.route_action != "triage":
            to_route.append(key)
    for incident_id, alert_ids in resolved_on.items():
        await _record_resolved(session, incident_id=incident_id, bot=bot, alert_ids=alert_ids, now=now)
    if any(done.incident_id is None for done in results.values()):
        # An alert on no incident writes no timeline entry, so nothing else announces it: wake
        # the /events subscribers (the alert history) on commit. '0' is EVERYTHING's key in the
        # broker, so it reaches the list pages only, never an incident page.
        await session.execute(select(func.pg_notify(CHANNEL, "0")))
    await session.commit()
    ALERTS_STORED.labels(source.name).inc(len(results))
    refs: list[str] = []
    for key in to_route:
        ref = await _route_alert(
            session, config=config, source=source, alert=by_key[key], alert_id=results[key].alert_id, bot=bot
        )
        if ref and ref not in refs:
            refs.append(ref)
    return IngestResult(
        source=source.name,
        alert_ids=[results[a.dedup_key].alert_id for a in alerts if a.dedup_key in results],
        dedup_keys=[a.dedup_key for a in alerts],
        incidents=refs,
    )


def _record(
    session: AsyncSession,
    incident: Incident,
    bot: User,
    alert: NormalisedAlert,
    alert_id: int,
    what: str,
    source: Source,
    now: datetime,
) -> None:
    severity = f", {_md(alert.severity)}" if alert.severity else ""
    incidents.record_entry(
        session,
        incident,
        bot,
        "alert",
        f"{what}: {_md(alert.title)} ({source.name}{severity}, [alert {alert_id}](/alerts/{alert_id}))",
        at=now,
    )


async def _record_resolved(
    session: AsyncSession, *, incident_id: int, bot: User, alert_ids: list[int], now: datetime
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
            f"Resolved: {_md(title)} ({source}, [alert {alert_id}](/alerts/{alert_id})).{tail}",
            at=now,
        )


async def _open_incident_for(
    session: AsyncSession,
    *,
    source: Source,
    alert: NormalisedAlert,
    alert_id: int,
    service: str | None,
    by_service: bool,
) -> Incident | None:
    if alert.group_key:
        found = await session.scalar(
            select(Incident)
            .join(Alert, Alert.incident_id == Incident.id)
            .where(
                Alert.source == source.name,
                Alert.group_key == alert.group_key,
                Alert.id != alert_id,
                Incident.resolved_at.is_(None),
            )
            .order_by(Incident.id.desc())
            .limit(1)
        )
        if found is not None:
            return found
    if by_service and service:
        return await session.scalar(
            select(Incident)
            .where(Incident.resolved_at.is_(None), Incident.services.contains([service]))
            .order_by(Incident.id.desc())
            .limit(1)
        )
    return None


async def _route_alert(
    session: AsyncSession,
    *,
    config: AlertConfig,
    source: Source,
    alert: NormalisedAlert,
    alert_id: int,
    bot: User,
) -> str | None:
    """Attach a firing alert to an open incident, or declare one; None when left for triage."""
    row = await session.get(Alert, alert_id)
    assert row is not None
    await session.refresh(row)
    if row.status != "firing" or row.route_action == "triage":
        return None
    old_incident = row.incident_id
    if old_incident is not None:
        linked = await session.get(Incident, old_incident)
        if linked is not None and linked.resolved_at is None:
            return linked.ref  # routed meanwhile
    incident = await _open_incident_for(
        session, source=source, alert=alert, alert_id=alert_id, service=row.service,
        by_service=row.route_action == "attach",
    )  # fmt: skip
    opened = False
    if incident is None:
        if row.route_action != "declare":
            await session.commit()
            return None
        incident = await _declare_for(session, source=source, row=row, title=alert.group_title, bot=bot)
        bot = await alert_bot(session)  # loaded again: a lost race in declare_incident rolled back
        opened = incident.declared_by_id == bot.id
    claimed = await session.scalar(
        update(Alert)
        .where(
            Alert.id == alert_id,
            or_(Alert.incident_id.is_(None), Alert.incident_id == old_incident),
        )
        .values(incident_id=incident.id, opened_incident=opened)
        .returning(Alert.id)
    )
    if claimed is None:
        await session.rollback()  # another delivery routed it first
        return None
    what = "Opened by alert" if opened else "Firing"
    _record(session, incident, bot, alert, alert_id, what, source, clock.now())
    ref = incident.ref
    await session.commit()
    return ref


async def _declare_for(
    session: AsyncSession, *, source: Source, row: Alert, title: str | None, bot: User
) -> Incident:
    """Declare the incident of an alert's group, called as the group is (else as the alert)."""
    group = row.group_key or row.dedup_key
    last = await session.scalar(
        select(func.max(Incident.id))
        .join(Alert, Alert.incident_id == Incident.id)
        .where(
            Alert.source == source.name,
            func.coalesce(Alert.group_key, Alert.dedup_key) == group,
            Incident.resolved_at.is_not(None),
        )
    )
    # Concurrent deliveries for one group compute the same key (it changes only when one of the
    # group's incidents is resolved), so declare_incident's unique client_key makes them one.
    client_key = (
        "alert:" + hashlib.sha256(f"{source.name}\x1f{group}".encode()).hexdigest()[:40] + f":{last or 0}"
    )
    severity = row.incident_severity or "SEV3"
    service = row.service
    title = title or row.title
    title = title if len(title) <= incidents.MAX_TITLE else title[: incidents.MAX_TITLE - 1] + "…"
    summary = f"Declared by alert {row.id} from {source.name}: {row.title}"[: incidents.MAX_SUMMARY]
    incident = await incidents.declare_incident(
        session,
        actor=bot,
        title=title,
        severity=severity,
        summary=_md(summary),
        services=[service] if service else None,
        client_key=client_key,
    )
    if incident.resolved_at is not None:
        # The key of an earlier, resolved incident (its alert was unlinked by hand): a fresh one.
        fresh_key = f"{client_key[:48]}:{row.id}:{clock.now().timestamp():.0f}"
        incident = await incidents.declare_incident(
            session, actor=bot, title=title, severity=severity, summary=_md(summary),
            services=[service] if service else None, client_key=fresh_key,
        )  # fmt: skip
    return incident


# ---------------------------------------------------------------- change events


def change_service(config: AlertConfig, source: Source, labels: dict[str, str]) -> str | None:
    """A change event's service, found as an alert's: the first routing rule that matches its
    labels (its custom details and `source`) names it, or names the label that holds it."""
    route = route_for(config, source.name, labels)
    if route is None:
        return None
    return route.service or adapters.service_name(labels.get(route.service_label))


async def store_change_event(
    session: AsyncSession, *, config: AlertConfig, source: Source, change: NormalisedChange, now: datetime
) -> ChangeEvent:
    """Keep a change event as it came. It opens and joins nothing: incidents of its service show it."""
    event = ChangeEvent(
        source=source.name,
        summary=change.summary,
        origin=change.origin,
        occurred_at=change.occurred_at or now,
        received_at=now,
        service=change_service(config, source, change.labels),
        custom_details=change.custom_details,
        links=change.links,
        raw=change.raw,
    )
    session.add(event)
    await session.commit()
    return event


async def list_change_events(
    session: AsyncSession,
    *,
    service: str | None = None,
    since: datetime | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> tuple[list[ChangeEvent], int | None]:
    """Change events, the last received first; `since` is on when they happened; `cursor` is the
    last id seen."""
    query = select(ChangeEvent)
    if service:
        query = query.where(ChangeEvent.service == service.strip().lower())
    if since is not None:
        if since.tzinfo is None:
            raise InvalidInput(
                "since: give a time with an offset, such as 2026-11-23T14:00:00Z.", field="since"
            )
        query = query.where(ChangeEvent.occurred_at >= since)
    if cursor is not None:
        query = query.where(ChangeEvent.id < cursor)
    found = list(await session.scalars(query.order_by(ChangeEvent.id.desc()).limit(limit + 1)))
    next_cursor = found[limit - 1].id if len(found) > limit else None
    return found[:limit], next_cursor


async def changes_for_incident(
    session: AsyncSession, *, incident: Incident, limit: int = 10
) -> list[ChangeEvent]:
    """The changes on the incident's services from the hour before it was declared until now,
    the latest first: what a responder reviews first ("what changed?")."""
    if not incident.services:
        return []
    return list(
        await session.scalars(
            select(ChangeEvent)
            .where(
                ChangeEvent.service.in_(incident.services),
                ChangeEvent.occurred_at >= incident.declared_at - CHANGES_BEFORE,
                ChangeEvent.occurred_at <= clock.now(),
            )
            .order_by(ChangeEvent.occurred_at.desc(), ChangeEvent.id.desc())
            .limit(limit)
        )
    )


# ---------------------------------------------------------------- reads


async def get_alert(session: AsyncSession, *, alert_id: int) -> Alert:
    """One alert with its incident and who acknowledged it, or NotFound."""
    alert = await session.scalar(
        select(Alert)
        .where(Alert.id == alert_id)
        .options(selectinload(Alert.incident), selectinload(Alert.acknowledged_by))
    )
    if alert is None:
        raise NotFound(f"No alert {alert_id}.")
    return alert


async def list_alerts(
    session: AsyncSession,
    *,
    status: str | None = None,
    source: str | None = None,
    service: str | None = None,
    since: datetime | None = None,
    incident: str | None = None,
    unrouted: bool = False,
    cursor: int | None = None,
    limit: int = 50,
) -> tuple[list[Alert], int | None]:
    """Alerts, most recently received first, filtered; `cursor` is the last id seen."""
    query = select(Alert).options(selectinload(Alert.incident), selectinload(Alert.acknowledged_by))
    if status:
        if status not in STATUS_LABELS:
            raise InvalidInput(f"Unknown alert status {status!r}: use firing or resolved.", field="status")
        query = query.where(Alert.status == status)
    if source:
        query = query.where(Alert.source == source.strip())
    if service:
        query = query.where(Alert.service == service.strip().lower())
    if since is not None:
        if since.tzinfo is None:
            raise InvalidInput(
                "since: give a time with an offset, such as 2026-11-23T14:00:00Z.", field="since"
            )
        query = query.where(Alert.last_received_at >= since)
    if incident:
        query = query.join(Incident, Incident.id == Alert.incident_id).where(Incident.ref == incident.strip())
    if unrouted:
        query = query.where(Alert.incident_id.is_(None), Alert.status == "firing")
    if cursor is not None:
        query = query.where(Alert.id < cursor)
    found = list(await session.scalars(query.order_by(Alert.id.desc()).limit(limit + 1)))
    next_cursor = found[limit - 1].id if len(found) > limit else None
    return found[:limit], next_cursor


async def count_unrouted(session: AsyncSession) -> int:
    """Firing alerts on no incident: the triage queue."""
    return (
        await session.scalar(
            select(func.count())
            .select_from(Alert)
            .where(Alert.incident_id.is_(None), Alert.status == "firing")
        )
    ) or 0


async def list_sources(session: AsyncSession) -> list[str]:
    """Source names that have sent alerts."""
    return list(await session.scalars(select(Alert.source).distinct().order_by(Alert.source)))


@dataclass(frozen=True)
class IncidentAlerts:
    """The alerts linked to an incident, and whether the IC should be asked to resolve it."""

    alerts: list[Alert]
    all_resolved: bool
    auto_declared: bool

    @property
    def prompt_resolve(self) -> bool:
        return self.auto_declared and self.all_resolved and bool(self.alerts)


async def alerts_of_incident(session: AsyncSession, *, incident: Incident) -> IncidentAlerts:
    """The incident's alerts, firing first; whether all are resolved on an alert-declared one."""
    alerts = list(
        await session.scalars(
            select(Alert)
            .where(Alert.incident_id == incident.id)
            .order_by(Alert.status, Alert.last_received_at.desc())
            .limit(50)
        )
    )
    bot = await session.scalar(select(User.id).where(func.lower(User.email) == BOT_EMAIL))
    return IncidentAlerts(
        alerts=alerts,
        all_resolved=all(a.status == "resolved" for a in alerts),
        auto_declared=incident.resolved_at is None and bot is not None and incident.declared_by_id == bot,
    )


# ---------------------------------------------------------------- people's changes


async def acknowledge_alert(session: AsyncSession, *, actor: User, alert_id: int) -> Alert:
    """Someone has seen this alert: who and when are kept; a second acknowledgement is a 409."""
    incidents.require_responder(actor)
    now = clock.now()
    claimed = await session.scalar(
        update(Alert)
        .where(Alert.id == alert_id, Alert.acknowledged_at.is_(None))
        .values(acknowledged_at=now, acknowledged_by_id=actor.id)
        .returning(Alert.id)
    )
    if claimed is None:
        alert = await get_alert(session, alert_id=alert_id)
        who = alert.acknowledged_by.name if alert.acknowledged_by else "its sender"
        raise Conflict(f"Alert {alert_id} was already acknowledged by {who}.")
    alert = await session.get(Alert, alert_id)
    assert alert is not None
    if alert.incident_id is not None:
        incident = await session.get(Incident, alert.incident_id)
        assert incident is not None
        incidents.record_entry(
            session,
            incident,
            actor,
            "alert",
            f"Acknowledged [alert {alert_id}](/alerts/{alert_id}): {_md(alert.title)}",
            at=now,
        )
    await session.commit()
    return await get_alert(session, alert_id=alert_id)


async def link_alert(session: AsyncSession, *, actor: User, alert_id: int, ref: str) -> Alert:
    """Put an alert on an incident by hand (moving it from another one if need be)."""
    incidents.require_responder(actor)
    incident = await incidents.lock_incident(session, ref.strip())
    alert = await session.scalar(select(Alert).where(Alert.id == alert_id).with_for_update())
    if alert is None:
        raise NotFound(f"No alert {alert_id}.")
    if alert.incident_id == incident.id:
        raise Conflict(f"Alert {alert_id} is already on {incident.ref}.")
    now = clock.now()
    if alert.incident_id is not None:
        previous = await session.get(Incident, alert.incident_id)
        assert previous is not None
        incidents.record_entry(
            session,
            previous,
            actor,
            "alert",
            f"Moved [alert {alert_id}](/alerts/{alert_id}) to {incident.ref}: {_md(alert.title)}",
            at=now,
        )
    alert.incident_id = incident.id
    alert.opened_incident = False
    incidents.record_entry(
        session,
        incident,
        actor,
        "alert",
        f"Linked [alert {alert_id}](/alerts/{alert_id}) ({alert.status}): {_md(alert.title)}",
        at=now,
    )
    await session.commit()
    return await get_alert(session, alert_id=alert_id)


async def unlink_alert(session: AsyncSession, *, actor: User, alert_id: int) -> Alert:
    """Take an alert off its incident; it stays in triage (repeat deliveries do not re-route it)."""
    incidents.require_responder(actor)
    alert = await session.scalar(select(Alert).where(Alert.id == alert_id).with_for_update())
    if alert is None:
        raise NotFound(f"No alert {alert_id}.")
    if alert.incident_id is None:
        raise Conflict(f"Alert {alert_id} is not on an incident.")
    incident = await session.get(Incident, alert.incident_id)
    assert incident is not None
    alert.incident_id = None
    alert.opened_incident = False
    alert.route_action = "triage"
    alert.unlinked_at = clock.now()
    incidents.record_entry(
        session,
        incident,
        actor,
        "alert",
        f"Unlinked [alert {alert_id}](/alerts/{alert_id}): {_md(alert.title)}",
        at=clock.now(),
    )
    await session.commit()
    return await get_alert(session, alert_id=alert_id)


# ---------------------------------------------------------------- dead letters


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


async def replay_dead_letter(
    session: AsyncSession, *, config: AlertConfig, actor: User, letter_id: int
) -> AlertDeadLetter:
    """Ingest a refused delivery again with today's configuration. The admin vouches for the
    sender (its credentials were never kept), so only the payload's checks run."""
    _require_admin(actor)
    letter = await session.scalar(
        select(AlertDeadLetter).where(AlertDeadLetter.id == letter_id).with_for_update()
    )
    if letter is None:
        raise NotFound(f"No dead letter {letter_id}.")
    if letter.replayed_at is not None:
        raise Conflict(f"Dead letter {letter_id} was already replayed.")
    kind, source_name, body = letter.kind, letter.source, letter.body.encode()
    await session.commit()
    try:
        if kind not in ("alertmanager", "grafana", "pagerduty", "generic", CHANGE_KIND):
            raise UnknownSource(f"Unknown alert kind {kind!r}.")
        payload = parse_body(body)
        source_kind = "pagerduty" if kind == CHANGE_KIND else kind
        source = find_source(
            config,
            kind=source_kind,
            name=source_name if source_name != source_kind else None,
            payload=payload,
        )
        adapters.check_storable(payload)
        if kind == CHANGE_KIND:
            change = adapters.parse_pagerduty_change(payload)
            await store_change_event(session, config=config, source=source, change=change, now=clock.now())
            stored = 1
        else:
            found = [adapters.parse_pagerduty(payload)] if kind == "pagerduty" else normalise(source, payload)
            result = await store_alerts(session, config=config, source=source, alerts=found, now=clock.now())
            stored = len(result.alert_ids)
    except DomainError as exc:
        await session.rollback()
        await session.execute(
            update(AlertDeadLetter).where(AlertDeadLetter.id == letter_id).values(replay_error=exc.message)
        )
        await session.commit()
        raise
    await session.execute(
        update(AlertDeadLetter)
        .where(AlertDeadLetter.id == letter_id)
        .values(
            replayed_at=clock.now(),
            replayed_by_id=actor.id,
            replay_error=None,
            replay_alert_count=stored,
        )
    )
    await session.commit()
    refreshed = await session.scalar(
        select(AlertDeadLetter)
        .where(AlertDeadLetter.id == letter_id)
        .options(selectinload(AlertDeadLetter.replayed_by))
        .execution_options(populate_existing=True)
    )
    assert refreshed is not None
    return refreshed


# ---------------------------------------------------------------- sources (admins)

SOURCE_MASK = "••••••••"  # what the sources page shows instead of any credential
METHODS = {"grafana": "POST or PUT", "pagerduty": "base URL (POST /v2/enqueue, /v2/change/enqueue)"}


@dataclass(frozen=True)
class SourceOverview:
    """One configured source as the admin page shows it: never a credential's value."""

    name: str
    kind: str
    path: str  # the endpoint (PagerDuty: its clients' base URL), under the product's own URL
    methods: str
    credential: str  # its type, the secret masked
    rate_limit: str
    routes: list[str]  # the rules that may apply to it, in order
    last_delivery_at: datetime | None
    alerts_total: int
    alerts_24h: int
    dead_letters_24h: int


def events_api_base(source_name: str) -> str:
    """The base URL (under the product's own) that a PagerDuty client is given for a source: the
    client adds /v2/enqueue or /v2/change/enqueue. The default source's is the product itself."""
    return "" if source_name == "pagerduty" else f"/api/v1/alerts/pagerduty/{source_name}"


def _credential(source: Source) -> str:
    parts = []
    if source.token:
        parts.append(f"Bearer token {SOURCE_MASK}")
    if source.basic_user:
        parts.append(f"HTTP basic auth, user {source.basic_user}, password {SOURCE_MASK}")
    if source.routing_keys:
        count = len(source.routing_keys)
        parts.append(
            f"routing_key in the body ({count} integration key{'' if count == 1 else 's'}) {SOURCE_MASK}"
        )
    if source.secret:
        parts.append(f"HMAC-SHA256 signature (X-ICC-Signature), secret {SOURCE_MASK}")
    return " or ".join(parts) or "none"


def _route_summary(route: Route) -> str:
    matched = ", ".join(str(m) for m in route.matchers) or "any alert"
    extra = [f"service {route.service}" if route.service else f"service from label {route.service_label!r}"]
    if route.severity:
        extra.append(route.severity)
    return f"{matched} → {route.action} ({', '.join(extra)})"


async def describe_sources(
    session: AsyncSession, *, config: AlertConfig, actor: User
) -> list[SourceOverview]:
    """Every configured source with what the database knows of it (admins only)."""
    if actor.role != "admin" or not actor.is_active:
        raise NotPermitted("Only an admin can see the alert sources.")
    since = clock.now() - timedelta(hours=24)
    stored = {
        source: (last, total, recent)
        for source, last, total, recent in await session.execute(
            select(
                Alert.source,
                func.max(Alert.last_received_at),
                func.count(),
                func.count().filter(Alert.last_received_at >= since),
            ).group_by(Alert.source)
        )
    }
    refused: dict[str, int] = {
        source: count
        for source, count in await session.execute(
            select(AlertDeadLetter.source, func.count())
            .where(AlertDeadLetter.received_at >= since)
            .group_by(AlertDeadLetter.source)
        )
    }
    found = []
    for name, source in sorted(config.sources.items()):
        last, total, recent = stored.get(name, (None, 0, 0))
        path = f"/api/v1/alerts/{source.kind}" + ("" if name == source.kind else f"/{name}")
        if source.kind == "pagerduty":
            path = events_api_base(name)
        found.append(
            SourceOverview(
                name=name,
                kind=source.kind,
                path=path,
                methods=METHODS.get(source.kind, "POST"),
                credential=_credential(source),
                rate_limit=f"{source.rate_limit}/{'s' if source.rate_window == 1 else 'm'}",
                routes=[_route_summary(r) for r in config.routes if not r.sources or name in r.sources],
                last_delivery_at=last,
                alerts_total=total,
                alerts_24h=recent,
                dead_letters_24h=refused.get(name, 0),
            )
        )
    return found


__all__ = [
    "IngestResult",
    "InvalidPayload",
    "RateLimited",
    "acknowledge_alert",
    "ingest_delivery",
    "link_alert",
    "list_alerts",
    "replay_dead_letter",
    "unlink_alert",
]
